"""Reports CI can read: a healthy checkpoint and one with its pooler missing, told apart in every report."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_pytest

Factory = Callable[..., Path]


@pytest.fixture(scope="module")
def pooler_missing(tiny_checkpoint: Factory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny BERT whose pooler weights were never saved: transformers draws a random pooler on every load."""
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(tiny_checkpoint("bert"), tmp_path_factory.mktemp("faulty") / "pooler-missing"))
    tensors = {name: tensor for name, tensor in load_file(folder / "model.safetensors").items() if "pooler" not in name}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _run(folder: Path, healthy: Path, faulty: Path, *extra: str) -> tuple[pytest.LineMatcher, int, dict[str, Any], ElementTree.Element, str]:
    """The audit of both checkpoints in a fresh process in `folder`: output, exit status, JSON, JUnit XML, Markdown."""
    folder.mkdir(parents=True)
    result = run_pytest(
        folder, f"--bert-model={healthy}", f"--bert-model={faulty}", "--bert-report-json=report.json",
        "--bert-report-markdown=summary.md", "--junitxml=junit.xml", "--bert-allow-untrained", *extra,
    )  # fmt: skip
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    junit = ElementTree.parse(folder / "junit.xml").getroot()
    return pytest.LineMatcher(result.stdout.splitlines()), result.returncode, report, junit, (folder / "summary.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tiny_checkpoint: Factory, pooler_missing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, ...]]:
    """The same audit serial and under `-n 2`, each run once for every test here."""
    folder = tmp_path_factory.mktemp("reports")
    return {name: _run(folder / name, tiny_checkpoint("bert"), pooler_missing, *workers)
            for name, workers in {"serial": (), "xdist": ("-n", "2")}.items()}  # fmt: skip


def _outcomes(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(check["model"], check["nodeid"].split("::")[-1].split("[")[0]): check["outcome"] for check in report["checks"]}


@pytest.mark.parametrize("run", ["serial", "xdist"])
def test_json_junit_terminal_and_markdown_tell_the_two_apart(runs: dict[str, tuple[Any, ...]], run: str) -> None:
    output, status, report, junit, markdown = runs[run]
    assert status == pytest.ExitCode.TESTS_FAILED, output.str()

    models = {model["id"]: model for model in report["models"]}
    assert (models["bert"]["outcome"], models["bert"]["pooler"]["verdict"]) == ("passed", "trained")
    assert (models["pooler-missing"]["outcome"], models["pooler-missing"]["pooler"]["verdict"]) == ("failed", "missing")
    assert models["pooler-missing"]["pooler"]["evidence"]["missing_at_load"] == ["pooler.dense.bias", "pooler.dense.weight"]
    assert models["bert"]["loads"] == models["pooler-missing"]["loads"] == 1
    assert set(report["environment"]) == {"python", "torch", "transformers", "device", "dtype"}
    assert report["environment"]["device"] == "cpu"  # where it ran (auto resolved), also from xdist workers
    assert all(check["detail"] for check in report["checks"]), [check["check"] for check in report["checks"] if not check["detail"]]
    failed = {check["check"] for check in report["checks"] if check["outcome"] == "failed"}
    assert failed == {"pooler_provenance"} and all(c["model"] == "pooler-missing" for c in report["checks"] if c["outcome"] == "failed")

    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")} for case in junit.iter("testcase")}
    provenance = {name: props for name, props in cases.items() if props.get("bertprobe.check") == "pooler_provenance"}
    assert {props["bertprobe.model"] for props in provenance.values()} == {"bert", "pooler-missing"}
    assert all("bertprobe.metrics" in props for props in provenance.values())

    output.fnmatch_lines([
        "*= bertprobe =*",
        "bert *bert *standard/tanh *trained *[1-9]* 0 *",
        "pooler-missing *bert *standard/tanh *missing *[1-9]* 1 *",
        "pooler-missing: pooler_provenance: failed: pooler provenance is 'missing', expected 'trained' or 'untrained':",
    ])
    output.fnmatch_lines(["bertprobe: JSON report written to */report.json", "bertprobe: Markdown summary written to */summary.md"])
    assert "| pooler-missing | bert | BertModel | standard/tanh | missing |" in markdown and "### Failed checks" in markdown


def test_xdist_outcomes_equal_the_serial_run(runs: dict[str, tuple[Any, ...]]) -> None:
    serial, parallel = runs["serial"][2], runs["xdist"][2]
    assert _outcomes(serial) == _outcomes(parallel)
    assert {m["id"]: m["pooler"]["verdict"] for m in serial["models"]} == {m["id"]: m["pooler"]["verdict"] for m in parallel["models"]}
