"""Assertions on the weights ledger: every weight is the checkpoint's, every stored tensor is finite."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.anatomy import locate_pooler
from pytest_bertprobe.checkpoint.ledger import Ledger, NonFinite, build_ledger
from pytest_bertprobe.checkpoint.loading import Checkpoint
from pytest_bertprobe.checkpoint.weight_files import read_weight_files
from pytest_bertprobe.errors import CheckFailure, NotApplicable

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_SHOWN = 12  # modules listed in a message; the report has them all
_NO_OUTPUT_SEES_IT = (
    "a model with random weights still gives finite, deterministic, padding-invariant outputs, so no output check sees this"
)


def inspect_weights(
    source: Checkpoint | PreTrainedModel,
    *,
    model: PreTrainedModel | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    allow_pickle: bool = False,
    compare: bool = True,
    scan: bool = True,
) -> Ledger:
    """Where each weight of the loaded model came from, against the checkpoint folder's files; see `build_ledger`."""
    audited, folder, allow = audited_model(source, model, checkpoint_path, allow_pickle)
    try:
        files = read_weight_files(folder, allow_pickle=allow)
    except FileNotFoundError as error:
        if not isinstance(source, Checkpoint) or checkpoint_path is not None:
            raise
        raise NotApplicable(f"the weight files are not in {folder}: {error}") from None  # a hub cache without them
    reported = source.loading_info.missing_keys if isinstance(source, Checkpoint) and checkpoint_path is None else None
    return build_ledger(audited, files, pooler=pooler_parameters(audited), compare=compare, scan=scan, reported_missing=reported)


def audited_model(
    source: Checkpoint | PreTrainedModel, model: PreTrainedModel | None, path: str | os.PathLike[str] | None, allow_pickle: bool = False
) -> tuple[PreTrainedModel, Path, bool]:
    """The model to account for, the folder holding its files, and whether pickle may be read."""
    if not isinstance(source, Checkpoint):
        if path is None:
            raise NotApplicable("no checkpoint folder given: pass checkpoint_path to compare the model with its files")
        return (model if model is not None else source), Path(path), allow_pickle
    own = source.head_model if source.head_model is not None else source.model
    if model is not None and model is not source.model and model is not own:
        raise NotApplicable("the audited model is not this checkpoint's own load (bert_model overridden): no file to compare it with")
    folder = path or source.source.local_path or (source.source.config_file.parent if source.source.config_file else None)
    if folder is None:
        raise NotApplicable(f"{source.source.location}: no local copy of the weight files")
    return own, Path(folder), True  # the checkpoint loaded, so its pickle (if any) was allowed


def pooler_parameters(model: PreTrainedModel) -> set[str]:
    """The names of the pooler's parameters in `model` (pooler_provenance judges them)."""
    pooler = locate_pooler(model).module
    own = {id(parameter) for parameter in pooler.parameters()} if pooler is not None else set()
    return {name for name, parameter in model.named_parameters(remove_duplicate=False) if id(parameter) in own}


