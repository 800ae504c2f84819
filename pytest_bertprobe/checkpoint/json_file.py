"""One reader for a checkpoint's JSON files: the value, or the reason it cannot be read, in words."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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
    """The JSON value in `path`; `UnreadableJson` when it is missing, unreadable, not JSON or absurdly deep."""
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


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; {} when there is no such file or it holds another JSON value (`UnreadableJson` when unreadable)."""
    if not path.is_file():
        return {}
    value = read_json(path)
    return value if isinstance(value, dict) else {}
