"""Golden snapshots: what a checkpoint said about the probe sentences once, checked on every later run.

A snapshot is a small JSON file: the probe sentences' token ids and their cls / pooler / mean
embeddings (float32, base64), the config (and its hash) and a hash of every weight. It catches a
regression when the original checkpoint is no longer at hand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import tolerances
from pytest_bertprobe.atomic import write_text_atomic
from pytest_bertprobe.checkpoint.boundary import file_problem
from pytest_bertprobe.checkpoint.config import config_values, differing_settings
from pytest_bertprobe.checkpoint.source import checkpoint_ids
from pytest_bertprobe.compare import Gap, Tolerance, assert_close, measure
from pytest_bertprobe.errors import CheckFailure, SnapshotError
from pytest_bertprobe.forward import cache
from pytest_bertprobe.forward.views import real_ids, sentence_embedding
from pytest_bertprobe.options import EMBEDDING_KINDS
from pytest_bertprobe.sentences import PROBE_SENTENCES

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from pytest_bertprobe.checkpoint.source import Source

FORMAT = "pytest-bertprobe snapshot 1"
UPDATE_HINT = "if the change is intended, rewrite the snapshot: pytest --bert-snapshot-update"


def snapshot_path(folder: Path, checkpoint_id: str) -> Path:
    """`folder/<checkpoint id>.json`, with hub ids' slashes made safe for a file name."""
    return folder / (re.sub(r"[^\w.-]+", "--", checkpoint_id) + ".json")


def snapshot_name(source: Source, rootdir: Path) -> str:
    """The checkpoint's own name for its snapshot, whatever else the run audits (test ids widen only on a clash).

    A hub id (and revision); a folder under the rootdir by its relative path, so a clone elsewhere finds the
    snapshot it committed; any other folder by the id it has when audited alone (its test id, unless the run
    audits a same-named folder) and a hash of where it is.
    """
    if source.local_path is None:
        return f"{source.hub_id}@{source.revision}" if source.revision else str(source.hub_id)
    try:
        return "-".join(source.local_path.relative_to(rootdir.resolve()).parts) or source.local_path.name
    except ValueError:
        digest = hashlib.blake2b(str(source.local_path).encode(), digest_size=3).hexdigest()
        return f"{checkpoint_ids([source])[0]}-{digest}"


def take_snapshot(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str] = PROBE_SENTENCES) -> dict[str, Any]:
    """Record the probe sentences' token ids and embeddings, the config and the weights' hashes."""
    inputs = cache.encode(tokenizer, sentences, model.device)
    config = config_values(model.config)
    return {
        "format": FORMAT,
        "model_type": str(model.config.model_type),
        "dtype": tolerances.model_dtype(model),
        "sentences": list(sentences),
        "input_ids": [real_ids(inputs["input_ids"], inputs, row) for row in range(len(sentences))],
        "embeddings": {kind: _encode_tensor(vector) for kind, vector in _embeddings(model, inputs).items()},
        "config_hash": _config_hash(config),
        "config": config,
        "tensor_hashes": tensor_hashes(model),
    }


def write_snapshot(path: Path, snapshot: dict[str, Any]) -> None:
    """Write `snapshot` as JSON with one line per entry, so a diff of two snapshots reads well; `SnapshotError` (one
    line naming the file and the error) when it cannot be written (a full disk, permissions)."""
    try:
        write_text_atomic(path, _one_line_per_entry(snapshot) + "\n")
    except OSError as error:
        raise SnapshotError(f"Snapshot {path} cannot be written ({type(error).__name__}: {error.strerror or error})") from None


