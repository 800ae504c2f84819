"""The checkpoint's weight files as stored: which tensor lives in which file, read from headers and mapped lazily.

One `model.safetensors`, or shards through `model.safetensors.index.json`; pickle weights (`pytorch_model.bin`)
only when the caller allows them (`--bert-allow-pickle`), loaded with `weights_only=True` and memory-mapped.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.boundary import Boundary
from pytest_bertprobe.checkpoint.json_file import MAX_JSON_DEPTH, json_depth, read_json

if TYPE_CHECKING:
    import torch

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
# Real headers take kilobytes (bge-large's: 40 kB for 391 tensors); the safetensors library itself allows 100 MB,
# whose JSON alone takes over a gigabyte to parse. Encoders store hundreds to a few thousand tensors.
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 100_000
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


@dataclass(frozen=True)
class WeightFiles:
    """Where each stored tensor is: key -> file name, from the files' own headers."""

    folder: Path
    label: str  # for messages: `model.safetensors`, `model.safetensors.index.json (3 shards)`
    locations: dict[str, str]
    misplaced: dict[str, str] = field(default_factory=dict)  # keys the index puts in a shard that lacks them

    @property
    def keys(self) -> set[str]:
        """Every key stored in the files."""
        return set(self.locations)

    def tensors(self, keys: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """`(key, tensor)` for `keys` (all when None), opening each file once; safetensors are memory-mapped."""
        wanted = self.keys if keys is None else set(keys) & self.keys
        by_file: dict[str, list[str]] = {}
        for key in sorted(wanted):
            by_file.setdefault(self.locations[key], []).append(key)
        for name, names in by_file.items():
            yield from _read(self.folder / name, names)


def _read(path: Path, keys: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    if path.suffix != ".safetensors":
        stored = _load_pickle(path)
        yield from ((key, stored[key]) for key in keys)
        return
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        for key in keys:
            yield key, handle.get_tensor(key)


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def read_weight_files(folder: Path, *, allow_pickle: bool = False) -> WeightFiles:
    """The folder's weights as transformers picks them: one safetensors file, an index of shards, or pickle if allowed."""
    if (folder / SAFETENSORS).is_file():
        return WeightFiles(folder, SAFETENSORS, dict.fromkeys(_header_keys(folder / SAFETENSORS), SAFETENSORS))
    if (folder / SAFETENSORS_INDEX).is_file():
        return _sharded(folder)
    if allow_pickle and (folder / PICKLE).is_file():
        return WeightFiles(folder, PICKLE, dict.fromkeys(_load_pickle(folder / PICKLE), PICKLE))
    raise FileNotFoundError(
        f"no {SAFETENSORS} in {folder} (nor {SAFETENSORS_INDEX}" + (")" if allow_pickle else "; pickle weights are not read)")
    )


def _weight_map(folder: Path) -> dict[str, str]:
    """The shard index's `{key: shard}`."""
    return dict(read_json(folder / SAFETENSORS_INDEX)["weight_map"])


def _sharded(folder: Path) -> WeightFiles:
    weight_map = _weight_map(folder)
    locations: dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
        locations.update(dict.fromkeys(_header_keys(folder / shard), shard))
    misplaced = {key: shard for key, shard in weight_map.items() if locations.get(key) != shard}
    label = f"{SAFETENSORS_INDEX} ({len(set(weight_map.values()))} shards)"
    return WeightFiles(folder, label, locations, misplaced)


def _header_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


@dataclass(frozen=True)
class Header:
    """A safetensors header as stored: each tensor's entry, or why it cannot be trusted (`corrupt`, `too_large`)."""

    entries: dict[str, Any]
    corrupt: str = ""  # what is wrong with it ("truncated: 10 bytes of 80"), '' when sound
    too_large: str = ""  # which limit it passes, '' when within them

    @property
    def tensors(self) -> dict[str, Any]:
        """The tensor entries (`__metadata__` left out)."""
        return {name: entry for name, entry in self.entries.items() if name != "__metadata__"}


def read_header(path: Path) -> Header:
    """The header of the safetensors file at `path`, checked against its own bytes and the limits, before any tensor is read."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return Header({}, corrupt=f"{size} bytes, shorter than a header")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            return Header({}, corrupt=f"header claims {length} bytes, file has {size}")
        if length > MAX_HEADER_BYTES:
            return Header({}, too_large=f"a header of {length:,} bytes, past the limit of {MAX_HEADER_BYTES >> 20} MiB")
        try:
            text = handle.read(length).decode("utf-8")
            entries = json.loads(text) if json_depth(text) <= MAX_JSON_DEPTH else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Header({}, corrupt="header is not JSON")
    if not isinstance(entries, dict):
        return Header({}, corrupt="header is not a JSON object of tensors")
    if len(entries) > MAX_TENSORS:
        return Header({}, too_large=f"{len(entries):,} tensors, past the limit of {MAX_TENSORS:,}")
    ends = []
    for name, entry in entries.items():
        problem = _entry_problem(name, entry)
        if problem:
            return Header(entries, corrupt=problem)
        if name != "__metadata__":
            ends.append(entry["data_offsets"][1])
    needed = 8 + length + max(ends, default=0)
    return Header(entries, corrupt=f"truncated: {size} bytes of {needed}" if needed > size else "")


def _entry_problem(name: str, entry: Any) -> str:
    """What is wrong with one header entry: its shape, dtype and offsets must describe its bytes exactly."""
    if name == "__metadata__":
        valid = isinstance(entry, dict) and all(isinstance(value, str) for value in entry.values())
        return "" if valid else "__metadata__ is not a map of strings"
    if not isinstance(entry, dict):
        return f"tensor {name!r} is not described by an object"
    shape, offsets, dtype = entry.get("shape"), entry.get("data_offsets"), entry.get("dtype")
    if not isinstance(dtype, str):
        return f"tensor {name!r} has no dtype"
    if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        return f"tensor {name!r} has no valid shape ({shape!r})"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):  # fmt: skip
        return f"tensor {name!r} has no valid data_offsets ({offsets!r})"
    if dtype in DTYPE_BYTES and offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
        expected = math.prod(shape) * DTYPE_BYTES[dtype]
        return f"tensor {name!r}: data_offsets span {offsets[1] - offsets[0]} bytes, shape {shape} x {dtype} needs {expected}"
    return ""


def stored_tensors(folder: Path) -> dict[str, tuple[list[int], int]] | None:
    """`{key: (shape, bytes)}` of what loading reads (one safetensors file, or the shards of an index), from the
    headers alone; None when the weights are not safetensors or a header cannot be trusted."""
    if (folder / SAFETENSORS).is_file():
        files = [folder / SAFETENSORS]
    elif (folder / SAFETENSORS_INDEX).is_file():
        try:
            files = [folder / shard for shard in sorted(set(_weight_map(folder).values()))]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
    else:
        return None
    boundary = Boundary.of(folder)
    if any(boundary.outside(path) is not None for path in files):
        return None  # nothing outside the folder is read: preflight names the file when it audits this checkpoint
    found: dict[str, tuple[list[int], int]] = {}
    for path in files:
        header = read_header(path) if path.is_file() else Header({}, corrupt="absent")
        if header.corrupt or header.too_large:
            return None
        found.update({key: (list(entry["shape"]), entry["data_offsets"][1] - entry["data_offsets"][0]) for key, entry in header.tensors.items()})
    return found


def stored_parameters(folder: Path) -> int | None:
    """How many numbers the stored weights hold, from the safetensors headers alone; None when no header can be read.

    Pickle weights count as float32 (their size in bytes / 4): they are never opened for a count.
    """
    if not (folder / SAFETENSORS).is_file() and not (folder / SAFETENSORS_INDEX).is_file():
        return (folder / PICKLE).stat().st_size // 4 if (folder / PICKLE).is_file() else None
    try:
        tensors = stored_tensors(folder)
    except OSError:
        return None  # unreadable: the preflight of the run that audits it says why
    return None if tensors is None else sum(math.prod(shape) for shape, _ in tensors.values())


def index_problem(folder: Path) -> str:
    """Why a shard index makes the checkpoint unloadable (a shard it names is absent, a shard it omits), or ''."""
    index = folder / SAFETENSORS_INDEX
    if not index.is_file() or (folder / SAFETENSORS).is_file():
        return ""
    try:
        named = set(_weight_map(folder).values())
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return f"{SAFETENSORS_INDEX} has no weight_map {{key: shard}}"
    absent = sorted(shard for shard in named if not (folder / str(shard)).is_file())
    if absent:
        return f"{SAFETENSORS_INDEX} names {len(absent)} shard(s) absent from the folder: {', '.join(map(str, absent[:3]))}"
    # Only shard-named files: other safetensors (a PEFT adapter) are not the model's and loading ignores them.
    unlisted = sorted(path.name for path in folder.glob("model-*-of-*.safetensors") if path.name not in named)
    if unlisted:
        return f"{', '.join(unlisted[:3])} in the folder but not in {SAFETENSORS_INDEX}: a shard from another save?"
    return ""


_LEGACY_LEAVES = {"weight": "gamma", "bias": "beta"}  # LayerNorm names of old checkpoints, renamed at load


def candidate_keys(name: str, prefix: str) -> list[str]:
    """The stored keys transformers would load parameter `name` from: as is, without or with the base prefix, legacy leaves."""
    head = f"{prefix}." if prefix else ""
    forms = [name, name.removeprefix(head)] if head and name.startswith(head) else [name, head + name] if head else [name]
    owner, _, leaf = name.rpartition(".")
    if leaf in _LEGACY_LEAVES and owner:
        forms += [f"{form.rpartition('.')[0]}.{_LEGACY_LEAVES[leaf]}" for form in forms[:]]
    return forms
