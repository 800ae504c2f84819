"""The one comparison helper: numbers, locations and edge cases of its message."""

from __future__ import annotations

import pytest

from pytest_bertprobe.compare import Mismatch, Tolerance, assert_apart, assert_close, measure

torch = pytest.importorskip("torch")


def test_measure_locates_greatest_absolute_and_relative_differences() -> None:
    expected = torch.tensor([[1.0, 2.0], [0.001, 4.0]])
    actual = torch.tensor([[1.0, 2.5], [0.002, 4.0]])
    gap = measure(actual, expected, Tolerance(atol=1e-6, rtol=0.0))
    assert (gap.max_abs_index, gap.max_rel_index, gap.mismatched) == ((0, 1), (1, 0), 2)
    assert gap.max_abs == pytest.approx(0.5) and gap.max_rel == pytest.approx(1.0)


def test_nan_is_a_mismatch_and_is_counted() -> None:
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = float("nan")
    with pytest.raises(Mismatch, match=r"Mismatched elements: 1 / 6 \(16.7%\)\nNon-finite values \(NaN or inf\) where the other side differs: 1\nGreatest absolute difference: inf at index \(1, 2\)"):
        assert_close(actual, expected, Tolerance(1e-6, 1e-5), claim="x")


def test_nan_never_equals_nan_but_the_same_infinity_does() -> None:
    nan = torch.tensor([float("nan"), 1.0])
    assert measure(nan, nan.clone(), Tolerance(0.0, 0.0)).mismatched == 1
    infinity = torch.tensor([float("inf"), 1.0])
    assert assert_close(infinity, infinity.clone(), Tolerance(0.0, 0.0), claim="x").mismatched == 0


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(AssertionError, match=r"shapes do not match: \(2,\) != \(3,\)"):
        assert_close(torch.zeros(2), torch.zeros(3), Tolerance(0.0, 0.0), claim="x")


def test_failure_names_the_sentence_of_the_worst_row_and_carries_the_gap() -> None:
    with pytest.raises(Mismatch) as failure:
        assert_close(torch.tensor([[0.0], [3.0]]), torch.zeros(2, 1), Tolerance(0.1, 0.0), claim="x", sentences=["a", "天气"], hint="look")
    assert "at index (1, 0) (sentence 1: '天气') (up to 0.1 allowed)" in str(failure.value)
    assert str(failure.value).endswith("Hint: look")
    assert failure.value.gap.max_abs == 3.0


def test_apart_passes_when_tensors_differ_and_fails_when_equal() -> None:
    assert assert_apart(torch.ones(2), torch.zeros(2), 1e-3, claim="x").max_abs == 1.0
    with pytest.raises(Mismatch, match=r"\(more than 0.001 required\)"):
        assert_apart(torch.ones(2), torch.ones(2), 1e-3, claim="x")


@pytest.mark.parametrize(
    "values, dtype, finite",
    [
        ([1.0, 2.0], torch.float32, True),
        ([3e38, 3e38], torch.float32, True),  # the float32 sum overflows; the float64 one does not
        ([1e308, 1e308], torch.float64, True),  # the float64 sum overflows: decided element by element
        ([1.0, float("nan")], torch.float32, False),
        ([1.0, float("inf")], torch.float16, False),
        ([float("inf"), -float("inf")], torch.bfloat16, False),  # the sum is NaN
        ([-float("inf"), 1.0], torch.float64, False),
        ([], torch.float32, True),
        ([1, 2], torch.int64, True),
    ],
)
def test_all_finite_agrees_with_the_elementwise_test(values: list[float], dtype: object, finite: bool) -> None:
    from pytest_bertprobe.compare import all_finite

    tensor = torch.tensor(values, dtype=dtype)  # type: ignore[arg-type]
    assert all_finite(tensor) is finite is bool(torch.isfinite(tensor).all())
    if tensor.is_floating_point():
        assert all_finite(tensor.clone().requires_grad_()) is finite
    assert all_finite(torch.tensor([1 + 1j, complex(values[0] if values else 0.0)])) is bool(
        torch.isfinite(torch.tensor([complex(values[0] if values else 0.0)])).all()
    )
