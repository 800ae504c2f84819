"""Pretraining heads read what pretraining fed them: planted wiring faults fail, healthy heads pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.heads.replay import (
    assert_heads_read_their_inputs,
    assert_mlm_head_reads_last_hidden_state,
    assert_nsp_head_reads_pooler,
    find_heads,
)
from pytest_bertprobe.errors import NoHeadError
from pytest_bertprobe.sentences import SEED_SENTENCES
from tests.helpers import assert_one_failure, junit_metrics, plant_at_load

TinyFactory = Callable[..., Path]
AUDIT = ("-p", "no:cacheprovider", "-rs", "-k", "heads_read")


def _load(path: Path) -> tuple[Any, Any]:
    """The checkpoint's saved architecture (heads included), in eval mode, and the seed batch."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    architecture = getattr(transformers, AutoConfig.from_pretrained(path).architectures[0])
    model = architecture.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)(list(SEED_SENTENCES), padding=True, return_tensors="pt")


# --- planted wiring faults, each on a model object --------------------------------------------------


def _nsp_reads_cls_state(model: Any) -> None:
    """A port of BertForPreTraining whose NSP head reads last_hidden_state[:, 0] instead of pooler_output."""
    import torch

    class ClsFedHeads(torch.nn.Module):
        def __init__(self, heads: torch.nn.Module) -> None:
            super().__init__()
            self.predictions, self.seq_relationship = heads.predictions, heads.seq_relationship

        def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.predictions(sequence_output), self.seq_relationship(sequence_output[:, 0])

    model.cls = ClsFedHeads(model.cls).eval()


def _mlm_reads_embeddings(model: Any) -> None:
    """The MLM head fed the embedding output (hidden_states[0]) instead of the encoder's last layer."""
    captured: list[Any] = []
    model.base_model.embeddings.register_forward_hook(lambda _module, _args, output: captured.append(output))
    model.cls.register_forward_pre_hook(lambda _module, args: (captured[-1], *args[1:]))


def _nsp_head_slices_sequence(model: Any, keep_shape: bool) -> None:
    """An NSP head that takes the whole sequence and picks the first token itself, before or after the linear."""
    import torch

    class SequenceNSP(torch.nn.Module):
        def __init__(self, linear: torch.nn.Module) -> None:
            super().__init__()
            self.linear = linear

        def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
            return self.linear(sequence_output[:, 0, :]) if keep_shape else self.linear(sequence_output)[:, 0]

    class Heads(torch.nn.Module):
        def __init__(self, heads: torch.nn.Module) -> None:
            super().__init__()
            self.predictions, self.nsp = heads.predictions, SequenceNSP(heads.seq_relationship)

        def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.predictions(sequence_output), self.nsp(sequence_output)

    model.cls = Heads(model.cls).eval()


# --- helpers on model objects ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "model_class", "paths"),
    [
        ("bert", "BertForPreTraining", {"seq_relationship_logits": "cls.seq_relationship", "prediction_logits": "cls.predictions"}),
        ("bert", "BertForMaskedLM", {"logits": "cls"}),
        ("bert", "BertForNextSentencePrediction", {"logits": "cls"}),
        ("albert", "AlbertForPreTraining", {"sop_logits": "sop_classifier", "prediction_logits": "predictions"}),
        ("electra", "ElectraForPreTraining", {"logits": "discriminator_predictions"}),
        ("electra", "ElectraForMaskedLM", {"logits": "generator_predictions -> generator_lm_head"}),
        ("distilbert", "DistilBertForMaskedLM", {"logits": "vocab_transform -> activation -> vocab_layer_norm -> vocab_projector"}),
        ("modernbert", "ModernBertForMaskedLM", {"logits": "head -> decoder"}),
    ],
)
def test_healthy_heads_are_found_by_their_outputs_and_match_bit_exact(
    tiny_checkpoint: TinyFactory, arch: str, model_class: str, paths: dict[str, str]
) -> None:
    model, inputs = _load(tiny_checkpoint(arch, model_class=model_class))
    assert {head.field: head.path for head in find_heads(model, inputs)} == paths
    gaps = assert_heads_read_their_inputs(model, inputs, sentences=SEED_SENTENCES)
    assert set(gaps) == set(paths) and all(gap.max_abs == 0.0 for gap in gaps.values())


