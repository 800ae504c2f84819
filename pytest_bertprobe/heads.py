"""Pretraining heads read what pretraining fed them: NSP/SOP from pooler_output, MLM from last_hidden_state.

How a head is found, with one rule for the whole family instead of a table per architecture:

1. Run the head model (e.g. BertForPreTraining) once, with a forward hook on every submodule that is
   not part of `base_model`, recording each call's arguments and output.
2. The head behind an output field (`seq_relationship_logits`, `sop_logits`, `prediction_logits`,
   `logits`) is the outermost recorded call whose output IS that logits tensor (the same object, not
   equal values). Walking back, a call whose first argument IS another recorded call's output joins
   the chain: ELECTRA's generator_predictions -> generator_lm_head, DistilBERT's vocab_transform ->
   activation -> vocab_layer_norm -> vocab_projector. A module that hands back its own input (dropout
   in eval) is not a link. The chain stops at the first argument that no head module produced: what
   the head really read.
3. Replay the chain (each module's own `forward`, other arguments as recorded) on the base model's
   output from `probes.run` (the same forward pass every other check shares):
   pooler_output for NSP/SOP heads, last_hidden_state for token heads (MLM, ELECTRA's replaced-token
   discriminator), and compare with the logits. A head wired to anything else (the [CLS] state instead
   of the pooler, a middle layer) fails, and the message names what it read when that is one of the
   base model's outputs.

Which field is which head goes by name: `seq_relationship_logits` (NSP), `sop_logits` (SOP),
`prediction_logits` (MLM), and `logits` by the class name's suffix (`ForNextSentencePrediction`,
`ForMaskedLM`, `ForPreTraining` = a replaced-token discriminator). Other heads (sequence
classification, QA, ...) are not pretraining heads and are not checked. Logits that no submodule
produced (computed in the model's own forward) cannot be replayed: `NoHeadError` says so, and the
audit skips with that reason.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare, probes
from pytest_bertprobe.compare import NotApplicable
from pytest_bertprobe.tolerances import dtype_name, tolerance_for

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

POOLER_OUTPUT = "pooler_output"
LAST_HIDDEN_STATE = "last_hidden_state"
SEQUENCE_TASKS = ("NSP", "SOP")

# output field -> (task, the base output the head was trained on)
_FIELDS: dict[str, tuple[str, str]] = {
    "seq_relationship_logits": ("NSP", POOLER_OUTPUT),
    "sop_logits": ("SOP", POOLER_OUTPUT),
    "prediction_logits": ("MLM", LAST_HIDDEN_STATE),
}
# a plain `logits` field, by the class name's suffix
_LOGITS_BY_SUFFIX: dict[str, tuple[str, str]] = {
    "ForNextSentencePrediction": ("NSP", POOLER_OUTPUT),
    "ForMaskedLM": ("MLM", LAST_HIDDEN_STATE),
    "ForPreTraining": ("RTD", LAST_HIDDEN_STATE),  # ELECTRA / Funnel replaced-token discriminator
}


class NoHeadError(NotApplicable):
    """Raised when a model has no head of the kind asked for; says why."""


@dataclass(frozen=True, eq=False)
class _Call:
    """One recorded call of a head submodule."""

    name: str
    module: torch.nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    def first_input(self) -> Any:
        """The tensor the module was applied to (its first argument, positional or by keyword)."""
        if self.args:
            return self.args[0]
        first = next(iter(inspect.signature(self.module.forward).parameters), None)
        return self.kwargs.get(first) if first is not None else None

    def replay(self, tensor: torch.Tensor) -> Any:
        """Run the module's own forward again on `tensor`, every other argument unchanged."""
        # `forward`, not `__call__`: the recorded arguments are already past any pre-hook, and a pre-hook
        # that swaps the input would otherwise swap it again and hide the fault.
        if self.args:
            return self.module.forward(tensor, *self.args[1:], **self.kwargs)
        first = next(iter(inspect.signature(self.module.forward).parameters))
        return self.module.forward(**{**self.kwargs, first: tensor})


@dataclass(frozen=True, eq=False)
class Head:
    """A pretraining head found in a model: its output field, task, chain of modules and real input."""

    field: str
    task: str  # NSP, SOP, MLM or RTD
    reads: str  # the base output pretraining fed it: pooler_output or last_hidden_state
    logits: torch.Tensor
    chain: tuple[_Call, ...] = dataclasses.field(repr=False)

    @property
    def path(self) -> str:
        """The head's modules, outermost names, in the order they run."""
        return " -> ".join(call.name for call in self.chain)

    @property
    def received(self) -> Any:
        """What the head's first module really received."""
        return self.chain[0].first_input()


