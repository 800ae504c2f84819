"""Public assertion helpers: usable inside and outside pytest, each raising `AssertionError`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare, probes
from pytest_bertprobe.anatomy import identify_activation, require_checkable_pooler
from pytest_bertprobe.tolerances import model_dtype, tolerance_for

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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

    forward = probes.run(model, inputs)
    anatomy = require_checkable_pooler(model, forward)
    assert anatomy.dense is not None and forward.pooler_output is not None
    with torch.inference_mode():
        expected = torch.tanh(anatomy.dense(forward.last_hidden_state[:, 0]))
    activation = identify_activation(anatomy, forward)
    hint = (
        f"the pooler's activation behaves like {activation}, not tanh; was it replaced during conversion?"
        if activation not in (None, "tanh", "unknown")
        else "the pooler does not read last_hidden_state[:, 0]: check what feeds it and where [CLS] sits"
    )
    return compare.assert_close(
        forward.pooler_output,
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
    forward = probes.run(model, inputs)
    require_checkable_pooler(model, forward)
    assert forward.pooler_output is not None
    return compare.assert_apart(
        forward.pooler_output,
        forward.last_hidden_state[:, 0],
        min_diff if min_diff is not None else tolerance_for("cls_differs_from_pooler", model_dtype(model)).atol,
        claim="pooler_output differs from last_hidden_state[:, 0]",
        sentences=sentences,
        hint="a pooler that returns the [CLS] state unchanged is an identity pooler; "
        "consumers reading pooler_output get no trained projection",
    )
