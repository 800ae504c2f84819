"""Checks on a checkpoint folder before anything loads: each failure is one line for the user.

Only files are read here (JSON, the safetensors header): no weights, no pickle, no custom code.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from pytest_bertprobe.checkpoint import sizes
from pytest_bertprobe.checkpoint.boundary import Boundary, entries, require_regular_file
from pytest_bertprobe.checkpoint.json_file import read_json
from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.checkpoint.weight_files import Header, read_header
from pytest_bertprobe.errors import CheckpointError, UnreadableJson

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "spm.model")  # fmt: skip
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_DEFINITION = re.compile(r"^class (\w+)|^(\w+) = \w+$", re.MULTILINE)  # a class, or an alias (5.x: BertTokenizerFast = BertTokenizer)


def check_source(source: Source, *, trust_remote_code: bool, allow_pickle: bool) -> None:
    """Refuse a checkpoint that cannot be audited safely, before transformers touches it."""
    label = f"{source.option} {source.spec!r}"
    assert source.config_file is not None
    folder = source.local_path
    if folder is not None:
        check_files(folder, label)  # before anything is read: every file inside the folder, and a regular file
        sizes.check_file_sizes(folder, label)  # before any is parsed
    else:
        Boundary.of(source.config_file.parent).check([source.config_file], label)  # the hub cache's snapshot
    config = _read_json(source.config_file, label)
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
    if "configuration_files" in config:
        raise CheckpointError(
            f"{label}: config.json sets configuration_files ({config['configuration_files']!r}), which makes transformers read "
            "the model's config from another file than config.json, one this audit does not check; merge it into config.json "
            "and remove the key"
        )
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
    stored: list[str] = []
    for path in safetensors:
        stored += _checked_header(path, label).tensors
    sizes.check_layers(config, stored, label)


def check_files(folder: Path, label: str) -> None:
    """Every file a run may open for `folder` lies inside it and is a regular file; nothing is read but modules.json.

    The folder's files and, one level down, its folders' (sentence-transformers modules, `onnx/`); the module folders
    `modules.json` names, wherever it names them; and the external data of its ONNX exports.
    """
    boundary = Boundary.of(_pipeline_root(folder, label))
    boundary.check(entries(boundary.root), label)
    modules = boundary.root / "modules.json"
    try:
        listed = read_json(modules) if modules.is_file() else []
    except UnreadableJson:
        listed = []  # embedding_contract fails on it, naming the file: nothing is read through it
    for module in listed if isinstance(listed, list) else []:
        path = module.get("path") if isinstance(module, dict) else None
        if isinstance(path, str) and path and os.path.lexists(boundary.root / path):
            boundary.require_inside(boundary.root / path, label)
            boundary.check(entries(boundary.root / path), label)
    check_exports([*sorted((boundary.root / "onnx").glob("*.onnx")), boundary.root / "model.onnx"], label, boundary)


def check_exports(paths: list[Path], label: str, boundary: Boundary | None = None) -> None:
    """The external data an ONNX export names lies inside the export's folder (`boundary`) and is a regular file.

    Read with the onnx package, which the audit needs to run an export at all; without it nothing is opened.
    """
    paths = [path for path in paths if path.is_file()]
    if not paths or importlib.util.find_spec("onnx") is None:
        return
    import onnx
    from onnx import external_data_helper

    for path in paths:
        fence = boundary or Boundary.of(path.parent, "the export's folder")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception:  # noqa: BLE001 - onnx_agreement fails on an export that cannot be opened
            continue
        for tensor in external_data_helper._get_all_tensors(model):
            if external_data_helper.uses_external_data(tensor):
                data = path.parent / external_data_helper.ExternalDataInfo(tensor).location
                fence.require_inside(data, label)
                require_regular_file(data, label, fence.shown(data))


def _pipeline_root(folder: Path, label: str) -> Path:
    """The folder, or its parent when that is a sentence-transformers model listing the folder as a module (`0_Transformer`)."""
    parent = folder.parent / "modules.json"
    if os.path.lexists(folder / "modules.json") or not os.path.lexists(parent):
        return folder
    Boundary.of(folder.parent).check([parent], label)
    try:
        listed = read_json(parent)
    except UnreadableJson:
        return folder
    names = [m.get("path") for m in listed if isinstance(m, dict)] if isinstance(listed, list) else []
    return folder.parent if folder.name in names else folder


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


def _read_json(path: Path, label: str, *, missing_ok: bool = False) -> dict[str, Any]:
    if missing_ok and not os.path.lexists(path):
        return {}
    require_regular_file(path, label)
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


def _checked_header(path: Path, label: str) -> Header:
    """The file's header, validated against its bytes and the limits on its size and tensor count."""
    header = read_header(path)
    if header.corrupt:
        raise CheckpointError(f"{label}: {path.name} is corrupt ({header.corrupt}); re-download or re-save the checkpoint")
    if header.too_large:
        raise CheckpointError(
            f"{label}: {path.name} declares {header.too_large}, which no encoder needs; it was not read further "
            "(re-save the checkpoint with save_pretrained)"
        )
    return header
