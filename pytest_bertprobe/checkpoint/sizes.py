"""Sizes before allocation: what a checkpoint asks for is measured against what its files hold, before it loads.

From the files alone (preflight, no torch): config and tokenizer files and their added tokens within limits, and the
config's layer count near the layers the weights hold. Before any weight loads (`check_load`): the model built
on PyTorch's meta device (no memory), each of its tensors against the file's by name and shape, and the memory
the load takes against what there is (`--bert-max-memory`). docs/DESIGN.md §1 states the limits.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint.ledger import COMPUTED_BUFFERS
from pytest_bertprobe.checkpoint.weight_files import candidate_keys, stored_tensors
from pytest_bertprobe.errors import CheckpointError

if TYPE_CHECKING:
    import torch

# The largest real tokenizer files take tens of MB (gemma-3's tokenizer.json: 33 MB); real checkpoints add tens
# to a few thousand tokens. A tokenizer.json of 2 million added tokens keeps transformers busy for minutes.
MAX_FILE_BYTES = 256 << 20
MAX_ADDED_TOKENS = 100_000
# Layers a config may ask for beyond the deepest index the weights hold: ALBERT shares one stored group across
# 12 or 24 layers. Past that, building the model (even on the meta device, ~6 ms a BERT layer) is the bomb.
LAYER_SLACK = 64
# Weights the file lacks are initialised at random at load and reported by weights_loaded; up to as many as the
# file holds (a dropped word embedding, a renamed encoder), and always up to this many values.
MISSING_FLOOR = 16 << 20
# The audit holds the model and, for the save/load round trip, a second copy of it.
COPIES = 2
# Files read whole (parsed, or converted by a tokenizer class): config and tokenizer files.
_READ_WHOLE = ("config.json", "tokenizer.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json",
               "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "spm.model", "tokenizer.model")  # fmt: skip
_INDEX = re.compile(r"\.(\d+)(?=\.)")
_CHUNK = 16 << 20


def check_file_sizes(folder: Path, label: str) -> None:
    """Refuse config and tokenizer files past the size limit, and more added tokens than any tokenizer has, before
    any of them is parsed."""
    for name in _READ_WHOLE:
        path = folder / name
        if not path.is_file():
            continue
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CheckpointError(
                f"{label}: {name} is {_size(size)}, past the limit of {_size(MAX_FILE_BYTES)} for a config or tokenizer file "
                "(the largest real ones take tens of MB); it was not read"
            )
        if name in ("tokenizer.json", "tokenizer_config.json", "added_tokens.json"):
            # Every added token has a "content" (tokenizer.json, added_tokens_decoder); added_tokens.json maps token -> id.
            added = _count(path, b'"content"') if name != "added_tokens.json" else _count(path, b'":')
            if added > MAX_ADDED_TOKENS:
                raise CheckpointError(
                    f"{label}: {name} holds {added:,} added tokens, past the limit of {MAX_ADDED_TOKENS:,} (real tokenizers add "
                    "at most a few thousand); it was not loaded: remove the added tokens or re-save the tokenizer"
                )


def _count(path: Path, needle: bytes) -> int:
    """Occurrences of `needle` in the file, read in chunks (an upper bound on what a JSON file lists with it)."""
    count, tail, keep = 0, b"", len(needle) - 1  # the tail is too short to hold a whole occurrence: none counts twice
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            data = tail + chunk
            count += data.count(needle)
            tail = data[len(data) - keep :] if keep else b""
    return count


def check_layers(config: dict[str, Any], stored: Iterable[str], label: str) -> None:
    """Refuse a config whose layer count is far past the layers the weights hold (`num_hidden_layers: 5000` with 6)."""
    depth, container = stored_depth(stored)
    for key, value in config.items():
        if key.endswith(("layers", "layer")) and isinstance(value, int) and not isinstance(value, bool) and value > depth + LAYER_SLACK:
            held = f"weights for {depth} ({container}.0-{depth - 1})" if depth else "no numbered layers"
            raise CheckpointError(
                f"{label}: config.json sets {key}: {value}, but the weights hold {held}; loading would build "
                f"{value - depth:,} layers of random weights the file lacks (at most {LAYER_SLACK} more are audited). "
                f"Fix {key} in config.json"
            )


def stored_depth(keys: Iterable[str]) -> tuple[int, str]:
    """The most entries any numbered module list holds in the stored keys (`encoder.layer.5.` -> 6), and that list."""
    deepest: dict[str, int] = {}
    for key in keys:
        for match in _INDEX.finditer(key):
            container = key[: match.start()]
            deepest[container] = max(deepest.get(container, 0), int(match.group(1)) + 1)
    if not deepest:
        return 0, ""
    container = max(deepest, key=lambda name: (deepest[name], name))
    return deepest[container], container


def check_load(source: Any, config: Any, model: Any, *, dtype: str, max_memory: int | None) -> None:
    """Before any weight loads: `model` (built on the meta device from `config`) against the stored tensors, and the
    memory its load takes against `max_memory` (default: what the machine has available)."""
    label = f"{source.option} {source.spec!r}"
    stored = stored_tensors(source.local_path) if source.local_path is not None else None
    if stored is not None:
        _compare(model, config, stored, label)
    needed = COPIES * model_bytes(model, dtype)
    limit = max_memory or available_memory()
    if limit is not None and needed > limit:
        allowed = (f"--bert-max-memory allows ({_size(limit)})" if max_memory
                   else f"the {_size(limit)} this machine has available (--bert-max-memory=SIZE sets the limit)")  # fmt: skip
        raise CheckpointError(
            f"{label}: loading needs an estimated {_size(needed)} ({type(model).__name__} at {dtype}: {_size(needed // COPIES)}, "
            f"held twice for the save/load round trip), more than {allowed}; nothing was loaded"
        )


def _compare(model: Any, config: Any, stored: dict[str, tuple[list[int], int]], label: str) -> None:
    """Every tensor the config asks for against the file's: the same shape where the file has it, and not far more
    values missing than the file holds."""
    prefix = str(getattr(model, "base_model_prefix", "") or "")
    mismatched: list[tuple[str, list[int], list[int]]] = []
    missing: list[tuple[str, int]] = []
    for name, tensor in _persistent(model):
        if name.rpartition(".")[2] in COMPUTED_BUFFERS:
            continue  # the model computes them; loading ignores a stored copy, whatever its shape
        key = next((key for key in candidate_keys(name, prefix) if key in stored), None)
        if key is None:
            missing.append((name, tensor.numel()))
        elif list(tensor.shape) != stored[key][0]:
            mismatched.append((name, list(tensor.shape), stored[key][0]))
    values = dict(_config_ints(config.to_dict()))
    if mismatched:
        name, wanted, held = mismatched[0]
        keys = [f"{key}: {value}" for key, value in values.items() if value in {a for a, b in zip(wanted, held) if a != b}]
        more = f" (and {len(mismatched) - 1} more tensors)" if len(mismatched) > 1 else ""
        raise CheckpointError(
            f"{label}: config.json's sizes disagree with the weights: {name} is {wanted} by the config"
            f"{' (' + ', '.join(keys[:3]) + ')' if keys else ''}, {held} in the file{more}; nothing was loaded. "
            "Fix config.json, or re-save the checkpoint"
        )
    lacking = sum(count for _, count in missing)
    held_values = sum(math.prod(shape) for shape, _ in stored.values())
    if lacking > max(held_values, MISSING_FLOOR):
        depth, container = stored_depth(name for name, _ in _persistent(model))
        keys = [f"{key}: {value}" for key, value in values.items() if value == depth and depth > 1] if container else []
        raise CheckpointError(
            f"{label}: config.json asks for {lacking:,} weight values the file does not hold ({len(missing)} tensors, "
            f"e.g. {missing[0][0]}{'; config.json ' + ', '.join(keys[:3]) if keys else ''}), more than the {held_values:,} "
            "it holds; loading would fill them with random values. Fix config.json, or re-save the checkpoint"
        )


def _persistent(model: Any) -> list[tuple[str, torch.Tensor]]:
    """Parameters and persistent buffers, one name per tensor (tied weights once)."""
    seen: set[int] = set()
    found = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            found.append((name, tensor))
    return found


def _config_ints(values: dict[str, Any], path: str = "") -> Iterable[tuple[str, int]]:
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _config_ints(value, f"{path}{key}.")
        elif isinstance(value, int) and not isinstance(value, bool):
            yield f"{path}{key}", value


def model_bytes(model: Any, dtype: str) -> int:
    """The bytes `model`'s parameters and buffers take once loaded at `dtype` (floating tensors cast, others kept)."""
    import torch

    size = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * (size if tensor.is_floating_point() else tensor.element_size())
    return total


def available_memory() -> int | None:
    """Bytes of memory this process may still take: the machine's available memory, within its cgroup's limit."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            with open(limit, encoding="ascii") as cap, open(usage, encoding="ascii") as used:
                text = cap.read().strip()
                if text != "max" and int(text) < 1 << 60:
                    found.append(max(int(text) - int(used.read().strip()), 0))
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def _size(count: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
