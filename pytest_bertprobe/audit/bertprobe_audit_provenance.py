"""Audit: where the pooler's weights came from, whether it is constant, and whether outputs are finite.

Policy: fail what breaks every consumer (pooler weights missing: each load draws a new random pooler),
report what matters only to some (an untrained pooler, unless `--bert-embedding=pooler` declares it the
sentence embedding).
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from pytest_bertprobe import loading, probes
from pytest_bertprobe.anatomy import NoPoolerError, locate_pooler
from pytest_bertprobe.provenance import (
    assert_outputs_finite,
    assert_pooler_in_tanh_range,
    assert_pooler_not_degenerate,
    inspect_pooler_provenance,
    require_verdict,
)
from pytest_bertprobe.report import attach_metrics
from pytest_bertprobe.sentences import PROBE_SENTENCES
from pytest_bertprobe.session import probe_session


@pytest.fixture(scope="module")
def _probe_inputs(bert_model: Any, bert_tokenizer: Any) -> Any:
    """The probe sentences (seed, English, edge cases), one batch shared by the checks below."""
    return probes.encode(bert_tokenizer, PROBE_SENTENCES, bert_model.device)


def _skip(reason: str) -> NoReturn:
    """One skip site, so the summary groups a model's pooler skips into one line."""
    pytest.skip(reason)


def _require_finite_pooler(bert_model: Any, inputs: Any) -> None:
    import torch

    # The audited model's own anatomy: an overridden bert_model may differ from the checkpoint's load.
    anatomy = locate_pooler(bert_model)
    if not anatomy.checkable:
        _skip(anatomy.reason)
    output = probes.run(bert_model, inputs).pooler_output
    if output is None:
        _skip(f"{type(bert_model).__name__} returned pooler_output=None")
    if not bool(torch.isfinite(output).all()):
        _skip("pooler_output holds NaN/inf: outputs_finite reports it")


@pytest.mark.bertprobe_audit(check="pooler_provenance")
def test_pooler_weights_come_from_the_checkpoint(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any
) -> None:
    """Pooler weights are in the checkpoint and equal the file; an untrained pooler is reported, not failed."""
    provenance = inspect_pooler_provenance(bert_checkpoint, model=bert_model)
    attach_metrics(request.node, provenance.metrics())
    declared_pooler = probe_session(request.config).settings.embedding == "pooler"
    accept = ("trained",) if declared_pooler else ("trained", "untrained")
    hint = (
        "--bert-embedding=pooler declares pooler_output as the sentence embedding, but this pooler "
        "cannot serve as one: use cls or mean, or fine-tune the pooler"
        if declared_pooler and provenance.verdict == "untrained"
        else None
    )
    try:
        require_verdict(provenance, accept, hint=hint)
    except NoPoolerError as reason:
        _skip(str(reason))


@pytest.mark.bertprobe_audit(check="pooler_not_degenerate")
def test_pooler_is_not_constant(request: pytest.FixtureRequest, bert_model: Any, _probe_inputs: Any) -> None:
    """Distinct sentences give distinct pooler outputs."""
    _require_finite_pooler(bert_model, _probe_inputs)
    gap = assert_pooler_not_degenerate(bert_model, _probe_inputs, sentences=PROBE_SENTENCES)
    attach_metrics(request.node, gap)


@pytest.mark.bertprobe_audit(check="pooler_range")
def test_pooler_stays_in_tanh_range(request: pytest.FixtureRequest, bert_model: Any, _probe_inputs: Any) -> None:
    """A tanh pooler's output lies in [-1, 1]."""
    _require_finite_pooler(bert_model, _probe_inputs)
    gap = assert_pooler_in_tanh_range(bert_model, _probe_inputs, sentences=PROBE_SENTENCES)
    attach_metrics(request.node, gap)


@pytest.mark.bertprobe_audit(check="outputs_finite")
def test_every_output_is_finite(request: pytest.FixtureRequest, bert_model: Any, _probe_inputs: Any) -> None:
    """Every hidden state, last_hidden_state and pooler_output is free of NaN and inf."""
    metrics = assert_outputs_finite(bert_model, _probe_inputs, sentences=PROBE_SENTENCES)
    attach_metrics(request.node, metrics)
