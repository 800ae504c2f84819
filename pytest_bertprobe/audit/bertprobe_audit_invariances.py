"""Audit: the model's outputs behave — hidden states, padding, masks, batch order, repeat passes, kernels, save/load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_bertprobe import probes
from pytest_bertprobe.compare import Gap
from pytest_bertprobe.consistency import assert_deterministic, assert_eager_matches_sdpa, assert_save_load_round_trip
from pytest_bertprobe.invariances import (
    NotApplicable,
    assert_hidden_states_consistent,
    assert_masked_content_invariant,
    assert_padding_invariant,
    assert_permutation_equivariant,
)
from pytest_bertprobe.report import attach_metrics
from pytest_bertprobe.sentences import PROBE_SENTENCES

# Every check on the same padded batch of PROBE_SENTENCES shares one forward pass (probes.run's memo).
_BATCH_CHECKS: dict[str, Callable[..., Gap]] = {
    "hidden_states": assert_hidden_states_consistent,
    "masked_content_invariance": assert_masked_content_invariant,
    "permutation_equivariance": assert_permutation_equivariant,
    "determinism": assert_deterministic,
    "eager_matches_sdpa": assert_eager_matches_sdpa,
    "save_load_round_trip": assert_save_load_round_trip,
}


def _audit(request: pytest.FixtureRequest, check: Callable[[], Gap]) -> None:
    try:
        gap = check()
    except NotApplicable as reason:
        pytest.skip(str(reason))
    attach_metrics(request.node, gap)


def _on_probe_batch(request: pytest.FixtureRequest, check: str, model: Any, tokenizer: Any) -> None:
    inputs = probes.encode(tokenizer, PROBE_SENTENCES, model.device)
    _audit(request, lambda: _BATCH_CHECKS[check](model, inputs, sentences=PROBE_SENTENCES))


@pytest.mark.bertprobe_audit(check="hidden_states")
def test_hidden_states_are_the_embeddings_and_each_layer(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#6: num_hidden_layers + 1 hidden states, the first the embeddings, the last last_hidden_state."""
    _on_probe_batch(request, "hidden_states", bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="padding_invariance")
def test_each_sentence_alone_matches_its_padded_row(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#7: padding a sentence into a batch changes neither its [CLS], its pooler_output nor its tokens."""
    _audit(request, lambda: assert_padding_invariant(bert_model, bert_tokenizer, sentences=PROBE_SENTENCES))


@pytest.mark.bertprobe_audit(check="masked_content_invariance")
def test_ids_under_the_attention_mask_change_nothing(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#8: whatever sits where attention_mask is 0 cannot reach the real tokens."""
    _on_probe_batch(request, "masked_content_invariance", bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="permutation_equivariance")
def test_shuffling_the_batch_shuffles_the_outputs(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#9: a sentence's outputs do not depend on its neighbours or its place in the batch."""
    _on_probe_batch(request, "permutation_equivariance", bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="determinism")
def test_eval_mode_and_repeat_passes_are_identical(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#10: no module in training mode, and two passes give the same bits."""
    _on_probe_batch(request, "determinism", bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="eager_matches_sdpa")
def test_sdpa_attention_matches_eager(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#11: the fused attention kernel agrees with the reference one, where the architecture has both."""
    _on_probe_batch(request, "eager_matches_sdpa", bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="save_load_round_trip")
def test_save_and_load_give_identical_outputs(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """#12: save_pretrained then from_pretrained reproduces the model exactly."""
    _on_probe_batch(request, "save_load_round_trip", bert_model, bert_tokenizer)
