"""Audit results: properties on each test report, folded into per-model records, and the terminal table.

Everything a report needs travels on `TestReport.user_properties`, so it reaches the controller under
pytest-xdist and lands on JUnit testcases as properties.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pytest_bertprobe import forward
from pytest_bertprobe.compare import Gap, quote
from pytest_bertprobe.errors import CheckFailure
from pytest_bertprobe.session import CheckResult, ModelRecord, ProbeSession

MODEL_PROPERTY = "bertprobe.model"
CHECK_PROPERTY = "bertprobe.check"
METRICS_PROPERTY = "bertprobe.metrics"
STATE_PROPERTY = "bertprobe.state"
_STATE_FIELDS = (
    "model_type", "model_class", "head_class", "device", "pooler_kind", "pooler_activation", "loads", "load_seconds", "forward_passes", "budget",
)  # fmt: skip


_RESULTS = pytest.StashKey[dict[str, Any]]()
_PLOTS = pytest.StashKey[dict[str, Any]]()
PLOT_POINTS = 64  # labels a plot's series keeps: plots stay small in JSON and JUnit
_PASSES_BEFORE = pytest.StashKey[int]()


def record_result(item: pytest.Item, result: Any) -> None:
    """Keep a check's numbers for its report: over Hypothesis examples, the worst one and the count."""
    metrics = _as_metrics(result)
    kept = item.stash.setdefault(_RESULTS, {"examples": 0, "metrics": {}})
    kept["examples"] += 1
    if metrics and (not kept["metrics"] or _severity(metrics) >= _severity(kept["metrics"])):
        kept["metrics"] = metrics


def examples_recorded(item: pytest.Item) -> int:
    """How many examples `record_result` has counted for this check so far."""
    return int(item.stash.get(_RESULTS, {"examples": 0})["examples"])


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


def _as_metrics(result: Any) -> dict[str, Any]:
    if isinstance(result, Gap):
        return result.metrics()
    if hasattr(result, "metrics") and callable(result.metrics):
        return dict(result.metrics())
    if isinstance(result, dict) and all(isinstance(value, Gap) for value in result.values()) and result:
        worst = max(result.values(), key=lambda gap: _severity(gap.metrics()))
        parts = {name: gap.metrics() for name, gap in result.items()}
        return {**worst.metrics(), "parts": parts, **getattr(result, "summary", {})}  # heads name themselves (HeadGaps)
    return dict(result) if isinstance(result, dict) else {}


def _severity(metrics: dict[str, Any]) -> float:
    """How close to (or past) its tolerance a closeness check came; 0 for other metrics."""
    if metrics.get("relation", "close") != "close" or not isinstance(metrics.get("max_abs"), (int, float)):
        return 0.0
    return _ratio(float(metrics["max_abs"]), float(metrics.get("atol") or 0.0))


def _attach(item: pytest.Item, metrics: dict[str, Any]) -> None:
    item.user_properties.append((METRICS_PROPERTY, json.dumps(metrics, default=str, ensure_ascii=False)))


def annotate(item: pytest.Item, call: pytest.CallInfo[None], session: ProbeSession) -> None:
    """Name the model and check on every audit test; keep a failure's numbers and the model's state."""
    marker = item.get_closest_marker("bertprobe_audit")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "bert_checkpoint" not in callspec.params:
        return
    checkpoint_id = session.id_of(callspec.params["bert_checkpoint"])
    if call.when == "setup":
        item.user_properties.append((MODEL_PROPERTY, checkpoint_id))
        item.user_properties.append((CHECK_PROPERTY, marker.kwargs.get("check", item.originalname)))
        item.stash[_PASSES_BEFORE] = forward.passes_run()
    if call.when == "call":
        passes = forward.passes_run() - item.stash.get(_PASSES_BEFORE, forward.passes_run())
        _attach_outcome_metrics(item, call.excinfo.value if call.excinfo is not None else None, passes)
    checkpoint = getattr(item, "funcargs", {}).get("bert_checkpoint")
    if call.when == "call" and checkpoint is not None:
        record = session.record(checkpoint_id)
        record.forward_passes = forward.forward_passes(checkpoint.model)
        state = {name: getattr(record, name) for name in _STATE_FIELDS}
        item.user_properties.append((STATE_PROPERTY, json.dumps(state)))


FAILING_BATCH_ATTRIBUTE = "bertprobe_batch"