def _head_fields(model: PreTrainedModel, output: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    import torch

    found = [(name, *_FIELDS[name]) for name in _FIELDS if isinstance(output.get(name), torch.Tensor)]
    suffix = next((s for s in _LOGITS_BY_SUFFIX if type(model).__name__.endswith(s)), None)
    if suffix is not None and isinstance(output.get("logits"), torch.Tensor):
        found.append(("logits", *_LOGITS_BY_SUFFIX[suffix]))
    return found


def find_heads(head_model: PreTrainedModel, inputs: Mapping[str, Any]) -> list[Head]:
    """Run `head_model` once on `inputs` and return its NSP/SOP/MLM/RTD heads (empty when it has none)."""
    __tracebackhide__ = True
    import torch

    probes.require_eval_mode(head_model)
    base = head_model.base_model
    if base is head_model:
        return []
    in_base = {id(module) for module in base.modules()}
    calls: list[_Call] = []
    handles: list[Any] = []
    for name, module in head_model.named_modules():
        if module is head_model or id(module) in in_base:
            continue

        def record(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any, name: str = name) -> None:
            calls.append(_Call(name, module, args, kwargs, output))

        handles.append(module.register_forward_hook(record, with_kwargs=True))
    on_device = {key: value.to(head_model.device) for key, value in probes.accepted_inputs(head_model, inputs).items()}
    try:
        with torch.inference_mode():
            output = head_model(**on_device, return_dict=True)
    finally:
        for handle in handles:
            handle.remove()
    # Hooks fire innermost first, so a later call with the same output object is the outer module; a call
    # that hands back its own input (dropout in eval) produced nothing.
    produced = {
        id(call.output): call
        for call in calls
        if isinstance(call.output, torch.Tensor) and call.output is not call.first_input()
    }
    heads = []
    for name, task, reads in _head_fields(head_model, output):
        logits = output[name]
        if id(logits) not in produced:
            raise NoHeadError(f"{type(head_model).__name__}: no submodule produced {name}, so its {task} head cannot be replayed")
        chain = [produced[id(logits)]]
        while (previous := produced.get(id(chain[0].first_input()))) is not None and previous not in chain:
            chain.insert(0, previous)
        heads.append(Head(name, task, reads, logits, tuple(chain)))
    return heads


def _identify(tensor: Any, forward: probes.Forward) -> str | None:
    """Name `tensor` among the base model's outputs (exact values), or None."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        return None
    candidates: dict[str, torch.Tensor | None] = {
        POOLER_OUTPUT: forward.pooler_output,
        LAST_HIDDEN_STATE: forward.last_hidden_state,
        "last_hidden_state[:, 0] (the [CLS] state)": forward.last_hidden_state[:, 0],
    }
    last = len(forward.hidden_states) - 1
    for index, hidden in enumerate(forward.hidden_states):
        label = "the embeddings" if index == 0 else f"layer {index} of {last}"
        candidates[f"hidden_states[{index}] ({label})"] = hidden
        candidates[f"hidden_states[{index}][:, 0] ([CLS] of {label})"] = hidden[:, 0]
    for label, candidate in candidates.items():
        if candidate is not None and candidate.shape == tensor.shape and torch.equal(candidate.to(tensor.device), tensor):
            return label
    return None


def _check(head_model: PreTrainedModel, head: Head, forward: probes.Forward, atol: float | None, rtol: float | None,
           sentences: Sequence[str] | None) -> compare.Gap:
    __tracebackhide__ = True
    import torch

    claim = f"{head.field} == {head.path}({head.reads})"
    received = _identify(head.received, forward)
    what = received or "none of the base model's outputs"
    hint = (
        f"the {head.task} head reads {what}, but pretraining fed it {head.reads}; "
        "check the head's wiring in the model code (a port, remote code or a patched forward)"
    )
    source = getattr(forward, head.reads)
    if source is None:
        raise AssertionError(
            f"{claim}: {type(head_model).__name__} has an {head.task} head, but its base model returned "
            f"{head.reads}=None (the head reads {what}).\nHint: the checkpoint's pooler is switched off or missing; "
            "load the base model with its pooling layer"
        )
    expected: Any = source
    try:
        with torch.inference_mode():
            for call in head.chain:
                expected = call.replay(expected)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        raise AssertionError(
            f"{claim}: the head cannot be applied to {head.reads} of shape {tuple(source.shape)} "
            f"({type(error).__name__}: {str(error).splitlines()[0]}).\nHint: {hint}"
        ) from None
    if not isinstance(expected, torch.Tensor) or expected.shape != head.logits.shape:
        got = f"shape {tuple(expected.shape)}" if isinstance(expected, torch.Tensor) else f"a {type(expected).__name__}"
        raise AssertionError(
            f"{claim}: the head applied to {head.reads} gives {got}, the logits have shape {tuple(head.logits.shape)}."
            f"\nHint: {hint}"
        )
    tolerance = tolerance_for("head_relation", dtype_name(head.logits.dtype), atol=atol, rtol=rtol)
    return compare.assert_close(head.logits, expected, tolerance, claim=claim, sentences=sentences, hint=hint)


def assert_heads_read_their_inputs(
    head_model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
    tasks: Sequence[str] = ("NSP", "SOP", "MLM", "RTD"),
) -> dict[str, compare.Gap]:
    """Assert every pretraining head in `tasks` equals its modules applied to the base output it was trained on.

    Returns one `Gap` per output field; raises `NoHeadError` when the model has no such head.
    """
    __tracebackhide__ = True
    heads = [head for head in find_heads(head_model, inputs) if head.task in tasks]
    if not heads:
        raise NoHeadError(f"{type(head_model).__name__} has no {'/'.join(tasks)} head")
    forward = probes.run(head_model.base_model, inputs)
    return {head.field: _check(head_model, head, forward, atol, rtol, sentences) for head in heads}


def assert_nsp_head_reads_pooler(
    head_model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert NSP/SOP logits == the head's own modules applied to pooler_output (the seed's section 4)."""
    __tracebackhide__ = True
    gaps = assert_heads_read_their_inputs(head_model, inputs, atol=atol, rtol=rtol, sentences=sentences, tasks=SEQUENCE_TASKS)
    return next(iter(gaps.values()))


def assert_mlm_head_reads_last_hidden_state(
    head_model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
) -> compare.Gap:
    """Assert MLM logits == the head's own modules applied to last_hidden_state."""
    __tracebackhide__ = True
    gaps = assert_heads_read_their_inputs(head_model, inputs, atol=atol, rtol=rtol, sentences=sentences, tasks=("MLM",))
    return next(iter(gaps.values()))
