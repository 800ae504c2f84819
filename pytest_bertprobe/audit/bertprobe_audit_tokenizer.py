"""Audit: the tokenizer contract (§2 #13) and vocabulary coverage (§2 #14), one check per clause."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.audit.harness import given_batches, run_check
from pytest_bertprobe.checks.tokenizer import contract, coverage, special_tokens
from pytest_bertprobe.checks.tokenizer import files as tokenizer_files
from pytest_bertprobe.forward import cache
from pytest_bertprobe.session import probe_session
from pytest_bertprobe.strategies import Sentence, materialize


@pytest.mark.bertprobe_audit(check="tokenizer_special_tokens")
@given_batches
def test_cls_opens_and_sep_closes_every_input(
    request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any, batch: list[Sentence]
) -> None:
    """[CLS]/BOS at position 0 and [SEP]/EOS last, for single sentences, pairs and truncated text."""
    sentences = materialize(batch, bert_tokenizer)
    pairs = list(zip(sentences, reversed(sentences)))
    run_check(request, contract.assert_special_tokens_in_place, bert_model, bert_tokenizer, sentences=sentences, pairs=pairs)


@pytest.mark.bertprobe_audit(check="tokenizer_padding_side")
def test_pads_on_the_right_for_absolute_positions(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """Absolute-position models get right padding; rotary and relative ones may pad either side."""
    run_check(request, contract.assert_pads_on_the_right, bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="tokenizer_input_names")
def test_model_accepts_every_tokenizer_input(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """Every name in model_input_names is a named argument of model.forward."""
    run_check(request, contract.assert_input_names_accepted, bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="tokenizer_ids_in_embeddings")
def test_every_token_id_has_an_embedding_row(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """Every token id, added tokens included, is below the embedding matrix's row count."""
    run_check(request, contract.assert_token_ids_fit_embeddings, bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="tokenizer_token_types")
def test_pair_token_types_fit_type_vocab_size(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """Pair token_type_ids stay below type_vocab_size."""
    run_check(request, contract.assert_token_types_fit, bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="tokenizer_max_length")
def test_max_length_fits_the_position_table(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """model_max_length fits the usable positions, and a forward pass at that length works."""
    run_check(request, contract.assert_max_length_fits, bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="tokenizer_pad_id")
def test_pad_ids_agree(request: pytest.FixtureRequest, bert_model: Any, bert_tokenizer: Any) -> None:
    """The tokenizer's pad id is config.pad_token_id."""
    run_check(request, contract.assert_pad_ids_agree, bert_model, bert_tokenizer)


@pytest.mark.bertprobe_audit(check="tokenizer_special_ids")
def test_special_tokens_are_real(request: pytest.FixtureRequest, bert_checkpoint: Any, bert_model: Any, bert_tokenizer: Any) -> None:
    """Each special token has its own id in the vocabulary files (not [UNK]); config's bos/eos/cls/sep ids name them."""
    run_check(request, special_tokens.assert_special_tokens_real, bert_model, bert_tokenizer, folder=_folder(bert_checkpoint))


@pytest.mark.bertprobe_audit(check="tokenizer_files_agree")
@given_batches
def test_tokenizer_files_agree(request: pytest.FixtureRequest, bert_checkpoint: Any, bert_tokenizer: Any, batch: list[Sentence]) -> None:
    """vocab.txt, vocab.json, a sentencepiece model and tokenizer.json give every token the same id, and so do their tokenizers."""
    folder = _folder(bert_checkpoint)

    # The checkpoint's own tokenizer is AutoTokenizer's from these files, unless remote code built it.
    loaded = None if probe_session(request.config).settings.trust_remote_code else bert_checkpoint.tokenizer

    def built() -> Any:  # once per checkpoint, kept with its (shared, read-only) tokenizer's encodings
        return cache.recall(
            bert_tokenizer, ("tokenizer files", str(folder)), lambda: tokenizer_files.build_tokenizers(folder, loaded=loaded)
        )

    sentences = materialize(batch, bert_tokenizer)
    run_check(request, tokenizer_files.assert_tokenizer_files_agree, folder, sentences=sentences, tokenizers=built)


def _folder(checkpoint: Any) -> Any:
    """The checkpoint's files: its folder, or the hub cache snapshot its config.json was fetched into."""
    return checkpoint.source.local_path or checkpoint.source.config_file.parent


@pytest.mark.bertprobe_audit(check="token_coverage")
def test_declared_languages_are_covered(request: pytest.FixtureRequest, bert_tokenizer: Any) -> None:
    """[UNK] rates per script are reported; a --bert-languages language past the threshold fails."""
    languages = probe_session(request.config).settings.languages
    run_check(request, coverage.assert_language_coverage, bert_tokenizer, languages)


@pytest.mark.bertprobe_audit(check="tokenizer_casing")
def test_vocabulary_and_tokenizer_agree_on_case(request: pytest.FixtureRequest, bert_tokenizer: Any) -> None:
    """Cased text does not flood [UNK], and a lower-casing tokenizer does not hide a cased vocabulary."""
    run_check(request, coverage.assert_casing_consistent, bert_tokenizer)
