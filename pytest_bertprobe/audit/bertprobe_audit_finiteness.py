"""Audit: every output of a pass is finite (non-finite weights are the weights checks' to report)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.causes import nonfinite_weights
from pytest_bertprobe.audit.harness import encode_batch, given_batches, run_check
from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.finiteness import assert_outputs_finite
from pytest_bertprobe.errors import NotApplicable
from pytest_bertprobe.strategies import Sentence


def _unless_weights_report_it(model: Any, inputs: Any, **kwargs: Any) -> dict[str, Any]:
    """`assert_outputs_finite`, except where non-finite weights explain it: one failure for one cause."""
    __tracebackhide__ = True
    try:
        return assert_outputs_finite(model, inputs, **kwargs)
    except AssertionError:
        explained = nonfinite_weights(model)
        if explained:
            raise NotApplicable(explained) from None
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
