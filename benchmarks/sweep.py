"""Sweep: a 24-checkpoint zoo audited as 1, 2 and 4 shards (`--bert-shard=K/N`), one shard after another.

The zoo: 16 tiny random checkpoints (the 12 architectures of `make_tiny_checkpoint`'s healthy core, and four
more BERTs of other seeds) and 8 copies of the real all-MiniLM-L6-v2 (hard links to its weights). Each shard
runs in a fresh process as a CI job would (`--bert-audit-only --bert-allow-untrained`); the script prints each
shard's wall and CPU time and its share of the zoo's cost as the plan predicted it, and the imbalance (slowest
shard / mean) against its bound of 1.25, by wall time and by CPU time (on a shared machine, the load moves wall
times by tens of percent from one shard to the next; CPU time moves less). From the unsharded run's report it
fits what a checkpoint costs (`seconds = a + b * parameters`; `a / b` in parameters is the fixed cost that
`shard.FIXED_COST_PARAMETERS` stands for), and extrapolates, on paper, a zoo of 500 base- and large-sized
checkpoints over 20 jobs: with that fit, and with the README's quiet-machine figures (MiniLM 4.7 s,
bge-large 32 s).

`--xdist` also times one MiniLM alone serially and under `-n 2` (alternating, `--xdist-rounds` each; `--xdist-only`:
nothing else): with every test of a checkpoint on one worker, `-n 2` on one checkpoint does the serial run's work
(one load, the same forward passes: tests/test_zoo_merge.py proves it), plus the start of a second worker that
collects the audit and finds nothing to run.

Usage: `python benchmarks/sweep.py [--folder DIR] [--xdist] [--xdist-rounds N] [--xdist-only]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import common

sys.path.insert(0, str(common.ROOT))
from pytest_bertprobe.checkpoint import shard  # noqa: E402  (after the checkout is on the path)

BOUND = 1.25
XDIST_BOUND = 1.5  # one idle worker's start; a second load and its passes (the defect #29 fixed) made it 2.0
SHARD_COUNTS = (1, 2, 4)
TINY_SEEDS = (1, 2, 3, 4)
MINILM_COPIES = 8
PAPER_ZOO = {"base (110M parameters)": (400, 110_000_000), "large (335M parameters)": (100, 335_000_000)}
PAPER_JOBS = 20
QUIET_MACHINE = ((22_700_000, 4.7), (326_000_000, 32.0))  # README's Performance: MiniLM and bge-large, seconds per audit


def build_zoo(folder: Path) -> list[Path]:
    """The 24 checkpoints (built once into `folder`)."""
    from pytest_bertprobe.testing import ARCHITECTURES, make_tiny_checkpoint

    zoo = []
    for arch, seed in [*((arch, 0) for arch in ARCHITECTURES), *(("bert", seed) for seed in TINY_SEEDS)]:
        target = folder / f"tiny-{arch}-{seed}"
        if not (target / "config.json").is_file():
            make_tiny_checkpoint(target, arch, seed=seed)
        zoo.append(target)
    minilm = Path(common.minilm_path())
    for copy in range(1, MINILM_COPIES + 1):
        target = folder / f"minilm-{copy}"
        if not (target / "config.json").is_file():
            shutil.copytree(minilm, target, copy_function=_link_or_copy)
        zoo.append(target)
    return zoo


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # a hard link is a regular file of the folder: no copy of 90 MB
    except OSError:
        shutil.copy2(source, target)


def run_shard(zoo_file: Path, index: int, total: int, scratch: Path) -> tuple[common.Run, dict]:
    """One shard in a fresh process from an empty folder; its run and JSON report."""
    report = scratch / f"shard-{index}-of-{total}.json"
    extra = ["--bert-audit-only", "--bert-allow-untrained", f"--bert-models-from={zoo_file}", f"--bert-report-json={report}", "-p", "no:cacheprovider"]
    if total > 1:
        extra.append(f"--bert-shard={index}/{total}")
    result = common.run_audit([], *extra)
    return result, json.loads(report.read_text(encoding="utf-8"))


def fit(report: dict, parameters: dict[str, int]) -> tuple[float, float]:
    """Least squares `seconds = a + b * parameters` over the report's checkpoints."""
    points = [(parameters[model["id"]], model["seconds"]) for model in report["models"]]
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y - slope * mean_x, slope


def on_paper(label: str, fixed: float, per_parameter: float, overhead: float) -> None:
    """500 checkpoints over 20 jobs, each priced `fixed + per_parameter * parameters`, dealt by the plugin's own `shard.assign`."""
    costs = {f"{kind}-{number}": fixed + per_parameter * size for kind, (count, size) in PAPER_ZOO.items() for number in range(count)}
    assignment = shard.assign(costs, PAPER_JOBS)
    jobs = [overhead + sum(cost for name, cost in costs.items() if assignment[name] == job) for job in range(1, PAPER_JOBS + 1)]
    serial = overhead + sum(costs.values())
    print(f"\non paper, {label}: {sum(count for count, _ in PAPER_ZOO.values())} checkpoints "
          f"({', '.join(f'{count} {kind}' for kind, (count, _) in PAPER_ZOO.items())}), {overhead:.0f} s per job outside the checks")
    print(f"  per checkpoint: {fixed:.1f} s + {per_parameter * 1e6:.3f} s per million parameters; one job: {serial / 3600:.1f} h; {PAPER_JOBS} jobs: slowest {max(jobs) / 60:.0f} min, mean {statistics.fmean(jobs) / 60:.0f} min, "
          f"imbalance {max(jobs) / statistics.fmean(jobs):.3f}; speed-up {serial / max(jobs):.1f}x")


