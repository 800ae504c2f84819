"""ONNX exports audited under onnxruntime (`onnx_agreement`): float exports numerically, quantized ones by behaviour."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.artefacts import onnx_export as onnx_audit
from pytest_bertprobe.artefacts import onnx_quantized as onnx_behaviour
from tests.exports import TRACED_SENTENCES, export_onnx, quantize_int8
from tests.helpers import assert_one_failure, assert_usage_error

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TinyFactory = Callable[..., Path]
ONLY_ONNX = ("-p", "no:cacheprovider", "-rs", "-k", "test_onnx_export", "--bert-report-json=report.json")
TEST = "test_onnx_export_agrees_with_the_checkpoint"


def _change_one_weight(model: Any) -> None:
    model.embeddings.LayerNorm.weight[0] += 1.0


def _exports_of(folder: Path, *, changed: bool = True) -> Path:
    """In `folder`'s onnx/: a dynamo export, its int8 quantization, a traced one specialised to one shape, one of a changed weight."""
    export_onnx(folder, folder / "onnx" / "model.onnx")
    quantize_int8(folder / "onnx" / "model.onnx", folder / "onnx" / "model_quantized.onnx")
    export_onnx(folder, folder / "onnx" / "model_traced.onnx", dynamo=False)
    if changed:
        export_onnx(folder, folder / "onnx" / "model_changed.onnx", edit=_change_one_weight)
    return folder


