"""Invariances #6-#12: each planted fault fails its audit check with a message naming it; healthy models pass."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checks.consistency import (
    assert_deterministic,
    assert_eager_matches_sdpa,
    assert_save_load_round_trip,
)
from pytest_bertprobe.checks.invariances import (
    NotApplicable,
    assert_hidden_states_consistent,
    assert_masked_content_invariant,
    assert_padding_invariant,
    assert_permutation_equivariant,
)
from pytest_bertprobe.forward import cache as forward
from pytest_bertprobe.sentences import PROBE_SENTENCES
from tests.helpers import assert_one_failure

# The audit test behind each check, for `-k`.
AUDIT_TESTS = {
    "hidden_states": "test_hidden_states_are_the_embeddings_and_each_layer",
    "padding_invariance": "test_each_sentence_alone_matches_its_padded_row",
    "masked_content_invariance": "test_ids_under_the_attention_mask_change_nothing",
    "permutation_equivariance": "test_shuffling_the_batch_shuffles_the_outputs",
    "determinism": "test_eval_mode_and_repeat_passes_are_identical",
    "eager_matches_sdpa": "test_sdpa_attention_matches_eager",
    "save_load_round_trip": "test_save_and_load_give_identical_outputs",
}

# Each fault is a user's conftest overriding `bert_model`, as users do.
TRAINING_MODE = """
import pytest

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    return bert_checkpoint.model.train()
"""

PRUNED_LAYERS = """
import pytest

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    model = bert_checkpoint.model
    model.encoder.layer = model.encoder.layer[:1]  # "keep the first layers", config left saying 2
    return model.eval()  # slicing makes a new ModuleList, in training mode
"""

DROPOUT_IN_EVAL = """
import pytest, torch

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    model = bert_checkpoint.model
    # custom code that hard-codes training=True: dropout stays on in eval mode
    model.embeddings.register_forward_hook(lambda module, args, out: torch.nn.functional.dropout(out, 0.1, training=True))
    return model
"""

FIRST_ROW_MASK = """
import pytest

def first_row_mask(module, args, kwargs):
    if kwargs.get("attention_mask") is not None:  # a broadcasting bug: row 0's mask for every row
        kwargs["attention_mask"] = kwargs["attention_mask"][:1].expand_as(kwargs["attention_mask"])
    return args, kwargs

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    bert_checkpoint.model.register_forward_pre_hook(first_row_mask, with_kwargs=True)
    return bert_checkpoint.model
"""

# transformers' sdpa attention (5.x interface and 4.x Sdpa classes alike) calls torch's kernel at call time.
LOSSY_SDPA = """
import torch

fused_kernel = torch.nn.functional.scaled_dot_product_attention

def lossy_sdpa(query, key, value, *args, **kwargs):
    # a fused kernel that rounds its operands to bfloat16
    query, key, value = (tensor.bfloat16().float() for tensor in (query, key, value))
    return fused_kernel(query, key, value, *args, **kwargs)

def pytest_configure(config):
    torch.nn.functional.scaled_dot_product_attention = lossy_sdpa

def pytest_unconfigure(config):
    torch.nn.functional.scaled_dot_product_attention = fused_kernel
"""

EPS_NOT_IN_CONFIG = """
import pytest, torch

@pytest.fixture(scope="session")
def bert_model(bert_checkpoint):
    for module in bert_checkpoint.model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = 1e-3  # a conversion fixed eps on the modules, not in config.layer_norm_eps
    return bert_checkpoint.model
"""


def _audit(pytester: pytest.Pytester, *models: Path, checks: tuple[str, ...], conftest: str | None = None) -> pytest.RunResult:
    if conftest is not None:
        pytester.makeconftest(conftest)
    selection = " or ".join(AUDIT_TESTS[check] for check in checks)
    arguments = [f"--bert-model={model}" for model in models]
    return pytester.runpytest(*arguments, "-k", selection, "-p", "no:cacheprovider", "-rfs")


@pytest.fixture(scope="session")
def mask_ignoring_checkpoint(tiny_checkpoint: Callable[..., Path]) -> Callable[[str], Path]:
    """Tiny yoso / fnet checkpoints: transformers' own models whose attention mask has no effect (5.24 and 4.57)."""
    return tiny_checkpoint


