"""The plugin costs nothing when unused: no torch, no transformers at import or without --bert-model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import assert_usage_error

HEAVY = ("torch", "transformers", "matplotlib")  # matplotlib: only with --bert-report-html
# Only for a checkpoint with that artefact (modules.json, an ONNX export) or the option that asks for it.
OPTIONAL = ("sentence_transformers", "onnxruntime", "onnx", "matplotlib")


def test_importing_the_plugin_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, pytest_bertprobe, pytest_bertprobe.plugin\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_run_without_bert_model_imports_no_torch(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        f"""
        import sys
        def pytest_sessionfinish(session):
            print("HEAVY:", sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*HEAVY: []*"])


def test_pytest_version_imports_no_torch(pytester: pytest.Pytester) -> None:
    code = (
        "import sys, pytest\n"
        "pytest.main(['--version'])\n"
        f"print('HEAVY:', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = pytester.run(sys.executable, "-c", code)
    result.stdout.fnmatch_lines(["HEAVY: []"])


USES_FIXTURES = (
    "def test_plain():\n    pass\n"
    "def test_uses_model(bert_model):\n    pass\n"
    "def test_uses_tokenizer(bert_tokenizer):\n    pass\n"
)


def test_bert_fixtures_skip_with_a_reason_when_no_model_is_given(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_FIXTURES)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*no checkpoint to audit: pass --bert-model=PATH_OR_HUB_ID*"])
    # Without -rs too: a green run that audited nothing says so where CI logs end.
    result.stdout.fnmatch_lines([
        "*= bertprobe =*",
        "bertprobe: 2 tests skipped: no checkpoint given (pass --bert-model=PATH_OR_HUB_ID or set bert_models in your ini; "
        "--bert-require-model makes this an error)",
    ])


@pytest.mark.parametrize("required_by", ["option", "ini"])
def test_with_bert_require_model_a_test_without_a_checkpoint_is_a_usage_error(pytester: pytest.Pytester, required_by: str) -> None:
    pytester.makepyfile(USES_FIXTURES)
    if required_by == "ini":
        pytester.makeini("[pytest]\nbert_require_model = true\n")
    result = pytester.runpytest(*(["--bert-require-model"] if required_by == "option" else []))
    assert_usage_error(
        result,
        "2 tests use the plugin's fixtures (bert_model, bert_tokenizer) but no checkpoint was given, and --bert-require-model "
        "makes that an error: pass --bert-model=PATH_OR_HUB_ID or set bert_models in your ini",
    )
    assert "passed" not in result.stdout.str()  # stopped before the first test ran


def test_bert_require_model_lets_a_suite_that_uses_no_fixture_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    pytester.runpytest("--bert-require-model").assert_outcomes(passed=1)


def test_an_audit_run_lets_waiting_threads_sleep_unless_the_user_chose(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Callable[..., Path]
) -> None:
    pytester.makeconftest("import os\ndef pytest_unconfigure(config):\n    print('OMP:', os.environ.get('OMP_WAIT_POLICY'))\n")
    checkpoint = tiny_checkpoint("bert")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    pytester.runpytest_subprocess(f"--bert-model={checkpoint}", "--co", "-s").stdout.fnmatch_lines(["OMP: PASSIVE"])
    pytester.runpytest_subprocess("--co", "-s").stdout.fnmatch_lines(["OMP: None"])  # no checkpoint: nothing touched
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    pytester.runpytest_subprocess(f"--bert-model={checkpoint}", "--co", "-s").stdout.fnmatch_lines(["OMP: ACTIVE"])


def test_an_audit_without_optional_artefacts_imports_no_optional_dependency(
    pytester: pytest.Pytester, tiny_checkpoint: Callable[..., Path]
) -> None:
    pytester.makeconftest(
        f"""
        import sys
        def pytest_sessionfinish(session):
            print("OPTIONAL:", sorted(m for m in {OPTIONAL!r} if m in sys.modules))
        """
    )
    result = pytester.runpytest_subprocess(f"--bert-model={tiny_checkpoint('bert')}", "-s", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*OPTIONAL: []*"])