@pytest.fixture(scope="session")
def tiny_with_exports(tiny_checkpoint: TinyFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT with the four exports in its onnx/ folder."""
    return _exports_of(Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path_factory.mktemp("exports") / "tiny")))


@pytest.fixture(scope="session")
def minilm_with_exports(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 (a copy: a link to files outside the folder is refused) with dynamo, int8 and traced exports."""
    folder = Path(shutil.copytree(minilm_path, tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"))
    return _exports_of(folder, changed=False)


def _checks(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    return {check["nodeid"].split("[", 1)[1][:-1]: check for check in report["checks"] if check["check"] == "onnx_agreement"}


def test_tiny_exports_dynamo_and_int8_pass_a_traced_and_a_changed_one_fail(pytester: pytest.Pytester, tiny_with_exports: Path) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_with_exports}", *ONLY_ONNX)
    result.assert_outcomes(passed=2, failed=2)
    checks = _checks(pytester)
    assert {name: check["outcome"] for name, check in checks.items()} == {
        "tiny-onnx/model.onnx": "passed", "tiny-onnx/model_quantized.onnx": "passed",
        "tiny-onnx/model_traced.onnx": "failed", "tiny-onnx/model_changed.onnx": "failed",
    }  # fmt: skip
    dynamo = checks["tiny-onnx/model.onnx"]["metrics"]
    assert dynamo["quantized"] is None and dynamo["max_abs"] < 1e-5 and dynamo["batches"] == 27
    assert dynamo["compared"] == ["last_hidden_state", "pooler_output"] and dynamo["atol"] == 1e-4
    int8 = checks["tiny-onnx/model_quantized.onnx"]["metrics"]
    assert "MatMulInteger ops" in int8["quantized"] and int8["sentences"] > 30
    assert int8["cosine_min"] >= 0.6 and int8["spearman"] >= 0.85 and int8["top_k_overlap"] >= 0.6
    assert int8["thresholds"] == {"cosine_min": 0.6, "spearman": 0.85, "top_k_overlap": 0.6}
    result.stdout.fnmatch_lines_random([
        "E*ONNX export onnx/model_traced.onnx failed on a batch of shape (1, 4) (1 sentence × 4 tokens): *input_ids*Got: 1 Expected: 2*Got: 4 Expected: 5*",
        "E*Hint: the graph is specialised to the shape it was exported with: export with dynamic batch and sequence axes*",
        "E*ONNX export onnx/model_changed.onnx vs the checkpoint, last_hidden_state: tensors are not close!",
        "E*Worst sentence: * in a batch of shape (*) (* × * tokens)",
        "E*Compared at float32 tolerances on 27 batches; 27 disagree",
        "E*Hint: last_hidden_state disagrees on every batch: the export holds other weights*",
    ])


def test_a_traced_export_agrees_on_the_shape_it_was_traced_with(tiny_with_exports: Path) -> None:
    """The control for the failure above: the traced graph is right, only for its one shape."""
    from transformers import AutoModel, AutoTokenizer

    from pytest_bertprobe.checks.embedding import sentence_embedding
    from pytest_bertprobe.forward import cache as forward

    model, tokenizer = AutoModel.from_pretrained(tiny_with_exports).eval(), AutoTokenizer.from_pretrained(tiny_with_exports)
    export = onnx_audit.open_export(tiny_with_exports / "onnx" / "model_traced.onnx", "model_traced.onnx", "cpu")
    batch = [(list(TRACED_SENTENCES), forward.encode(tokenizer, TRACED_SENTENCES))]
    metrics = onnx_audit.assert_export_agrees(export, model, batch, lambda produced, mask: sentence_embedding("mean", produced, mask))
    assert metrics["max_abs"] < 1e-5 and metrics["worst_batch_shape"] == [2, 5]


@pytest.mark.real_weights
def test_real_minilm_dynamo_and_int8_pass_with_behaviour_in_the_report_the_traced_export_fails(
    pytester: pytest.Pytester, minilm_with_exports: Path
) -> None:
    result = pytester.runpytest(f"--bert-model={minilm_with_exports}", *ONLY_ONNX)
    result.assert_outcomes(passed=2, failed=1)
    checks = _checks(pytester)
    dynamo = checks["all-MiniLM-L6-v2-onnx/model.onnx"]["metrics"]
    assert dynamo["max_abs"] < 1e-4 and dynamo["output"] in ("last_hidden_state", "pooler_output")
    int8 = checks["all-MiniLM-L6-v2-onnx/model_quantized.onnx"]["metrics"]
    assert 0.7 < int8["cosine_min"] < 0.95 and int8["cosine_mean"] > 0.9  # measured: 0.82 (the 512-token sentence), 0.93
    assert int8["spearman"] > 0.9 and int8["top_k_overlap"] > 0.7  # measured: 0.95, 0.82
    assert checks["all-MiniLM-L6-v2-onnx/model_traced.onnx"]["outcome"] == "failed"
    result.stdout.fnmatch_lines(["E*ONNX export onnx/model_traced.onnx failed on a batch of shape (1, 4)*"])


def test_a_quantized_export_of_other_weights_fails_by_behaviour(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tiny_with_exports: Path
) -> None:
    quantized = tiny_with_exports / "onnx" / "model_quantized.onnx"  # of the seed-0 weights, audited against seed 1's
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert', seed=1)}", f"--bert-onnx={quantized}", *ONLY_ONNX)
    assert_one_failure(result, [
        "E*quantized ONNX export model_quantized.onnx no longer behaves like the checkpoint: cosine_min * < 0.6*",
        "E*Spearman correlation of pairwise similarities: *; top-5 neighbour overlap: *",
        "E*Quantized: *MatMulInteger ops*",
    ])
    (check,) = _checks(pytester).values()
    assert check["metrics"]["cosine_min"] < 0.6 and check["metrics"]["export"] == "model_quantized.onnx"


def test_a_checkpoint_without_exports_skips_saying_where_it_looked(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", *ONLY_ONNX)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*no ONNX export: none in onnx/*.onnx or model.onnx beside the weights, and no --bert-onnx"])


def test_without_onnxruntime_the_check_skips_saying_what_to_install(
    pytester: pytest.Pytester, tiny_with_exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args))
    result = pytester.runpytest(f"--bert-model={tiny_with_exports}", *ONLY_ONNX, "-k", "model.onnx")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*onnxruntime not installed: pip install pytest-bertprobe[[]onnx[]]*"])


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (("--bert-onnx=missing.onnx",), "--bert-onnx=missing.onnx: no such file; give the path of an .onnx export"),
        (("--bert-onnx=notes.txt",), "--bert-onnx=notes.txt: not an .onnx file"),
    ],
)
def test_bad_bert_onnx_paths_are_usage_errors(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, arguments: tuple[str, ...], line: str
) -> None:
    (pytester.path / "notes.txt").write_text("not an export")
    assert_usage_error(pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", *arguments), line)


def test_bert_onnx_needs_a_checkpoint(pytester: pytest.Pytester, tiny_with_exports: Path) -> None:
    result = pytester.runpytest(f"--bert-onnx={tiny_with_exports / 'onnx' / 'model.onnx'}")
    assert_usage_error(result, "--bert-onnx needs the checkpoint it was exported from: pass --bert-model=PATH_OR_HUB_ID")


# --- the pieces --------------------------------------------------------------------------------------


def test_exports_are_found_where_the_hub_puts_them_then_the_extra_files(tmp_path: Path) -> None:
    (tmp_path / "onnx").mkdir()
    for name in ("onnx/model_quantized.onnx", "onnx/model.onnx", "model.onnx", "onnx/notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "elsewhere.onnx").write_text("")
    found = onnx_audit.find_exports(tmp_path, [str(tmp_path / "elsewhere.onnx"), str(tmp_path / "model.onnx")])
    assert [onnx_audit.export_label(path, tmp_path) for path in found] == [
        "onnx/model.onnx", "onnx/model_quantized.onnx", "model.onnx", "elsewhere.onnx"
    ]  # fmt: skip
    assert onnx_audit.find_exports(None, []) == []


def test_quantization_is_read_from_the_graph(tiny_with_exports: Path) -> None:
    assert onnx_audit.quantization_evidence(tiny_with_exports / "onnx" / "model.onnx") is None
    evidence = onnx_audit.quantization_evidence(tiny_with_exports / "onnx" / "model_quantized.onnx")
    assert evidence is not None and "MatMulInteger ops" in evidence and "int8/uint8 initializers" in evidence


def test_inputs_are_matched_by_name_and_a_missing_one_is_named(tiny_with_exports: Path) -> None:
    import torch

    export = onnx_audit.open_export(tiny_with_exports / "onnx" / "model.onnx", "onnx/model.onnx", "cpu")
    inputs = {"attention_mask": torch.ones(1, 3, dtype=torch.long), "input_ids": torch.tensor([[2, 7, 3]])}
    with pytest.raises(AssertionError, match=r"needs inputs the tokenizer does not produce: token_type_ids \(the tokenizer gives attention_mask, input_ids"):
        onnx_audit.run_export(export, inputs, ["x"])
    outputs = onnx_audit.run_export(export, {**inputs, "token_type_ids": torch.zeros(1, 3, dtype=torch.long)}, ["x"])
    assert set(outputs) == {"last_hidden_state", "pooler_output"} and outputs["last_hidden_state"].shape == (1, 3, 32)


def test_behaviour_measures_are_one_for_identical_embeddings_and_fall_for_scrambled_ones() -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    ours = torch.randn(20, 16, generator=generator)
    same: dict[str, Any] = {}
    onnx_behaviour.collect(same, [f"s{i}" for i in range(20)], ours, ours * 3)
    assert onnx_behaviour.behaviour(same) | {"worst_sentence": None} == {
        "sentences": 20, "cosine_min": 1.0, "cosine_mean": 1.0, "worst_sentence": None, "spearman": 1.0, "top_k": 5, "top_k_overlap": 1.0,
    }  # fmt: skip
    scrambled: dict[str, Any] = {}
    onnx_behaviour.collect(scrambled, [f"s{i}" for i in range(20)], ours, torch.randn(20, 16, generator=generator))
    with pytest.raises(AssertionError, match=r"no longer behaves like the checkpoint: cosine_min .* < 0.6; spearman .* < 0.85; top_k_overlap .* < 0.6"):
        onnx_behaviour.assert_behaves("x.onnx", "1 MatMulInteger ops", scrambled)
    assert onnx_behaviour.spearman(torch.arange(5.0), -torch.arange(5.0)) == pytest.approx(-1.0)


def test_each_checkpoint_gets_only_its_own_exports(pytester: pytest.Pytester, tiny_with_exports: Path, tiny_checkpoint: TinyFactory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_with_exports}", f"--bert-model={tiny_checkpoint('bert')}", *ONLY_ONNX)
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    assert sorted(_checks(pytester)) == [
        "bert-no-export", "tiny-onnx/model.onnx", "tiny-onnx/model_changed.onnx", "tiny-onnx/model_quantized.onnx", "tiny-onnx/model_traced.onnx",
    ]  # fmt: skip
    result.stdout.fnmatch_lines(["*tiny  *bert  * 1 *", "*bert  *bert  * 1 *"])  # one load each, tests grouped by checkpoint


def test_a_sentence_transformers_export_is_compared_with_the_declared_embedding(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    from tests.test_embedding import _sentence_transformers

    folder = _sentence_transformers(Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "st-tiny")))  # mean, then Normalize
    export_onnx(folder, folder / "onnx" / "model.onnx", sentence_transformers=True)  # normalized means
    result = pytester.runpytest(f"--bert-model={folder}", *ONLY_ONNX)
    result.assert_outcomes(passed=1)
    metrics = _checks(pytester)["st-tiny-onnx/model.onnx"]["metrics"]
    assert metrics["compared"] == ["token_embeddings", "sentence_embedding"] and metrics["max_abs"] < 1e-5
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))  # now declares cls
    result = pytester.runpytest(f"--bert-model={folder}", *ONLY_ONNX)
    assert_one_failure(result, ["E*ONNX export onnx/model.onnx vs the checkpoint, sentence_embedding: tensors are not close!"])