def _load(path: Path, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(path, **kwargs).eval(), AutoTokenizer.from_pretrained(path)


def _probe_inputs(tokenizer: Any) -> Any:
    return forward.encode(tokenizer, PROBE_SENTENCES)


# Faults planted by a conftest that overrides bert_model: each fails the one check that owns it, with its hint.
PLANTED = {
    "layers pruned without the config": ("hidden_states", PRUNED_LAYERS, [
        "E*len(hidden_states) == config.num_hidden_layers + 1: 2 != 3",
        "E*BertModel returned 2 hidden states*but its config declares num_hidden_layers=2",
        "E*Hint: were layers pruned or added without updating config.num_hidden_layers?*",
    ]),
    "a mask taken from the first row": ("permutation_equivariance", FIRST_ROW_MASK, [
        "E*outputs of the shuffled batch, put back in order == outputs of the batch*: tensors are not close!",
        "E*Greatest absolute difference: * (sentence *) (up to 1e-05 allowed)",
        "E*Hint: a row's output depends on the other rows or on its place in the batch*",
    ]),
    "a model left in training mode": ("determinism", TRAINING_MODE, [
        "E*BertModel is in training mode (* modules, first: 'BertModel'): dropout is on, so outputs are random.",
        "E*Hint: call model.eval() before auditing*",
        "FAILED *::test_eval_mode_and_repeat_passes_are_identical[[]bert[]]*",
    ]),
    "dropout hard-coded on in eval mode": ("determinism", DROPOUT_IN_EVAL, [
        "E*second forward pass == first forward pass, last_hidden_state[[]:, 0[]] ([[]CLS[]]): tensors are not close!",
        "E*(up to 0 allowed)",
        "E*Hint: the model is random in eval mode: functional dropout with training=True*",
    ]),
    "layer-norm eps changed outside the config": ("save_load_round_trip", EPS_NOT_IN_CONFIG, [
        "E*outputs after save_pretrained and BertModel.from_pretrained == before*: tensors are not close!",
        "E*(up to 0 allowed)",
        "E*Hint: the model in memory is not what save_pretrained writes*(activation, layer-norm eps)*",
    ]),
}  # fmt: skip


@pytest.mark.parametrize("plant", PLANTED)
def test_a_planted_fault_fails_the_check_that_owns_it(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path], plant: str) -> None:
    check, conftest, lines = PLANTED[plant]
    result = _audit(pytester, tiny_checkpoint("bert"), checks=(check,), conftest=conftest)
    assert_one_failure(result, lines)


# --- healthy controls ---------------------------------------------------------------------------


