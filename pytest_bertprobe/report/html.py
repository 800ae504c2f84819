"""The HTML report (`--bert-report-html`): one self-contained page, verdicts and plots per model, no fetches.

Written once by the controller from the records every worker's reports folded in (`report.collect`), so it
is the same page with or without pytest-xdist. With pytest-html active, each check's plots also go on its row.
"""

from __future__ import annotations

import dataclasses
import json
from html import escape
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe import __version__  # plots imports matplotlib only when it draws
from pytest_bertprobe.atomic import write_text_atomic
from pytest_bertprobe.report import plots
from pytest_bertprobe.report.properties import CHECK_PROPERTY, METRICS_PROPERTY
from pytest_bertprobe.report.terminal import worst_metric
from pytest_bertprobe.session import CheckResult, ModelRecord, ProbeSession

MISSING_MATPLOTLIB = "--bert-report-html needs matplotlib to draw its plots: pip install 'pytest-bertprobe[html]'"
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#1d232b;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d5dbe3;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d5dbe3;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef2f7}.passed{color:#18794e;font-weight:600}.failed,.error{color:#c22;font-weight:600}.skipped{color:#777}
.verdict-failed{background:#fdecec}.verdict-passed{background:#eaf7ef}
pre{background:#f6f8fa;border-left:4px solid #c22;padding:.6em;white-space:pre-wrap;font-size:.85em}
figure{margin:1.2em 0;padding:.6em;border:1px solid #e3e7ed;border-radius:6px}figure svg{max-width:100%;height:auto}
figcaption{font-size:.9em;color:#333}figcaption b{display:block;font-size:1.05em;margin-bottom:.2em}
.muted{color:#666;font-size:.9em}.overview{width:100%;font-size:.85em}.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:0 1em}
"""
_PLOT_ORDER = ("pooler", "cosine", "unk", "margins", "pppl", "layers", "padding")  # the pooler first, padding last


def require_matplotlib() -> None:
    """One usage line when `--bert-report-html` is asked for and matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise pytest.UsageError(MISSING_MATPLOTLIB) from None


def build_html(session: ProbeSession) -> str:
    """The page: a verdict table per model, its failed checks and plots, then the environment and options."""
    from pytest_bertprobe.report.files import build_json  # the environment block, as the JSON report has it

    environment = build_json(session)["environment"]
    records = [session.records[checkpoint_id] for checkpoint_id in session.ids if checkpoint_id in session.records]
    body = [
        "<h1>bertprobe audit report</h1>",
        f'<p class="muted">pytest-bertprobe {escape(__version__)}: {len(records)} checkpoint(s)'
        + (f", against the reference {escape(session.reference.location)}" if session.reference else "")
        + "</p>",
        _overview(records),
        *(_model_section(record) for record in records),
        "<h2>Environment</h2>",
        _key_values(environment),
        "<h2>Options</h2>",
        _key_values({field.name: getattr(session.settings, field.name) for field in dataclasses.fields(session.settings)}),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>bertprobe audit report</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_html(session: ProbeSession, path: Path) -> None:
    """Write the page to `path` atomically, creating its folder."""
    write_text_atomic(path, build_html(session))


def _overview(records: list[ModelRecord]) -> str:
    """One row per model: the terminal table's verdicts."""
    header = ["model", "type", "class audited", "pooler", "provenance", "head", "passed", "failed", "skipped", "forward passes", "closest to its tolerance"]
    rows = []
    for record in records:
        counts = _counts(record)
        rows.append(
            f'<tr class="verdict-{record.outcome}"><td><a href="#model-{escape(record.id)}">{escape(record.id)}</a></td>'
            + "".join(f"<td>{escape(str(cell))}</td>" for cell in (
                record.model_type or "-", record.loaded_class or "-", _pooler(record), record.pooler_verdict or "-",
                record.head or record.head_class or "none", counts["passed"], counts["failed"], counts["skipped"], record.forward_passes,
                worst_metric(record),
            ))  # fmt: skip
            + "</tr>"
        )
    return '<table class="overview"><tr>' + "".join(f"<th>{escape(cell)}</th>" for cell in header) + "</tr>" + "".join(rows) + "</table>"


def _model_section(record: ModelRecord) -> str:
    """A model's verdict, failed checks, plots and every check's outcome."""
    checks = sorted(record.checks, key=lambda check: (check.check, check.nodeid))
    failed = [check for check in checks if check.outcome in ("failed", "error")]
    parts = [
        f'<h2 id="model-{escape(record.id)}">{escape(record.id)}: <span class="{record.outcome}">{record.outcome}</span></h2>',
        f'<p class="muted">{escape(record.source.location)}</p>',
    ]
    evidence = record.pooler_evidence.get("why") or record.pooler_evidence.get("reason")
    parts.append(_key_values({
        "type": record.model_type or "-", "class audited": record.loaded_class or "-", "head": record.head or record.head_class or "none",
        "pooler": _pooler(record), "pooler provenance": record.pooler_verdict or "-", **({"provenance evidence": evidence} if evidence else {}),
        **{outcome: count for outcome, count in _counts(record).items()}, "forward passes": record.forward_passes,
        "closest to its tolerance": worst_metric(record),
    }))  # fmt: skip
    if failed:
        parts.append("<h3>Failed checks</h3>")
        parts += [f"<p><b>{escape(check.check)}</b> <span class=\"muted\">{escape(check.nodeid)}</span></p><pre>{escape(_message(check))}</pre>" for check in failed]
    figures = sorted(((check, plot) for check in checks for plot in _figures(check)), key=lambda pair: _PLOT_ORDER.index(pair[1].key.rsplit("-", 1)[1]))
    if figures:
        parts.append('<h3>Plots</h3><div class="plots">')
        parts += [_figure(plot, check) for check, plot in figures]
        parts.append("</div>")
    parts.append("<h3>Checks</h3><table><tr><th>check</th><th>outcome</th><th>detail</th></tr>")
    parts += [
        f'<tr><td>{escape(check.check)}</td><td class="{check.outcome}">{check.outcome}</td><td>{escape(_detail(check))}</td></tr>'
        for check in checks
    ]
    parts.append("</table>")
    return "\n".join(parts)


def _figures(check: CheckResult) -> list[plots.Plot]:
    return plots.figures_for(check.check, check.metrics)


def _figure(plot: plots.Plot, check: CheckResult) -> str:
    """A plot as a captioned `<figure>`; the cosine plot lists its sentences."""
    legend = ""
    if plot.key.endswith("-cosine"):
        rows = "".join(
            f"<tr><td>{index}</td><td>{escape(str(label))}</td><td>{value:.4f}</td></tr>"
            for index, (label, value) in enumerate(check.metrics["plot"]["series"])
        )
        legend = f'<details><summary>sentences</summary><table><tr><th>#</th><th>sentence</th><th>cosine</th></tr>{rows}</table></details>'
    return (
        f'<figure id="plot-{escape(plot.key)}">{plot.svg}<figcaption><b>{escape(plot.title)}</b>{escape(plot.caption)}</figcaption>'
        f"{legend}</figure>"
    )


def _counts(record: ModelRecord) -> dict[str, int]:
    verdicts = list(record.verdicts().values())
    return {"passed": verdicts.count("passed"), "failed": verdicts.count("failed") + verdicts.count("error"), "skipped": verdicts.count("skipped")}


def _pooler(record: ModelRecord) -> str:
    return "/".join(part for part in (record.pooler_kind, record.pooler_activation) if part) or "-"


def _message(check: CheckResult) -> str:
    """The failure's whole message, without pytest's `E   ` gutter."""
    text = check.text or str(check.metrics.get("message") or check.outcome)
    return "\n".join(line[4:] if line.startswith("E   ") else line.removeprefix("E") for line in text.splitlines())


def _detail(check: CheckResult) -> str:
    """One line: the failure's first line, the skip's reason, or the greatest difference against its tolerance."""
    metrics = check.metrics
    if "message" in metrics:
        return str(metrics["message"]).splitlines()[0]
    if "reason" in metrics:
        return str(metrics["reason"])
    if isinstance(metrics.get("max_abs"), (int, float)):
        return f"greatest |difference| {metrics['max_abs']:.3g} (tolerance {metrics.get('atol', 0):g})"
    return ""


def _key_values(values: dict[str, Any]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(str(key))}</th><td>{escape(str(value))}</td></tr>" for key, value in values.items()) + "</table>"


def attach_extras(item: pytest.Item, report: pytest.TestReport) -> None:
    """pytest-html: put the check's plots on its row as extras (only with `--bert-report-html`, which records them)."""
    if report.when != "call" or not item.config.pluginmanager.hasplugin("html"):
        return
    properties = dict(item.user_properties)
    if METRICS_PROPERTY not in properties or CHECK_PROPERTY not in properties:
        return
    from pytest_html import extras

    check = CheckResult(report.nodeid, str(properties[CHECK_PROPERTY]), report.outcome, json.loads(properties[METRICS_PROPERTY]))
    figures = _figures(check)
    if figures:
        report.extras = [*getattr(report, "extras", []), *(extras.html(_figure(plot, check)) for plot in figures)]
