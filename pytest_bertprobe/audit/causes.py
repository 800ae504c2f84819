"""One failure for one cause: the root findings that explain other checks' failures, so those checks skip and name them.

Weights that hold NaN/inf explain every check that read a pass with NaN/inf outputs (`weights_finite` reports them).
Weights that are not the trained ones (`weights_trained`: random, re-initialised or shuffled matrices) or a
vocabulary renumbered against them (`vocabulary_rows`) explain why the model does not behave like a trained one:
the behavioural checks skip, naming the check that owns the cause. Each verdict is computed once per model, only
when a failure asks for it.
"""

from __future__ import annotations

import weakref
from typing import Any

import pytest

from pytest_bertprobe.checks.finiteness import nonfinite_parameters
from pytest_bertprobe.checks.trained import assert_weights_trained
from pytest_bertprobe.checks.vocabulary import assert_vocabulary_matches_rows
from pytest_bertprobe.errors import CheckFailure, NotApplicable

_WEIGHTS_CHECKS = ("weights_finite", "weights_loaded")
BEHAVIOUR_CHECKS = ("embedding_behaviour", "masked_lm_behaviour", "classifier_behaviour")
_nonfinite_weights: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()  # model -> its NaN/inf parameters
_untrained: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()  # model -> why its weights are not trained, or ''


def explained_failure(request: pytest.FixtureRequest, check: str, *, read_nonfinite: bool) -> str:
    """Why `check`'s failure is another check's finding (the skip reason), or '' when it is its own."""
    if read_nonfinite and check not in _WEIGHTS_CHECKS:
        model = _fixture(request, "bert_model")
        if model is not None and nonfinite_weights(model):
            return nonfinite_weights(model)
    if check in BEHAVIOUR_CHECKS:
        checkpoint = _fixture(request, "bert_checkpoint")
        if checkpoint is not None:
            return untrained_weights(checkpoint, _fixture(request, "bert_model"), _fixture(request, "bert_tokenizer"))
    return ""


def nonfinite_weights(model: Any) -> str:
    """'' when `model`'s parameters are finite; else the skip reason of a check their NaN/inf explains (scanned once per model)."""
    if model not in _nonfinite_weights:
        _nonfinite_weights[model] = nonfinite_parameters(model)
    bad = _nonfinite_weights[model]
    if not bad:
        return ""
    return f"weights hold NaN/inf ({', '.join(bad[:3])}): weights_finite reports them (weights_loaded, if the file is finite)"


def untrained_weights(checkpoint: Any, model: Any, tokenizer: Any) -> str:
    """'' when the weights look trained and the vocabulary is theirs; else why not, naming the check that reports it."""
    if model is None or tokenizer is None:
        return ""
    if model not in _untrained:
        _untrained[model] = _training_cause(checkpoint, model, tokenizer)
    return _untrained[model]


def _training_cause(checkpoint: Any, model: Any, tokenizer: Any) -> str:
    for owner, verdict in (
        ("weights_trained", lambda: assert_weights_trained(checkpoint, model=model)),
        ("vocabulary_rows", lambda: assert_vocabulary_matches_rows(checkpoint, model=model, tokenizer=tokenizer)),
    ):
        try:
            verdict()
        except CheckFailure as failure:
            return f"the weights are not the trained ones ({failure.message.splitlines()[0]}): {owner} reports it"
        except NotApplicable:
            continue
    return ""


def _fixture(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None
