"""Stage 1, options: the command line and ini parsed once into a frozen `Settings`; a bad value is one usage line.

`values` reads the values that need more than a choice list (sizes, seconds, check names, files, shards).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from pytest_bertprobe.compare import Tolerance
from pytest_bertprobe.options.values import (
    read_budget,
    read_check_names,
    read_memory,
    read_models_file,
    read_onnx_paths,
    read_shard,
)
from pytest_bertprobe.tolerances import parse_overrides

DTYPES = ("float32", "bfloat16", "float16")
EMBEDDING_KINDS = ("cls", "pooler", "mean")  # the sentence embeddings the audit computes from a pass
EMBEDDINGS = ("auto", *EMBEDDING_KINDS)
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
SNAPSHOT_DIR = "bertprobe-snapshots"


@dataclass(frozen=True)
class Settings:
    """What the user asked for, validated; shared by loading, fixtures and the audit."""

    models: tuple[str, ...]
    device: str
    dtype: str
    revision: str | None
    audit: bool
    embedding: str = "auto"
    languages: tuple[str, ...] = ()
    trust_remote_code: bool = False
    allow_pickle: bool = False
    allow_untrained: bool = False  # `--bert-allow-untrained`: verdicts on training are reported, not failed
    require_model: bool = False  # `--bert-require-model`: a test that uses the fixtures without a checkpoint is a usage error
    checks: tuple[str, ...] = ()  # `--bert-checks`: the audit runs only these (empty: every check)
    skip_checks: tuple[str, ...] = ()  # `--bert-skip-checks`: the audit leaves these out
    report_json: str | None = None
    report_markdown: str | None = None
    report_html: str | None = None
    audit_only: bool = False
    reference: str | None = None
    snapshot_dir: str = SNAPSHOT_DIR
    snapshot_update: bool = False
    budget: float | None = None
    onnx: tuple[str, ...] = ()  # `--bert-onnx`: exports outside the checkpoint folders, audited against every checkpoint
    hypothesis_profile: str | None = None  # `--hypothesis-profile`: replaces the audit's own profile
    max_memory: int | None = None  # `--bert-max-memory` in bytes; None: what the machine has available
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)  # ini `bert_tolerances`: check -> its overridden row
    shard: tuple[int, int] | None = None  # `--bert-shard=K/N`: audit only the checkpoints of shard K of N
    shard_origin: str = ""  # what set `shard`: --bert-shard, ini bert_shard, or CI_NODE_INDEX/CI_NODE_TOTAL
    shard_durations: str | None = None  # `--bert-shard-durations`: a previous JSON report whose durations price the checkpoints


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
        "--bert-trust-remote-code",
        action="store_true",
        default=False,
        help="allow checkpoints whose config asks for custom code (auto_map) to run it (default: refused)",
    )
    group.addoption(
        "--bert-allow-pickle",
        action="store_true",
        default=False,
        help="allow pickle-only weights (pytorch_model.bin), which can run code when loaded (default: refused)",
    )
    group.addoption(
        "--bert-allow-untrained",
        action="store_true",
        default=None,
        help="report, instead of failing, the checks that judge whether the weights are trained (for tiny random "
        "test checkpoints such as make_tiny_checkpoint's; default: ini bert_allow_untrained, else they fail)",
    )
    group.addoption(
        "--bert-require-model",
        action="store_true",
        default=None,
        help="make a test that uses the bert fixtures without a checkpoint a usage error (exit 4) instead of a skip; "
        "for CI jobs that must audit a model (default: ini bert_require_model, else they skip)",
    )
    group.addoption(
        "--bert-checks",
        default=None,
        metavar="CHECK,...",
        help="run only these checks of the built-in audit, by their names (e.g. padding_invariance,pooler_relation); "
        "your own tests still run (default: ini bert_checks, else every check)",
    )
    group.addoption(
        "--bert-skip-checks",
        default=None,
        metavar="CHECK,...",
        help="leave these checks out of the built-in audit (default: ini bert_skip_checks, else none)",
    )
    group.addoption(
        "--bert-report-json",
        default=None,
        metavar="PATH",
        help="write a machine-readable report of models, pooler verdicts and checks (default: none)",
    )
    group.addoption(
        "--bert-report-markdown",
        default=None,
        metavar="PATH",
        help="append the summary table as Markdown, e.g. to $GITHUB_STEP_SUMMARY (default: none)",
    )
    group.addoption(
        "--bert-report-html",
        default=None,
        metavar="PATH",
        help="write one self-contained HTML page: verdicts, plots of the pooler, coverage, padding and "
        "per-layer differences, environment (needs matplotlib: pip install pytest-bertprobe[html]; default: ini bert_report_html, else none)",
    )
    group.addoption(
        "--bert-audit-only",
        action="store_true",
        default=False,
        help="run only the built-in audit, not the tests in the current folder (default: both)",
    )
    group.addoption(
        "--bert-no-audit",
        action="store_true",
        default=False,
        help="run only your own tests, not the built-in audit (default: the audit runs when a model is given)",
    )
    group.addoption(
        "--bert-embedding",
        default=None,
        metavar="KIND",
        help="sentence embedding the checkpoint's consumers use: auto, cls, pooler or mean "
        "(default: ini bert_embedding, else auto: sentence-transformers' pooling config, else cls)",
    )
    group.addoption(
        "--bert-languages",
        default=None,
        metavar="zh,en,...",
        help="scripts the checkpoint must cover; [UNK] rates past the threshold fail only for these "
        "(default: ini bert_languages, else none: rates are reported, not enforced)",
    )
    group.addoption(
        "--bert-reference",
        default=None,
        metavar="PATH_OR_HUB_ID",
        help="trusted original that every --bert-model must agree with, layer by layer "
        "(default: ini bert_reference, else none)",
    )
    group.addoption(
        "--bert-snapshot-update",
        action="store_true",
        default=False,
        help="write each checkpoint's golden snapshot (probe embeddings, config and tensor hashes) "
        "instead of comparing with it (default: compare where a snapshot exists)",
    )
    group.addoption(
        "--bert-snapshot-dir",
        default=None,
        metavar="DIR",
        help=f"where golden snapshots live, relative to the rootdir (default: ini bert_snapshot_dir, else {SNAPSHOT_DIR})",
    )
    group.addoption(
        "--bert-budget",
        default=None,
        metavar="SECONDS",
        help="time budget per checkpoint for the generated audit examples; example counts scale to it "
        "(default: ini bert_budget, else a fixed 10 examples per check)",
    )
    group.addoption(
        "--bert-onnx",
        action="append",
        default=[],
        metavar="PATH",
        help="ONNX export to audit against each --bert-model under onnxruntime; repeatable "
        "(default: ini bert_onnx, plus onnx/*.onnx and model.onnx inside each checkpoint folder)",
    )
    group.addoption(
        "--bert-models-from",
        default=None,
        metavar="FILE",
        help="read checkpoints to audit from FILE, one path or hub id per line (# comments); added to --bert-model (default: none)",
    )
    group.addoption(
        "--bert-shard",
        default=None,
        metavar="K/N",
        help="audit only shard K of N of the checkpoints (whole checkpoints, balanced by cost, the same in every job) "
        "(default: ini bert_shard, else CI_NODE_INDEX/CI_NODE_TOTAL when both are set, else every checkpoint)",
    )
    group.addoption(
        "--bert-shard-durations",
        default=None,
        metavar="REPORT.json",
        help="price each checkpoint for --bert-shard by its duration in a previous --bert-report-json "
        "(default: by its stored parameter count, read from the weight headers)",
    )
    group.addoption(
        "--bert-max-memory",
        default=None,
        metavar="SIZE",
        help="memory a checkpoint's load may take, e.g. 8G or 512M (powers of 1024); a checkpoint estimated to need more "
        "is refused before it loads (default: ini bert_max_memory, else the memory this machine has available)",
    )
    parser.addini("bert_models", type="linelist", default=[], help="checkpoints to audit, one per line")
    parser.addini("bert_shard", default="", help="default for --bert-shard (K/N)")
    parser.addini("bert_onnx", type="linelist", default=[], help="ONNX exports to audit, one per line (relative to the rootdir)")
    parser.addini("bert_embedding", default="auto", help="default for --bert-embedding")
    parser.addini("bert_languages", default="", help="default for --bert-languages")
    parser.addini("bert_reference", default="", help="default for --bert-reference")
    parser.addini("bert_snapshot_dir", default=SNAPSHOT_DIR, help="default for --bert-snapshot-dir")
    parser.addini("bert_report_html", default="", help="default for --bert-report-html")
    parser.addini("bert_budget", default="", help="default for --bert-budget (seconds)")
    parser.addini("bert_max_memory", default="", help="default for --bert-max-memory")
    parser.addini("bert_allow_untrained", type="bool", default=False, help="default for --bert-allow-untrained")
    parser.addini("bert_require_model", type="bool", default=False, help="default for --bert-require-model")
    parser.addini("bert_checks", default="", help="default for --bert-checks (comma-separated check names)")
    parser.addini("bert_skip_checks", default="", help="default for --bert-skip-checks (comma-separated check names)")
    parser.addini(
        "bert_tolerances",
        type="linelist",
        default=[],
        help="tolerance overrides, one 'CHECK = ATOL RTOL' per line (e.g. padding_invariance = 1e-3 1e-3)",
    )


def read_settings(config: pytest.Config) -> Settings:
    """Combine command line and ini into `Settings` (the command line wins); one usage line if invalid."""
    models = [*config.getoption("bert_model"), *read_models_file(config.getoption("bert_models_from"))] or config.getini("bert_models")
    device, dtype = config.getoption("bert_device"), config.getoption("bert_dtype")
    # Checked here rather than by argparse, whose errors take two lines and print the whole usage.
    if not _DEVICE_PATTERN.match(device):
        raise pytest.UsageError(f"--bert-device={device}: not a device; use auto, cpu, cuda or cuda:N")
    if dtype not in DTYPES:
        raise pytest.UsageError(f"--bert-dtype={dtype}: not a dtype; use one of {', '.join(DTYPES)}")
    embedding = config.getoption("bert_embedding") or config.getini("bert_embedding")
    if embedding not in EMBEDDINGS:
        raise pytest.UsageError(f"--bert-embedding={embedding}: use one of {', '.join(EMBEDDINGS)}")
    languages_text = config.getoption("bert_languages") or config.getini("bert_languages")
    languages = tuple(code.strip().lower() for code in languages_text.split(",") if code.strip())
    if config.getoption("bert_audit_only") and config.getoption("bert_no_audit"):
        raise pytest.UsageError("--bert-audit-only and --bert-no-audit exclude each other; pick one")
    budget = read_budget(config.getoption("bert_budget") or config.getini("bert_budget"))
    try:
        tolerances = parse_overrides(config.getini("bert_tolerances"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    return Settings(
        models=tuple(dict.fromkeys(str(model) for model in models)),
        device=device,
        dtype=dtype,
        revision=config.getoption("bert_revision"),
        audit=not config.getoption("bert_no_audit"),
        embedding=embedding,
        languages=languages,
        trust_remote_code=config.getoption("bert_trust_remote_code"),
        allow_pickle=config.getoption("bert_allow_pickle"),
        allow_untrained=bool(config.getoption("bert_allow_untrained") or config.getini("bert_allow_untrained")),
        require_model=bool(config.getoption("bert_require_model") or config.getini("bert_require_model")),
        checks=read_check_names(config, "bert_checks"),
        skip_checks=read_check_names(config, "bert_skip_checks"),
        report_json=config.getoption("bert_report_json"),
        report_markdown=config.getoption("bert_report_markdown"),
        report_html=config.getoption("bert_report_html") or config.getini("bert_report_html") or None,
        audit_only=config.getoption("bert_audit_only"),
        reference=config.getoption("bert_reference") or config.getini("bert_reference") or None,
        snapshot_dir=config.getoption("bert_snapshot_dir") or config.getini("bert_snapshot_dir") or SNAPSHOT_DIR,
        snapshot_update=config.getoption("bert_snapshot_update"),
        budget=budget,
        onnx=read_onnx_paths(config),
        hypothesis_profile=config.getoption("hypothesis_profile", None),
        tolerances=tolerances,
        **read_shard(config, bool(models)),
        max_memory=read_memory(config.getoption("bert_max_memory") or config.getini("bert_max_memory")),
    )