def _one_line_per_entry(value: Any, indent: str = "") -> str:
    def line(item: Any) -> str:
        return json.dumps(item, ensure_ascii=False, default=str)

    if isinstance(value, dict) and not indent:
        entries = [f'{indent} {line(key)}: {_one_line_per_entry(item, indent + " ")}' for key, item in value.items()]
    elif isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], (list, dict))):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        entries = [f"{indent} " + (f"{line(key)}: " if isinstance(value, dict) else "") + line(item) for key, item in items]
    else:
        return line(value)
    brackets = "{}" if isinstance(value, dict) else "[]"
    return brackets[0] + "\n" + ",\n".join(entries) + "\n" + indent + brackets[1]


def read_snapshot(path: Path) -> dict[str, Any]:
    """Load a snapshot written by `write_snapshot`, or fail naming the file (what is not a regular file is never opened)."""
    problem = file_problem(path)
    if problem:
        raise SnapshotError(f"Snapshot {path} {problem}", hint=UPDATE_HINT)
    try:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SnapshotError(f"Snapshot {path} cannot be read ({error})", hint=UPDATE_HINT) from None
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
        raise SnapshotError(f"Snapshot {path} is not a {FORMAT!r} file", hint=UPDATE_HINT)
    problem = _malformed(snapshot)
    if problem:
        raise SnapshotError(f"Snapshot {path} is malformed: {problem}", hint=UPDATE_HINT)
    return snapshot


_SHAPES: dict[str, type] = {"model_type": str, "dtype": str, "sentences": list, "input_ids": list, "embeddings": dict,
                            "config": dict, "tensor_hashes": dict}  # fmt: skip


def _malformed(snapshot: dict[str, Any]) -> str:
    """What a snapshot lacks or holds in the wrong shape ('' when it is sound), checked before anything reads it."""
    for key, kind in _SHAPES.items():
        if not isinstance(snapshot.get(key), kind):
            return f"{key!r} is {'missing' if key not in snapshot else f'a {type(snapshot[key]).__name__}, not a {kind.__name__}'}"
    if len(snapshot["input_ids"]) != len(snapshot["sentences"]) or not all(isinstance(s, str) for s in snapshot["sentences"]):
        return "'sentences' and 'input_ids' do not pair up"
    for kind, encoded in snapshot["embeddings"].items():
        try:
            _decode_tensor(encoded)
        except (TypeError, ValueError, KeyError, AttributeError) as error:
            return f"embedding {kind!r} cannot be decoded ({type(error).__name__}: {error})"
    return ""


