"""Tolerances per check and dtype, from the catalogue (float32 on CPU is the reference); ini and calls override.

The ini's `bert_tolerances` are parsed into `Settings.tolerances`; the plugin makes them the run's table for each
test (`overriding`), so a helper called inside that test reads them and nothing outlives the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pytest_bertprobe.catalogue import BF16, BY_NAME, CATALOGUE, F16, F32
from pytest_bertprobe.compare import Tolerance

# One row per check that compares tensors, in the catalogue (docs/DESIGN.md §3).
_BY_DTYPE: dict[str, Mapping[str, Tolerance]] = {check.name: check.tolerances for check in CATALOGUE if check.tolerances}
CHECKS: tuple[str, ...] = tuple(_BY_DTYPE)
_OVERRIDES: ContextVar[Mapping[str, Tolerance]] = ContextVar("bertprobe_tolerances", default={})


def tolerance_for(check: str, dtype: str, *, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The tolerance for `check` at `dtype`: per-call values, else ini overrides, else the table."""
    row = BY_NAME[check].row if check in BY_NAME else check
    default = _OVERRIDES.get().get(row) or _BY_DTYPE[row].get(dtype, _BY_DTYPE[row][F32])
    return Tolerance(
        atol=default.atol if atol is None else atol,
        rtol=default.rtol if rtol is None else rtol,
    )


def parse_overrides(lines: list[str]) -> dict[str, Tolerance]:
    """The ini's `bert_tolerances` lines, `CHECK = ATOL RTOL`, as a table; raises ValueError naming a bad line."""
    parsed: dict[str, Tolerance] = {}
    for line in lines:
        check, _, values = line.partition("=")
        check, numbers = check.strip(), values.split()
        if check not in _BY_DTYPE or len(numbers) != 2:
            raise ValueError(f"bert_tolerances line {line!r}: use 'CHECK = ATOL RTOL' with CHECK one of {', '.join(CHECKS)}")
        try:
            atol, rtol = float(numbers[0]), float(numbers[1])
        except ValueError:
            raise ValueError(f"bert_tolerances line {line!r}: ATOL and RTOL must be numbers") from None
        if not all(math.isfinite(value) and value >= 0 for value in (atol, rtol)):
            raise ValueError(f"bert_tolerances line {line!r}: ATOL and RTOL must be finite and non-negative")
        parsed[check] = Tolerance(atol, rtol)
    return parsed


@contextmanager
def overriding(overrides: Mapping[str, Tolerance]) -> Iterator[None]:
    """Inside the block, `tolerance_for` reads `overrides` before the table (per-call values still win)."""
    token = _OVERRIDES.set(dict(overrides))
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


def lowest_precision(*dtypes: str | None) -> str:
    """The dtype whose tolerances are widest among `dtypes` (bfloat16 > float16 > float32); None is ignored."""
    ranked = [BF16, F16, F32]
    present = {dtype for dtype in dtypes if dtype}
    return next((dtype for dtype in ranked if dtype in present), F32)


def dtype_name(dtype: object) -> str:
    """`torch.float32` -> `float32`."""
    return str(dtype).removeprefix("torch.")


def parameter_dtype(model: Any) -> Any:
    """The torch dtype of a model's parameters: the one place a model's dtype is read."""
    return next(model.parameters()).dtype


def model_dtype(model: Any) -> str:
    """The dtype name of a model's parameters, the key into the tolerance table."""
    return dtype_name(parameter_dtype(model))
