"""The HTML report (`--bert-report-html`): one self-contained page, verdicts and plots per model, no fetches.

Written once by the controller from the records every worker's reports folded in (`report.collect`), so it
is the same page with or without pytest-xdist. With pytest-html active, each check's plots also go on its row.
"""

from __future__ import annotations

import dataclasses
import json
from html import escape
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe import __version__  # plots imports matplotlib only when it draws
from pytest_bertprobe.atomic import write_text_atomic
from pytest_bertprobe.report import plots
from pytest_bertprobe.report.details import detail
from pytest_bertprobe.report.properties import CHECK_PROPERTY, METRICS_PROPERTY
from pytest_bertprobe.report.terminal import worst_metric, your_tests
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
.muted{color:#666;font-size:.9em}.overview{width:100%;font-size:.85em}.overview th{cursor:pointer}.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:0 1em}
"""
_PLOT_ORDER = ("spread", "classes", "pooler", "cosine", "unk", "margins", "pppl", "layers", "padding")  # the weights first; padding last
# A click on an overview column sorts by it (again: the other way); numbers as numbers. Inline: the page fetches nothing.
_SORT_SCRIPT = """for (const table of document.querySelectorAll("table.overview")) {
  const heads = table.rows[0].cells;
  for (let column = 0; column < heads.length; column++) heads[column].addEventListener("click", () => {
    const up = heads[column].dataset.order !== "up", rows = [...table.rows].slice(1);
    const key = row => { const text = row.cells[column].textContent.trim(), number = Number(text); return text !== "" && !isNaN(number) ? number : text.toLowerCase(); };
    rows.sort((a, b) => { const x = key(a), y = key(b); const order = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1) : x < y ? -1 : x > y ? 1 : 0; return up ? order : -order; });
    for (const head of heads) delete head.dataset.order;
    heads[column].dataset.order = up ? "up" : "down";
    for (const row of rows) row.parentNode.appendChild(row);
  });
}"""


def require_matplotlib() -> None:
    """One usage line when `--bert-report-html` is asked for and matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise pytest.UsageError(MISSING_MATPLOTLIB) from None


def build_html(
    session: ProbeSession, shards: list[dict[str, Any]] | None = None, mismatches: Sequence[str] = (), environment: dict[str, Any] | None = None
) -> str:
    """The page: the zoo overview, a verdict table per model, its failed checks and plots, then the environment and options.

    `shards` (a merged report's): each shard's label, file, environment and checkpoints, shown in place of the options;
    `environment`: the merged report's (the shards'), where this run's is not the one that audited.
    """
    if environment is None:
        from pytest_bertprobe.report.files import build_json  # the environment block, as the JSON report has it

        environment = build_json(session)["environment"]
    records = [session.records[checkpoint_id] for checkpoint_id in session.ids if checkpoint_id in session.records]
    shard_of = {name: shard["shard"] or shard["file"] for shard in shards or [] for name in shard["models"]}
    tail = ["<h2>Shards</h2>", _shards(shards, mismatches)] if shards is not None else [
        "<h2>Options</h2>",
        _key_values({field.name: option_text(getattr(session.settings, field.name)) for field in dataclasses.fields(session.settings)}),
    ]
    body = [
        "<h1>bertprobe audit report</h1>",
        f'<p class="muted">pytest-bertprobe {escape(__version__)}: {len(records)} checkpoint(s)'
        + (f" from {len(shards)} shard report(s)" if shards is not None else "")
        + (f", shard {session.shard.label} of the zoo" if session.shard is not None else "")
        + (f", against the reference {escape(session.reference.location)}" if session.reference else "")
        + "</p>",
        _overview(records, shard_of),
        *(_model_section(record) for record in records),
        "<h2>Environment</h2>",
        _key_values(environment),
        *tail,
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>bertprobe audit report</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + f"\n<script>\n{_SORT_SCRIPT}\n</script>\n</body></html>\n"
    )


def write_html(session: ProbeSession, path: Path) -> None:
    """Write the page to `path` atomically, creating its folder."""
    write_text_atomic(path, build_html(session))
    session.written.append(("HTML report", str(path.resolve())))


def _overview(records: list[ModelRecord], shard_of: dict[str, str]) -> str:
    """The zoo overview: one row per model, failures first, the terminal table's verdicts; a click on a column sorts by it."""
    header = ["model", "type", "class audited", "pooler", "provenance", "head", "passed", "failed", "skipped", "forward passes",
              "seconds", "closest to its tolerance", *(["shard"] if shard_of else [])]  # fmt: skip
    rows = []
    for record in sorted(records, key=lambda record: record.outcome != "failed"):
        counts = _counts(record)
        rows.append(
            f'<tr class="verdict-{record.outcome}"><td><a href="#model-{escape(record.id)}">{escape(record.id)}</a></td>'
            + "".join(f"<td>{escape(str(cell))}</td>" for cell in (
                record.model_type or "-", record.loaded_class or "-", _pooler(record), record.pooler_verdict or "-",
                record.head or record.head_class or "none", counts["passed"], counts["failed"], counts["skipped"], record.forward_passes,
                f"{record.audit_seconds:.1f}", worst_metric(record), *([shard_of.get(record.id, "-")] if shard_of else []),
            ))  # fmt: skip
            + "</tr>"
        )
    return (
        '<table class="overview"><tr>' + "".join(f'<th title="sort by {escape(cell)}">{escape(cell)}</th>' for cell in header)
        + "</tr>" + "".join(rows) + "</table>"
    )


def _shards(shards: list[dict[str, Any]], mismatches: Sequence[str]) -> str:
    """A merged report's shards: which, from which file, when, on what, with how many checkpoints; then their differences."""
    keys = list(dict.fromkeys(key for shard in shards for key in shard["environment"]))
    header = ["shard", "report", "created", "plugin", *keys, "checkpoints"]
    rows = [
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in (
            shard["shard"] or "whole run", shard["file"], shard["created"], shard["plugin"],
            *(shard["environment"].get(key) for key in keys), len(shard["models"]),
        )) + "</tr>"
        for shard in shards
    ]  # fmt: skip
    differences = "".join(f"<li>{escape(mismatch)}</li>" for mismatch in mismatches)
    return (
        "<table><tr>" + "".join(f"<th>{escape(cell)}</th>" for cell in header) + "</tr>" + "".join(rows) + "</table>"
        + (f'<p class="muted">The shards ran in different environments:</p><ul>{differences}</ul>' if differences else "")
    )


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
        **{outcome: count for outcome, count in _counts(record).items()}, "your tests": your_tests(record),
        **({"overrides": "; ".join(record.overrides)} if record.overrides else {}), "forward passes": record.forward_passes,
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
        f'<tr><td>{escape(check.check)}</td><td class="{check.outcome}">{check.outcome}</td><td>{escape(detail(check))}</td></tr>'
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


def option_text(value: Any) -> str:
    """An option's value as a reader writes it: `on`/`off`, `-` for none, lists joined, tolerance rows as in the ini."""
    if value is None or value == () or value == {}:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Mapping):
        return "; ".join(f"{key} = {option_text(row)}" for key, row in value.items())
    if hasattr(value, "atol") and hasattr(value, "rtol"):
        return f"{value.atol:g} {value.rtol:g}"
    if isinstance(value, (tuple, list)):
        return ", ".join(str(part) for part in value)
    return str(value)


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