def assert_matches_snapshot(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    snapshot: dict[str, Any],
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> dict[str, Any]:
    """Token ids, then embeddings (at the lower precision of then and now), then config and weights."""
    __tracebackhide__ = True
    sentences = list(snapshot["sentences"])
    inputs = cache.encode(tokenizer, sentences, model.device)
    now_ids = [real_ids(inputs["input_ids"], inputs, row) for row in range(len(sentences))]
    for row, (then, now) in enumerate(zip(snapshot["input_ids"], now_ids)):
        if then != now:
            raise CheckFailure(
                f"Tokenizer changed since the snapshot: sentence {row} {sentences[row]!r} was {then}, now {now}",
                hint=f"the embeddings were not compared, since the model reads different tokens; {UPDATE_HINT}",
            )
    dtype, tolerance = _comparison(model, snapshot, atol=atol, rtol=rtol)
    same_dtype = tolerances.model_dtype(model) == snapshot["dtype"]
    changes, changed = _changes(model, snapshot, same_dtype)
    gaps: dict[str, Gap] = {}
    for kind, vector in _embeddings(model, inputs).items():
        if kind not in snapshot["embeddings"]:
            raise CheckFailure(f"Snapshot has no {kind} embedding, but the model now has a pooler", hint=UPDATE_HINT)
        expected = _decode_tensor(snapshot["embeddings"][kind])
        gaps[kind] = measure(vector, expected, tolerance)
        if gaps[kind].mismatched:
            assert_close(
                vector, expected, tolerance, claim=f"Checkpoint vs its snapshot, {kind} embedding",
                sentences=sentences, details=[f"Compared at {dtype} tolerances.", *changes], hint=UPDATE_HINT,
            )  # fmt: skip
    if snapshot.get("embeddings", {}).keys() - gaps.keys():
        raise CheckFailure("Snapshot has a pooler embedding, but the model now has no pooler", hint=UPDATE_HINT)
    if changed:
        raise CheckFailure("Checkpoint vs its snapshot: the embeddings agree, but", details=changes, hint=UPDATE_HINT)
    worst = max(gaps.values(), key=lambda gap: gap.max_abs)
    return {**worst.metrics(), "compared_at": dtype, "embeddings": {kind: gap.max_abs for kind, gap in gaps.items()}}


def embedding_differences(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, snapshot: dict[str, Any]) -> dict[str, Gap]:
    """Each embedding's gap to the snapshot's (the kinds both have), at the lower precision of then and now."""
    inputs = cache.encode(tokenizer, list(snapshot["sentences"]), model.device)
    _, tolerance = _comparison(model, snapshot)
    return {
        kind: measure(vector, _decode_tensor(snapshot["embeddings"][kind]), tolerance)
        for kind, vector in _embeddings(model, inputs).items()
        if kind in snapshot["embeddings"]
    }


def _comparison(model: PreTrainedModel, snapshot: dict[str, Any], **tolerance: float | None) -> tuple[str, Tolerance]:
    """The dtype a comparison with `snapshot` runs at (the lower precision of then and now) and its tolerance."""
    dtype = tolerances.lowest_precision(tolerances.model_dtype(model), snapshot["dtype"])
    return dtype, tolerances.tolerance_for("golden_snapshot", dtype, **tolerance)


def tensor_hashes(model: PreTrainedModel) -> dict[str, str]:
    """A short BLAKE2 hash of each weight's bytes, by name."""
    import torch

    hashes = {}
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
        hashes[name] = hashlib.blake2b(data.numpy().tobytes(), digest_size=8).hexdigest()
    return hashes


def _changes(model: PreTrainedModel, snapshot: dict[str, Any], same_dtype: bool) -> tuple[list[str], bool]:
    """Config keys and weights that differ from the snapshot's, one line each kind; and whether any do."""
    config = config_values(model.config)
    differing = differing_settings(config, snapshot["config"])
    settings = [f"{key}: {snapshot['config'][key]!r} then, {config[key]!r} now" for key in differing]
    lines = ["Config differences: " + ("; ".join(settings) if settings else "none")]
    if not same_dtype:
        return lines + [f"Weights: not compared (snapshot in {snapshot['dtype']}, model in {tolerances.model_dtype(model)})"], bool(settings)
    now, then = tensor_hashes(model), snapshot["tensor_hashes"]
    changed = sorted(name for name in now.keys() & then.keys() if now[name] != then[name])
    changed += sorted(f"{name} (new)" for name in now.keys() - then.keys())
    changed += sorted(f"{name} (gone)" for name in then.keys() - now.keys())
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return lines + [f"Weights changed: {shown or 'none'}"], bool(settings or changed)


def _embeddings(model: PreTrainedModel, inputs: Any) -> dict[str, torch.Tensor]:
    outputs = cache.forward(model, inputs)
    kinds = [kind for kind in EMBEDDING_KINDS if kind != "pooler" or outputs.pooler_output is not None]
    mask = cache.attention_mask(inputs, getattr(model.config, "pad_token_id", None))
    return {kind: sentence_embedding(kind, outputs, mask) for kind in kinds}


def _config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    import torch

    data = tensor.detach().to("cpu", torch.float32).contiguous()
    return {"shape": list(data.shape), "float32_base64": base64.b64encode(data.numpy().astype("<f4").tobytes()).decode("ascii")}


def _decode_tensor(encoded: dict[str, Any]) -> torch.Tensor:
    import numpy
    import torch

    values = numpy.frombuffer(base64.b64decode(encoded["float32_base64"]), dtype="<f4").reshape(encoded["shape"])
    return torch.from_numpy(values.copy())

