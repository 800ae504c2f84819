"""Audit: the sentence embedding consumers read (declared by --bert-embedding or sentence-transformers' files)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.artefacts import st_pipeline
from pytest_bertprobe.audit.harness import run_check
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checks.embedding import assert_embedding_contract, resolve_embedding
from pytest_bertprobe.errors import EmbeddingConfigError, UnsupportedPoolingError
from pytest_bertprobe.sentences import SEED_SENTENCES
from pytest_bertprobe.session import probe_session


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

    def declared_embedding_is_sound() -> dict[str, Any]:
        checked = assert_embedding_contract(bert_model, bert_seed_inputs, spec, sentences=SEED_SENTENCES)
        library = st_pipeline.declared_pipeline_metrics(requested, bert_checkpoint, spec.kind, bert_seed_inputs, SEED_SENTENCES)
        return {"embedding": spec.kind, "source": spec.source, **checked, **library}

    run_check(request, declared_embedding_is_sound)
