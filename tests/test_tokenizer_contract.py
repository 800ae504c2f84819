"""The tokenizer contract: each fault planted into a copy of a tiny checkpoint fails its audit check, and a healthy
control passes it; the helpers also work on model objects outside pytest."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.tokenizer import contract
from tests.helpers import junit_metrics, write_vocabulary_files

TinyFactory = Callable[..., Path]
AUDIT_MODULE = "bertprobe_audit_tokenizer"


# --- planting helpers (test_coverage.py uses them too) ---------------------------------------------------------


def copy_checkpoint(source: Path, destination: Path) -> Path:
    """A private copy to plant a fault in: session-cached checkpoints are never edited in place."""
    return Path(shutil.copytree(source, destination))


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a JSON file through `change`, which edits the loaded dict in place."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))


def replace_vocabulary(path: Path, rename: Callable[[str], str | None]) -> None:
    """Rename vocabulary entries of tokenizer.json (and vocab.txt; ids kept); `rename` returns None to drop one to '[unusedN]'."""

    def change(data: dict[str, Any]) -> None:
        vocabulary: dict[str, int] = data["model"]["vocab"]
        renamed, unused = {}, 0
        for token, index in vocabulary.items():
            new = rename(token)
            if new is None:
                new, unused = f"[unused{unused}]", unused + 1
            renamed[new] = index
        data["model"]["vocab"] = renamed

    edit_json(path / "tokenizer.json", change)
    if (path / "vocab.txt").is_file():  # transformers 4.x saves it too: the same renaming, so the files still agree
        write_vocabulary_files(path)


@dataclass(frozen=True)
class AuditRun:
    """Outcome and failure text of each audit test, keyed by (test name, checkpoint id)."""

    reports: dict[tuple[str, str], pytest.TestReport]

    def outcome(self, test: str, model: str) -> str:
        """passed, failed or skipped."""
        return self.reports[(test, model)].outcome

    def message(self, test: str, model: str) -> str:
        """The failure (or skip) text."""
        return self.reports[(test, model)].longreprtext

    def failing(self, model: str) -> list[str]:
        """The audit tests that failed for `model`."""
        return sorted(test for (test, name), report in self.reports.items() if name == model and report.failed)


def run_tokenizer_audit(pytester: pytest.Pytester, *checkpoints: Path, args: tuple[str, ...] = ()) -> AuditRun:
    """Run this audit module (only) over `checkpoints` in a fresh pytest session."""
    recorder = pytester.inline_run(
        *(f"--bert-model={path}" for path in checkpoints), "-k", AUDIT_MODULE, "-p", "no:cacheprovider", *args
    )
    reports = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        if report.when == "call" or report.outcome != "passed":
            test, _, model = report.nodeid.split("::")[-1].partition("[")
            reports[(test, model.rstrip("]"))] = report
    return AuditRun(reports)


# --- the faults ------------------------------------------------------------------------------------------------


def _left_padding(path: Path) -> None:
    edit_json(path / "tokenizer_config.json", lambda c: c.update(padding_side="left"))


def _generic_fast_tokenizer(path: Path) -> None:
    # TokenizersBackend in transformers 5, which still reads its 4.x name
    edit_json(path / "tokenizer_config.json", lambda c: c.update(tokenizer_class="PreTrainedTokenizerFast"))


def _cls_last(path: Path) -> None:
    """A generic fast tokenizer with an XLNet-style template: '$A [SEP] [CLS]'."""
    _generic_fast_tokenizer(path)

    def template(data: dict[str, Any]) -> None:
        processor = data["post_processor"]
        cls_piece = processor["single"][0]
        processor["single"] = [*processor["single"][1:], cls_piece]
        processor["pair"] = [*processor["pair"][1:], cls_piece]

    edit_json(path / "tokenizer.json", template)


def _added_tokens(path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.add_tokens(["typhoonish", "<extra_0>"])
    tokenizer.save_pretrained(path)  # the model is not resized


def _max_length_512(path: Path) -> None:
    edit_json(path / "tokenizer_config.json", lambda c: c.update(model_max_length=512))


def _max_length_66(path: Path) -> None:
    """max_position_embeddings copied into model_max_length, forgetting RoBERTa's two offset rows."""
    edit_json(path / "tokenizer_config.json", lambda c: c.update(model_max_length=66))


def _pad_id_mismatch(path: Path) -> None:
    edit_json(path / "config.json", lambda c: c.update(pad_token_id=1))


def _bert_tokenizer_on_distilbert(path: Path) -> None:
    edit_json(path / "tokenizer_config.json", lambda c: c.update(tokenizer_class="BertTokenizer"))


