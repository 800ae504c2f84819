"""Tokenizer files agree, special tokens are real, an unset model_max_length fails by name, a tokenizer without
attention_mask, a tokenizer_class that does not exist: each planted into a copy of a tiny checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.tokenizer import files as tokenizer_files
from pytest_bertprobe.checks.tokenizer import special_tokens
from pytest_bertprobe.forward import cache as forward
from tests.helpers import assert_usage_error, sentencepiece_model, write_vocabulary_files
from tests.test_tokenizer_contract import Fault, check_fault, copy_checkpoint, edit_json, plant_all, run_tokenizer_audit

TinyFactory = Callable[..., Path]


# --- planting helpers --------------------------------------------------------------------------------------------


def _remove(path: Path, *names: str) -> None:
    for name in names:
        (path / name).unlink(missing_ok=True)


def _swap(vocabulary: dict[str, int], a: str, b: str) -> None:
    vocabulary[a], vocabulary[b] = vocabulary[b], vocabulary[a]


def _drop_line(path: Path, token: str) -> None:
    lines = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    lines.remove(token)
    (path / "vocab.txt").write_text("\n".join(lines), encoding="utf-8")


# --- plants: controls and faults ----------------------------------------------------------------------------------


def _fast_only(path: Path) -> None:
    _remove(path, "vocab.txt", "vocab.json", "merges.txt")


def _slow_only(path: Path) -> None:
    write_vocabulary_files(path)
    _remove(path, "tokenizer.json")


def _sentencepiece(arch: str) -> Callable[[Path], None]:
    return lambda path: write_vocabulary_files(path, arch)


def _swapped_in_tokenizer_json(path: Path) -> None:
    write_vocabulary_files(path)
    edit_json(path / "tokenizer.json", lambda data: _swap(data["model"]["vocab"], "the", "weather"))


def _swapped_in_vocab_json(path: Path) -> None:
    write_vocabulary_files(path)
    edit_json(path / "vocab.json", lambda vocabulary: _swap(vocabulary, "Ġthe", "Ġweather"))


def _swapped_in_sentencepiece(path: Path) -> None:
    def swap(data: dict[str, Any]) -> None:
        vocabulary = data["model"]["vocab"]
        index = {piece: i for i, (piece, _) in enumerate(vocabulary)}
        a, b = index["▁the"], index["▁weather"]
        vocabulary[a], vocabulary[b] = vocabulary[b], vocabulary[a]

    original = (path / "tokenizer.json").read_text(encoding="utf-8")
    edit_json(path / "tokenizer.json", swap)
    write_vocabulary_files(path, "albert")  # the model file with the swap, tokenizer.json as it was
    (path / "tokenizer.json").write_text(original, encoding="utf-8")


def _cls_lost_beside_tokenizer_json(path: Path) -> None:
    write_vocabulary_files(path)
    _drop_line(path, "[CLS]")


def _cls_lost_from_the_only_vocabulary(path: Path) -> None:
    _slow_only(path)
    _drop_line(path, "[CLS]")
    edit_json(path / "tokenizer_config.json", lambda config: config.pop("added_tokens_decoder", None))


def _config_eos_is_pad(path: Path) -> None:
    edit_json(path / "config.json", lambda config: config.update(eos_token_id=1))


def _max_length_unset(path: Path) -> None:
    edit_json(path / "tokenizer_config.json", lambda config: config.pop("model_max_length"))


def _only_vocab_and_config(path: Path) -> None:
    """A fine-tuned classifier as some packages ship it: vocab.txt and config.json, no tokenizer_config.json."""
    _slow_only(path)
    _remove(path, "tokenizer_config.json", "special_tokens_map.json")


def _no_attention_mask(path: Path) -> None:
    """FNet's convention: the tokenizer emits input_ids and token_type_ids only."""
    edit_json(path / "tokenizer_config.json", lambda config: config.update(model_input_names=["input_ids", "token_type_ids"]))


def _with_attention_mask(path: Path) -> None:
    """A BERT-style tokenizer on FNet: it emits an attention_mask FNet's forward does not take."""
    edit_json(path / "tokenizer_config.json", lambda config: config.update(model_input_names=["input_ids", "token_type_ids", "attention_mask"]))


FILES_AGREE = "test_tokenizer_files_agree"
SPECIAL_IDS = "test_special_tokens_are_real"
MAX_LENGTH = "test_max_length_fits_the_position_table"

