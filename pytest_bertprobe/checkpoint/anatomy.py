"""Where the pooler lives in a model, what it is made of, and which activation it really applies."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from pytest_bertprobe.errors import NoPoolerError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

# model types whose `pooler_output` is a field, not a pooler (DPR returns the [CLS] state or a projection)
_NOT_A_POOLER = {"dpr"}
_ACTIVATION_MATCH = 1e-4


class PassOutputs(Protocol):
    """What the anatomy reads off a forward pass (a `forward.cache.Forward`)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None
    pooler_input: torch.Tensor | None


class PoolerKind(str, Enum):
    """How a model produces (or does not produce) `pooler_output`."""

    STANDARD = "standard"  # act(dense(hidden[:, 0]))
    IDENTITY = "identity"  # pooler_output is the [CLS] state by design
    ABSENT = "absent"  # the architecture has no pooler
    DISABLED = "disabled"  # it has one, switched off: pooler_output is None
    NOT_A_POOLER = "not-a-pooler"  # a field named pooler_output that is something else
    UNUSUAL = "unusual"  # a pooler, but not one dense layer


@dataclass(frozen=True)
class PoolerAnatomy:
    """The pooler's location and parts; `reason` says why pooler checks do not apply, when they do not."""

    model_type: str
    kind: PoolerKind
    module: torch.nn.Module | None
    dense: torch.nn.Linear | None
    reason: str = ""
    activation: str | None = None  # found numerically by `describe_pooler`
    reads_last_hidden_state: bool | None = None  # does the pooler's real input equal last_hidden_state?

    @property
    def checkable(self) -> bool:
        """True when `pooler_output == act(dense(cls))` is the claim to check."""
        return self.kind is PoolerKind.STANDARD


def locate_pooler(model: PreTrainedModel) -> PoolerAnatomy:
    """Find the pooler by the rule that holds across the family: `base_model.pooler`, then its Linear."""
    import torch

    base = model.base_model
    model_type = str(model.config.model_type)
    architecture = type(base).__name__
    if model_type in _NOT_A_POOLER:
        return PoolerAnatomy(
            model_type, PoolerKind.NOT_A_POOLER, None, None,
            f"{architecture}'s pooler_output is the [CLS] state or a projection, not a pooler",
        )
    if not hasattr(base, "pooler"):
        return PoolerAnatomy(
            model_type, PoolerKind.ABSENT, None, None,
            f"{architecture} ({model_type}) has no pooler: use last_hidden_state",
        )
    pooler = base.pooler
    if pooler is None:
        return PoolerAnatomy(
            model_type, PoolerKind.DISABLED, None, None,
            f"{architecture} was built without its pooler (add_pooling_layer=False): pooler_output is None",
        )
    linears = [pooler] if isinstance(pooler, torch.nn.Linear) else [
        module for module in pooler.modules() if isinstance(module, torch.nn.Linear)
    ]
    if not linears:
        return PoolerAnatomy(
            model_type, PoolerKind.IDENTITY, pooler, None,
            f"{architecture}'s pooler is the identity by design: pooler_output is the [CLS] state",
        )
    if len(linears) > 1:
        return PoolerAnatomy(
            model_type, PoolerKind.UNUSUAL, pooler, None,
            f"{architecture}'s pooler has {len(linears)} linear layers, not one dense layer",
        )
    return PoolerAnatomy(model_type, PoolerKind.STANDARD, pooler, linears[0])


def require_checkable_pooler(model: PreTrainedModel, outputs: PassOutputs) -> PoolerAnatomy:
    """The pooler's anatomy, or `NoPoolerError` saying why pooler checks do not apply to `model`."""
    anatomy = locate_pooler(model)
    if not anatomy.checkable:
        raise NoPoolerError(anatomy.reason)
    if outputs.pooler_output is None:
        raise NoPoolerError(f"{type(model).__name__} returned pooler_output=None")
    return anatomy


def cls_vector(pooler_input: torch.Tensor) -> torch.Tensor:
    """The [CLS] row of what the pooler received (ALBERT and BigBird pass it already sliced)."""
    return pooler_input[:, 0] if pooler_input.dim() == 3 else pooler_input


def describe_pooler(model: PreTrainedModel, outputs: PassOutputs) -> PoolerAnatomy:
    """`locate_pooler`, completed from a forward pass: the activation and what the pooler really read."""
    import torch

    anatomy = locate_pooler(model)
    reads = None
    if outputs.pooler_input is not None and outputs.pooler_input.dim() == 3:
        reads = outputs.pooler_input.shape == outputs.last_hidden_state.shape and bool(
            torch.equal(outputs.pooler_input, outputs.last_hidden_state)
        )
    elif outputs.pooler_input is not None:
        reads = bool(torch.equal(outputs.pooler_input, outputs.last_hidden_state[:, 0]))
    return replace(anatomy, activation=identify_activation(anatomy, outputs), reads_last_hidden_state=reads)


def identify_activation(anatomy: PoolerAnatomy, outputs: PassOutputs) -> str | None:
    """Name the activation numerically (tanh, identity, gelu, relu, sigmoid), not by attribute name."""
    import torch

    if anatomy.dense is None or outputs.pooler_output is None or outputs.pooler_input is None:
        return None
    with torch.inference_mode():
        pre_activation = anatomy.dense(cls_vector(outputs.pooler_input))
        candidates = {
            "tanh": torch.tanh(pre_activation),
            "identity": pre_activation,
            "gelu": torch.nn.functional.gelu(pre_activation),
            "relu": torch.relu(pre_activation),
            "sigmoid": torch.sigmoid(pre_activation),
        }
        for name, candidate in candidates.items():
            if candidate.shape == outputs.pooler_output.shape and bool(
                ((candidate - outputs.pooler_output).abs().max() <= _ACTIVATION_MATCH).item()
            ):
                return name
    return "unknown"
