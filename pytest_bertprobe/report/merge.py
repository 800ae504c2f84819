"""Shards' JSON reports merged into one report of the zoo, in the schema of one run's (`files.build_json`).

Each shard's report records its `--bert-shard` plan: which shard it is, of how many, and where every checkpoint
of the zoo belongs. So the merge knows what to expect, and refuses (one line, `ReportError`) rather than report
a smaller zoo: a shard missing or given twice, shards that planned the zoo differently, a checkpoint in two
reports or absent from its shard's, reports of another plugin version or report format. Differences in the
environment (torch, transformers, device) are named in the merged report's `mismatches`, not refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_bertprobe.checkpoint.shard import ShardPlan
from pytest_bertprobe.checkpoint.source import Source
from pytest_bertprobe.errors import ReportError
from pytest_bertprobe.options import Settings
from pytest_bertprobe.report.files import REPORT_VERSION
from pytest_bertprobe.session import CheckResult, ModelRecord, ProbeSession

_REPORT_KEYS = ("version", "plugin", "environment", "models", "checks")
_SHOWN = 3  # names shown in one line before "and N more"


def read_report(path: Path) -> dict[str, Any]:
    """The JSON report at `path`, or a `ReportError` saying in one line why it is not one this version can merge."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file; give the JSON report each shard wrote (--bert-report-json)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ReportError(f"{path}: not a readable JSON report ({type(error).__name__}: {error})") from None
    if not isinstance(report, dict) or any(key not in report for key in _REPORT_KEYS):
        raise ReportError(f"{path}: not a bertprobe JSON report (it lacks {', '.join(k for k in _REPORT_KEYS if k not in (report if isinstance(report, dict) else {}))})")
    if report["version"] != REPORT_VERSION:
        raise ReportError(f"{path}: report format {report['version']!r}, this bertprobe-report reads format {REPORT_VERSION}; merge with the version that wrote it")
    return report


_MALFORMED = "a shard report lacks what bertprobe writes ({}: {}); give the JSON reports the shards wrote (--bert-report-json)"


def merge(paths: Sequence[Path]) -> dict[str, Any]:
    """One report of the zoo from the shards' reports at `paths` (each read, checked against the others)."""
    reports = [(path, read_report(path)) for path in paths]
    try:
        return _merged(reports)
    except (KeyError, TypeError, AttributeError) as error:  # a field of the schema missing or of another type
        raise ReportError(_MALFORMED.format(type(error).__name__, error)) from None


