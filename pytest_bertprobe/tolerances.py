"""Default tolerances per check and dtype (float32 on CPU is the reference); ini and calls override."""

from __future__ import annotations

import math
from typing import Any

from pytest_bertprobe.compare import Tolerance

_F32, _BF16, _F16 = "float32", "bfloat16", "float16"

# Half precision rounds every op; its bounds follow torch.testing's defaults per dtype, widened for
# comparisons that go through a whole encoder (padding, batching, attention kernels).
_BY_DTYPE: dict[str, dict[str, Tolerance]] = {
    "pooler_relation": {_F32: Tolerance(1e-6, 1e-5), _BF16: Tolerance(1e-5, 1.6e-2), _F16: Tolerance(1e-5, 1e-3)},
    "cls_differs_from_pooler": {_F32: Tolerance(1e-3, 0.0), _BF16: Tolerance(1e-2, 0.0), _F16: Tolerance(1e-2, 0.0)},
    "pooler_not_degenerate": {_F32: Tolerance(1e-6, 0.0), _BF16: Tolerance(1e-5, 0.0), _F16: Tolerance(1e-5, 0.0)},
    "hidden_states": {_F32: Tolerance(1e-6, 1e-5), _BF16: Tolerance(1e-2, 1.6e-2), _F16: Tolerance(1e-3, 1e-3)},
    "padding_invariance": {_F32: Tolerance(1e-4, 1e-4), _BF16: Tolerance(5e-2, 5e-2), _F16: Tolerance(1e-2, 1e-2)},
    "masked_content_invariance": {_F32: Tolerance(1e-5, 1e-5), _BF16: Tolerance(5e-2, 5e-2), _F16: Tolerance(1e-2, 1e-2)},
    "permutation_equivariance": {_F32: Tolerance(1e-5, 1e-5), _BF16: Tolerance(5e-2, 5e-2), _F16: Tolerance(1e-2, 1e-2)},
    "determinism": {_F32: Tolerance(0.0, 0.0), _BF16: Tolerance(0.0, 0.0), _F16: Tolerance(0.0, 0.0)},
    "eager_matches_sdpa": {_F32: Tolerance(1e-5, 1e-4), _BF16: Tolerance(5e-2, 5e-2), _F16: Tolerance(1e-2, 1e-2)},
    "save_load_round_trip": {_F32: Tolerance(0.0, 0.0), _BF16: Tolerance(0.0, 0.0), _F16: Tolerance(0.0, 0.0)},
    "head_relation": {_F32: Tolerance(1e-6, 1e-5), _BF16: Tolerance(1e-2, 1.6e-2), _F16: Tolerance(1e-3, 1e-3)},
    "embedding_contract": {_F32: Tolerance(1e-6, 1e-5), _BF16: Tolerance(1e-2, 1.6e-2), _F16: Tolerance(1e-3, 1e-3)},
    # A checkpoint against its original or its snapshot: the whole encoder at the lower precision of the two.
    # float32 is optimum's export bound for BERT; bf16/fp16 leave room for rounding every weight and op
    # through the layers (a bf16 copy of all-MiniLM-L6-v2 computed in bf16 needs 0.033 at rtol 0.05).
    "reference_agreement": {_F32: Tolerance(1e-4, 1e-4), _BF16: Tolerance(1e-1, 5e-2), _F16: Tolerance(2e-2, 1e-2)},
    # An ONNX export under onnxruntime: other kernels for the same float32 network (a dynamo export of MiniLM: 4e-5).
    "onnx_agreement": {_F32: Tolerance(1e-4, 1e-4), _BF16: Tolerance(1e-1, 5e-2), _F16: Tolerance(2e-2, 1e-2)},
}

CHECKS: tuple[str, ...] = tuple(_BY_DTYPE)
_overrides: dict[str, Tolerance] = {}


def tolerance_for(check: str, dtype: str, *, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The tolerance for `check` at `dtype`: per-call values, else ini overrides, else the table."""
    default = _overrides.get(check) or _BY_DTYPE[check].get(dtype, _BY_DTYPE[check][_F32])
    return Tolerance(
        atol=default.atol if atol is None else atol,
        rtol=default.rtol if rtol is None else rtol,
    )


def set_overrides(lines: list[str]) -> None:
    """Apply ini `bert_tolerances` lines, `CHECK = ATOL RTOL`; raises ValueError naming a bad line."""
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
    _overrides.clear()
    _overrides.update(parsed)


def lowest_precision(*dtypes: str | None) -> str:
    """The dtype whose tolerances are widest among `dtypes` (bfloat16 > float16 > float32); None is ignored."""
    ranked = [_BF16, _F16, _F32]
    present = {dtype for dtype in dtypes if dtype}
    return next((dtype for dtype in ranked if dtype in present), _F32)


def dtype_name(dtype: object) -> str:
    """`torch.float32` -> `float32`."""
    return str(dtype).removeprefix("torch.")


def model_dtype(model: Any) -> str:
    """The dtype name of a model's parameters, the key into the tolerance table."""
    return dtype_name(next(model.parameters()).dtype)
