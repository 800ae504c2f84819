"""Audit: the checkpoint against its original (`--bert-reference`) and against its golden snapshot."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_bertprobe.audit import plot_data
from pytest_bertprobe.audit.harness import given_batches, record_plot_data, run_check
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checks import snapshot
from pytest_bertprobe.checks.reference import assert_agrees_with_reference
from pytest_bertprobe.session import probe_session
from pytest_bertprobe.strategies import Sentence, materialize


@pytest.mark.bertprobe_audit(check="reference_agreement")
@given_batches
def test_agrees_with_the_reference_layer_by_layer(
    request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_reference: Checkpoint, batch: list[Sentence]
) -> None:
    """same token ids, then embeddings, every layer and the pooler within tolerance of the original."""
    sentences = materialize(batch, bert_checkpoint.tokenizer)
    stored_dtypes = (bert_checkpoint.source.stored_dtype, bert_reference.source.stored_dtype)
    record_plot_data(
        request, plot_data.layer_differences, bert_checkpoint.model, bert_checkpoint.tokenizer,
        bert_reference.model, bert_reference.tokenizer, sentences, stored_dtypes,
    )  # fmt: skip
    run_check(
        request, assert_agrees_with_reference,
        bert_checkpoint.model, bert_checkpoint.tokenizer, bert_reference.model, bert_reference.tokenizer,
        sentences=sentences, stored_dtypes=stored_dtypes,
    )  # fmt: skip


@pytest.mark.bertprobe_audit(check="golden_snapshot")
def test_matches_its_golden_snapshot(request: pytest.FixtureRequest, bert_checkpoint: Checkpoint, bert_model: Any) -> None:
    """The probe sentences' embeddings, the config and the weights are what the snapshot recorded."""
    settings = probe_session(request.config).settings
    name = snapshot.snapshot_name(bert_checkpoint.source, request.config.rootpath)
    path = snapshot.snapshot_path(request.config.rootpath / settings.snapshot_dir, name)
    if settings.snapshot_update:

        def write() -> dict[str, Any]:
            snapshot.write_snapshot(path, snapshot.take_snapshot(bert_model, bert_checkpoint.tokenizer))
            return {"snapshot": str(path), "written": True}

        run_check(request, write)  # a pass that raises is reported once, by the check that owns it
        return
    if not os.path.lexists(path):  # something else there (a folder, a pipe) fails read_snapshot, naming it
        pytest.skip(f"no golden snapshot at {path}: run once with --bert-snapshot-update to write it")
    stored = snapshot.read_snapshot(path)
    record_plot_data(request, plot_data.snapshot_differences, bert_model, bert_checkpoint.tokenizer, stored)
    run_check(request, snapshot.assert_matches_snapshot, bert_model, bert_checkpoint.tokenizer, stored)
