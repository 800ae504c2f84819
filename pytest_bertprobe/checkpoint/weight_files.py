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
from typing import TYPE_CHECKING

from pytest_bertprobe.checkpoint.json_file import MAX_JSON_DEPTH, json_depth, read_json

if TYPE_CHECKING:
    import torch

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


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


def stored_parameters(folder: Path) -> int | None:
    """How many numbers the stored weights hold, from the safetensors headers alone; None when no header can be read.

    Pickle weights count as float32 (their size in bytes / 4): they are never opened for a count.
    """
    try:
        if (folder / SAFETENSORS).is_file():
            names = [SAFETENSORS]
        elif (folder / SAFETENSORS_INDEX).is_file():
            names = sorted(set(_weight_map(folder).values()))
        elif (folder / PICKLE).is_file():
            return (folder / PICKLE).stat().st_size // 4
        else:
            return None
        return sum(_header_parameters(folder / str(name)) for name in names)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # unreadable: the preflight of the run that audits it says why


def _header_parameters(path: Path) -> int:
    """The element count of every tensor a safetensors header describes (raises on a header that is not one)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > _MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: header of {length} bytes")
        text = handle.read(length).decode("utf-8")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"{path.name}: header nests too deep")
    header = json.loads(text)
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")


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
