"""Options parse as documented, and a bad --bert-model is one usage line with exit code 4."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import assert_usage_error


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


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("--bert-dtype=float64", "--bert-dtype=float64: not a dtype; use one of float32, bfloat16, float16"),
        ("--bert-device=gpu", "--bert-device=gpu: not a device; use auto, cpu, cuda or cuda:N"),
    ],
)
def test_invalid_dtype_or_device_is_a_usage_error(pytester: pytest.Pytester, argument: str, message: str) -> None:
    assert_usage_error(pytester.runpytest(argument), message)


def test_missing_path_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "checkpoint"
    assert_usage_error(pytester.runpytest(f"--bert-model={missing}"), f"--bert-model '{missing}': no such folder")


def test_folder_without_config_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    assert_usage_error(
        pytester.runpytest(f"--bert-model={tmp_path}"),
        f"--bert-model '{tmp_path}': folder has no config.json, so it is not a checkpoint",
    )


def test_unreachable_hub_id_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_usage_error(
        pytester.runpytest_subprocess("--bert-model=bertprobe-tests/does-not-exist"),
        "--bert-model 'bertprobe-tests/does-not-exist': no such local folder, and the hub id could not be fetched *"
        "; check the path, or run where the Hugging Face Hub is reachable",
    )
