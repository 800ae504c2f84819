"""Conversion audit: --bert-reference and golden snapshots catch the faults conversions leave behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.reference import assert_agrees_with_reference, assert_checkpoints_agree
from pytest_bertprobe.checks.snapshot import (
    SnapshotError,
    assert_matches_snapshot,
    read_snapshot,
    take_snapshot,
    write_snapshot,
)
from pytest_bertprobe.sentences import PROBE_SENTENCES
from tests.helpers import assert_one_failure, assert_usage_error, load_checkpoint, plant_copy

TinyFactory = Callable[..., Path]
QUERY_WEIGHT = "encoder.layer.0.attention.self.query.weight"
SENTENCES = list(PROBE_SENTENCES)
REFERENCE_TEST = "test_agrees_with_the_reference_layer_by_layer"


def _transpose_query(tensors: dict[str, Any]) -> None:
    tensors[QUERY_WEIGHT] = tensors[QUERY_WEIGHT].T.contiguous()


# Each fault as a conversion leaves it: loadable, self-consistent, and (for the config ones) silent in the weights.
FAULTS: dict[str, dict[str, Any]] = {
    "hidden_act": {"config": {"hidden_act": "gelu_new"}},  # TF BERT's tanh approximation
    "transposed": {"weights": _transpose_query},
    "layer_norm_eps": {"config": {"layer_norm_eps": 1e-6}},  # bert's is 1e-12
}
EXPECTED = {
    "hidden_act": "hidden_act: 'gelu_new' here, 'gelu' in the reference",
    "transposed": f"{QUERY_WEIGHT}: greatest difference * (it is the reference transposed)",
    "layer_norm_eps": "layer_norm_eps: 1e-06 here, 1e-12 in the reference",
}


@pytest.fixture(scope="module")
def copies(tiny_checkpoint: TinyFactory, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The healthy tiny bert, an identical copy, a bf16 copy and one copy per planted fault."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    original = tiny_checkpoint("bert")
    folder = tmp_path_factory.mktemp("copies")
    built = {"original": original, "identical": plant_copy(original, folder / "identical")}
    for name, fault in FAULTS.items():
        built[name] = plant_copy(original, folder / name, **fault)
    bf16 = folder / "bf16"
    AutoModel.from_pretrained(original, dtype=torch.float32).to(torch.bfloat16).save_pretrained(bf16)
    AutoTokenizer.from_pretrained(original).save_pretrained(bf16)
    built["bf16"] = bf16
    return built


def _agree(model: loading.Checkpoint, reference: loading.Checkpoint, **tolerance: Any) -> Any:
    return assert_agrees_with_reference(
        model.model, model.tokenizer, reference.model, reference.tokenizer, sentences=SENTENCES,
        stored_dtypes=(model.source.stored_dtype, reference.source.stored_dtype), **tolerance,
    )  # fmt: skip


# --- the helpers on model objects --------------------------------------------------------------------


def test_identical_copy_agrees_exactly(copies: dict[str, Path]) -> None:
    agreement = _agree(load_checkpoint(copies["identical"]), load_checkpoint(copies["original"]))
    assert set(agreement.metrics()["outputs"].values()) == {0.0}
    assert list(agreement.gaps)[:2] == ["embeddings (hidden_states[0])", "layer 1 of 2 (hidden_states[1])"]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_planted_fault_fails_against_the_reference(copies: dict[str, Path], fault: str) -> None:
    with pytest.raises(AssertionError) as failure:
        _agree(load_checkpoint(copies[fault]), load_checkpoint(copies["original"]))
    message = str(failure.value)
    assert "Checkpoint vs reference" in message
    assert any(fnmatch(line.strip(), f"*{EXPECTED[fault]}*") for line in message.splitlines()), message


def test_transposed_weight_names_the_first_diverging_layer_and_the_worst_sentence(copies: dict[str, Path]) -> None:
    with pytest.raises(AssertionError) as failure:
        _agree(load_checkpoint(copies["transposed"]), load_checkpoint(copies["original"]))
    lines = str(failure.value).splitlines()
    assert lines[0] == "Checkpoint vs reference, first diverging output layer 1 of 2 (hidden_states[1]): tensors are not close!"
    assert "Outputs that agree, greatest difference: embeddings (hidden_states[0]) (0)" in lines
    assert any(line.startswith("Greatest absolute difference: ") and "(sentence " in line and "(up to 0.0001 allowed)" in line for line in lines)
    assert any(line.startswith("Worst sentence: ") for line in lines)
    assert lines[-1].startswith("Hint: everything before layer 1 of 2 (hidden_states[1]) agrees")


def test_layer_norm_eps_diverges_already_in_the_embeddings(copies: dict[str, Path]) -> None:
    with pytest.raises(AssertionError, match=r"first diverging output embeddings \(hidden_states\[0\]\)") as failure:
        _agree(load_checkpoint(copies["layer_norm_eps"]), load_checkpoint(copies["original"]))
    assert "Hint: the embeddings differ" in str(failure.value)


def test_tokenizers_that_disagree_are_reported_before_any_output(copies: dict[str, Path], tmp_path: Path) -> None:
    cased = plant_copy(copies["original"], tmp_path / "cased")
    settings = json.loads((cased / "tokenizer_config.json").read_text())
    (cased / "tokenizer_config.json").write_text(json.dumps({**settings, "do_lower_case": False}))
    tokenizer_json = json.loads((cased / "tokenizer.json").read_text())
    tokenizer_json["normalizer"]["lowercase"] = False
    (cased / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    with pytest.raises(AssertionError) as failure:
        _agree(load_checkpoint(cased), load_checkpoint(copies["original"]))
    lines = str(failure.value).splitlines()
    assert lines[0] == "Tokenizers disagree: input_ids of sentence 7 'Will there be a big typhoon?' differ at position 1"
    assert lines[1].split()[:3] == ["here:", "[CLS]", "W"]  # the cased copy spells out what the original lower-cases
    assert lines[2].split()[:3] == ["reference:", "[CLS]", "will"]
    assert "the outputs were not compared" in lines[3]


def test_model_objects_with_the_same_inputs(copies: dict[str, Path]) -> None:
    """The lower-level helper: one encoding for both models, or each tokenizer's own (compared first)."""
    model, original = load_checkpoint(copies["transposed"]), load_checkpoint(copies["original"])
    inputs = original.tokenizer(SENTENCES[:5], padding=True, return_tensors="pt")
    with pytest.raises(AssertionError, match="first diverging output layer 1 of 2"):
        assert_checkpoints_agree(model.model, original.model, inputs, sentences=SENTENCES[:5])
    shorter = original.tokenizer(SENTENCES[:4], padding=True, return_tensors="pt")
    with pytest.raises(AssertionError, match="Tokenizers disagree: input_ids of sentence 4 differ at position 0"):
        assert_checkpoints_agree(model.model, original.model, inputs, reference_inputs=shorter)


