"""Audit: what reads the encoder's outputs: heads (pretraining and fine-tuned) and label maps."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import given_batches, run_check, run_on_batch
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checks.heads.labels import assert_label_map
from pytest_bertprobe.checks.heads.replay import assert_heads_read_their_inputs
from pytest_bertprobe.strategies import Sentence

NO_HEAD_REASON = "checkpoint has no head"


def _saved_as(checkpoint: Checkpoint) -> str:
    """What the file holds: the bare encoder, or a head class that config.architectures claims without its weights."""
    if checkpoint.skipped_head is not None:
        return f"loaded as {type(checkpoint.model).__name__}: {checkpoint.skipped_head.describe()}"
    return f"saved as {type(checkpoint.model).__name__}"


@pytest.mark.bertprobe_audit(check="head_relation")
@given_batches
def test_heads_read_what_their_architecture_promises(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_head_model: Any, bert_tokenizer: Any, batch: list[Sentence]
) -> None:
    """NSP/SOP and BERT-style classifier logits == head(pooler_output); MLM, token and QA logits == head(last_hidden_state); ..."""
    if bert_head_model is None:
        pytest.skip(f"{NO_HEAD_REASON} ({_saved_as(bert_checkpoint)})")
    run_on_batch(request, assert_heads_read_their_inputs, bert_head_model, bert_tokenizer, batch)


@pytest.mark.bertprobe_audit(check="label_map")
def test_label_map_fits_the_classifier(request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_head_model: Any) -> None:
    """num_labels == out_features == len(id2label) == len(label2id); label2id inverts id2label; ids 0..n-1, names unique."""
    if bert_head_model is None:
        pytest.skip(f"checkpoint has no classification head ({_saved_as(bert_checkpoint)})")
    run_check(request, assert_label_map, bert_head_model, config_file=bert_checkpoint.source.config_file)
