"""Audit: the vocabulary belongs to the weights. Renumbered ids pass every file check; the rows give them away.

Policy: fail when tokens of known word classes lie no closer to their class than random tokens (15% or more of
them), or a common word reads a never-emitted row; skip where the word embeddings look untrained (weights_trained's).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import run_check
from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.vocabulary import assert_vocabulary_matches_rows


@pytest.mark.bertprobe_audit(check="vocabulary_rows")
def test_token_ids_read_their_trained_rows(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any, bert_tokenizer: Any
) -> None:
    """Digits lie with digits and months with months; common words read no [unused*] row."""
    run_check(request, assert_vocabulary_matches_rows, bert_checkpoint, model=bert_model, tokenizer=bert_tokenizer)
