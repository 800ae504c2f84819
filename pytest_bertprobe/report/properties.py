"""Audit results on each test report: the model, the check and its numbers as properties, folded into per-model records.

Everything a report needs travels on `TestReport.user_properties`, so it reaches the controller under
pytest-xdist and lands on JUnit testcases as properties.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from pytest_bertprobe.audit.record import failing_batch, kept_plot, kept_result
from pytest_bertprobe.checkpoint.workers import process_label, without_group
from pytest_bertprobe.compare import quote
from pytest_bertprobe.errors import CheckFailure
from pytest_bertprobe.forward import cache
from pytest_bertprobe.session import NO_MODEL_REASON, CheckResult, ModelRecord, ProbeSession

MODEL_PROPERTY = "bertprobe.model"
CHECK_PROPERTY = "bertprobe.check"
METRICS_PROPERTY = "bertprobe.metrics"
STATE_PROPERTY = "bertprobe.state"
PROCESS_PROPERTY = "bertprobe.process"  # `worker:pid`: where the test ran, so loads are counted in every process
_STATE_FIELDS = (
    "model_type", "model_class", "head_class", "device", "pooler_kind", "pooler_activation", "loads", "load_seconds", "import_seconds",
    "forward_passes", "budget", "overrides",
)  # fmt: skip
_PER_PROCESS = ("loads", "load_seconds", "import_seconds", "forward_passes")  # counted in each process, summed over them


_PASSES_BEFORE = pytest.StashKey[int]()


def _attach(item: pytest.Item, metrics: dict[str, Any]) -> None:
    item.user_properties.append((METRICS_PROPERTY, json.dumps(metrics, default=str, ensure_ascii=False)))


def annotate(item: pytest.Item, call: pytest.CallInfo[None], session: ProbeSession) -> None:
    """Name the model (and the check, on audit tests) on every test run per checkpoint; keep a check's numbers and the model's state."""
    marker = item.get_closest_marker("bertprobe_audit")
    callspec = getattr(item, "callspec", None)
    if callspec is None or "bert_checkpoint" not in callspec.params:
        return
    checkpoint_id = session.id_of(callspec.params["bert_checkpoint"])
    if call.when == "setup":
        item.user_properties.append((MODEL_PROPERTY, checkpoint_id))
        if marker is not None:
            item.user_properties.append((CHECK_PROPERTY, marker.kwargs.get("check", item.originalname)))
        item.user_properties.append((PROCESS_PROPERTY, f"{process_label()}:{os.getpid()}"))
        item.stash[_PASSES_BEFORE] = cache.passes_run()
    if call.when == "call" and marker is not None:
        passes = cache.passes_run() - item.stash.get(_PASSES_BEFORE, cache.passes_run())
        _attach_outcome_metrics(item, call.excinfo.value if call.excinfo is not None else None, passes)
    funcargs = getattr(item, "funcargs", {})
    checkpoint = funcargs.get("bert_checkpoint")
    if call.when == "call" and checkpoint is not None:
        record = session.record(checkpoint_id)
        # The model the checks read: the checkpoint's, or a conftest's override (its passes are memoised too).
        models = {id(model): model for model in (checkpoint.model, funcargs.get("bert_model")) if model is not None}
        record.forward_passes = sum(cache.forward_passes(model) for model in models.values())
        state = {name: getattr(record, name) for name in _STATE_FIELDS}
        item.user_properties.append((STATE_PROPERTY, json.dumps(state)))


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
    kept = kept_result(item)
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
    if kept_plot(item):
        metrics["plot"] = kept_plot(item)
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        metrics["examples"] = kept["examples"] + (1 if failure is not None else 0)  # the failing example counts
    _attach(item, metrics)


class Collector:
    """Plugin object that folds audit test reports into the session's records (controller side)."""

    def __init__(self, session: ProbeSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record each audit check's outcome and metrics under its model, and each other test's outcome."""
        collect(report, self.session)


def collect(report: pytest.TestReport, session: ProbeSession) -> None:
    """Fold one test report into its model's record; count the tests skipped for want of a checkpoint."""
    properties = dict(report.user_properties)
    if report.skipped and NO_MODEL_REASON in str(report.longrepr):
        session.no_model_skips += 1
    if MODEL_PROPERTY not in properties:
        return
    checkpoint_id = str(properties[MODEL_PROPERTY])
    record = session.record(checkpoint_id)
    record.seconds += report.duration  # every phase: the first test's setup holds the load
    if not (report.when == "call" or report.outcome != "passed"):
        return
    _count_process(record, properties)
    outcome = "error" if report.failed and report.when != "call" else report.outcome
    if CHECK_PROPERTY not in properties:  # the user's own test, run on this checkpoint
        record.tests[outcome] = record.tests.get(outcome, 0) + 1
        return
    metrics = json.loads(properties[METRICS_PROPERTY]) if METRICS_PROPERTY in properties else {}
    if report.skipped and isinstance(report.longrepr, tuple):
        metrics["reason"] = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif report.failed:
        metrics["message"] = _first_lines(report)
    check = str(properties[CHECK_PROPERTY])
    text = str(report.longrepr) if report.failed and report.longrepr is not None else ""
    record.checks.append(CheckResult(without_group(report.nodeid), check, outcome, metrics, text))
    if "head" in metrics and check == "head_relation":
        record.head = str(metrics["head"])
    if "verdict" in metrics and check == "pooler_provenance":
        record.pooler_verdict, record.pooler_evidence = str(metrics["verdict"]), dict(metrics.get("evidence", {}))
    if check == "weights_loaded" and "architecture" in metrics:
        record.architecture_note = metrics["architecture"]
    if check == "weights_trained" and "untrained" in metrics:
        record.untrained_modules = list(metrics["untrained"])


def _count_process(record: ModelRecord, properties: dict[str, Any]) -> None:
    """One more test of `record` in the process that ran it; its state (loads there included) folded into the record."""
    worker, _, pid = str(properties.get(PROCESS_PROPERTY, f"{process_label()}:{os.getpid()}")).rpartition(":")
    process = record.processes.setdefault(f"{worker}:{pid}", {"worker": worker, "pid": int(pid), "tests": 0})
    process["tests"] += 1
    if STATE_PROPERTY not in properties:
        return
    state = json.loads(properties[STATE_PROPERTY])
    process.update({name: state[name] for name in _PER_PROCESS})
    for name, value in state.items():
        if value not in (None, "", 0, []) and name not in _PER_PROCESS:
            setattr(record, name, value)
    for name in _PER_PROCESS:
        setattr(record, name, sum(counted.get(name, 0) for counted in record.processes.values()))


def _first_lines(report: pytest.TestReport, count: int = 3) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line.removeprefix("E   ") for line in text.splitlines()[:count]]
    if lines:
        lines[0] = re.sub(r"^(\w+\.)*\w*(Error|Mismatch|Violation|Exception): ", "", lines[0])  # the message, not its class
    return "\n".join(lines)


