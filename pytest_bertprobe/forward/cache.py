"""Forward passes: one per distinct batch, with hidden states and the pooler's real input."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import os
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_bertprobe.compare import all_finite
from pytest_bertprobe.errors import CheckFailure, ForwardError
from pytest_bertprobe.forward.failure import diagnose

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Every check walks the same batches in the same order, so the memo must hold a whole walk to share it:
# bounded by bytes (hidden states dominate), not by a count that a larger --bert-budget would outgrow.
_CACHE_BYTES = 3 << 30
_ENCODING_CACHE_SIZE = 4096
T = TypeVar("T")


@dataclass(frozen=True)
class Forward:
    """What one forward pass produced; `pooler_input` is what the pooler module actually received."""

    inputs: Mapping[str, torch.Tensor]
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None
    hidden_states: tuple[torch.Tensor, ...]
    pooler_input: torch.Tensor | None
    finite: bool = True  # last_hidden_state and pooler_output hold no NaN/inf


class _Memo:
    """Per-model memo of forward passes and of its tokenizer's encodings; passes really run, and their cost."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self.entries: OrderedDict[str, tuple[Forward, int]] = OrderedDict()
        self.bytes = 0
        self.passes = 0
        self.timings: list[tuple[int, float]] = []  # (tokens, seconds) of each pass run
        self.failures: dict[str, ForwardError] = {}  # passes that raised, by key: raised again, not rerun
        self.rows: dict[str, tuple[str, int]] = {}  # a row's key alone -> (key, row) of an unpadded pass holding it
        self.tokenizer = tokenizer


_memos: weakref.WeakKeyDictionary[Any, _Memo] = weakref.WeakKeyDictionary()
_encodings: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_passes_run = 0
_nonfinite_served = 0


def wait_passively() -> None:
    """Before torch loads, unless the user chose a policy: OpenMP threads that wait at a barrier sleep, not spin.

    Forward passes of small batches are a chain of short parallel regions. Where the cores are shared (CI
    runners, other suites running), a spinning thread holds the core its descheduled partner needs: on 2
    shared cores the MiniLM audit ran 7x slower and the bge-large-sized one 4x slower with the default policy.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextlib.contextmanager
def shared(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None = None) -> Iterator[PreTrainedModel]:
    """Memoize `forward` for `model` (and `encode` for `tokenizer`) inside the block; leaving it releases the tensors.

    Only for what nobody mutates inside the block, such as the session fixtures' checkpoint.
    """
    memo = _memos.setdefault(model, _Memo(tokenizer))
    if tokenizer is not None:
        memo.tokenizer = tokenizer
        _encodings.setdefault(tokenizer, OrderedDict())
    try:
        yield model
    finally:
        memo = _memos.pop(model, None)
        if memo is not None and memo.tokenizer is not None:
            _encodings.pop(memo.tokenizer, None)


def forward_passes(model: PreTrainedModel) -> int:
    """How many forward passes have really run for a shared model (memo misses and fresh passes)."""
    memo = _memos.get(model)
    return memo.passes if memo is not None else 0


def passes_run() -> int:
    """How many forward passes `fresh_forward` has run in this process, on any model."""
    return _passes_run


def nonfinite_served() -> int:
    """How many passes with NaN/inf outputs `forward`, `fresh_forward` and `recall_alone` have handed out in this process:
    a check that read one, of a model whose weights hold NaN/inf, fails by the weights' cause (audit.harness)."""
    return _nonfinite_served


def _served(outputs: Forward) -> Forward:
    global _nonfinite_served
    if not outputs.finite:
        _nonfinite_served += 1
    return outputs


def pass_timings(model: PreTrainedModel) -> list[tuple[int, float]]:
    """`(tokens, seconds)` of each pass run so far for a shared model: what a time budget is measured from."""
    memo = _memos.get(model)
    return list(memo.timings) if memo is not None else []


def ran_at_width(model: PreTrainedModel, width: int) -> bool:
    """Whether the memo holds a pass of `model` on inputs exactly `width` tokens wide (a pass that worked)."""
    memo = _memos.get(model)
    widths = (outputs.inputs.get("input_ids") for outputs, _ in memo.entries.values()) if memo is not None else ()
    return any(ids is not None and int(ids.shape[-1]) == width for ids in widths)


