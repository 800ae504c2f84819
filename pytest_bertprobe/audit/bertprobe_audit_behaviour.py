"""Audit: the checkpoint behaves like the trained model it claims to be (its declared embedding, masked-LM head, classifier).

Verdicts on training (`Check.training`): `--bert-allow-untrained` reports them instead of failing them.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import run_check
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checks.behaviour.classifier import assert_classifier_not_degenerate
from pytest_bertprobe.checks.behaviour.embedding import assert_embedding_ranks_paraphrases
from pytest_bertprobe.checks.behaviour.masked_lm import assert_masked_tokens_recovered
from pytest_bertprobe.checks.embedding import resolve_embedding
from pytest_bertprobe.errors import EmbeddingConfigError, UnsupportedPoolingError
from pytest_bertprobe.session import probe_session


@pytest.mark.bertprobe_audit(check="embedding_behaviour")
def test_declared_embedding_ranks_paraphrases_first(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_model: Any, bert_tokenizer: Any
) -> None:
    """The declared sentence embedding ranks paraphrases above look-alike distractors, and no other pooling does better."""
    try:
        spec = resolve_embedding(probe_session(request.config).settings.embedding, bert_checkpoint.source.local_path)
    except (UnsupportedPoolingError, EmbeddingConfigError) as error:
        pytest.skip(f"no sentence embedding to judge: {error} (embedding_contract reports it)")
    if not spec.declared:
        pytest.skip(f"no sentence embedding declared ({spec.source.removeprefix('assumed: ')}); pass --bert-embedding to judge one")
    run_check(request, assert_embedding_ranks_paraphrases, bert_model, bert_tokenizer, spec.kind, source=spec.source)


@pytest.mark.bertprobe_audit(check="masked_lm_behaviour")
def test_masked_lm_head_recovers_masked_tokens(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_head_model: Any, bert_tokenizer: Any
) -> None:
    """Each token of natural sentences masked alone: the masked-LM head recovers it far better than chance."""
    _on_head(request, bert_checkpoint, bert_head_model, bert_tokenizer, assert_masked_tokens_recovered, "masked-LM")


@pytest.mark.bertprobe_audit(check="classifier_behaviour")
def test_classifier_is_not_degenerate(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_head_model: Any, bert_tokenizer: Any
) -> None:
    """Over the probe sentences, the classifier's logits move with the input and its prediction is not fixed by a bias."""
    _on_head(request, bert_checkpoint, bert_head_model, bert_tokenizer, assert_classifier_not_degenerate, "classification")


def _on_head(request: pytest.FixtureRequest, checkpoint: Checkpoint, head_model: Any, tokenizer: Any, check: Any, kind: str) -> None:
    if head_model is None:
        pytest.skip(f"checkpoint has no {kind} head (saved as {type(checkpoint.model).__name__})")
    run_check(request, check, head_model, tokenizer)
