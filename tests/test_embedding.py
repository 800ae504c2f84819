"""The embedding contract: `--bert-embedding` resolved (sentence-transformers' config under auto) and checked."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.embedding import (
    EmbeddingSpec,
    assert_embedding_contract,
    resolve_embedding,
    sentence_embedding,
)
from pytest_bertprobe.errors import EmbeddingConfigError, UnsupportedPoolingError
from pytest_bertprobe.forward import cache as forward
from pytest_bertprobe.sentences import SEED_SENTENCES
from tests.helpers import assert_one_failure, junit_metrics, plant_at_load

TinyFactory = Callable[..., Path]
AUDIT = ("-p", "no:cacheprovider", "-rfs", "-k", "sentence_embedding", "--junitxml=out.xml")
MEAN_SOURCE = "sentence-transformers 1_Pooling/config.json (pooling_mode_mean_tokens: true)"
ASSUMED_CLS = "assumed: no sentence-transformers modules.json beside the weights"
ALL_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")


def _sentence_transformers(folder: Path, modes: tuple[str, ...] = ("mean_tokens",), transformer_path: str = "") -> Path:
    """Write sentence-transformers' modules.json and 1_Pooling/config.json into `folder` (as the hub has them)."""
    modules = [
        {"idx": 0, "name": "0", "path": transformer_path, "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules))
    pooling = {"word_embedding_dimension": 32, **{f"pooling_mode_{mode}": mode in modes for mode in ALL_MODES}}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def _copy(source: Path, destination: Path) -> Path:
    """A private copy of a session-cached checkpoint, safe to plant a fault in."""
    return Path(shutil.copytree(source, destination))


# --- resolving --bert-embedding ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cls", "pooler", "mean"])
def test_an_explicit_choice_wins_over_any_config(tmp_path: Path, kind: str) -> None:
    assert resolve_embedding(kind, _sentence_transformers(tmp_path)) == EmbeddingSpec(kind, f"--bert-embedding={kind}")


def test_auto_without_sentence_transformers_files_assumes_cls(tmp_path: Path) -> None:
    assert resolve_embedding("auto", tmp_path) == EmbeddingSpec("cls", ASSUMED_CLS)
    assert resolve_embedding("auto", None).kind == "cls"
    assert "hub id" in resolve_embedding("auto", None).source


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        (("mean_tokens",), EmbeddingSpec("mean", MEAN_SOURCE)),  # all-MiniLM-L6-v2
        (("cls_token",), EmbeddingSpec("cls", "sentence-transformers 1_Pooling/config.json (pooling_mode_cls_token: true)")),  # bge
    ],
)
def test_auto_reads_the_pooling_config(tmp_path: Path, modes: tuple[str, ...], expected: EmbeddingSpec) -> None:
    assert resolve_embedding("auto", _sentence_transformers(tmp_path, modes)) == expected


def test_auto_finds_the_config_one_level_up_for_a_0_transformer_layout(tmp_path: Path) -> None:
    _sentence_transformers(tmp_path, transformer_path="0_Transformer")
    (tmp_path / "0_Transformer").mkdir()
    assert resolve_embedding("auto", tmp_path / "0_Transformer") == EmbeddingSpec("mean", MEAN_SOURCE)
    (tmp_path / "elsewhere").mkdir()  # a sibling the parent's modules.json does not list
    assert resolve_embedding("auto", tmp_path / "elsewhere").kind == "cls"


