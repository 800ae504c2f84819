"""What the run tells people: per-test properties, the header line and the `bertprobe` summary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_bertprobe.compare import Gap, Mismatch
from pytest_bertprobe.session import CheckResult, ProbeSession

MODEL_PROPERTY = "bertprobe.model"
CHECK_PROPERTY = "bertprobe.check"
METRICS_PROPERTY = "bertprobe.metrics"


def attach_metrics(item: pytest.Item, metrics: Gap | dict[str, Any]) -> None:
    """Put a passing check's numbers on its test report (and so on the JUnit testcase)."""
    values = metrics.metrics() if isinstance(metrics, Gap) else metrics
    item.user_properties.append((METRICS_PROPERTY, json.dumps(values, default=str)))


def annotate(item: pytest.Item, call: pytest.CallInfo[None], session: ProbeSession) -> None:
    """Name the model and check on every audit test, and keep a failure's numbers."""
    marker = item.get_closest_marker("bertprobe_audit")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "bert_checkpoint" not in callspec.params:
        return
    if call.when == "setup":
        item.user_properties.append((MODEL_PROPERTY, session.id_of(callspec.params["bert_checkpoint"])))
        item.user_properties.append((CHECK_PROPERTY, marker.kwargs.get("check", item.originalname)))
    if call.excinfo is not None and isinstance(call.excinfo.value, Mismatch):
        attach_metrics(item, call.excinfo.value.gap)


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
    outcome = "error" if report.failed and report.when != "call" else report.outcome
    metrics = json.loads(properties[METRICS_PROPERTY]) if METRICS_PROPERTY in properties else {}
    if report.skipped and isinstance(report.longrepr, tuple):
        metrics["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
    check = str(properties[CHECK_PROPERTY])
    session.record(str(properties[MODEL_PROPERTY])).checks[check] = CheckResult(report.nodeid, check, outcome, metrics)


def header_lines(session: ProbeSession) -> list[str]:
    """One line naming the checkpoints and how they run."""
    if not session.sources:
        return []
    models = ", ".join(f"{checkpoint_id}={source.location}" for checkpoint_id, source in zip(session.ids, session.sources))
    return [f"bertprobe: device={session.settings.device} dtype={session.settings.dtype} models: {models}"]


def _describe(result: CheckResult) -> str:
    metrics = result.metrics
    if "max_abs" in metrics:
        return f"{result.outcome} (greatest |difference| {metrics['max_abs']:.3g}, tolerance {metrics['atol']:g})"
    if "reason" in metrics:
        return f"{result.outcome}: {metrics['reason']}"
    return result.outcome


def write_summary(terminal: pytest.TerminalReporter, session: ProbeSession) -> None:
    """One row per checkpoint, then each check's verdict with its greatest difference."""
    if not session.records:
        return
    terminal.write_sep("=", "bertprobe")
    rows = [("model", "type", "pooler", "activation", "loads", "load s", "forward passes")]
    for record in session.records.values():
        rows.append((
            record.id,
            record.model_type or "-",
            record.pooler_kind or "-",
            record.pooler_activation or "-",
            str(record.loads),
            f"{record.load_seconds:.2f}",
            str(record.forward_passes),
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        terminal.write_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for record in session.records.values():
        for result in record.checks.values():
            terminal.write_line(f"{record.id}: {result.check}: {_describe(result)}")
