"""The check catalogue is the one list of checks: the README's table, the audit's markers and the tolerance table follow it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pytest_bertprobe import tolerances
from pytest_bertprobe.audit import harness
from pytest_bertprobe.catalogue import BY_NAME, CATALOGUE, EXPLICIT_BATCHES, KERNEL_BATCHES, NAMES

ROOT = Path(__file__).resolve().parent.parent
AUDIT = ROOT / "pytest_bertprobe" / "audit"


def _readme_checks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n| check | claim |", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)


def _audit_markers() -> dict[str, str]:
    """Each audit test's `bertprobe_audit(check=...)`, by module and test name, read from the source.

    Not imported: the audit modules read the Hypothesis profile when imported, as the plugin imports them.
    """
    found: dict[str, str] = {}
    for path in sorted(AUDIT.glob("bertprobe_audit_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            marks = [
                decorator for decorator in node.decorator_list
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "pytest.mark.bertprobe_audit"
            ]  # fmt: skip
            assert len(marks) == 1, f"{path.stem}.{node.name} carries {len(marks)} bertprobe_audit markers"
            (check,) = [keyword.value for keyword in marks[0].keywords if keyword.arg == "check"]
            assert isinstance(check, ast.Constant)
            found[f"{path.stem}.{node.name}"] = check.value
    return found


def test_the_readme_table_lists_exactly_the_catalogue() -> None:
    listed = _readme_checks()
    assert len(listed) == len(set(listed)), "a check is listed twice"
    assert set(listed) == set(NAMES)


def test_every_audit_test_names_a_catalogue_check_and_every_check_has_one() -> None:
    markers = _audit_markers()
    assert set(markers.values()) <= set(NAMES), set(markers.values()) - set(NAMES)
    assert set(NAMES) <= set(markers.values()), set(NAMES) - set(markers.values())
    assert len(markers) == len(CATALOGUE)  # one test per check


def test_the_tolerance_table_is_the_catalogue_rows() -> None:
    assert tolerances.CHECKS == tuple(check.name for check in CATALOGUE if check.tolerances)
    assert tolerances.CHECKS[0] == "pooler_relation"
    borrowed = [check for check in CATALOGUE if check.tolerance_row]
    assert all(check.tolerance_row in tolerances.CHECKS and not check.tolerances for check in borrowed)
    assert tolerances.tolerance_for("golden_snapshot", "bfloat16") == tolerances.tolerance_for("reference_agreement", "bfloat16")


def test_explicit_batches_come_from_the_catalogue() -> None:
    assert harness.explicit_batches("pooler_relation") == EXPLICIT_BATCHES
    assert harness.explicit_batches("eager_matches_sdpa") == KERNEL_BATCHES
    assert all(harness.explicit_batches(name) == () for name in ("padding_invariance", "masked_content_invariance", "permutation_equivariance"))
    assert BY_NAME["padding_invariance"].rows_alone
