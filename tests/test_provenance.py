"""Pooler provenance, degenerate poolers, tanh range and finite outputs: each fault planted, each audit failing."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checks.provenance import assert_pooler_trained, inspect_pooler_provenance
from pytest_bertprobe.errors import NoPoolerError
from tests.helpers import plant_copy

TinyFactory = Callable[..., Path]
QUERY_WEIGHT = "encoder.layer.0.attention.self.query.weight"
# pooler_provenance, pooler_not_degenerate, pooler_range and outputs_finite, by their audit tests' names
PROVENANCE_CHECKS = "pooler_weights_come_from or pooler_is_not_constant or pooler_stays_in_tanh or every_output_is_finite"


def _drop_pooler(tensors: dict[str, Any]) -> None:
    for key in [key for key in tensors if ".pooler." in f".{key}"]:
        del tensors[key]


def _zero_pooler(tensors: dict[str, Any]) -> None:
    tensors["pooler.dense.weight"].zero_()
    tensors["pooler.dense.bias"].zero_()


def _untrain_pooler(tensors: dict[str, Any]) -> None:
    """What a pooler that never received a gradient looks like: zero bias, weight fresh from N(0, 0.02)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    weight = tensors["pooler.dense.weight"]
    tensors["pooler.dense.weight"] = torch.randn(weight.shape, generator=generator) * 0.02
    tensors["pooler.dense.bias"].zero_()


def _nan_query_weight(tensors: dict[str, Any]) -> None:
    tensors[QUERY_WEIGHT][0, 0] = float("nan")


def _load(path: Path) -> loading.Checkpoint:
    return loading.load_checkpoint(loading.resolve_source(str(path)), path.name, device="cpu", dtype="float32")


def _audit(pytester: pytest.Pytester, path: Path, *args: str) -> tuple[pytest.RunResult, dict[str, dict[str, Any]]]:
    """Run the four checks this module plants faults for on `path`; return the result and each check's attached metrics."""
    xml = pytester.path / "report.xml"
    result = pytester.runpytest(
        f"--bert-model={path}", "-k", PROVENANCE_CHECKS, "-rfs", "-p", "no:cacheprovider",
        f"--junitxml={xml}", *args,
    )  # fmt: skip
    metrics = {}
    for case in ElementTree.parse(xml).iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "bertprobe.check" in properties:
            metrics[str(properties["bertprobe.check"])] = json.loads(properties.get("bertprobe.metrics") or "{}")
    return result, metrics


# --- the audit on planted faults, each beside its healthy control ---------------------------------


