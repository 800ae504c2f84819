"""How audit tests run a check: generated batches, skips for checks that do not apply, metrics kept.

Every Hypothesis-driven audit test draws from the same strategy under the same seed, so the same
batches reach every invariant and `cache.forward` serves each batch's forward pass once for all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.errors import UnsatisfiedAssumption

from pytest_bertprobe.audit.budget import Plan, plan_examples
from pytest_bertprobe.audit.causes import explained_failure
from pytest_bertprobe.audit.record import (
    FAILING_BATCH_ATTRIBUTE,
    examples_recorded,
    record_plot,
    record_result,
    rewind_examples,
)
from pytest_bertprobe.catalogue import BY_NAME, EXPLICIT_BATCHES, KERNEL_BATCHES
from pytest_bertprobe.checkpoint.limits import input_limit
from pytest_bertprobe.errors import CheckFailure, ForwardError, NotApplicable
from pytest_bertprobe.forward import cache
from pytest_bertprobe.sentences import PROBE_SENTENCES, SEED_SENTENCES
from pytest_bertprobe.session import probe_session
from pytest_bertprobe.strategies import Sentence, audit_sentences, batches, materialize

AUDIT_SEED = 1560  # one seed for every audit test: the same generated batches, so shared forward passes
AUDIT_PROFILE = "bertprobe-audit"

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


def audit_settings(config: pytest.Config) -> settings:
    """The user's `--hypothesis-profile` if given, else the deterministic audit profile."""
    profile = probe_session(config).settings.hypothesis_profile
    return settings.get_profile(profile or AUDIT_PROFILE)


def explicit_batches(check: str) -> tuple[tuple[str, ...], ...]:
    """The batches a check runs before the generated ones (the catalogue's): each probe sentence alone, fewer where text does not matter."""
    return BY_NAME[check].explicit if check in BY_NAME else EXPLICIT_BATCHES


def given_batches(test: Test) -> Test:
    """Run `test(..., batch)` on the check's explicit batches (see `explicit_batches`), then on generated batches.

    The explicit batches run here rather than as Hypothesis `@example`s, which pretty-print every argument
    (whole models) for each one. Hypothesis reads a test's settings when it is called; under `--bert-budget`
    the example count is set then, once the checkpoint's cost is known.
    """
    hypothesis_test = settings(settings.get_profile(AUDIT_PROFILE))(seed(AUDIT_SEED)(given(batch=batches(audit_sentences()))(test)))

    @functools.wraps(hypothesis_test)
    def explicit_then_generated(*args: Any, **kwargs: Any) -> Any:
        # The Hypothesis plugin adjusts the collected object's settings (pytest collects this wrapper).
        current = explicit_then_generated._hypothesis_internal_use_settings  # type: ignore[attr-defined]
        config = kwargs["request"].config
        if probe_session(config).settings.hypothesis_profile:
            user = audit_settings(config)  # as the plugin adjusts a parametrized test's own settings
            current = settings(user, suppress_health_check={HealthCheck.differing_executors, *user.suppress_health_check})
        try:
            plan = budget_plan(kwargs["request"])
        except ForwardError as crash:  # a calibration pass: the same batches the checks run
            raise owned_failure(kwargs["request"], crash) from None
        chosen = current if plan is None else settings(current, max_examples=plan.max_examples)
        hypothesis_test._hypothesis_internal_use_settings = chosen  # type: ignore[attr-defined]
        if Phase.explicit in chosen.phases:
            _run_explicit(test, explicit_batches(_check_name(kwargs["request"])), args, kwargs)
        replayable = _replayable(config, chosen)
        mark = examples_recorded(kwargs["request"].node)
        failure = _replay(test, chosen.max_examples, args, kwargs) if replayable else None
        if replayable and failure is None:
            return None
        rewind_examples(kwargs["request"].node, mark)  # Hypothesis runs the replayed batches again
        result = hypothesis_test(*args, **kwargs)
        if failure is not None and not isinstance(failure, UnsatisfiedAssumption):
            # The plain loop failed where Hypothesis' own run passed: report it, as Hypothesis reports a flaky test.
            if hasattr(failure, "add_note"):  # Python 3.11+
                failure.add_note("(note: Hypothesis' own run of these batches passed: the check is not deterministic)")
            raise failure
        return result

    return explicit_then_generated  # type: ignore[return-value]


