"""Scale: the default audit of a random-weight checkpoint shaped like the seed's bge-large-zh, on this machine.

Builds (once, into --folder) a BertModel with bge-large-zh's shape: 24 layers, hidden 1024, 16 heads,
intermediate 4096, 512 positions, and a 21128-entry Chinese WordPiece vocabulary (about 326M parameters,
1.3 GB of float32 safetensors). Then runs the default audit on it from an empty folder as a user would
and prints the wall time against the 45-second bound, the load time, and the forward passes and
Hypothesis examples of every invariant (from the JSON report). Usage: `python benchmarks/scale.py [--folder DIR]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import common

BOUND_SECONDS = 45.0


def main() -> None:
    """Build the checkpoint if needed, audit it once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bertprobe-bge-large-zh-random"))
    parser.add_argument("--budget", default=None, help="also pass --bert-budget=SECONDS")
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    folder = common.build_random_bert(args.folder, **common.BGE_LARGE_ZH)
    if not args.no_bytecode_cache:
        print(f"warm-up (MiniLM audit, not counted): {common.run_audit([common.minilm_path()]).wall:.1f} s")
    print(f"checkpoint: {folder} ({sum(f.stat().st_size for f in folder.iterdir()) / 1e9:.2f} GB)\nmachine: {common.machine()}")
    with tempfile.TemporaryDirectory(prefix="bertprobe-scale-") as scratch:
        report_file = Path(scratch) / "report.json"
        extra = [f"--bert-report-json={report_file}", *([f"--bert-budget={args.budget}"] if args.budget else [])]
        result = common.run_audit([folder], *extra)
        report = json.loads(report_file.read_text())
    model = report["models"][0]
    print(result.tail(1))
    print(f"load {model.get('load_seconds', 0):.1f} s, {model['forward_passes']} forward passes in all, peak RSS {result.peak_rss_mb:.0f} MB")
    common.print_checks(report)
    print(f"machine after: {common.machine()}")
    print(common.verdict(f"scale (audit wall seconds / {BOUND_SECONDS:g})", result.wall / BOUND_SECONDS, 1.0) + f" [{result.wall:.0f} s]")


if __name__ == "__main__":
    main()