def _one_token_type(path: Path) -> None:
    """A RoBERTa-style single token type (table sliced to one row) under a BERT tokenizer that emits type 1."""
    from safetensors.torch import load_file, save_file

    weights = load_file(path / "model.safetensors")
    key = "embeddings.token_type_embeddings.weight"
    weights[key] = weights[key][:1].clone()
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    edit_json(path / "config.json", lambda c: c.update(type_vocab_size=1))


@dataclass(frozen=True)
class Fault:
    """A planted fault: which tiny arch it goes into, how, which audit test must catch it and with what words."""

    arch: str
    plant: Callable[[Path], None]
    test: str
    message: tuple[str, ...]
    control: Callable[[Path], None] = lambda path: None  # the healthy twin: same changes minus the fault


FAULTS: dict[str, Fault] = {
    "left-padding": Fault("bert", _left_padding, "test_pads_on_the_right_for_absolute_positions", (
        "Padding is on the left for an absolute-position model: 12 of 13 rows start with padding.",
        "Row 0 (sentence '开心'): 13 pad tokens at positions 0..12, so its first real token sits at position 13 "
        "(padding_side='left'); BertModel numbers positions from the left.",
        "Hint: with learned absolute positions, left padding shifts",
    )),
    "cls-last": Fault("bert", _cls_last, "test_cls_opens_and_sep_closes_every_input", (
        "[CLS] is not at position 0: found '[SEP]' (id 3) there.",
        "Misplaced in 3 of 3 inputs; first: sentence '' -> ['[SEP]', '[CLS]']",
        "[CLS] (id 2) is at position(s) [1] of 2.",
        "Failing batch (1 sentence): ['']",
        "Hint: BERT-family models read the sentence summary at position 0",
    ), control=_generic_fast_tokenizer),
    "added-tokens": Fault("bert", _added_tokens, "test_every_token_id_has_an_embedding_row", (
        "Token ids reach past the embedding matrix: '<extra_0>' has id 204, the matrix has 203 rows (ids 0..202).",
        "2 tokens past it (2 added): '<extra_0>' (204, added), 'typhoonish' (203, added)",
        "Tokenizing '<extra_0>' gives ids [2, 204, 3]",
        "Hint: tokens were added to the tokenizer without model.resize_token_embeddings(len(tokenizer))",
    )),
    "max-length-512": Fault("bert", _max_length_512, "test_max_length_fits_the_position_table", (
        "Tokenizer model_max_length 512 exceeds the model's 64 usable positions (64 position rows - offset 0).",
        "An input truncated at 512 tokens indexes position 511: 448 positions past the table",
        'Hint: set "model_max_length": 64 in tokenizer_config.json',
    )),
    "roberta-max-length-66": Fault("roberta", _max_length_66, "test_max_length_fits_the_position_table", (
        "Tokenizer model_max_length 66 exceeds the model's 64 usable positions (66 position rows - offset 2).",
        "An input truncated at 66 tokens indexes position 67: 2 positions past the table",
    )),
    "pad-id": Fault("bert", _pad_id_mismatch, "test_pad_ids_agree", (
        "Pad token ids disagree: the tokenizer pads with '[PAD]' (id 0), config.pad_token_id is 1 ('[UNK]').",
        "Hint: the model's padding_idx",
    )),
    "distilbert-token-types": Fault("distilbert", _bert_tokenizer_on_distilbert, "test_model_accepts_every_tokenizer_input", (
        "The tokenizer produces 'token_type_ids', which DistilBertModel.forward does not accept.",
        "DistilBertModel.forward takes: ['input_ids', 'attention_mask', ",  # then 5.x's or 4.x's other arguments
        "Hint: model(**tokenizer(...)) drops such inputs into **kwargs",
    )),
    "one-token-type": Fault("bert", _one_token_type, "test_pair_token_types_fit_type_vocab_size", (
        "Pair token type ids reach past the token type table: type 1 at position 13, but BertModel has 1 token type(s) "
        "(type_vocab_size=1, ids 0..0).",
        "On pair ('今天会有大大的台风吗?', '天气'): token_type_ids [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]",
        "Hint: the tokenizer's pair template",
    )),
}


def plant_all(faults: dict[str, Fault], tiny_checkpoint: TinyFactory, tmp_path: Path) -> list[Path]:
    """Each fault in its own copy, next to its healthy twin (`healthy-NAME`)."""
    checkpoints = []
    for name, fault in faults.items():
        faulty = copy_checkpoint(tiny_checkpoint(fault.arch), tmp_path / name)
        fault.plant(faulty)
        healthy = copy_checkpoint(tiny_checkpoint(fault.arch), tmp_path / f"healthy-{name}")
        fault.control(healthy)
        checkpoints += [faulty, healthy]
    return checkpoints


