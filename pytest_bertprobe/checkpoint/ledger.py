"""The weights ledger: the model in memory is the checkpoint on disk, weight by weight, and every stored tensor is finite.

Each parameter and persistent buffer is loaded from a stored tensor with equal values, tied to one that is,
or a buffer the architecture computes (position ids, token type ids) equal to what it computes. Anything
else transformers initialised at random while loading. One pass over the files (memory-mapped, no forward pass).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.renames import Rename, find_renames
from pytest_bertprobe.checkpoint.weight_files import WeightFiles, candidate_keys
from pytest_bertprobe.compare import CHUNK_ELEMENTS, all_finite

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

COMPUTED_BUFFERS = {"position_ids": "arange", "token_type_ids": "zeros"}  # arange: yoso's start at 2


@dataclass(frozen=True)
class NonFinite:
    """A stored tensor holding NaN/inf: how many, the first one, and the model module it feeds."""

    key: str
    count: int
    elements: int
    first_index: tuple[int, ...]
    first_value: float
    embedding: str | None = None  # "token" for the input embeddings (a row is a token), "row" for other tables

    def metrics(self) -> dict[str, Any]:
        """Plain JSON."""
        return {"key": self.key, "count": self.count, "elements": self.elements,
                "first_index": list(self.first_index), "first_value": str(self.first_value), "embedding": self.embedding}  # fmt: skip


@dataclass
class Ledger:
    """Where each weight of the loaded model came from, against the checkpoint's files."""

    model_class: str
    files: str
    tensors_in_file: int
    loaded: list[str] = field(default_factory=list)
    tied: dict[str, str] = field(default_factory=dict)  # model key -> the loaded key it shares storage with
    computed: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)  # loaded through transformers' key conversion (values not compared)
    missing: list[str] = field(default_factory=list)  # initialised at random at load
    pooler_missing: list[str] = field(default_factory=list)  # pooler_provenance fails these; here only reported
    differing: dict[str, str] = field(default_factory=dict)  # model key -> how it differs from the file
    misplaced: dict[str, str] = field(default_factory=dict)  # key -> the shard the index names, which lacks it
    unused: dict[str, str] = field(default_factory=dict)  # stored key no model weight reads -> why that is expected, or ""
    renames: list[Rename] = field(default_factory=list)
    nonfinite: list[NonFinite] = field(default_factory=list)

    @property
    def accounted(self) -> bool:
        """Every weight is the file's (pooler aside: pooler_provenance owns it)."""
        return not (self.missing or self.differing or self.misplaced)

    def metrics(self) -> dict[str, Any]:
        """The report's view: counts, and the keys behind each failure."""
        return {
            "model_class": self.model_class, "files": self.files, "tensors_in_file": self.tensors_in_file,
            "loaded": len(self.loaded), "tied": self.tied, "computed": self.computed, "converted": self.converted, "missing": self.missing,
            "pooler_missing": self.pooler_missing, "differing": self.differing, "misplaced": self.misplaced,
            "unused": self.unused, "renames": [rename.metrics() for rename in self.renames],
        }  # fmt: skip


def build_ledger(
    model: PreTrainedModel,
    files: WeightFiles,
    *,
    pooler: Iterable[str] = (),
    compare: bool = True,
    scan: bool = True,
    reported_missing: Iterable[str] | None = None,
) -> Ledger:
    """Account for every weight of `model` against `files`; `compare` the values, `scan` every stored tensor for NaN/inf.

    `pooler`: the pooler's parameter names (pooler_provenance owns their absence). `reported_missing`: the keys
    transformers said it initialised at load; for a model whose checkpoint format transformers converts (gte's
    fused qkv, nomic's `encoder.layer`), a weight the file lacks by name and transformers did not report came
    from that conversion. Nothing is cached: the model may change between calls, and each call reads only the
    tensors it needs, once.
    """
    converting = reported_missing is not None and _converts_keys(model)
    return _build(model, files, set(pooler), compare=compare, scan=scan, missing=set(reported_missing or ()) if converting else None)