def test_the_string_form_of_pooling_mode_is_read(tmp_path: Path) -> None:
    _sentence_transformers(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    assert resolve_embedding("auto", tmp_path) == EmbeddingSpec("cls", "sentence-transformers 1_Pooling/config.json (pooling_mode: 'cls')")


@pytest.mark.parametrize(
    ("modes", "message"),
    [
        (("max_tokens",), "selects max pooling; the audit checks cls, mean or pooler embeddings: choose one with --bert-embedding"),
        (("cls_token", "mean_tokens"), "selects cls + mean pooling"),
    ],
)
def test_a_pooling_the_audit_does_not_compute_is_unsupported(tmp_path: Path, modes: tuple[str, ...], message: str) -> None:
    with pytest.raises(UnsupportedPoolingError, match=message.replace("+", r"\+")):
        resolve_embedding("auto", _sentence_transformers(tmp_path, modes))


def test_a_module_list_without_pooling_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(json.dumps([{"path": "", "type": "sentence_transformers.models.Transformer"}]))
    with pytest.raises(UnsupportedPoolingError, match="lists no Pooling module .modules: sentence_transformers.models.Transformer."):
        resolve_embedding("auto", tmp_path)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda folder: (folder / "modules.json").write_text("[{not json"), r"modules.json: sentence-transformers' module list is not valid JSON"),
        (lambda folder: (folder / "modules.json").write_text('{"0": "Transformer"}'), r"modules.json: expected a JSON list of modules"),
        (lambda folder: (folder / "1_Pooling" / "config.json").unlink(), r"1_Pooling/config.json: missing"),
        (lambda folder: (folder / "1_Pooling" / "config.json").write_text("[]"), r"config.json: expected a JSON object"),
    ],
)
def test_broken_sentence_transformers_files_are_config_errors(tmp_path: Path, break_it: Callable[[Path], Any], message: str) -> None:
    break_it(_sentence_transformers(tmp_path))
    with pytest.raises(EmbeddingConfigError, match=message):
        resolve_embedding("auto", tmp_path)


def test_a_pooling_config_with_no_mode_set_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingConfigError, match="no pooling mode is set"):
        resolve_embedding("auto", _sentence_transformers(tmp_path, modes=()))


def test_unknown_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sentence embedding 'max'"):
        resolve_embedding("max", tmp_path)


# --- computing and checking the embedding on model objects -------------------------------------------


def _bert(tiny_checkpoint: TinyFactory, arch: str = "bert") -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    path = tiny_checkpoint(arch)
    return AutoModel.from_pretrained(path).eval(), forward.encode(AutoTokenizer.from_pretrained(path), SEED_SENTENCES)


def test_sentence_embedding_computes_each_kind_from_the_outputs(tiny_checkpoint: TinyFactory) -> None:
    import torch

    model, inputs = _bert(tiny_checkpoint)
    outputs = forward.forward(model, inputs)
    mask = inputs["attention_mask"]
    assert torch.equal(sentence_embedding("cls", outputs, mask), outputs.last_hidden_state[:, 0])
    assert sentence_embedding("pooler", outputs, mask) is outputs.pooler_output
    by_hand = torch.stack([outputs.last_hidden_state[row, : int(mask[row].sum())].mean(0) for row in range(len(SEED_SENTENCES))])
    torch.testing.assert_close(sentence_embedding("mean", outputs, mask), by_hand)
    with pytest.raises(ValueError, match="unknown sentence embedding 'max'"):
        sentence_embedding("max", outputs, mask)


@pytest.mark.parametrize("kind", ["cls", "pooler", "mean"])
def test_a_healthy_model_keeps_every_contract(tiny_checkpoint: TinyFactory, kind: str) -> None:
    model, inputs = _bert(tiny_checkpoint)
    metrics = assert_embedding_contract(model, inputs, kind, sentences=SEED_SENTENCES)
    assert metrics["embedding"] == kind and metrics["dimension"] == 32 and metrics["spread"] > 1e-4
    if kind == "mean":  # four of the five seed sentences are padded; alone they agree to float rounding
        assert metrics["padded_rows"] == 4 and metrics["max_abs"] < 1e-6 and metrics["atol"] == 1e-4