def check_fault(run: AuditRun, name: str, fault: Fault) -> None:
    """The fault fails its test and nothing else, with the expected words; its healthy twin passes everything."""
    __tracebackhide__ = True
    assert run.failing(name) == [fault.test]
    assert run.outcome(fault.test, f"healthy-{name}") == "passed"
    assert run.failing(f"healthy-{name}") == []
    message = run.message(fault.test, name)
    for line in fault.message:
        assert line in message, message


def test_audit_fails_each_planted_fault_and_passes_its_healthy_twin(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path, subtests: pytest.Subtests
) -> None:
    # One audit session for every fault: a session costs a second or more, a tiny checkpoint milliseconds.
    run = run_tokenizer_audit(pytester, *plant_all(FAULTS, tiny_checkpoint, tmp_path), args=("--junitxml=report.xml",))
    for name, fault in FAULTS.items():
        with subtests.test(fault=name):
            check_fault(run, name, fault)
    with subtests.test("a failure keeps its metrics in the JUnit report"):
        metrics = junit_metrics(pytester.path / "report.xml", "test_max_length_fits_the_position_table")
        # Refused before any forward pass: none ran.
        assert metrics["max-length-512"] == {"model_max_length": 512, "usable_positions": 64, "position_offset": 0, "forward_passes": 0}


def _load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


HELPERS = (
    contract.assert_special_tokens_in_place,
    contract.assert_pads_on_the_right,
    contract.assert_input_names_accepted,
    contract.assert_token_ids_fit_embeddings,
    contract.assert_token_types_fit,
    contract.assert_max_length_fits,
    contract.assert_pad_ids_agree,
)


@pytest.mark.parametrize("helper", HELPERS, ids=lambda helper: helper.__name__)
def test_helpers_pass_a_healthy_bert_and_return_their_metrics(helper: Callable[..., dict[str, Any]], tiny_checkpoint: TinyFactory) -> None:
    metrics = helper(*_load(tiny_checkpoint("bert")))
    assert metrics and json.dumps(metrics)


@pytest.mark.parametrize(
    ("arch", "absolute", "offset", "usable"),
    [("bert", True, 0, 64), ("roberta", True, 2, 64), ("mpnet", True, 2, 64), ("modernbert", False, 0, 64), ("deberta-v2", False, 0, 64)],
)
def test_positions_are_read_from_the_table_or_the_config(
    arch: str, absolute: bool, offset: int, usable: int, tiny_checkpoint: TinyFactory
) -> None:
    model, _ = _load(tiny_checkpoint(arch))
    assert (contract.uses_absolute_positions(model), contract.position_offset(model), contract.usable_positions(model)) == (
        absolute, offset, usable,
    )


def test_rotary_models_may_pad_left(tiny_checkpoint: TinyFactory) -> None:
    model, tokenizer = _load(tiny_checkpoint("modernbert"))
    tokenizer.padding_side = "left"
    with pytest.raises(contract.NotApplicable, match="ModernBertModel reads no position table, and a masked pad in front leaves"):
        contract.assert_pads_on_the_right(model, tokenizer)


def test_an_unset_max_length_fails_where_the_position_table_is_finite(tiny_checkpoint: TinyFactory) -> None:
    model, tokenizer = _load(tiny_checkpoint("roberta"))
    tokenizer.model_max_length = int(1e30)  # what transformers stores when nothing is set
    with pytest.raises(contract.ContractViolation) as failure:
        contract.assert_max_length_fits(model, tokenizer)
    assert str(failure.value).splitlines()[0] == (
        "Tokenizer model_max_length is unset (1e+30), but RobertaModel has 64 usable positions: "
        "truncation=True will not truncate; inputs longer than 64 tokens crash."
    )
    assert str(failure.value).endswith('Hint: set "model_max_length": 64 in tokenizer_config.json')
    assert failure.value.metrics == {"model_max_length": "unset", "usable_positions": 64, "position_offset": 2}
    assert contract.input_limit(model, tokenizer) == 64


