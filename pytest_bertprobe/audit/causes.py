"""One failure for one cause: the root findings that explain other checks' failures, so those checks skip and name them.

Weights that hold NaN/inf explain every check that read a pass with NaN/inf outputs (`weights_finite` reports them).
Weights that are not the trained ones (`weights_trained`: random, re-initialised or shuffled matrices) or a
vocabulary renumbered against them (`vocabulary_rows`) explain why the model does not behave like a trained one:
the behavioural checks skip, naming the check that owns the cause. Each verdict is computed once per model, only
when a failure asks for it, and only where this run audits the checkpoint with that check: a failure whose cause's
check was deselected (`-k`, `--bert-checks`) stands on its own.
"""

from __future__ import annotations

import weakref
from typing import Any

import pytest

from pytest_bertprobe.catalogue import CATALOGUE
from pytest_bertprobe.checks.finiteness import nonfinite_parameters
from pytest_bertprobe.checks.trained import assert_weights_trained
from pytest_bertprobe.checks.vocabulary import assert_vocabulary_matches_rows
from pytest_bertprobe.errors import CheckFailure, NotApplicable

_WEIGHTS_CHECKS = ("weights_finite", "weights_loaded")
_TRAINING_CAUSES = ("weights_trained", "vocabulary_rows")
# The behavioural checks: the other verdicts on training, which the two causes above explain.
BEHAVIOUR_CHECKS = frozenset(check.name for check in CATALOGUE if check.training) - set(_TRAINING_CAUSES)
_nonfinite_weights: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()  # model -> its NaN/inf parameters
_untrained: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()  # model -> each cause's finding, or ''


def explained_failure(request: pytest.FixtureRequest, check: str, *, read_nonfinite: bool) -> str:
    """Why `check`'s failure is another check's finding (the skip reason), or '' when it is its own."""
    if read_nonfinite and check not in _WEIGHTS_CHECKS and any(_runs(request, owner) for owner in _WEIGHTS_CHECKS):
        model = _fixture(request, "bert_model")
        if model is not None and (reason := nonfinite_weights(model)):
            return reason
    if check in BEHAVIOUR_CHECKS:
        checkpoint = _fixture(request, "bert_checkpoint")
        if checkpoint is not None:
            owners = tuple(owner for owner in _TRAINING_CAUSES if _runs(request, owner))
            return untrained_weights(checkpoint, _fixture(request, "bert_model"), _fixture(request, "bert_tokenizer"), owners)
    return ""


def nonfinite_weights(model: Any) -> str:
    """'' when `model`'s parameters are finite; else the skip reason of a check their NaN/inf explains (scanned once per model)."""
    if model not in _nonfinite_weights:
        _nonfinite_weights[model] = nonfinite_parameters(model)
    bad = _nonfinite_weights[model]
    if not bad:
        return ""
    return f"weights hold NaN/inf ({', '.join(bad[:3])}): weights_finite reports them (weights_loaded, if the file is finite)"


def untrained_weights(checkpoint: Any, model: Any, tokenizer: Any, owners: tuple[str, ...]) -> str:
    """'' when the weights look trained and the vocabulary is theirs (as far as the checks `owners` judge); else why not,
    naming the check that reports it."""
    if model is None or tokenizer is None:
        return ""
    found = _untrained.setdefault(model, {})
    for owner in owners:
        if owner not in found:
            found[owner] = _finding(owner, checkpoint, model, tokenizer)
        if found[owner]:
            return f"the weights are not the trained ones ({found[owner]}): {owner} reports it"
    return ""


def _finding(owner: str, checkpoint: Any, model: Any, tokenizer: Any) -> str:
    """The first line of `owner`'s failure on this model, or '' when it passes or does not apply."""
    try:
        if owner == "weights_trained":
            assert_weights_trained(checkpoint, model=model)
        else:
            assert_vocabulary_matches_rows(checkpoint, model=model, tokenizer=tokenizer)
    except CheckFailure as failure:
        return failure.message.splitlines()[0]
    except NotApplicable:
        pass
    return ""


def _runs(request: pytest.FixtureRequest, owner: str) -> bool:
    """Whether this run audits the checkpoint of the running test with the check `owner`."""
    checkpoint = _param(request.node)
    return any(
        (marker := item.get_closest_marker("bertprobe_audit")) is not None
        and marker.kwargs.get("check") == owner
        and _param(item) == checkpoint
        for item in request.session.items
    )


def _param(item: Any) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("bert_checkpoint") if callspec is not None else None


def _fixture(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None