def main() -> None:
    """Build the zoo, run it as 1, 2 and 4 shards, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "bertprobe-sweep-zoo"))
    parser.add_argument("--xdist", action="store_true", help="also time one MiniLM serially and under -n 2")
    parser.add_argument("--xdist-rounds", type=int, default=2, help="rounds of the -n 2 comparison (default 2)")
    parser.add_argument("--xdist-only", action="store_true", help="only the -n 2 comparison (implies --xdist)")
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    folder = Path(args.folder)
    zoo = build_zoo(folder)
    zoo_file = folder / "zoo.txt"
    zoo_file.write_text("".join(f"{path}\n" for path in zoo), encoding="utf-8")
    from pytest_bertprobe.checkpoint.weight_files import stored_parameters

    parameters = {path.name: stored_parameters(path) or 0 for path in zoo}
    print(f"zoo: {len(zoo)} checkpoints in {folder}\nmachine: {common.machine()}")
    if not args.no_bytecode_cache:
        print(f"warm-up (one tiny audit, not counted): {common.run_audit([zoo[0]], '--bert-allow-untrained').wall:.1f} s")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bertprobe-sweep-") as scratch:
        for total in () if args.xdist_only else SHARD_COUNTS:
            runs = [run_shard(zoo_file, index, total, Path(scratch)) for index in range(1, total + 1)]
            walls, cpus = [result.wall for result, _ in runs], [result.cpu for result, _ in runs]
            print(f"\n{total} shard(s):")
            for index, (result, report) in enumerate(runs, start=1):
                plan = report.get("shard")
                share = shard.ShardPlan.from_json(plan).share() if plan else 1.0
                print(f"  shard {index}/{total}: {result.wall:6.1f} s wall, {result.cpu:6.1f} s CPU, {len(report['models']):2d} checkpoints, "
                      f"{share:5.1%} of the zoo's cost as planned; {result.tail(1)}")
            if total == 1:
                a, b = fit(runs[0][1], parameters)
                overhead = walls[0] - sum(model["seconds"] for model in runs[0][1]["models"])
                print(f"  fit: seconds = {a:.2f} + {b * 1e6:.3f} per million parameters; fixed cost = {a / b / 1e6:.1f}M parameters "
                      f"(the plugin uses {shard.FIXED_COST_PARAMETERS / 1e6:.0f}M); per job outside the checks: {overhead:.1f} s")
            else:
                for kind, times in (("wall", walls), ("CPU", cpus)):
                    imbalance = max(times) / statistics.fmean(times)
                    verdicts.append(common.verdict(f"imbalance with {total} shards, {kind} time (slowest / mean)", imbalance, BOUND))
                    print(f"  {kind}: mean {statistics.fmean(times):.1f} s, slowest {max(times):.1f} s; sum {sum(times):.1f} s")
    if not args.xdist_only:
        on_paper("by this run's fit", a, b, overhead)
        (small, small_seconds), (large, large_seconds) = QUIET_MACHINE
        slope = (large_seconds - small_seconds) / (large - small)
        on_paper("by the quiet machine's figures", small_seconds - slope * small, slope, overhead)
    if args.xdist or args.xdist_only:
        minilm = next(path for path in zoo if path.name.startswith("minilm"))
        sides = {"serial": lambda: common.run_audit([minilm]), "-n 2": lambda: common.run_audit([minilm], "-n", "2")}
        results = common.alternate(sides, args.xdist_rounds, warm_up=False)
        for name, timed in results.items():
            print(common.describe(name, timed))
        ratios = common.paired_ratios(results["-n 2"], results["serial"])
        wall = common.median_wall(results["-n 2"]) / common.median_wall(results["serial"])
        print(f"wall, round by round (-n 2 / serial): {', '.join(f'{ratio:.2f}' for ratio in ratios)}; medians: {wall:.2f}")
        # CPU time (the workers' included): on a shared machine, wall time measures the other work as much as this.
        # The second worker collects the audit and finds nothing to run: pytest, Hypothesis and the plugin imported,
        # no torch (about 1.8 s of CPU here, against 9 s for the MiniLM audit). Before #29 the checkpoint's tests were
        # split over both workers, each loading it and running its own passes: 2.0 times serial.
        cpu = statistics.median(run.cpu for run in results["-n 2"]) / statistics.median(run.cpu for run in results["serial"])
        verdicts.append(common.verdict("-n 2 / serial on one checkpoint, CPU time (one more worker's start, no second load)", cpu, XDIST_BOUND))
    print(f"\nmachine after: {common.machine()}")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