CONTROLS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "fast-only": ("bert", _fast_only),
    "slow-only": ("bert", _slow_only),
    "wordpiece-both": ("bert", write_vocabulary_files),
    "bpe-roberta": ("roberta", write_vocabulary_files),
    "sentencepiece-albert": ("albert", _sentencepiece("albert")),
    "sentencepiece-xlm-roberta": ("xlm-roberta", _sentencepiece("xlm-roberta")),
    "sentencepiece-deberta-v2": ("deberta-v2", _sentencepiece("deberta-v2")),
    "no-attention-mask": ("fnet", _no_attention_mask),
}

FAULTS: dict[str, Fault] = {
    "swapped-wordpiece": Fault("bert", _swapped_in_tokenizer_json, FILES_AGREE, (
        "Token ids differ between tokenizer.json and vocab.txt: 2 of 203 tokens.",
        "2 tokens with other ids in tokenizer.json and vocab.txt: ",
        "'weather' (tokenizer.json 94, vocab.txt 122), 'the' (tokenizer.json 122, vocab.txt 94)",
        # No probe sentence of the failing batch holds them: the tokens themselves are the evidence.
        "On sentence 'weather': AutoTokenizer (tokenizer.json) gives [2, 94, 3], AutoTokenizer without tokenizer.json "
        "(vocab.txt) gives [2, 122, 3] (first difference at position 1).",
        "Hint: AutoTokenizer reads tokenizer.json; the slow tokenizer classes, other runtimes and older exports read",
    ), control=write_vocabulary_files),
    "swapped-bpe": Fault("roberta", _swapped_in_vocab_json, FILES_AGREE, (
        "Token ids differ between tokenizer.json and vocab.json + merges.txt: 2 of ",
        "'Ġthe' (tokenizer.json ",
    ), control=write_vocabulary_files),
    "swapped-sentencepiece": Fault("albert", _swapped_in_sentencepiece, FILES_AGREE, (
        "Token ids differ between tokenizer.json and spiece.model: 2 of ",
        "'▁weather' (tokenizer.json ",
    ), control=_sentencepiece("albert")),
    "cls-lost-beside-tokenizer-json": Fault("bert", _cls_lost_beside_tokenizer_json, FILES_AGREE, (
        "Token ids differ between tokenizer.json and vocab.txt: ",
        "Only in tokenizer.json: 1 tokens: '[CLS]' (2)",
    ), control=write_vocabulary_files),
    "cls-lost-from-the-only-vocabulary": Fault("bert", _cls_lost_from_the_only_vocabulary, SPECIAL_IDS, (
        "Special tokens are not what the model was trained with: '[CLS]' is in neither vocab.txt (202 entries) nor the "
        "added tokens the files record: the tokenizer gave it id 202 at load time",
        "Hint: a special token without its own id",
    ), control=_slow_only),
    "config-eos-is-pad": Fault("roberta", _config_eos_is_pad, SPECIAL_IDS, (
        "Special tokens are not what the model was trained with: config.eos_token_id is 1 ('<pad>'), but the "
        "tokenizer's eos_token is '</s>' (id 2).",
    )),
    "max-length-unset": Fault("bert", _max_length_unset, MAX_LENGTH, (
        "Tokenizer model_max_length is unset (1e+30), but BertModel has 64 usable positions: truncation=True will not "
        "truncate; inputs longer than 64 tokens crash.",
        'Hint: set "model_max_length": 64 in tokenizer_config.json',
    )),
}


def test_tokenizer_checks_fail_each_planted_fault_and_pass_every_healthy_tokenizer(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, subtests: pytest.Subtests
) -> None:
    controls = []
    for name, (arch, plant) in CONTROLS.items():
        controls.append(copy_checkpoint(tiny_checkpoint(arch), tmp_path / name))
        plant(controls[-1])
    run = run_tokenizer_audit(pytester, *plant_all(FAULTS, tiny_checkpoint, tmp_path), *controls)
    for name, fault in FAULTS.items():
        with subtests.test(fault=name):
            check_fault(run, name, fault)
    for name in CONTROLS:
        with subtests.test(control=name):
            assert run.failing(name) == []
    with subtests.test("one description: skipped, saying why"):
        assert run.outcome(FILES_AGREE, "fast-only") == "skipped"
        assert "only tokenizer.json describes the vocabulary: nothing to compare" in run.message(FILES_AGREE, "fast-only")
        assert run.outcome(FILES_AGREE, "slow-only") == "skipped"
    with subtests.test("two descriptions: compared"):
        for name in ("wordpiece-both", "bpe-roberta", "sentencepiece-albert", "sentencepiece-xlm-roberta", "sentencepiece-deberta-v2"):
            assert run.outcome(FILES_AGREE, name) == "passed", name


