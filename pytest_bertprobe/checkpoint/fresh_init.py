"""Signs that a module was freshly initialised and never trained: evidence per Linear, LayerNorm and Embedding.

Biases start at zero and only a gradient moves them; LayerNorm starts at weight 1, bias 0; a weight drawn
from N(0, initializer_range) that no gradient touched keeps that std. A matrix large enough to judge
(`spectrum.MIN_SIDE`) is judged by its entries instead: a random draw by any scheme, or shuffled entries, look
random there (`spectrum.py`), whatever its bias says (docs/DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.spectrum import MatrixStats, measure_matrix

if TYPE_CHECKING:
    import torch

_STD_WINDOW = 0.05  # an untouched N(0, r) weight has std r within sampling noise; trained ones drift well past 5%
# Spectra read per model: each costs 16 power steps, where the spread costs one pass. Past this many matrices that
# look random on both counts the model has failed; the rest are named by their spread (a random bge-large: 4.3 s -> 0.4 s).
SPECTRA_PER_MODEL = 8


def linear_fingerprint(linear: torch.nn.Linear, initializer_range: float | None) -> dict[str, Any]:
    """Fresh-init signs of a Linear: a bias zero in every unit, a weight std near `initializer_range`."""
    weight_std = float(linear.weight.detach().float().std())
    return {**_bias_signs(linear.bias), "weight_std": weight_std, "weight_std_ratio": _ratio(weight_std, initializer_range)}


def _bias_signs(bias: torch.Tensor | None) -> dict[str, Any]:
    return {
        "bias_all_zero": None if bias is None else bool((bias.detach() == 0).all()),
        "bias_max_abs": None if bias is None else float(bias.detach().float().abs().max()),
    }


def _ratio(std: float, initializer_range: float | None) -> float | None:
    return std / initializer_range if initializer_range else None


def _near_init(ratio: float | None) -> bool:
    return ratio is not None and abs(ratio - 1.0) <= _STD_WINDOW


def _under(name: str, others: Collection[str]) -> bool:
    return any(name == other or name.startswith(other + ".") for other in others)


def module_evidence(
    model: torch.nn.Module, initializer_range: float | None, *, besides: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """For each Linear / LayerNorm / Embedding of `model` outside `besides`: its fresh-init signs and whether it looks untrained.

    A Linear or Embedding whose weight has both sides of at least `spectrum.MIN_SIDE` looks untrained when its matrix
    looks random (`MatrixStats.looks_random`); a smaller one when its bias is zero in every unit (or, without a bias,
    its weight std is within 5% of `initializer_range`); a LayerNorm when its weight is 1 and its bias 0 everywhere.
    A weight shared by several modules (tied embeddings) is measured once; spectra are read for the first
    `SPECTRA_PER_MODEL` matrices whose spread looks random, the others judged by their spread.
    """
    import torch

    found: dict[str, dict[str, Any]] = {}
    measured: dict[int, MatrixStats | None] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if _under(name, besides):
                continue
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) and module.weight.is_floating_point():
                weight = module.weight
                if id(weight) not in measured:
                    spectra = sum(1 for stats in measured.values() if stats is not None and stats.edge is not None)
                    measured[id(weight)] = measure_matrix(weight, spectrum=spectra < SPECTRA_PER_MODEL)
                linear = isinstance(module, torch.nn.Linear)
                found[name] = _matrix_evidence("linear" if linear else "embedding", weight, module.bias if linear else None,
                                               measured[id(weight)], initializer_range)  # fmt: skip
            elif isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
                ones = bool((module.weight == 1).all())
                zeros = module.bias is None or bool((module.bias == 0).all())
                found[name] = {"kind": "layer_norm", "units": int(module.weight.numel()), "weight_all_one": ones,
                               "bias_all_zero": zeros, "looks_untrained": ones and zeros}  # fmt: skip
    return found


def _matrix_evidence(
    kind: str, weight: torch.Tensor, bias: torch.Tensor | None, stats: MatrixStats | None, initializer_range: float | None
) -> dict[str, Any]:
    std = stats.std if stats is not None else float(weight.detach().float().std())
    signs: dict[str, Any] = {"kind": kind, "shape": list(weight.shape), "weight_std": std, "weight_std_ratio": _ratio(std, initializer_range)}
    if kind == "linear":
        signs.update(_bias_signs(bias))
    if stats is not None:
        signs["matrix"] = stats.metrics()
        signs["looks_untrained"] = stats.looks_random
    elif bias is not None:
        signs["looks_untrained"] = bool(signs["bias_all_zero"])
    else:
        signs["looks_untrained"] = _near_init(signs["weight_std_ratio"])
    return signs


def looks_untrained(evidence: dict[str, dict[str, Any]]) -> list[str]:
    """The modules whose evidence says freshly initialised."""
    return [name for name, signs in evidence.items() if signs["looks_untrained"]]
