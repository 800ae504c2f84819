"""Start-up: what the installed plugin adds to pytest when no checkpoint is audited, and that it imports no torch.

Times, alternating, fresh processes of `pytest --version` and of a run of one trivial test (no --bert-model)
with the plugin loaded and with it disabled (`-p no:bertprobe`), and `python -X importtime` of the plugin
module; each child reports whether torch or transformers got imported. Usage: `python benchmarks/startup.py`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

import common

HEAVY = ("torch", "transformers", "sentence_transformers", "onnxruntime", "onnx", "matplotlib")
CONFTEST = f"""
import sys
def pytest_unconfigure(config):
    print("HEAVY:", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
# `pytest --version` reads no conftest, so the check runs around it.
VERSION = "import sys, pytest; pytest.main({args} + ['--version']); print('HEAVY:', sorted(m for m in %r if m in sys.modules))" % (HEAVY,)


def import_time_ms() -> float:
    """Cumulative import time of pytest_bertprobe.plugin once pytest is imported (`python -X importtime`, best of five)."""
    times = []
    for _ in range(5):
        code = "import pytest; import pytest_bertprobe.plugin"
        result = common.checked(common.run([common.PYTHON, "-X", "importtime", "-c", code]), "importtime")
        line = next(line for line in result.output.splitlines() if line.rstrip().endswith("| pytest_bertprobe.plugin"))
        times.append(int(re.split(r"\s*\|\s*", line.split(":", 1)[1])[1]) / 1000)
    return min(times)


def main() -> None:
    """Print median times with and without the plugin, and the heavy modules each run imported."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    common.add_bytecode_option(parser)
    args = parser.parse_args()
    common.use_bytecode_cache(args)
    print(f"machine: {common.machine()}")
    with tempfile.TemporaryDirectory(prefix="bertprobe-startup-") as folder:
        Path(folder, "conftest.py").write_text(CONFTEST)
        Path(folder, "test_plain.py").write_text("def test_plain():\n    assert True\n")
        pytest = [common.PYTHON, "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider"]
        sides = {
            "--version, plugin": lambda: common.run([common.PYTHON, "-c", VERSION.format(args=[])], cwd=folder),
            "--version, -p no:bertprobe": lambda: common.run([common.PYTHON, "-c", VERSION.format(args=["-p", "no:bertprobe"])], cwd=folder),
            "one test, plugin": lambda: common.run([*pytest, "-q", "-s"], cwd=folder),
            "one test, -p no:bertprobe": lambda: common.run([*pytest, "-q", "-s", "-p", "no:bertprobe"], cwd=folder),
        }
        results = common.alternate(sides, args.repeats)
    for name, runs in results.items():
        heavy = {line for run in runs for line in run.output.splitlines() if line.startswith("HEAVY:")}
        print(f"{common.describe(name, runs)}; {', '.join(sorted(heavy)) or 'HEAVY: not reported'}")
    for kind in ("--version", "one test"):
        plugin, bare = (statistics.median(r.wall for r in results[f"{kind}, {side}"]) for side in ("plugin", "-p no:bertprobe"))
        print(f"{kind}: the plugin adds {1000 * (plugin - bare):+.0f} ms ({plugin / bare:.2f}x)")
    print(f"import pytest_bertprobe.plugin: {import_time_ms():.0f} ms cumulative (python -X importtime, best of 5)")


if __name__ == "__main__":
    main()
