"""Session-scoped fixtures, parametrized over every `--bert-model`; torch loads only when one is used.

Also what the hooks check about them before a test runs: a missing checkpoint under `--bert-require-model`,
and a conftest's override (scope, what it returns), each one usage line (docs/DESIGN.md §1, "the pytest face").
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_bertprobe.checkpoint import loading
from pytest_bertprobe.checkpoint.anatomy import PoolerAnatomy, describe_pooler
from pytest_bertprobe.checkpoint.frozen_imports import import_seconds
from pytest_bertprobe.checkpoint.load_failure import stop_run
from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.errors import CheckpointError, ForwardError
from pytest_bertprobe.forward import cache
from pytest_bertprobe.sentences import SEED_SENTENCES
from pytest_bertprobe.session import NO_MODEL_REASON, probe_session

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PLUGIN_FIXTURES = ("bert_checkpoint", "bert_model", "bert_head_model", "bert_tokenizer", "bert_seed_inputs", "bert_anatomy")
# What a conftest may override; the audit shares one model's passes across its tests, so each must live a session.
OVERRIDABLE = ("bert_model", "bert_head_model", "bert_tokenizer")
OVERRIDE_GUIDE = "see 'Overriding bert_model' in the README"


@pytest.fixture(scope="session")
def bert_checkpoint(request: pytest.FixtureRequest) -> Iterator[loading.Checkpoint]:
    """The checkpoint under audit, loaded once; released before the next `--bert-model` loads."""
    source: Source | None = getattr(request, "param", None)
    session = probe_session(request.config)
    if source is None:
        if session.settings.require_model and session.shard is None:  # a shard the plan left empty is no mistake
            stop_run(_no_model_message(1))
        pytest.skip(NO_MODEL_REASON)
    checkpoint_id = session.ids[session.sources.index(source)]
    imports_before = import_seconds()
    try:
        checkpoint = loading.load_checkpoint(source, checkpoint_id, **loading.load_options(session.settings))
    except CheckpointError as error:
        stop_run(str(error))
    record = session.record(checkpoint_id)
    record.import_seconds += import_seconds() - imports_before  # the process' one-time imports, when this load paid them
    record.loads += 1
    record.load_seconds += checkpoint.load_seconds
    record.model_type = checkpoint.model_type
    record.model_class = type(checkpoint.model).__name__
    record.head_class = type(checkpoint.head_model).__name__ if checkpoint.head_model is not None else ""
    record.device = str(checkpoint.device)
    with cache.shared(checkpoint.model, checkpoint.tokenizer):
        yield checkpoint
        record.forward_passes = max(record.forward_passes, cache.forward_passes(checkpoint.model))
    del checkpoint
    gc.collect()


@pytest.fixture(scope="session")
def bert_reference(request: pytest.FixtureRequest) -> Iterator[loading.Checkpoint]:
    """The trusted original (`--bert-reference`), loaded once in float32 on the audit device."""
    session = probe_session(request.config)
    if session.reference is None:
        pytest.skip("no reference to compare with: pass --bert-reference=PATH_OR_HUB_ID (the original checkpoint)")
    options = {**loading.load_options(session.settings), "dtype": "float32"}  # the original at full precision
    try:
        checkpoint = loading.load_checkpoint(session.reference, "reference", **options)
    except CheckpointError as error:
        stop_run(str(error))
    with cache.shared(checkpoint.model, checkpoint.tokenizer):
        yield checkpoint


@pytest.fixture(scope="session")
def bert_onnx_export(request: pytest.FixtureRequest) -> Path | None:
    """An ONNX export of the checkpoint (its `onnx/*.onnx`, `model.onnx`, or a `--bert-onnx` file); None when it has none."""
    return getattr(request, "param", None)


@pytest.fixture(scope="session")
def bert_model(bert_checkpoint: loading.Checkpoint) -> PreTrainedModel:
    """The model under audit, in eval mode on `--bert-device` with `--bert-dtype`; treat it as read-only."""
    return bert_checkpoint.model


@pytest.fixture(scope="session")
def bert_head_model(bert_checkpoint: loading.Checkpoint) -> PreTrainedModel | None:
    """The saved architecture with its heads (BertForSequenceClassification, ...), or None for a bare encoder."""
    return bert_checkpoint.head_model


@pytest.fixture(scope="session")
def bert_tokenizer(bert_checkpoint: loading.Checkpoint) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the checkpoint."""
    return bert_checkpoint.tokenizer