# --- precision: tolerances follow the lower precision of the two ------------------------------------


def test_bf16_copy_passes_at_bf16_tolerances_both_ways_and_fails_at_float32_ones(copies: dict[str, Path]) -> None:
    bf16, original = load_checkpoint(copies["bf16"]), load_checkpoint(copies["original"])
    assert bf16.source.stored_dtype == "bfloat16"
    assert _agree(bf16, original).dtype == "bfloat16"  # loaded as float32, but its weights were stored in bf16
    assert _agree(original, bf16).dtype == "bfloat16"  # the other way: a float32 model against a bf16 original
    assert _agree(load_checkpoint(copies["bf16"], "bfloat16"), original).dtype == "bfloat16"  # computed in bf16 too
    with pytest.raises(AssertionError, match=r"\(up to 0.0001 allowed\)"):
        _agree(bf16, original, atol=1e-4, rtol=1e-4)


def test_bf16_copy_of_the_real_minilm_agrees_at_bf16_tolerances(minilm_path: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(minilm_path, dtype=torch.float32).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "bf16")
    original, bf16 = load_checkpoint(minilm_path), load_checkpoint(tmp_path / "bf16", "bfloat16")
    metrics = _agree(bf16, original).metrics()
    assert metrics["compared_at"] == "bfloat16" and 0 < metrics["max_abs"] <= 0.1
    with pytest.raises(AssertionError, match="first diverging output embeddings"):
        _agree(bf16, original, atol=1e-4, rtol=1e-4)


# --- golden snapshots -------------------------------------------------------------------------------


def test_snapshot_round_trip_and_each_planted_fault_fails_it(copies: dict[str, Path], tmp_path: Path) -> None:
    original = load_checkpoint(copies["original"])
    write_snapshot(tmp_path / "snap.json", take_snapshot(original.model, original.tokenizer))
    snapshot = read_snapshot(tmp_path / "snap.json")
    identical = load_checkpoint(copies["identical"])
    assert assert_matches_snapshot(identical.model, identical.tokenizer, snapshot)["max_abs"] == 0.0
    expected = {
        "hidden_act": "Config differences: hidden_act: 'gelu' then, 'gelu_new' now",
        "transposed": f"Weights changed: {QUERY_WEIGHT}",
        "layer_norm_eps": "Config differences: layer_norm_eps: 1e-12 then, 1e-06 now",
    }
    for fault, line in expected.items():
        planted = load_checkpoint(copies[fault])
        with pytest.raises(AssertionError) as failure:
            assert_matches_snapshot(planted.model, planted.tokenizer, snapshot)
        assert line in str(failure.value).splitlines(), (fault, str(failure.value))
        assert str(failure.value).endswith("Hint: if the change is intended, rewrite the snapshot: pytest --bert-snapshot-update")


