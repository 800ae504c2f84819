"""`--bert-shard`: every checkpoint of a zoo in exactly one shard, whatever the order; bad shard input is one line and exit 4.

`bertprobe-report merge` on reports built here (no audit runs): a missing, doubled or foreign shard is one line and exit 4.
The end-to-end runs (shards, xdist, the merged page) are in tests/test_zoo_merge.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.checkpoint import shard
from pytest_bertprobe.options import Settings
from pytest_bertprobe.report import cli
from pytest_bertprobe.testing import ARCHITECTURES
from tests.helpers import assert_usage_error

Factory = Callable[..., Path]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def zoo(tiny_checkpoint: Factory) -> list[Path]:
    """Twelve tiny checkpoints, one per architecture of the healthy core (bert, roberta, albert, deberta-v2, modernbert, ...)."""
    assert len(ARCHITECTURES) == 12
    return [tiny_checkpoint(arch) for arch in ARCHITECTURES]


def _settings(models: list[Path], index: int, total: int, **extra: Any) -> Settings:
    return Settings(tuple(map(str, models)), "cpu", "float32", None, True, shard=(index, total), shard_origin="--bert-shard", **extra)


def test_every_checkpoint_lands_in_exactly_one_shard_whatever_the_order(zoo: list[Path]) -> None:
    shuffled = zoo[:]
    random.Random(29).shuffle(shuffled)
    for total in range(1, 9):
        found: dict[str, int] = {}
        plans = []
        for index in range(1, total + 1):
            for order in (zoo, shuffled):
                sources, ids, plan = shard.select(_settings(order, index, total))
                assert sorted(ids) == plan.ids  # this shard's checkpoints, by their zoo ids
                assert [source.local_path for source in sources] == [path.resolve() for path in order if path.name in ids]
                plans.append(plan.assignment)
            for checkpoint_id in ids:
                assert found.setdefault(checkpoint_id, index) == index, f"{checkpoint_id} in two shards of {total}"
        assert sorted(found) == sorted(path.name for path in zoo), f"N={total}: not every checkpoint has a shard"
        assert all(assignment == plans[0] for assignment in plans), f"N={total}: the plan depends on the shard or the order"
        counts = [list(plans[0].values()).count(index) for index in range(1, total + 1)]
        assert max(counts) - min(counts) <= 1, (total, counts)  # tiny checkpoints cost about alike: shards of equal size


def test_cheapest_shard_takes_the_next_largest_checkpoint() -> None:
    costs = {"a": 9.0, "b": 7.0, "c": 6.0, "d": 5.0, "e": 4.0, "f": 4.0, "g": 1.0}
    assignment = shard.assign(costs, 3)
    assert assignment == {"a": 1, "b": 2, "c": 3, "d": 3, "e": 2, "f": 1, "g": 2}  # g: shards 2 and 3 tie at 11, the lower wins
    loads = [sum(cost for name, cost in costs.items() if assignment[name] == index) for index in (1, 2, 3)]
    assert max(loads) - min(loads) <= max(costs.values())  # the greedy bound: never worse than one checkpoint apart
    assert shard.assign(dict(reversed(costs.items())), 3) == assignment
    assert shard.assign(costs, 10) == {name: index + 1 for index, name in enumerate(costs)}  # more shards than checkpoints: some empty


def test_stored_parameters_are_read_from_the_headers_alone(zoo: list[Path]) -> None:
    from safetensors import safe_open

    from pytest_bertprobe.checkpoint.weight_files import stored_parameters

    for folder in zoo[:3]:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
            expected = sum(handle.get_tensor(key).numel() for key in handle.keys())
        assert stored_parameters(folder) == expected
    assert stored_parameters(zoo[0].parent) is None  # no weights there


def test_the_plan_reads_no_weights_outside_a_checkpoint_folder(zoo: list[Path], tmp_path: Path) -> None:
    """A shard of an index, or the weights file itself, leading out of the folder is not opened to price the checkpoint."""
    import json

    from pytest_bertprobe.checkpoint.weight_files import stored_parameters

    linked, indexed = tmp_path / "linked", tmp_path / "indexed"
    for folder in (linked, indexed):
        folder.mkdir()
    (linked / "model.safetensors").symlink_to(zoo[0] / "model.safetensors")
    index = {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": str(zoo[0] / "model.safetensors")}}
    (indexed / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    assert stored_parameters(zoo[0]) is not None  # the same file, read from inside its folder
    assert stored_parameters(linked) is None and stored_parameters(indexed) is None


def test_recorded_durations_price_the_checkpoints(zoo: list[Path], tmp_path: Path) -> None:
    recorded = {path.name: float(index + 1) for index, path in enumerate(zoo[:6])}
    report = tmp_path / "previous.json"
    report.write_text(json.dumps({"models": [{"id": name, "path": "elsewhere", "seconds": seconds} for name, seconds in recorded.items()]}))
    plan = shard.select(_settings(zoo, 1, 3, shard_durations=str(report)))[2]
    assert plan.basis == shard.BY_DURATIONS
    assert {name: plan.costs[name] for name in recorded} == recorded
    by_size = shard.select(_settings(zoo, 1, 3))[2].costs
    rates = sorted(seconds / by_size[name] for name, seconds in recorded.items())
    rate = (rates[2] + rates[3]) / 2  # the median of six
    for path in zoo[6:]:
        assert plan.costs[path.name] == pytest.approx(by_size[path.name] * rate)
    report.write_text(json.dumps({"models": [{"id": "another-zoo", "seconds": 3.0}]}))
    with pytest.raises(ValueError, match="records none of these checkpoints"):
        shard.select(_settings(zoo, 1, 3, shard_durations=str(report)))


@pytest.mark.parametrize(
    ("arguments", "environment", "pattern"),
    [
        (["--bert-shard=3/2"], {}, "--bert-shard=3/2: shard 3 of 2 does not exist; K counts from 1 to N"),
        (["--bert-shard=0/2"], {}, "--bert-shard=0/2: shard 0 of 2 does not exist; K counts from 1 to N"),
        (["--bert-shard=half"], {}, "--bert-shard=half: not K/N; give the shard as K/N, e.g. --bert-shard=2/4*"),
        ([], {"CI_NODE_INDEX": "3", "CI_NODE_TOTAL": "x"}, "CI_NODE_INDEX/CI_NODE_TOTAL=3/x: not K/N*"),
        (["--bert-models-from=missing.txt"], {}, "--bert-models-from=missing.txt: no such file; give a text file with one path*"),
        (["--bert-shard=1/2", "--bert-shard-durations=missing.json"], {}, "--bert-shard-durations=missing.json: no such file*"),
        (["--bert-shard=1/2", "--bert-shard-durations=zoo.txt"], {}, "--bert-shard-durations=zoo.txt: not a readable JSON report*"),
        (["-n", "2", "--dist", "loadscope"], {}, "--dist loadscope spreads one checkpoint's tests over several workers*loadgroup*"),
    ],
    ids=["K>N", "K<1", "malformed", "malformed-ci-variables", "missing-models-file", "missing-durations", "not-a-report", "loadscope"],
)
def test_bad_shard_input_is_one_line_and_exit_4(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Factory, arguments: list[str], environment: dict[str, str], pattern: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    (pytester.path / "zoo.txt").write_text(f"{tiny_checkpoint('bert')}\n", encoding="utf-8")
    models = [] if any(argument.startswith("--bert-models-from") for argument in arguments) else ["--bert-models-from=zoo.txt"]
    assert_usage_error(pytester.runpytest(*models, *arguments), pattern)


def test_a_models_file_that_is_no_regular_file_or_too_large_is_one_line_not_a_hang(pytester: pytest.Pytester) -> None:
    import os

    os.mkfifo(pytester.path / "pipe.txt")  # nothing ever writes to it: open() would wait forever
    (pytester.path / "huge.txt").touch()
    os.truncate(pytester.path / "huge.txt", 17 << 20)  # sparse: 17 MiB that take no disk
    for name, pattern in {"pipe.txt": "not a regular file", "huge.txt": "17825792 bytes, more than 16777216 allowed"}.items():
        result = pytester.runpytest_subprocess(f"--bert-models-from={name}", timeout=120)
        assert_usage_error(result, f"--bert-models-from={name}: {pattern}; give a text file with one path or hub id per line")


def test_ci_variables_without_checkpoints_change_nothing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GitLab `parallel:` job running other tests: the plugin does not shard what it does not audit."""
    monkeypatch.setenv("CI_NODE_INDEX", "2")
    monkeypatch.setenv("CI_NODE_TOTAL", "3")
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)
    assert_usage_error(pytester.runpytest("--bert-shard=1/2"), "--bert-shard needs the zoo to shard: pass --bert-model or --bert-models-from")


