"""Checks on a checkpoint folder before anything loads: each failure is one line for the user.

Only files are read here (JSON, the safetensors header): no weights, no pickle, no custom code.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from pytest_bertprobe.loading import CheckpointError, Source

# BERT-family encoders in transformers 5.x (model_type as in config.json).
ENCODER_MODEL_TYPES = frozenset({
    "albert", "bert", "bert-generation", "big_bird", "camembert", "canine", "convbert", "data2vec-text",
    "deberta", "deberta-v2", "distilbert", "dpr", "electra", "ernie", "esm", "eurobert", "flaubert", "fnet",
    "funnel", "gte", "ibert", "jina_embeddings_v3", "layoutlm", "layoutlmv3", "lilt", "longformer", "luke",
    "lxmert", "markuplm", "megatron-bert", "mobilebert", "modernbert", "mpnet", "mra", "nomic_bert",
    "nystromformer", "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer", "splinter",
    "squeezebert", "tapas", "xlm", "xlm-roberta", "xlm-roberta-xl", "xmod", "yoso",
})  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "spm.model")  # fmt: skip
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_source(source: Source, *, trust_remote_code: bool, allow_pickle: bool) -> None:
    """Refuse a checkpoint that cannot be audited safely, before transformers touches it."""
    label = f"{source.option} {source.spec!r}"
    assert source.config_file is not None
    config = _read_json(source.config_file, label)
    folder = source.local_path
    for path in (source.config_file, folder / "tokenizer_config.json" if folder else None):
        if path is not None and not trust_remote_code and "auto_map" in _read_json(path, label, missing_ok=True):
            name = path.name
            raise CheckpointError(
                f"{label}: {name} asks for custom code (auto_map); "
                "it was not imported. Pass --bert-trust-remote-code if you trust this checkpoint"
            )
    model_type = str(config.get("model_type", ""))
    if model_type not in ENCODER_MODEL_TYPES:
        raise CheckpointError(
            f"{label}: model_type {model_type or 'missing'!r} is not a BERT-family encoder; "
            "pytest-bertprobe audits encoders such as bert, roberta, xlm-roberta, albert, electra, deberta-v2"
        )
    if folder is None:
        return  # hub ids: transformers refuses pickle itself (use_safetensors=True)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{label}: folder has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer beside the weights (tokenizer.save_pretrained)"
        )
    _check_shard_index(folder, label)
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


def check_device(requested: str) -> None:
    """Refuse `cuda` where there is none; imports torch only when cuda is asked for."""
    if requested.startswith("cuda"):
        from pytest_bertprobe.loading import resolve_device

        resolve_device(requested)


def _read_json(path: Path, label: str, *, missing_ok: bool = False) -> dict[str, Any]:
    if not path.is_file() and missing_ok:
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{label}: {path.name} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{label}: {path.name} is not a JSON object")
    return value


def _check_shard_index(folder: Path, label: str) -> None:
    """A shard index that names an absent shard, or leaves one out, makes the checkpoint unloadable as it is."""
    from pytest_bertprobe.weight_files import index_problem

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
            header = json.loads(handle.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "header is not JSON"
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    needed = 8 + header_length + max(ends, default=0)
    return f"truncated: {size} bytes of {needed}" if needed > size else ""
