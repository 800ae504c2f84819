"""Overhead: the whole audit of the real MiniLM against model load plus the same forward passes, bare.

First one audit runs with `bertprobe_bench_recorder`, which records every forward pass (the model class,
attention implementation and exact input tensors). Then, alternating, each round times two fresh processes:
the whole audit (`pytest --bert-model=MINILM` from an empty folder, no recorder) and `bare_passes.py`
(import torch and transformers, load the checkpoint, replay the recorded passes in a plain loop), under the
OpenMP wait policy the plugin gives its own passes (PASSIVE unless the environment sets one). The ratio of
their median wall times is what the audit costs beyond its forward passes; the bound is 1.10. The bare loop
does not run sentence-transformers: where it is installed, the audit also imports it and loads MiniLM's declared
pipeline with it (`embedding_contract`); run it also from a venv without the library to see the plugin's own cost.
`--without=MODULE` (e.g. `bertprobe_audit_behaviour`) alternates a third side, the audit less that audit module's
checks (`-k "not MODULE"`), and prints what those checks add to the whole audit.
Usage: `python benchmarks/overhead.py [--repeats N] [--without MODULE] [--option=OPTION ...] [CHECKPOINT]`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import common

BOUND = 1.10
HERE = Path(__file__).resolve().parent


def record_passes(checkpoint: str, record: Path, options: list[str]) -> tuple[common.Run, dict]:
    """One audit with the recorder plugin, writing its forward passes to `record`; its JSON report."""
    env = {**common.ENV, "BERTPROBE_RECORD": str(record), "PYTHONPATH": os.pathsep.join([str(HERE), common.ENV.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="bertprobe-bench-") as folder:
        argv = common.audit_argv([checkpoint], "-p", "bertprobe_bench_recorder", "--bert-report-json=report.json", *options)
        run = common.checked(common.run(argv, cwd=folder, env=env), "the recording audit")
        return run, json.loads((Path(folder) / "report.json").read_text(encoding="utf-8"))


def main() -> None:
    """Record, then alternate audit and bare loop; print both and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None, help="default: the real all-MiniLM-L6-v2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--without", default=None, help="also time the audit less this audit module's checks")
    parser.add_argument("--option", action="append", default=[], help="an option for every audit (repeatable), e.g. "
                        "--option=--bert-allow-untrained --option=--bert-embedding=cls for scale.py's random checkpoints")
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    checkpoint = args.checkpoint or common.minilm_path()
    print(f"checkpoint: {checkpoint}\nmachine: {common.machine()}")
    with tempfile.TemporaryDirectory(prefix="bertprobe-record-") as folder:
        record = Path(folder) / "passes.pt"
        recording, report = record_passes(checkpoint, record, args.option)
        print(f"recording: {recording.tail(1)}; {report['models'][0]['forward_passes']} forward passes")
        common.print_checks(report)
        bare = [common.PYTHON, str(HERE / "bare_passes.py"), checkpoint, str(record)]
        bare_env = {**common.ENV, "OMP_WAIT_POLICY": common.ENV.get("OMP_WAIT_POLICY", "PASSIVE")}
        sides = {
            "audit": lambda: common.run_audit([checkpoint], *args.option),
            "bare": lambda: common.checked(common.run(bare, env=bare_env), "the bare loop"),
        }
        if args.without:
            sides["without"] = lambda: common.run_audit([checkpoint], *args.option, "-k", f"not {args.without}")
        results = common.alternate(sides, args.repeats)
    print(f"bare loop: {results['bare'][-1].tail(1)}")
    print(common.describe("whole audit", results["audit"]))
    print(common.describe("load + same passes", results["bare"]))
    pairs = common.paired_ratios(results["audit"], results["bare"])
    print("round ratios: " + ", ".join(f"{ratio:.2f}" for ratio in pairs))
    if args.without:
        print(common.describe(f"audit less {args.without}", results["without"]))
        added = common.paired_ratios(results["audit"], results["without"])
        print(f"{args.without} adds: round ratios " + ", ".join(f"{ratio:.3f}" for ratio in added) + ", medians "
              f"{common.median_wall(results['audit']) / common.median_wall(results['without']):.3f}")
    print(f"machine after: {common.machine()}")
    print(common.verdict("overhead (audit / bare, medians)", common.median_wall(results["audit"]) / common.median_wall(results["bare"]), BOUND))


if __name__ == "__main__":
    main()