def _report(plugin: str = "0.1.0", index: int | None = None, total: int = 2, models: tuple[str, ...] = ("a",), **environment: str) -> dict[str, Any]:
    """A minimal JSON report of `models`, each with one passing check; shard `index` of `total` of the zoo a:1, b:2."""
    plan = {"index": index, "total": total, "origin": "--bert-shard", "basis": "parameters",
            "assignment": {"a": 1, "b": 2}, "costs": {"a": 1.0, "b": 1.0}} if index else None  # fmt: skip
    return {
        "version": 1, "plugin": plugin, "created": "2026-01-01T00:00:00+00:00",
        "environment": {"python": "3.11", "torch": "2.9", "transformers": "5.25", "device": "cpu", "dtype": "float32", **environment},
        "shard": plan,
        "models": [{"id": name, "path": f"/zoo/{name}", "outcome": "passed", "pooler": {}, "loads": 1, "seconds": 1.0} for name in models],
        "checks": [{"nodeid": f"bertprobe_audit_weights.py::test_w[{name}]", "model": name, "check": "weights_finite",
                    "outcome": "passed", "metrics": {}, "text": ""} for name in models],
    }  # fmt: skip


def _merge(tmp_path: Path, *reports: dict[str, Any] | None, extra: tuple[str, ...] = ()) -> tuple[int, Path]:
    """Write `reports` (None: a file never written) and merge them; the exit status and the merged file."""
    names = []
    for number, report in enumerate(reports):
        path = tmp_path / f"shard{number + 1}.json"
        if report is not None:
            path.write_text(json.dumps(report), encoding="utf-8")
        names.append(str(path))
    out = tmp_path / "zoo.json"
    return cli.main(["merge", str(out), *names, *extra]), out


