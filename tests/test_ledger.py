"""The weights ledger: each planted fault fails weights_loaded or weights_finite by name; healthy controls pass."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checkpoint.renames import find_renames
from pytest_bertprobe.checks.weights import assert_weights_finite, assert_weights_loaded, inspect_weights
from pytest_bertprobe.compare import NotApplicable
from tests.helpers import assert_usage_error, junit_metrics, load_checkpoint, plant_copy

TinyFactory = Callable[..., Path]
KEY_BIAS = "encoder.layer.0.attention.self.key.bias"
QUERY_WEIGHT = "encoder.layer.0.attention.self.query.weight"
WEIGHT_CHECKS = "bertprobe_audit_weights or output_is_finite"


def _audit(pytester: pytest.Pytester, path: Path, *args: str, select: str = WEIGHT_CHECKS) -> tuple[pytest.RunResult, dict[str, Any]]:
    """The weight checks (and outputs_finite) on `path`: the result, and each check's metrics by check name."""
    xml = pytester.path / "report.xml"
    result = pytester.runpytest(f"--bert-model={path}", "-k", select, "-p", "no:cacheprovider", "-rfs", f"--junitxml={xml}", *args)
    by_case = junit_metrics(xml)
    return result, {name.split("[")[0]: metrics for name, metrics in by_case.items()}


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    return {key: value for key, value in result.parseoutcomes().items() if key in ("passed", "failed", "skipped", "error")}


def _rename_layers(tensors: dict[str, Any]) -> None:
    for key in [key for key in tensors if key.startswith("encoder.layer.")]:
        tensors[key.replace("encoder.layer.", "encoder.layers.")] = tensors.pop(key)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def drop(tensors: dict[str, Any]) -> None:
        del tensors[key]

    return drop


def _sharded(source: Path, target: Path) -> Path:
    from transformers import AutoModel

    shutil.copytree(source, target)
    (target / "model.safetensors").unlink()
    AutoModel.from_pretrained(source).save_pretrained(target, max_shard_size="20KB")
    return target


def _resave(source: Path, target: Path, model_class: str = "AutoModel", dtype: str = "float32") -> Path:
    """`source` loaded as `model_class` and saved again (in `dtype`), with its tokenizer."""
    import torch
    import transformers

    shutil.copytree(source, target)
    (target / "model.safetensors").unlink()
    getattr(transformers, model_class).from_pretrained(source).to(getattr(torch, dtype)).save_pretrained(target)
    return target


# --- planted faults: each fails its check by name -----------------------------------------------


def test_renamed_layers_fail_naming_the_substitution(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "layers", weights=_rename_layers)
    result, metrics = _audit(pytester, planted)
    assert _outcomes(result) == {"failed": 1, "passed": 2}
    result.stdout.fnmatch_lines([
        "*32 of the 41 parameters and buffers of BertModel are not the checkpoint's (model.safetensors):",
        "*missing from the file, so transformers initialised them at random at load: 32 keys",
        "*  encoder.layer.0: 16 keys (attention.self.query.weight, attention.self.query.bias, attention.self.key.weight, +13 more)",
        "*rename: the file writes 'layers' where the model reads 'layer' (encoder.layers.0.* -> encoder.layer.0.*): "
        "explains 32 of the 32 missing keys",
        "*stored but read by no weight of BertModel: 32 tensors",
        "*Hint: rename the stored keys as the substitution says*no output check sees this",
        "FAILED*test_every_weight_comes_from_the_checkpoint*",
    ])  # fmt: skip
    assert len(metrics["test_every_weight_comes_from_the_checkpoint"]["missing"]) == 32


@pytest.mark.parametrize(
    ("key", "line"),
    [(KEY_BIAS, "encoder.layer.0: 1 key (attention.self.key.bias)"), ("embeddings.word_embeddings.weight", "embeddings: 1 key (word_embeddings.weight)")],
    ids=["one-bias", "word-embeddings"],
)
def test_one_missing_tensor_fails(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, key: str, line: str) -> None:
    # A missing key bias moves outputs by ~1e-7 (softmax ignores a per-row constant): only the ledger sees it.
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "missing", weights=_drop(key))
    result, metrics = _audit(pytester, planted)
    assert _outcomes(result) == {"failed": 1, "passed": 2}
    result.stdout.fnmatch_lines(["*1 of the 41 parameters and buffers of BertModel are not the checkpoint's*", f"*  {line}", "*Hint: re-save the checkpoint*"])
    assert metrics["test_every_weight_comes_from_the_checkpoint"]["missing"] == [key]
    assert metrics["test_every_weight_comes_from_the_checkpoint"]["renames"] == []