def test_snapshot_is_dtype_aware(copies: dict[str, Path]) -> None:
    original = load_checkpoint(copies["original"])
    snapshot = take_snapshot(original.model, original.tokenizer)
    bf16 = load_checkpoint(copies["bf16"], "bfloat16")
    metrics = assert_matches_snapshot(bf16.model, bf16.tokenizer, snapshot)
    assert metrics["compared_at"] == "bfloat16" and metrics["max_abs"] > 0
    with pytest.raises(AssertionError, match="Checkpoint vs its snapshot, cls embedding: tensors are not close"):
        assert_matches_snapshot(bf16.model, bf16.tokenizer, snapshot, atol=1e-4, rtol=1e-4)


def test_unreadable_snapshot_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "snap.json").write_text('{"format": "something else"}')
    with pytest.raises(SnapshotError, match="is not a 'pytest-bertprobe snapshot 1' file\nHint: .*--bert-snapshot-update"):
        read_snapshot(tmp_path / "snap.json")


# --- the plugin: options, audit, reports -------------------------------------------------------------


def test_audit_against_the_reference_passes_the_copy_and_fails_each_fault(pytester: pytest.Pytester, copies: dict[str, Path]) -> None:
    models = [f"--bert-model={copies[name]}" for name in ("identical", *FAULTS)]
    result = pytester.runpytest(
        *models, f"--bert-reference={copies['original']}", "-k", REFERENCE_TEST, "-p", "no:randomly",
        "--bert-report-json=report.json",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=3)
    report = json.loads((pytester.path / "report.json").read_text())
    outcomes = {check["model"]: check["outcome"] for check in report["checks"]}
    assert outcomes == {"identical": "passed", "hidden_act": "failed", "transposed": "failed", "layer_norm_eps": "failed"}
    passed = next(check for check in report["checks"] if check["model"] == "identical")
    assert passed["metrics"]["compared_at"] == "float32" and passed["metrics"]["max_abs"] == 0.0
    result.stdout.fnmatch_lines(["*" + EXPECTED["transposed"], "*Failing batch (1 sentence):*"])


def test_audit_bf16_copy_passes_and_fails_with_float32_tolerances(pytester: pytest.Pytester, copies: dict[str, Path]) -> None:
    args = (f"--bert-model={copies['bf16']}", f"--bert-reference={copies['original']}", "-k", REFERENCE_TEST)
    pytester.runpytest(*args).assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nbert_tolerances =\n    reference_agreement = 1e-4 1e-4\n")
    result = pytester.runpytest(*args)
    assert_one_failure(result, ["*Compared at bfloat16 tolerances.*"])


def test_snapshot_is_written_then_guards_the_checkpoint_in_place(pytester: pytest.Pytester, copies: dict[str, Path]) -> None:
    checkpoint = pytester.path / "ckpt" / "model"
    shutil.copytree(copies["original"], checkpoint)
    args = (f"--bert-model={checkpoint}", "-k", "golden_snapshot", "-rs")
    missing = pytester.runpytest(*args)
    missing.assert_outcomes(skipped=1)
    missing.stdout.fnmatch_lines(["*no golden snapshot at *ckpt-model.json: run once with --bert-snapshot-update*"])
    pytester.runpytest(*args, "--bert-snapshot-update").assert_outcomes(passed=1)
    assert (pytester.path / "bertprobe-snapshots" / "ckpt-model.json").is_file()
    pytester.runpytest(*args).assert_outcomes(passed=1)
    shutil.rmtree(checkpoint)
    shutil.copytree(copies["transposed"], checkpoint)  # the checkpoint regresses in place
    result = pytester.runpytest(*args)
    assert_one_failure(result, ["*Checkpoint vs its snapshot, * embedding: tensors are not close!", f"*Weights changed: {QUERY_WEIGHT}"])


def test_no_reference_skips_with_the_reason(pytester: pytest.Pytester, copies: dict[str, Path]) -> None:
    result = pytester.runpytest(f"--bert-model={copies['original']}", "-k", REFERENCE_TEST, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no reference to compare with: pass --bert-reference=PATH_OR_HUB_ID*"])


def test_bad_reference_is_a_usage_error(pytester: pytest.Pytester, copies: dict[str, Path]) -> None:
    assert_usage_error(
        pytester.runpytest(f"--bert-model={copies['original']}", "--bert-reference=no/such/folder/here"),
        "--bert-reference 'no/such/folder/here': no such folder",
    )
    assert_usage_error(
        pytester.runpytest(f"--bert-reference={copies['original']}"),
        "--bert-reference needs a checkpoint to compare: pass --bert-model=PATH_OR_HUB_ID",
    )