def failing_batch(error: BaseException | None) -> list[str] | None:
    """The sentences a failed check ran on (set by the audit harness on the exception Hypothesis reports)."""
    batch = getattr(error, FAILING_BATCH_ATTRIBUTE, None)
    return list(batch) if batch is not None else None


def _is_example_note(note: str) -> bool:
    """Hypothesis' notes that print the failing call with every argument, fixtures (whole models) included."""
    return bool(re.match(r"(Falsifying|Failing)( explicit)? (example|test case)", note))


def shorten_failure(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Show an audit failure as its message (and Hypothesis' notes), not a traceback full of model reprs.

    The messages are complete on their own; `--tb=long` or `--full-trace` keeps pytest's traceback.
    """
    if item.get_closest_marker("bertprobe_audit") is None or call.excinfo is None or call.when != "call":
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        # Line one is the reason (Hypothesis appends the example it skipped on); without a line number,
        # `-rs` folds a module's skips that share a reason into one line.
        path, _, reason = report.longrepr
        report.longrepr = (path, None, str(reason).split("\n", 1)[0])
        return
    if not isinstance(call.excinfo.value, AssertionError) or item.config.getoption("tbstyle", "auto") == "long":
        return
    if item.config.getoption("fulltrace", False):
        return
    error = call.excinfo.value
    lines = [f"{error.kind if isinstance(error, CheckFailure) else type(error).__name__}: {error}"]
    batch = failing_batch(error)
    if batch is not None:
        count = f"{len(batch)} sentence{'s' if len(batch) != 1 else ''}"
        lines.append(f"Failing batch ({count}): [{', '.join(quote(sentence) for sentence in batch)}]")
    lines += [note for note in getattr(error, "__notes__", ()) if not _is_example_note(note)]
    report.longrepr = "\n".join(f"E   {line}" if line else "E" for text in lines for line in str(text).splitlines())


def _attach_outcome_metrics(item: pytest.Item, error: BaseException | None, passes: int) -> None:
    """The kept (worst) metrics, or a failure's own; with the check's forward passes and Hypothesis examples."""
    kept = item.stash.get(_RESULTS, {"examples": 0, "metrics": {}})
    if isinstance(error, pytest.skip.Exception):
        if kept["metrics"]:
            _attach(item, {**kept["metrics"], "forward_passes": passes})  # measured before the check found it does not apply
        return
    failure = error if isinstance(error, CheckFailure) else None
    # A failure's own numbers describe it; without them, the check's worst passing example's.
    metrics = dict(failure.metrics) if failure is not None and failure.metrics is not None else dict(kept["metrics"])
    metrics["forward_passes"] = passes
    if isinstance(getattr(error, "bertprobe_head", None), str):
        metrics["head"] = error.bertprobe_head  # type: ignore[union-attr]  # set by heads.py: what the failing head read
    batch = failing_batch(error)
    if batch is not None:
        metrics["failing_batch"] = batch
    if item.stash.get(_PLOTS, None):
        metrics["plot"] = item.stash[_PLOTS]
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        metrics["examples"] = kept["examples"] + (1 if failure is not None else 0)  # the failing example counts
    _attach(item, metrics)


class Collector:
    """Plugin object that folds audit test reports into the session's records (controller side)."""

    def __init__(self, session: ProbeSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record each audit check's outcome and metrics under its model."""
        collect(report, self.session)


def collect(report: pytest.TestReport, session: ProbeSession) -> None:
    """Fold one test report into its model's record."""
    properties = dict(report.user_properties)
    if MODEL_PROPERTY not in properties or not (report.when == "call" or report.outcome != "passed"):
        return
    record = session.record(str(properties[MODEL_PROPERTY]))
    if STATE_PROPERTY in properties:
        for name, value in json.loads(properties[STATE_PROPERTY]).items():
            if value not in (None, "", 0):
                setattr(record, name, value)
    outcome = "error" if report.failed and report.when != "call" else report.outcome
    metrics = json.loads(properties[METRICS_PROPERTY]) if METRICS_PROPERTY in properties else {}
    if report.skipped and isinstance(report.longrepr, tuple):
        metrics["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        metrics["message"] = _first_lines(report)
    check = str(properties[CHECK_PROPERTY])
    text = str(report.longrepr) if report.failed and report.longrepr is not None else ""
    record.checks.append(CheckResult(report.nodeid, check, outcome, metrics, text))
    if "head" in metrics and check == "head_relation":
        record.head = str(metrics["head"])
    if "verdict" in metrics and check == "pooler_provenance":
        record.pooler_verdict, record.pooler_evidence = str(metrics["verdict"]), dict(metrics.get("evidence", {}))
    if check == "weights_loaded" and "look_untrained" in metrics:
        record.architecture_note, record.untrained_modules = metrics.get("architecture"), list(metrics["look_untrained"])


def _first_lines(report: pytest.TestReport, count: int = 3) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line.removeprefix("E   ") for line in text.splitlines()[:count]]
    if lines:
        lines[0] = re.sub(r"^(\w+\.)*\w*(Error|Mismatch|Violation|Exception): ", "", lines[0])  # the message, not its class
    return "\n".join(lines)


def header_lines(session: ProbeSession) -> list[str]:
    """One line naming the checkpoints and how they run."""
    if not session.sources:
        return []
    models = ", ".join(f"{checkpoint_id}={source.location}" for checkpoint_id, source in zip(session.ids, session.sources))
    return [f"bertprobe: device={session.settings.device} dtype={session.settings.dtype} models: {models}"]


def worst_metric(record: ModelRecord) -> str:
    """The check closest to (or furthest past) its tolerance, as `check: |Δ| x (tol y)`."""
    graded = [(_severity(check.metrics), check) for check in record.checks if "max_abs" in check.metrics]
    if not graded:
        return "-"
    severity, check = max(graded, key=lambda pair: pair[0])
    if severity == 0:
        return "all exact"
    return f"{check.check}: |Δ| {check.metrics['max_abs']:.3g} (tol {check.metrics.get('atol', 0):g})"


def _ratio(difference: float, tolerance: float) -> float:
    if difference == 0:
        return 0.0
    return difference / tolerance if tolerance > 0 else float("inf")


def summary_rows(session: ProbeSession) -> list[tuple[str, ...]]:
    """The table shared by the terminal and Markdown reports: header row first."""
    rows = [("model", "type", "class", "pooler", "verdict", "head", "passed", "failed", "skipped", "loads", "forward passes", "worst")]
    for record in session.records.values():
        verdicts = list(record.verdicts().values())
        rows.append((
            record.id,
            record.model_type or "-",
            record.loaded_class or "-",
            "/".join(part for part in (record.pooler_kind, record.pooler_activation) if part) or "-",
            record.pooler_verdict or "-",
            record.head or "-",
            str(verdicts.count("passed")),
            str(verdicts.count("failed") + verdicts.count("error")),
            str(verdicts.count("skipped")),
            str(record.loads),
            str(record.forward_passes),
            worst_metric(record),
        ))
    return rows


def write_summary(terminal: pytest.TerminalReporter, session: ProbeSession) -> None:
    """The `bertprobe` section: one row per model, then each failed check's first line."""
    if not session.records:
        return
    terminal.write_sep("=", "bertprobe")
    rows = summary_rows(session)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        terminal.write_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    verbose = terminal.config.get_verbosity() > 0
    for record in session.records.values():
        if record.budget:
            plan = record.budget
            terminal.write_line(
                f"{record.id}: --bert-budget={plan['budget_seconds']:g}: {plan['max_examples']} generated examples per check "
                f"(predicted {plan['predicted_seconds']:.0f} s; {plan['seconds_per_example']:.3g} s per example)"
            )
        if record.architecture_note:
            terminal.write_line(f"{record.id}: {record.architecture_note}; audited as {record.loaded_class}")
        if record.untrained_modules:
            names = record.untrained_modules
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            terminal.write_line(
                f"{record.id}: {shown} look{'s' if len(names) == 1 else ''} freshly initialised "
                "(besides the pooler; reported, not failed: see weights_loaded in the JSON report)"
            )
        for check in record.checks:
            if verbose or check.outcome in ("failed", "error"):
                terminal.write_line(f"{record.id}: {check.check}: {_describe(check)}")


def _describe(result: CheckResult) -> str:
    metrics = result.metrics
    if "max_abs" in metrics and result.outcome == "passed":
        return f"{result.outcome} (greatest |difference| {metrics['max_abs']:.3g}, tolerance {metrics.get('atol', 0):g})"
    if "reason" in metrics:
        return f"{result.outcome}: {metrics['reason']}"
    if "message" in metrics:
        return f"{result.outcome}: {metrics['message'].splitlines()[0]}"
    return result.outcome
