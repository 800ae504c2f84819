"""Peer: the whole audit of the real MiniLM against pytest-torch 1.1.1's zero-code audit of the same folder.

Both sides are whole processes started from an empty folder, as a user runs them: ours is
`pytest --bert-model=MINILM`; the peer's is `pytest --torch-model=hf:MINILM --torch-model-pretrained` from a
separate virtual environment (`--peer-pytest`, default /work/venv-peer/bin/pytest; pytest-torch must never
share a venv with this plugin). Rounds alternate the order. The ratio of median wall times must be at most
1.0 while we run several times as many checks (counted from each side's summary line). Run it twice: with
sentence-transformers installed on both sides (MiniLM declares its pipeline, which the audit then loads with
the library) and on neither; the first lines say which. pytest-torch leaves
OpenMP's wait policy at its default, which spins; `--peer-passive` also runs it with OMP_WAIT_POLICY=PASSIVE,
the policy this plugin sets, to compare like with like. Usage: `python benchmarks/peer.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import common

BOUND = 1.0


def checks_run(run: common.Run) -> int:
    """Checks that reached a verdict (passed or failed; skips not counted) according to pytest's summary line."""
    return sum(int(count) for count, _ in re.findall(r"(\d+) (passed|failed)", run.tail(1)))


def peer_side(pytest_bin: str, checkpoint: str, env: dict[str, str]) -> Callable[[], common.Run]:
    """A run of the peer's zero-code audit."""

    def run() -> common.Run:
        with tempfile.TemporaryDirectory(prefix="bertprobe-peer-") as folder:
            argv = [pytest_bin, "-q", f"--torch-model=hf:{checkpoint}", "--torch-model-pretrained"]
            return common.checked(common.run(argv, cwd=folder, env=env), "pytest-torch", allowed=(0, 1))

    return run


def has_sentence_transformers(python: str) -> bool:
    """Whether sentence-transformers is importable by this interpreter (without importing it)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('sentence_transformers') is None)"
    return subprocess.run([python, "-c", probe], check=False).returncode == 0


def main() -> None:
    """Alternate ours and the peer's; print times, check counts and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--peer-pytest", default="/work/venv-peer/bin/pytest")
    parser.add_argument("--peer-passive", action="store_true", help="also run the peer with OMP_WAIT_POLICY=PASSIVE")
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    checkpoint = common.minilm_path()
    print(f"checkpoint: {checkpoint}\nmachine: {common.machine()}")
    peer_python = str(Path(args.peer_pytest).with_name("python"))
    for side, python in {"bertprobe": common.PYTHON, "pytest-torch": peer_python}.items():
        print(f"sentence-transformers installed beside {side}: {'yes' if has_sentence_transformers(python) else 'no'}")
    sides = {
        "bertprobe": lambda: common.run_audit([checkpoint]),
        "pytest-torch": peer_side(args.peer_pytest, checkpoint, common.ENV),
    }
    if args.peer_passive:
        sides["pytest-torch (passive)"] = peer_side(args.peer_pytest, checkpoint, {**common.ENV, "OMP_WAIT_POLICY": "PASSIVE"})
    results = common.alternate(sides, args.repeats)
    ours = results["bertprobe"]
    for name, runs in results.items():
        print(f"{common.describe(name, runs)}; {checks_run(runs[-1])} checks ({runs[-1].tail(1)})")
    print(f"machine after: {common.machine()}")
    for name in list(results)[1:]:
        ratio = common.median_wall(ours) / common.median_wall(results[name])
        print(f"check ratio vs {name}: {checks_run(ours[-1]) / max(1, checks_run(results[name][-1])):.1f}x as many checks")
        print(common.verdict(f"peer (bertprobe / {name}, medians)", ratio, BOUND))


if __name__ == "__main__":
    main()
