"""Audit: what reads the encoder's outputs. Pretraining heads (the seed's section 4) and the sentence embedding."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.embedding import (
    EmbeddingConfigError,
    UnsupportedPoolingError,
    assert_embedding_contract,
    resolve_embedding,
)
from pytest_bertprobe.heads import NoHeadError, assert_heads_read_their_inputs
from pytest_bertprobe.loading import Checkpoint
from pytest_bertprobe.report import attach_metrics
from pytest_bertprobe.sentences import SEED_SENTENCES
from pytest_bertprobe.session import probe_session

NO_HEAD_REASON = "checkpoint has no NSP/SOP or MLM head"


@pytest.mark.bertprobe_audit(check="head_relation")
def test_heads_read_what_pretraining_fed_them(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_seed_inputs: Any
) -> None:
    """NSP/SOP logits == head(pooler_output); MLM (and ELECTRA discriminator) logits == head(last_hidden_state)."""
    head_model = bert_checkpoint.head_model
    if head_model is None:
        pytest.skip(f"{NO_HEAD_REASON} (saved as {type(bert_checkpoint.model).__name__})")
    try:
        gaps = assert_heads_read_their_inputs(head_model, bert_seed_inputs, sentences=SEED_SENTENCES)
    except NoHeadError as error:  # a classifier's head, or logits computed outside any module
        pytest.skip(str(error))
    worst = max(gaps.values(), key=lambda gap: gap.max_abs)
    attach_metrics(request.node, {**worst.metrics(), "heads": {name: gap.metrics() for name, gap in gaps.items()}})


@pytest.mark.bertprobe_audit(check="embedding_contract")
def test_declared_sentence_embedding_is_sound(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_model: Any, bert_seed_inputs: Any
) -> None:
    """The embedding consumers use (--bert-embedding, or sentence-transformers' config) is computable and sound."""
    requested = probe_session(request.config).settings.embedding
    try:
        spec = resolve_embedding(requested, bert_checkpoint.source.local_path)
    except UnsupportedPoolingError as error:
        pytest.skip(str(error))
    except EmbeddingConfigError as error:
        pytest.fail(f"--bert-embedding={requested}: {error}\nHint: fix or remove the file, or pass --bert-embedding", pytrace=False)
    attach_metrics(request.node, {"embedding": spec.kind, "source": spec.source})
    metrics = assert_embedding_contract(bert_model, bert_seed_inputs, spec, sentences=SEED_SENTENCES)
    attach_metrics(request.node, metrics)
