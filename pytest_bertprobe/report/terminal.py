"""The terminal's `bertprobe` section and header line, and the summary table the Markdown report shares."""

from __future__ import annotations

import pytest

from pytest_bertprobe.compare import severity
from pytest_bertprobe.report.details import detail, notable
from pytest_bertprobe.session import ModelRecord, ProbeSession


def header_lines(session: ProbeSession, dist: str = "no") -> list[str]:
    """One line naming the checkpoints and how they run; one more for `--bert-shard`, and for xdist's scheduling."""
    lines = [f"bertprobe: {session.shard.describe()}"] if session.shard is not None else []
    if not session.sources:
        return lines
    models = ", ".join(f"{checkpoint_id}={source.location}" for checkpoint_id, source in zip(session.ids, session.sources))
    lines.insert(0, f"bertprobe: device={session.settings.device} dtype={session.settings.dtype} models: {models}")
    if dist == "loadgroup":
        lines.append("bertprobe: --dist loadgroup: each checkpoint's tests run on one worker, which alone loads it")
    return lines


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
    rows = [("model", "type", "class", "pooler", "verdict", "head", "passed", "failed", "skipped", "your tests", "loads", "forward passes", "worst")]
    for record in session.records.values():
        verdicts = list(record.verdicts().values())
        counts = (verdicts.count("passed"), verdicts.count("failed") + verdicts.count("error"), verdicts.count("skipped"))
        rows.append((
            record.id,
            record.model_type or "-",
            record.loaded_class or "-",
            "/".join(part for part in (record.pooler_kind, record.pooler_activation) if part) or "-",
            record.pooler_verdict or "-",
            record.head or "-",
            *(str(count) if verdicts else "-" for count in counts),  # "-": no check ran (--bert-no-audit)
            your_tests(record),
            str(record.loads),
            str(record.forward_passes),
            worst_metric(record),
        ))
    return rows


def your_tests(record: ModelRecord) -> str:
    """The user's own tests on this checkpoint, e.g. `8 passed` or `7 passed 1 failed` ("-" when none ran)."""
    order = ("passed", "failed", "error", "skipped")
    outcomes = sorted(record.tests.items(), key=lambda pair: order.index(pair[0]) if pair[0] in order else len(order))
    return " ".join(f"{count} {outcome}" for outcome, count in outcomes) or "-"


def write_summary(terminal: pytest.TerminalReporter, session: ProbeSession) -> None:
    """The `bertprobe` section: one row per model, where it ran, what each check found (failures, reports and
    findings; every check with `-v`), the tests skipped for want of a checkpoint, and the report files written."""
    if not session.records and not session.no_model_skips and not session.written:
        return
    terminal.write_sep("=", "bertprobe")
    if session.records:
        rows = summary_rows(session)
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            terminal.write_line("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        _write_findings(terminal, session)
    if session.no_model_skips:
        count = session.no_model_skips
        terminal.write_line(
            f"bertprobe: {count} test{'s' if count != 1 else ''} skipped: no checkpoint given (pass --bert-model=PATH_OR_HUB_ID "
            "or set bert_models in your ini; --bert-require-model makes this an error)"
        )
    for what, path in session.written:
        terminal.write_line(f"bertprobe: {what} written to {path}")


def _write_findings(terminal: pytest.TerminalReporter, session: ProbeSession) -> None:
    verbose = terminal.config.get_verbosity() > 0
    devices = sorted({record.device for record in session.records.values() if record.device})
    if devices:
        terminal.write_line(f"bertprobe: ran on {', '.join(devices)} (--bert-device={session.settings.device}), {session.settings.dtype}")
    for record in session.records.values():
        if record.budget:
            plan = record.budget
            terminal.write_line(
                f"{record.id}: --bert-budget={plan['budget_seconds']:g}: {plan['max_examples']} generated examples per check "
                f"(predicted {plan['predicted_seconds']:.0f} s; {plan['seconds_per_example']:.3g} s per example)"
            )
        if record.architecture_note:
            terminal.write_line(f"{record.id}: {record.architecture_note}; audited as {record.loaded_class}")
        for override in record.overrides:
            terminal.write_line(f"{record.id}: {override}")
        for check in record.checks:
            if verbose or check.outcome in ("failed", "error") or "reported" in check.metrics or notable(check):
                said = detail(check)
                if "reported" in check.metrics:  # it passed because it was allowed to: the report says so instead
                    terminal.write_line(f"{record.id}: {check.check}: {said}")
                else:
                    terminal.write_line(f"{record.id}: {check.check}: {check.outcome}" + (f": {said}" if said else ""))
