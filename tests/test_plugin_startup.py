"""The plugin costs nothing when unused: no torch, no transformers at import or without --bert-model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

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


def test_bert_fixtures_skip_with_a_reason_when_no_model_is_given(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses_model(bert_model):\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no checkpoint to audit: pass --bert-model=PATH_OR_HUB_ID*"])


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
