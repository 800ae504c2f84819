"""Session-scoped fixtures, parametrized over every `--bert-model`; torch loads only when one is used."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checkpoint.anatomy import PoolerAnatomy, describe_pooler
from pytest_bertprobe.checkpoint.frozen_imports import import_seconds
from pytest_bertprobe.checkpoint.load_failure import stop_run
from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.errors import CheckpointError, ForwardError
from pytest_bertprobe.forward import cache
from pytest_bertprobe.sentences import SEED_SENTENCES
from pytest_bertprobe.session import probe_session

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

NO_MODEL_REASON = "no checkpoint to audit: pass --bert-model=PATH_OR_HUB_ID or set bert_models in your ini"


@pytest.fixture(scope="session")
def bert_checkpoint(request: pytest.FixtureRequest) -> Iterator[loading.Checkpoint]:
    """The checkpoint under audit, loaded once; released before the next `--bert-model` loads."""
    source: Source | None = getattr(request, "param", None)
    if source is None:
        pytest.skip(NO_MODEL_REASON)
    session = probe_session(request.config)
    checkpoint_id = session.ids[session.sources.index(source)]
    imports_before = import_seconds()
    try:
        checkpoint = loading.load_checkpoint(source, checkpoint_id, **loading.load_options(session.settings))
    except CheckpointError as error:
        stop_run(str(error))
    record = session.record(checkpoint_id)
    record.import_seconds += import_seconds() - imports_before  # the process' one-time imports, when this load paid them
    record.loads += 1
    record.load_seconds += checkpoint.load_seconds
    record.model_type = checkpoint.model_type
    record.model_class = type(checkpoint.model).__name__
    record.head_class = type(checkpoint.head_model).__name__ if checkpoint.head_model is not None else ""
    record.device = str(checkpoint.device)
    with cache.shared(checkpoint.model, checkpoint.tokenizer):
        yield checkpoint
        record.forward_passes = cache.forward_passes(checkpoint.model)
    del checkpoint
    gc.collect()


@pytest.fixture(scope="session")
def bert_reference(request: pytest.FixtureRequest) -> Iterator[loading.Checkpoint]:
    """The trusted original (`--bert-reference`), loaded once in float32 on the audit device."""
    session = probe_session(request.config)
    if session.reference is None:
        pytest.skip("no reference to compare with: pass --bert-reference=PATH_OR_HUB_ID (the original checkpoint)")
    options = {**loading.load_options(session.settings), "dtype": "float32"}  # the original at full precision
    try:
        checkpoint = loading.load_checkpoint(session.reference, "reference", **options)
    except CheckpointError as error:
        stop_run(str(error))
    with cache.shared(checkpoint.model, checkpoint.tokenizer):
        yield checkpoint


@pytest.fixture(scope="session")
def bert_onnx_export(request: pytest.FixtureRequest) -> Path | None:
    """An ONNX export of the checkpoint (its `onnx/*.onnx`, `model.onnx`, or a `--bert-onnx` file); None when it has none."""
    return getattr(request, "param", None)


@pytest.fixture(scope="session")
def bert_model(bert_checkpoint: loading.Checkpoint) -> PreTrainedModel:
    """The model under audit, in eval mode on `--bert-device` with `--bert-dtype`; treat it as read-only."""
    return bert_checkpoint.model


@pytest.fixture(scope="session")
def bert_head_model(bert_checkpoint: loading.Checkpoint) -> PreTrainedModel | None:
    """The saved architecture with its heads (BertForSequenceClassification, ...), or None for a bare encoder."""
    return bert_checkpoint.head_model


@pytest.fixture(scope="session")
def bert_tokenizer(bert_checkpoint: loading.Checkpoint) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the checkpoint."""
    return bert_checkpoint.tokenizer


@pytest.fixture(scope="session")
def bert_seed_inputs(bert_checkpoint: loading.Checkpoint) -> Any:
    """The seed's five sentences, tokenized as the seed did (padded, truncated)."""
    return cache.encode(bert_checkpoint.tokenizer, SEED_SENTENCES, bert_checkpoint.device)


@pytest.fixture(scope="session")
def bert_anatomy(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: PreTrainedModel, bert_seed_inputs: Any
) -> PoolerAnatomy:
    """Where the pooler lives: kind, dense layer, activation (found numerically), what it reads."""
    try:
        outputs = cache.forward(bert_model, bert_seed_inputs)
    except ForwardError as crash:
        pytest.skip(crash.skip_reason)
    anatomy = describe_pooler(bert_model, outputs)
    record = probe_session(request.config).record(bert_checkpoint.id)
    record.pooler_kind, record.pooler_activation = anatomy.kind.value, anatomy.activation
    return anatomy
