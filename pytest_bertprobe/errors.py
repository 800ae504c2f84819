"""How a check says it failed or does not apply: one failure type that carries its numbers (docs/DESIGN.md §4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_bertprobe.compare import Gap


class NotApplicable(ValueError):
    """A check that does not apply to this model (no pooler, no heads, one attention kernel); says why.

    The audit turns it into a skip with the message as the reason.
    """


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