def _merged(reports: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    _same_plugin(reports)
    _complete(reports)
    owner: dict[str, Path] = {}
    for path, report in reports:
        for model in report["models"]:
            if model["id"] in owner:
                raise ReportError(f"checkpoint {model['id']!r} is in two reports, {owner[model['id']]} and {path}: merge each shard once")
            owner[model["id"]] = path
    environment, mismatches = _environment(reports)
    return {
        "version": REPORT_VERSION,
        "plugin": reports[0][1]["plugin"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment,
        "shard": None,  # the whole zoo
        "models": [model for _, report in reports for model in report["models"]],
        "checks": [check for _, report in reports for check in report["checks"]],
        "shards": [
            {"shard": _label(report), "file": str(path), "created": report.get("created"), "plugin": report["plugin"],
             "environment": report["environment"], "models": [model["id"] for model in report["models"]]}
            for path, report in reports
        ],  # fmt: skip
        "mismatches": mismatches,
    }


def _label(report: dict[str, Any]) -> str | None:
    shard = report.get("shard")
    return f"{shard['index']}/{shard['total']}" if isinstance(shard, dict) else None


def _same_plugin(reports: list[tuple[Path, dict[str, Any]]]) -> None:
    versions: dict[str, list[str]] = {}
    for path, report in reports:
        versions.setdefault(str(report["plugin"]), []).append(str(path))
    if len(versions) > 1:
        found = "; ".join(f"{version} ({_some(names)})" for version, names in versions.items())
        raise ReportError(f"the shards come from different pytest-bertprobe versions: {found}; run every shard with one version")


def _complete(reports: list[tuple[Path, dict[str, Any]]]) -> None:
    """Every shard of one plan once, each with a result for every checkpoint the plan gave it."""
    plans = [(path, ShardPlan.from_json(report["shard"]), report) for path, report in reports if isinstance(report.get("shard"), dict)]
    if not plans:
        return
    first_path, first, _ = plans[0]
    given: dict[int, Path] = {}
    for path, plan, report in plans:
        if plan.total != first.total:
            raise ReportError(f"{path} is shard {plan.label} but {first_path} is shard {first.label}: merge the shards of one split")
        if plan.assignment != first.assignment:
            moved = sorted(set(plan.assignment) ^ set(first.assignment)) or sorted(
                name for name in plan.assignment if plan.assignment[name] != first.assignment[name]
            )
            raise ReportError(
                f"{path} and {first_path} planned the zoo differently (they differ on {_some(moved)}): the jobs saw different "
                "checkpoints or prices; give every job the same --bert-model list and --bert-shard-durations file"
            )
        if plan.index in given:
            raise ReportError(f"shard {plan.label} is given twice, {given[plan.index]} and {path}: merge each shard once")
        given[plan.index] = path
        audited = {model["id"] for model in report["models"]}
        unaudited = [name for name in plan.ids if name not in audited]
        if unaudited:
            raise ReportError(
                f"{path} (shard {plan.label}) has no result for {_some(unaudited)}, planned in it: "
                "was its audit deselected, or did the job stop early?"
            )
    missing = [index for index in range(1, first.total + 1) if index not in given]
    if missing:
        left_out = sorted(name for name, index in first.assignment.items() if index in missing)
        shards = ", ".join(f"{index}/{first.total}" for index in missing)
        raise ReportError(
            f"shard{'s' if len(missing) > 1 else ''} {shards} missing: the zoo's verdict would leave out "
            f"{len(left_out)} checkpoint(s) ({_some(left_out) or 'none planned'}); give every shard's report"
        )


def _environment(reports: list[tuple[Path, dict[str, Any]]]) -> tuple[dict[str, Any], list[str]]:
    """The shards' environment, each key once; where the shards differ, every value, and a line naming the difference."""
    keys = list(dict.fromkeys(key for _, report in reports for key in report["environment"]))
    merged: dict[str, Any] = {}
    mismatches = []
    for key in keys:
        where: dict[str, list[str]] = {}
        for path, report in reports:
            where.setdefault(str(report["environment"].get(key)), []).append(_label(report) or str(path))
        merged[key] = reports[0][1]["environment"].get(key) if len(where) == 1 else ", ".join(where)
        if len(where) > 1:
            mismatches.append(f"{key}: " + "; ".join(f"{value} in {', '.join(names)}" for value, names in where.items()))
    return merged, mismatches


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def session_of(report: dict[str, Any]) -> ProbeSession:
    """A session holding a (merged) report's records, for the HTML page and the Markdown table one run writes."""
    try:
        return _session_of(report)
    except (KeyError, TypeError, AttributeError) as error:
        raise ReportError(_MALFORMED.format(type(error).__name__, error)) from None


def _session_of(report: dict[str, Any]) -> ProbeSession:
    environment = report["environment"]
    settings = Settings(models=tuple(model["path"] for model in report["models"]), device=str(environment.get("device")),
                        dtype=str(environment.get("dtype")), revision=None, audit=True)  # fmt: skip
    session = ProbeSession(settings, [], [])
    for model in report["models"]:
        record = session.records[model["id"]] = ModelRecord(model["id"], _source(str(model["path"])))
        pooler = model.get("pooler") or {}
        record.model_type, record.model_class, record.head = model.get("model_type") or "", model.get("class") or "", model.get("head") or ""
        record.architecture_note, record.untrained_modules = model.get("architecture_note"), list(model.get("untrained_modules") or [])
        record.pooler_kind, record.pooler_activation = pooler.get("kind") or "", pooler.get("activation")
        record.pooler_verdict, record.pooler_evidence = pooler.get("verdict"), dict(pooler.get("evidence") or {})
        record.loads, record.load_seconds, record.seconds = model.get("loads", 0), model.get("load_seconds", 0.0), model.get("seconds", 0.0)
        record.forward_passes, record.budget = model.get("forward_passes", 0), model.get("budget") or {}
        record.processes = {f"{p.get('worker')}:{p.get('pid')}": p for p in model.get("processes") or []}
        record.tests, record.overrides = dict(model.get("tests") or {}), list(model.get("overrides") or [])
        session.sources.append(record.source)
        session.ids.append(record.id)
    for check in report["checks"]:
        session.records[check["model"]].checks.append(
            CheckResult(check["nodeid"], check["check"], check["outcome"], dict(check.get("metrics") or {}), check.get("text") or "")
        )
    return session


def _source(location: str) -> Source:
    """Where a reported checkpoint was: a folder (an absolute path) or a hub id; only shown, never opened."""
    path = Path(location)
    return Source(location, path, None, None) if path.is_absolute() else Source(location, None, location, None)
