"""Command-line and ini options, parsed once into `Settings`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

DTYPES = ("float32", "bfloat16", "float16")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Settings:
    """What the user asked for, validated; shared by loading, fixtures and the audit."""

    models: tuple[str, ...]
    device: str
    dtype: str
    revision: str | None
    audit: bool


def add_options(parser: pytest.Parser) -> None:
    """Register the `bertprobe` option group and its ini keys."""
    group = parser.getgroup("bertprobe", "bertprobe: audit BERT-family checkpoints")
    group.addoption(
        "--bert-model",
        action="append",
        default=[],
        metavar="PATH_OR_HUB_ID",
        help="checkpoint to audit (local folder or hub id); repeatable; default: ini bert_models",
    )
    group.addoption(
        "--bert-device",
        default="auto",
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N (default: auto, cuda when available)",
    )
    group.addoption(
        "--bert-dtype",
        default="float32",
        metavar="DTYPE",
        help=f"{', '.join(DTYPES)} (default: float32)",
    )
    group.addoption(
        "--bert-revision",
        default=None,
        metavar="REV",
        help="hub revision (branch, tag or commit) for hub ids (default: the hub's default branch)",
    )
    group.addoption(
        "--bert-no-audit",
        action="store_true",
        default=False,
        help="run only your own tests, not the built-in audit (default: the audit runs when a model is given)",
    )
    parser.addini("bert_models", type="linelist", default=[], help="checkpoints to audit, one per line")


def read_settings(config: pytest.Config) -> Settings:
    """Combine command line and ini into `Settings` (the command line wins); one usage line if invalid."""
    models = config.getoption("bert_model") or config.getini("bert_models")
    device, dtype = config.getoption("bert_device"), config.getoption("bert_dtype")
    # Checked here rather than by argparse, whose errors take two lines and print the whole usage.
    if not _DEVICE_PATTERN.match(device):
        raise pytest.UsageError(f"--bert-device={device}: not a device; use auto, cpu, cuda or cuda:N")
    if dtype not in DTYPES:
        raise pytest.UsageError(f"--bert-dtype={dtype}: not a dtype; use one of {', '.join(DTYPES)}")
    return Settings(
        models=tuple(dict.fromkeys(str(model) for model in models)),
        device=device,
        dtype=dtype,
        revision=config.getoption("bert_revision"),
        audit=not config.getoption("bert_no_audit"),
    )
