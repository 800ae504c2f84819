"""The terminal's `bertprobe` section and header line, and the summary table the Markdown report shares."""

from __future__ import annotations

import pytest

from pytest_bertprobe.compare import severity
from pytest_bertprobe.session import CheckResult, ModelRecord, ProbeSession


def header_lines(session: ProbeSession) -> list[str]:
    """One line naming the checkpoints and how they run."""
    if not session.sources:
        return []
    models = ", ".join(f"{checkpoint_id}={source.location}" for checkpoint_id, source in zip(session.ids, session.sources))
    return [f"bertprobe: device={session.settings.device} dtype={session.settings.dtype} models: {models}"]


def worst_metric(record: ModelRecord) -> str:
    """The check closest to (or furthest past) its tolerance, as `check: |Δ| x (tol y)`."""
    graded = [(severity(check.metrics), check) for check in record.checks if "max_abs" in check.metrics]
    if not graded:
        return "-"
    worst, check = max(graded, key=lambda pair: pair[0])
    if worst == 0:
        return "all exact"
    return f"{check.check}: |Δ| {check.metrics['max_abs']:.3g} (tol {check.metrics.get('atol', 0):g})"


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
        for check in record.checks:
            if verbose or check.outcome in ("failed", "error") or "reported" in check.metrics:
                terminal.write_line(f"{record.id}: {check.check}: {_describe(check)}")


def _describe(result: CheckResult) -> str:
    metrics = result.metrics
    if "reported" in metrics:
        return f"reported, not failed ({metrics.get('allowed_by', 'allowed')}): {metrics['reported']}"
    if "max_abs" in metrics and result.outcome == "passed":
        return f"{result.outcome} (greatest |difference| {metrics['max_abs']:.3g}, tolerance {metrics.get('atol', 0):g})"
    if "reason" in metrics:
        return f"{result.outcome}: {metrics['reason']}"
    if "message" in metrics:
        return f"{result.outcome}: {metrics['message'].splitlines()[0]}"
    return result.outcome
