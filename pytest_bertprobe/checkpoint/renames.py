"""Explain missing keys by the file's unused ones: a prefix added or dropped, or one name part written otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Rename:
    """A consistent substitution from the file's keys to the model's, and the missing keys it explains."""

    description: str
    example: tuple[str, str]  # (key in the file, key the model reads)
    explains: int

    def metrics(self) -> dict[str, object]:
        """Plain JSON."""
        return {"substitution": self.description, "example": list(self.example), "explains": self.explains}


def find_renames(missing: Collection[str], unused: Collection[str]) -> list[Rename]:
    """Substitutions that map unused file keys one-to-one onto missing model keys, most explaining first."""
    related = _pairs(set(missing), set(unused))
    partners = Counter(u for u, _ in {pair for _, pair in related}) + Counter(m for _, m in {pair for _, pair in related})
    candidates: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for rule, (u, m) in related:
        # One-to-one only: a key that pairs with two others is ambiguous, not a rename.
        if partners[u] == 1 and partners[m] == 1:
            candidates.setdefault(rule, []).append((u, m))
    ordered = sorted(candidates.items(), key=lambda item: (-len(item[1]), item[0]))
    return [Rename(_describe(rule), min(pairs), len(pairs)) for rule, pairs in ordered]


def _pairs(missing: set[str], unused: set[str]) -> list[tuple[tuple[str, str, str], tuple[str, str]]]:
    """(rule, (file key, model key)) for every pair one rule relates; rules: prefix added/dropped, a part replaced."""
    found = _prefixed(unused, missing, "added") + _prefixed(missing, unused, "dropped")
    by_shape: dict[tuple[int, tuple[str, ...]], list[tuple[str, str]]] = {}
    for m in missing:
        parts = m.split(".")
        for i in range(len(parts)):
            by_shape.setdefault((i, (*parts[:i], "", *parts[i + 1 :])), []).append((m, parts[i]))
    for u in unused:
        parts = u.split(".")
        for i in range(len(parts)):
            for m, part in by_shape.get((i, (*parts[:i], "", *parts[i + 1 :])), ()):
                if part != parts[i]:
                    found.append((("replaced", parts[i], part), (u, m)))
    return found


def _prefixed(longer: set[str], shorter: set[str], kind: str) -> list[tuple[tuple[str, str, str], tuple[str, str]]]:
    """Keys of `longer` that are a key of `shorter` behind a prefix: (file key, model key) by `kind` of prefix."""
    found = []
    for key in longer:
        parts = key.split(".")
        for cut in range(1, len(parts)):
            rest = ".".join(parts[cut:])
            if rest in shorter:
                found.append(((kind, ".".join(parts[:cut]) + ".", ""), (key, rest) if kind == "added" else (rest, key)))
    return found


def _describe(rule: tuple[str, str, str]) -> str:
    kind, one, other = rule
    if kind == "added":
        return f"the file adds the prefix {one!r}"
    if kind == "dropped":
        return f"the file drops the prefix {one!r}"
    return f"the file writes {one!r} where the model reads {other!r}"