@pytest.fixture(scope="session")
def bert_seed_inputs(bert_checkpoint: loading.Checkpoint) -> Any:
    """The seed's five sentences, tokenized as the seed did (padded, truncated)."""
    return cache.encode(bert_checkpoint.tokenizer, SEED_SENTENCES, bert_checkpoint.device)


@pytest.fixture(scope="session")
def bert_anatomy(
    request: pytest.FixtureRequest, bert_checkpoint: loading.Checkpoint, bert_model: PreTrainedModel, bert_seed_inputs: Any
) -> PoolerAnatomy:
    """Where the pooler lives: kind, dense layer, activation (found numerically), what it reads."""
    try:
        outputs = cache.forward(bert_model, bert_seed_inputs)
    except ForwardError as crash:
        pytest.skip(crash.skip_reason)
    anatomy = describe_pooler(bert_model, outputs)
    record = probe_session(request.config).record(bert_checkpoint.id)
    record.pooler_kind, record.pooler_activation = anatomy.kind.value, anatomy.activation
    return anatomy


_GUARDED = pytest.StashKey[bool]()


def guard_run(item: pytest.Item) -> None:
    """Once, before the first test: what makes every test that uses the fixtures wrong is one usage line, not N errors.

    Without a checkpoint under `--bert-require-model`, the tests that use the fixtures; an override of a plugin
    fixture with a scope narrower than the session, where the audit or `bert_anatomy` reads it (pytest would
    raise ScopeMismatch, and each audit test would load and run its own model).
    """
    if item.session.stash.get(_GUARDED, False):
        return
    item.session.stash[_GUARDED] = True
    session = probe_session(item.config)
    items = item.session.items or [item]
    if not session.sources and session.settings.require_model and session.shard is None:
        using = [each for each in items if "bert_checkpoint" in getattr(each, "fixturenames", ())]
        if using:
            asked = {name for each in using for name in _requested(each) if name in PLUGIN_FIXTURES}
            stop_run(_no_model_message(len(using), sorted(asked)))
    for each in items:
        problem = _scope_problem(each)
        if problem is not None:
            stop_run(problem)


def _requested(item: pytest.Item) -> tuple[str, ...]:
    """The fixtures a test names in its signature (not those they pull in)."""
    return tuple(getattr(getattr(item, "_fixtureinfo", None), "argnames", ()) or getattr(item, "fixturenames", ()))


def _no_model_message(count: int, names: list[str] | None = None) -> str:
    tests = f"{count} test{'s' if count != 1 else ''} use{'' if count != 1 else 's'} the plugin's fixtures"
    used = f" ({', '.join(names)})" if names else ""
    return (
        f"{tests}{used} but no checkpoint was given, and --bert-require-model makes that an error: "
        "pass --bert-model=PATH_OR_HUB_ID or set bert_models in your ini"
    )


def _scope_problem(item: pytest.Item) -> str | None:
    """Why an override of a plugin fixture that this audit test (or `bert_anatomy`) reads cannot serve, or None."""
    if item.get_closest_marker("bertprobe_audit") is None and "bert_anatomy" not in getattr(item, "fixturenames", ()):
        return None
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})  # the active definition is last
    for name in OVERRIDABLE:
        chain = definitions.get(name)
        if not chain or _is_ours(chain[-1]) or chain[-1].scope == "session":
            continue
        readers = "bert_anatomy reads it, and " if name == "bert_model" else ""
        return (
            f"{name} is overridden at {_where(chain[-1], item.config)} with scope={chain[-1].scope!r}, but the plugin's fixtures "
            f"are session-scoped ({readers}the audit shares one model and its forward passes across its checks): "
            f"declare it @pytest.fixture(scope=\"session\"); {OVERRIDE_GUIDE}"
        )
    return None


