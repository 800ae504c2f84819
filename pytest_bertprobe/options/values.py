"""Option values that need more than a choice list: sizes, seconds, check names, files named by an option, shards.

Each reader returns the parsed value or raises `pytest.UsageError` with one line naming the option and the fix.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from pathlib import Path

import pytest

from pytest_bertprobe.catalogue import NAMES as CHECK_NAMES

CI_SHARD_VARIABLES = ("CI_NODE_INDEX", "CI_NODE_TOTAL")  # GitLab's `parallel:` (1-based), and other CIs that copy it
MAX_MODELS_FILE = 16 << 20  # `--bert-models-from`: a zoo list of a million lines fits; a larger file is a mistake
_SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """`512M`, `8G`, `1.5GiB`, `1000000` (bytes; units are powers of 1024) -> bytes; ValueError when not a size."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    value = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if not 1 <= value < 1 << 62:
        raise ValueError(f"{text!r} is not a size")
    return int(value)


def read_memory(text: str) -> int | None:
    """`--bert-max-memory` in bytes; None when not given."""
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError:
        raise pytest.UsageError(f"--bert-max-memory={text}: give a size such as 8G, 512M or 1.5GiB (powers of 1024)") from None


def read_budget(text: str) -> float | None:
    """`--bert-budget` in seconds, positive; None when not given."""
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise pytest.UsageError(f"--bert-budget={text}: give a positive number of seconds, e.g. --bert-budget=60")
    return seconds


def read_check_names(config: pytest.Config, name: str) -> tuple[str, ...]:
    """`--bert-checks` / `--bert-skip-checks` (else its ini key): catalogue names, comma-separated; one usage line for an unknown one."""
    text = config.getoption(name) or config.getini(name)
    names = tuple(dict.fromkeys(part.strip() for part in re.split(r"[,\s]+", text or "") if part.strip()))
    for check in names:
        if check not in CHECK_NAMES:
            close = difflib.get_close_matches(check, CHECK_NAMES, n=3)
            known = f"did you mean {' or '.join(close)}?" if close else f"the checks are {', '.join(CHECK_NAMES)}"
            raise pytest.UsageError(f"--{name.replace('_', '-')}={text}: no check is named {check!r}; {known}")
    return names


def read_onnx_paths(config: pytest.Config) -> tuple[str, ...]:
    """`--bert-onnx` files (else ini `bert_onnx`, relative to the rootdir), each an existing .onnx file."""
    given = [(f"--bert-onnx={text}", Path(text)) for text in config.getoption("bert_onnx")]
    if not given:
        given = [(f"ini bert_onnx {text}", config.rootpath / text) for text in config.getini("bert_onnx")]
    for named, path in given:
        if not path.is_file():
            raise pytest.UsageError(f"{named}: no such file; give the path of an .onnx export")
        if path.suffix != ".onnx":
            raise pytest.UsageError(f"{named}: not an .onnx file")
    return tuple(dict.fromkeys(str(path.resolve()) for _, path in given))


def read_models_file(name: str | None) -> list[str]:
    """`--bert-models-from`: one checkpoint per line, as `--bert-model` takes it; blank lines and `#` comments skipped."""
    if name is None:
        return []
    fix = "give a text file with one path or hub id per line"
    path = Path(name)
    try:
        found = path.stat()
        # A named pipe or a device would block open() or never end: only a regular file of a sane size is read.
        if not stat.S_ISREG(found.st_mode):
            raise pytest.UsageError(f"--bert-models-from={name}: not a regular file; {fix}")
        if found.st_size > MAX_MODELS_FILE:
            raise pytest.UsageError(f"--bert-models-from={name}: {found.st_size} bytes, more than {MAX_MODELS_FILE} allowed; {fix}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = "no such file" if isinstance(error, FileNotFoundError) else getattr(error, "strerror", None) or str(error)
        raise pytest.UsageError(f"--bert-models-from={name}: {reason}; {fix}") from None
    models = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    models = [model for model in models if model]
    if not models:
        raise pytest.UsageError(f"--bert-models-from={name}: names no checkpoint; give one path or hub id per line")
    return models


def parse_shard(text: str, named: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N, or one usage line naming where it came from (`named`)."""
    found = _SHARD_PATTERN.match(text)
    if found is None:
        raise pytest.UsageError(f"{named}: not K/N; give the shard as K/N, e.g. --bert-shard=2/4 for the second of four")
    index, total = int(found[1]), int(found[2])
    if total < 1 or not 1 <= index <= total:
        raise pytest.UsageError(f"{named}: shard {index} of {total} does not exist; K counts from 1 to N")
    return index, total


def read_shard(config: pytest.Config, has_models: bool) -> dict[str, object]:
    """`--bert-shard`, else ini `bert_shard`, else GitLab's CI_NODE_INDEX/CI_NODE_TOTAL when both are set (and checkpoints are given)."""
    option, ini = config.getoption("bert_shard"), config.getini("bert_shard")
    durations = config.getoption("bert_shard_durations")
    if option:
        shard, origin = parse_shard(option, f"--bert-shard={option}"), "--bert-shard"
    elif ini:
        shard, origin = parse_shard(ini, f"ini bert_shard={ini}"), "ini bert_shard"
    elif has_models and all(os.environ.get(name) for name in CI_SHARD_VARIABLES):
        text = "/".join(os.environ[name] for name in CI_SHARD_VARIABLES)
        shard, origin = parse_shard(text, "CI_NODE_INDEX/CI_NODE_TOTAL=" + text), "CI_NODE_INDEX/CI_NODE_TOTAL"
    else:
        shard, origin = None, ""
    if shard is not None and not has_models:
        raise pytest.UsageError(f"{origin} needs the zoo to shard: pass --bert-model or --bert-models-from")
    if durations is not None and not Path(durations).is_file():
        raise pytest.UsageError(f"--bert-shard-durations={durations}: no such file; give a JSON report of an earlier run")
    return {"shard": shard, "shard_origin": origin, "shard_durations": durations}