def _converts_keys(model: PreTrainedModel) -> bool:
    """Whether transformers (5.x) renames or splits this model's checkpoint keys at load."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
    except ImportError:  # 4.x: keys load by name
        return False
    try:
        return bool(get_model_conversion_mapping(model, add_legacy=False))
    except Exception:  # noqa: BLE001 - an unknown mapping: judge by name, as before
        return False


def _build(
    model: PreTrainedModel, files: WeightFiles, pooler: set[str], *, compare: bool, scan: bool, missing: set[str] | None
) -> Ledger:
    import torch

    ledger = Ledger(type(model).__name__, files.label, len(files.locations))
    prefix = str(getattr(model, "base_model_prefix", "") or "")
    tensors, sources, groups = _weights(model), {}, _groups(model)
    for names in groups:
        stored = next(((name, key) for name in names for key in candidate_keys(name, prefix) if key in files.locations), None)
        if stored is None and missing is not None and not any(set(candidate_keys(name, prefix)) & missing for name in names):
            ledger.converted.append(names[0])
        elif stored is None:
            _unstored(ledger, names, tensors, pooler)
        if stored is None:
            continue
        sources[stored[1]] = stored[0]
        ledger.tied.update({name: stored[0] for name in names if name != stored[0]})
    grouped = {name for names in groups for name in names}
    for name, _ in model.named_buffers(remove_duplicate=False):
        if name not in grouped and name.rpartition(".")[2] in COMPUTED_BUFFERS:  # non-persistent: never in a file
            _unstored(ledger, [name], tensors, pooler)
    ledger.misplaced = {key: shard for key, shard in files.misplaced.items() if key not in sources}
    # A key the index misplaces is reported as such, not a second time as missing.
    ledger.missing = [name for name in ledger.missing if not set(candidate_keys(name, prefix)) & set(ledger.misplaced)]
    embeddings = _embedding_tables(model)
    with torch.no_grad():
        wanted = None if scan else set(sources) if compare else set()  # None: every stored tensor
        for key, tensor in files.tensors(wanted):
            name = sources.get(key)
            if scan and tensor.is_floating_point():
                _scan(ledger, key, tensor, embeddings.get(name.rpartition(".")[0]) if name else None)
            if compare and name is not None:
                _compare(ledger, name, tensor, tensors[name])
    ledger.loaded.sort()
    for key in sorted(files.keys - set(sources)):
        ledger.unused[key] = _why_unused(model, key, prefix)
    ledger.renames = find_renames(
        [_file_form(name, prefix, files.keys) for name in ledger.missing],
        [key for key, why in ledger.unused.items() if not why],
    )
    return ledger


def _weights(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers(remove_duplicate=False))}


def _groups(model: PreTrainedModel) -> list[list[str]]:
    """Names of parameters and persistent buffers, grouped where they share one tensor (tied weights)."""
    persistent = set(model.state_dict(keep_vars=True))
    groups: dict[int, list[str]] = {}
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        if name in persistent:
            groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def _unstored(ledger: Ledger, names: list[str], tensors: dict[str, torch.Tensor], pooler: set[str]) -> None:
    """A group no stored tensor feeds: a computed buffer (checked against what it computes) or random at load."""
    first = names[0]
    leaf = first.rpartition(".")[2]
    if leaf in COMPUTED_BUFFERS:
        problem = _computed_problem(tensors[first], COMPUTED_BUFFERS[leaf])
        if problem:
            ledger.differing[first] = problem
        else:
            ledger.computed.append(first)
    elif any(name in pooler for name in names):
        ledger.pooler_missing.append(first)
    else:
        ledger.missing.append(first)


def _computed_problem(buffer: torch.Tensor, rule: str) -> str:
    """'' when the buffer holds what the architecture computes: consecutive positions (some start past 0), or zeros."""
    import torch

    start = buffer.reshape(-1)[:1] if rule == "arange" and buffer.numel() else torch.zeros(1, dtype=buffer.dtype, device=buffer.device)
    expected = (torch.arange(buffer.shape[-1], device=buffer.device) + start).expand_as(buffer) if rule == "arange" else torch.zeros_like(buffer)
    if torch.equal(buffer, expected.to(buffer.dtype)):
        return ""
    first = tuple(int(i) for i in (buffer != expected).nonzero()[0])
    return f"computed buffer is not {'consecutive positions' if rule == 'arange' else rule}: {buffer[first].item()} at {list(first)}"


def _compare(ledger: Ledger, name: str, stored: torch.Tensor, loaded: torch.Tensor) -> None:
    """Exact after casting the file to the loaded dtype (as loading does); NaN equals NaN. Chunk by chunk, so a
    tensor of any size costs one chunk's memory over the mapped file."""
    import torch

    here = loaded.detach()
    if stored.shape != here.shape:
        ledger.differing[name] = f"shape {list(here.shape)} loaded, {list(stored.shape)} in the file"
        return
    file_values, model_values = stored.reshape(-1), here.reshape(-1)
    worst, where = 0.0, None
    for start in range(0, file_values.numel(), CHUNK_ELEMENTS):
        ours = model_values[start : start + CHUNK_ELEMENTS]
        theirs = file_values[start : start + CHUNK_ELEMENTS].to(device=here.device, dtype=here.dtype)
        if torch.equal(theirs, ours) or bool(((theirs == ours) | (theirs.isnan() & ours.isnan())).all()):
            continue
        difference = (theirs.double() - ours.double()).abs().nan_to_num(nan=float("inf"))
        if where is None or float(difference.max()) > worst:
            worst, where = float(difference.max()), start + int(difference.argmax())
    if where is None:
        ledger.loaded.append(name)
        return
    index = [int(i) for i in torch.unravel_index(torch.tensor(where), here.shape)]
    ledger.differing[name] = f"max |diff| {worst:.3g} at {index}"


