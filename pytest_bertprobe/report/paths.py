"""Every file the run will write is tried before any model loads, so a bad path costs seconds, not the audit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pytest_bertprobe.options import Settings
from pytest_bertprobe.session import ProbeSession

UNWRITTEN = pytest.StashKey[list[str]]()  # one line per report that could not be written at the end of the run


def output_paths(config: pytest.Config, settings: Settings) -> list[tuple[str, Path, bool]]:
    """`(option, path, is_folder)` for each output this run writes."""
    wanted: list[tuple[str, str | None, bool]] = [
        ("--bert-report-json", settings.report_json, False),
        ("--bert-report-markdown", settings.report_markdown, False),
        ("--bert-report-html", settings.report_html, False),
        ("--junitxml", getattr(config.option, "xmlpath", None), False),
    ]
    if settings.snapshot_update and settings.models:
        wanted.append(("--bert-snapshot-dir", str(config.rootpath / settings.snapshot_dir), True))
    return [(option, Path(path).expanduser(), is_folder) for option, path, is_folder in wanted if path]


def check_output_paths(config: pytest.Config, settings: Settings) -> None:
    """Create each output's folder (as pytest does for --junitxml) and prove a file can be written there; the snapshot
    folder a run compares with must be a folder where it exists."""
    snapshots = (config.rootpath / settings.snapshot_dir).expanduser()
    if settings.models and not settings.snapshot_update and snapshots.exists() and not snapshots.is_dir():
        raise pytest.UsageError(f"--bert-snapshot-dir={snapshots}: is a file, not a folder of snapshots; give a folder")
    for option, path, is_folder in output_paths(config, settings):
        folder = path if is_folder else path.parent
        if not is_folder and path.is_dir():
            raise pytest.UsageError(f"{option}={path}: is a folder; give a file path")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as error:
            raise pytest.UsageError(
                f"{option}={path}: cannot be written ({type(error).__name__}: {error.strerror or error}); give a writable path"
            ) from None


def write_reports(config: pytest.Config, session: ProbeSession) -> list[str]:
    """Write every report asked for; one that cannot be written (a full disk, permissions) is a line saying which and
    why, kept for the terminal summary, and the others are still written."""
    from pytest_bertprobe.report import files, html

    settings = session.settings
    unwritten = []
    for option, path, write in (
        ("--bert-report-json", settings.report_json, files.write_json),
        ("--bert-report-markdown", settings.report_markdown, files.write_markdown),
        ("--bert-report-html", settings.report_html, html.write_html),
    ):
        if path:
            try:
                write(session, Path(path))
            except OSError as error:
                unwritten.append(f"{option}={path}: cannot be written ({type(error).__name__}: {error.strerror or error}); no report there")
    config.stash[UNWRITTEN] = unwritten
    return unwritten
