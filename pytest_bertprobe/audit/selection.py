"""Selecting audit checks by the names the reports use: `-k CHECK`, `-m "bertprobe_audit(check='CHECK')"`,
`--bert-checks` and `--bert-skip-checks`.

An audit test's function name says what it proves (`test_each_sentence_alone_matches_its_padded_row`); its check's
catalogue name (`padding_invariance`) is what the terminal, JSON and HTML reports show. Each audit test gets that
name as a `-k` keyword when it is collected.
"""

from __future__ import annotations

import pytest

from pytest_bertprobe.options import Settings


def check_of(item: pytest.Item) -> str | None:
    """The catalogue name of an audit test (its `bertprobe_audit` marker's `check`), or None for any other test."""
    marker = item.get_closest_marker("bertprobe_audit")
    return str(marker.kwargs["check"]) if marker is not None and "check" in marker.kwargs else None


def add_check_keyword(item: pytest.Item) -> None:
    """Let `-k CHECK` select an audit test by its check's name."""
    check = check_of(item)
    if check is not None:
        item.extra_keyword_matches.add(check)


def unselected(items: list[pytest.Item], settings: Settings) -> list[pytest.Item]:
    """The audit tests `--bert-checks` leaves out or `--bert-skip-checks` names; other tests are never unselected."""
    if not settings.checks and not settings.skip_checks:
        return []
    return [
        item
        for item in items
        if (check := check_of(item)) is not None
        and ((settings.checks and check not in settings.checks) or check in settings.skip_checks)
    ]