def test_an_unset_max_length_is_checked_at_the_config_length_without_a_position_table(tiny_checkpoint: TinyFactory) -> None:
    model, tokenizer = _load(tiny_checkpoint("modernbert"))
    tokenizer.model_max_length = int(1e30)
    assert contract.assert_max_length_fits(model, tokenizer) == {
        "model_max_length": "unset", "usable_positions": 64, "position_offset": 0, "forward_length": 64,
    }
    tokenizer.model_max_length = 64
    assert contract.input_limit(model, tokenizer) is None  # the tokenizer truncates by itself


def test_a_forward_pass_that_breaks_at_the_maximum_length_fails(tiny_checkpoint: TinyFactory) -> None:
    model, tokenizer = _load(tiny_checkpoint("bert"))

    def refuse_long_inputs(_module: Any, args: tuple[Any, ...]) -> None:
        if args[0].shape[1] > 32:
            raise RuntimeError("attention kernel supports at most 32 tokens")

    model.encoder.layer[0].register_forward_pre_hook(refuse_long_inputs)
    with pytest.raises(contract.ContractViolation) as failure:
        contract.assert_max_length_fits(model, tokenizer)
    assert str(failure.value).startswith(
        "A forward pass at the tokenizer's maximum length fails: RuntimeError: attention kernel supports at most 32 tokens"
    )
    assert "truncated to 64 tokens (model_max_length 64, usable positions 64)" in str(failure.value)
    assert failure.value.metrics["forward_length"] == 64


def test_max_length_reuses_a_shared_pass_at_that_length(tiny_checkpoint: TinyFactory) -> None:
    from pytest_bertprobe.forward import cache as forward

    model, tokenizer = _load(tiny_checkpoint("bert"))
    with forward.shared(model, tokenizer):
        forward.forward(model, forward.encode(tokenizer, ["hello"]))
        assert contract.assert_max_length_fits(model, tokenizer)["forward_length"] == 64
        assert forward.forward_passes(model) == 2  # no pass was 64 tokens wide: it ran its own
    with forward.shared(model, tokenizer):
        forward.forward(model, forward.encode(tokenizer, ["长" * 500]))  # another check's input, truncated to 64 tokens
        assert contract.assert_max_length_fits(model, tokenizer)["forward_length"] == 64
        assert forward.forward_passes(model) == 1  # nothing new to run: a pass this wide already worked


def test_token_types_do_not_apply_without_a_token_type_table_or_ids(tiny_checkpoint: TinyFactory) -> None:
    with pytest.raises(contract.NotApplicable, match="MPNetModel looks up no table with token_type_ids"):
        contract.assert_token_types_fit(*_load(tiny_checkpoint("mpnet")))
    with pytest.raises(contract.NotApplicable, match=r"RobertaTokenizer(Fast)? produces no token_type_ids"):
        contract.assert_token_types_fit(*_load(tiny_checkpoint("roberta")))


def test_pad_ids_do_not_apply_when_the_config_has_none(tiny_checkpoint: TinyFactory) -> None:
    model, tokenizer = _load(tiny_checkpoint("bert"))
    model.config.pad_token_id = None
    with pytest.raises(contract.NotApplicable, match="the config has no pad_token_id"):
        contract.assert_pad_ids_agree(model, tokenizer)


def test_real_minilm_keeps_the_contract(minilm_path: Path) -> None:
    model, tokenizer = _load(minilm_path)
    assert contract.assert_max_length_fits(model, tokenizer) == {
        "model_max_length": 512, "usable_positions": 512, "position_offset": 0, "forward_length": 512,
    }
    assert contract.assert_token_ids_fit_embeddings(model, tokenizer)["embedding_rows"] == 30522
    assert contract.assert_token_types_fit(model, tokenizer) == {"type_vocab_size": 2, "max_type_id": 1}
    assert contract.assert_special_tokens_in_place(model, tokenizer)["misplaced"] == 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_rotary_model_is_not_moved_by_a_pad_in_front_in_any_dtype(tiny_checkpoint: Callable[..., Path], dtype: str) -> None:
    import torch
    from transformers import AutoModel

    from pytest_bertprobe.checkpoint.tables import tables

    model = AutoModel.from_pretrained(tiny_checkpoint("roformer"), dtype=getattr(torch, dtype)).eval()
    # bf16 rounding alone moves the states by more than float32's 1e-4: judged at padding_invariance's bf16 tolerance.
    assert tables(model).moved_by_left_padding is False
    assert not contract.uses_absolute_positions(model)


def test_a_model_in_training_mode_tells_nothing_about_left_padding(tiny_checkpoint: Callable[..., Path]) -> None:
    from transformers import AutoModel

    from pytest_bertprobe.checkpoint.tables import tables

    model = AutoModel.from_pretrained(tiny_checkpoint("roformer")).train()  # dropout on: require_eval_mode reports it
    assert tables(model).moved_by_left_padding is None