def test_one_cause_one_failure_and_no_attention_mask_breaks_nothing(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    """The whole audit: an unset model_max_length fails only tokenizer_max_length (the long probe sentence is clipped
    for the others); a tokenizer without attention_mask fails what FNet fails anyway, and nothing raises KeyError."""
    unset = copy_checkpoint(tiny_checkpoint("bert"), tmp_path / "unset")
    _max_length_unset(unset)
    shipped = copy_checkpoint(tiny_checkpoint("bert"), tmp_path / "vocab-and-config")
    _only_vocab_and_config(shipped)
    masked = copy_checkpoint(tiny_checkpoint("fnet"), tmp_path / "fnet")
    _with_attention_mask(masked)
    unmasked = copy_checkpoint(tiny_checkpoint("fnet"), tmp_path / "fnet-unmasked")
    _no_attention_mask(unmasked)
    recorder = pytester.inline_run(
        *(f"--bert-model={p}" for p in (unset, shipped, masked, unmasked)), f"--bert-reference={tiny_checkpoint('bert')}",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    failed: dict[str, set[str]] = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        if report.failed:
            test, _, model = report.nodeid.split("::")[-1].partition("[")
            failed.setdefault(model.rstrip("]"), set()).add(test)
    assert failed.get("unset") == {MAX_LENGTH}  # reference_agreement too passes: both sides clipped to 64 positions
    assert failed.get("vocab-and-config") == {MAX_LENGTH}
    # FNet's forward takes no attention_mask: a tokenizer that emits one fails tokenizer_input_names besides.
    assert failed["fnet"] - failed["fnet-unmasked"] == {"test_model_accepts_every_tokenizer_input"}
    assert failed["fnet-unmasked"] <= failed["fnet"]


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["in-process", "xdist"])
def test_a_tokenizer_class_that_does_not_exist_is_a_usage_error(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, workers: tuple[str, ...]
) -> None:
    folder = copy_checkpoint(tiny_checkpoint("bert"), tmp_path / "no-such-class")
    edit_json(folder / "tokenizer_config.json", lambda config: config.update(tokenizer_class="BertoTokenizer"))
    assert_usage_error(
        pytester.runpytest_subprocess(f"--bert-model={folder}", "-p", "no:cacheprovider", *workers),
        f"--bert-model '{folder}': tokenizer_config.json names tokenizer_class 'BertoTokenizer', which the installed "
        "transformers does not have; set it to the model's tokenizer class (e.g. \"BertTokenizer\") or remove the key",
    )


def test_every_tokenizer_class_transformers_maps_is_known_to_preflight() -> None:
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    from pytest_bertprobe.checkpoint.preflight import _known_tokenizer_class, _tokenizer_class_names

    mapped = {n for value in TOKENIZER_MAPPING_NAMES.values() for n in (value if isinstance(value, tuple) else (value,)) if n}
    assert {n for n in mapped if not _known_tokenizer_class(n.removesuffix("Fast"))} == set()
    # The auto mapping alone names them: checking the usual classes reads one file, not every tokenizer module.
    auto = _tokenizer_class_names(everywhere=False)
    assert auto is not None
    assert {n for n in mapped if n not in auto and n.removesuffix("Fast") not in auto} == set()
    assert not _known_tokenizer_class("BertoTokenizer")


# --- the helpers, outside pytest ----------------------------------------------------------------------------------


def test_sentencepiece_pieces_are_read_without_sentencepiece() -> None:
    data = sentencepiece_model([("<unk>", 0.0, 2), ("▁hello", -1.5, 1), ("é", -3.0, 1)])
    assert tokenizer_files.sentencepiece_pieces(data) == [("<unk>", 2), ("▁hello", 1), ("é", 1)]
    with pytest.raises(ValueError, match="truncated"):
        tokenizer_files.sentencepiece_pieces(data[:-3])


def test_an_unreadable_description_fails(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_checkpoint("albert"), tmp_path / "albert")
    (folder / "spiece.model").write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(AssertionError, match="spiece.model cannot be read as a vocabulary: ValueError: truncated"):
        tokenizer_files.assert_tokenizer_files_agree(folder)


def test_a_fairseq_sentencepiece_model_agrees_at_its_offset(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    folder = copy_checkpoint(tiny_checkpoint("xlm-roberta"), tmp_path / "xlm-roberta")
    write_vocabulary_files(folder, "xlm-roberta")
    vocabularies = tokenizer_files.read_vocabularies(folder)
    assert [v.files for v in vocabularies] == ["tokenizer.json", "sentencepiece.bpe.model"]
    assert tokenizer_files.compare_vocabularies(*vocabularies) is None
    metrics = tokenizer_files.assert_tokenizer_files_agree(folder)
    assert metrics["tokens_differing"] == 0 and metrics["files"]["tokenizer.json"] == len(vocabularies[0].ids)


def test_tokenizers_built_from_the_files_disagree_on_sentences(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    """The vocabularies agree, but only tokenizer.json records an added token: a tokenizer built from vocab.txt spells it out."""
    folder = copy_checkpoint(tiny_checkpoint("bert"), tmp_path / "bert")
    write_vocabulary_files(folder)
    added = {"id": 203, "content": "typhoonish", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False}
    edit_json(folder / "tokenizer.json", lambda data: data["added_tokens"].append(added))
    with pytest.raises(AssertionError) as failure:
        tokenizer_files.assert_tokenizer_files_agree(folder, sentences=["hello world", "a typhoonish day"])
    message = str(failure.value)
    assert message.startswith("The tokenizers built from the checkpoint's files disagree, although the vocabulary files agree.")
    assert "On sentence 'a typhoonish day': AutoTokenizer (tokenizer.json) gives [2, 52, 203, 137, 3], AutoTokenizer " \
        "without tokenizer.json (vocab.txt) gives [2, 52, 129, 185, 195, 184, 137, 3] (first difference at position 2)." in message
    assert failure.value.metrics["tokens_differing"] == 0  # type: ignore[attr-defined]


def test_a_special_token_that_maps_to_unk_fails(tiny_checkpoint: TinyFactory) -> None:
    from transformers import AutoModel, AutoTokenizer

    path = tiny_checkpoint("bert")
    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    assert special_tokens.assert_special_tokens_real(model, tokenizer)["special_token_ids"]["[CLS]"] == 2
    tokenizer.mask_token = "<mask>"  # declared, never added: not in the vocabulary
    with pytest.raises(AssertionError, match=r"'<mask>' maps to the unknown token '\[UNK\]' \(id 1\): it is not in the vocabulary."):
        special_tokens.assert_special_tokens_real(model, tokenizer)


def test_the_attention_mask_is_built_where_the_tokenizer_emits_none(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    folder = copy_checkpoint(tiny_checkpoint("fnet"), tmp_path / "fnet-unmasked")
    _no_attention_mask(folder)
    masked = copy_checkpoint(tiny_checkpoint("fnet"), tmp_path / "fnet-masked")
    _with_attention_mask(masked)
    emitting, silent = AutoTokenizer.from_pretrained(masked), AutoTokenizer.from_pretrained(folder)
    sentences = ["", "hello world", "[PAD] text", "the weather is sad today [PAD]"]
    for side in ("right", "left"):
        emitting.padding_side = silent.padding_side = side
        inputs = forward.encode(silent, sentences)
        assert "attention_mask" not in inputs
        assert torch.equal(forward.attention_mask(inputs, silent.pad_token_id), forward.encode(emitting, sentences)["attention_mask"])
    alone = forward.encode(silent, ["[PAD]"])
    assert forward.attention_mask(alone, silent.pad_token_id).tolist() == [[1, 1, 1]]  # unpadded: every token is real


def test_real_minilm_files_agree_and_its_special_tokens_are_real(minilm_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    metrics = tokenizer_files.assert_tokenizer_files_agree(minilm_path)
    assert metrics["files"] == {"tokenizer.json": 30522, "vocab.txt": 30522} and metrics["tokens_differing"] == 0
    model, tokenizer = AutoModel.from_pretrained(minilm_path), AutoTokenizer.from_pretrained(minilm_path)
    assert special_tokens.assert_special_tokens_real(model, tokenizer)["special_token_ids"] == {
        "[UNK]": 100, "[SEP]": 102, "[PAD]": 0, "[CLS]": 101, "[MASK]": 103,
    }
