"""Audit: where the pooler's weights came from, whether it is constant, and whether outputs are finite.

Policy: fail what breaks every consumer (pooler weights missing: each load draws a new random pooler),
report what matters only to some (an untrained pooler, unless `--bert-embedding=pooler` declares it the
sentence embedding).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_bertprobe import loading, plot_data, forward
from pytest_bertprobe.anatomy import require_checkable_pooler
from pytest_bertprobe.audit.harness import encode_batch, given_batches, record_plot_data, run_check
from pytest_bertprobe.compare import Gap
from pytest_bertprobe.errors import NotApplicable
from pytest_bertprobe.finiteness import assert_outputs_finite, nonfinite_parameters
from pytest_bertprobe.pooler import assert_pooler_in_tanh_range, assert_pooler_not_degenerate
from pytest_bertprobe.provenance import inspect_pooler_provenance, require_verdict
from pytest_bertprobe.report import record_result
from pytest_bertprobe.sentences import PROBE_SENTENCES
from pytest_bertprobe.session import probe_session
from pytest_bertprobe.strategies import Sentence


def _on_finite_pooler(check: Callable[..., Gap]) -> Callable[..., Gap]:
    """`check`, unless the pooler is absent (a skip) or already non-finite (outputs_finite reports that)."""

    def guarded(model: Any, inputs: Any, **kwargs: Any) -> Gap:
        import torch

        outputs = forward.forward(model, inputs)
        # The audited model's own anatomy: an overridden bert_model may differ from the checkpoint's load.
        require_checkable_pooler(model, outputs)
        if not bool(torch.isfinite(outputs.pooler_output).all()):
            raise NotApplicable("pooler_output holds NaN/inf: outputs_finite reports it")
        return check(model, inputs, **kwargs)

    return guarded


@pytest.mark.bertprobe_audit(check="pooler_provenance")
def test_pooler_weights_come_from_the_checkpoint(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any
) -> None:
    """Pooler weights are in the checkpoint and equal the file; an untrained pooler is reported, not failed."""
    provenance = inspect_pooler_provenance(bert_checkpoint, model=bert_model)
    record_result(request.node, provenance.metrics())
    declared_pooler = probe_session(request.config).settings.embedding == "pooler"
    accept = ("trained",) if declared_pooler else ("trained", "untrained")
    hint = (
        "--bert-embedding=pooler declares pooler_output as the sentence embedding, but this pooler "
        "cannot serve as one: use cls or mean, or fine-tune the pooler"
        if declared_pooler and provenance.verdict == "untrained"
        else None
    )
    run_check(request, require_verdict, provenance, accept, hint=hint)


@pytest.mark.bertprobe_audit(check="pooler_not_degenerate")
def test_pooler_is_not_constant(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """Distinct sentences give distinct pooler outputs (fixed sentences: generated ones may tokenize alike)."""
    inputs = forward.encode(bert_tokenizer, PROBE_SENTENCES, bert_model.device)
    record_plot_data(request, plot_data.pooler_preactivation, bert_model, inputs)
    run_check(request, _on_finite_pooler(assert_pooler_not_degenerate), bert_model, inputs, sentences=PROBE_SENTENCES)


@pytest.mark.bertprobe_audit(check="pooler_range")
@given_batches
def test_pooler_stays_in_tanh_range(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: list[Sentence]) -> None:
    """A tanh pooler's output lies in [-1, 1]."""
    sentences, inputs = encode_batch(bert_model, bert_tokenizer, batch)
    run_check(request, _on_finite_pooler(assert_pooler_in_tanh_range), bert_model, inputs, sentences=sentences)


def _unless_weights_report_it(model: Any, inputs: Any, **kwargs: Any) -> dict[str, Any]:
    """`assert_outputs_finite`, except where non-finite weights explain it: one failure for one cause."""
    __tracebackhide__ = True
    try:
        return assert_outputs_finite(model, inputs, **kwargs)
    except AssertionError:
        bad = nonfinite_parameters(model)
        if bad:
            raise NotApplicable(
                f"weights hold NaN/inf ({', '.join(bad[:3])}): weights_finite reports them (weights_loaded, if the file is finite)"
            ) from None
        raise


@pytest.mark.bertprobe_audit(check="outputs_finite")
@given_batches
def test_every_output_is_finite(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any, bert_tokenizer: Any, batch: list[Sentence]
) -> None:
    """Every hidden state, last_hidden_state and pooler_output is free of NaN and inf."""
    sentences, inputs = encode_batch(bert_model, bert_tokenizer, batch)
    # The ledger compares only the checkpoint's own load with its files; another model's bad weights fail here.
    check = _unless_weights_report_it if bert_model is bert_checkpoint.model else assert_outputs_finite
    run_check(request, check, bert_model, inputs, sentences=sentences)
