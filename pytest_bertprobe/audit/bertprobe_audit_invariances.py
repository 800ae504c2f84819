"""Audit: the model's outputs behave — hidden states, padding, masks, batch order, repeat passes, kernels, save/load."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit import plot_data
from pytest_bertprobe.audit.harness import (
    encode_batch,
    given_batches,
    record_plot_data,
    run_check,
    run_on_batch,
)
from pytest_bertprobe.checks.consistency import (
    assert_deterministic,
    assert_eager_matches_sdpa,
    assert_save_load_round_trip,
)
from pytest_bertprobe.checks.invariances import (
    assert_hidden_states_consistent,
    assert_masked_content_invariant,
    assert_padding_invariant,
    assert_permutation_equivariant,
)
from pytest_bertprobe.sentences import SEED_SENTENCES
from pytest_bertprobe.strategies import Sentence, materialize

Batch = list[Sentence]


@pytest.mark.bertprobe_audit(check="hidden_states")
@given_batches
def test_hidden_states_are_the_embeddings_and_each_layer(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: Batch) -> None:
    """num_hidden_layers + 1 hidden states, the first the embeddings, the last last_hidden_state."""
    run_on_batch(request, assert_hidden_states_consistent, bert_model, bert_tokenizer, batch)


@pytest.mark.bertprobe_audit(check="padding_invariance")
@given_batches
def test_each_sentence_alone_matches_its_padded_row(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: Batch) -> None:
    """padding a sentence into a batch changes neither its [CLS], its pooler_output nor its tokens."""
    sentences = materialize(batch, bert_tokenizer)
    record_plot_data(request, plot_data.padding_errors, bert_model, bert_tokenizer, sentences)
    run_check(request, assert_padding_invariant, bert_model, bert_tokenizer, sentences=sentences)


@pytest.mark.bertprobe_audit(check="masked_content_invariance")
@given_batches
def test_ids_under_the_attention_mask_change_nothing(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: Batch) -> None:
    """whatever sits where attention_mask is 0 cannot reach the real tokens."""
    run_on_batch(request, assert_masked_content_invariant, bert_model, bert_tokenizer, batch)


@pytest.mark.bertprobe_audit(check="permutation_equivariance")
@given_batches
def test_shuffling_the_batch_shuffles_the_outputs(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: Batch) -> None:
    """a sentence's outputs do not depend on its neighbours or its place in the batch."""
    run_on_batch(request, assert_permutation_equivariant, bert_model, bert_tokenizer, batch)


@pytest.mark.bertprobe_audit(check="eager_matches_sdpa")
@given_batches
def test_sdpa_attention_matches_eager(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: Batch) -> None:
    """the fused attention kernel agrees with the reference one, where the architecture has both."""
    run_on_batch(request, assert_eager_matches_sdpa, bert_model, bert_tokenizer, batch)


# Repeat passes and a save/load cycle decide the same whatever the text: the seed's padded batch serves, a pass
# the memo holds from the embedding checks (determinism's first pass; the round trip's expected outputs).
@pytest.mark.bertprobe_audit(check="determinism")
def test_eval_mode_and_repeat_passes_are_identical(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """no module in training mode, and two passes give the same bits."""
    sentences, inputs = encode_batch(bert_model, bert_tokenizer, list(SEED_SENTENCES))
    run_check(request, assert_deterministic, bert_model, inputs, sentences=sentences)


@pytest.mark.bertprobe_audit(check="save_load_round_trip")
def test_save_and_load_give_identical_outputs(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """save_pretrained then from_pretrained reproduces the model exactly."""
    sentences, inputs = encode_batch(bert_model, bert_tokenizer, list(SEED_SENTENCES))
    run_check(request, assert_save_load_round_trip, bert_model, inputs, sentences=sentences)