def test_nsp_head_fed_the_cls_state_fails_and_says_what_it_read(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _load(tiny_checkpoint("bert", model_class="BertForPreTraining"))
    assert_nsp_head_reads_pooler(model, inputs)  # control: the same model object before the fault
    _nsp_reads_cls_state(model)

    with pytest.raises(AssertionError) as failure:
        assert_nsp_head_reads_pooler(model, inputs, sentences=SEED_SENTENCES)

    message = str(failure.value)
    assert message.startswith("seq_relationship_logits == cls.seq_relationship(pooler_output): tensors are not close!")
    assert "Greatest absolute difference:" in message and "(sentence " in message and "(up to 1e-06 allowed)" in message
    assert "Hint: the NSP head reads last_hidden_state[:, 0] (the [CLS] state), but pretraining fed it pooler_output" in message
    assert assert_mlm_head_reads_last_hidden_state(model, inputs).max_abs == 0.0  # the MLM head is still wired right


def test_mlm_head_fed_the_embeddings_fails_and_says_what_it_read(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _load(tiny_checkpoint("bert", model_class="BertForMaskedLM"))
    assert_mlm_head_reads_last_hidden_state(model, inputs)
    _mlm_reads_embeddings(model)

    with pytest.raises(AssertionError) as failure:
        assert_mlm_head_reads_last_hidden_state(model, inputs, sentences=SEED_SENTENCES)

    message = str(failure.value)
    assert message.startswith("logits == cls(last_hidden_state): tensors are not close!")
    assert "Hint: the MLM head reads hidden_states[0] (the embeddings), but pretraining fed it last_hidden_state" in message


@pytest.mark.parametrize(
    ("keep_shape", "expected"),
    [
        (True, "the head cannot be applied to pooler_output of shape (5, 32) (IndexError: "),
        (False, "the head applied to pooler_output gives shape (5,), the logits have shape (5, 2)."),
    ],
)
def test_nsp_head_that_slices_the_sequence_itself_fails(tiny_checkpoint: TinyFactory, keep_shape: bool, expected: str) -> None:
    model, inputs = _load(tiny_checkpoint("bert", model_class="BertForPreTraining"))
    _nsp_head_slices_sequence(model, keep_shape)

    with pytest.raises(AssertionError) as failure:
        assert_nsp_head_reads_pooler(model, inputs)

    message = str(failure.value)
    assert message.startswith(f"seq_relationship_logits == cls.nsp(pooler_output): {expected}")
    assert "Hint: the NSP head reads last_hidden_state, but pretraining fed it pooler_output" in message


def test_nsp_head_on_a_base_without_pooler_output_fails(tiny_checkpoint: TinyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from pytest_bertprobe.forward import cache as forward

    model, inputs = _load(tiny_checkpoint("bert", model_class="BertForPreTraining"))
    _nsp_reads_cls_state(model)
    # A base that returns no pooler_output while its NSP head still runs (the head ignores pooled_output).
    real_forward = forward.forward
    monkeypatch.setattr(forward, "forward", lambda *args: replace(real_forward(*args), pooler_output=None))

    with pytest.raises(AssertionError, match=r"base model returned pooler_output=None \(the head reads last_hidden_state\[:, 0\]"):
        assert_nsp_head_reads_pooler(model, inputs)


def test_tolerance_can_be_widened_per_call(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _load(tiny_checkpoint("bert", model_class="BertForPreTraining"))
    _nsp_reads_cls_state(model)
    assert assert_nsp_head_reads_pooler(model, inputs, atol=1e3).mismatched == 0


@pytest.mark.parametrize(
    ("model_class", "helper", "reason"),
    [
        ("AutoModel", assert_heads_read_their_inputs, "BertModel has no pretraining or fine-tuned head"),
        ("BertForSequenceClassification", assert_nsp_head_reads_pooler, "BertForSequenceClassification has no NSP/SOP head"),
        ("BertForMaskedLM", assert_nsp_head_reads_pooler, "BertForMaskedLM has no NSP/SOP head"),
        ("BertForNextSentencePrediction", assert_mlm_head_reads_last_hidden_state, "BertForNextSentencePrediction has no MLM head"),
    ],
)
def test_models_without_the_head_raise_no_head_error(tiny_checkpoint: TinyFactory, model_class: str, helper: Any, reason: str) -> None:
    model, inputs = _load(tiny_checkpoint("bert", model_class=model_class))
    with pytest.raises(NoHeadError, match=f"^{reason}$"):
        helper(model, inputs)


def test_head_model_in_training_mode_is_refused(tiny_checkpoint: TinyFactory) -> None:
    model, inputs = _load(tiny_checkpoint("bert", model_class="BertForPreTraining"))
    model.train()
    with pytest.raises(AssertionError, match="BertForPreTraining is in training mode"):
        assert_nsp_head_reads_pooler(model, inputs)


# --- the audit ---------------------------------------------------------------------------------------


def test_audit_passes_healthy_heads_and_skips_checkpoints_without_them(pytester: pytest.Pytester, tiny_checkpoint: TinyFactory) -> None:
    pretraining = tiny_checkpoint("bert", model_class="BertForPreTraining")
    masked_lm = tiny_checkpoint("roberta", model_class="RobertaForMaskedLM")
    sop = tiny_checkpoint("albert", model_class="AlbertForPreTraining")
    bare, classifier = tiny_checkpoint("bert"), tiny_checkpoint("bert", model_class="BertForSequenceClassification")
    models = [f"--bert-model={path}" for path in (pretraining, masked_lm, sop, bare, classifier)]
    result = pytester.runpytest(*models, *AUDIT, "--junitxml=out.xml")
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*checkpoint has no head (saved as BertModel)"])
    metrics = {name.split("[")[1][:-1]: values for name, values in junit_metrics(pytester.path / "out.xml").items()}
    heads = {model: set(values["parts"]) for model, values in metrics.items()}
    assert heads == {
        pretraining.name: {"seq_relationship_logits", "prediction_logits"},
        masked_lm.name: {"logits"},
        sop.name: {"sop_logits", "prediction_logits"},
        classifier.name: {"logits"},
    }
    assert metrics[classifier.name]["head"] == "SequenceClassification(2 labels) ← pooler_output"
    assert metrics[pretraining.name]["head"] == "NSP ← pooler_output, MLM ← last_hidden_state"
    assert all(values["max_abs"] == 0.0 and values["atol"] == 1e-6 for values in metrics.values())


def test_audit_fails_a_ported_nsp_head_that_reads_the_cls_state(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.models.bert import modeling_bert

    def ported_forward(self: Any, sequence_output: Any, pooled_output: Any) -> tuple[Any, Any]:
        return self.predictions(sequence_output), self.seq_relationship(sequence_output[:, 0])

    # The model code is wrong, the weights are fine: every BertForPreTraining it loads is affected.
    monkeypatch.setattr(modeling_bert.BertPreTrainingHeads, "forward", ported_forward)
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert', model_class='BertForPreTraining')}", *AUDIT)
    assert_one_failure(result, [
        "E*seq_relationship_logits == cls.seq_relationship(pooler_output): tensors are not close!",
        "E*Greatest absolute difference: * at index (*) (sentence *) (up to 1e-06 allowed)",
        "E*Hint: the NSP head reads last_hidden_state[[]:, 0[]] (the [[]CLS[]] state), but pretraining fed it pooler_output*",
    ])


def test_audit_fails_an_mlm_head_fed_the_embeddings(
    pytester: pytest.Pytester, tiny_checkpoint: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_at_load(monkeypatch, lambda checkpoint: _mlm_reads_embeddings(checkpoint.head_model))
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert', model_class='BertForMaskedLM')}", *AUDIT)
    assert_one_failure(result, [
        "E*logits == cls(last_hidden_state): tensors are not close!",
        "E*Hint: the MLM head reads hidden_states[[]0[]] (the embeddings), but pretraining fed it last_hidden_state*",
    ])
