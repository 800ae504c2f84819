"""Audit: what users deploy. Each ONNX export of the checkpoint, run under onnxruntime, against the checkpoint."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.artefacts import onnx_export as onnx_audit
from pytest_bertprobe.artefacts import st_pipeline
from pytest_bertprobe.audit import plot_data
from pytest_bertprobe.audit.harness import audit_batches, record_plot_data, run_check
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checks.embedding import resolve_embedding, sentence_embedding
from pytest_bertprobe.errors import EmbeddingConfigError, UnsupportedPoolingError
from pytest_bertprobe.session import probe_session

NO_EXPORT_REASON = "no ONNX export: none in onnx/*.onnx or model.onnx beside the weights, and no --bert-onnx"


def _declared_embedding(request: pytest.FixtureRequest, checkpoint: Checkpoint) -> Any:
    """The declared sentence embedding as a function of a forward pass (mean where the config cannot say)."""
    import torch

    try:
        kind = resolve_embedding(probe_session(request.config).settings.embedding, checkpoint.source.local_path).kind
        normalized = st_pipeline.normalizes(checkpoint.source.local_path)
    except (EmbeddingConfigError, UnsupportedPoolingError):
        kind, normalized = "mean", False  # embedding_contract reports the config; exports are still compared
    embed = functools.partial(sentence_embedding, kind)
    if not normalized:
        return embed
    return lambda outputs, mask: torch.nn.functional.normalize(embed(outputs, mask).float(), dim=-1)


@pytest.mark.bertprobe_audit(check="onnx_agreement")
def test_onnx_export_agrees_with_the_checkpoint(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_onnx_export: Path | None
) -> None:
    """A float export reproduces every output on batches of every shape; a quantized one ranks and retrieves alike."""
    if bert_onnx_export is None:
        pytest.skip(NO_EXPORT_REASON)
    missing = onnx_audit.missing_runtime()
    if missing:
        pytest.skip(missing)
    label = onnx_audit.export_label(bert_onnx_export, bert_checkpoint.source.local_path)
    export = onnx_audit.open_export(bert_onnx_export, label, bert_checkpoint.device)
    batches = audit_batches(request, bert_checkpoint.model, bert_checkpoint.tokenizer)
    measured: Any = None
    try:
        measured = run_check(request, onnx_audit.assert_export_matches, export, bert_checkpoint.model, batches, _declared_embedding(request, bert_checkpoint))
    except AssertionError as failure:
        measured = getattr(failure, "metrics", None)
        raise
    finally:
        record_plot_data(request, plot_data.export_differences, measured)
