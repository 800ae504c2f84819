"""Training checks: what the checks that judge whether the weights are trained (`Check.training`) add to an audit.

Two measures. In-process, each training check's helper on a loaded checkpoint (median of --calls after one
warm-up): the real MiniLM, and the random bge-large-zh-shaped checkpoint of `scale.py` (every matrix there looks
random, so `weights_trained` reads its 8 spectra too: its worst case). Then, alternating, the whole MiniLM audit
with and without those checks (`-k` deselects their audit tests), as users run it; the difference of the medians
is their cost, and its share of the whole audit is held against the 10% the issue allows.
Usage: `python benchmarks/training.py [--repeats N] [--calls N] [--no-bge]`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common

BOUND = 0.10  # share of the MiniLM audit
AUDIT = common.ROOT / "pytest_bertprobe" / "audit"


def training_tests() -> dict[str, str]:
    """Audit test function -> its check, for every catalogue check with `training=True`."""
    sys.path.insert(0, str(common.ROOT))
    from pytest_bertprobe.catalogue import CATALOGUE

    training = {check.name for check in CATALOGUE if check.training}
    found = {}
    for path in AUDIT.glob("bertprobe_audit_*.py"):
        for check, test in re.findall(r'bertprobe_audit\(check="(\w+)"\)\s*(?:@[\w.]+\s*)*def (\w+)', path.read_text(encoding="utf-8")):
            if check in training:
                found[test] = check
    return found


def time_helpers(path: str, calls: int) -> dict[str, float]:
    """Median seconds of each training check's helper on the checkpoint at `path`, loaded once."""
    from importlib import import_module

    from pytest_bertprobe.catalogue import CATALOGUE
    from pytest_bertprobe.checkpoint import loading
    from pytest_bertprobe.errors import CheckFailure, NotApplicable

    checkpoint = loading.load_checkpoint(loading.resolve_source(path), Path(path).name, device="cpu", dtype="float32")
    medians = {}
    for check in (check for check in CATALOGUE if check.training):
        module, _, function = check.helper.partition(":")
        helper = getattr(import_module(f"pytest_bertprobe.{module}"), function)
        seconds = []
        for _ in range(calls + 1):
            start = time.perf_counter()
            try:
                helper(checkpoint)
            except (CheckFailure, NotApplicable):
                pass  # a random checkpoint fails or skips: the time is what counts here
            seconds.append(time.perf_counter() - start)
        medians[check.name] = statistics.median(seconds[1:])
    return medians


def main() -> None:
    """Helpers in-process (MiniLM, bge-large), then whole MiniLM audits with and without the training checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--no-bge", action="store_true", help="skip the bge-large-shaped checkpoint (1.3 GB)")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bertprobe-bge-large-zh-random"))
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    minilm = common.minilm_path()
    tests = training_tests()
    print(f"machine: {common.machine()}\ntraining checks: {', '.join(sorted(set(tests.values())))}")
    for name, seconds in time_helpers(minilm, args.calls).items():
        print(f"MiniLM, in-process: {name} {seconds * 1000:.0f} ms")
    if not args.no_bge:
        folder = common.build_random_bert(args.folder, **common.BGE_LARGE_ZH)
        for name, seconds in time_helpers(str(folder), args.calls).items():
            print(f"bge-large-zh-shaped (random: its worst case, 8 spectra read), in-process: {name} {seconds * 1000:.0f} ms")
    without = "not (" + " or ".join(sorted(tests)) + ")"
    results = common.alternate(
        {"audit": lambda: common.run_audit([minilm]), "without": lambda: common.run_audit([minilm], "-k", without)},
        args.repeats,
    )
    print(common.describe("whole audit", results["audit"]))
    print(common.describe("audit without the training checks", results["without"]))
    whole, rest = common.median_wall(results["audit"]), common.median_wall(results["without"])
    cpu, cpu_rest = (statistics.median(run.cpu for run in results[side]) for side in ("audit", "without"))
    print(f"CPU: {cpu - cpu_rest:+.2f} s of {cpu:.1f} s ({(cpu - cpu_rest) / cpu:.1%}; steadier than wall time on a shared machine)")
    print(common.verdict("training checks' share of the MiniLM audit (wall)", (whole - rest) / whole, BOUND) + f" [{whole - rest:+.2f} s]")


if __name__ == "__main__":
    main()
