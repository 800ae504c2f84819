"""Fine-tuned heads read what their architecture promises: healthy heads of each kind pass, miswired ones fail by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.heads.promises import identify
from pytest_bertprobe.checks.heads.replay import assert_heads_read_their_inputs, find_heads
from pytest_bertprobe.errors import NoHeadError
from pytest_bertprobe.forward import cache as forward
from pytest_bertprobe.sentences import SEED_SENTENCES
from tests.helpers import junit_metrics, plant_copy

TinyFactory = Callable[..., Path]
LABELS = ("sports", "politics", "tech")
_PREFIX = {
    "bert": "Bert", "roberta": "Roberta", "electra": "Electra", "deberta-v2": "DebertaV2", "distilbert": "DistilBert",
    "albert": "Albert", "mobilebert": "MobileBert", "xlm-roberta": "XLMRoberta", "big_bird": "BigBird", "modernbert": "ModernBert",
}  # fmt: skip
SEQUENCE = "SequenceClassification(3 labels) ← "
TOKEN = "TokenClassification(3 labels) ← last_hidden_state"
QA = "QuestionAnswering ← last_hidden_state"
CHOICE = "MultipleChoice ← "


def _checkpoint(tiny_checkpoint: TinyFactory, arch: str, kind: str) -> Path:
    """A tiny checkpoint saved with a fine-tuned head (3 named labels; QA and multiple-choice heads have their own outputs)."""
    labels = None if kind in ("QuestionAnswering", "MultipleChoice") else LABELS
    return tiny_checkpoint(arch, model_class=f"{_PREFIX[arch]}For{kind}", labels=labels)


def _load(path: Path) -> tuple[Any, Any]:
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    architecture = getattr(transformers, AutoConfig.from_pretrained(path).architectures[0])
    model = architecture.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)(list(SEED_SENTENCES), padding=True, return_tensors="pt")


HEALTHY = [
    *[(arch, "SequenceClassification", SEQUENCE + "pooler_output") for arch in ("bert", "albert", "mobilebert")],
    *[(arch, "SequenceClassification", SEQUENCE + "last_hidden_state") for arch in ("roberta", "xlm-roberta", "electra", "deberta-v2", "big_bird")],
    *[(arch, "SequenceClassification", SEQUENCE + "last_hidden_state[:, 0]") for arch in ("distilbert", "modernbert")],
    *[(arch, "TokenClassification", TOKEN) for arch in ("bert", "roberta", "electra", "deberta-v2", "distilbert", "modernbert")],
    *[(arch, "QuestionAnswering", QA) for arch in ("bert", "roberta", "electra", "deberta-v2", "distilbert", "modernbert")],
    # Multiple choice, one choice per sentence: RoBERTa scores choices from the pooler, unlike its sequence classifier.
    *[(arch, "MultipleChoice", CHOICE + "pooler_output") for arch in ("bert", "roberta")],
    *[(arch, "MultipleChoice", CHOICE + "last_hidden_state") for arch in ("electra", "deberta-v2")],
    *[(arch, "MultipleChoice", CHOICE + "last_hidden_state[:, 0]") for arch in ("distilbert", "modernbert")],
]


@pytest.mark.parametrize(("arch", "kind", "head"), HEALTHY)
def test_healthy_fine_tuned_heads_read_their_promise_bit_exact(tiny_checkpoint: TinyFactory, arch: str, kind: str, head: str) -> None:
    model, inputs = _load(_checkpoint(tiny_checkpoint, arch, kind))
    gaps = assert_heads_read_their_inputs(model, inputs, sentences=SEED_SENTENCES)
    assert gaps.summary == {"head": head}
    assert all(gap.max_abs == 0.0 for gap in gaps.values())


@pytest.mark.parametrize(
    ("arch", "kind", "path"),
    [
        ("distilbert", "SequenceClassification", "pre_classifier -> ReLU() -> classifier"),  # ReLU is built inside forward
        ("deberta-v2", "SequenceClassification", "pooler -> classifier"),  # ContextPooler sits on the head
        ("roberta", "SequenceClassification", "classifier"),  # RobertaClassificationHead takes [:, 0] itself
        ("modernbert", "QuestionAnswering", "head -> classifier"),
        ("electra", "MultipleChoice", "sequence_summary -> classifier"),
    ],
)
def test_the_head_chain_is_found_by_replay(tiny_checkpoint: TinyFactory, arch: str, kind: str, path: str) -> None:
    model, inputs = _load(_checkpoint(tiny_checkpoint, arch, kind))
    assert [head.path for head in find_heads(model, inputs)] == [path]


def test_modernbert_mean_pooling_reads_the_masked_mean(tiny_checkpoint: TinyFactory, tmp_path: Path) -> None:
    path = plant_copy(_checkpoint(tiny_checkpoint, "modernbert", "SequenceClassification"), tmp_path / "mean", config={"classifier_pooling": "mean"})
    model, inputs = _load(path)
    gaps = assert_heads_read_their_inputs(model, inputs)
    assert gaps.summary == {"head": SEQUENCE + "mean of last_hidden_state over the attention mask"}
    assert gaps["logits"].max_abs == 0.0


def test_bigbird_qa_head_masks_its_logits_in_forward_and_is_not_replayed(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _load(_checkpoint(tiny_checkpoint, "big_bird", "QuestionAnswering"))
    with pytest.raises(NoHeadError, match="no submodule produced start_logits\\+end_logits"):
        assert_heads_read_their_inputs(model, inputs)


# --- planted wiring faults, each on a model object --------------------------------------------------


def _layer_output(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _feed(module: Any, source: Any, pick: Callable[[Any], Any]) -> None:
    """Feed `module` `pick(what source returned)` instead of its real input: a head wired to the wrong tensor."""
    seen: list[Any] = []
    source.register_forward_hook(lambda _module, _args, output: seen.append(output))
    module.register_forward_pre_hook(lambda _module, args: (pick(seen[-1]), *args[1:]))


FAULTS = {
    # name: (arch, kind, module fed, feeder (model -> source module), pick, what it reads, promise)
    "bert classifier on the [CLS] state": (
        "bert", "SequenceClassification", "classifier", lambda m: m.bert, lambda out: out[0][:, 0],
        "last_hidden_state[:, 0] (the [CLS] state)", "pooler_output",
    ),
    "roberta classifier on a middle layer": (
        "roberta", "SequenceClassification", "classifier", lambda m: m.roberta.encoder.layer[0], _layer_output,
        "hidden_states[1] (layer 1 of 2)", "last_hidden_state",
    ),
    "distilbert pre_classifier on a middle layer's [CLS]": (
        "distilbert", "SequenceClassification", "pre_classifier", lambda m: m.distilbert.transformer.layer[0],
        lambda out: _layer_output(out)[:, 0], "hidden_states[1][:, 0] ([CLS] of layer 1 of 2)", "last_hidden_state[:, 0]",
    ),
    "distilbert token classifier on the embeddings": (
        "distilbert", "TokenClassification", "classifier", lambda m: m.distilbert.embeddings, _layer_output,
        "hidden_states[0] (the embeddings)", "last_hidden_state",
    ),
    "roberta multiple-choice classifier on the [CLS] state": (
        "roberta", "MultipleChoice", "classifier", lambda m: m.roberta, lambda out: out[0][:, 0],
        "last_hidden_state[:, 0] (the [CLS] state)", "pooler_output",
    ),
    "deberta-v2 QA head on a middle layer": (
        "deberta-v2", "QuestionAnswering", "qa_outputs", lambda m: m.deberta.encoder.layer[0], _layer_output,
        "hidden_states[1] (layer 1 of 2)", "last_hidden_state",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_miswired_head_fails_and_names_what_it_read(tiny_checkpoint: TinyFactory, fault: str) -> None:
    arch, kind, fed, feeder, pick, reads, promise = FAULTS[fault]
    model, inputs = _load(_checkpoint(tiny_checkpoint, arch, kind))
    assert_heads_read_their_inputs(model, inputs)  # control: the same model object before the fault
    _feed(model.get_submodule(fed), feeder(model), pick)

    with pytest.raises(AssertionError) as failure:
        assert_heads_read_their_inputs(model, inputs, sentences=SEED_SENTENCES)

    message = str(failure.value)
    assert f"({promise}): tensors are not close!" in message.splitlines()[0]
    assert f"Hint: the {kind} head reads {reads}, but {type(model).__name__} promises {promise}" in message
    assert failure.value.bertprobe_head.endswith(f"← {reads.split(' (')[0]}")  # type: ignore[attr-defined]


def test_an_unlisted_model_type_is_held_to_the_final_outputs(tiny_checkpoint: TinyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_bertprobe.checks.heads import replay as heads

    model, inputs = _load(_checkpoint(tiny_checkpoint, "roberta", "SequenceClassification"))
    monkeypatch.setattr(heads, "promised_input", lambda *args: None)  # as for a model type the catalogue lacks
    assert assert_heads_read_their_inputs(model, inputs).summary == {"head": SEQUENCE + "last_hidden_state"}
    _feed(model.classifier, model.roberta.encoder.layer[0], _layer_output)
    with pytest.raises(AssertionError, match=r"reads hidden_states\[1\] \(layer 1 of 2\), not one of pooler_output, last_hidden_state"):
        assert_heads_read_their_inputs(model, inputs)


def test_identify_names_the_masked_mean_only_where_it_is_exact(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _load(_checkpoint(tiny_checkpoint, "bert", "SequenceClassification"))
    outputs = forward.forward(model.base_model, inputs)
    assert identify(outputs.pooler_output, outputs) == "pooler_output"
    assert identify(outputs.last_hidden_state.mean(dim=1), outputs) is None  # an unmasked mean is not the masked one


# --- the audit, with a user's conftest overriding the head model -----------------------------------

CLS_FED_CLASSIFIER = """
import pytest

