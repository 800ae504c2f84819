"""Find a checkpoint (local folder or hub id) and load it once, keeping what loading reported."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_bertprobe import compat, encoder_rule
from pytest_bertprobe.frozen_imports import imported_and_frozen
from pytest_bertprobe.options import Settings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_GENERIC_FOLDER_NAMES = {"model", "models", "checkpoint", "final", "snapshot", "weights", "."}
_HUB_PROBE_SECONDS = 3.0
_MESSAGE_CHARS = 300


class CheckpointError(Exception):
    """A checkpoint that cannot be audited; the message is one line for the user."""


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
        config = json.loads(self.config_file.read_text(encoding="utf-8"))
        stored = config.get("dtype") or config.get("torch_dtype")
        return stored if isinstance(stored, str) else None

    @property
    def location(self) -> str:
        """What `from_pretrained` is given."""
        return str(self.local_path) if self.local_path is not None else str(self.hub_id)


@dataclass
class LoadingInfo:
    """What transformers reported while loading: keys it had to invent or could not place."""

    missing_keys: set[str] = field(default_factory=set)
    unexpected_keys: set[str] = field(default_factory=set)
    mismatched_keys: set[str] = field(default_factory=set)


_TASK_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice")


@dataclass(frozen=True)
class SkippedHead:
    """The class `config.architectures` names, not loaded because the file holds none of its head's weights."""

    claimed: str
    head_keys: tuple[str, ...]

    @property
    def task_head(self) -> bool:
        """A head its use depends on (a classifier), not a pretraining objective's (MLM, NSP)."""
        return self.claimed.endswith(_TASK_HEADS)

    def describe(self) -> str:
        """One sentence for the report."""
        modules = sorted({key.split(".")[0] + ".*" for key in self.head_keys})
        return (
            f"config.architectures names {self.claimed}, but the checkpoint holds no weights for its head "
            f"({', '.join(modules)}): loaded as that class, the head would be random"
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode, its tokenizer and the loading report."""

    id: str
    source: Source
    model: PreTrainedModel  # the bare encoder (`base_model`): hidden states and pooler
    tokenizer: PreTrainedTokenizerBase
    loading_info: LoadingInfo
    device: torch.device
    load_seconds: float  # reading weights and tokenizer; torch's and transformers' imports, paid once per process, aside
    head_model: PreTrainedModel | None = None  # the saved architecture when it has heads (BertForPreTraining, ...)
    skipped_head: SkippedHead | None = None  # config.architectures' class, when the file lacks its head

    @property
    def loaded_class(self) -> str:
        """The class loaded and audited (the head model's, when there is one)."""
        return type(self.head_model if self.head_model is not None else self.model).__name__

    @property
    def model_type(self) -> str:
        """The config's `model_type` (bert, roberta, ...)."""
        return str(self.model.config.model_type)


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


def first_line(error: BaseException) -> str:
    """`Type: message` of an exception on one line, shortened (its traceback never), for one-line messages."""
    # Lines joined: some messages end their first line with a colon (pydantic-style validation errors).
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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


@contextmanager
def _failing_as(source: Source, what: str, hint: str, note: Callable[[], str] | None = None) -> Iterator[None]:
    """Whatever transformers raises while building `what` becomes one line naming it: class and message, no traceback.

    `note()` may add the cause, when the files tell it (a shard index that misplaces a key).
    """
    try:
        yield
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - any exception here means the checkpoint cannot be audited
        raise CheckpointError(
            f"{source.option} {source.spec!r}: {what} could not be loaded ({first_line(error)}){note() if note else ''}; {hint}"
        ) from None


def load_options(settings: Settings) -> dict[str, Any]:
    """The keywords of `load_checkpoint` a run's settings choose."""
    return {"device": settings.device, "dtype": settings.dtype, "trust_remote_code": settings.trust_remote_code,
            "allow_pickle": settings.allow_pickle}  # fmt: skip


def load_checkpoint(
    source: Source, checkpoint_id: str, *, device: str, dtype: str, trust_remote_code: bool = False, allow_pickle: bool = False
) -> Checkpoint:
    """Load model and tokenizer with the requested dtype (a name: float32, ...) and device, in eval mode."""
    fix = "fix the file or re-save the checkpoint"
    config, architecture, skipped, kwargs = imported_and_frozen(_configured, source, trust_remote_code, allow_pickle, fix)
    import torch
    from transformers import AutoTokenizer

    placed = resolve_device(device)
    started = time.perf_counter()
    model_name = f"the model ({architecture.__name__} from config.json and the weights)"
    with _failing_as(source, model_name, fix, note=lambda: _misplaced_note(source)):  # 4.57: a key no shard holds stays on meta
        full_model, info = architecture.from_pretrained(
            source.location,
            config=config,
            dtype=getattr(torch, dtype),
            output_loading_info=True,
            use_safetensors=None if allow_pickle else True,
            **kwargs,
        )
        full_model.to(placed).eval()
    _refuse_non_encoder(source, encoder_rule.choose_language(full_model.base_model) or encoder_rule.after_load(full_model.base_model))
    with _failing_as(source, "the tokenizer (tokenizer.json / tokenizer_config.json / vocab files)", fix):
        tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
    model = full_model.base_model
    return Checkpoint(
        id=checkpoint_id,
        source=source,
        model=model,
        head_model=full_model if full_model is not model else None,
        skipped_head=skipped,
        tokenizer=tokenizer,
        loading_info=LoadingInfo(
            missing_keys=compat.key_names(info.get("missing_keys", ())),
            unexpected_keys=compat.key_names(info.get("unexpected_keys", ())),
            mismatched_keys=compat.key_names(info.get("mismatched_keys", ())),
        ),
        device=placed,
        load_seconds=time.perf_counter() - started,
    )


def _configured(source: Source, trust_remote_code: bool, allow_pickle: bool, fix: str) -> tuple[Any, Any, SkippedHead | None, dict[str, Any]]:
    """The config, the model class it names (importing its module), the head left out, and the loading keywords;
    a config that is not an encoder's is refused here, before any weight is read."""
    import torch  # noqa: F401 - imported here, as the tokenizer classes are, to be frozen with the rest
    from transformers import AutoConfig, AutoTokenizer  # noqa: F401

    kwargs: dict[str, Any] = {"revision": source.revision, "trust_remote_code": trust_remote_code}
    if source.cached_only:
        kwargs["local_files_only"] = True
    with _failing_as(source, "config.json", fix):
        config = AutoConfig.from_pretrained(source.location, **kwargs)
        architecture, skipped = _saved_architecture(config, source, allow_pickle)  # imports the model's module
    _refuse_non_encoder(source, encoder_rule.before_weights(config, encoder_rule.model_class(architecture, config)))
    return config, architecture, skipped, kwargs


def _refuse_non_encoder(source: Source, refusal: str | None) -> None:
    if refusal is not None:
        raise CheckpointError(f"{source.option} {source.spec!r}: {refusal}")


def _saved_architecture(config: Any, source: Source, allow_pickle: bool) -> tuple[Any, SkippedHead | None]:
    """The class named in `config.architectures` when the file holds its head's weights (so heads load too), else `AutoModel`."""
    import transformers

    for name in getattr(config, "architectures", None) or ():
        candidate = getattr(transformers, name, None)
        if isinstance(candidate, type) and issubclass(candidate, transformers.PreTrainedModel):
            head_keys = _head_keys(candidate, config)
            stored = _stored_keys(source, allow_pickle)
            if not head_keys or stored is None or any(key in stored for key in head_keys):
                return candidate, None
            return transformers.AutoModel, SkippedHead(name, head_keys)
    return transformers.AutoModel, None


def _head_keys(architecture: Any, config: Any) -> tuple[str, ...]:
    """The weights `architecture` holds outside its base model (tied copies aside), from a build on the meta device."""
    import torch

    try:
        with torch.device("meta"):
            model = architecture._from_config(config)
    except Exception:  # noqa: BLE001 - a class that cannot be built here: let loading decide, as before
        return ()
    in_base = {id(parameter) for parameter in model.base_model.parameters()}
    return tuple(name for name, parameter in model.named_parameters() if id(parameter) not in in_base)


def _misplaced_note(source: Source) -> str:
    """Why loading failed, when the shard index puts a key in a shard that lacks it."""
    from pytest_bertprobe.weight_files import read_weight_files

    try:
        misplaced = read_weight_files(source.local_path).misplaced if source.local_path is not None else {}
    except Exception:  # noqa: BLE001 - the note is a courtesy; the failure stands without it
        return ""
    if not misplaced:
        return ""
    key, shard = next(iter(misplaced.items()))
    return f": the shard index puts {key} in {shard}, which lacks it ({len(misplaced)} such keys); rewrite the index"


def _stored_keys(source: Source, allow_pickle: bool) -> set[str] | None:
    """The keys the local weight files hold (headers only); None for hub ids or unreadable files."""
    from pytest_bertprobe.weight_files import read_weight_files

    if source.local_path is None:
        return None
    try:
        return read_weight_files(source.local_path, allow_pickle=allow_pickle).keys
    except Exception:  # noqa: BLE001 - unreadable weights: loading reports them itself
        return None
