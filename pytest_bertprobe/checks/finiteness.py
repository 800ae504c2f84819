"""`outputs_finite`: every output of a pass is free of NaN/inf, and which parameters hold any."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.compare import all_finite
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import assert_finite

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def assert_outputs_finite(
    model: PreTrainedModel, inputs: Mapping[str, Any], *, sentences: Sequence[str] | None = None
) -> dict[str, Any]:
    """Assert every output (each hidden state, last_hidden_state, pooler_output) is finite; return counts.

    The failure names the first tensor holding NaN/inf, how many values, the first position and sentence,
    and the model parameters that hold non-finite values.
    """
    __tracebackhide__ = True
    outputs = cache.forward(model, inputs)
    named = [(f"hidden_states[{k}]", state) for k, state in enumerate(outputs.hidden_states)]
    named.append(("last_hidden_state", outputs.last_hidden_state))
    if outputs.pooler_output is not None:
        named.append(("pooler_output", outputs.pooler_output))
    for name, tensor in named:
        if not all_finite(tensor):
            assert_finite(
                tensor,
                claim=f"{name} holds only finite values", sentences=sentences,
                hint=_nonfinite_hint(model, name, named),
            )  # fmt: skip
    return {"tensors": [name for name, _ in named], "elements": sum(t.numel() for _, t in named), "nonfinite": 0}


def nonfinite_parameters(model: PreTrainedModel) -> list[str]:
    """`name (k of n values)` for each parameter holding NaN/inf."""
    import torch

    return [
        f"{name} ({int((~torch.isfinite(p)).sum())} of {p.numel()} values)"
        for name, p in model.named_parameters()
        if not all_finite(p)
    ]


def _nonfinite_hint(model: PreTrainedModel, first: str, named: Sequence[tuple[str, torch.Tensor]]) -> str:
    bad = [name for name, tensor in named if not all_finite(tensor)]
    layers = sum(name.startswith("hidden_states[") for name, _ in named)
    where = {"hidden_states[0]": "the embedding output"}
    where.update({f"hidden_states[{k}]": f"the output of encoder layer {k - 1}" for k in range(1, layers)})
    parameters = nonfinite_parameters(model)
    source = (
        f"parameters holding NaN/inf: {', '.join(parameters)}" if parameters
        else "no parameter holds NaN/inf, so an operation overflows (try float32, or check layer-norm eps)"
    )
    return f"non-finite values start at {first} ({where.get(first, first)}) and reach {', '.join(bad)}; {source}"
