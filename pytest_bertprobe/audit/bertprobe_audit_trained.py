"""Audit: the weights were trained. A random model passes every output check; its weights give it away.

Policy: fail a module besides the pooler that looks freshly initialised, re-initialised or shuffled (the pooler is
pooler_provenance's; a weight initialised at load is weights_loaded's); `--bert-allow-untrained` reports it.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import run_check
from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.trained import assert_weights_trained


@pytest.mark.bertprobe_audit(check="weights_trained")
def test_weights_look_trained(request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: Any) -> None:
    """No LayerNorm at 1 and 0, no zero bias, no matrix as even and as bulk-bound as a random draw."""
    run_check(request, assert_weights_trained, bert_checkpoint, model=bert_model)
