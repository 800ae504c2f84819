"""What the HTML report's plots draw, read off the checks' own (memoized) forward passes: small and plain JSON.

Each function returns a dict for `report.record_plot`: a `kind` naming the plot, a `series` of [label, value]
pairs where examples add points, and the settings the plot draws against. None where there is nothing to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import tolerances
from pytest_bertprobe.checkpoint.anatomy import cls_vector, require_checkable_pooler
from pytest_bertprobe.checkpoint.limits import input_limit
from pytest_bertprobe.checks import reference, snapshot
from pytest_bertprobe.compare import quote
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import alone_and_batched

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HISTOGRAM_BINS = 48
SATURATION = 2.0  # tanh(2) = 0.96: past it the pooler's gradient and its resolution are nearly gone


def pooler_preactivation(model: PreTrainedModel, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Histogram of the pooler's dense outputs (before tanh) and the share past ±`SATURATION`."""
    import torch

    outputs = cache.forward(model, inputs)
    anatomy = require_checkable_pooler(model, outputs)
    if anatomy.dense is None or outputs.pooler_input is None:
        return None
    with torch.inference_mode():
        values = anatomy.dense(cls_vector(outputs.pooler_input)).double().flatten().cpu()
    values = values[torch.isfinite(values)]
    if not values.numel():
        return None
    bound = min(max(3.0, float(values.abs().max())), 1e3)
    counts = torch.histc(values.clamp(-bound, bound), bins=HISTOGRAM_BINS, min=-bound, max=bound)
    return {
        "kind": "pooler_histogram",
        "counts": [int(count) for count in counts],
        "range": [-bound, bound],
        "saturated": round(float((values.abs() > SATURATION).double().mean()), 4),
        "threshold": SATURATION,
        "values": int(values.numel()),
        "spread": float(values.std()) if values.numel() > 1 else 0.0,
    }


def cls_pooler_cosines(model: PreTrainedModel, inputs: Mapping[str, Any], sentences: Sequence[str]) -> dict[str, Any] | None:
    """Per sentence, the cosine between its [CLS] hidden state and its pooler_output (the seed's Q1)."""
    import torch

    outputs = cache.forward(model, inputs)
    require_checkable_pooler(model, outputs)
    assert outputs.pooler_output is not None
    cosines = torch.nn.functional.cosine_similarity(
        outputs.pooler_output.double(), outputs.last_hidden_state[:, 0].double(), dim=-1
    )  # fmt: skip
    return {"kind": "cls_pooler_cosine", "series": [[quote(sentence, 40), round(float(c), 5)] for sentence, c in zip(sentences, cosines)]}


def padding_errors(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str]) -> dict[str, Any] | None:
    """Per sentence length (tokens), the greatest difference between the sentence alone and its padded row."""
    if len(sentences) < 2:
        return None
    limit = input_limit(model, tokenizer)  # the inputs the check itself ran
    batch_inputs = cache.encode(tokenizer, sentences, model.device, max_length=limit)
    batch_mask = cache.attention_mask(batch_inputs, tokenizer.pad_token_id)
    (alone_tokens, alone_pooled), (batch_tokens, batch_pooled) = alone_and_batched(model, batch_inputs, batch_mask)
    errors = (alone_tokens.double() - batch_tokens.double()).abs().amax(dim=(1, 2))
    if alone_pooled is not None and batch_pooled is not None:
        errors = errors.maximum((alone_pooled.double() - batch_pooled.double()).abs().amax(dim=1))
    points = [[int(length), float(error)] for length, error in zip(batch_mask.sum(dim=1).tolist(), errors.tolist())]
    tolerance = tolerances.tolerance_for("padding_invariance", tolerances.model_dtype(model))
    return {"kind": "padding_error", "series": points, "atol": tolerance.atol, "padded_to": int(batch_mask.shape[1])}


def layer_differences(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reference_model: PreTrainedModel,
    reference_tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[str],
    stored_dtypes: Sequence[str | None] = (),
) -> dict[str, Any] | None:
    """Greatest difference to the reference per output, embeddings to pooler, and which outputs diverge."""
    inputs = cache.encode(tokenizer, sentences, model.device, max_length=input_limit(model, tokenizer))
    reference_inputs = cache.encode(
        reference_tokenizer, sentences, reference_model.device, max_length=input_limit(reference_model, reference_tokenizer)
    )
    if inputs["input_ids"].shape != reference_inputs["input_ids"].shape:
        return None  # the tokenizers disagree: reference_agreement says where, and no layer was compared
    dtype = reference.comparison_dtype(model, reference_model, stored=stored_dtypes)
    tolerance = tolerances.tolerance_for(reference.CHECK, dtype)
    ours = reference.named_outputs(cache.forward(model, inputs))
    theirs = reference.named_outputs(cache.forward(reference_model, reference_inputs))
    if list(ours) != list(theirs):
        return None
    gaps = reference.output_gaps(ours, theirs, inputs, tolerance, getattr(model.config, "pad_token_id", None))
    return {
        "kind": "layer_differences",
        "series": [[_short_layer(name), gap.max_abs] for name, gap in gaps.items()],
        "diverging": [_short_layer(name) for name, gap in gaps.items() if gap.mismatched],
        "atol": tolerance.atol,
        "compared_at": dtype,
        "against": "the reference",
    }


def snapshot_differences(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, stored: dict[str, Any]) -> dict[str, Any] | None:
    """Greatest difference to the golden snapshot per embedding it holds (cls, pooler, mean), and which diverge."""
    gaps = snapshot.embedding_differences(model, tokenizer, stored)
    if not gaps:
        return None
    return {
        "kind": "layer_differences",
        "series": [[kind, gap.max_abs] for kind, gap in gaps.items()],
        "diverging": [kind for kind, gap in gaps.items() if gap.mismatched],
        "atol": next(iter(gaps.values())).atol,
        "against": "the golden snapshot",
    }


def _short_layer(name: str) -> str:
    """`layer 3 of 4 (hidden_states[3])` → `layer 3`; `embeddings (hidden_states[0])` → `embeddings`."""
    return name.split(" of ")[0].split(" (")[0]


def export_differences(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per output of a float ONNX export, the greatest difference to the checkpoint (from onnx_agreement's metrics)."""
    if not metrics or "per_output" not in metrics:
        return None  # a quantized export is judged by behaviour, not per output
    return {
        "kind": "layer_differences",
        "series": metrics["per_output"],
        "diverging": metrics.get("diverging_outputs", []),
        "atol": metrics.get("atol", 0.0),
        "against": "the ONNX export",
    }
