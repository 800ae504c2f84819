"""Forward passes: one per distinct batch, with hidden states and the pooler's real input."""

from __future__ import annotations

import hashlib
import inspect
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_CACHE_SIZE = 64


@dataclass(frozen=True)
class Forward:
    """What one forward pass produced; `pooler_input` is what the pooler module actually received."""

    inputs: Mapping[str, torch.Tensor]
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None
    hidden_states: tuple[torch.Tensor, ...]
    pooler_input: torch.Tensor | None


class _Memo:
    """Per-model memo of forward passes, and how many passes were really run."""

    def __init__(self) -> None:
        self.entries: OrderedDict[str, Forward] = OrderedDict()
        self.passes = 0


_memos: weakref.WeakKeyDictionary[Any, _Memo] = weakref.WeakKeyDictionary()


def share_forward_passes(model: PreTrainedModel) -> None:
    """Memoize `run` for `model`: only for models nobody mutates, such as the session fixtures."""
    _memos.setdefault(model, _Memo())


def stop_sharing(model: PreTrainedModel) -> None:
    """Drop the memo, releasing its tensors."""
    _memos.pop(model, None)


def forward_passes(model: PreTrainedModel) -> int:
    """How many forward passes `run` has really executed for a shared model."""
    memo = _memos.get(model)
    return memo.passes if memo is not None else 0


def encode(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], device: Any = None) -> Any:
    """Tokenize a batch the way consumers do: padded, truncated to the model maximum."""
    encoding = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")
    return encoding.to(device) if device is not None else encoding


def accepted_inputs(model: PreTrainedModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The tokenizer outputs that `model.forward` takes (DistilBERT takes no token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return {name: value for name, value in inputs.items() if name in parameters}


def require_eval_mode(model: Any) -> None:
    """Fail when any module is in training mode: dropout would make every comparison noise."""
    __tracebackhide__ = True
    import torch

    # A stateless leaf (Tanh, Identity) swapped in after .eval() trains nothing; flag what can act on the flag.
    training = [
        name or type(model).__name__
        for name, module in model.named_modules()
        if module.training
        and (isinstance(module, torch.nn.Dropout) or next(module.children(), None) is not None
             or next(module.parameters(recurse=False), None) is not None)
    ]
    if training:
        raise AssertionError(
            f"{type(model).__name__} is in training mode ({len(training)} modules, first: {training[0]!r}): "
            "dropout is on, so outputs are random.\nHint: call model.eval() before auditing, and return "
            "models in eval mode from fixtures (from_config and .train() leave them in training mode)"
        )


def run(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> Forward:
    """Run (or recall) one forward pass of `inputs` with hidden states and the pooler input."""
    __tracebackhide__ = True
    require_eval_mode(model)
    memo = _memos.get(model)
    if memo is None:
        return execute(model, inputs)
    key = _batch_key(inputs)
    if key not in memo.entries:
        memo.entries[key] = execute(model, inputs)
        memo.passes += 1
        if len(memo.entries) > _CACHE_SIZE:
            memo.entries.popitem(last=False)
    memo.entries.move_to_end(key)
    return memo.entries[key]


def _batch_key(inputs: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(inputs):
        tensor = inputs[name]
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def execute(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> Forward:
    """Always run a fresh forward pass, bypassing the memo (determinism and kernel comparisons need one)."""
    import torch

    captured: list[torch.Tensor] = []
    pooler = getattr(model.base_model, "pooler", None)
    handle = None
    if isinstance(pooler, torch.nn.Module):
        handle = pooler.register_forward_hook(lambda _module, args, _output: captured.append(args[0]))
    on_device = {name: value.to(model.device) for name, value in accepted_inputs(model, inputs).items()}
    try:
        with torch.inference_mode():
            output = model(**on_device, output_hidden_states=True, return_dict=True)
    finally:
        if handle is not None:
            handle.remove()
    return Forward(
        inputs=on_device,
        last_hidden_state=output.last_hidden_state,
        pooler_output=getattr(output, "pooler_output", None),
        hidden_states=tuple(output.hidden_states or ()),
        pooler_input=captured[-1] if captured else None,
    )
