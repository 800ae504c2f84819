"""Default tolerances per check and dtype (float32 on CPU is the reference)."""

from __future__ import annotations

from pytest_bertprobe.compare import Tolerance

# Half precision rounds every op; these bounds follow torch.testing's defaults per dtype.
_BY_DTYPE: dict[str, dict[str, Tolerance]] = {
    "pooler_relation": {
        "float32": Tolerance(atol=1e-6, rtol=1e-5),
        "bfloat16": Tolerance(atol=1e-5, rtol=1.6e-2),
        "float16": Tolerance(atol=1e-5, rtol=1e-3),
    },
    "cls_differs": {
        "float32": Tolerance(atol=1e-3, rtol=0.0),
        "bfloat16": Tolerance(atol=1e-2, rtol=0.0),
        "float16": Tolerance(atol=1e-2, rtol=0.0),
    },
}


def tolerance_for(check: str, dtype: str, *, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The table's tolerance for `check` at `dtype`, with any per-call override applied."""
    default = _BY_DTYPE[check].get(dtype, _BY_DTYPE[check]["float32"])
    return Tolerance(
        atol=default.atol if atol is None else atol,
        rtol=default.rtol if rtol is None else rtol,
    )


def dtype_name(dtype: object) -> str:
    """`torch.float32` -> `float32`."""
    return str(dtype).removeprefix("torch.")
