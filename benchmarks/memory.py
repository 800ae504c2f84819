"""Memory: peak RSS of one session auditing three checkpoints against the largest of them audited alone.

The three: the real all-MiniLM-L6-v2, and random-weight checkpoints shaped like bge-small-zh (4 layers,
hidden 512) and bge-base-zh (12 layers, hidden 768; the largest, 0.4 GB), built once into --folder. Each
process's own peak resident set comes from wait4. Each checkpoint is released before the next one loads,
so the session should peak near the largest alone: the bound is 1.25x. Usage: `python benchmarks/memory.py`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common

BOUND = 1.25


def main() -> None:
    """Audit each checkpoint alone, then all three in one session; print peaks and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bertprobe-memory-checkpoints"))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    folder = Path(args.folder)
    checkpoints = {
        "all-MiniLM-L6-v2": Path(common.minilm_path()),
        "bge-small-zh-shaped": common.build_random_bert(folder / "bge-small-zh-shaped", **common.BGE_SMALL_ZH),
        "bge-base-zh-shaped": common.build_random_bert(folder / "bge-base-zh-shaped", **common.BGE_BASE_ZH),
    }
    print(f"machine: {common.machine()}")
    peaks: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, path in checkpoints.items():
            run = common.run_audit([path])
            peaks[name] = max(peaks.get(name, 0.0), run.peak_rss_mb)
            print(f"  {name} alone: peak RSS {run.peak_rss_mb:.0f} MB, {run.wall:.0f} s ({run.tail(1)})", flush=True)
        session = common.run_audit(list(checkpoints.values()))
        peaks["all three"] = max(peaks.get("all three", 0.0), session.peak_rss_mb)
        print(f"  all three in one session: peak RSS {session.peak_rss_mb:.0f} MB, {session.wall:.0f} s ({session.tail(1)})", flush=True)
    largest = max(peaks[name] for name in checkpoints)
    print(f"largest alone: {largest:.0f} MB; three in one session: {peaks['all three']:.0f} MB")
    print(common.verdict("memory (three in one session / largest alone)", peaks["all three"] / largest, BOUND))


if __name__ == "__main__":
    main()
