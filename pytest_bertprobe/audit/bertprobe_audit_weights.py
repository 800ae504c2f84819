"""Audit: the model in memory is the checkpoint on disk, and every tensor the checkpoint stores is finite.

Policy: fail a weight that transformers initialised at random at load (renamed or absent keys), a loaded weight
unlike the file, and a classifier claimed by config.architectures but absent; report what only looks untrained.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import run_check
from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.weights import assert_weights_finite, assert_weights_loaded


@pytest.mark.bertprobe_audit(check="weights_loaded")
def test_every_weight_comes_from_the_checkpoint(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any
) -> None:
    """Each parameter and persistent buffer is the file's, tied to it, or a computed buffer; nothing random."""
    run_check(request, assert_weights_loaded, bert_checkpoint, model=bert_model)


@pytest.mark.bertprobe_audit(check="weights_finite")
def test_every_stored_tensor_is_finite(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any
) -> None:
    """No tensor of the checkpoint's files holds NaN or inf, whether or not a probe sentence reaches it."""
    run_check(request, assert_weights_finite, bert_checkpoint, model=bert_model)