def encode(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], device: Any = None, *, max_length: int | None = None) -> Any:
    """Tokenize a batch the way consumers do: padded, truncated to the model maximum (recalled for a shared tokenizer).

    `max_length` truncates where the tokenizer would not (`tokenizer_contract.input_limit`).
    """
    key = (tuple(sentences), str(device)) if max_length is None else (tuple(sentences), str(device), max_length)
    encoding = recall(tokenizer, key, lambda: _tokenize(tokenizer, sentences, device, max_length))
    return copy.copy(encoding)  # a new mapping over the same tensors: callers may add or replace keys


def attention_mask(inputs: Mapping[str, Any], pad_token_id: int | None) -> torch.Tensor:
    """The batch's attention mask; built where the tokenizer emits none (FNet's convention).

    Built: all ones for an unpadded batch, else zeros on each row's run of `pad_token_id` at its padded end.
    """
    import torch

    mask = inputs.get("attention_mask")
    if mask is not None:
        return mask
    ids = inputs["input_ids"]
    if pad_token_id is None or ids.shape[0] < 2:
        return torch.ones_like(ids)
    pads = (ids == pad_token_id).to(torch.int8)
    trailing = pads.flip(-1).cumprod(-1).flip(-1).bool()
    leading = pads.cumprod(-1).bool()
    return (~(trailing | leading)).to(ids.dtype)


