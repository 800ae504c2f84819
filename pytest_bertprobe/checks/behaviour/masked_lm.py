"""A masked-LM head recovers masked tokens of natural sentences: the encoder under it is the trained one.

Each token of the probe's masked-LM sentences (`probe_set.MASKED_SENTENCES`, in the languages the tokenizer reads)
is masked alone, all rows in one batched pass of the head model (chunks of `_ROWS`). Per language: the
pseudo-perplexity (exp of the mean negative log-likelihood of the true token; Salazar et al. 2020; bert-base scores
about 4 on clean English, a uniform guess the vocabulary size) and the share of tokens in the top 1 and top 5.
The verdict is on the best language read: its pseudo-perplexity must lie at most `MAX_EXPONENT` of the way from 1
to the vocabulary size on a log scale (docs/DESIGN.md §3 has the calibration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checks.behaviour.probe_set import MASKED_SENTENCES
from pytest_bertprobe.checks.behaviour.reading import not_read, read_languages
from pytest_bertprobe.errors import CheckFailure, NotApplicable
from pytest_bertprobe.forward import cache

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Pseudo-perplexity at most vocabulary ** 0.7 (1378 for 30522 tokens): context must remove 30% of a uniform guess's
# uncertainty. A masked-LM head trained on all-MiniLM-L6-v2 scores 455 on English; with its encoder freshly
# initialised 19027, layers 1 and 4 swapped 7192, gelu run as relu 7522, layer 0's query and key swapped 2456.
MAX_EXPONENT = 0.7
TOP_K = 5
_MASKED_PER_SENTENCE = 12  # evenly spread: a long sentence adds no more rows than this
_ROWS = 256


def masked_lm_logits_field(head_model: PreTrainedModel) -> str | None:
    """The output field holding masked-LM logits: `prediction_logits` (`*ForPreTraining`), `logits` (`*ForMaskedLM`)."""
    name = type(head_model).__name__
    if name.endswith("ForMaskedLM"):
        return "logits"
    if name.endswith("ForPreTraining") and hasattr(head_model, "get_output_embeddings") and head_model.get_output_embeddings() is not None:
        return "prediction_logits"  # BERT-style; ELECTRA's ForPreTraining is a discriminator with no vocabulary output
    return None


def masked_rows(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str]) -> tuple[list[list[int]], list[tuple[int, int, int]]]:
    """Rows with one [MASK] each; per row (sentence index, masked position, true id)."""
    special = set(tokenizer.all_special_ids)
    rows, where = [], []
    for index, ids in enumerate(tokenizer(list(sentences), truncation=True, max_length=64)["input_ids"]):
        positions = [position for position, token in enumerate(ids) if token not in special]
        step = max(1, math.ceil(len(positions) / _MASKED_PER_SENTENCE))
        for position in positions[::step]:
            rows.append([*ids[:position], tokenizer.mask_token_id, *ids[position + 1 :]])
            where.append((index, position, ids[position]))
    return rows, where


def assert_masked_tokens_recovered(
    head_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_exponent: float = MAX_EXPONENT,
    sentences: Mapping[str, Sequence[str]] = MASKED_SENTENCES,
) -> dict[str, Any]:
    """Assert the masked-LM head recovers masked tokens far better than chance in some language the tokenizer reads.

    Returns per language the pseudo-perplexity, top-1 and top-5 recovery, or why the language was not read.
    """
    __tracebackhide__ = True
    field = masked_lm_logits_field(head_model)
    if field is None:
        raise NotApplicable(f"{type(head_model).__name__} has no masked-LM head")
    if tokenizer.mask_token_id is None:
        raise NotApplicable("the tokenizer has no mask token, so no token can be masked")
    readings = read_languages(tokenizer, sentences)
    judged = [language for language, reading in readings.items() if reading.read]
    if not judged:
        raise NotApplicable("the tokenizer reads none of the probe languages: " + not_read(readings))
    texts = [(language, text) for language in judged for text in sentences[language]]
    rows, where = masked_rows(tokenizer, [text for _, text in texts])
    negative_log, ranks = _score(head_model, field, tokenizer, rows, where)
    vocabulary = int(head_model.get_output_embeddings().weight.shape[0]) if head_model.get_output_embeddings() is not None else tokenizer.vocab_size
    per_language: dict[str, dict[str, Any]] = {}
    for language in judged:
        picked = [row for row, (sentence, _, _) in enumerate(where) if texts[sentence][0] == language]
        losses = [negative_log[row] for row in picked]
        per_language[language] = {
            "pseudo_perplexity": round(math.exp(sum(losses) / len(losses)), 3), "tokens": len(picked),
            "top1": round(sum(ranks[row] < 1 for row in picked) / len(picked), 4),
            f"top{TOP_K}": round(sum(ranks[row] < TOP_K for row in picked) / len(picked), 4),
        }  # fmt: skip
    best = min(per_language, key=lambda language: per_language[language]["pseudo_perplexity"])
    ceiling = vocabulary**max_exponent
    metrics: dict[str, Any] = {
        "pseudo_perplexity": per_language[best]["pseudo_perplexity"], "language": best, "vocabulary": vocabulary,
        "max_pseudo_perplexity": round(ceiling, 2), "max_exponent": max_exponent, "rows": len(rows),
        "languages": {**per_language, **{k: {"read": False, "reason": r.reason} for k, r in readings.items() if not r.read}},
    }  # fmt: skip
    score = per_language[best]
    if score["pseudo_perplexity"] > ceiling:
        described = ", ".join(f"{k} {v['pseudo_perplexity']:.4g} (top-{TOP_K} {v[f'top{TOP_K}']:.0%})" for k, v in per_language.items())
        unread = not_read(readings)
        raise CheckFailure(
            f"The masked-LM head does not recover masked tokens: pseudo-perplexity {score['pseudo_perplexity']:.4g} in its best "
            f"language ({best}, top-{TOP_K} recovery {score[f'top{TOP_K}']:.1%}), at most {ceiling:.4g} allowed "
            f"(vocabulary {vocabulary} ** {max_exponent:g}; a uniform guess scores {vocabulary}, bert-base about 4 on clean English).",
            details=[
                f"Per language, {len(rows)} tokens each masked alone in {len(texts)} sentences: {described}",
                *([f"Not judged, the tokenizer does not read them: {unread}"] if unread else []),
                f"Read from {type(head_model).__name__}.{field}",
            ],
            hint="an encoder trained with this head predicts masked words from their context; this one guesses. The "
            "encoder's weights are not the ones the head was trained with: a fresh initialisation, layers or projections saved "
            "in each other's place, or a config the weights were not trained with (hidden_act, num_attention_heads)",
            metrics=metrics,
        )
    return metrics


def _score(
    head_model: PreTrainedModel, field: str, tokenizer: PreTrainedTokenizerBase, rows: list[list[int]], where: list[tuple[int, int, int]]
) -> tuple[list[float], list[int]]:
    """Per row: the negative log-likelihood of the true token at its mask, and its rank among the predictions."""
    import torch

    cache.require_eval_mode(head_model)
    negative_log: list[float] = []
    ranks: list[int] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(rows), _ROWS):
        chunk, places = rows[start : start + _ROWS], where[start : start + _ROWS]
        width = max(len(row) for row in chunk)
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in chunk])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk])
        inputs = cache.accepted_inputs(head_model, {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
        with torch.inference_mode():
            output = head_model(**{name: value.to(head_model.device) for name, value in inputs.items()}, return_dict=True)
        logits = _at_masks(output[field], places).double().log_softmax(-1)
        truth = torch.tensor([token for _, _, token in places], device=logits.device)
        chosen = logits.gather(1, truth[:, None])
        negative_log.extend(torch.nan_to_num(-chosen[:, 0], nan=math.inf).tolist())  # NaN logits recover nothing
        ranks.extend((logits > chosen).sum(1).tolist())
    return negative_log, ranks


def _at_masks(logits: torch.Tensor, places: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    import torch

    positions = torch.tensor([position for _, position, _ in places], device=logits.device)
    return logits[torch.arange(len(places), device=logits.device), positions]
