"""Signs that a module was freshly initialised and never trained: evidence per Linear, LayerNorm and Embedding.

Biases start at zero and only a gradient moves them; LayerNorm starts at weight 1, bias 0; a weight drawn
from N(0, initializer_range) that no gradient touched keeps that std. Reported, never failed on its own.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_STD_WINDOW = 0.05  # an untouched N(0, r) weight has std r within sampling noise; trained ones drift well past 5%


def linear_fingerprint(linear: torch.nn.Linear, initializer_range: float | None) -> dict[str, Any]:
    """Fresh-init signs of a Linear: a bias zero in every unit, a weight std near `initializer_range`."""
    weight_std = float(linear.weight.detach().float().std())
    bias = linear.bias
    return {
        "bias_all_zero": None if bias is None else bool((bias.detach() == 0).all()),
        "bias_max_abs": None if bias is None else float(bias.detach().float().abs().max()),
        "weight_std": weight_std,
        "weight_std_ratio": weight_std / initializer_range if initializer_range else None,
    }


def _near_init(ratio: float | None) -> bool:
    return ratio is not None and abs(ratio - 1.0) <= _STD_WINDOW


def module_evidence(model: torch.nn.Module, initializer_range: float | None) -> dict[str, dict[str, Any]]:
    """For each Linear / LayerNorm / Embedding of `model`: its fresh-init signs and whether it looks untrained."""
    import torch

    found: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                signs = linear_fingerprint(module, initializer_range)
                fresh = signs["bias_all_zero"] if module.bias is not None else _near_init(signs["weight_std_ratio"])
                found[name] = {"kind": "linear", **signs, "looks_untrained": bool(fresh)}
            elif isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
                ones = bool((module.weight == 1).all())
                zeros = module.bias is None or bool((module.bias == 0).all())
                found[name] = {"kind": "layer_norm", "weight_all_one": ones, "bias_all_zero": zeros, "looks_untrained": ones and zeros}
            elif isinstance(module, torch.nn.Embedding):
                std = float(module.weight.float().std())
                ratio = std / initializer_range if initializer_range else None
                found[name] = {"kind": "embedding", "weight_std": std, "weight_std_ratio": ratio, "looks_untrained": _near_init(ratio)}
    return found


def looks_untrained(evidence: dict[str, dict[str, Any]], *, besides: Collection[str] = ()) -> list[str]:
    """The modules whose evidence says freshly initialised, leaving out `besides` and what lies under them."""
    return [
        name
        for name, signs in evidence.items()
        if signs["looks_untrained"] and not any(name == other or name.startswith(other + ".") for other in besides)
    ]
