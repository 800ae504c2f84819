"""Load a checkpoint once, in eval mode, keeping what loading reported (missing, unexpected, mismatched keys).

`source.resolve_source` finds it (re-exported here: resolve, then load); the model class is the one whose
weights the file holds, and a model that is no bidirectional text encoder is refused (`encoder_rule`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_bertprobe.checkpoint import compat, encoder_rule, sizes
from pytest_bertprobe.checkpoint.frozen_imports import imported_and_frozen
from pytest_bertprobe.checkpoint.source import Source, resolve_device, resolve_source
from pytest_bertprobe.errors import CheckpointError, first_line
from pytest_bertprobe.options import Settings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["Checkpoint", "LoadingInfo", "SkippedHead", "load_checkpoint", "load_options", "resolve_source"]


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
        said = first_line(error)
        if "above report" in said:  # transformers' loading report is a log line nobody sees here
            said = "the weights do not fit the model the config builds" if "mismatched_sizes" in said else _ABOVE_REPORT.sub("", said).rstrip(". ")
        raise CheckpointError(f"{source.option} {source.spec!r}: {what} could not be loaded ({said}){note() if note else ''}; {hint}") from None


_ABOVE_REPORT = re.compile(r"[^.]*\babove report!?")


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """transformers' progress bars off inside the block (`Loading weights: 100%|...|` on every load, `Writing model
    shards` on every save), as they were after it."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def load_options(settings: Settings) -> dict[str, Any]:
    """The keywords of `load_checkpoint` a run's settings choose."""
    return {"device": settings.device, "dtype": settings.dtype, "trust_remote_code": settings.trust_remote_code,
            "allow_pickle": settings.allow_pickle, "max_memory": settings.max_memory}  # fmt: skip


def load_checkpoint(
    source: Source, checkpoint_id: str, *, device: str, dtype: str, trust_remote_code: bool = False, allow_pickle: bool = False,
    max_memory: int | None = None,
) -> Checkpoint:
    """Load model and tokenizer with the requested dtype (a name: float32, ...) and device, in eval mode.

    Before any weight is read, the model built on the meta device is measured against the stored tensors and
    `max_memory` (default: what the machine has available); see `sizes.check_load`.
    """
    fix = "fix the file or re-save the checkpoint"
    config, architecture, skipped, kwargs = imported_and_frozen(_configured, source, trust_remote_code, allow_pickle, fix, dtype, max_memory)
    import torch
    from transformers import AutoTokenizer

    placed = resolve_device(device)
    started = time.perf_counter()
    model_name = f"the model ({architecture.__name__} from config.json and the weights)"
    # 4.57: a key no shard holds stays on meta
    with _failing_as(source, model_name, fix, note=lambda: _misplaced_note(source)), quiet_progress_bars():
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


def _configured(
    source: Source, trust_remote_code: bool, allow_pickle: bool, fix: str, dtype: str = "float32", max_memory: int | None = None
) -> tuple[Any, Any, SkippedHead | None, dict[str, Any]]:
    """The config, the model class it names (importing its module), the head left out, and the loading keywords;
    a config that is not an encoder's, or whose sizes the weights or the memory cannot hold, is refused here,
    before any weight is read."""
    import torch  # noqa: F401 - imported here, as the tokenizer classes are, to be frozen with the rest
    from transformers import AutoConfig, AutoTokenizer  # noqa: F401

    kwargs: dict[str, Any] = {"revision": source.revision, "trust_remote_code": trust_remote_code}
    if source.cached_only:
        kwargs["local_files_only"] = True
    with _failing_as(source, "config.json", fix):
        config = AutoConfig.from_pretrained(source.location, **kwargs)
        architecture, skipped = _saved_architecture(config, source, allow_pickle)  # imports the model's module
    built = encoder_rule.model_class(architecture, config)
    try:
        _refuse_non_encoder(source, encoder_rule.before_weights(config, built))
        model = encoder_rule.meta_model(built, config) if built is not None else None
        if model is not None:
            sizes.check_load(source, config, model, dtype=dtype, max_memory=max_memory)
    finally:
        encoder_rule.forget_meta_model()
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
    model = encoder_rule.meta_model(architecture, config)
    if model is None:  # a class that cannot be built here: let loading decide, as before
        return ()
    in_base = {id(parameter) for parameter in model.base_model.parameters()}
    return tuple(name for name, parameter in model.named_parameters() if id(parameter) not in in_base)


def _misplaced_note(source: Source) -> str:
    """Why loading failed, when the shard index puts a key in a shard that lacks it."""
    from pytest_bertprobe.checkpoint.weight_files import read_weight_files

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
    from pytest_bertprobe.checkpoint.weight_files import read_weight_files

    if source.local_path is None:
        return None
    try:
        return read_weight_files(source.local_path, allow_pickle=allow_pickle).keys
    except Exception:  # noqa: BLE001 - unreadable weights: loading reports them itself
        return None