def test_pooler_embedding_on_a_model_without_pooler_fails(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _bert(tiny_checkpoint, "distilbert")
    with pytest.raises(AssertionError) as failure:
        assert_embedding_contract(model, inputs, EmbeddingSpec("pooler", "--bert-embedding=pooler"))
    assert str(failure.value).splitlines() == [
        "pooler sentence embedding cannot be computed: DistilBertModel returned pooler_output=None "
        "(DistilBertModel (distilbert) has no pooler: use last_hidden_state).",
        "Declared by: --bert-embedding=pooler",
        "Hint: consumers that read pooler_output get None or crash; use --bert-embedding=cls or mean",
    ]


@pytest.mark.parametrize("kind", ["cls", "mean"])
def test_a_zeroed_final_layer_norm_gives_every_sentence_the_same_embedding(tiny_checkpoint: TinyFactory, kind: str) -> None:
    import torch

    model, inputs = _bert(tiny_checkpoint)
    with torch.no_grad():
        model.encoder.layer[-1].output.LayerNorm.weight.zero_()
    with pytest.raises(AssertionError) as failure:
        assert_embedding_contract(model, inputs, kind, sentences=SEED_SENTENCES)
    message = str(failure.value)
    assert message.startswith(f"{kind} sentence embeddings of 5 distinct sentences differ: tensors are the same, but should differ!")
    assert "(more than 1e-06 required)" in message and "Hint: every sentence gets the same" in message


def test_a_nan_weight_makes_the_embedding_non_finite(tiny_checkpoint: TinyFactory) -> None:
    import torch

    model, inputs = _bert(tiny_checkpoint)
    with torch.no_grad():
        model.encoder.layer[-1].output.LayerNorm.bias[7] = float("nan")
    with pytest.raises(AssertionError) as failure:
        assert_embedding_contract(model, inputs, "cls", sentences=SEED_SENTENCES)
    message = str(failure.value)
    assert message.startswith("the cls sentence embedding is finite (declared by the caller): tensors are not close!")
    assert "Non-finite values (NaN or inf) where the other side differs: 5" in message
    assert "Greatest absolute difference: inf at index (0, 7) (sentence 0: '开心')" in message


def _ignore_attention_mask(model: Any) -> None:
    """The yoso/fnet fault (docs/DESIGN.md §5), planted: the encoder never sees the attention mask, so pads leak in."""
    outputs = model.forward

    def forward_without_mask(input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None, **kwargs: Any) -> Any:
        return outputs(input_ids=input_ids, token_type_ids=token_type_ids, **kwargs)

    model.forward = forward_without_mask


def test_mean_embedding_that_counts_padding_fails(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _bert(tiny_checkpoint)
    _ignore_attention_mask(model)
    assert_embedding_contract(model, inputs, "cls")  # padding after [CLS] only shifts it a little: cls passes here
    with pytest.raises(AssertionError) as failure:
        assert_embedding_contract(model, inputs, "mean", sentences=SEED_SENTENCES)
    message = str(failure.value)
    assert message.startswith("mean embedding of a sentence alone == its row in the padded batch: tensors are not close!")
    assert "(up to 0.0001 allowed)" in message and "Hint: padding leaks into the mean" in message


def test_identical_sentences_skip_the_spread_check(tiny_checkpoint: TinyFactory) -> None:
    from transformers import AutoTokenizer

    model, _ = _bert(tiny_checkpoint)
    inputs = forward.encode(AutoTokenizer.from_pretrained(tiny_checkpoint("bert")), ["天气", "天气"])
    assert "spread" not in assert_embedding_contract(model, inputs, "cls")
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        assert_embedding_contract(model, inputs, "auto")


# --- the audit ---------------------------------------------------------------------------------------


def test_audit_pooler_embedding_fails_on_distilbert_and_passes_on_bert(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    distilbert, bert = tiny_checkpoint("distilbert"), tiny_checkpoint("bert")
    result = pytester.runpytest(f"--bert-model={distilbert}", f"--bert-model={bert}", "--bert-embedding=pooler", *AUDIT)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "E*pooler sentence embedding cannot be computed: DistilBertModel returned pooler_output=None*",
        "E*Declared by: --bert-embedding=pooler",
        "E*Hint: consumers that read pooler_output get None or crash; use --bert-embedding=cls or mean",
        "FAILED *test_declared_sentence_embedding_is_sound[[]distilbert[]]*",
    ])


def test_audit_resolves_sentence_transformers_mean_under_auto(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    st_folder = _sentence_transformers(_copy(tiny_checkpoint("bert"), tmp_path / "st-mean"))
    plain = tiny_checkpoint("distilbert")
    result = pytester.runpytest(f"--bert-model={st_folder}", f"--bert-model={plain}", *AUDIT)
    result.assert_outcomes(passed=2)
    metrics = junit_metrics(pytester.path / "out.xml")
    mean = metrics["test_declared_sentence_embedding_is_sound[st-mean]"]
    assert (mean["embedding"], mean["source"], mean["padded_rows"]) == ("mean", MEAN_SOURCE, 4)
    assert mean["max_abs"] < 1e-6 and mean["spread"] > 1e-3
    cls = metrics[f"test_declared_sentence_embedding_is_sound[{plain.name}]"]
    assert (cls["embedding"], cls["source"]) == ("cls", ASSUMED_CLS)


@pytest.mark.real_weights
def test_audit_resolves_the_real_minilm_to_mean_and_passes(pytester: pytest.Pytester, minilm_path: Path) -> None:
    result = pytester.runpytest(f"--bert-model={minilm_path}", "-p", "no:cacheprovider", "-rs", "--junitxml=out.xml",
                                "-k", "sentence_embedding or heads_read")  # fmt: skip
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*checkpoint has no head (saved as BertModel)"])
    (metrics,) = junit_metrics(pytester.path / "out.xml").values()
    assert (metrics["embedding"], metrics["source"], metrics["dimension"]) == ("mean", MEAN_SOURCE, 384)
    assert metrics["max_abs"] < 1e-5 and metrics["spread"] > 0.1


def test_audit_fails_a_broken_modules_json_and_skips_max_pooling(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    broken = _sentence_transformers(_copy(tiny_checkpoint("bert"), tmp_path / "st-broken"))
    (broken / "modules.json").write_text("[{not json")
    max_pooling = _sentence_transformers(_copy(tiny_checkpoint("bert"), tmp_path / "st-max"), modes=("max_tokens",))
    result = pytester.runpytest(f"--bert-model={broken}", f"--bert-model={max_pooling}", *AUDIT)
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines_random([
        "*--bert-embedding=auto: */st-broken/modules.json: sentence-transformers' module list is not valid JSON*",
        "Hint: fix or remove the file, or pass --bert-embedding",
        "*SKIPPED*sentence-transformers 1_Pooling/config.json (pooling_mode_max_tokens: true) selects max pooling;*",
    ])


def test_audit_fails_a_saved_checkpoint_whose_embeddings_collapsed(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModel

    collapsed = _copy(tiny_checkpoint("bert"), tmp_path / "collapsed")
    model = AutoModel.from_pretrained(collapsed)
    with torch.no_grad():
        model.encoder.layer[-1].output.LayerNorm.weight.zero_()
    model.save_pretrained(collapsed)
    result = pytester.runpytest(f"--bert-model={collapsed}", f"--bert-model={tiny_checkpoint('bert')}", *AUDIT)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "E*cls sentence embeddings of 5 distinct sentences differ: tensors are the same, but should differ!",
        "FAILED *test_declared_sentence_embedding_is_sound[[]collapsed[]]*",
    ])


def test_audit_fails_mean_embedding_when_padding_leaks_in(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_at_load(monkeypatch, lambda checkpoint: _ignore_attention_mask(checkpoint.model))
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-embedding=mean", *AUDIT)
    assert_one_failure(result, [
        "E*mean embedding of a sentence alone == its row in the padded batch: tensors are not close!",
        "E*Greatest absolute difference: * (sentence *) (up to 0.0001 allowed)",
        "E*Hint: padding leaks into the mean*",
    ])