@pytest.fixture(scope="session")
def bert_head_model(bert_checkpoint):
    model = bert_checkpoint.head_model
    states = []
    model.bert.register_forward_hook(lambda module, args, output: states.append(output[0]))
    model.classifier.register_forward_pre_hook(lambda module, args: (states[-1][:, 0],))  # a port's bug
    return model
"""
AUDIT = ("-p", "no:cacheprovider", "-rfs", "-k", "heads_read or label_map")


def test_audit_passes_every_head_kind_and_names_the_heads(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    paths = {
        "bert": _checkpoint(tiny_checkpoint, "bert", "SequenceClassification"),
        "roberta": _checkpoint(tiny_checkpoint, "roberta", "SequenceClassification"),
        "distilbert": _checkpoint(tiny_checkpoint, "distilbert", "SequenceClassification"),
        "electra-token": _checkpoint(tiny_checkpoint, "electra", "TokenClassification"),
        "deberta-qa": _checkpoint(tiny_checkpoint, "deberta-v2", "QuestionAnswering"),
        "roberta-choice": _checkpoint(tiny_checkpoint, "roberta", "MultipleChoice"),
    }
    result = pytester.runpytest(*(f"--bert-model={path}" for path in paths.values()), *AUDIT, "--junitxml=out.xml", "--bert-report-json=r.json")
    result.assert_outcomes(passed=10, skipped=2)
    result.stdout.fnmatch_lines_random([
        "*SKIPPED*DebertaV2ForQuestionAnswering has no classification head, so no label map to check",
        "*SKIPPED*RobertaForMultipleChoice has no classification head, so no label map to check",
    ])
    result.stdout.fnmatch_lines([f"{paths['bert'].name} *bert *{SEQUENCE}pooler_output *"])
    heads = {model["id"]: model["head"] for model in json.loads((pytester.path / "r.json").read_text())["models"]}
    assert heads == {
        paths["bert"].name: SEQUENCE + "pooler_output",
        paths["roberta"].name: SEQUENCE + "last_hidden_state",
        paths["distilbert"].name: SEQUENCE + "last_hidden_state[:, 0]",
        paths["electra-token"].name: TOKEN,
        paths["deberta-qa"].name: QA,
        paths["roberta-choice"].name: CHOICE + "pooler_output",
    }
    metrics = junit_metrics(pytester.path / "out.xml", "test_heads_read_what_their_architecture_promises")
    assert all(values["max_abs"] == 0.0 for values in metrics.values())


def test_audit_fails_a_classifier_wired_to_the_cls_state_by_a_users_fixture(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    pytester.makeconftest(CLS_FED_CLASSIFIER)
    path = _checkpoint(tiny_checkpoint, "bert", "SequenceClassification")
    result = pytester.runpytest(f"--bert-model={path}", *AUDIT, "--bert-report-json=r.json")
    result.assert_outcomes(failed=1, passed=1)  # the label map is still fine
    result.stdout.fnmatch_lines([
        "E*logits == classifier(pooler_output): tensors are not close!",
        "E*Greatest absolute difference: * at index (*) (sentence *) (up to 1e-06 allowed)",
        "E*Hint: the SequenceClassification head reads last_hidden_state[[]:, 0[]] (the [[]CLS[]] state), "
        "but BertForSequenceClassification promises pooler_output*",
    ])
    result.stdout.fnmatch_lines([f"{path.name} *bert *{SEQUENCE}last_hidden_state[[]:, 0[]] *"])
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["models"][0]["head"] == SEQUENCE + "last_hidden_state[:, 0]"
    (check,) = [check for check in report["checks"] if check["check"] == "head_relation"]
    assert check["outcome"] == "failed" and check["metrics"]["head"] == SEQUENCE + "last_hidden_state[:, 0]"