def test_nan_in_a_rare_embedding_row_fails_weights_finite_naming_the_token(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint("bert"))
    row = tokenizer.convert_tokens_to_ids("typhoon")

    def plant(tensors: dict[str, Any]) -> None:
        tensors["embeddings.word_embeddings.weight"][row, 3] = float("nan")

    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "nan-row", weights=plant)
    result, metrics = _audit(pytester, planted, select="bertprobe_audit_weights")
    assert _outcomes(result) == {"failed": 1, "passed": 1}  # weights_loaded passes: the model holds what the file holds
    result.stdout.fnmatch_lines([
        "*every stored tensor is finite: 1 of 39 tensors of model.safetensors hold NaN/inf",
        f"*  embeddings.word_embeddings.weight: 1 of * values non-finite, first nan at [[]{row}, 3[]]: row {row} is the token 'typhoon'",
        "*Hint: these values come with the file*",
        "FAILED*test_every_stored_tensor_is_finite*",
    ])  # fmt: skip
    assert metrics["test_every_stored_tensor_is_finite"]["nonfinite"][0]["first_index"] == [row, 3]


def test_inf_weight_fails_weights_finite_once(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    def plant(tensors: dict[str, Any]) -> None:
        tensors[QUERY_WEIGHT][0, 0] = float("inf")

    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "inf", weights=plant)
    result, _ = _audit(pytester, planted)
    # outputs_finite leaves it to weights_finite: one failure for one cause.
    assert _outcomes(result) == {"failed": 1, "passed": 1, "skipped": 1}
    result.stdout.fnmatch_lines([
        f"*  {QUERY_WEIGHT}: 1 of 1024 values non-finite, first inf at [[]0, 0[]]",
        f"*SKIPPED*weights hold NaN/inf ({QUERY_WEIGHT} (1 of 1024 values)): weights_finite reports them*",
    ])  # fmt: skip


def test_weight_changed_after_loading_fails_weights_loaded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: TinyFactory
) -> None:
    import torch

    from tests.helpers import plant_at_load

    def plant(checkpoint: loading.Checkpoint) -> None:
        with torch.no_grad():
            checkpoint.model.get_parameter(QUERY_WEIGHT)[1, 2] = float("nan")

    plant_at_load(monkeypatch, plant)
    result, _ = _audit(pytester, tiny_checkpoint("bert"))
    assert _outcomes(result) == {"failed": 1, "passed": 1, "skipped": 1}
    result.stdout.fnmatch_lines([
        "*differ from the file (the file cast to the loaded dtype; tolerance: exact): 1 key",
        f"*  {QUERY_WEIGHT}: max |diff| inf at [[]1, 2[]]",
        "FAILED*test_every_weight_comes_from_the_checkpoint*",
    ])  # fmt: skip


def test_computed_buffer_changed_after_loading_fails_weights_loaded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: TinyFactory
) -> None:
    from tests.helpers import plant_at_load

    def plant(checkpoint: loading.Checkpoint) -> None:
        checkpoint.model.get_buffer("embeddings.position_ids")[0, 5] = 7

    plant_at_load(monkeypatch, plant)
    result, _ = _audit(pytester, tiny_checkpoint("bert"), select="bertprobe_audit_weights")
    assert _outcomes(result) == {"failed": 1, "passed": 1}
    result.stdout.fnmatch_lines(["*  embeddings.position_ids: computed buffer is not consecutive positions: 7 at [[]0, 5[]]"])


def test_classifier_claimed_but_absent_fails_weights_loaded(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "no-classifier", config={"architectures": ["BertForSequenceClassification"]})
    result, metrics = _audit(pytester, planted, "--bert-report-json=report.json", select="bertprobe_audit_weights")
    assert _outcomes(result) == {"failed": 1, "passed": 1}
    result.stdout.fnmatch_lines([
        "*config.architectures names BertForSequenceClassification, but the checkpoint holds no weights for its head "
        "(classifier.*): loaded as that class, the head would be random, and its use depends on that head; audited as BertModel",
        "*Hint: save the fine-tuned model with its head*",
    ])  # fmt: skip
    model = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))["models"][0]
    assert model["class"] == "BertModel" and model["architecture_note"].startswith("config.architectures names")


