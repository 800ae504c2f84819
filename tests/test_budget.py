"""`--bert-budget`: generated example counts scale to a time budget per checkpoint, and the report says how many."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bertprobe.audit.budget import CHECK_SECONDS, MIN_EXAMPLES, Price, batch_passes, fit_price, plan_examples
from pytest_bertprobe.audit.harness import EXPLICIT_BATCHES, explicit_batches
from tests.helpers import assert_usage_error, junit_metrics

Factory = Callable[..., Path]
TWO_CHECKS = "pooler_is_dense or cls_is_not"


def _audit(pytester: pytest.Pytester, checkpoint: Path, *args: str) -> dict:
    result = pytester.runpytest(f"--bert-model={checkpoint}", "-k", TWO_CHECKS, "--bert-report-json=report.json", *args)
    result.assert_outcomes(passed=2)
    return json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))


def _generated(report: dict) -> dict[str, int]:
    """Each generated check's examples, less the explicit ones it always runs first."""
    return {check["check"]: check["metrics"]["examples"] - len(explicit_batches(check["check"])) for check in report["checks"]}


class SteadyClock:
    """A clock that advances 1 ms per reading: every load and every forward pass takes 1 ms, on any machine, however busy."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def steady_clock(monkeypatch: pytest.MonkeyPatch) -> SteadyClock:
    """The clock loads and forward passes are timed by, in this process (pytester runs in-process)."""
    from pytest_bertprobe.checkpoint import loading
    from pytest_bertprobe.forward import cache

    clock = SteadyClock()
    monkeypatch.setattr(cache, "time", clock)
    monkeypatch.setattr(loading, "time", clock)
    return clock


def test_a_small_budget_gets_fewer_examples_than_a_large_one(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, steady_clock: SteadyClock
) -> None:
    checkpoint = tiny_checkpoint("bert")
    small = _audit(pytester, checkpoint, "--bert-budget=0.001")
    (small_plan,) = [model["budget"] for model in small["models"]]
    assert steady_clock.now > 0 and small_plan["seconds_per_pass"] == pytest.approx(0.001)  # priced by the clock given
    # Room for the fixed part and twenty examples and a half: the same passes cost the same in the second run.
    roomy = small_plan["fixed_seconds"] + 20.5 * small_plan["seconds_per_example"]
    large = _audit(pytester, checkpoint, f"--bert-budget={roomy:.3f}")
    (large_plan,) = [model["budget"] for model in large["models"]]
    assert small_plan["max_examples"] == MIN_EXAMPLES < large_plan["max_examples"] == 20
    assert small_plan["budget_seconds"] == 0.001 and small_plan["seconds_per_example"] > 0
    # Every generated check gets the plan's count, after the explicit examples.
    assert set(_generated(small).values()) == {MIN_EXAMPLES}
    assert set(_generated(large).values()) == {large_plan["max_examples"]}


def test_one_count_per_checkpoint_keeps_the_batches_shared(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    report = _audit(pytester, tiny_checkpoint("bert"), "--bert-budget=2")
    passes = {check["check"]: check["metrics"]["forward_passes"] for check in report["checks"]}
    assert passes["pooler_relation"] > 0 and passes["cls_differs_from_pooler"] == 0  # the second check reran nothing


def test_the_plan_is_in_the_terminal_summary_and_junit(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-k", TWO_CHECKS, "--bert-budget=0.001", "--junitxml=junit.xml")
    result.stdout.fnmatch_lines([f"bert: --bert-budget=0.001: {MIN_EXAMPLES} generated examples per check (predicted * s; * s per example)"])
    examples = [metrics["examples"] for metrics in junit_metrics(pytester.path / "junit.xml").values()]
    assert examples == [len(EXPLICIT_BATCHES) + MIN_EXAMPLES] * 2


def test_a_users_hypothesis_profile_wins_over_the_budget(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    pytester.makeconftest(
        "from hypothesis import settings\nsettings.register_profile('tiny', max_examples=2, database=None, deadline=None)\n"
    )
    report = _audit(pytester, tiny_checkpoint("bert"), "--bert-budget=0.001", "--hypothesis-profile=tiny")
    assert set(_generated(report).values()) == {2}
    assert report["models"][0]["budget"] is None


def test_without_a_budget_the_fixed_profile_runs(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    report = _audit(pytester, tiny_checkpoint("bert"))
    assert set(_generated(report).values()) == {10}
    assert report["models"][0]["budget"] is None


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_a_bad_budget_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest_subprocess(f"--bert-budget={value}")
    assert_usage_error(result, f"--bert-budget={value}: give a positive number of seconds, e.g. --bert-budget=60")


def test_a_bad_ini_budget_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nbert_budget = soon\n")
    result = pytester.runpytest_subprocess()
    assert_usage_error(result, "--bert-budget=soon: give a positive number of seconds*")


def test_a_batch_costs_its_passes() -> None:
    import torch

    single = {"input_ids": torch.ones(1, 5, dtype=torch.long), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    padded = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])}
    # alone: the shared pass and the eager pass; a padded pair: also masked content, the shuffled batch, each row alone.
    assert batch_passes(single, head_model=False) == (2.3, 11.5)
    assert batch_passes(padded, head_model=False) == (6.3, 4.3 * 10 + 7)
    assert batch_passes(padded, head_model=True) == (7.3, 5.3 * 10 + 7)


def test_only_rows_not_yet_run_alone_are_priced_alone() -> None:
    import torch

    padded = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])}
    assert batch_passes(padded, head_model=False, alone=[1]) == (5.3, 4.3 * 10 + 2)
    assert batch_passes(padded, head_model=False, alone=[]) == (4.3, 4.3 * 10)


def test_rows_of_one_length_are_priced_as_one_pass_alone() -> None:
    import torch

    mask = torch.tensor([[1] * 5, [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    padded = {"input_ids": torch.ones(3, 5, dtype=torch.long), "attention_mask": mask}
    # The shared, eager, masked-content and shuffled passes; then rows 1 and 2 alone together, and row 0.
    assert batch_passes(padded, head_model=False) == (6.3, 4.3 * 15 + 11)


def test_the_plan_prices_nothing_the_memo_already_holds(tiny_checkpoint: Factory) -> None:
    from transformers import AutoModel, AutoTokenizer

    from pytest_bertprobe.forward import cache as forward

    path = tiny_checkpoint("bert")
    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)

    def per_example(explicit: list[tuple[str, ...]], generated: list[list[str]]) -> float:
        plan = plan_examples(
            model, tokenizer, 60.0, load_seconds=0.0, head_model=False, generated_checks=1,
            calibration=[("",), ("a b c",), ("hello world", "the weather is sad today")],
            explicit=explicit, eager_explicit=(), generated=generated,
        )  # fmt: skip
        return plan.seconds_per_example - CHECK_SECONDS

    with forward.shared(model, tokenizer):
        batch = ["hello world", "the weather is sad today, will there be a big typhoon?"]
        once = per_example([], [batch])
        assert per_example([], [batch, batch]) == pytest.approx(once / 2)  # the second time, every pass is recalled
        assert 0 < per_example([("hello world",)], [batch]) < once  # that sentence ran alone as an explicit example


def test_a_pass_is_priced_per_pass_and_per_token() -> None:
    warm_up = (3, 9.0)
    fitted = fit_price([warm_up, (10, 1.1), (110, 2.1)])
    assert (fitted.per_pass, fitted.per_token) == pytest.approx((1.0, 0.01))
    assert fit_price([warm_up, (10, 2.0), (110, 1.0)]) == Price(1.5, 0.0)  # noise: a flat price per pass
    assert fit_price([(100, 1.0)]) == Price(1.0, 0.0)  # one pass: nothing left out
