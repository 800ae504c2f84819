"""The first public helpers, kept at their old import path: they live in `pooler.py` now."""

from __future__ import annotations

from pytest_bertprobe.pooler import assert_cls_differs_from_pooler, assert_pooler_is_dense_tanh_of_cls

__all__ = ["assert_cls_differs_from_pooler", "assert_pooler_is_dense_tanh_of_cls"]
