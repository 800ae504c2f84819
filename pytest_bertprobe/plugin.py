"""pytest-bertprobe's hooks and options. Heavy imports (torch, transformers) happen inside fixtures."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from pytest_bertprobe import fixtures, options, tolerances
from pytest_bertprobe.artefacts import onnx_export
from pytest_bertprobe.audit import selection
from pytest_bertprobe.checkpoint import preflight, shard, source, workers
from pytest_bertprobe.checkpoint.load_failure import LoadFailureGuard
from pytest_bertprobe.checks.tokenizer import coverage
from pytest_bertprobe.errors import CheckpointError
from pytest_bertprobe.fixtures import (  # noqa: F401 - fixtures are found by their presence here
    bert_anatomy,
    bert_checkpoint,
    bert_head_model,
    bert_model,
    bert_onnx_export,
    bert_reference,
    bert_seed_inputs,
    bert_tokenizer,
)
from pytest_bertprobe.forward import cache
from pytest_bertprobe.report import html, paths, properties, terminal
from pytest_bertprobe.session import SESSION_KEY, ProbeSession, probe_session

AUDIT_DIR = Path(__file__).parent / "audit"
AUDIT_PREFIX = "bertprobe_audit_"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the `bertprobe` option group."""
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Validate every `--bert-model` (one usage line if wrong) and queue the built-in audit."""
    config.addinivalue_line("markers", "bertprobe_audit(check): a check of the built-in checkpoint audit")
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist loadgroup (set per checkpoint by bertprobe)")
    settings = options.read_settings(config)
    workers.schedule_by_checkpoint(config, bool(settings.models))
    if not hasattr(config, "workerinput"):  # the controller writes every output; workers need not race it
        paths.check_output_paths(config, settings)
    if settings.report_html:
        html.require_matplotlib()
    if settings.models:
        cache.wait_passively()  # before anything imports torch
    try:
        coverage.validate_languages(settings.languages)
        plan = None
        if settings.shard is not None:
            sources, ids, plan = shard.select(settings, workers.handed_plan(config))
        else:
            sources = source.distinct_sources([source.resolve_source(spec, settings.revision) for spec in settings.models])
            ids = source.checkpoint_ids(sources)
        reference = source.resolve_source(settings.reference, settings.revision, "--bert-reference") if settings.reference else None
        for checked in [*sources, *([reference] if reference else [])]:
            preflight.check_source(checked, trust_remote_code=settings.trust_remote_code, allow_pickle=settings.allow_pickle)
        preflight.check_exports([Path(path) for path in settings.onnx], "--bert-onnx")
        if sources:
            preflight.check_device(settings.device)
    except (CheckpointError, ValueError) as error:
        raise pytest.UsageError(str(error)) from None
    if reference is not None and not sources and plan is None:
        raise pytest.UsageError("--bert-reference needs a checkpoint to compare: pass --bert-model=PATH_OR_HUB_ID")
    if settings.onnx and not sources and plan is None:
        raise pytest.UsageError("--bert-onnx needs the checkpoint it was exported from: pass --bert-model=PATH_OR_HUB_ID")
    session = ProbeSession(settings, sources, ids, reference=reference, shard=plan)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(properties.Collector(session), "bertprobe-collector")
    config.pluginmanager.register(workers.CheckpointScheduling(plan.as_json() if plan else None), "bertprobe-workers")
    config.pluginmanager.register(LoadFailureGuard(), "bertprobe-load-failure")
    if settings.audit_only and not sources and plan is None:
        raise pytest.UsageError("--bert-audit-only needs a checkpoint: pass --bert-model=PATH_OR_HUB_ID")
    if settings.audit_only:
        config.args[:] = [str(AUDIT_DIR)]
    elif sources and settings.audit and str(AUDIT_DIR) not in config.args:
        config.args.append(str(AUDIT_DIR))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Collect the audit modules, whatever the user's `python_files` says."""
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest's own collector takes it
    if file_path.parent == AUDIT_DIR and file_path.name.startswith(AUDIT_PREFIX) and file_path.suffix == ".py":
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Let `-k CHECK_NAME` select an audit test by the name the reports give its check."""
    selection.add_check_keyword(item)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a bert fixture once per `--bert-model`."""
    session = probe_session(metafunc.config)
    if "bert_checkpoint" in metafunc.fixturenames and session.sources:
        # The xdist group rides on the parameter, so every item carries it from birth, before any hook reads marks.
        params = [pytest.param(source, id=name, marks=workers.group_mark(name)) for source, name in zip(session.sources, session.ids)]
        metafunc.parametrize("bert_checkpoint", params, indirect=True, scope="session")
        if "bert_onnx_export" in metafunc.fixturenames:
            # Function-scoped, unlike the checkpoint: tests stay grouped by checkpoint; pairs that do not belong are deselected.
            exports, labels = onnx_export.export_params(session.sources, session.settings.onnx)
            metafunc.parametrize("bert_onnx_export", exports, ids=labels)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Run each test (setup, call, teardown) with the ini's `bert_tolerances` as the tolerance table."""
    with tolerances.overriding(probe_session(item.config).settings.tolerances):
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first test sets anything up: a missing checkpoint under --bert-require-model, or an override of
    the wrong scope, ends the run with one usage line."""
    fixtures.guard_run(item)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest) -> Generator[None, object, object]:
    """A conftest's `bert_model` / `bert_head_model`: one usage line with the fix when the checks cannot read it."""
    value = yield
    fixtures.adopt_override(fixturedef, request, value)
    return value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Put the model, the check and its numbers on each audit test's report."""
    properties.annotate(item, call, probe_session(item.config))
    report = yield
    properties.shorten_failure(item, call, report)
    if probe_session(item.config).settings.report_html:
        html.attach_extras(item, report)
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the checks --bert-checks leaves out, ONNX tests that pair a checkpoint with another checkpoint's
    export, and the audit of a shard the plan left empty."""
    session = probe_session(config)
    unselected = set(selection.unselected(items, session.settings))  # --bert-checks, --bert-skip-checks
    foreign = [item for item in items if item in unselected or not _export_belongs(item, session)]
    if session.shard is not None and not session.sources:  # a shard the plan left empty audits nothing
        foreign += [item for item in items if item.path.parent == AUDIT_DIR]
    if foreign:
        config.hook.pytest_deselected(items=foreign)
        items[:] = [item for item in items if item not in foreign]


def _export_belongs(item: pytest.Item, session: ProbeSession) -> bool:
    """False for an ONNX test pairing a checkpoint with another checkpoint's export."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "bert_onnx_export" not in params or "bert_checkpoint" not in params:
        return True
    return onnx_export.belongs(params["bert_checkpoint"], params["bert_onnx_export"], session.settings.onnx)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the report files once, on the controller; one that cannot be written makes the exit status 4."""
    if hasattr(session.config, "workerinput"):
        return
    probe = probe_session(session.config)
    if probe.shard is not None and not probe.sources and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # a shard the plan left empty (more shards than checkpoints) is not a failure
    unwritten = paths.write_reports(session.config, probe)
    if unwritten and session.exitstatus not in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR  # as for an output path found unwritable before the run


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the checkpoints under audit and how they run."""
    distributed = bool(getattr(config.option, "tx", None))  # xdist's workers, not only a --dist word
    return terminal.header_lines(probe_session(config), str(getattr(config.option, "dist", "no")) if distributed else "no")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Add the `bertprobe` section: one row per checkpoint; then a line per report that could not be written."""
    terminal.write_summary(terminalreporter, probe_session(config))
    for line in config.stash.get(paths.UNWRITTEN, []):
        terminalreporter.write_line(f"ERROR: {line}", red=True, bold=True)
