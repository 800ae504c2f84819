"""Audit: the seed's questions on real weights. Is [CLS] the pooler? How are they related?

The tests request `bert_anatomy` so the summary table shows where each model's pooler lives.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe import plot_data
from pytest_bertprobe.anatomy import PoolerAnatomy
from pytest_bertprobe.pooler import assert_cls_differs_from_pooler, assert_pooler_is_dense_tanh_of_cls
from pytest_bertprobe.audit.harness import encode_batch, given_batches, record_plot_data, run_check, run_on_batch
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
