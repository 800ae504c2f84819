"""Checks on a checkpoint folder before anything loads: each failure is one line for the user.

Only files are read here (JSON, the safetensors header): no weights, no pickle, no custom code.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import re
import stat
import struct
from pathlib import Path
from typing import Any

from pytest_bertprobe.checkpoint.json_file import MAX_JSON_DEPTH, json_depth, read_json
from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.errors import CheckpointError, UnreadableJson

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "spm.model")  # fmt: skip
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# What transformers and tokenizers may open in a checkpoint folder: each must be a regular file.
READ_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".onnx", *PICKLE_SUFFIXES)
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip
_DEFINITION = re.compile(r"^class (\w+)|^(\w+) = \w+$", re.MULTILINE)  # a class, or an alias (5.x: BertTokenizerFast = BertTokenizer)


def check_source(source: Source, *, trust_remote_code: bool, allow_pickle: bool) -> None:
    """Refuse a checkpoint that cannot be audited safely, before transformers touches it."""
    label = f"{source.option} {source.spec!r}"
    assert source.config_file is not None
    config = _read_json(source.config_file, label)
    folder = source.local_path
    if folder is not None:
        # Top-level files, and one level down what the audit may open there: sentence-transformers' modules
        # (1_Pooling/config.json, 2_Dense/model.safetensors) and ONNX exports (onnx/model.onnx).
        for entry in sorted([*folder.iterdir(), *folder.glob("*/*")]):
            if entry.suffix in READ_SUFFIXES:
                _require_regular_file(entry, label, entry.relative_to(folder).as_posix())
    for path in (source.config_file, folder / "tokenizer_config.json" if folder else None):
        if path is not None and not trust_remote_code and "auto_map" in _read_json(path, label, missing_ok=True):
            name = path.name
            raise CheckpointError(
                f"{label}: {name} asks for custom code (auto_map); "
                "it was not imported. Pass --bert-trust-remote-code if you trust this checkpoint"
            )
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise CheckpointError(f"{label}: config.json names no model_type, so transformers cannot tell which model it is; "
                              "re-save the checkpoint with save_pretrained")
    if folder is None:
        return  # hub ids: transformers refuses pickle itself (use_safetensors=True)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        not_text = _reads_more_than_text(folder, config, label)
        if not_text:  # the real reason first: a tokenizer would not make it auditable
            raise CheckpointError(
                f"{label}: model_type {config['model_type']!r} is not a text encoder ({not_text}), and the folder has no tokenizer; "
                "pytest-bertprobe audits bidirectional text encoders over input_ids (bert, roberta, deberta-v2, modernbert, ...)"
            )
        raise CheckpointError(
            f"{label}: folder has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer beside the weights (tokenizer.save_pretrained)"
        )
    _check_shard_index(folder, label)
    _check_tokenizer_class(folder, config, label)
    safetensors = sorted(folder.glob("*.safetensors"))
    pickles = sorted(path for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if not safetensors and not pickles:
        raise CheckpointError(f"{label}: folder has no weights (no *.safetensors, no pytorch_model.bin)")
    if not safetensors and not allow_pickle:
        raise CheckpointError(
            f"{label}: weights are pickle only ({pickles[0].name}), which can run code when loaded; "
            "it was not opened. Convert to safetensors, or pass --bert-allow-pickle if you trust it"
        )
    for path in safetensors:
        _check_safetensors_header(path, label)


# config.json keys of models that read pixels or sound (ViT, CLIP's vision tower, wav2vec2, Whisper, ...).
NON_TEXT_CONFIG_KEYS = ("image_size", "patch_size", "num_channels", "vision_config", "audio_config", "num_mel_bins", "sampling_rate")


def _reads_more_than_text(folder: Path, config: dict[str, Any], label: str) -> str:
    """From the files alone, why a checkpoint without a tokenizer reads something other than text ('' when nothing says so)."""
    processor = _read_json(folder / "preprocessor_config.json", label, missing_ok=True)
    kind = next((processor[key] for key in ("image_processor_type", "feature_extractor_type") if isinstance(processor.get(key), str)), None)
    if kind:
        return f"preprocessor_config.json names {kind}"
    keys = [key for key in NON_TEXT_CONFIG_KEYS if key in config]
    if keys:
        return f"config.json sets {', '.join(keys)}"
    if config.get("is_encoder_decoder"):
        return "config.json sets is_encoder_decoder"
    return ""


def _check_tokenizer_class(folder: Path, config: dict[str, Any], label: str) -> None:
    """Refuse a `tokenizer_class` transformers does not have: 4.x fails to load it, 5.x silently builds a generic one."""
    settings = _read_json(folder / "tokenizer_config.json", label, missing_ok=True)
    name = settings.get("tokenizer_class") or config.get("tokenizer_class")
    if not isinstance(name, str) or "auto_map" in settings or "auto_map" in config:
        return  # a custom class comes with its code (refused above, or trusted)
    if not _known_tokenizer_class(name.removesuffix("Fast")):
        where = "tokenizer_config.json" if settings.get("tokenizer_class") else "config.json"
        raise CheckpointError(
            f"{label}: {where} names tokenizer_class {name!r}, which the installed transformers does not have; "
            "set it to the model's tokenizer class (e.g. \"BertTokenizer\") or remove the key"
        )


def _known_tokenizer_class(base: str) -> bool:
    """Whether transformers has `base` or `{base}Fast` (True when none of its source can be read: nothing to judge by)."""
    read = False
    for everywhere in (False, True):  # the auto mapping names the usual classes; only other names cost a read of every file
        names = _tokenizer_class_names(everywhere=everywhere)
        if names is not None and (base in names or f"{base}Fast" in names):
            return True
        read = read or names is not None
    return not read


@functools.cache
def _tokenizer_class_names(*, everywhere: bool) -> frozenset[str] | None:
    """Tokenizer classes of the installed transformers, read from its source files (importing it would import torch).

    `everywhere=False`: only those `tokenization_auto.py` names; True: every tokenizer module's too.
    """
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    names: set[str] = set()
    auto = root / "models" / "auto" / "tokenization_auto.py"
    files = [*root.glob("tokenization_*.py"), *root.glob("models/**/tokenization_*.py")] if everywhere else [auto]
    sources = [path for path in files if path.is_file()]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        names.update(a or b for a, b in _DEFINITION.findall(text))
        if path.name == "tokenization_auto.py":  # names its mapping resolves, aliases defined elsewhere
            names.update(re.findall(r'"(\w+)"', text))
    return frozenset(names) if sources else None  # no source (a bytecode-only install): nothing to judge by


def check_device(requested: str) -> None:
    """Refuse `cuda` where there is none; imports torch only when cuda is asked for."""
    if requested.startswith("cuda"):
        from pytest_bertprobe.checkpoint.source import resolve_device

        resolve_device(requested)


def _require_regular_file(path: Path, label: str, shown: str | None = None) -> None:
    """Refuse, before any open, what is not a readable regular file: an open of a named pipe blocks forever."""
    problem = _file_type_problem(path)
    if problem:
        raise CheckpointError(
            f"{label}: {shown or path.name} {problem}; a checkpoint's files must be readable regular files (re-download or re-save it)"
        )


def _file_type_problem(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode  # follows symlinks: the hub cache links every file to a blob
    except OSError as error:
        if path.is_symlink():
            return f"is a symlink that leads nowhere ({error.strerror or error})"
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"is {kind}, not a regular file"
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return ""


def _read_json(path: Path, label: str, *, missing_ok: bool = False) -> dict[str, Any]:
    if missing_ok and not os.path.lexists(path):
        return {}
    _require_regular_file(path, label)
    try:
        value = read_json(path)
    except UnreadableJson as error:
        raise CheckpointError(f"{label}: {path.name} {error}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{label}: {path.name} is not a JSON object")
    return value


def _check_shard_index(folder: Path, label: str) -> None:
    """A shard index that names an absent shard, or leaves one out, makes the checkpoint unloadable as it is."""
    from pytest_bertprobe.checkpoint.weight_files import index_problem

    problem = index_problem(folder)
    if problem:
        raise CheckpointError(f"{label}: {problem}; re-save the checkpoint (save_pretrained writes shards and index together)")


def _check_safetensors_header(path: Path, label: str) -> None:
    """Validate the header and that the file holds every byte the header promises."""
    problem = _safetensors_problem(path)
    if problem:
        raise CheckpointError(
            f"{label}: {path.name} is corrupt ({problem}); re-download or re-save the checkpoint"
        )


def _safetensors_problem(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{size} bytes, shorter than a header"
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > size - 8:
            return f"header claims {header_length} bytes, file has {size}"
        try:
            text = handle.read(header_length).decode("utf-8")
            header = json.loads(text) if json_depth(text) <= MAX_JSON_DEPTH else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return "header is not JSON"
    if not isinstance(header, dict):
        return "header is not a JSON object of tensors"
    ends = []
    for name, entry in header.items():
        problem = _entry_problem(name, entry)
        if problem:
            return problem
        if name != "__metadata__":
            ends.append(entry["data_offsets"][1])
    needed = 8 + header_length + max(ends, default=0)
    return f"truncated: {size} bytes of {needed}" if needed > size else ""


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
    if dtype in _DTYPE_BYTES and offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]:
        expected = math.prod(shape) * _DTYPE_BYTES[dtype]
        return f"tensor {name!r}: data_offsets span {offsets[1] - offsets[0]} bytes, shape {shape} x {dtype} needs {expected}"
    return ""
