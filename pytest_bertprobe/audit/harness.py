"""How audit tests run a check: generated batches, skips for checks that do not apply, metrics kept.

Every Hypothesis-driven audit test draws from the same strategy under the same seed, so the same
batches reach every invariant and `probes.run` serves each batch's forward pass once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, seed, settings

from pytest_bertprobe import probes
from pytest_bertprobe.compare import NotApplicable
from pytest_bertprobe.report import FAILING_BATCH_ATTRIBUTE, record_result
from pytest_bertprobe.sentences import ADVERSARIAL_SENTENCES, PROBE_SENTENCES
from pytest_bertprobe.strategies import Sentence, audit_sentences, batches, materialize

AUDIT_SEED = 1560  # one seed for every audit test: the same generated batches, so shared forward passes
AUDIT_PROFILE = "bertprobe-audit"
# Each probe sentence alone, first: they pass on a healthy checkpoint whatever the batching, so a fault
# that needs padding is left to the generated batches, which Hypothesis shrinks to the minimal one.
EXPLICIT_BATCHES: tuple[tuple[str, ...], ...] = tuple((sentence,) for sentence in PROBE_SENTENCES + ADVERSARIAL_SENTENCES)

settings.register_profile(
    AUDIT_PROFILE,
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    # The fixtures are session-scoped checkpoints, read-only; forward passes make examples slow by nature.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

Test = TypeVar("Test", bound=Callable[..., Any])
_user_profile: str | None = None


def use_user_profile(name: str | None) -> None:
    """Called by the plugin: a `--hypothesis-profile` the user chose replaces the audit's own."""
    global _user_profile
    _user_profile = name


def audit_settings() -> settings:
    """The user's `--hypothesis-profile` if given, else the deterministic audit profile."""
    return settings.get_profile(_user_profile) if _user_profile else settings.get_profile(AUDIT_PROFILE)


def given_batches(test: Test) -> Test:
    """Run `test(..., batch)` on generated batches, after the seed's sentences and the edge cases."""
    decorated = given(batch=batches(audit_sentences()))(test)
    for batch in reversed(EXPLICIT_BATCHES):
        decorated = example(batch=list(batch))(decorated)
    return settings(audit_settings())(seed(AUDIT_SEED)(decorated))  # type: ignore[return-value]


def encode_batch(model: Any, tokenizer: Any, batch: list[Sentence]) -> tuple[list[str], Any]:
    """The batch as plain sentences and as model inputs on the model's device."""
    sentences = materialize(batch, tokenizer)
    return sentences, probes.encode(tokenizer, sentences, model.device)


def run_check(request: pytest.FixtureRequest, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one check: skip (with its reason) where it does not apply; keep its numbers for the report."""
    __tracebackhide__ = True
    try:
        result = check(*args, **kwargs)
    except NotApplicable as reason:
        pytest.skip(str(reason))
    except AssertionError as failure:
        if isinstance(getattr(failure, "metrics", None), dict):
            record_result(request.node, failure.metrics)
        if kwargs.get("sentences") is not None:
            # On the exception itself: Hypothesis reports the minimal (or first explicit) example's exception.
            setattr(failure, FAILING_BATCH_ATTRIBUTE, list(kwargs["sentences"]))
        raise
    record_result(request.node, result)
    return result
