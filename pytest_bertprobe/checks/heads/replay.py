"""Heads read what their architecture promises: replayed on the base model's shared forward pass.

How a head is found, with one rule for the whole family instead of a table of module names:

1. Run the head model (e.g. BertForPreTraining) once, with a forward hook on every module call outside
   `base_model` (a global hook, so modules built inside `forward`, such as DistilBERT's `nn.ReLU()`, count),
   recording each call's arguments and output.
2. The head behind an output field (`seq_relationship_logits`, `sop_logits`, `prediction_logits`,
   `logits`) is the outermost recorded call whose output IS that logits tensor (the same object, not
   equal values); a QA head is the call whose two output channels are `start_logits` and `end_logits`, a
   multiple-choice head (run with one choice per sentence) the call whose output the logits are a view of.
   Walking back, a call whose first argument IS another recorded call's output joins the chain:
   ELECTRA's generator_predictions -> generator_lm_head, DistilBERT's pre_classifier -> ReLU() ->
   classifier. A module that hands back its own input (dropout in eval) is not a link. The chain stops
   at the first argument that no head module produced: what the head really read.
3. Replay the chain (each module's own `forward`, other arguments as recorded) on the base output the
   head is promised (`finetuned_heads.promised_input`), taken from `cache.forward` (the same forward pass
   every other check shares), and compare with the logits. A head wired to anything else (the [CLS]
   state instead of the pooler, a middle layer) fails, and the message names what it read when that is
   one of the base model's outputs.

Which field is which head goes by name: `seq_relationship_logits` (NSP), `sop_logits` (SOP),
`prediction_logits` (MLM), and `logits` by the class name's suffix (`ForNextSentencePrediction`,
`ForMaskedLM`, `ForPreTraining` = a replaced-token discriminator, and the fine-tuned heads of
`finetuned_heads.TASK_BY_SUFFIX`). Logits that no submodule produced (computed in the model's own
forward) cannot be replayed: `NoHeadError` says so, and the audit skips with that reason.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compare
from pytest_bertprobe.checks.heads.promises import (
    CLS_STATE,
    FINETUNED_TASKS,
    LAST_HIDDEN_STATE,
    MULTIPLE_CHOICE,
    POOLER_OUTPUT,
    QUESTION_ANSWERING,
    TASK_BY_SUFFIX,
    describe,
    identify,
    promised_input,
    short_name,
    source,
)
from pytest_bertprobe.errors import CheckFailure, NoHeadError
from pytest_bertprobe.forward import cache
from pytest_bertprobe.tolerances import dtype_name, tolerance_for

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

SEQUENCE_TASKS = ("NSP", "SOP")
PRETRAINING_TASKS = ("NSP", "SOP", "MLM", "RTD")
QA_FIELD = "start_logits+end_logits"
_ACCEPTED_UNLISTED = (POOLER_OUTPUT, LAST_HIDDEN_STATE, CLS_STATE)  # what a head of a model type the catalogue lacks may read

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
    """A head found in a model: its output field, task, chain of modules and real input."""

    field: str
    task: str  # NSP, SOP, MLM, RTD, or a fine-tuned task (SequenceClassification, ...)
    reads: str | None  # the base output the head is promised (None: the catalogue has no entry for the model type)
    logits: torch.Tensor
    chain: tuple[_Call, ...] = dataclasses.field(repr=False)

    @property
    def labels(self) -> int:
        """How many outputs the head has per position (its classifier's out_features)."""
        return int(self.logits.shape[-1])

    @property
    def path(self) -> str:
        """The head's modules, outermost names, in the order they run."""
        return " -> ".join(call.name for call in self.chain)

    @property
    def received(self) -> Any:
        """What the head's first module really received."""
        return self.chain[0].first_input()


def task_of(model: PreTrainedModel) -> str | None:
    """The fine-tuned task of a head model by its class name (`BertForSequenceClassification` -> SequenceClassification)."""
    return next((task for suffix, task in TASK_BY_SUFFIX.items() if type(model).__name__.endswith(suffix)), None)


def _head_fields(model: PreTrainedModel, output: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    import torch

    found: list[tuple[str, str, str | None]] = [
        (name, *_FIELDS[name]) for name in _FIELDS if isinstance(output.get(name), torch.Tensor)
    ]
    suffix = next((s for s in _LOGITS_BY_SUFFIX if type(model).__name__.endswith(s)), None)
    task = task_of(model)
    if suffix is not None and isinstance(output.get("logits"), torch.Tensor):
        found.append(("logits", *_LOGITS_BY_SUFFIX[suffix]))
    elif task is not None and task != QUESTION_ANSWERING and isinstance(output.get("logits"), torch.Tensor):
        found.append(("logits", task, promised_input(model.config.model_type, task, model.config)))
    return found


def _record_calls(head_model: PreTrainedModel, inputs: Mapping[str, Any]) -> tuple[list[_Call], Mapping[str, Any]]:
    """Run `head_model` once, recording every module call outside its base model; return the calls and the output."""
    import torch
    from torch.nn.modules.module import register_module_forward_hook

    in_base = {id(module) for module in head_model.base_model.modules()}
    names = {id(module): name for name, module in head_model.named_modules()}
    calls: list[_Call] = []

    def record(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if module is not head_model and id(module) not in in_base:
            calls.append(_Call(names.get(id(module), f"{type(module).__name__}()"), module, args, kwargs, output))

    on_device = {key: value.to(head_model.device) for key, value in cache.accepted_inputs(head_model, inputs).items()}
    handle = register_module_forward_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            output = head_model(**on_device, return_dict=True)
    finally:
        handle.remove()
    return calls, output


def _qa_head(calls: Sequence[_Call], output: Mapping[str, Any]) -> _Call | None:
    """The outermost call whose two output channels are `start_logits` and `end_logits` (QA heads split one linear)."""
    import torch

    start, end = output.get("start_logits"), output.get("end_logits")
    if not isinstance(start, torch.Tensor) or not isinstance(end, torch.Tensor):
        return None
    for call in reversed(calls):
        logits = call.output
        if isinstance(logits, torch.Tensor) and logits.shape == (*start.shape, 2):
            if torch.equal(logits[..., 0], start) and torch.equal(logits[..., 1], end):
                return call
    return None


def _viewed_head(calls: Sequence[_Call], logits: Any) -> _Call | None:
    """The outermost call whose output, viewed in the logits' shape, is the logits (multiple choice: `.view(-1, choices)`)."""
    import torch

    for call in reversed(calls):
        output = call.output
        if isinstance(output, torch.Tensor) and output is not call.first_input() and output.numel() == logits.numel():
            if torch.equal(output.reshape(logits.shape), logits):
                return call
    return None


def _one_choice_each(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """(batch, length) inputs as (batch, 1 choice, length): the multiple-choice model flattens them back to the batch."""
    return {key: value.unsqueeze(1) if hasattr(value, "unsqueeze") else value for key, value in inputs.items()}


def find_heads(head_model: PreTrainedModel, inputs: Mapping[str, Any]) -> list[Head]:
    """Run `head_model` once on `inputs` and return its heads (empty when it has none this module checks)."""
    __tracebackhide__ = True
    import torch

    cache.require_eval_mode(head_model)
    if head_model.base_model is head_model:
        return []
    name, task = type(head_model).__name__, task_of(head_model)
    calls, output = _record_calls(head_model, _one_choice_each(inputs) if task == MULTIPLE_CHOICE else inputs)
    # Hooks fire innermost first, so a later call with the same output object is the outer module; a call
    # that hands back its own input (dropout in eval) produced nothing.
    produced = {
        id(call.output): call
        for call in calls
        if isinstance(call.output, torch.Tensor) and call.output is not call.first_input()
    }
    ends = [(field, kind, reads, produced.get(id(output[field]))) for field, kind, reads in _head_fields(head_model, output)]
    if task == MULTIPLE_CHOICE:
        ends = [(field, kind, reads, last or _viewed_head(calls, output[field])) for field, kind, reads, last in ends]
    if task == QUESTION_ANSWERING and isinstance(output.get("start_logits"), torch.Tensor):
        ends.append((QA_FIELD, QUESTION_ANSWERING, LAST_HIDDEN_STATE, _qa_head(calls, output)))
    heads = []
    for field, task, reads, last in ends:
        if last is None:
            raise NoHeadError(f"{name}: no submodule produced {field}, so its {task} head cannot be replayed")
        chain = [last]
        while (previous := produced.get(id(chain[0].first_input()))) is not None and previous not in chain:
            chain.insert(0, previous)
        heads.append(Head(field, task, reads, last.output, tuple(chain)))
    return heads


def _check(head_model: PreTrainedModel, head: Head, outputs: cache.Forward, atol: float | None, rtol: float | None,
           sentences: Sequence[str] | None) -> tuple[compare.Gap, str]:
    """Replay `head` on the base output it is promised; return the gap and how reports name the head."""
    __tracebackhide__ = True
    received = identify(head.received, outputs)
    name = describe(head.task, head.labels, short_name(received) if received else "an unknown tensor")
    try:
        what = received or "none of the base model's outputs"
        reads = head.reads or _unlisted_reads(head_model, head, received)
        claim = f"{head.field} == {head.path}({reads})"
        promise = f"pretraining fed it {reads}" if head.task in PRETRAINING_TASKS else f"{type(head_model).__name__} promises {reads}"
        hint = f"the {head.task} head reads {what}, but {promise}; check the head's wiring in the model code (a port, remote code or a patched forward)"
        return _compare(head_model, head, outputs, reads, claim, what, hint, atol, rtol, sentences), name
    except AssertionError as failure:
        failure.bertprobe_head = name  # type: ignore[attr-defined]  # the report's head column, on failures too
        raise


def _unlisted_reads(head_model: PreTrainedModel, head: Head, received: str | None) -> str:
    """For a model type the catalogue does not list: what the head reads, if that is a final output."""
    model_type = head_model.config.model_type
    if received is None:
        raise NoHeadError(
            f"{type(head_model).__name__}: its {head.task} head reads none of the base model's outputs, and what "
            f"{model_type!r} heads read is not catalogued, so it cannot be replayed"
        )
    if short_name(received) not in _ACCEPTED_UNLISTED:
        raise CheckFailure(
            f"{head.field} == {head.path}(a final output): the {head.task} head of {type(head_model).__name__} reads "
            f"{received}, not one of {', '.join(_ACCEPTED_UNLISTED)}.\nHint: a head fed a middle layer or the embeddings "
            "is wired wrong; check the model code (a port, remote code or a patched forward)"
        )
    return short_name(received)


def _compare(head_model: PreTrainedModel, head: Head, outputs: cache.Forward, reads: str, claim: str, what: str, hint: str,
             atol: float | None, rtol: float | None, sentences: Sequence[str] | None) -> compare.Gap:
    __tracebackhide__ = True
    import torch

    start = source(outputs, reads)
    if start is None:
        raise CheckFailure(
            f"{claim}: {type(head_model).__name__} has an {head.task} head, but its base model returned "
            f"{reads}=None (the head reads {what}).\nHint: the checkpoint's pooler is switched off or missing; "
            "load the base model with its pooling layer"
        )
    expected: Any = start
    try:
        with torch.inference_mode():
            for call in head.chain:
                expected = call.replay(expected)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        raise CheckFailure(
            f"{claim}: the head cannot be applied to {reads} of shape {tuple(start.shape)} "
            f"({type(error).__name__}: {str(error).splitlines()[0]}).\nHint: {hint}"
        ) from None
    if not isinstance(expected, torch.Tensor) or expected.shape != head.logits.shape:
        got = f"shape {tuple(expected.shape)}" if isinstance(expected, torch.Tensor) else f"a {type(expected).__name__}"
        raise CheckFailure(
            f"{claim}: the head applied to {reads} gives {got}, the logits have shape {tuple(head.logits.shape)}."
            f"\nHint: {hint}"
        )
    tolerance = tolerance_for("head_relation", dtype_name(head.logits.dtype), atol=atol, rtol=rtol)
    return compare.assert_close(head.logits, expected, tolerance, claim=claim, sentences=sentences, hint=hint)


class HeadGaps(dict[str, compare.Gap]):
    """One `Gap` per head output field, and how reports name the heads (`SequenceClassification(3 labels) ← pooler_output`)."""

    def __init__(self, gaps: Mapping[str, compare.Gap], names: Sequence[str]) -> None:
        super().__init__(gaps)
        self.summary = {"head": ", ".join(names)}


def assert_heads_read_their_inputs(
    head_model: PreTrainedModel,
    inputs: Mapping[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
    sentences: Sequence[str] | None = None,
    tasks: Sequence[str] = (*PRETRAINING_TASKS, *FINETUNED_TASKS),
) -> HeadGaps:
    """Assert every head in `tasks` equals its modules applied to the base output its architecture promises.

    Returns one `Gap` per output field; raises `NoHeadError` when the model has no such head.
    """
    __tracebackhide__ = True
    heads = [head for head in find_heads(head_model, inputs) if head.task in tasks]
    if not heads:
        kinds = "pretraining or fine-tuned" if set(tasks) == {*PRETRAINING_TASKS, *FINETUNED_TASKS} else "/".join(tasks)
        raise NoHeadError(f"{type(head_model).__name__} has no {kinds} head")
    outputs = cache.forward(head_model.base_model, inputs)
    checked = {head.field: _check(head_model, head, outputs, atol, rtol, sentences) for head in heads}
    return HeadGaps({field: gap for field, (gap, _) in checked.items()}, [name for _, name in checked.values()])


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
