"""Audit: the seed's questions on real weights. Is [CLS] the pooler? How are they related? And is the pooler sound?

The first two tests request `bert_anatomy` so the summary table shows where each model's pooler lives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_bertprobe.audit import plot_data
from pytest_bertprobe.audit.causes import nonfinite_weights
from pytest_bertprobe.audit.harness import (
    encode_batch,
    given_batches,
    record_plot_data,
    run_check,
    run_on_batch,
)
from pytest_bertprobe.checkpoint.anatomy import PoolerAnatomy, require_checkable_pooler
from pytest_bertprobe.checks.pooler import (
    assert_cls_differs_from_pooler,
    assert_pooler_in_tanh_range,
    assert_pooler_is_dense_tanh_of_cls,
    assert_pooler_not_degenerate,
)
from pytest_bertprobe.compare import Gap, all_finite
from pytest_bertprobe.errors import NotApplicable
from pytest_bertprobe.forward import cache
from pytest_bertprobe.sentences import PROBE_SENTENCES
from pytest_bertprobe.strategies import Sentence


@pytest.mark.bertprobe_audit(check="pooler_relation")
@given_batches
def test_pooler_is_dense_tanh_of_cls(
    request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, bert_anatomy: PoolerAnatomy, batch: list[Sentence]
) -> None:
    """Q2: pooler_output is tanh(dense(last_hidden_state[:, 0])) with the checkpoint's own pooler."""
    run_on_batch(request, assert_pooler_is_dense_tanh_of_cls, bert_model, bert_tokenizer, batch)


@pytest.mark.bertprobe_audit(check="cls_differs_from_pooler")
@given_batches
def test_cls_is_not_the_pooler(
    request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, bert_anatomy: PoolerAnatomy, batch: list[Sentence]
) -> None:
    """Q1: the [CLS] hidden state and pooler_output are different vectors."""
    sentences, inputs = encode_batch(bert_model, bert_tokenizer, batch)
    record_plot_data(request, plot_data.cls_pooler_cosines, bert_model, inputs, sentences)
    run_check(request, assert_cls_differs_from_pooler, bert_model, inputs, sentences=sentences)


def _on_finite_pooler(check: Callable[..., Gap]) -> Callable[..., Gap]:
    """`check`, unless the pooler is absent (a skip) or already non-finite (outputs_finite reports that)."""

    def guarded(model: Any, inputs: Any, **kwargs: Any) -> Gap:
        outputs = cache.forward(model, inputs)
        # The audited model's own anatomy: an overridden bert_model may differ from the checkpoint's load.
        require_checkable_pooler(model, outputs)
        if not all_finite(outputs.pooler_output):
            raise NotApplicable(nonfinite_weights(model) or "pooler_output holds NaN/inf: outputs_finite reports it")
        return check(model, inputs, **kwargs)

    return guarded


@pytest.mark.bertprobe_audit(check="pooler_not_degenerate")
def test_pooler_is_not_constant(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """Distinct sentences give distinct pooler outputs (fixed sentences: generated ones may tokenize alike)."""
    inputs = cache.encode(bert_tokenizer, PROBE_SENTENCES, bert_model.device)
    record_plot_data(request, plot_data.pooler_preactivation, bert_model, inputs)
    run_check(request, _on_finite_pooler(assert_pooler_not_degenerate), bert_model, inputs, sentences=PROBE_SENTENCES)


@pytest.mark.bertprobe_audit(check="pooler_range")
@given_batches
def test_pooler_stays_in_tanh_range(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: list[Sentence]) -> None:
    """A tanh pooler's output lies in [-1, 1]."""
    sentences, inputs = encode_batch(bert_model, bert_tokenizer, batch)
    run_check(request, _on_finite_pooler(assert_pooler_in_tanh_range), bert_model, inputs, sentences=sentences)
