"""Hostile and broken input: exit 4 and one line for what cannot be audited, a named failure for what loads broken."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import assert_usage_error, plant_at_load, plant_copy

Factory = Callable[..., Path]


@pytest.fixture
def bert_copy(tiny_checkpoint: Factory, tmp_path: Path) -> Path:
    """A private copy of the tiny BERT checkpoint, free to break."""
    return Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path / "bert-copy"))


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, **changes}), encoding="utf-8")


def _literal(text: str) -> str:
    """`text` as an fnmatch pattern that matches it exactly (brackets are classes there)."""
    return text.replace("[", "[[]")


def _write_safetensors(path: Path, header: object, data: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)


# Preflight: files that are not regular files are refused before any open.


def _make_directory(weights: Path) -> None:
    weights.unlink()
    weights.mkdir()


def _make_dangling(weights: Path) -> None:
    weights.unlink()
    weights.symlink_to(weights.parent / "gone.safetensors")


def _make_loop(weights: Path) -> None:
    weights.unlink()
    weights.symlink_to(weights)


def _make_fifo(weights: Path) -> None:
    weights.unlink()
    os.mkfifo(weights)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_make_directory, "is a folder, not a file"),
        (_make_dangling, "is a symlink that leads nowhere (No such file or directory)"),
        (_make_loop, "is a symlink that leads nowhere (Too many levels of symbolic links)"),
        (_make_fifo, "is a named pipe (FIFO), not a regular file"),
    ],
    ids=["directory", "dangling-symlink", "symlink-loop", "fifo"],
)
def test_weights_that_are_not_a_regular_file(
    pytester: pytest.Pytester, bert_copy: Path, damage: Callable[[Path], None], problem: str
) -> None:
    damage(bert_copy / "model.safetensors")
    started = time.perf_counter()
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=60)
    assert_usage_error(result, f"--bert-model '{bert_copy}': model.safetensors {problem}; give a regular file *")
    assert time.perf_counter() - started < 30  # the FIFO is never opened, so nothing blocks


def test_tokenizer_file_that_is_a_fifo_is_refused(pytester: pytest.Pytester, bert_copy: Path) -> None:
    (bert_copy / "tokenizer.json").unlink()
    os.mkfifo(bert_copy / "tokenizer.json")
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", timeout=60)
    assert_usage_error(result, "*: tokenizer.json is a named pipe (FIFO), not a regular file; *")


def test_unreadable_weights(pytester: pytest.Pytester, bert_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads any file whatever its mode, so the denial is planted where the preflight opens the file.
    weights = bert_copy / "model.safetensors"
    real_open = os.open

    def deny(path: Any, flags: int, *args: Any) -> int:
        if Path(path) == weights:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), "*: model.safetensors cannot be read (Permission denied); *")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ([1, 2, 3], "header is not a JSON object of tensors"),
        ({"w": {"dtype": "F32", "shape": [2]}}, "tensor 'w' has no valid data_offsets (None)"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "tensor 'w': data_offsets span 4 bytes, shape [2] x F32 needs 8"),
        ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, "tensor 'w' has no valid shape ('2')"),
        ({"__metadata__": [1], "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, "__metadata__ is not a map of strings"),
    ],
    ids=["array", "no-offsets", "offsets-vs-shape", "bad-shape", "bad-metadata"],
)
def test_malformed_safetensors_header(pytester: pytest.Pytester, bert_copy: Path, header: object, problem: str) -> None:
    _write_safetensors(bert_copy / "model.safetensors", header, b"\0" * 8)
    assert_usage_error(
        pytester.runpytest(f"--bert-model={bert_copy}"), f"*: model.safetensors is corrupt ({_literal(problem)}); re-download or re-save the checkpoint"
    )


def test_config_nested_past_any_need(pytester: pytest.Pytester, bert_copy: Path) -> None:
    config = json.loads((bert_copy / "config.json").read_text(encoding="utf-8"))
    text = json.dumps(config)[:-1] + ', "deep": ' + "[" * 5000 + "]" * 5000 + "}"
    (bert_copy / "config.json").write_text(text, encoding="utf-8")
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), "*: config.json nests deeper than 64 levels, which no config needs")


# Load failures: whatever transformers raises becomes one line naming what failed.


@pytest.mark.parametrize(
    ("change", "line"),
    [
        # transformers 5 refuses it while reading config.json, 4.x while building the layers.
        ({"num_hidden_layers": "2"}, "* could not be loaded (*Error: *); fix the file or re-save the checkpoint"),
        ({"hidden_act": "no-such-activation"}, "the model (BertModel *) could not be loaded (KeyError: 'no-such-activation'); *"),
        ({"architectures": ["GPT2Model"]}, "the model (GPT2Model *) could not be loaded (AttributeError: *); *"),
        ({"pad_token_id": 100000}, "the model (BertModel *) could not be loaded (*Padding_idx must be within num_embeddings*"),
        ({"intermediate_size": 40}, "the model (BertModel *) could not be loaded (RuntimeError: *); *"),
    ],
    ids=["layers-as-string", "unknown-activation", "foreign-architecture", "pad-outside-vocabulary", "weights-do-not-fit"],
)
def test_config_that_cannot_build_the_model(pytester: pytest.Pytester, bert_copy: Path, change: dict[str, Any], line: str) -> None:
    _edit_config(bert_copy, **change)
    result = pytester.runpytest(f"--bert-model={bert_copy}")
    assert_usage_error(result, f"--bert-model '{bert_copy}': {line}")
    result.assert_outcomes()  # no errored tests: the run stopped at the load


def test_invalid_tokenizer_json(pytester: pytest.Pytester, bert_copy: Path) -> None:
    (bert_copy / "tokenizer.json").write_text('{"version": "1.0", "model": 5}', encoding="utf-8")
    result = pytester.runpytest(f"--bert-model={bert_copy}")
    assert_usage_error(result, "*: the tokenizer (*) could not be loaded (*); fix the file or re-save the checkpoint")
    result.assert_outcomes()


def test_safetensors_offsets_that_disagree_with_the_shape(pytester: pytest.Pytester, bert_copy: Path) -> None:
    weights = bert_copy / "model.safetensors"
    content = weights.read_bytes()
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + length])
    name = next(key for key in header if key != "__metadata__")
    header[name]["shape"] = [header[name]["shape"][0] + 1, *header[name]["shape"][1:]]
    _write_safetensors(weights, header, content[8 + length :])
    assert_usage_error(pytester.runpytest(f"--bert-model={bert_copy}"), f"*: model.safetensors is corrupt (tensor {name!r}: data_offsets span *")


def test_load_failure_under_xdist_is_one_line_and_exit_4(pytester: pytest.Pytester, bert_copy: Path) -> None:
    _edit_config(bert_copy, hidden_act="no-such-activation")
    result = pytester.runpytest_subprocess(f"--bert-model={bert_copy}", "-n", "2", "-p", "xdist", timeout=120)
    assert_usage_error(result, "*: the model (BertModel *) could not be loaded (KeyError: 'no-such-activation'); *")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# Loadable but broken: the check that owns the crashed input fails once, the others skip pointing at it.


def _skips_pointing_at(result: pytest.RunResult, owner: str) -> int:
    """How many tests skipped saying `owner` reports their crashed pass (`-rs` folds equal reasons: `SKIPPED [N]`)."""
    counts = [re.match(r"SKIPPED \[(\d+)\]", line) for line in result.stdout.lines if f"{owner} reports it" in line]
    return sum(int(count.group(1)) for count in counts if count)


def test_position_table_of_zero_rows_fails_only_max_length(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    import torch

    def empty_positions(tensors: dict[str, Any]) -> None:
        tensors["embeddings.position_embeddings.weight"] = torch.zeros(0, tensors["embeddings.position_embeddings.weight"].shape[1])

    broken = plant_copy(tiny_checkpoint("bert"), tmp_path / "no-positions", config={"max_position_embeddings": 0}, weights=empty_positions)
    result = pytester.runpytest(f"--bert-model={broken}", "-rfs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED *test_max_length_fits_the_position_table*"])
    assert "Traceback" not in result.stdout.str() and "IndexError: index out of range" not in "\n".join(
        line for line in result.stdout.lines if line.startswith("E ")
    )
    assert _skips_pointing_at(result, "tokenizer_max_length") >= 10


def test_vocabulary_of_one_row_fails_only_ids_in_embeddings(pytester: pytest.Pytester, tiny_checkpoint: Factory, tmp_path: Path) -> None:
    def one_row(tensors: dict[str, Any]) -> None:
        tensors["embeddings.word_embeddings.weight"] = tensors["embeddings.word_embeddings.weight"][:1].clone()

    broken = plant_copy(tiny_checkpoint("bert"), tmp_path / "one-word", config={"vocab_size": 1, "pad_token_id": 0}, weights=one_row)
    result = pytester.runpytest(f"--bert-model={broken}", "-rfs")
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines(["FAILED *test_every_token_id_has_an_embedding_row*"])
    assert _skips_pointing_at(result, "tokenizer_ids_in_embeddings") >= 10


def _crash_where(breaks: Callable[[int], bool], message: str) -> Callable[[Any], None]:
    """A planter: the loaded model's forward raises `message` on inputs whose width `breaks`."""

    def plant(checkpoint: Any) -> None:
        model = checkpoint.model
        forward = model.forward

        @functools.wraps(forward)
        def crashing(*args: Any, **kwargs: Any) -> Any:
            if breaks(int(kwargs["input_ids"].shape[-1])):
                raise RuntimeError(message)
            return forward(*args, **kwargs)

        model.forward = crashing

    return plant