@pytest.mark.parametrize(
    ("reports", "pattern"),
    [
        ((_report(index=1, models=("a",)), None), "*shard2.json: no such file; give the JSON report each shard wrote*"),
        ((_report(index=1, models=("a",)), _report("0.2.0", index=2, models=("b",))),
         "the shards come from different pytest-bertprobe versions: 0.1.0 (*shard1.json); 0.2.0 (*shard2.json); run every shard with one version"),
        ((_report(index=1, models=("a",)),), "shard 2/2 missing: the zoo's verdict would leave out 1 checkpoint(s) (b); give every shard's report"),
        ((_report(index=1, models=("a",)), _report(index=1, models=("a",))), "shard 1/2 is given twice, *shard1.json and *shard2.json*"),
        ((_report(index=1, models=("a",)), _report(index=2, models=())), "*shard2.json (shard 2/2) has no result for b, planned in it*"),
        ((_report(index=1, models=("a",)), _report(index=2, total=3, models=("b",))), "*shard2.json is shard 2/3 but *shard1.json is shard 1/2*"),
        ((_report(models=("a",)), _report(models=("a",))), "checkpoint 'a' is in two reports, *shard1.json and *shard2.json*"),
        (({"version": 1, "plugin": "0.1.0"},), "*shard1.json: not a bertprobe JSON report (it lacks environment, models, checks)"),
        (({**_report(models=("a",)), "models": [{"path": "/zoo/a"}]},),
         "a shard report lacks what bertprobe writes (KeyError: 'id'); give the JSON reports the shards wrote (--bert-report-json)"),
    ],
    ids=["missing-file", "plugin-versions", "missing-shard", "shard-twice", "unaudited", "other-split", "duplicate", "not-a-report",
         "model-without-id"],
)
def test_bad_merge_input_is_one_line_and_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reports: tuple[dict[str, Any] | None, ...], pattern: str
) -> None:
    status, out = _merge(tmp_path, *reports)
    captured = capsys.readouterr()
    assert status == 4 and not out.exists(), captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.out == "", captured
    assert fnmatch(lines[0], f"bertprobe-report: error: {pattern}"), lines[0]


