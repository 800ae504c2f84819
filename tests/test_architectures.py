"""The whole family: where each tiny architecture keeps its pooler, and the audit on all twelve."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bertprobe import SEED_SENTENCES
from pytest_bertprobe.checkpoint.anatomy import PoolerKind, describe_pooler
from pytest_bertprobe.forward.cache import encode, forward
from pytest_bertprobe.testing import ARCHITECTURES

WITH_POOLER = {"bert", "roberta", "xlm-roberta", "albert", "mobilebert", "mpnet", "big_bird", "ernie"}
WITHOUT_POOLER = {"electra", "distilbert", "deberta-v2", "modernbert"}


def test_the_tables_cover_every_tiny_architecture() -> None:
    assert WITH_POOLER | WITHOUT_POOLER == set(ARCHITECTURES) and len(ARCHITECTURES) == 12


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_anatomy_finds_the_pooler_and_its_activation_numerically(arch: str, tiny_checkpoint: Callable[..., Path]) -> None:
    from transformers import AutoModel, AutoTokenizer

    path = tiny_checkpoint(arch)
    model = AutoModel.from_pretrained(path).eval()
    anatomy = describe_pooler(model, forward(model, encode(AutoTokenizer.from_pretrained(path), SEED_SENTENCES)))
    if arch in WITH_POOLER:
        assert (anatomy.kind, anatomy.activation, anatomy.reads_last_hidden_state) == (PoolerKind.STANDARD, "tanh", True)
        assert anatomy.dense is not None and anatomy.dense.in_features == anatomy.dense.out_features
    else:
        assert anatomy.kind is PoolerKind.ABSENT
        assert anatomy.reason.endswith("has no pooler: use last_hidden_state")


def test_audit_passes_every_architecture_or_skips_saying_why(
    pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]
) -> None:
    arguments = [f"--bert-model={tiny_checkpoint(arch)}" for arch in ARCHITECTURES]
    result = pytester.runpytest(*arguments, "--bert-report-json=report.json", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    assert {model["id"]: model["outcome"] for model in report["models"]} == {arch: "passed" for arch in ARCHITECTURES}
    pooler_checks = [check for check in report["checks"] if check["check"] in ("pooler_relation", "cls_differs_from_pooler")]
    assert len(pooler_checks) == 2 * len(ARCHITECTURES)
    for check in pooler_checks:
        if check["model"] in WITH_POOLER:
            assert check["outcome"] == "passed", check
        else:
            assert check["outcome"] == "skipped" and check["metrics"]["reason"].endswith("has no pooler: use last_hidden_state")
    verdicts = {model["id"]: model["pooler"]["verdict"] for model in report["models"]}
    assert verdicts == {arch: "trained" if arch in WITH_POOLER else "absent" for arch in ARCHITECTURES}
