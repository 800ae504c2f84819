"""The package's folders are the data path: no import cycle, no import from a later stage, a short root (docs/DESIGN.md §1)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_bertprobe"
# The data path, in order; a module may import its own stage or an earlier one, never a later one.
STAGES = (
    ("foundations", ("errors", "compare", "tolerances", "catalogue", "sentences", "strategies", "atomic")),
    ("options", ("options",)),
    ("checkpoint", ("checkpoint",)),
    ("session", ("session",)),
    ("forward", ("forward",)),
    ("checks", ("checks",)),
    ("artefacts", ("artefacts",)),
    ("audit", ("audit",)),
    ("report", ("report",)),
    ("pytest face", ("fixtures", "plugin")),
    ("test tooling", ("testing",)),
)
MAX_ROOT_MODULES = 15


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _stage(module: str) -> int:
    top = module.split(".")[0]
    return next(index for index, (_, tops) in enumerate(STAGES) if top in tops)


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every package module `module` imports, function-level imports included, `if TYPE_CHECKING:` blocks excepted."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for node in ast.walk(block)}  # fmt: skip
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name.removeprefix("pytest_bertprobe.") for alias in node.names if alias.name.startswith("pytest_bertprobe.")]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module or ""
            if not (base == "pytest_bertprobe" or base.startswith("pytest_bertprobe.") or node.level):
                continue
            base = base.removeprefix("pytest_bertprobe").lstrip(".")
            names = [f"{base}.{alias.name}".lstrip(".") if f"{base}.{alias.name}".lstrip(".") in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules and name != module)
    return found


def test_no_module_imports_a_later_stage_of_the_data_path() -> None:
    modules = _modules()
    upward = [
        f"{module} ({STAGES[_stage(module)][0]}) imports {target} ({STAGES[_stage(target)][0]})"
        for module, path in modules.items()
        if module
        for target in _imports(module, path, modules)
        if target and _stage(target) > _stage(module)
    ]
    assert upward == []


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    modules = _modules()
    graph = {module: _imports(module, path, modules) for module, path in modules.items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_root_is_short_and_every_stage_says_what_it_does() -> None:
    root = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root
    for init in sorted(PACKAGE.glob("*/**/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 40, f"{init.relative_to(PACKAGE)} says nothing about its stage"
    placed = {top for _, tops in STAGES for top in tops}
    for module in _modules():
        assert module == "" or module.split(".")[0] in placed, f"{module} is on no stage of the data path"


def test_every_catalogue_row_names_the_helper_that_implements_it() -> None:
    from importlib import import_module

    import pytest_bertprobe
    from pytest_bertprobe.catalogue import CATALOGUE

    for check in CATALOGUE:
        module, _, name = check.helper.partition(":")
        helper = getattr(import_module(check.module), name, None)
        assert callable(helper), f"{check.name}: {check.helper} is not a function of {check.module}"
        assert module.split(".")[0] in ("checks", "artefacts"), f"{check.name}: implemented outside checks/ and artefacts/"
        assert getattr(pytest_bertprobe, name, helper) is helper, f"{check.name}: pytest_bertprobe.{name} is another function"
