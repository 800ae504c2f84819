"""Scale: the audit's cost at three model sizes, every check on, so that its growth with the model is visible.

The real all-MiniLM-L6-v2 (6 layers, hidden 384, 23M parameters), and random-weight checkpoints shaped like
bge-base-zh (12 layers, hidden 768, 102M) and the seed's bge-large-zh (24 layers, hidden 1024, 16 heads,
intermediate 4096, 326M parameters, 1.3 GB of float32 safetensors) with a 21128-entry Chinese WordPiece
vocabulary, built once into --folder. The random ones run with `--bert-allow-untrained --bert-embedding=cls`
(bge-*-zh declare CLS pooling): their training verdicts are reported, not failed, and the behavioural checks
run as on a trained copy. Each audit runs from an empty folder as a user runs it; printed: wall seconds,
forward passes, seconds per pass, peak RSS, and the passes and examples of each check of the largest. The
bound is on the bge-large-zh-shaped audit's wall time. Usage: `python benchmarks/scale.py [--folder DIR]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import common

BOUND_SECONDS = 30.0
RANDOM = ("--bert-allow-untrained", "--bert-embedding=cls")


def audit(folder: Path, extra: tuple[str, ...], budget: str | None) -> tuple[common.Run, dict]:
    """One audit of `folder` with a JSON report; the run and the report's model entry."""
    with tempfile.TemporaryDirectory(prefix="bertprobe-scale-") as scratch:
        report_file = Path(scratch) / "report.json"
        options = [f"--bert-report-json={report_file}", *extra, *([f"--bert-budget={budget}"] if budget else [])]
        result = common.run_audit([folder], *options)
        return result, json.loads(report_file.read_text(encoding="utf-8"))


def main() -> None:
    """Build the random checkpoints if needed, audit each size once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bertprobe-scale-checkpoints"))
    parser.add_argument("--budget", default=None, help="also pass --bert-budget=SECONDS")
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    folder = Path(args.folder)
    sizes = {
        "all-MiniLM-L6-v2": (Path(common.minilm_path()), ()),
        "bge-base-zh-shaped": (common.build_random_bert(folder / "bge-base-zh-shaped", **common.BGE_BASE_ZH), RANDOM),
        "bge-large-zh-shaped": (common.build_random_bert(folder / "bge-large-zh-shaped", **common.BGE_LARGE_ZH), RANDOM),
    }
    if not args.no_bytecode_cache:
        print(f"warm-up (MiniLM audit, not counted): {common.run_audit([common.minilm_path()]).wall:.1f} s")
    print(f"machine: {common.machine()}")
    print(f"{'checkpoint':22} {'GB':>5} {'wall s':>7} {'passes':>6} {'s/pass':>7} {'peak MB':>8}  summary")
    report: dict = {}
    for name, (path, extra) in sizes.items():
        result, report = audit(path, extra, args.budget)
        model = report["models"][0]
        size = sum(file.stat().st_size for file in path.iterdir() if file.suffix == ".safetensors") / 1e9
        passes = model["forward_passes"]
        print(f"{name:22} {size:5.2f} {result.wall:7.1f} {passes:6d} {result.wall / max(1, passes):7.3f} {result.peak_rss_mb:8.0f}  "
              f"{result.tail(1)}", flush=True)
    print("bge-large-zh-shaped, per check:")
    common.print_checks(report)
    print(f"machine after: {common.machine()}")
    print(common.verdict(f"scale (bge-large-zh-shaped audit wall seconds / {BOUND_SECONDS:g})", result.wall / BOUND_SECONDS, 1.0)
          + f" [{result.wall:.0f} s]")


if __name__ == "__main__":
    main()
