"""A checkpoint that fails to load mid-run ends the run as a usage error: one `ERROR:` line, exit 4, under xdist too.

The fixtures load lazily, inside a test's setup, where a plain exception would error every test that shares
the fixture. `LoadFailure` is an `Exit`, which pytest lets through every test protocol; the run loop's
wrapper turns it into `pytest.UsageError`. An xdist worker hands the message to the controller instead
(`workeroutput`), and stops; the controller raises the same `UsageError` once its loop ends.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NoReturn

import pytest

from pytest_bertprobe.errors import LoadFailure

WORKER_OUTPUT_KEY = "bertprobe_load_failure"


def stop_run(message: str) -> NoReturn:
    """End the run with `message` as its one usage-error line."""
    raise LoadFailure(message, returncode=pytest.ExitCode.USAGE_ERROR)


class LoadFailureGuard:
    """Plugin object: the run loop's wrapper, and the controller's ear for its workers."""

    def __init__(self) -> None:
        self.worker_message: str | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        """Turn a load failure (here, or on a worker) into the run's usage error."""
        try:
            return (yield)
        except LoadFailure as failure:
            message = str(failure.msg)
        except KeyboardInterrupt:  # xdist's controller raises its own Interrupted when a worker asks to stop
            if self.worker_message is None:
                raise
            message = self.worker_message
        worker_output = getattr(session.config, "workeroutput", None)
        if worker_output is not None:  # an xdist worker: the controller says it, once
            worker_output[WORKER_OUTPUT_KEY] = message
            session.shouldstop = message
            return True
        raise pytest.UsageError(message) from None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Keep the first worker's load failure (xdist calls this on the controller as each worker ends)."""
        message = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if message and self.worker_message is None:
            self.worker_message = message