def _scan(ledger: Ledger, key: str, tensor: torch.Tensor, embedding: str | None) -> None:
    """Count the NaN/inf of one stored tensor and find the first, a chunk at a time (see `compare.all_finite`)."""
    import torch

    if all_finite(tensor):
        return
    flat = tensor.reshape(-1)
    count, first = 0, -1
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        bad = ~torch.isfinite(flat[start : start + CHUNK_ELEMENTS])
        found = int(bad.sum())
        if found and first < 0:
            first = start + int(bad.nonzero()[0, 0])
        count += found
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), tensor.shape))
    ledger.nonfinite.append(NonFinite(key, count, tensor.numel(), index, float(flat[first].item()), embedding))


def _embedding_tables(model: PreTrainedModel) -> dict[str, str]:
    """Module name -> "token" for the input embeddings, "row" for the model's other embedding tables."""
    import torch

    try:
        inputs = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # CANINE hashes code points: no token table
        inputs = None
    return {
        name: "token" if module is inputs else "row"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Embedding)
    }


def _why_unused(model: PreTrainedModel, key: str, prefix: str) -> str:
    """Why a stored tensor no weight reads is expected ('' when it is not)."""
    leaf = key.rpartition(".")[2]
    if leaf in COMPUTED_BUFFERS:
        return "a buffer the model computes; loading ignores the stored copy"
    if model.base_model is model:
        top = key.removeprefix(f"{prefix}.").split(".")[0]
        if top not in model._modules:  # _modules keeps children set to None (a pooler built without): those are not heads
            return f"head weights ({top}.*): expected, {type(model).__name__} is the base model without heads"
    return ""


def _file_form(name: str, prefix: str, stored: set[str]) -> str:
    """A model key as the file would name it: with the base prefix where the file uses one."""
    prefixed = any(key.startswith(f"{prefix}.") for key in stored) if prefix else False
    if prefixed and not name.startswith(f"{prefix}."):
        return f"{prefix}.{name}"
    return name.removeprefix(f"{prefix}.") if not prefixed and prefix else name
