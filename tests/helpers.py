"""Small assertions shared by this repo's tests."""

from __future__ import annotations

import pytest


def assert_usage_error(result: pytest.RunResult, pattern: str) -> None:
    """Exit code 4, one `ERROR:` line matching `pattern` (fnmatch), and no traceback in the output."""
    __tracebackhide__ = True
    output = result.stdout.lines + result.stderr.lines
    assert result.ret == pytest.ExitCode.USAGE_ERROR, "\n".join(output)
    errors = [line for line in output if line.startswith("ERROR:")]
    assert len(errors) == 1, "\n".join(output)
    result.stderr.fnmatch_lines([f"ERROR: {pattern}"])
    assert not any("Traceback" in line for line in output), "\n".join(output)
