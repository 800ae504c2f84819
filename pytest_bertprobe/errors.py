"""Every exception the plugin raises, and the numbers a failure carries (docs/DESIGN.md §4).

A check that fails raises `CheckFailure` (an `AssertionError`) or a subclass; a check that does not apply
raises `NotApplicable` (a `ValueError`) or a subclass, which the audit turns into a skip. A checkpoint that
cannot be audited is a `CheckpointError` (one line for the user, exit 4); a forward pass that raises is a
`ForwardError`, which the check that owns its cause reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pytest

_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Gap:
    """How far two tensors are apart, and where: the metrics a report or a message needs."""

    shape: tuple[int, ...]
    elements: int
    mismatched: int
    nonfinite: int
    max_abs: float
    max_abs_index: tuple[int, ...]
    max_rel: float
    max_rel_index: tuple[int, ...]
    atol: float
    rtol: float
    relation: str = "close"  # "apart" when the tensors were required to differ

    def metrics(self) -> dict[str, Any]:
        """Plain-JSON view for reports."""
        return asdict(self)


def first_line(error: BaseException) -> str:
    """`Type: message` of an exception on one line, shortened (its traceback never), for one-line messages."""
    # Lines joined: some messages end their first line with a colon (pydantic-style validation errors).
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class NotApplicable(ValueError):
    """A check that does not apply to this model (no pooler, no heads, one attention kernel); says why.

    The audit turns it into a skip with the message as the reason.
    """


class NoPoolerError(NotApplicable):
    """Raised by pooler assertions on a model whose pooler checks do not apply; says why."""


class NoHeadError(NotApplicable):
    """Raised when a model has no head of the kind asked for; says why."""


class UnsupportedPoolingError(NotApplicable):
    """The sentence-transformers config is valid but selects a pooling the audit does not compute."""


class EmbeddingConfigError(ValueError):
    """The sentence-transformers files beside the weights are unreadable or say nothing usable."""


class UnreadableJson(ValueError):
    """Why a JSON file cannot be read, as the end of a sentence naming it ("is not valid JSON (...)")."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


class CheckpointError(Exception):
    """A checkpoint that cannot be audited; the message is one line for the user."""


class ReportError(ValueError):
    """A report `bertprobe-report` cannot read or merge (a missing shard, another plugin version); one line, exit 4."""


class LoadFailure(pytest.exit.Exception):  # type: ignore[misc,name-defined]
    """A checkpoint could not be loaded mid-run; the message is the run's one usage-error line."""


class ForwardError(RuntimeError):
    """A model's forward pass raised on an input; `owner` is the audit check that reports it (a RuntimeError, as most crashes are)."""

    def __init__(self, message: str, *, owner: str, metrics: dict[str, Any]) -> None:
        super().__init__(message)
        self.owner = owner
        self.metrics = metrics

    @property
    def skip_reason(self) -> str:
        """Why a check that needed this pass, but does not own the finding, skips."""
        return f"the forward pass this check needs raised ({str(self).splitlines()[0]}); {self.owner} reports it"


class CheckFailure(AssertionError):
    """A check's failure: what differs, the lines that locate it, the hint, and the metrics a report keeps.

    It renders itself like `torch.testing.assert_close`: the message, the detail lines, then `Hint: ...`.
    `metrics` is None when the failure has no numbers of its own (the report keeps the check's passing ones).
    """

    def __init__(
        self, message: str, *, details: Sequence[str] = (), hint: str = "", metrics: dict[str, Any] | None = None
    ) -> None:
        self.message, self.details, self.hint, self.metrics = message, tuple(details), hint, metrics
        super().__init__(self.render())

    def render(self) -> str:
        """The full text: message, details, hint."""
        return "\n".join([self.message, *self.details, *([f"Hint: {self.hint}"] if self.hint else [])])

    @property
    def kind(self) -> str:
        """The name a report shows: AssertionError for a plain failure, else the subclass's."""
        return "AssertionError" if type(self) is CheckFailure else type(self).__name__


class Mismatch(CheckFailure):
    """Two tensors are not close (or not apart): the failure carries their `Gap`."""

    def __init__(self, message: str, gap: Gap, *, details: Sequence[str] = (), hint: str = "") -> None:
        super().__init__(message, details=details, hint=hint, metrics=gap.metrics())
        self.gap = gap


class ContractViolation(CheckFailure):
    """A broken tokenizer contract; carries the metrics measured on the way."""

    def __init__(
        self, message: str, metrics: dict[str, Any] | None = None, *, details: Sequence[str] = (), hint: str = ""
    ) -> None:
        super().__init__(message, details=details, hint=hint, metrics=metrics)


class SnapshotError(CheckFailure):
    """A snapshot file that cannot be read; the message says which and how to fix it."""
