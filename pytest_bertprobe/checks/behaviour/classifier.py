"""A fine-tuned sequence classifier is not degenerate: its logits answer the input, and the input decides its prediction.

Over the probe set's sentences in the languages the tokenizer reads (one batched pass of the head model, chunks of
`_ROWS`), two claims (docs/DESIGN.md §3 has the calibration):

- the logits are not all near zero: some sentence's labels are at least `MIN_LOGIT_RANGE` apart (a zeroed or
  shrunk classifier gives every label the same probability);
- the prediction is not decided by a bias: where every sentence gets the same label although the head's last
  linear layer without its bias would give them different ones, the sentence closest to another label must lie
  within `MAX_BIAS_LEAD` standard deviations (of that lead over the sentences) of it. A classifier whose task puts
  all the probe sentences in one class (a toxicity filter on polite text) does so without its bias too, or still
  moves its lead with the input; one whose bias outweighs the input does neither.

A regression head (one output) must give distinct sentences scores at least `MIN_LOGIT_RANGE` apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checks.behaviour.probe_set import triplet_sentences
from pytest_bertprobe.checks.behaviour.reading import read_languages
from pytest_bertprobe.checks.heads.replay import find_heads, task_of
from pytest_bertprobe.compare import quote
from pytest_bertprobe.errors import CheckFailure, NotApplicable
from pytest_bertprobe.forward import cache

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MIN_LOGIT_RANGE = 0.1  # two labels 0.1 apart: probabilities within 2.5 points of each other
MAX_BIAS_LEAD = 8.0  # the closest sentence 8 standard deviations from changing its label: the bias decides
_ROWS = 128


def probe_sentences(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The probe set's sentences in the languages `tokenizer` reads (all of them when it reads none)."""
    by_language = triplet_sentences()
    readings = read_languages(tokenizer, by_language)
    read = [sentence for language, texts in by_language.items() if readings[language].read for sentence in texts]
    return read or [sentence for texts in by_language.values() for sentence in texts]


def assert_classifier_not_degenerate(
    head_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    min_logit_range: float = MIN_LOGIT_RANGE,
    max_bias_lead: float = MAX_BIAS_LEAD,
    sentences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Assert a `*ForSequenceClassification` model's logits move with the input and its prediction is not fixed by a bias.

    `sentences` default to the probe set's in the languages the tokenizer reads. Returns the label counts, the
    greatest logit range and, when one label wins everywhere, the lead in standard deviations.
    """
    __tracebackhide__ = True
    if task_of(head_model) != "SequenceClassification":
        raise NotApplicable(f"{type(head_model).__name__} is not a sequence classifier")
    texts = list(sentences) if sentences is not None else probe_sentences(tokenizer)
    logits, unbiased = (tensor.double() for tensor in _logits(head_model, tokenizer, texts))
    labels = int(logits.shape[-1])
    names = getattr(head_model.config, "id2label", None) or {}
    if labels == 1:
        spread = float(logits[:, 0].max() - logits[:, 0].min())
        metrics: dict[str, Any] = {"labels": 1, "sentences": len(texts), "score_range": round(spread, 6)}
        if spread < min_logit_range:
            raise CheckFailure(
                f"The regression head gives {len(texts)} distinct probe sentences scores within {spread:.3g} of each other "
                f"(at least {min_logit_range:g} apart required): its output does not answer the input.",
                hint="a zeroed or shrunk head, or an encoder that gives every sentence the same state; check the head's weights",
                metrics=metrics,
            )
        return metrics
    ranges = logits.max(1).values - logits.min(1).values
    predicted = logits.argmax(1)
    counts = Counter(str(names.get(int(label), int(label))) for label in predicted.tolist())
    metrics = {"labels": labels, "sentences": len(texts), "predictions": dict(counts.most_common()),
               "logit_range": round(float(ranges.max()), 6), "min_logit_range": min_logit_range}  # fmt: skip
    if float(ranges.max()) < min_logit_range:
        raise CheckFailure(
            f"The classifier's logits are all near zero: over {len(texts)} probe sentences no two of its {labels} labels are more "
            f"than {float(ranges.max()):.3g} apart (at least {min_logit_range:g} required), so every label gets the same probability.",
            details=[f"Largest |logit|: {float(logits.abs().max()):.3g}; predictions {dict(counts.most_common())}"],
            hint="the classifier's weights are zeroed or shrunk (a conversion that scaled them, a head saved before training); "
            "check classifier.weight and its bias",
            metrics=metrics,
        )
    if len(counts) == 1 and len(set(unbiased.argmax(1).tolist())) > 1:
        winner = int(predicted[0])
        others = logits.clone()
        others[:, winner] = float("-inf")
        lead = logits[:, winner] - others.max(1).values
        closest = int(lead.argmin())
        deviations = float(lead[closest] / lead.std()) if float(lead.std()) > 0 else float("inf")
        metrics.update(predictions_without_bias=dict(Counter(str(names.get(i, i)) for i in unbiased.argmax(1).tolist()).most_common()),
                       lead=round(float(lead[closest]), 6), lead_std=round(float(lead.std()), 6), lead_in_std=round(deviations, 3),
                       max_bias_lead=max_bias_lead)  # fmt: skip
        if deviations > max_bias_lead:
            label = names.get(winner, winner)
            raise CheckFailure(
                f"The classifier predicts {label!r} for all {len(texts)} probe sentences, and the input cannot change that: the "
                f"sentence closest to another label ({quote(texts[closest], 60)}) leads by {float(lead[closest]):.3g}, "
                f"{deviations:.1f} standard deviations of the lead over the sentences (at most {max_bias_lead:g} allowed).",
                details=[f"Lead of {label!r} over the next label: least {float(lead.min()):.3g}, mean {float(lead.mean()):.3g}, "
                         f"std {float(lead.std()):.3g}",
                         f"Without the bias of its last linear layer the head predicts {metrics['predictions_without_bias']}"],  # fmt: skip
                hint=f"a bias decides the prediction: check classifier.bias (label {winner}) against the weights' scale; "
                "a head whose bias was trained or converted alone, or an encoder whose outputs barely vary",
                metrics=metrics,
            )
    return metrics


def _logits(head_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The head model's logits for every sentence (chunks of `_ROWS`), and the same without its last linear layer's bias."""
    import torch

    parts, unbiased = [], []
    for start in range(0, len(sentences), _ROWS):
        inputs = cache.encode(tokenizer, sentences[start : start + _ROWS], head_model.device)
        head = next(head for head in find_heads(head_model, inputs) if head.field == "logits")
        last = head.chain[-1].module
        bias = last.bias if isinstance(last, torch.nn.Linear) and last.bias is not None else None
        logits = head.logits.reshape(len(inputs["input_ids"]), -1).float()
        parts.append(logits.cpu())
        unbiased.append((logits - bias.float() if bias is not None else logits).cpu())
    return torch.cat(parts), torch.cat(unbiased)
