"""The one comparison every assertion uses, and its torch.testing-style message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.errors import CheckFailure, Gap, Mismatch, NotApplicable

if TYPE_CHECKING:
    import torch

__all__ = ["CheckFailure", "Gap", "Mismatch", "NotApplicable", "Tolerance", "all_finite", "assert_apart", "assert_close", "measure", "not_close_lines", "quote", "severity"]


@dataclass(frozen=True)
class Tolerance:
    """Allowed difference: |actual - expected| <= atol + rtol * |expected|."""

    atol: float
    rtol: float


def measure(actual: torch.Tensor, expected: torch.Tensor, tolerance: Tolerance) -> Gap:
    """Compare elementwise in float64 and locate the greatest absolute and relative differences."""
    import torch

    if actual.shape != expected.shape:
        raise CheckFailure(f"The values for shapes do not match: {tuple(actual.shape)} != {tuple(expected.shape)}.")
    actual64 = actual.detach().to("cpu", torch.float64)
    expected64 = expected.detach().to("cpu", torch.float64)
    if actual64.numel() == 0:
        return Gap(tuple(actual.shape), 0, 0, 0, 0.0, (), 0.0, (), tolerance.atol, tolerance.rtol)
    magnitude = expected64.abs()
    abs_diff = (actual64 - expected64).abs()
    allowed = tolerance.atol + tolerance.rtol * magnitude
    if all_finite(abs_diff):  # both sides finite everywhere: the common case, in half the operations
        mismatched, nonfinite = ~(abs_diff <= allowed), 0
    else:  # NaN/inf: an equal infinity on both sides agrees; any other non-finite value differs infinitely
        finite = torch.isfinite(actual64) & torch.isfinite(expected64)
        same_nonfinite = (actual64 == expected64) & ~finite
        abs_diff = torch.where(finite, abs_diff, torch.full_like(abs_diff, float("inf")))
        abs_diff = torch.where(same_nonfinite, torch.zeros_like(abs_diff), abs_diff)
        mismatched = ~(abs_diff <= allowed) & ~same_nonfinite
        nonfinite = int((~finite & ~same_nonfinite).sum())
    rel_diff = abs_diff / magnitude.clamp_min(torch.finfo(torch.float64).tiny)
    rel_diff = torch.where(abs_diff == 0, torch.zeros_like(rel_diff), rel_diff)
    return Gap(
        shape=tuple(actual.shape),
        elements=actual64.numel(),
        mismatched=int(mismatched.sum()),
        nonfinite=nonfinite,
        max_abs=float(abs_diff.max()),
        max_abs_index=_unravel(int(abs_diff.argmax()), actual64.shape),
        max_rel=float(rel_diff.max()),
        max_rel_index=_unravel(int(rel_diff.argmax()), actual64.shape),
        atol=tolerance.atol,
        rtol=tolerance.rtol,
    )


CHUNK_ELEMENTS = 1 << 22  # values per step of a scan: a float64 sum of one step takes 32 MB, whatever the tensor's size


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether `tensor` holds no NaN or inf.

    One sum per chunk of `CHUNK_ELEMENTS` decides in the common case, ten times faster than testing each element:
    a NaN or an inf makes the sum non-finite, and a sum of float32 or narrower values cannot overflow float64. A
    non-finite sum (a float64 tensor's may overflow; MPS sums in float32) or another dtype gets the elementwise
    test. Memory stays one chunk's, however large the tensor (a memory-mapped file's is read, not copied).
    """
    import torch

    if not (tensor.is_floating_point() or tensor.is_complex()):
        return True
    flat = tensor.detach().reshape(-1)
    summed = flat.dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16)
    accumulate = torch.float32 if flat.device.type == "mps" else torch.float64  # MPS has no float64
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        chunk = flat[start : start + CHUNK_ELEMENTS]
        if summed and bool(torch.isfinite(chunk.sum(dtype=accumulate))):
            continue
        if not bool(torch.isfinite(chunk).all()):
            return False
    return True


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return tuple(reversed(index))


def _row_label(index: tuple[int, ...], sentences: Sequence[str] | None) -> str:
    if not index or not sentences or index[0] >= len(sentences):
        return ""
    return f" (sentence {index[0]}: {quote(sentences[index[0]])})"


def quote(sentence: str, limit: int = 80) -> str:
    return repr(sentence if len(sentence) <= limit else sentence[:limit] + "…")


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    tolerance: Tolerance,
    *,
    claim: str,
    sentences: Sequence[str] | None = None,
    hint: str = "",
    details: Sequence[str] = (),
) -> Gap:
    """Fail like `torch.testing.assert_close` when `actual` strays from `expected`; return the gap.

    `details` are extra lines (context such as other layers' gaps) printed between the numbers and the hint.
    """
    __tracebackhide__ = True
    gap = measure(actual, expected, tolerance)
    if gap.mismatched:
        raise Mismatch("\n".join(not_close_lines(claim, gap, sentences)), gap, details=details, hint=hint)
    return gap


def not_close_lines(claim: str, gap: Gap, sentences: Sequence[str] | None = None) -> list[str]:
    """The message of two tensors that are not close, as `torch.testing.assert_close` words it; `sentences` name the rows."""
    lines = [
        f"{claim}: tensors are not close!",
        "",
        f"Mismatched elements: {gap.mismatched} / {gap.elements} ({gap.mismatched / gap.elements:.1%})",
    ]
    if gap.nonfinite:
        lines.append(f"Non-finite values (NaN or inf) where the other side differs: {gap.nonfinite}")
    return [
        *lines,
        f"Greatest absolute difference: {gap.max_abs:.6g} at index {gap.max_abs_index}"
        f"{_row_label(gap.max_abs_index, sentences)} (up to {gap.atol:g} allowed)",
        f"Greatest relative difference: {gap.max_rel:.6g} at index {gap.max_rel_index}"
        f"{_row_label(gap.max_rel_index, sentences)} (up to {gap.rtol:g} allowed)",
    ]


def assert_apart(
    actual: torch.Tensor,
    other: torch.Tensor,
    min_abs: float,
    *,
    claim: str,
    sentences: Sequence[str] | None = None,
    hint: str = "",
) -> Gap:
    """Fail when two tensors are the same within `min_abs`: the mirror image of `assert_close`."""
    __tracebackhide__ = True
    gap = replace(measure(actual, other, Tolerance(atol=min_abs, rtol=0.0)), relation="apart")
    if gap.max_abs <= min_abs:
        lines = [
            f"{claim}: tensors are the same, but should differ!",
            "",
            f"Greatest absolute difference: {gap.max_abs:.6g} at index {gap.max_abs_index}"
            f"{_row_label(gap.max_abs_index, sentences)} (more than {min_abs:g} required)",
        ]
        raise Mismatch("\n".join(lines), gap, hint=hint)
    return gap


def severity(metrics: dict[str, Any]) -> float:
    """How close to (or past) its tolerance a closeness check came (`Gap.metrics()`); 0 for other metrics."""
    if metrics.get("relation", "close") != "close" or not isinstance(metrics.get("max_abs"), (int, float)):
        return 0.0
    difference, tolerance = float(metrics["max_abs"]), float(metrics.get("atol") or 0.0)
    if difference == 0:
        return 0.0
    return difference / tolerance if tolerance > 0 else float("inf")