def test_merge_names_environment_differences_and_keeps_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _merge(tmp_path, _report(index=2, models=("b",)), _report(index=1, models=("a",), torch="2.10"), extra=("--junit", str(tmp_path / "zoo.xml")))
    assert status == 0
    merged = json.loads(out.read_text(encoding="utf-8"))
    single = _report(index=1)
    assert set(single) <= set(merged) and set(merged) - set(single) == {"shards", "mismatches"}
    assert merged["shard"] is None and [shard["shard"] for shard in merged["shards"]] == ["2/2", "1/2"]
    assert merged["environment"]["torch"] == "2.9, 2.10" and merged["mismatches"] == ["torch: 2.9 in 2/2; 2.10 in 1/2"]
    assert "warning: the shards' environment differs: torch: 2.9 in 2/2; 2.10 in 1/2" in capsys.readouterr().out
    assert (tmp_path / "zoo.xml").read_text(encoding="utf-8").count("<testcase ") == 2


def test_merged_page_and_table_show_the_shards_environment_and_the_users_tests(tmp_path: Path) -> None:
    """What the shards recorded, not the merging machine's: their torch, and the user's own tests per checkpoint."""
    first, second = _report(index=1, models=("a",), torch="2.9"), _report(index=2, models=("b",), torch="2.9")
    first["models"][0]["tests"] = {"passed": 3}
    page, table = tmp_path / "zoo.html", tmp_path / "zoo.md"
    status, _ = _merge(tmp_path, first, second, extra=("--html", str(page), "--markdown", str(table)))
    assert status == 0
    assert "<tr><th>torch</th><td>2.9</td></tr>" in page.read_text(encoding="utf-8").split("<h2>Environment</h2>", 1)[1]
    assert "| 3 passed |" in table.read_text(encoding="utf-8")


def test_cli_usage_errors_are_one_line_and_exit_4(tmp_path: Path) -> None:
    """Run as the console script runs it (a fresh interpreter): argparse's own errors too."""
    for arguments, pattern in [([], "the following arguments are required: COMMAND"), (["merge", "out.json"], "the following arguments are required: SHARD.json"),
                               (["merge", "out.json", "absent.json"], "absent.json: no such file")]:  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "pytest_bertprobe.report.cli", *arguments], cwd=tmp_path, capture_output=True, text=True,
                                env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=60)  # fmt: skip
        assert result.returncode == 4 and result.stdout == "", result
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"bertprobe-report: error: {pattern}"), result.stderr


def test_the_console_script_is_declared() -> None:
    """pyproject's `[project.scripts]` names `cli.main`; where this venv installed the script (CI does), it runs."""
    from importlib import import_module

    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, _, function = scripts["bertprobe-report"].partition(":")
    assert getattr(import_module(module), function) is cli.main
    installed = Path(sys.executable).parent / "bertprobe-report"
    if installed.exists():
        result = subprocess.run([str(installed), "merge", "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "OUT.json" in result.stdout, result