def assert_weights_loaded(
    source: Checkpoint | PreTrainedModel,
    *,
    model: PreTrainedModel | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Assert every parameter and persistent buffer is the checkpoint's: loaded from the file with equal values,
    tied to one that is, or a computed buffer (position ids, token type ids) equal to what it computes.

    Returns the ledger's metrics. A `Checkpoint` whose `config.architectures` names a classifier absent from the file
    fails too. Whether the weights the file holds were ever trained is `assert_weights_trained`'s question.
    """
    __tracebackhide__ = True
    ledger = inspect_weights(source, model=model, checkpoint_path=checkpoint_path, allow_pickle=allow_pickle, scan=False)
    audited, _, _ = audited_model(source, model, checkpoint_path, allow_pickle)
    skipped = source.skipped_head if isinstance(source, Checkpoint) else None
    metrics = {**ledger.metrics(), "architecture": skipped.describe() if skipped else None}
    lines = []
    if skipped is not None and skipped.task_head:
        lines.append(f"{skipped.describe()}, and its use depends on that head; audited as {ledger.model_class}")
    if not ledger.accounted:
        lines += _ledger_lines(ledger, str(getattr(audited, "base_model_prefix", "") or ""))
    if lines:
        raise CheckFailure("\n".join(lines) + f"\nHint: {_hint(ledger, skipped is not None and skipped.task_head)}", metrics=metrics)
    return metrics


def _ledger_lines(ledger: Ledger, prefix: str) -> list[str]:
    wrong = len(ledger.missing) + len(ledger.differing) + len(ledger.misplaced)
    total = len(ledger.loaded) + len(ledger.tied) + len(ledger.computed) + wrong + len(ledger.pooler_missing)
    lines = [f"{wrong} of the {total} parameters and buffers of {ledger.model_class} are not the checkpoint's ({ledger.files}):"]
    if ledger.missing:
        lines.append(f"missing from the file, so transformers initialised them at random at load: {_count(len(ledger.missing), 'key')}")
        lines += _grouped(ledger.missing, prefix)
    for rename in ledger.renames:
        stored, read = rename.example
        lines.append(f"rename: {rename.description} ({stored} -> {read}): explains {rename.explains} of the {len(ledger.missing)} missing keys")
    if ledger.differing:
        lines.append(f"differ from the file (the file cast to the loaded dtype; tolerance: exact): {_count(len(ledger.differing), 'key')}")
        lines += [f"  {name}: {how}" for name, how in list(ledger.differing.items())[:_SHOWN]]
    lines += [f"the shard index puts {key} in {shard}, which lacks it" for key, shard in list(ledger.misplaced.items())[:_SHOWN]]
    unexplained = [key for key, why in ledger.unused.items() if not why]
    if unexplained:
        lines.append(f"stored but read by no weight of {ledger.model_class}: {len(unexplained)} tensors")
        lines += _grouped(unexplained, prefix)
    return lines


def _grouped(keys: Sequence[str], prefix: str) -> list[str]:
    """`  module: N keys (a, b, c, +k more)`: keys grouped per module, up to a layer's number."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split(".")
        start = 1 if prefix and parts[0] == prefix and len(parts) > 2 else 0
        digit = next((i for i in range(start, len(parts) - 1) if parts[i].isdigit()), None)
        cut = digit + 1 if digit is not None else min(start + 1, len(parts) - 1)
        groups.setdefault(".".join(parts[:cut]), []).append(".".join(parts[cut:]))
    lines = []
    for module, leaves in list(groups.items())[:_SHOWN]:
        shown = ", ".join(leaves[:3]) + (f", +{len(leaves) - 3} more" if len(leaves) > 3 else "")
        lines.append(f"  {module}: {_count(len(leaves), 'key')} ({shown})")
    if len(groups) > _SHOWN:
        lines.append(f"  ... and {len(groups) - _SHOWN} more modules (all in the report)")
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _hint(ledger: Ledger, task_head: bool) -> str:
    advice = []
    if task_head:
        advice.append("save the fine-tuned model with its head, or name the base class in config.architectures")
    if ledger.renames:
        advice.append("rename the stored keys as the substitution says (fix the converter that wrote them)")
    elif ledger.missing:
        advice.append("re-save the checkpoint from the trained model with save_pretrained")
    if ledger.missing:
        advice.append(_NO_OUTPUT_SEES_IT)
    if ledger.differing:
        advice.append("the loaded weights are not the file's: something changed them after loading; load the checkpoint afresh")
    if ledger.misplaced:
        advice.append("rewrite the shard index (save_pretrained writes it with the shards)")
    return "; ".join(advice)


def assert_weights_finite(
    source: Checkpoint | PreTrainedModel,
    *,
    model: PreTrainedModel | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Assert every tensor stored in the checkpoint's files is free of NaN and inf (read memory-mapped, no forward pass).

    The failure names each tensor, its first bad index and, for the input embeddings, the token whose row holds it.
    """
    __tracebackhide__ = True
    ledger = inspect_weights(source, model=model, checkpoint_path=checkpoint_path, allow_pickle=allow_pickle, compare=False)
    if tokenizer is None and isinstance(source, Checkpoint):
        tokenizer = source.tokenizer
    metrics = {"files": ledger.files, "tensors": ledger.tensors_in_file, "nonfinite": [bad.metrics() for bad in ledger.nonfinite]}
    if ledger.nonfinite:
        lines = [f"every stored tensor is finite: {len(ledger.nonfinite)} of {ledger.tensors_in_file} tensors of {ledger.files} hold NaN/inf"]
        lines += [f"  {_describe(bad, tokenizer)}" for bad in ledger.nonfinite[:_SHOWN]]
        raise CheckFailure(
            "\n".join(lines) + "\nHint: these values come with the file, not from an overflow at run time: re-export the "
            "checkpoint from the trained weights; a bad embedding row poisons every input holding its token, "
            "even when no probe sentence does",
            metrics=metrics,
        )
    return metrics


def _describe(bad: NonFinite, tokenizer: PreTrainedTokenizerBase | None) -> str:
    text = f"{bad.key}: {bad.count} of {bad.elements} values non-finite, first {bad.first_value} at {list(bad.first_index)}"
    if bad.embedding == "token" and bad.first_index:
        row = bad.first_index[0]
        token = tokenizer.convert_ids_to_tokens(row) if tokenizer is not None else None
        return text + (f": row {row} is the token {token!r}" if token is not None else f": the row of token id {row}")
    if bad.embedding == "row" and bad.first_index:
        return text + f": row {bad.first_index[0]} of the table"
    return text

