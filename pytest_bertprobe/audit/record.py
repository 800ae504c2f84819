"""What an audit check keeps while it runs, on its test item: the worst metrics over its examples and their count,
the data its plot draws, and the batch it failed on. `report/properties.py` reads them when the test ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_bertprobe.compare import severity
from pytest_bertprobe.errors import Gap

_RESULTS = pytest.StashKey[dict[str, Any]]()
_PLOTS = pytest.StashKey[dict[str, Any]]()
PLOT_POINTS = 64  # labels a plot's series keeps: plots stay small in JSON and JUnit
FAILING_BATCH_ATTRIBUTE = "bertprobe_batch"


def record_result(item: pytest.Item, result: Any) -> None:
    """Keep a check's numbers for its report: over Hypothesis examples, the worst one and the count."""
    metrics = _as_metrics(result)
    kept = item.stash.setdefault(_RESULTS, {"examples": 0, "metrics": {}})
    kept["examples"] += 1
    if metrics and (not kept["metrics"] or severity(metrics) >= severity(kept["metrics"])):
        kept["metrics"] = metrics


def kept_result(item: pytest.Item) -> dict[str, Any]:
    """`{"examples": count, "metrics": the worst example's}` recorded for this check so far."""
    return item.stash.get(_RESULTS, {"examples": 0, "metrics": {}})


def examples_recorded(item: pytest.Item) -> int:
    """How many examples `record_result` has counted for this check so far."""
    return int(kept_result(item)["examples"])


def rewind_examples(item: pytest.Item, count: int) -> None:
    """Count `count` examples again: those run after it are about to run a second time (and be counted then)."""
    if _RESULTS in item.stash:
        item.stash[_RESULTS]["examples"] = count


def record_plot(item: pytest.Item, data: dict[str, Any]) -> None:
    """Keep what the HTML report draws for a check, over all its examples.

    `series` ([label, value] pairs) keeps the greatest value per label, `diverging` (labels) every label seen;
    other keys keep the latest value.
    """
    kept = item.stash.setdefault(_PLOTS, {})
    for key, value in data.items():
        if key == "diverging":
            kept[key] = list(dict.fromkeys([*kept.get(key, []), *value]))
            continue
        if key != "series":
            kept[key] = value
            continue
        merged: dict[Any, float] = {label: number for label, number in kept.get("series", [])}
        for label, number in value:
            if label in merged or len(merged) < PLOT_POINTS:
                merged[label] = max(number, merged.get(label, number))
        kept["series"] = [[label, number] for label, number in merged.items()]


def kept_plot(item: pytest.Item) -> dict[str, Any]:
    """The plot data `record_plot` kept for this check ({} when none)."""
    return item.stash.get(_PLOTS, {})


def failing_batch(error: BaseException | None) -> list[str] | None:
    """The sentences a failed check ran on (set by the audit harness on the exception Hypothesis reports)."""
    batch = getattr(error, FAILING_BATCH_ATTRIBUTE, None)
    return list(batch) if batch is not None else None


def _as_metrics(result: Any) -> dict[str, Any]:
    if isinstance(result, Gap):
        return result.metrics()
    if hasattr(result, "metrics") and callable(result.metrics):
        return dict(result.metrics())
    if isinstance(result, dict) and all(isinstance(value, Gap) for value in result.values()) and result:
        worst = max(result.values(), key=lambda gap: severity(gap.metrics()))
        parts = {name: gap.metrics() for name, gap in result.items()}
        return {**worst.metrics(), "parts": parts, **getattr(result, "summary", {})}  # heads name themselves (HeadGaps)
    return dict(result) if isinstance(result, dict) else {}