def recall(tokenizer: PreTrainedTokenizerBase, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """`compute()`, kept with a shared tokenizer's encodings under `key` (computed each time for any other)."""
    memo = _encodings.get(tokenizer)
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
        if len(memo) > _ENCODING_CACHE_SIZE:
            memo.popitem(last=False)
    memo.move_to_end(key)
    return memo[key]  # type: ignore[no-any-return]


def _tokenize(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], device: Any, max_length: int | None) -> Any:
    encoding = tokenizer(list(sentences), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return encoding.to(device) if device is not None else encoding


def accepted_inputs(model: PreTrainedModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The tokenizer outputs that `model.forward` takes (DistilBERT takes no token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return {name: value for name, value in inputs.items() if name in parameters}


def require_eval_mode(model: Any) -> None:
    """Fail when any module is in training mode: dropout would make every comparison noise."""
    __tracebackhide__ = True
    import torch

    if not any(module.training for module in model.modules()):  # the common case, without building names
        return
    # A stateless leaf (Tanh, Identity) swapped in after .eval() trains nothing; flag what can act on the flag.
    training = [
        name or type(model).__name__
        for name, module in model.named_modules()
        if module.training
        and (isinstance(module, torch.nn.Dropout) or next(module.children(), None) is not None
             or next(module.parameters(recurse=False), None) is not None)
    ]
    if training:
        raise CheckFailure(
            f"{type(model).__name__} is in training mode ({len(training)} modules, first: {training[0]!r}): "
            "dropout is on, so outputs are random.\nHint: call model.eval() before auditing, and return "
            "models in eval mode from fixtures (from_config and .train() leave them in training mode)"
        )


def forward(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> Forward:
    """Run (or recall) one forward pass of `inputs` with hidden states and the pooler input."""
    __tracebackhide__ = True
    memo = _memos.get(model)
    if memo is None:
        return _served(fresh_forward(model, inputs))
    # The attention implementation is part of the key: eager_matches_sdpa switches it in place.
    key = _key(model, inputs)
    if key in memo.failures:
        raise memo.failures[key]
    if key not in memo.entries:
        try:
            outputs = fresh_forward(model, inputs)
        except ForwardError as failure:
            memo.failures[key] = failure
            raise
        size = _nbytes(outputs)
        memo.entries[key] = (outputs, size)
        if _unpadded(inputs) and int(inputs["input_ids"].shape[0]) > 1:
            memo.rows.update({_row_key(model, inputs, row): (key, row) for row in range(int(inputs["input_ids"].shape[0]))})
        memo.bytes += size
        while memo.bytes > _CACHE_BYTES and len(memo.entries) > 1:
            memo.bytes -= memo.entries.popitem(last=False)[1][1]
    memo.entries.move_to_end(key)
    return _served(memo.entries[key][0])


def recall_alone(model: PreTrainedModel, single: Mapping[str, torch.Tensor]) -> Forward | None:
    """The pass of the one-row batch `single` if the memo holds it, alone or as a row of an unpadded batch; else None.

    Without padding a row sees only itself (within kernel rounding, not bit for bit): what padding invariance
    compares a padded row with, never what exact comparisons (determinism) read.
    """
    memo = _memos.get(model)
    if memo is None:
        return None
    key = _row_key(model, single, 0)
    if key in memo.entries:
        memo.entries.move_to_end(key)
        return _served(memo.entries[key][0])
    batch_key, row = memo.rows.get(key, ("", 0))
    if batch_key not in memo.entries:
        return None
    memo.entries.move_to_end(batch_key)
    return _served(row_of(memo.entries[batch_key][0], row))


def row_of(outputs: Forward, row: int) -> Forward:
    """Row `row` of a pass, as a pass of one row."""
    picked = slice(row, row + 1)
    return Forward(
        inputs={name: value[picked] for name, value in outputs.inputs.items()},
        last_hidden_state=outputs.last_hidden_state[picked],
        pooler_output=None if outputs.pooler_output is None else outputs.pooler_output[picked],
        hidden_states=tuple(state[picked] for state in outputs.hidden_states),
        pooler_input=None if outputs.pooler_input is None else outputs.pooler_input[picked],
        finite=outputs.finite,
    )


def _unpadded(inputs: Mapping[str, torch.Tensor]) -> bool:
    """Whether the batch says it has no padding: an attention mask of ones only."""
    mask = inputs.get("attention_mask")
    return mask is not None and "input_ids" in inputs and bool(mask.all())


def _row_key(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor], row: int) -> str:
    """The memo key `forward` gives row `row` of `inputs` run as a batch of its own."""
    return _key(model, {name: value[row : row + 1] for name, value in inputs.items()})


def _key(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> str:
    return f"{model.config._attn_implementation}:{_batch_key(inputs)}"


def _nbytes(outputs: Forward) -> int:
    """Memory a memo entry holds: each distinct tensor storage once (hidden_states[-1] is often last_hidden_state)."""
    tensors = [*outputs.hidden_states, outputs.last_hidden_state, outputs.pooler_output, outputs.pooler_input]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t is not None}
    return sum(storages.values())


def _batch_key(inputs: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(inputs):
        tensor = inputs[name]
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def fresh_forward(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> Forward:
    """Always run a fresh forward pass, bypassing the memo (determinism and kernel comparisons need one)."""
    global _passes_run
    __tracebackhide__ = True
    import torch

    require_eval_mode(model)  # here, not in `forward`: a recalled pass ran in eval mode, a fresh one must too

    captured: list[torch.Tensor] = []
    pooler = getattr(model.base_model, "pooler", None)
    handle = None
    if isinstance(pooler, torch.nn.Module):
        handle = pooler.register_forward_hook(lambda _module, args, _output: captured.append(args[0]))
    on_device = {name: value.to(model.device) for name, value in accepted_inputs(model, inputs).items()}
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            output = model(**on_device, output_hidden_states=True, return_dict=True)
    except Exception as error:  # noqa: BLE001 - whatever the model raises, the audit names the input and a cause
        memo = _memos.get(model)
        raise diagnose(model, on_device, error, memo.tokenizer if memo is not None else None) from None
    finally:
        if handle is not None:
            handle.remove()
    if getattr(output, "last_hidden_state", None) is None:
        base = getattr(model, "base_model", model)
        fix = f"pass the base encoder: `model.base_model` ({type(base).__name__})" if base is not model else "pass a base encoder"
        raise TypeError(f"{type(model).__name__} returns {type(output).__name__}, which has no last_hidden_state (every check reads it); {fix}")
    _passes_run += 1
    memo = _memos.get(model)
    if memo is not None:
        memo.passes += 1
        ids = on_device.get("input_ids")
        memo.timings.append((int(ids.numel()) if ids is not None else 0, time.perf_counter() - started))
    pooled = getattr(output, "pooler_output", None)
    return Forward(
        inputs=on_device,
        last_hidden_state=output.last_hidden_state,
        pooler_output=pooled,
        hidden_states=tuple(output.hidden_states or ()),
        pooler_input=captured[-1] if captured else None,
        finite=all_finite(output.last_hidden_state) and (not isinstance(pooled, torch.Tensor) or all_finite(pooled)),
    )
