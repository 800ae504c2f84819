"""One reader for a checkpoint's JSON files: the value, or the reason it cannot be read, in words."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from pytest_bertprobe.checkpoint.boundary import file_problem
from pytest_bertprobe.errors import UnreadableJson

MAX_JSON_DEPTH = 64  # real configs nest 3 or 4 levels; Python's json recursion limit is near 1000
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON `text` (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_json(path: Path) -> Any:
    """The JSON value in `path`; `UnreadableJson` when it is missing, not a regular file (never opened then: a named
    pipe blocks), unreadable, not JSON, absurdly deep, or holds an integer Python will not read."""
    if not os.path.lexists(path):
        raise UnreadableJson("is missing", missing=True)
    problem = file_problem(path)
    if problem:
        raise UnreadableJson(problem)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnreadableJson("is missing", missing=True) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableJson(f"is not valid JSON ({error})") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise UnreadableJson(f"nests deeper than {MAX_JSON_DEPTH} levels, which no config needs")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise UnreadableJson(f"is not valid JSON ({error})") from None
    except ValueError:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise UnreadableJson(_long_integer(text)) from None


class _LongInteger:
    """Stands for an integer literal too long to convert, so the parse can go on and say where it is."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _long_integer(text: str) -> str:
    """Where the integer too long to read sits in JSON `text`, in words (its key path)."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300

    def parse(literal: str) -> Any:
        digits = len(literal.lstrip("-"))
        return _LongInteger(digits) if limit and digits > limit else int(literal)

    def find(value: Any, path: str) -> tuple[str, int] | None:
        if isinstance(value, _LongInteger):
            return path, value.digits
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            found = find(item, f"{path}.{key}" if path and isinstance(key, str) else f"{path}[{key}]" if path else str(key))
            if found:
                return found
        return None

    try:
        where = find(json.loads(text, parse_int=parse), "")
    except ValueError:
        where = None
    if where is None:
        return "holds a number Python cannot read"
    key, digits = where
    return f"holds an integer of {digits} digits at key {key!r}, past Python's limit of {limit} digits (no config needs one)"


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when there is no such file or it holds another JSON value (`UnreadableJson` when unreadable)."""
    if not path.is_file():
        return {}
    value = read_json(path)
    return value if isinstance(value, dict) else {}
