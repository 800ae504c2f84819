"""The plugin costs nothing when unused: no torch, no transformers at import or without --bert-model."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers")


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
