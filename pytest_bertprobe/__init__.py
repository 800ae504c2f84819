"""pytest-bertprobe: audit BERT-family checkpoints — pooler, [CLS], tokenizer — from pytest.

Helpers load lazily, so importing the package (as pytest does for every run) imports neither
torch nor transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

import pytest

# Before any of these modules is imported, so their plain `assert`s read well in a failure.
pytest.register_assert_rewrite("pytest_bertprobe.audit", "pytest_bertprobe.assertions")

__version__ = "0.1.0"

_LAZY = {
    "assert_pooler_is_dense_tanh_of_cls": "pytest_bertprobe.assertions",
    "assert_cls_differs_from_pooler": "pytest_bertprobe.assertions",
    "NoPoolerError": "pytest_bertprobe.anatomy",
    "PoolerAnatomy": "pytest_bertprobe.anatomy",
    "PoolerKind": "pytest_bertprobe.anatomy",
    "locate_pooler": "pytest_bertprobe.anatomy",
    "Gap": "pytest_bertprobe.compare",
    "Tolerance": "pytest_bertprobe.compare",
    "SEED_SENTENCES": "pytest_bertprobe.sentences",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from pytest_bertprobe.anatomy import NoPoolerError, PoolerAnatomy, PoolerKind, locate_pooler
    from pytest_bertprobe.assertions import assert_cls_differs_from_pooler, assert_pooler_is_dense_tanh_of_cls
    from pytest_bertprobe.compare import Gap, Tolerance
    from pytest_bertprobe.sentences import SEED_SENTENCES


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pytest_bertprobe' has no attribute {name!r}")
