"""A quantized export judged by what its sentence embeddings do, since int8 cannot match float32 numerically.

Three measures over the probe and generated sentences, each against the checkpoint's own embeddings:
cosine per sentence (the worst one), Spearman correlation of all pairwise similarities (does it rank pairs
alike?), and top-k neighbour overlap (does retrieval return the same neighbours?). Thresholds come from
all-MiniLM-L6-v2 exported with dynamo and quantized by onnxruntime's `quantize_dynamic` (int8 weights), over
the audit's 52 distinct sentences: worst cosine 0.82 (the 512-token sentence; mean 0.93), Spearman 0.95, top-5
overlap 0.82 (see README). The bounds leave room below those and fail what no longer serves search: an
export of other weights, or a quantization that scrambles the similarities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.compare import quote
from pytest_bertprobe.errors import CheckFailure

if TYPE_CHECKING:
    import torch

TOP_K = 5


@dataclass(frozen=True)
class Thresholds:
    """The least each measure may be for a quantized export to pass."""

    cosine: float = 0.6
    spearman: float = 0.85
    top_k_overlap: float = 0.6


THRESHOLDS = Thresholds()


def collect(
    embeddings: dict[str, tuple[torch.Tensor, torch.Tensor]], sentences: Sequence[str], ours: torch.Tensor, theirs: torch.Tensor
) -> None:
    """Keep each sentence's (checkpoint, export) embedding the first time a batch holds it."""
    for row, sentence in enumerate(sentences):
        embeddings.setdefault(sentence, (ours[row].detach().cpu().double(), theirs[row].detach().cpu().double()))


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 (ties broken by position: similarities of distinct sentences rarely tie)."""
    import torch

    ranks = torch.empty_like(values)
    ranks[values.argsort()] = torch.arange(values.numel(), dtype=values.dtype)
    return ranks


def spearman(first: torch.Tensor, second: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-d tensors."""
    import torch

    a, b = _ranks(first), _ranks(second)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()).clamp_min(1e-30))


def behaviour(embeddings: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Cosine per sentence (worst, mean), Spearman of pairwise similarities, top-k neighbour overlap."""
    import torch

    sentences = list(embeddings)
    ours = torch.nn.functional.normalize(torch.stack([embeddings[s][0] for s in sentences]), dim=-1)
    theirs = torch.nn.functional.normalize(torch.stack([embeddings[s][1] for s in sentences]), dim=-1)
    cosine = (ours * theirs).sum(-1)
    worst = int(cosine.argmin())
    ours_sim, theirs_sim = ours @ ours.T, theirs @ theirs.T
    upper = torch.triu_indices(len(sentences), len(sentences), offset=1)
    k = min(TOP_K, len(sentences) - 1)
    eye = torch.eye(len(sentences), dtype=torch.bool)
    ours_top = ours_sim.masked_fill(eye, -2).topk(k, dim=-1).indices
    theirs_top = theirs_sim.masked_fill(eye, -2).topk(k, dim=-1).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ours_top, theirs_top)] if k > 0 else [1.0]
    return {
        "sentences": len(sentences),
        "cosine_min": round(float(cosine.min()), 6),
        "cosine_mean": round(float(cosine.mean()), 6),
        "worst_sentence": quote(sentences[worst]),
        "spearman": round(spearman(ours_sim[upper[0], upper[1]], theirs_sim[upper[0], upper[1]]), 6) if upper.shape[1] > 1 else 1.0,
        "top_k": k,
        "top_k_overlap": round(sum(overlap) / len(overlap), 6),
    }


def assert_behaves(label: str, evidence: str, embeddings: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                   thresholds: Thresholds = THRESHOLDS) -> dict[str, Any]:  # fmt: skip
    """Fail when a quantized export's embeddings fall below a threshold; return the measures for the report."""
    __tracebackhide__ = True
    measured = behaviour(embeddings)
    bounds = {"cosine_min": thresholds.cosine, "spearman": thresholds.spearman, "top_k_overlap": thresholds.top_k_overlap}
    metrics = {**measured, "quantized": evidence, "thresholds": bounds}
    below = [f"{name} {measured[name]:.4g} < {bound:g}" for name, bound in bounds.items() if measured[name] < bound]
    if below:
        raise CheckFailure(
            f"quantized ONNX export {label} no longer behaves like the checkpoint: {'; '.join(below)}\n\n"
            f"Worst cosine to the checkpoint's embedding: {measured['cosine_min']:.4g} on {measured['worst_sentence']} "
            f"(mean {measured['cosine_mean']:.4g} over {measured['sentences']} sentences)\n"
            f"Spearman correlation of pairwise similarities: {measured['spearman']:.4g}; "
            f"top-{measured['top_k']} neighbour overlap: {measured['top_k_overlap']:.4g}\n"
            f"Quantized: {evidence}\n"
            "Hint: an int8 export of a healthy checkpoint keeps the ranking of similarities; this one does not. "
            "Quantize from the float export of this checkpoint, keep sensitive layers (embeddings, the last layer) "
            "in float, or use per-channel weights",
            metrics=metrics,
        )
    return metrics