def test_healthy_checkpoint_passes_every_check_with_verdict_trained(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    # Declaring the pooler the embedding makes the provenance check strictest: a trained pooler still passes.
    result, metrics = _audit(pytester, tiny_checkpoint("bert"), "--bert-embedding=pooler")
    result.assert_outcomes(passed=4)
    assert metrics["pooler_provenance"]["verdict"] == "trained"
    assert metrics["pooler_provenance"]["evidence"]["identical_to_file"] is True
    assert 1e-4 < metrics["pooler_not_degenerate"]["max_abs"] < 1e-1  # tiny random models spread ~1e-3
    assert metrics["outputs_finite"]["nonfinite"] == 0 and metrics["pooler_range"]["mismatched"] == 0


def test_pooler_weights_missing_from_the_checkpoint_fail_provenance(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "no-pooler", weights=_drop_pooler)
    result, metrics = _audit(pytester, planted)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines([
        "*pooler provenance is 'missing', expected 'trained' or 'untrained':",
        "*pooler weights missing from the checkpoint: pooler.dense.bias, pooler.dense.weight; transformers "
        "initialises them randomly on every load*",
        "*checkpoint file: pooler.dense.bias, pooler.dense.weight not in model.safetensors",
        "*Hint: save the checkpoint with its pooler*",
        "FAILED*test_pooler_weights_come_from_the_checkpoint*",
    ])  # fmt: skip
    assert metrics["pooler_provenance"]["verdict"] == "missing"


def test_all_zero_pooler_fails_as_degenerate_and_is_reported_untrained(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "zero-pooler", weights=_zero_pooler)
    result, metrics = _audit(pytester, planted)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines([
        "*pooler_output differs between distinct sentences (each row against row 0): tensors are the same, but should differ!",
        "*Greatest absolute difference: 0 at index (0, 0) (sentence 0: '开心') (more than 1e-06 required)",
        "*Hint: the pooler's dense weight is all zero, so pooler_output is tanh(bias) for every input*",
        "FAILED*test_pooler_is_not_constant*",
    ])  # fmt: skip
    # A zero bias is also the never-trained fingerprint: reported, not failed, unless the pooler is the embedding.
    assert metrics["pooler_provenance"]["verdict"] == "untrained"
    assert metrics["pooler_not_degenerate"]["max_abs"] == 0.0


def test_nan_weight_fails_outputs_finite_naming_tensor_position_sentence_and_parameter(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    from pytest_bertprobe.checks.finiteness import assert_outputs_finite
    from pytest_bertprobe.forward.cache import encode

    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "nan-weight", weights=_nan_query_weight)
    result, metrics = _audit(pytester, planted)
    # In the audit, the stored NaN is weights_finite's to report (one failure for one cause); the helper still says it all.
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines_random([
        f"*SKIPPED [[]1[]]*finiteness.py: weights hold NaN/inf ({QUERY_WEIGHT} (1 of 1024 values)): weights_finite reports them*",
        f"*SKIPPED [[]2[]]*pooler.py: weights hold NaN/inf ({QUERY_WEIGHT} (1 of 1024 values)): weights_finite reports them*",
    ])  # fmt: skip
    checkpoint = _load(planted)
    sentences = ["hello world", "today"]
    with pytest.raises(AssertionError) as failure:
        assert_outputs_finite(checkpoint.model, encode(checkpoint.tokenizer, sentences), sentences=sentences)
    message = str(failure.value)
    for line in (
        "hidden_states[1] holds only finite values: tensors are not close!",
        "Non-finite values (NaN or inf) where the other side differs: ",
        "Greatest absolute difference: inf at index (0, 0, 0) (sentence 0: 'hello world') (up to 0 allowed)",
        "Hint: non-finite values start at hidden_states[1] (the output of encoder layer 0) and reach "
        "hidden_states[1], hidden_states[2], last_hidden_state, pooler_output; parameters holding NaN/inf: "
        f"{QUERY_WEIGHT} (1 of 1024 values)",
    ):
        assert line in message, message
    assert getattr(failure.value, "gap").max_abs_index == (0, 0, 0)


def test_untrained_pooler_is_reported_and_fails_only_when_declared_the_embedding(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    planted = plant_copy(tiny_checkpoint("bert"), tmp_path / "untrained-pooler", weights=_untrain_pooler)
    reported, metrics = _audit(pytester, planted)
    reported.assert_outcomes(passed=4)
    evidence = metrics["pooler_provenance"]["evidence"]
    assert metrics["pooler_provenance"]["verdict"] == "untrained"
    assert evidence["layers"]["pooler.dense"]["bias_all_zero"] is True
    assert evidence["layers"]["pooler.dense"]["weight_std_ratio"] == pytest.approx(1.0, abs=0.1)

    declared, _ = _audit(pytester, planted, "--bert-embedding=pooler")
    declared.assert_outcomes(failed=1, passed=3)
    declared.stdout.fnmatch_lines([
        "*pooler provenance is 'untrained', expected 'trained':",
        "*pooler untrained: pooler.dense.bias is zero in every unit*",
        "*pooler.dense: weight std * = * x initializer_range 0.02; bias zero in every unit",
        "*Hint: --bert-embedding=pooler declares pooler_output as the sentence embedding*",
    ])  # fmt: skip


NON_TANH_CONFTEST = """
import copy, pytest, torch

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    model = copy.deepcopy(bert_checkpoint.model)
    model.pooler.activation = torch.nn.Identity()  # tanh dropped in a conversion
    with torch.no_grad():
        model.pooler.dense.weight.mul_(100.0)  # so values leave [-1, 1] on a tiny model
    return model.eval()
"""


def test_pooler_without_tanh_fails_the_range_check(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    pytester.makeconftest(NON_TANH_CONFTEST)
    result, metrics = _audit(pytester, tiny_checkpoint("bert"))
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines([
        "*pooler_output within tanh's range [[]-1, 1[]] (difference = excess beyond it): tensors are not close!",
        "*Greatest absolute difference: * at index (*, *) (sentence *: *) (up to 0 allowed)",
        "*Hint: the pooler's activation behaves like identity, not tanh*",
        "FAILED*test_pooler_stays_in_tanh_range*",
    ])  # fmt: skip
    # The overridden bert_model is not the checkpoint's own load: the file comparison does not apply.
    assert metrics["pooler_provenance"]["evidence"]["file_evidence"].startswith("unavailable: the audited model")


def test_models_without_a_pooler_skip_saying_why_and_still_check_finiteness(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory
) -> None:
    # A checkpoint saved without its pooler (add_pooling_layer=False) loads with a random one: missing.
    saved_without = tiny_checkpoint("bert", add_pooling_layer=False)
    result, _ = _audit(pytester, tiny_checkpoint("electra"), f"--bert-model={saved_without}")
    result.assert_outcomes(failed=1, passed=4, skipped=3)
    result.stdout.fnmatch_lines([
        "*pooler provenance is 'missing', expected 'trained' or 'untrained':",
        "FAILED*test_pooler_weights_come_from_the_checkpoint[[]bert-add_pooling_layer=False[]]*",
        "*SKIPPED [[]*[]]*ElectraModel (electra) has no pooler: use last_hidden_state",
    ])  # fmt: skip


DISABLED_CONFTEST = """
import pytest
from transformers import BertModel

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    return BertModel.from_pretrained(bert_checkpoint.source.local_path, add_pooling_layer=False).eval()
"""


def test_model_built_without_its_pooler_skips_as_disabled(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    pytester.makeconftest(DISABLED_CONFTEST)
    result, metrics = _audit(pytester, tiny_checkpoint("bert"))
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "*SKIPPED [[]*[]]*BertModel was built without its pooler (add_pooling_layer=False): pooler_output is None",
    ])  # fmt: skip
    assert metrics["pooler_provenance"]["verdict"] == "disabled"


@pytest.mark.real_weights
def test_real_minilm_pooler_is_reported_untrained_and_fails_when_declared_the_embedding(
    pytester: pytest.Pytester, minilm_path: Path
) -> None:
    result, metrics = _audit(pytester, minilm_path)
    result.assert_outcomes(passed=4)
    assert metrics["pooler_provenance"]["verdict"] == "untrained"
    assert metrics["pooler_not_degenerate"]["max_abs"] > 0.1  # real models spread ~0.2
    declared, _ = _audit(pytester, minilm_path, "--bert-embedding=pooler")
    declared.assert_outcomes(failed=1, passed=3)


# --- the Python API on loaded checkpoints ---------------------------------------------------------


def test_real_minilm_evidence_zero_bias_small_weight_identical_to_file(minilm_path: Path) -> None:
    provenance = inspect_pooler_provenance(_load(minilm_path))
    layer = provenance.evidence["layers"]["pooler.dense"]
    assert provenance.verdict == "untrained"
    assert (layer["bias_all_zero"], layer["bias_max_abs"]) == (True, 0.0)
    # Weight decay shrank the untouched weight below initializer_range 0.02.
    assert layer["weight_std"] == pytest.approx(0.0091, abs=1e-4) and layer["weight_std_ratio"] < 0.5
    assert provenance.evidence["missing_at_load"] == [] and provenance.evidence["identical_to_file"] is True
    with pytest.raises(AssertionError, match=r"pooler provenance is 'untrained', expected 'trained'"):
        assert_pooler_trained(_load(minilm_path))


def test_head_model_keys_carry_the_prefix(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    from transformers import BertForPreTraining

    # Built by from_pretrained, not make_tiny_checkpoint(model_class=...): see the report on class identity.
    healthy = tmp_path / "pretraining"
    BertForPreTraining.from_pretrained(tiny_checkpoint("bert")).save_pretrained(healthy)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint("bert") / name, healthy / name)
    assert assert_pooler_trained(_load(healthy)).evidence["identical_to_file"] is True
    planted = plant_copy(healthy, tmp_path / "pretraining-no-pooler", weights=_drop_pooler)
    provenance = inspect_pooler_provenance(_load(planted))
    assert provenance.verdict == "missing"
    assert provenance.evidence["missing_at_load"] == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]


def test_albert_pooler_is_a_bare_linear(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    healthy = _load(tiny_checkpoint("albert"))
    assert assert_pooler_trained(healthy).evidence["parameters"] == ["pooler.bias", "pooler.weight"]
    planted = plant_copy(tiny_checkpoint("albert"), tmp_path / "albert-no-pooler", weights=_drop_pooler)
    provenance = inspect_pooler_provenance(_load(planted))
    assert (provenance.verdict, provenance.evidence["missing_at_load"]) == ("missing", ["pooler.bias", "pooler.weight"])


def test_sharded_checkpoint_is_read_through_its_index(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    from transformers import AutoModel

    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_checkpoint("bert"), sharded)
    (sharded / "model.safetensors").unlink()
    AutoModel.from_pretrained(tiny_checkpoint("bert")).save_pretrained(sharded, max_shard_size="20KB")
    provenance = assert_pooler_trained(_load(sharded))
    assert (sharded / "model.safetensors.index.json").is_file()
    assert provenance.evidence["checkpoint_files"].startswith("model.safetensors.index.json (")
    assert provenance.evidence["identical_to_file"] is True


def test_pooler_changed_after_loading_differs_from_the_file(tiny_checkpoint: TinyFactory) -> None:
    import torch

    checkpoint = _load(tiny_checkpoint("bert"))
    with torch.no_grad():
        checkpoint.model.pooler.dense.weight[0, 0] += 0.5
    provenance = inspect_pooler_provenance(checkpoint)
    assert provenance.verdict == "missing" and provenance.evidence["identical_to_file"] is False
    assert provenance.evidence["max_abs_diff_to_file"] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(AssertionError, match=r"(?s)differs from the checkpoint's weights.*pooler.dense.weight differ"):
        assert_pooler_trained(checkpoint)


def test_evidence_that_cannot_be_had_is_reported_unavailable(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    checkpoint = _load(tiny_checkpoint("bert"))
    from_hub = replace(checkpoint, source=replace(checkpoint.source, local_path=None, hub_id="org/tiny"))
    assert inspect_pooler_provenance(from_hub).evidence["file_evidence"] == "unavailable: org/tiny is a hub id, not a local folder"
    bare = inspect_pooler_provenance(checkpoint.model)
    assert bare.verdict == "trained" and bare.evidence["missing_at_load"] is None
    assert bare.evidence["file_evidence"] == "unavailable: no checkpoint folder given"
    no_weights = inspect_pooler_provenance(checkpoint.model, checkpoint_path=tmp_path)
    assert no_weights.evidence["file_evidence"].startswith("unavailable: FileNotFoundError: no model.safetensors in")
    told = inspect_pooler_provenance(checkpoint.model, missing_keys={"bert.pooler.dense.weight", "cls.seq_relationship.bias"})
    assert (told.verdict, told.evidence["missing_at_load"]) == ("missing", ["bert.pooler.dense.weight"])


def test_absent_and_disabled_poolers_raise_no_pooler_error(tiny_checkpoint: TinyFactory) -> None:
    assert inspect_pooler_provenance(_load(tiny_checkpoint("electra"))).verdict == "absent"
    from transformers import BertModel

    built_without = BertModel.from_pretrained(tiny_checkpoint("bert"), add_pooling_layer=False)
    assert inspect_pooler_provenance(built_without).verdict == "disabled"
    with pytest.raises(NoPoolerError, match="has no pooler"):
        assert_pooler_trained(_load(tiny_checkpoint("electra")))
