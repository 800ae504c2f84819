"""A zoo audited whole and as two shards (one under `-n 2`, one sharded by GitLab's variables), merged into one verdict.

Four tiny checkpoints, one of them broken (its pooler was never saved). Three runs, each in a fresh process:
the whole zoo serially; shard 1/2 with `-n 2`; shard 2/2 from CI_NODE_INDEX/CI_NODE_TOTAL. What they show: the
merged report equals the whole run's verdicts check for check; under xdist each checkpoint loads exactly once,
in one process that runs all its tests and as many forward passes as the serial run (so it cannot be slower
than serial, only spread); the merged page renders in headless Chromium, failures first, sortable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_bertprobe.report import cli
from tests.helpers import headless_chromium, plant_copy, run_pytest

Factory = Callable[..., Path]


@pytest.fixture(scope="module")
def zoo(tiny_checkpoint: Factory, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """bert, roberta, distilbert and a bert copy without its pooler weights (fails pooler_provenance)."""
    bert = tiny_checkpoint("bert")
    pooler_missing = plant_copy(bert, tmp_path_factory.mktemp("zoo") / "pooler-missing",
                                weights=lambda tensors: [tensors.pop(name) for name in list(tensors) if "pooler" in name])  # fmt: skip
    return [bert, tiny_checkpoint("roberta"), tiny_checkpoint("distilbert"), pooler_missing]


def _audit(folder: Path, *arguments: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_pytest(folder, "--bert-audit-only", "--bert-allow-untrained", *arguments, environment=environment)


@pytest.fixture(scope="module")
def runs(zoo: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The whole zoo, and its two shards (the zoo listed in another order in a file); each run's result and JSON report."""
    folder = tmp_path_factory.mktemp("runs")
    (folder / "zoo.txt").write_text("# the zoo, in another order than --bert-model's\n" + "".join(f"{path}\n" for path in reversed(zoo)), encoding="utf-8")
    found = {"whole": _audit(folder, *(f"--bert-model={path}" for path in zoo), "--bert-report-json=whole.json")}
    found["shard1"] = _audit(folder, "--bert-models-from=zoo.txt", "--bert-shard=1/2", "-n", "2", "-v", "--bert-report-json=shard1.json")
    found["shard2"] = _audit(folder, "--bert-models-from=zoo.txt", "--bert-report-json=shard2.json",
                             environment={"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "2"})  # fmt: skip
    for name, result in found.items():
        assert result.returncode in (0, 1), f"{name}:\n{result.stdout}\n{result.stderr}"
    reports = {name: json.loads((folder / f"{name}.json").read_text(encoding="utf-8")) for name in found}
    return {"folder": folder, "results": found, "reports": reports}


def _verdicts(report: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    return {(check["model"], check["check"], check["nodeid"]): check["outcome"] for check in report["checks"]}


def test_each_checkpoint_is_in_one_shard_and_the_header_says_which(runs: dict[str, Any], zoo: list[Path]) -> None:
    shard1, shard2 = runs["reports"]["shard1"], runs["reports"]["shard2"]
    ids1, ids2 = {model["id"] for model in shard1["models"]}, {model["id"] for model in shard2["models"]}
    assert not ids1 & ids2 and ids1 | ids2 == {path.name for path in zoo} and len(ids1) == len(ids2) == 2
    assert shard1["shard"]["assignment"] == shard2["shard"]["assignment"]
    assert (shard2["shard"]["index"], shard2["shard"]["total"], shard2["shard"]["origin"]) == (2, 2, "CI_NODE_INDEX/CI_NODE_TOTAL")
    assert "bertprobe: shard 2/2 (from CI_NODE_INDEX/CI_NODE_TOTAL, as --bert-shard is not given): 2 of 4 checkpoints" in runs["results"]["shard2"].stdout
    assert "bertprobe: --dist loadgroup: each checkpoint's tests run on one worker" in runs["results"]["shard1"].stdout


def test_under_xdist_each_checkpoint_loads_once_in_one_process_doing_the_serial_work(runs: dict[str, Any]) -> None:
    whole = {model["id"]: model for model in runs["reports"]["whole"]["models"]}
    for model in runs["reports"]["shard1"]["models"]:
        [process] = model["processes"]  # every test of the checkpoint in one worker ...
        checks = [check for check in runs["reports"]["shard1"]["checks"] if check["model"] == model["id"]]
        assert process["worker"].startswith("gw") and process["pid"] not in (0, os.getpid()), process
        assert (process["tests"], process["loads"], model["loads"]) == (len(checks), 1, 1), model  # ... which loaded it once
        # As many forward passes as the serial run made: the parallel run does no work twice, so it is not slower.
        assert (model["forward_passes"], whole[model["id"]]["loads"]) == (whole[model["id"]]["forward_passes"], 1), model
    workers: dict[str, set[str]] = {}
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[ *\d+%\] (?:PASSED|FAILED|SKIPPED|ERROR) (\S+)", runs["results"]["shard1"].stdout, re.MULTILINE):
        workers.setdefault(nodeid.rpartition("@")[2], set()).add(worker)  # node ids carry their group ...
    expected = {f"bertprobe-{model['id']}" for model in runs["reports"]["shard1"]["models"]}
    assert set(workers) == expected and all(len(ran_on) == 1 for ran_on in workers.values()), workers  # ... each on one worker
    assert all("@" not in check["nodeid"] for check in runs["reports"]["shard1"]["checks"])  # reports name tests as serially


@pytest.fixture(scope="module")
def merged(runs: dict[str, Any]) -> dict[str, Any]:
    """`bertprobe-report merge` of the two shards (given in reverse order) with every output; its status and printout."""
    import contextlib
    import io

    folder = runs["folder"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["merge", str(folder / "zoo.json"), str(folder / "shard2.json"), str(folder / "shard1.json"),
                           "--junit", str(folder / "zoo.xml"), "--markdown", str(folder / "zoo.md"), "--html", str(folder / "zoo.html")])  # fmt: skip
    return {"status": status, "printed": printed.getvalue(), "report": json.loads((folder / "zoo.json").read_text(encoding="utf-8"))}


def test_merged_report_equals_the_whole_run_check_for_check(runs: dict[str, Any], merged: dict[str, Any]) -> None:
    folder = runs["folder"]
    assert merged["status"] == 1, merged["printed"]  # one checkpoint failed
    assert "merged 2 report(s): 4 checkpoints, 1 failed (pooler-missing)" in merged["printed"]
    merged, whole = merged["report"], runs["reports"]["whole"]
    assert _verdicts(merged) == _verdicts(whole) and len(_verdicts(whole)) == len(whole["checks"])
    summary = lambda report: {m["id"]: (m["outcome"], m["pooler"]["verdict"], m["class"], m["loads"]) for m in report["models"]}  # noqa: E731
    assert summary(merged) == summary(whole)
    assert set(whole) | {"shards", "mismatches"} == set(merged) and merged["mismatches"] == []
    assert [(shard["shard"], len(shard["models"])) for shard in merged["shards"]] == [("2/2", 2), ("1/2", 2)]
    cases = list(ElementTree.parse(folder / "zoo.xml").iter("testcase"))
    failed = [case.get("name") for case in cases if case.find("failure") is not None]
    expected = [check["nodeid"].partition("::")[2] for check in whole["checks"] if check["outcome"] == "failed"]
    assert len(cases) == len(whole["checks"]) and failed == expected and len(failed) == 1, failed
    assert "| pooler-missing | bert | BertModel | standard/tanh | missing |" in (folder / "zoo.md").read_text(encoding="utf-8")


def test_the_merged_page_renders_failures_first_and_sorts_in_chromium(runs: dict[str, Any], merged: dict[str, Any], tmp_path: Path) -> None:
    page = (runs["folder"] / "zoo.html").read_text(encoding="utf-8")
    overview = page.split('<table class="overview">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="verdict-(\w+)"><td><a href="#model-([\w-]+)">', overview)
    assert rows[0] == ("failed", "pooler-missing") and len(rows) == 4
    assert "<h2>Shards</h2>" in page and "<h2>Options</h2>" not in page
    assert re.findall(r"<th[^>]*>shard</th>", overview) and ">1/2</td>" in overview and ">2/2</td>" in overview
    # Click the "model" column in the browser itself, then read the rows back from the rendered page.
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.replace("</body>", '<script>document.querySelector("table.overview th").click()</script></body>'), encoding="utf-8")
    command = [*headless_chromium(tmp_path / "profile"), "--dump-dom", clicked.as_uri()]
    rendered = subprocess.run(command, capture_output=True, text=True, timeout=180, check=True).stdout
    order = re.findall(r'<tr class="verdict-\w+"><td><a href="#model-([\w-]+)">', rendered.split('class="overview"', 1)[1])
    assert order == sorted(name for _, name in rows), order
    screenshot = tmp_path / "zoo.png"
    subprocess.run([*headless_chromium(tmp_path / "profile"), f"--screenshot={screenshot}", "--window-size=1280,2000", clicked.as_uri()],
                   capture_output=True, timeout=180, check=True)  # fmt: skip
    from matplotlib import image

    pixels = image.imread(screenshot)[..., :3]
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.01, "a blank page"
    failed_red = (abs(pixels - [0xFD / 255, 0xEC / 255, 0xEC / 255]).max(axis=-1) < 0.02).mean()
    assert failed_red > 1e-4, "the failed row's background is not drawn"
