"""The pooler's output checks: the relation to [CLS], distinct from [CLS], tanh's range, not constant.

Each is a public helper usable inside and outside pytest, raising `CheckFailure` (an `AssertionError`) or,
where the model has no such pooler, `NoPoolerError` (a `NotApplicable`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare
from pytest_bertprobe.checkpoint.anatomy import cls_vector, identify_activation, require_checkable_pooler
from pytest_bertprobe.forward import cache
from pytest_bertprobe.tolerances import model_dtype, tolerance_for

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

_EXACT = compare.Tolerance(atol=0.0, rtol=0.0)


def assert_pooler_is_dense_tanh_of_cls(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert `pooler_output == tanh(pooler.dense(last_hidden_state[:, 0]))`, with the model's own dense layer.

    `inputs` is a tokenizer's output; `sentences` (optional) names the rows in a failure message.
    Raises `NoPoolerError` when the model has no such pooler (e.g. DistilBERT, ELECTRA).
    """
    __tracebackhide__ = True
    import torch

    outputs = cache.forward(model, inputs)
    anatomy = require_checkable_pooler(model, outputs)
    assert anatomy.dense is not None and outputs.pooler_output is not None
    with torch.inference_mode():
        expected = torch.tanh(anatomy.dense(outputs.last_hidden_state[:, 0]))
    activation = identify_activation(anatomy, outputs)
    hint = (
        f"the pooler's activation behaves like {activation}, not tanh; was it replaced during conversion?"
        if activation not in (None, "tanh", "unknown")
        else "the pooler does not read last_hidden_state[:, 0]: check what feeds it and where [CLS] sits"
    )
    return compare.assert_close(
        outputs.pooler_output,
        expected,
        tolerance_for("pooler_relation", model_dtype(model), atol=atol, rtol=rtol),
        claim="pooler_output == tanh(pooler.dense(last_hidden_state[:, 0]))",
        sentences=sentences,
        hint=hint,
    )


def assert_cls_differs_from_pooler(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    min_diff: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert the [CLS] hidden state is not `pooler_output` (the seed's Q1): they differ by more than `min_diff`.

    Raises `NoPoolerError` when the model has no pooler, or one that is the identity by design.
    """
    __tracebackhide__ = True
    outputs = cache.forward(model, inputs)
    require_checkable_pooler(model, outputs)
    assert outputs.pooler_output is not None
    return compare.assert_apart(
        outputs.pooler_output,
        outputs.last_hidden_state[:, 0],
        min_diff if min_diff is not None else tolerance_for("cls_differs_from_pooler", model_dtype(model)).atol,
        claim="pooler_output differs from last_hidden_state[:, 0]",
        sentences=sentences,
        hint="a pooler that returns the [CLS] state unchanged is an identity pooler; "
        "consumers reading pooler_output get no trained projection",
    )


def assert_pooler_not_degenerate(
    model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    min_spread: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert distinct sentences give distinct pooler outputs: some row differs from row 0 by more than `min_spread`.

    The spread is max over rows i and dimensions d of |pooler_output[i, d] - pooler_output[0, d]|; `inputs`
    must hold at least two distinct sentences. Raises `NoPoolerError` when the model has no such pooler.
    """
    __tracebackhide__ = True
    outputs = cache.forward(model, inputs)
    anatomy = require_checkable_pooler(model, outputs)
    output = outputs.pooler_output
    assert output is not None
    if output.shape[0] < 2:
        raise ValueError("assert_pooler_not_degenerate needs a batch of at least two distinct sentences")
    limit = min_spread if min_spread is not None else tolerance_for("pooler_not_degenerate", model_dtype(model)).atol
    return compare.assert_apart(
        output,
        output[:1].expand_as(output),
        limit,
        claim="pooler_output differs between distinct sentences (each row against row 0)",
        sentences=sentences,
        hint=_degenerate_hint(anatomy.dense, outputs, limit),
    )


def _degenerate_hint(dense: torch.nn.Linear | None, outputs: cache.Forward, limit: float) -> str:
    if dense is not None and not bool(dense.weight.detach().any()):
        return "the pooler's dense weight is all zero, so pooler_output is tanh(bias) for every input: it was zeroed"
    if outputs.pooler_input is not None:
        cls = cls_vector(outputs.pooler_input)
        if float((cls - cls[:1]).abs().max()) <= limit:
            return "the pooler's input (the [CLS] state) is already the same for every sentence: the encoder ignores it"
    if outputs.pooler_output is not None and bool((outputs.pooler_output.abs() >= 1 - 1e-6).all()):
        return "every value is +-1: tanh is saturated, the pooler weights are far too large"
    return "pooler_output does not depend on the input: check the pooler's weights and what feeds it"


def assert_pooler_in_tanh_range(
    model: PreTrainedModel, inputs: Mapping[str, Any], *, sentences: Sequence[str] | None = None
) -> compare.Gap:
    """Assert a standard pooler's output lies in tanh's range [-1, 1] (NaN is `assert_outputs_finite`'s to report).

    Raises `NoPoolerError` when the model has no such pooler.
    """
    __tracebackhide__ = True
    import torch

    outputs = cache.forward(model, inputs)
    anatomy = require_checkable_pooler(model, outputs)
    assert outputs.pooler_output is not None
    output = torch.where(torch.isnan(outputs.pooler_output), 0.0, outputs.pooler_output)
    activation = identify_activation(anatomy, outputs)
    return compare.assert_close(
        output,
        output.clamp(-1.0, 1.0),
        _EXACT,
        claim="pooler_output within tanh's range [-1, 1] (difference = excess beyond it)",
        sentences=sentences,
        hint=f"the pooler's activation behaves like {activation}, not tanh: the BERT pooler is "
        "tanh(dense(cls)); was the activation replaced or dropped in a conversion?",
    )
