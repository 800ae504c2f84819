"""Report files written once by the controller: JSON for machines, Markdown for CI job summaries."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_bertprobe import __version__
from pytest_bertprobe.atomic import append_text_atomic, write_text_atomic
from pytest_bertprobe.report.details import detail
from pytest_bertprobe.report.terminal import summary_rows
from pytest_bertprobe.session import ProbeSession

REPORT_VERSION = 1


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def build_json(session: ProbeSession) -> dict[str, Any]:
    """The report: environment, one entry per model, one per check."""
    settings = session.settings
    return {
        "version": REPORT_VERSION,
        "plugin": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "torch": _installed("torch"),
            "transformers": _installed("transformers"),
            # Where the checkpoints ran (`auto` resolved); the option's value when none loaded.
            "device": ", ".join(sorted({record.device for record in session.records.values() if record.device})) or settings.device,
            "dtype": settings.dtype,
        },
        "shard": session.shard.as_json() if session.shard is not None else None,  # `--bert-shard`: K/N and the zoo's plan
        "models": [
            {
                "id": record.id,
                "path": record.source.location,
                "model_type": record.model_type or None,
                "class": record.loaded_class or None,
                "architecture_note": record.architecture_note,
                "untrained_modules": record.untrained_modules,
                "head": record.head or None,
                "overrides": record.overrides,
                "outcome": record.outcome,
                "tests": record.tests,  # the user's own tests on this checkpoint, by outcome
                "pooler": {
                    "kind": record.pooler_kind or None,
                    "activation": record.pooler_activation,
                    "verdict": record.pooler_verdict,
                    "evidence": record.pooler_evidence,
                },
                "loads": record.loads,
                "load_seconds": round(record.load_seconds, 3),
                "forward_passes": record.forward_passes,
                "seconds": round(record.audit_seconds, 3),  # its tests' phases, loads included, the one-time imports not
                "processes": list(record.processes.values()),
                "budget": record.budget or None,
            }
            for record in session.records.values()
        ],
        "checks": [
            {
                "nodeid": check.nodeid, "model": record.id, "check": check.check, "outcome": check.outcome,
                "detail": detail(check), "metrics": check.metrics, "text": check.text,
            }  # fmt: skip
            for record in session.records.values()
            for check in record.checks
        ],
    }


def write_json(session: ProbeSession, path: Path) -> None:
    """Write the JSON report to `path`, creating its folder."""
    write_text_atomic(path, json.dumps(build_json(session), indent=2, ensure_ascii=False, default=str) + "\n")
    session.written.append(("JSON report", str(path.resolve())))


def build_markdown(session: ProbeSession) -> str:
    """The terminal table as Markdown, then the failed checks; appendable to `$GITHUB_STEP_SUMMARY`."""
    rows = summary_rows(session)
    escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
    lines = ["## bertprobe", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows[1:]]
    failures = [
        (record.id, check) for record in session.records.values() for check in record.checks if check.outcome in ("failed", "error")
    ]
    if failures:
        lines += ["", "### Failed checks", ""]
        lines += [f"- **{model}** `{check.check}`: {escape(detail(check))}" for model, check in failures]
    return "\n".join(lines) + "\n"


def write_markdown(session: ProbeSession, path: Path) -> None:
    """Append the Markdown report to `path` (CI job summaries collect several steps)."""
    append_text_atomic(path, build_markdown(session))
    session.written.append(("Markdown summary", str(path.resolve())))
