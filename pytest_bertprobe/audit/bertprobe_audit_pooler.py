"""Audit: the seed's questions on real weights. Is [CLS] the pooler? How are they related?"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.anatomy import PoolerAnatomy
from pytest_bertprobe.assertions import assert_cls_differs_from_pooler, assert_pooler_is_dense_tanh_of_cls
from pytest_bertprobe.report import attach_metrics
from pytest_bertprobe.sentences import SEED_SENTENCES



def _require_pooler(anatomy: PoolerAnatomy) -> None:
    if not anatomy.checkable:
        pytest.skip(anatomy.reason)


@pytest.mark.bertprobe_audit(check="pooler_relation")
def test_pooler_is_dense_tanh_of_cls(
    request: pytest.FixtureRequest, bert_model: Any, bert_seed_inputs: Any, bert_anatomy: PoolerAnatomy
) -> None:
    """Q2: pooler_output is tanh(dense(last_hidden_state[:, 0])) with the checkpoint's own pooler."""
    _require_pooler(bert_anatomy)
    gap = assert_pooler_is_dense_tanh_of_cls(bert_model, bert_seed_inputs, sentences=SEED_SENTENCES)
    attach_metrics(request.node, gap)


@pytest.mark.bertprobe_audit(check="cls_differs_from_pooler")
def test_cls_is_not_the_pooler(
    request: pytest.FixtureRequest, bert_model: Any, bert_seed_inputs: Any, bert_anatomy: PoolerAnatomy
) -> None:
    """Q1: the [CLS] hidden state and pooler_output are different vectors."""
    _require_pooler(bert_anatomy)
    gap = assert_cls_differs_from_pooler(bert_model, bert_seed_inputs, sentences=SEED_SENTENCES)
    attach_metrics(request.node, gap)