def adopt_override(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest, value: Any) -> None:
    """A conftest's `bert_model` / `bert_head_model`, once set up: refuse what the checks cannot read (one usage line,
    with the fix), share its forward passes as the plugin's own model's are, and name it in the report."""
    if fixturedef.argname not in ("bert_model", "bert_head_model") or _is_ours(fixturedef):
        return
    if "bert_checkpoint" not in request.fixturenames:
        return  # not run per --bert-model: nothing of the plugin's reads it
    checkpoint: loading.Checkpoint = request.getfixturevalue("bert_checkpoint")
    where = _where(fixturedef, request.config)
    name = type(value).__name__
    record = probe_session(request.config).record(checkpoint.id)
    if fixturedef.argname == "bert_head_model":
        if value is not None and not _is_model(value):
            stop_run(
                f"bert_head_model, overridden at {where}, returns {name}, not a transformers model; "
                f"return the model with heads (a PreTrainedModel), or None; {OVERRIDE_GUIDE}"
            )
        record.head_class = name if value is not None else ""
        record.overrides.append(f"bert_head_model is overridden at {where}: head_relation and label_map read {name}")
        return
    if not _is_model(value):
        stop_run(
            f"bert_model, overridden at {where}, returns {name}, not a transformers model; "
            f"return an encoder (a PreTrainedModel such as bert_checkpoint.model); {OVERRIDE_GUIDE}"
        )
    base = getattr(value, "base_model", value)
    if base is not value:
        stop_run(
            f"bert_model, overridden at {where}, returns {name}, a model with heads: its outputs have no last_hidden_state, "
            f"which every check reads. Return the base encoder: `model.base_model` ({type(base).__name__}); the model with "
            f"heads belongs in bert_head_model; {OVERRIDE_GUIDE}"
        )
    if value is not checkpoint.model:
        sharing = contextlib.ExitStack()
        sharing.enter_context(cache.shared(value, checkpoint.tokenizer))
        fixturedef.addfinalizer(sharing.close)
        try:  # one pass on the seed's sentences (the memo keeps it for determinism and the round trip)
            cache.forward(value, cache.encode(checkpoint.tokenizer, SEED_SENTENCES, getattr(value, "device", checkpoint.device)))
        except TypeError as error:
            stop_run(f"bert_model, overridden at {where}: {error}; {OVERRIDE_GUIDE}")
        except ForwardError:
            pass  # a pass that raises is the checks' to report, once, by the check that owns the input
    record.model_class = name
    record.overrides.append(f"bert_model is overridden at {where}: the checks read {name}")


def _is_model(value: Any) -> bool:
    """A transformers model: the checks read its config, `base_model` and `device` besides its outputs."""
    from transformers import PreTrainedModel

    return isinstance(value, PreTrainedModel)


def _is_ours(fixturedef: pytest.FixtureDef[Any]) -> bool:
    return getattr(inspect.unwrap(fixturedef.func), "__module__", None) == __name__


def _where(fixturedef: pytest.FixtureDef[Any], config: pytest.Config) -> str:
    """`conftest.py:12`: the override's file (relative to the rootdir when inside it) and line."""
    function = inspect.unwrap(fixturedef.func)
    try:
        path = inspect.getsourcefile(function) or "?"
        line = inspect.getsourcelines(function)[1]
    except (OSError, TypeError):
        return f"fixture {fixturedef.argname}"
    relative = os.path.relpath(path, config.rootpath)
    return f"{path if relative.startswith('..') else relative}:{line}"
