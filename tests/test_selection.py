"""Audit checks are selected by the names the reports use: `-k`, `-m "bertprobe_audit(check=...)"`, `--bert-checks`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_bertprobe.catalogue import NAMES

Factory = Callable[..., Path]


def _collected(result: pytest.RunResult) -> list[str]:
    """The test names `--collect-only -q` lists, without their checkpoint id."""
    return [line.split("::")[-1].split("[")[0] for line in result.stdout.lines if "::" in line]


def test_every_audit_test_carries_its_check_name_as_a_keyword(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    items, _ = pytester.inline_genitems(f"--bert-model={tiny_checkpoint('bert')}")
    checks = {item.get_closest_marker("bertprobe_audit").kwargs["check"]: item for item in items}  # type: ignore[union-attr]
    assert sorted(checks) == sorted(NAMES)
    for name, item in checks.items():
        assert name in item.listextrakeywords(), item.nodeid


def test_k_selects_checks_by_name_and_runs_them(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    model = f"--bert-model={tiny_checkpoint('bert')}"
    pytester.makepyfile(test_mine="def test_mine(bert_model):\n    pass\n")
    one = pytester.runpytest(model, "-k", "padding_invariance", "-v")
    one.assert_outcomes(passed=1)  # the function is test_each_sentence_alone_matches_its_padded_row
    one.stdout.fnmatch_lines(["*test_each_sentence_alone_matches_its_padded_row?bert? PASSED*"])
    two = pytester.runpytest(model, "--collect-only", "-q", "-k", "token_coverage or tokenizer_pad_id or test_mine")
    assert sorted(_collected(two)) == ["test_declared_languages_are_covered", "test_mine", "test_pad_ids_agree"]
    marked = pytester.runpytest(model, "--collect-only", "-q", "-m", "bertprobe_audit(check='padding_invariance')")
    assert _collected(marked) == ["test_each_sentence_alone_matches_its_padded_row"]


def test_bert_checks_and_skip_checks_choose_audit_tests_and_keep_yours(pytester: pytest.Pytester, tiny_checkpoint: Factory) -> None:
    model = f"--bert-model={tiny_checkpoint('bert')}"
    pytester.makepyfile(test_mine="def test_mine(bert_model):\n    pass\n")
    chosen = pytester.runpytest(model, "--collect-only", "-q", "--bert-checks=padding_invariance, pooler_relation")
    assert sorted(_collected(chosen)) == ["test_each_sentence_alone_matches_its_padded_row", "test_mine", "test_pooler_is_dense_tanh_of_cls"]
    pytester.makeini("[pytest]\nbert_skip_checks = onnx_agreement save_load_round_trip\n")
    skipped = pytester.runpytest(model, "--collect-only", "-q")
    names = _collected(skipped)
    assert len(names) == len(NAMES) - 2 + 1 and "test_save_and_load_give_identical_outputs" not in names and "test_mine" in names