def test_ini_bert_onnx_is_read_relative_to_the_rootdir(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    pytester.makeini("[pytest]\nbert_onnx = exports/missing.onnx\n")
    assert_usage_error(pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}"), "ini bert_onnx exports/missing.onnx: no such file; give the path of an .onnx export")


def test_the_html_report_draws_each_float_exports_difference_per_output(pytester: pytest.Pytester, tiny_with_exports: Path) -> None:
    pytest.importorskip("matplotlib")  # conftest imports its figure stack before any in-process run
    result = pytester.runpytest(f"--bert-model={tiny_with_exports}", *ONLY_ONNX, "--bert-report-html=page.html")
    result.assert_outcomes(passed=2, failed=2)
    changed = _checks(pytester)["tiny-onnx/model_changed.onnx"]["metrics"]
    assert changed["diverging_outputs"] == ["last_hidden_state", "pooler_output"]
    assert [name for name, _ in changed["per_output"]] == ["last_hidden_state", "pooler_output"]
    page = (pytester.path / "page.html").read_text(encoding="utf-8")
    assert page.count("Greatest difference to the ONNX export per output") == 2  # the dynamo and the changed export
    assert "First diverging: last_hidden_state" in page


def test_a_broken_modules_json_fails_the_embedding_contract_once_not_the_export(
    pytester: pytest.Pytester, tiny_with_exports: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny_with_exports, tmp_path / "broken", ignore=shutil.ignore_patterns("model_*.onnx")))
    (folder / "modules.json").write_text('[{"idx": 0,', encoding="utf-8")
    result = pytester.runpytest(f"--bert-model={folder}", "-p", "no:cacheprovider", "-k", "onnx_export or declared_sentence_embedding")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*: embedding_contract: failed: *modules.json: sentence-transformers* module list is not valid JSON*"])