_FAILURES = (Exception, SystemExit, GeneratorExit, pytest.fail.Exception)  # as Hypothesis' engine catches them


def _replayable(config: pytest.Config, chosen: settings) -> bool:
    """Whether Hypothesis would draw `_first_batches` and show nothing of its own: the audit's profile, generating,
    quiet enough, its own backend, no statistics asked for (the user's profile always gets Hypothesis' own run)."""
    return (
        not probe_session(config).settings.hypothesis_profile
        and not config.getoption("hypothesis_show_statistics", False)
        and chosen.derandomize
        and Phase.generate in chosen.phases
        and chosen.verbosity <= Verbosity.normal
        and getattr(chosen, "backend", "hypothesis") == "hypothesis"
    )


def _replay(test: Callable[..., Any], count: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseException | None:
    """Run `test` on the batches the audit's Hypothesis run would generate, in a plain loop; the first failure, or None.

    Under the audit's profile (derandomized, one seed) those are `_first_batches(count)` whatever the test does, so
    a passing check needs no Hypothesis engine (about 15 ms a check); on a failure Hypothesis runs after all, to
    find the same failure and shrink it.
    """
    for batch in _first_batches(count):
        try:
            test(*args, **kwargs, batch=list(batch))
        except _FAILURES as failure:  # what Hypothesis counts as a failure (or an assume() it handles); skips stop the check
            return failure
    return None


def _run_explicit(
    test: Callable[..., Any], explicit: Sequence[Sequence[str]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Every explicit batch; of those that fail, raise the simplest (shortest), as Hypothesis reports them."""
    failures: list[tuple[str, Exception]] = []
    for batch in explicit:
        try:
            test(*args, **kwargs, batch=list(batch))
        except Exception as failure:  # noqa: BLE001 - skips and pytest outcomes are BaseExceptions: they stop the loop
            failures.append((repr(batch), failure))
    if failures:
        _, simplest = min(failures, key=lambda failure: (len(failure[0]), failure[0]))
        if len(failures) > 1 and hasattr(simplest, "add_note"):  # Python 3.11+
            simplest.add_note(f"(note: {len(failures) - 1} other explicit batches also failed)")
        raise simplest


_PLANS = pytest.StashKey[dict[str, Plan]]()
_PLANNED_SAMPLE = 20  # generated batches tokenized to price one example


def budget_plan(request: pytest.FixtureRequest) -> Plan | None:
    """The checkpoint's example count under `--bert-budget`, planned on its first generated check; None without one."""
    session = probe_session(request.config)
    if session.settings.budget is None or session.settings.hypothesis_profile:
        return None
    checkpoint = request.getfixturevalue("bert_checkpoint")
    plans = request.config.stash.setdefault(_PLANS, {})
    if checkpoint.id not in plans:
        tokenizer = checkpoint.tokenizer
        plans[checkpoint.id] = plan_examples(
            checkpoint.model, tokenizer, session.settings.budget,
            load_seconds=checkpoint.load_seconds, head_model=checkpoint.head_model is not None,
            generated_checks=_generated_checks(request.session, checkpoint.source),
            # The empty sentence first (a warm-up pass), then two sizes to fit a pass's price; all needed later.
            calibration=[("",), SEED_SENTENCES, PROBE_SENTENCES], explicit=EXPLICIT_BATCHES, eager_explicit=KERNEL_BATCHES,
            generated=[materialize(batch, tokenizer) for batch in _first_batches(_PLANNED_SAMPLE)],
        )  # fmt: skip
        session.record(checkpoint.id).budget = plans[checkpoint.id].metrics()
    return plans[checkpoint.id]


def _generated_checks(session: pytest.Session, source: Any) -> int:
    """How many of this run's tests are generated audit checks of the checkpoint at `source`."""
    return sum(
        1
        for item in session.items
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
        and item.get_closest_marker("bertprobe_audit") is not None
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("bert_checkpoint") == source
    )


@functools.cache
def _first_batches(count: int) -> tuple[list[Sentence], ...]:
    """The first `count` batches the audit's generated checks draw (same strategy, seed and derandomization)."""
    drawn: list[list[Sentence]] = []

    @settings(settings.get_profile(AUDIT_PROFILE), max_examples=count, phases=[Phase.generate])
    @seed(AUDIT_SEED)
    @given(batch=batches(audit_sentences()))
    def draw(batch: list[Sentence]) -> None:
        drawn.append(batch)

    draw()
    return tuple(drawn)


def audit_batches(request: pytest.FixtureRequest, model: Any, tokenizer: Any) -> list[tuple[list[str], Any]]:
    """For checks that judge all batches at once: each probe sentence alone, the seed's five padded together,
    then the generated batches the other checks draw (as many as they do), encoded."""
    plan = budget_plan(request)
    count = plan.max_examples if plan is not None else audit_settings(request.config).max_examples
    texts = [*(list(batch) for batch in EXPLICIT_BATCHES), list(SEED_SENTENCES), *(materialize(batch, tokenizer) for batch in _first_batches(count))]
    return [encode_batch(model, tokenizer, list(batch)) for batch in dict.fromkeys(tuple(batch) for batch in texts)]


def encode_batch(model: Any, tokenizer: Any, batch: list[Sentence]) -> tuple[list[str], Any]:
    """The batch as plain sentences and as model inputs on the model's device."""
    sentences = materialize(batch, tokenizer)
    return sentences, cache.encode(tokenizer, sentences, model.device, max_length=input_limit(model, tokenizer))


def run_on_batch(request: pytest.FixtureRequest, check: Callable[..., Any], model: Any, tokenizer: Any, batch: list[Sentence]) -> Any:
    """`run_check` of `check(model, inputs, sentences=...)` on the batch, encoded for the model."""
    __tracebackhide__ = True
    sentences, inputs = encode_batch(model, tokenizer, batch)
    return run_check(request, check, model, inputs, sentences=sentences)


def run_check(request: pytest.FixtureRequest, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one check: skip (with its reason) where it does not apply; keep its numbers for the report."""
    __tracebackhide__ = True
    served = cache.nonfinite_served()
    try:
        result = check(*args, **kwargs)
    except NotApplicable as reason:
        pytest.skip(str(reason))
    except ForwardError as crash:
        failure = owned_failure(request, crash)
        _keep_failure(request, failure, kwargs.get("sentences"))
        raise failure from None
    except AssertionError as failure:
        if _reported_instead(request, failure):
            return None
        explained = explained_failure(request, _check_name(request), read_nonfinite=cache.nonfinite_served() > served)
        if explained:
            pytest.skip(explained)
        _keep_failure(request, failure, kwargs.get("sentences"))
        raise
    record_result(request.node, result)
    return result


def _reported_instead(request: pytest.FixtureRequest, failure: AssertionError) -> bool:
    """Under `--bert-allow-untrained`, a training verdict's failure is kept as a report and the check passes."""
    check = BY_NAME.get(_check_name(request))
    if check is None or not check.training or not probe_session(request.config).settings.allow_untrained:
        return False
    metrics = failure.metrics if isinstance(failure, CheckFailure) and failure.metrics is not None else {}
    record_result(request.node, {**metrics, "reported": str(failure).split("\n", 1)[0], "allowed_by": "--bert-allow-untrained"})
    return True


def _check_name(request: pytest.FixtureRequest) -> str:
    """The catalogue name of the audit test running (its `bertprobe_audit` marker), or ''."""
    marker = request.node.get_closest_marker("bertprobe_audit")
    return str(marker.kwargs.get("check", "")) if marker is not None else ""


def record_plot_data(request: pytest.FixtureRequest, compute: Callable[..., dict[str, Any] | None], *args: Any, **kwargs: Any) -> None:
    """Keep `compute(...)`'s data for the HTML report's plot of this check, only when that report is asked for."""
    if not probe_session(request.config).settings.report_html:
        return
    try:
        data = compute(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a plot pictures a check, it is not one: the check itself reports what broke
        return
    if data:
        record_plot(request.node, data)


def owned_failure(request: pytest.FixtureRequest, crash: ForwardError) -> CheckFailure:
    """The failure to raise when this check owns the crashed pass; otherwise skip, pointing at the owner."""
    if _check_name(request) != crash.owner:
        pytest.skip(crash.skip_reason)
    return CheckFailure(str(crash), metrics=crash.metrics)


def _keep_failure(request: pytest.FixtureRequest, failure: AssertionError, sentences: Sequence[str] | None) -> None:
    if sentences is not None:
        # On the exception itself: Hypothesis reports the minimal (or first explicit) example's exception.
        setattr(failure, FAILING_BATCH_ATTRIBUTE, list(sentences))
