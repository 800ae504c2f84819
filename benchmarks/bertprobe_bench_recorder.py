"""A pytest plugin for the overhead benchmark: records every forward pass the audit runs, to replay it bare.

Loaded with `-p bertprobe_bench_recorder` (benchmarks/ on PYTHONPATH) and BERTPROBE_RECORD=FILE; it wraps
`PreTrainedModel.__call__` and keeps the outermost call of each pass (a head model's pass includes its
encoder's): the model class, the attention implementation and the arguments, as CPU tensors.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_calls: list[dict[str, Any]] = []
_depth = 0


def _detached(value: Any) -> Any:
    import torch

    return value.detach().to("cpu").clone() if isinstance(value, torch.Tensor) else value


def pytest_configure(config: pytest.Config) -> None:
    """Wrap every transformers model call."""
    from transformers import PreTrainedModel

    original = PreTrainedModel.__call__

    def recording_call(model: Any, *args: Any, **kwargs: Any) -> Any:
        global _depth
        if _depth == 0:
            _calls.append({
                "model": type(model).__name__,
                "attn": model.config._attn_implementation,
                "args": [_detached(arg) for arg in args],
                "kwargs": {name: _detached(value) for name, value in kwargs.items()},
            })  # fmt: skip
        _depth += 1
        try:
            return original(model, *args, **kwargs)
        finally:
            _depth -= 1

    PreTrainedModel.__call__ = recording_call  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Write the recorded calls."""
    import torch

    torch.save(_calls, os.environ["BERTPROBE_RECORD"])
