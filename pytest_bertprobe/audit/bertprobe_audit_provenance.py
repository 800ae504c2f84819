"""Audit: where the pooler's weights came from.

Policy: fail what breaks every consumer (pooler weights missing: each load draws a new random pooler),
report what matters only to some (an untrained pooler, unless `--bert-embedding=pooler` declares it the
sentence embedding).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import run_check
from pytest_bertprobe.audit.record import record_result
from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.provenance import inspect_pooler_provenance, require_verdict
from pytest_bertprobe.session import probe_session


@pytest.mark.bertprobe_audit(check="pooler_provenance")
def test_pooler_weights_come_from_the_checkpoint(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any
) -> None:
    """Pooler weights are in the checkpoint and equal the file; an untrained pooler is reported, not failed."""
    provenance = inspect_pooler_provenance(bert_checkpoint, model=bert_model)
    record_result(request.node, provenance.metrics())
    declared_pooler = probe_session(request.config).settings.embedding == "pooler"
    accept = ("trained",) if declared_pooler else ("trained", "untrained")
    hint = (
        "--bert-embedding=pooler declares pooler_output as the sentence embedding, but this pooler "
        "cannot serve as one: use cls or mean, or fine-tune the pooler"
        if declared_pooler and provenance.verdict == "untrained"
        else None
    )
    run_check(request, require_verdict, provenance, accept, hint=hint)
