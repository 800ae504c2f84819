"""The whole family: where each tiny architecture keeps its pooler, and the audit on all twelve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bertprobe import SEED_SENTENCES
from pytest_bertprobe.anatomy import PoolerKind, describe_pooler
from pytest_bertprobe.probes import encode, run
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
    anatomy = describe_pooler(model, run(model, encode(AutoTokenizer.from_pretrained(path), SEED_SENTENCES)))
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
    result = pytester.runpytest(*arguments, "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2 * len(WITH_POOLER), skipped=2 * len(WITHOUT_POOLER))
    result.stdout.fnmatch_lines([
        "*SKIPPED [[]2[]]*ElectraModel (electra) has no pooler: use last_hidden_state",
        "*SKIPPED [[]2[]]*DistilBertModel (distilbert) has no pooler: use last_hidden_state",
        "*SKIPPED [[]2[]]*DebertaV2Model (deberta-v2) has no pooler: use last_hidden_state",
        "*SKIPPED [[]2[]]*ModernBertModel (modernbert) has no pooler: use last_hidden_state",
    ])
