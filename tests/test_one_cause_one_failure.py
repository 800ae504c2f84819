"""One cause, one failure: a broken weight fails the check that owns it; the checks it explains skip and name that check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import plant_copy


def _outcomes(report: Path) -> dict[str, dict[str, Any]]:
    return {check["check"]: check for check in json.loads(report.read_text(encoding="utf-8"))["checks"]}


def _plant_inf(tensors: dict[str, Any]) -> None:
    tensors["encoder.layer.0.attention.output.dense.weight"][0, 0] = float("inf")  # every pass reads it


@pytest.mark.real_weights
def test_an_inf_weight_every_pass_reads_is_one_failed_check(pytester: pytest.Pytester, minilm_path: Path, tmp_path: Path) -> None:
    """Before: weights_finite and nine more checks failed, each with its own non-finite message."""
    planted = plant_copy(minilm_path, tmp_path / "minilm-inf", weights=_plant_inf)
    result = pytester.runpytest(f"--bert-model={planted}", "--bert-report-json=report.json")
    checks = _outcomes(pytester.path / "report.json")
    failed = sorted(name for name, check in checks.items() if check["outcome"] == "failed")
    assert failed == ["weights_finite"], result.stdout.str()[-4000:]
    reason = "weights hold NaN/inf (encoder.layer.0.attention.output.dense.weight (1 of 147456 values)): weights_finite reports them"
    explained = {name for name, check in checks.items() if check["outcome"] == "skipped" and reason in check["metrics"].get("reason", "")}
    assert explained == {
        "outputs_finite", "hidden_states", "padding_invariance", "masked_content_invariance", "permutation_equivariance",
        "eager_matches_sdpa", "determinism", "save_load_round_trip", "pooler_relation", "pooler_not_degenerate", "pooler_range",
        "embedding_contract",
    }  # fmt: skip
    assert checks["tokenizer_special_tokens"]["outcome"] == checks["weights_loaded"]["outcome"] == "passed"  # other inputs


@pytest.mark.real_weights
def test_encoder_keys_renamed_by_a_converter_fail_weights_loaded_alone(pytester: pytest.Pytester, minilm_path: Path, tmp_path: Path) -> None:
    """sentence-transformers loads its own random encoder from the same file: its embedding differing is the same cause."""
    pytest.importorskip("sentence_transformers")

    def rename(tensors: dict[str, Any]) -> None:
        for key in [key for key in tensors if key.startswith("encoder.layer.")]:
            tensors[key.replace("encoder.layer.", "encoder.layers.")] = tensors.pop(key)

    planted = plant_copy(minilm_path, tmp_path / "minilm-layers", weights=rename)
    result = pytester.runpytest(f"--bert-model={planted}", "-k", "weights or embedding", "--bert-report-json=report.json", "-rs")
    checks = _outcomes(pytester.path / "report.json")
    assert checks["weights_loaded"]["outcome"] == "failed" and checks["embedding_contract"]["outcome"] == "skipped", result.stdout.str()[-4000:]
    result.stdout.fnmatch_lines(["SKIPPED * the file lacks 96 weights (encoder.layer.0.*) that each load initialised at random: weights_loaded reports them"])