# Tokenizers that add no special token, only one, or add them at the end: every check's failure is a message.

_TEMPLATES: dict[str, tuple[list[Any], list[Any]] | None] = {
    "no-specials": None,  # an ESM-C-like tokenizer: the empty sentence is no token at all
    "cls-only": ([{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}]),
    "at-the-end": ([{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"SpecialToken": {"id": "[CLS]", "type_id": 0}}],
                   [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                    {"SpecialToken": {"id": "[SEP]", "type_id": 1}}, {"SpecialToken": {"id": "[CLS]", "type_id": 0}}]),
}  # fmt: skip


def _with_template(source: Path, target: Path, template: tuple[list[Any], list[Any]] | None) -> Path:
    """A copy whose tokenizer.json post-processor is `template` (None: none), kept as written (a plain fast tokenizer)."""
    folder = Path(shutil.copytree(source, target))
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    ids = {entry["content"]: entry["id"] for entry in data["added_tokens"]}
    if template is None:
        data["post_processor"] = None
    else:
        single, pair = template
        used = {piece["SpecialToken"]["id"] for piece in single + pair if "SpecialToken" in piece}
        specials = {token: {"id": token, "ids": [ids[token]], "tokens": [token]} for token in used}
        data["post_processor"] = {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "PreTrainedTokenizerFast"}), encoding="utf-8")
    return folder


def test_every_check_fails_by_a_message_on_tokenizers_without_the_usual_specials(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, tmp_path: Path
) -> None:
    """Before: the ESM-C-like tokenizer failed tokenizer_special_tokens with a bare IndexError, and its empty input
    crashed outputs_finite as well."""
    folders = [_with_template(tiny_checkpoint("bert"), tmp_path / name, template) for name, template in _TEMPLATES.items()]
    result = pytester.runpytest(*(f"--bert-model={folder}" for folder in folders), "--bert-report-json=report.json")
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    failed: dict[str, set[str]] = {name: set() for name in _TEMPLATES}
    for check in report["checks"]:
        assert check["outcome"] != "error", check
        if check["outcome"] == "failed":
            failed[check["model"]].add(check["check"])
    assert failed == {name: {"tokenizer_special_tokens"} for name in _TEMPLATES}, result.stdout.str()[-3000:]
    output = result.stdout.str()
    for bare in ("IndexError", "KeyError", "TypeError", "Traceback", "INTERNALERROR"):
        assert bare not in output
    result.stdout.fnmatch_lines_random([
        "no-specials: tokenizer_special_tokens: failed: [[]CLS] is not at position 0: the input has 0 tokens, so there is no such position.",
        "cls-only: tokenizer_special_tokens: failed: [[]SEP] is not at the last position (0): found '[[]CLS]' (id 2) there.",
        "at-the-end: tokenizer_special_tokens: failed: [[]CLS] is not at position 0: found '[[]SEP]' (id 3) there.",
    ])  # fmt: skip


# XLNet reads its summary token last: specials at the end, padding on the left (decided from config.summary_type).


def test_a_model_that_reads_its_summary_token_last_gets_its_own_convention(tiny_checkpoint: TinyFactory) -> None:
    model, tokenizer = _load(tiny_checkpoint("xlnet"))
    assert contract.reads_summary_last(model) and not contract.reads_summary_last(_load(tiny_checkpoint("bert"))[0])
    assert contract.assert_special_tokens_in_place(model, tokenizer)["convention"] == "summary token last"
    assert contract.assert_pads_on_the_right(model, tokenizer)["right_padded_rows"] == 0
    tokenizer.padding_side = "right"
    with pytest.raises(contract.ContractViolation, match="Padding is on the right for a model that reads its summary token last"):
        contract.assert_pads_on_the_right(model, tokenizer)


def test_a_bert_style_template_on_a_summary_last_model_fails(tiny_checkpoint: TinyFactory) -> None:
    from tokenizers import processors

    model, tokenizer = _load(tiny_checkpoint("xlnet"))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<cls>:0 $A:0 <sep>:0", pair="<cls>:0 $A:0 <sep>:0 $B:1 <sep>:1", special_tokens=[("<cls>", cls), ("<sep>", sep)]
    )
    with pytest.raises(contract.ContractViolation) as failure:
        contract.assert_special_tokens_in_place(model, tokenizer)
    assert str(failure.value).startswith("<sep> is not at the second-to-last position")
    assert "XLNetModel reads the sentence summary at the last position (config.summary_type 'last'" in str(failure.value)