def test_shard_lacking_a_key_its_index_names_fails_weights_loaded(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    import transformers
    from safetensors.torch import load_file, save_file

    sharded = _sharded(tiny_checkpoint("bert"), tmp_path / "sharded")
    shard = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"][KEY_BIAS]
    tensors = load_file(sharded / shard)
    del tensors[KEY_BIAS]
    save_file(tensors, sharded / shard, metadata={"format": "pt"})
    if not hasattr(transformers, "TokenizersBackend"):  # 4.x trusts the index and cannot load the key from it: exit 4
        result = pytester.runpytest(f"--bert-model={sharded}", "-p", "no:cacheprovider")
        assert_usage_error(result, f"*could not be loaded (*): the shard index puts {KEY_BIAS} in {shard}, which lacks it (1 such keys)*")
        return
    result, metrics = _audit(pytester, sharded, select="bertprobe_audit_weights")
    assert _outcomes(result) == {"failed": 1, "passed": 1}
    result.stdout.fnmatch_lines([
        "*of the 41 parameters and buffers of BertModel are not the checkpoint's (model.safetensors.index.json (* shards)):",
        f"*the shard index puts {KEY_BIAS} in {shard}, which lacks it",
        "*Hint: *rewrite the shard index*",
    ])  # fmt: skip
    assert metrics["test_every_weight_comes_from_the_checkpoint"]["misplaced"] == {KEY_BIAS: shard}


@pytest.mark.parametrize("fault", ["absent-shard", "unlisted-shard"])
def test_shard_index_that_cannot_load_is_a_usage_error(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, fault: str
) -> None:
    sharded = _sharded(tiny_checkpoint("bert"), tmp_path / "sharded")
    shards = sorted(sharded.glob("model-*.safetensors"))
    if fault == "absent-shard":
        shards[1].unlink()
        pattern = f"*: model.safetensors.index.json names 1 shard(s) absent from the folder: {shards[1].name}; re-save the checkpoint*"
    else:
        shutil.copy(shards[0], sharded / "model-00003-of-00007.safetensors")  # a shard of another save
        shutil.copy(shards[0], sharded / "adapter_model.safetensors")  # not a shard: ignored, as loading does
        pattern = "*: model-00003-of-00007.safetensors in the folder but not in model.safetensors.index.json*; re-save*"
    assert_usage_error(pytester.runpytest_subprocess(f"--bert-model={sharded}"), pattern)


# --- healthy controls ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sharded", "float16", "bfloat16", "bfloat16-load", "position-ids-stored"])
def test_healthy_variants_pass(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, variant: str) -> None:
    import torch

    source, args = tiny_checkpoint("bert"), []
    if variant == "sharded":
        path = _sharded(source, tmp_path / variant)
    elif variant in ("float16", "bfloat16"):
        path = _resave(source, tmp_path / variant, dtype=variant)
    elif variant == "bfloat16-load":
        path, args = source, ["--bert-dtype=bfloat16"]
    else:
        path = plant_copy(source, tmp_path / variant, weights=lambda tensors: tensors.update({"embeddings.position_ids": torch.arange(64)[None]}))
    result, metrics = _audit(pytester, path, *args, select="bertprobe_audit_weights")
    assert _outcomes(result) == {"passed": 2}, result.stdout.str()
    ledger = metrics["test_every_weight_comes_from_the_checkpoint"]
    assert ledger["missing"] == [] and ledger["differing"] == {}
    assert ledger["computed"] == ["embeddings.position_ids", "embeddings.token_type_ids"]  # arange and zeros, as computed
    if variant == "position-ids-stored":
        assert ledger["unused"] == {"embeddings.position_ids": "a buffer the model computes; loading ignores the stored copy"}


@pytest.mark.parametrize(("arch", "model_class"), [("bert", "BertForMaskedLM"), ("albert", "AlbertForMaskedLM"), ("bert", "BertForPreTraining")])
def test_tied_decoders_are_accounted_for(tiny_checkpoint: TinyFactory, tmp_path: Path, arch: str, model_class: str) -> None:
    checkpoint = load_checkpoint(_resave(tiny_checkpoint(arch), tmp_path / model_class, model_class))
    assert checkpoint.loaded_class == model_class and checkpoint.skipped_head is None
    metrics = assert_weights_loaded(checkpoint)
    decoder = next(name for name in metrics["tied"] if name.endswith("decoder.weight"))
    assert metrics["tied"][decoder].endswith("embeddings.word_embeddings.weight")
    assert metrics["unused"] == {} and metrics["missing"] == []


def test_mpnet_saved_as_its_base_with_a_masked_lm_config_is_audited_as_the_base(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    # all-mpnet-base-v2: config.architectures says MPNetForMaskedLM, the file holds MPNetModel and its pooler.
    planted = plant_copy(tiny_checkpoint("mpnet"), tmp_path / "mpnet-as-mlm", config={"architectures": ["MPNetForMaskedLM"]})
    result = pytester.runpytest(f"--bert-model={planted}", "-p", "no:cacheprovider", "--bert-report-json=report.json", "-rs")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines([
        "mpnet-as-mlm  mpnet  MPNetModel  standard/tanh  trained*",
        "mpnet-as-mlm: config.architectures names MPNetForMaskedLM, but the checkpoint holds no weights for its head "
        "(lm_head.*): loaded as that class, the head would be random; audited as MPNetModel",
    ])  # fmt: skip
    result.stdout.fnmatch_lines_random([  # the skips say what the file holds, not "saved as MPNetModel"
        f"SKIPPED * checkpoint has no{kind} head (loaded as MPNetModel: config.architectures names MPNetForMaskedLM, but *"
        for kind in ("", " classification")
    ])
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    outcomes = {check["check"]: check["outcome"] for check in report["checks"]}
    assert outcomes["save_load_round_trip"] == outcomes["weights_loaded"] == "passed"
    assert report["models"][0]["pooler"]["verdict"] == "trained" and report["models"][0]["class"] == "MPNetModel"


def test_freshly_initialised_classifier_is_weights_trained_s_to_judge(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    """weights_loaded accounts for the head (it is the file's); whether it was trained is weights_trained's (reported here:
    the suite's runs pass --bert-allow-untrained; tests/test_trained.py fails it without)."""
    import torch

    def untrain(tensors: dict[str, Any]) -> None:
        tensors["classifier.weight"] = torch.randn(tensors["classifier.weight"].shape, generator=torch.Generator().manual_seed(3)) * 0.02
        tensors["classifier.bias"].zero_()

    classifier = _resave(tiny_checkpoint("bert"), tmp_path / "classifier", "BertForSequenceClassification")
    planted = plant_copy(classifier, tmp_path / "untrained-classifier", weights=untrain)
    select = "bertprobe_audit_weights or bertprobe_audit_trained"
    result, metrics = _audit(pytester, planted, "--bert-report-json=report.json", select=select)
    assert _outcomes(result) == {"passed": 3}
    result.stdout.fnmatch_lines(["untrained-classifier: weights_trained: reported, not failed (--bert-allow-untrained): * look untrained *"])
    judged = metrics["test_weights_look_trained"]
    assert judged["modules"]["classifier"] == {**judged["modules"]["classifier"], "kind": "linear", "bias_all_zero": True, "looks_untrained": True}
    assert "modules" not in metrics["test_every_weight_comes_from_the_checkpoint"]
    assert "classifier" in json.loads((pytester.path / "report.json").read_text())["models"][0]["untrained_modules"]


# --- the helpers, outside pytest -----------------------------------------------------------------


def test_helpers_on_a_bare_model_need_the_folder(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint("bert"))
    with pytest.raises(NotApplicable, match="no checkpoint folder given"):
        assert_weights_loaded(checkpoint.model)
    assert assert_weights_loaded(checkpoint.model, checkpoint_path=tiny_checkpoint("bert"))["loaded"] == 39
    assert assert_weights_finite(checkpoint)["nonfinite"] == []
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "missing", weights=_drop(KEY_BIAS))
    with pytest.raises(AssertionError, match=r"(?s)1 of the 41 parameters and buffers.*encoder.layer.0: 1 key \(attention.self.key.bias\)"):
        assert_weights_loaded(checkpoint.model, checkpoint_path=planted)


def test_pickle_weights_are_read_only_when_allowed(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "pickled"))
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    model = load_checkpoint(tiny_checkpoint("bert")).model
    with pytest.raises(FileNotFoundError, match="pickle weights are not read"):
        inspect_weights(model, checkpoint_path=folder)
    assert inspect_weights(model, checkpoint_path=folder, allow_pickle=True).accounted


def test_renames_found_one_to_one() -> None:
    missing = ["encoder.layer.0.query.weight", "encoder.layer.1.query.weight", "embeddings.LayerNorm.weight"]
    unused = ["bert.encoder.layer.0.query.weight", "bert.encoder.layer.1.query.weight", "embeddings.LayerNorm.gamma"]
    found = {rename.description: rename.explains for rename in find_renames(missing, unused)}
    assert found == {"the file adds the prefix 'bert.'": 2, "the file writes 'gamma' where the model reads 'weight'": 1}
    dropped = find_renames(["bert.pooler.dense.weight"], ["pooler.dense.weight"])
    assert [rename.description for rename in dropped] == ["the file drops the prefix 'bert.'"]
    assert find_renames(["a.x", "a.y"], ["a.z"]) == []  # one file key onto two model keys is not a rename


def test_real_minilm_is_accounted_for_and_a_renamed_copy_is_a_random_encoder(minilm_path: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(minilm_path)
    metrics = assert_weights_loaded(checkpoint)
    assert metrics["loaded"] == len(checkpoint.model.state_dict()) and metrics["differing"] == {}
    assert assert_weights_finite(checkpoint)["nonfinite"] == []
    renamed = plant_copy(minilm_path, tmp_path / "minilm-layers", weights=_rename_layers)
    with pytest.raises(AssertionError, match=r"(?s)96 of the \d+ parameters and buffers.*explains 96 of the 96 missing keys"):
        assert_weights_loaded(load_checkpoint(renamed))