def test_healthy_checkpoint_passes_every_invariance_in_the_audit(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    result = _audit(pytester, tiny_checkpoint("bert"), checks=tuple(AUDIT_TESTS))
    result.assert_outcomes(passed=len(AUDIT_TESTS))


def test_helpers_pass_on_a_healthy_model_and_return_their_numbers(tiny_checkpoint: Callable[..., Path]) -> None:
    model, tokenizer = _load(tiny_checkpoint("bert"))
    inputs = _probe_inputs(tokenizer)
    assert assert_hidden_states_consistent(model, inputs).max_abs == 0.0
    assert assert_padding_invariant(model, tokenizer).max_abs < 1e-5
    assert assert_masked_content_invariant(model, inputs).max_abs < 1e-6
    assert assert_permutation_equivariant(model, inputs).max_abs < 1e-6
    assert assert_deterministic(model, inputs).max_abs == 0.0
    assert 0.0 < assert_eager_matches_sdpa(model, inputs).max_abs < 1e-5
    assert assert_save_load_round_trip(model, inputs).mismatched == 0


def test_mobilebert_trigram_embeddings_read_their_masked_neighbour_by_design(tiny_checkpoint: Callable[..., Path]) -> None:
    model, tokenizer = _load(tiny_checkpoint("mobilebert"))
    assert assert_masked_content_invariant(model, _probe_inputs(tokenizer)).max_abs == 0.0


# --- #6 hidden states ----------------------------------------------------------------------------


def test_an_untied_final_norm_is_compared_through_the_norm(tiny_checkpoint: Callable[..., Path]) -> None:
    import torch

    model, tokenizer = _load(tiny_checkpoint("modernbert"))
    model.config.tie_last_hidden_states = False  # hidden_states[-1] is then the state before final_norm
    inputs = _probe_inputs(tokenizer)
    outputs = forward.forward(model, inputs)
    assert not torch.equal(outputs.hidden_states[-1], outputs.last_hidden_state)
    assert assert_hidden_states_consistent(model, inputs).max_abs == 0.0


# --- #7 / #8 padding and masks: yoso and fnet ignore attention_mask --------------------------------


def test_models_that_ignore_the_attention_mask_fail_padding_and_masked_content(
    pytester: pytest.Pytester, mask_ignoring_checkpoint: Callable[[str], Path], tiny_checkpoint: Callable[..., Path]
) -> None:
    yoso, fnet, bert = mask_ignoring_checkpoint("yoso"), mask_ignoring_checkpoint("fnet"), tiny_checkpoint("bert")
    result = _audit(pytester, yoso, fnet, bert, checks=("padding_invariance", "masked_content_invariance"))
    result.assert_outcomes(failed=4, passed=2)
    result.stdout.fnmatch_lines([
        "E*each sentence alone == its row of the padded batch, last_hidden_state[[]:, 0[]] ([[]CLS[]]): tensors are not close!",
        "E*Greatest absolute difference: * at index (*) (sentence *: '*') (up to 0.0001 allowed)",
        "E*Hint: padding changes the outputs (the tokenizer pads on the right): does the model apply attention_mask?*",
    ])
    result.stdout.fnmatch_lines(["E*outputs with other ids under attention_mask=0 == outputs of the padded batch*not close!"])
    failed = {line.split("::")[1].split(" ")[0] for line in result.stdout.lines if line.startswith("FAILED ")}
    assert failed == {
        f"{AUDIT_TESTS[check]}[{model}]"
        for check in ("padding_invariance", "masked_content_invariance")
        for model in ("yoso", "fnet")
    }


def test_padding_failure_names_the_worst_sentence(mask_ignoring_checkpoint: Callable[[str], Path]) -> None:
    import torch

    model, tokenizer = _load(mask_ignoring_checkpoint("fnet"))
    batch = forward.encode(tokenizer, PROBE_SENTENCES)
    padded_cls = forward.forward(model, batch).last_hidden_state[:, 0]
    alone_cls = torch.cat([forward.forward(model, forward.encode(tokenizer, [s])).last_hidden_state[:, 0] for s in PROBE_SENTENCES])
    worst_row = int((alone_cls - padded_cls).abs().max(dim=1).values.argmax())
    with pytest.raises(AssertionError, match=re.escape(f"(sentence {worst_row}: {PROBE_SENTENCES[worst_row]!r})")) as failure:
        assert_padding_invariant(model, tokenizer)
    assert str(failure.value).startswith("each sentence alone == its row of the padded batch, last_hidden_state[:, 0]")


# --- #10 determinism and eval mode ------------------------------------------------------------------


def test_training_mode_fails_the_helper_directly(tiny_checkpoint: Callable[..., Path]) -> None:
    model, tokenizer = _load(tiny_checkpoint("bert"))
    with pytest.raises(AssertionError, match=r"BertModel is in training mode"):
        assert_deterministic(model.train(), _probe_inputs(tokenizer))


# --- #11 eager vs sdpa -------------------------------------------------------------------------------


def test_a_lossy_sdpa_kernel_fails_against_eager(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    import torch

    fused_kernel = torch.nn.functional.scaled_dot_product_attention
    result = _audit(pytester, tiny_checkpoint("bert"), checks=("eager_matches_sdpa",), conftest=LOSSY_SDPA)
    assert_one_failure(result, [
        "E*outputs with attn_implementation='sdpa' == with 'eager'*: tensors are not close!",
        "E*(up to 1e-05 allowed)",
        "E*Hint: the sdpa attention kernel disagrees with the reference eager attention on cpu*",
    ])
    assert torch.nn.functional.scaled_dot_product_attention is fused_kernel  # the planted kernel is gone again


def test_shared_passes_are_kept_apart_per_attention_implementation(tiny_checkpoint: Callable[..., Path]) -> None:
    from pytest_bertprobe.checkpoint import compat

    model, tokenizer = _load(tiny_checkpoint("bert"))
    with forward.shared(model, tokenizer):
        inputs = _probe_inputs(tokenizer)
        # In place (5.x) both implementations run on the model itself; 4.x runs eager on a twin outside the memo.
        own_passes = 2 if compat.switches_attention_in_place(model) else 1
        assert assert_eager_matches_sdpa(model, inputs).max_abs > 0  # two real passes, not one recalled twice
        assert forward.forward_passes(model) == own_passes
        assert_eager_matches_sdpa(model, inputs)
        assert forward.forward_passes(model) == own_passes  # a batch seen before: both recalled


def _crashing_kernel(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("sdpa kernel crashed")


@pytest.mark.parametrize("loaded_with", ["sdpa", "eager"])
def test_the_attention_implementation_is_restored_even_on_failure(
    loaded_with: str, tiny_checkpoint: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    model, tokenizer = _load(tiny_checkpoint("bert"), attn_implementation=loaded_with)
    inputs = _probe_inputs(tokenizer)
    assert_eager_matches_sdpa(model, inputs)
    assert model.config._attn_implementation == loaded_with
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda query, *args, **kwargs: query)
    with pytest.raises(AssertionError, match="attn_implementation='sdpa'"):
        assert_eager_matches_sdpa(model, inputs)
    assert model.config._attn_implementation == loaded_with
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", _crashing_kernel)
    with pytest.raises(RuntimeError, match="sdpa kernel crashed"):
        assert_eager_matches_sdpa(model, inputs)
    assert model.config._attn_implementation == loaded_with


def test_eager_only_architectures_are_not_applicable(tiny_checkpoint: Callable[..., Path]) -> None:
    model, tokenizer = _load(tiny_checkpoint("mpnet"))
    with pytest.raises(NotApplicable, match=r"MPNetModel \(mpnet\) has only the eager attention implementation"):
        assert_eager_matches_sdpa(model, _probe_inputs(tokenizer))


# --- #12 save / load ---------------------------------------------------------------------------------


def test_round_trip_of_a_head_models_encoder_leaves_the_shared_config_alone(tiny_checkpoint: Callable[..., Path]) -> None:
    from transformers import AutoTokenizer, BertForPreTraining

    path = tiny_checkpoint("bert")  # read only: the round trip writes elsewhere
    full = BertForPreTraining.from_pretrained(path).eval()  # heads random; `base_model` shares their config
    full.config.architectures = ["BertForPreTraining"]  # as loaded from a pretraining checkpoint
    before = full.config.to_dict()
    gap = assert_save_load_round_trip(full.base_model, _probe_inputs(AutoTokenizer.from_pretrained(path)))
    assert gap.mismatched == 0 and full.config.to_dict() == before


def test_round_trip_of_a_masked_lm_encoder_built_without_a_pooler_reloads_it_without_one(tiny_checkpoint: Callable[..., Path]) -> None:
    """BertForMaskedLM builds its BertModel with add_pooling_layer=False; reloaded as a plain BertModel it would grow a
    random pooler, and every healthy masked-LM would fail the round trip (found on the MiniLM masked-LM control)."""
    from transformers import AutoTokenizer, BertForMaskedLM

    path = tiny_checkpoint("bert", model_class="BertForMaskedLM")
    encoder = BertForMaskedLM.from_pretrained(path).eval().base_model
    assert encoder.pooler is None
    gap = assert_save_load_round_trip(encoder, _probe_inputs(AutoTokenizer.from_pretrained(path)))
    assert gap.mismatched == 0


# --- passes shared where nothing is padded ----------------------------------------------------------

# Token lengths with the tiny vocabulary: 4, 4, 3, 6 ("hello world" and "the weather" share one).
UNEQUAL = ["hello world", "the weather", "today", "hello the weather today"]


def test_rows_of_one_length_run_alone_in_one_pass(tiny_checkpoint: Callable[..., Path]) -> None:
    import torch

    from pytest_bertprobe.forward.views import passes_alone

    model, tokenizer = _load(tiny_checkpoint("bert"))
    with forward.shared(model, tokenizer):
        inputs = forward.encode(tokenizer, UNEQUAL)
        alone = passes_alone(model, inputs, inputs["attention_mask"], range(len(UNEQUAL)))
        assert forward.forward_passes(model) == 3  # lengths 4 (two rows together), 3 and 6
        for sentence, outputs in zip(UNEQUAL, alone):
            single = forward.fresh_forward(model, forward.encode(tokenizer, [sentence]))
            assert outputs.inputs["input_ids"].tolist() == single.inputs["input_ids"].tolist()
            torch.testing.assert_close(outputs.last_hidden_state, single.last_hidden_state, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(outputs.pooler_output, single.pooler_output, atol=1e-6, rtol=1e-5)


def test_rows_an_unpadded_pass_holds_are_recalled_and_padded_rows_are_not(tiny_checkpoint: Callable[..., Path]) -> None:
    from pytest_bertprobe.forward.views import passes_alone

    model, tokenizer = _load(tiny_checkpoint("bert"))
    with forward.shared(model, tokenizer):
        forward.forward(model, forward.encode(tokenizer, UNEQUAL[:2]))  # equal lengths: no padding
        padded = forward.encode(tokenizer, UNEQUAL)
        forward.forward(model, padded)
        assert forward.forward_passes(model) == 2
        passes_alone(model, padded, padded["attention_mask"], [0, 1])
        assert forward.forward_passes(model) == 2  # both rows recalled from the unpadded pass
        passes_alone(model, padded, padded["attention_mask"], [2])
        assert forward.forward_passes(model) == 3  # "today" sits padded in every pass so far: it runs alone


def test_repeat_passes_recall_the_seed_batch_the_embedding_check_ran(pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]) -> None:
    import json

    selection = f"{AUDIT_TESTS['determinism']} or {AUDIT_TESTS['save_load_round_trip']} or test_declared_sentence_embedding_is_sound"
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-k", selection, "--bert-report-json=report.json")
    result.assert_outcomes(passed=3)
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    passes = {check["check"]: check["metrics"]["forward_passes"] for check in report["checks"]}
    assert passes["determinism"] == 1  # the fresh pass; the first is the memo's
    assert passes["save_load_round_trip"] == 1  # the reloaded model's pass only
