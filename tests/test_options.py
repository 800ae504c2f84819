"""Options and ini keys parse as documented (bad values: tests/test_bad_input.py)."""

from __future__ import annotations

import pytest

from tests.helpers import assert_one_failure, assert_usage_error


def test_help_lists_every_option_with_its_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "bertprobe: audit BERT-family checkpoints:",
        "*--bert-model=PATH_OR_HUB_ID",
        "*default: ini bert_models*",
        "*--bert-device=DEVICE*(default: auto*",
        "*--bert-dtype=DTYPE*(default: float32)*",
        "*--bert-revision=REV*",
        "*(default: the hub's default branch)*",
        "*--bert-no-audit*",
        "*bert_models (linelist):*",
    ])


def test_bert_model_is_repeatable_and_ids_are_unique(pytester: pytest.Pytester, tiny_checkpoint: object) -> None:
    bert = tiny_checkpoint("bert")  # type: ignore[operator]
    roberta = tiny_checkpoint("roberta")  # type: ignore[operator]
    pytester.makepyfile("def test_id(bert_checkpoint):\n    assert bert_checkpoint.id in ('bert', 'roberta')\n")
    result = pytester.runpytest("--bert-no-audit", f"--bert-model={bert}", f"--bert-model={roberta}", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*test_id?{bert.name}?*PASSED*", f"*test_id?{roberta.name}?*PASSED*"])


def test_ini_bert_models_is_used_when_no_option_is_given(pytester: pytest.Pytester, tiny_checkpoint: object) -> None:
    bert = tiny_checkpoint("bert")  # type: ignore[operator]
    pytester.makeini(f"[pytest]\nbert_models =\n    {bert}\n")
    pytester.makepyfile("def test_model(bert_model):\n    assert not bert_model.training\n")
    result = pytester.runpytest("--bert-no-audit")
    result.assert_outcomes(passed=1)


def test_the_same_folder_twice_loads_once(pytester: pytest.Pytester, tiny_checkpoint: object) -> None:
    bert = tiny_checkpoint("bert")  # type: ignore[operator]
    pytester.makepyfile("def test_model(bert_model):\n    pass\n")
    result = pytester.runpytest("--bert-no-audit", f"--bert-model={bert}", f"--bert-model={bert}")
    result.assert_outcomes(passed=1)


def test_ini_tolerance_override_is_applied(pytester: pytest.Pytester, tiny_checkpoint: object) -> None:
    bert = tiny_checkpoint("bert")  # type: ignore[operator]
    pytester.makeini("[pytest]\nbert_tolerances =\n    cls_differs_from_pooler = 100 0\n")
    result = pytester.runpytest(f"--bert-model={bert}", "-k", "cls_is_not_the_pooler")
    assert_one_failure(result, ["*Greatest absolute difference: * (more than 100 required)*"])


def test_bad_tolerance_line_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nbert_tolerances =\n    no_such_check = 1 2\n")
    assert_usage_error(
        pytester.runpytest(),
        "bert_tolerances line 'no_such_check = 1 2': use 'CHECK = ATOL RTOL' with CHECK one of pooler_relation, *",
    )
