"""`bertprobe-report`, the console script: `merge OUT.json SHARD.json ...` writes one report of a sharded zoo.

Exit status: 0 when every checkpoint passed, 1 when one failed (as pytest's), 4 for bad input: a missing or
unreadable shard, shards that do not make one zoo, a bad option (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest

from pytest_bertprobe.atomic import append_text_atomic, write_text_atomic
from pytest_bertprobe.errors import ReportError
from pytest_bertprobe.report import files, html, junit, merge

PROG = "bertprobe-report"
USAGE_ERROR = 4  # pytest's ExitCode.USAGE_ERROR, as the plugin's own bad input


class _Parser(argparse.ArgumentParser):
    """argparse with one line and exit 4 for a usage error (argparse prints the whole usage and exits 2)."""

    def error(self, message: str) -> NoReturn:
        raise ReportError(f"{message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Reports of pytest-bertprobe runs: merge the shards of a zoo into one verdict.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    merging = commands.add_parser(
        "merge",
        help="merge the JSON reports of --bert-shard runs into one report of the zoo",
        description="Merge the JSON reports (--bert-report-json) of every --bert-shard=K/N run into one report of the "
        "zoo, in the same schema. A missing shard, a shard given twice, or shards of other plugin versions are refused.",
    )
    merging.add_argument("out", metavar="OUT.json", help="the merged JSON report to write")
    merging.add_argument("shards", metavar="SHARD.json", nargs="+", help="each shard's JSON report")
    merging.add_argument("--html", metavar="OUT.html", help="also write the HTML page: a zoo overview, then each checkpoint")
    merging.add_argument("--markdown", metavar="OUT.md", help="also append the summary table as Markdown (e.g. $GITHUB_STEP_SUMMARY)")
    merging.add_argument("--junit", metavar="OUT.xml", help="also write JUnit XML, one testcase per check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `bertprobe-report`; the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.html:
            html.require_matplotlib()  # before the merge: the page draws its plots
        merged = merge.merge([Path(name) for name in args.shards])
        _write(merged, args)
    except (ReportError, pytest.UsageError, OSError) as error:  # OSError: an output that cannot be written
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    for line in _summary(merged, args):
        print(line)
    return 1 if any(model["outcome"] == "failed" for model in merged["models"]) else 0


def _write(merged: dict, args: argparse.Namespace) -> None:
    write_text_atomic(Path(args.out), json.dumps(merged, indent=2, ensure_ascii=False, default=str) + "\n")
    session = merge.session_of(merged) if args.html or args.markdown else None
    if args.html and session is not None:
        write_text_atomic(Path(args.html), html.build_html(session, merged["shards"], merged["mismatches"], merged["environment"]))
    if args.markdown and session is not None:
        append_text_atomic(Path(args.markdown), files.build_markdown(session) + _markdown_shards(merged))
    if args.junit:
        write_text_atomic(Path(args.junit), junit.build_junit(merged))


def _markdown_shards(merged: dict) -> str:
    shards = ", ".join(shard["shard"] or Path(shard["file"]).name for shard in merged["shards"])
    lines = ["", f"Merged from {len(merged['shards'])} report(s): {shards}."]
    lines += [f"- environment differs: {mismatch}" for mismatch in merged["mismatches"]]
    return "\n".join(lines) + "\n"


def _summary(merged: dict, args: argparse.Namespace) -> list[str]:
    models = merged["models"]
    failed = [model["id"] for model in models if model["outcome"] == "failed"]
    written = [path for path in (args.out, args.html, args.markdown, args.junit) if path]
    lines = [
        f"{PROG}: merged {len(merged['shards'])} report(s): {len(models)} checkpoints, {len(failed)} failed"
        + (f" ({', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''})" if failed else ""),
        f"{PROG}: wrote {', '.join(written)}",
    ]
    return lines + [f"{PROG}: warning: the shards' environment differs: {mismatch}" for mismatch in merged["mismatches"]]


if __name__ == "__main__":
    sys.exit(main())
