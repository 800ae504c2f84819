"""Where a `--bert-model` value points: a local checkpoint folder or a hub id, its test id, and the device it runs on.

Nothing here loads a model: `resolve_source` decides from the path (and, for a hub id, fetches `config.json` only,
so a bad id fails before any test runs); `checkpoint_ids` gives every checkpoint one short id for test ids and reports.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_bertprobe.checkpoint.json_file import read_json
from pytest_bertprobe.errors import CheckpointError, first_line

if TYPE_CHECKING:
    import torch

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_GENERIC_FOLDER_NAMES = {"model", "models", "checkpoint", "final", "snapshot", "weights", "."}
_HUB_PROBE_SECONDS = 3.0


@dataclass(frozen=True)
class Source:
    """Where a `--bert-model` value points: a local folder or a hub id."""

    spec: str
    local_path: Path | None
    hub_id: str | None
    revision: str | None
    config_file: Path | None = None  # the config.json read before loading (downloaded for hub ids)
    option: str = "--bert-model"  # the option that named it, for messages
    cached_only: bool = False  # a hub id while the hub is unreachable: loaded from the local cache, no retries

    @functools.cached_property  # read for every reference_agreement example; the file does not change
    def stored_dtype(self) -> str | None:
        """The dtype the weights were saved in, as config.json says (`dtype`, or `torch_dtype` before 5.0)."""
        if self.config_file is None or not self.config_file.is_file():
            return None
        config = read_json(self.config_file)
        stored = config.get("dtype") or config.get("torch_dtype") if isinstance(config, dict) else None
        return stored if isinstance(stored, str) else None

    @property
    def location(self) -> str:
        """What `from_pretrained` is given."""
        return str(self.local_path) if self.local_path is not None else str(self.hub_id)


def resolve_source(spec: str, revision: str | None = None, option: str = "--bert-model") -> Source:
    """Decide whether `spec` is a local checkpoint folder or a hub id, or fail with one line."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not any(path.iterdir()):
            raise CheckpointError(f"{option} {spec!r}: folder is empty; give a checkpoint folder (config.json, weights, tokenizer)")
        if not os.path.lexists(path / "config.json"):  # one that is not a regular file: the preflight names it
            raise CheckpointError(f"{option} {spec!r}: folder has no config.json, so it is not a checkpoint")
        return Source(spec, path.resolve(), None, revision, path.resolve() / "config.json", option)
    if path.exists():
        raise CheckpointError(f"{option} {spec!r}: is a file; give the checkpoint's folder")
    if not _HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise CheckpointError(f"{option} {spec!r}: no such folder")
    from huggingface_hub import constants

    unreachable = None if constants.HF_HUB_OFFLINE else _unreachable(constants.ENDPOINT)
    config_file = _fetch_hub_config(spec, revision, option, unreachable)
    return Source(spec, None, spec, revision, config_file, option, cached_only=unreachable is not None)


def locate_source(spec: str, revision: str | None = None) -> Source:
    """Where `spec` points without reaching the hub or judging the folder: enough for ids and a shard plan.

    Only the checkpoints of this run's shard are resolved (`resolve_source`) and checked; the rest of the zoo is named.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return Source(spec, path.resolve(), None, revision, path.resolve() / "config.json")
    return Source(spec, None, spec, revision)


def _fetch_hub_config(hub_id: str, revision: str | None, option: str, unreachable: str | None) -> Path:
    """Reach the hub (or only the cache, when the hub is `unreachable`) for `config.json`, so a bad id fails before any test runs."""
    from huggingface_hub import constants, hf_hub_download

    try:
        # Where the hub cannot be reached, only the cache can answer: no retries, no minute of backoff warnings.
        return Path(hf_hub_download(hub_id, "config.json", revision=revision, local_files_only=unreachable is not None))
    except Exception as error:  # noqa: BLE001 - every hub failure becomes one usage line
        cause = f"{constants.ENDPOINT} unreachable: {unreachable}" if unreachable else first_line(error)
        raise CheckpointError(
            f"{option} {hub_id!r}: no such local folder, and the hub id could not be fetched "
            f"({cause}); check the path, or run where the Hugging Face Hub is reachable"
        ) from None


def _unreachable(endpoint: str) -> str | None:
    """Why a TCP connection to the hub endpoint fails within a few seconds, or None when it opens (or a proxy decides)."""
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=_HUB_PROBE_SECONDS).close()
    except OSError as error:
        return first_line(error)
    return None


def distinct_sources(sources: list[Source]) -> list[Source]:
    """One source per checkpoint: `X`, `X/` and symlinks to one folder are the same model (the first spelling kept)."""
    return list({source.location: source for source in reversed(sources)}.values())[::-1]


def checkpoint_ids(sources: list[Source]) -> list[str]:
    """Short, unique test ids that depend on the paths alone, not their order: same-named folders take their parents' names."""
    extra = [0] * len(sources)
    while True:
        names = [_short_name(source, parents) for source, parents in zip(sources, extra)]
        clashing = [index for index, name in enumerate(names) if names.count(name) > 1]
        widened = [index for index in clashing if _can_widen(sources[index], extra[index])]
        if not clashing or not widened:
            break
        for index in widened:
            extra[index] += 1
    return [f"{name}-{_path_hash(source)}" if index in clashing else name for index, (name, source) in enumerate(zip(names, sources))]


def _short_name(source: Source, extra_parents: int = 0) -> str:
    if source.hub_id is not None:
        return source.hub_id
    assert source.local_path is not None
    return "-".join(_name_parts(source.local_path)[-_kept_parts(source.local_path, extra_parents) :])


def _name_parts(path: Path) -> list[str]:
    return [part for part in path.parts if part.strip("/\\")]


def _kept_parts(path: Path, extra_parents: int) -> int:
    generic = path.name.lower() in _GENERIC_FOLDER_NAMES and bool(path.parent.name)
    return 1 + int(generic) + extra_parents


def _can_widen(source: Source, extra_parents: int) -> bool:
    path = source.local_path
    return path is not None and _kept_parts(path, extra_parents) < len(_name_parts(path))


def _path_hash(source: Source) -> str:
    import hashlib

    return hashlib.blake2b(source.location.encode(), digest_size=3).hexdigest()


def resolve_device(requested: str) -> torch.device:
    """Turn `auto`/`cpu`/`cuda[:N]` into a device that exists here."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"--bert-device={requested}: CUDA is not available on this machine; use cpu or auto")
    return torch.device(requested)
