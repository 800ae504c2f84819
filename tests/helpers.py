"""Small assertions shared by this repo's tests."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import loading

ROOT = Path(__file__).resolve().parent.parent


def load_checkpoint(path: Path, dtype: str = "float32") -> loading.Checkpoint:
    """The checkpoint at `path` loaded on the CPU as the audit loads it."""
    return loading.load_checkpoint(loading.resolve_source(str(path)), path.name, device="cpu", dtype=dtype)


def run_pytest(folder: Path, *arguments: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m pytest ARGUMENTS` in a fresh process run in `folder`, importing this checkout's plugin (PYTHONPATH)."""
    variables = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(environment or {})}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *arguments]
    return subprocess.run(command, cwd=folder, env=variables, capture_output=True, text=True, timeout=600, check=False)


def assert_usage_error(result: pytest.RunResult, pattern: str) -> None:
    """Exit code 4, one `ERROR:` line matching `pattern` (fnmatch), and no traceback in the output."""
    __tracebackhide__ = True
    output = result.stdout.lines + result.stderr.lines
    assert result.ret == pytest.ExitCode.USAGE_ERROR, "\n".join(output)
    errors = [line for line in output if line.startswith("ERROR:")]
    assert len(errors) == 1, "\n".join(output)
    result.stderr.fnmatch_lines([f"ERROR: {pattern}"])
    assert not any("Traceback" in line for line in output), "\n".join(output)


def assert_one_failure(result: pytest.RunResult, lines: list[str], **options: Any) -> None:
    """Exactly one test ran, and it failed; the output holds `lines` (fnmatch, in order)."""
    __tracebackhide__ = True
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(lines, **options)


def headless_chromium(profile: Path) -> list[str]:
    """Debian's chromium, headless and offline, with its profile in `profile`; fails where CI is set and it is missing."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must render the HTML report (apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
    ]  # fmt: skip


def edit_json(path: Path, **changes: object) -> None:
    """Update the JSON object in `path` (a config.json, a tokenizer_config.json) with `changes`, in place."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def junit_metrics(report: Path, test: str | None = None) -> dict[str, dict[str, Any]]:
    """Each audit testcase's `bertprobe.metrics`: by testcase name, or for one `test` by checkpoint id."""
    found = {}
    for case in ElementTree.parse(report).iter("testcase"):
        name = case.get("name", "")
        values = [prop.get("value") for prop in case.iter("property") if prop.get("name") == "bertprobe.metrics"]
        if values and (test is None or name.startswith(f"{test}[")):
            found[name[len(test) + 1 : -1] if test else name] = json.loads(str(values[-1]))
    return found


def plant_at_load(monkeypatch: pytest.MonkeyPatch, plant: Callable[[loading.Checkpoint], None]) -> None:
    """Plant a fault in every checkpoint the audit loads (in-process pytester; undone after the test)."""
    real_load = loading.load_checkpoint

    def load_and_plant(*args: Any, **options: Any) -> loading.Checkpoint:
        checkpoint = real_load(*args, **options)
        plant(checkpoint)
        return checkpoint

    monkeypatch.setattr(loading, "load_checkpoint", load_and_plant)


def plant_copy(
    source: Path,
    target: Path,
    *,
    config: dict[str, Any] | None = None,
    weights: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Copy a checkpoint folder, then update its config.json with `config` and edit its weights in place."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    if config:
        settings = json.loads((target / "config.json").read_text(encoding="utf-8"))
        (target / "config.json").write_text(json.dumps({**settings, **config}, indent=2), encoding="utf-8")
    if weights:
        tensors = load_file(target / "model.safetensors")
        weights(tensors)
        save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


SENTENCEPIECE_NAMES = {"albert": "spiece.model", "xlm-roberta": "sentencepiece.bpe.model", "deberta-v2": "spm.model"}
FAIRSEQ = {"xlm-roberta"}  # converted with fairseq's <s> <pad> </s> <unk> before the sentencepiece pieces


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def sentencepiece_model(pieces: list[tuple[str, float, int]]) -> bytes:
    """A sentencepiece ModelProto holding only its pieces (piece, score, type), as protobuf writes it."""
    out = b""
    for piece, score, kind in pieces:
        text = piece.encode()
        inner = _key(1, 2) + _varint(len(text)) + text + _key(2, 5) + struct.pack("<f", score) + _key(3, 0) + _varint(kind)
        out += _key(1, 2) + _varint(len(inner)) + inner
    return out


def write_vocabulary_files(path: Path, arch: str = "bert") -> None:
    """What transformers 4.x saves beside tokenizer.json: vocab.txt, vocab.json + merges.txt, or a sentencepiece model."""
    data = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    model = data["model"]
    if model["type"] == "WordPiece":
        ordered = sorted(model["vocab"], key=model["vocab"].get)
        (path / "vocab.txt").write_text("".join(f"{token}\n" for token in ordered), encoding="utf-8")
    elif model["type"] == "BPE":
        (path / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
        merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
        (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{m}\n" for m in merges), encoding="utf-8")
    else:
        specials = {entry["content"] for entry in data["added_tokens"] if entry["special"]}
        unk = model["vocab"][model["unk_id"]][0]
        pieces = [(piece, score, 2 if piece == unk else 3 if piece in specials else 1) for piece, score in model["vocab"]]
        if arch in FAIRSEQ:
            pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), *(p for p in pieces if p[2] == 1)]
        (path / SENTENCEPIECE_NAMES[arch]).write_bytes(sentencepiece_model(pieces))