_crash_on_short_inputs = _crash_where(lambda width: width <= 3, "planted: kernel needs 4 tokens")


def test_model_crashing_at_the_maximum_length_fails_only_max_length(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_at_load(monkeypatch, _crash_where(lambda width: width > 32, "planted: kernel takes 32 tokens"))
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-rfs")
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines([
        "E   ContractViolation: A forward pass at the tokenizer's maximum length fails: RuntimeError: planted: kernel takes 32 tokens",
        "FAILED *test_max_length_fits_the_position_table*",
    ])  # fmt: skip
    assert _skips_pointing_at(result, "tokenizer_max_length") >= 3


def test_model_crashing_on_a_short_input_is_reported_once(
    pytester: pytest.Pytester, tiny_checkpoint: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant_at_load(monkeypatch, _crash_on_short_inputs)
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-rfs", "--bert-report-json=report.json")
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()
    result.stdout.fnmatch_lines([
        "E   AssertionError: Forward pass of BertModel raised RuntimeError: planted: kernel needs 4 tokens",
        "E   Input: input_ids of shape (1, 2) (1 row(s), 2 tokens wide)",
        "E   Diagnosis: the input fits the position, token and type tables, so the model itself breaks on it",
        "E   Failing batch (1 sentence): ['']",
        "FAILED *test_every_output_is_finite*",
    ])  # fmt: skip
    assert _skips_pointing_at(result, "outputs_finite") >= 5
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    failed = [check for check in report["checks"] if check["outcome"] == "failed"]
    assert failed[0]["metrics"]["owner"] == "outputs_finite" and failed[0]["metrics"]["input_shape"] == [1, 2]


def test_healthy_checkpoint_has_no_forward_skips(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "-rs")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "reports it" not in result.stdout.str()


# Output paths: tried before any model loads.


@pytest.mark.parametrize("option", ["--bert-report-json", "--bert-report-markdown", "--junitxml"])
def test_unwritable_output_path_stops_before_loading(pytester: pytest.Pytester, tiny_checkpoint: Factory, option: str) -> None:
    (pytester.path / "a-file").write_text("not a folder", encoding="utf-8")
    target = pytester.path / "a-file" / "report.out"
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", f"{option}={target}")
    assert_usage_error(result, f"{option}={target}: cannot be written (*); give a writable path")


def test_output_path_that_is_a_folder(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    (pytester.path / "out").mkdir()
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", f"--bert-report-json={pytester.path / 'out'}")
    assert_usage_error(result, "--bert-report-json=*out: is a folder; give a file path")


def test_missing_report_folders_are_created(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    result = pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}", "--bert-no-audit", "--bert-report-json=deep/er/report.json")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert json.loads((pytester.path / "deep" / "er" / "report.json").read_text(encoding="utf-8"))["version"] == 1


# Atomic writes: a kill at the write leaves the previous complete file.

KILL_AT_REPLACE = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from pytest_bertprobe import atomic, report_files, snapshot
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
    from pytest_bertprobe import atomic, report_files
    from pytest_bertprobe.options import Settings
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
    assert sorted(path.name for path in (pytester.path / "bertprobe-snapshots").iterdir()) == ["one-tiny.json", "two-tiny.json"]
    swapped = pytester.runpytest(f"--bert-model={second}", f"--bert-model={first}", "-k", "golden_snapshot", "-v")
    swapped.assert_outcomes(passed=2)  # each compares with its own snapshot (the weights differ: a swap would fail)
    for checkpoint_id in ("one-tiny", "two-tiny"):
        swapped.stdout.fnmatch_lines([f"*golden_snapshot[[]{checkpoint_id}[]] PASSED*"])


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
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"E   *Snapshot {path} is malformed: 'tensor_hashes' is missing", "E   Hint: *--bert-snapshot-update"])
    assert "KeyError" not in result.stdout.str()


# Tolerances and the hub.


@pytest.mark.parametrize("values", ["nan 1e-4", "1e-4 -1", "inf 0"])
def test_tolerances_must_be_finite_and_non_negative(pytester: pytest.Pytester, tiny_checkpoint: Factory, values: str) -> None:
    pytester.makeini(f"[pytest]\nbert_tolerances =\n    padding_invariance = {values}\n")
    assert_usage_error(
        pytester.runpytest(f"--bert-model={tiny_checkpoint('bert')}"),
        f"bert_tolerances line 'padding_invariance = {values}': ATOL and RTOL must be finite and non-negative",
    )


def _unreachable_hub(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Online mode (no offline variables) with a hub that refuses connections, and `home` as the cache."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(home))


def test_unreachable_hub_fails_fast_and_quietly(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _unreachable_hub(monkeypatch, tmp_path / "hf-home")  # an empty cache: nothing to fall back on
    started = time.perf_counter()
    result = pytester.runpytest_subprocess("--bert-model=bertprobe-tests/does-not-exist", timeout=60)
    assert time.perf_counter() - started < 15
    assert_usage_error(
        result,
        "--bert-model 'bertprobe-tests/does-not-exist': no such local folder, and the hub id could not be fetched "
        "(http://127.0.0.1:9 unreachable: *); check the path, or run where the Hugging Face Hub is reachable",
    )
    assert "Retry" not in result.stdout.str() + result.stderr.str()


def test_unreachable_hub_loads_a_cached_checkpoint_without_retries(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Factory, tmp_path: Path
) -> None:
    commit = "0" * 40
    repo = tmp_path / "hf-home" / "hub" / "models--bertprobe-tests--cached"
    shutil.copytree(tiny_checkpoint("bert"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    _unreachable_hub(monkeypatch, tmp_path / "hf-home")
    started = time.perf_counter()
    result = pytester.runpytest_subprocess("--bert-model=bertprobe-tests/cached", "-k", "pooler_is_dense", timeout=60)
    result.assert_outcomes(passed=1)
    assert time.perf_counter() - started < 60
    assert "Retry" not in result.stdout.str() + result.stderr.str()
