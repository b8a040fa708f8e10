"""Content read from storage is untrusted: anyone who can write the bucket can write it.

mbackup's own objects (the checksum manifest, the in-progress marker, the lock, the
restore journal) are parsed here: a size cap, a nesting cap (Python's parser recurses, so
deep nesting raised RecursionError), then a shape check that names the path of the first
thing wrong (a ValueError: the caller names the object and says what to do). A damaged
object becomes one line, never a traceback, and no value from it reaches a key unchecked.
The backup meta files have their own reader (meta.py), which uses the same nesting cap.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# mbackup's own objects and the Go tool's meta nest about a dozen levels deep.
MAX_DEPTH = 64
INT_MAX = (1 << 63) - 1


class _Wrong(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)


def too_deep(tree: Any, limit: int = MAX_DEPTH) -> bool:
    """Does the parsed JSON nest more than ``limit`` arrays or objects? (Iterative: a deep
    tree must not exhaust the stack of whatever walks it next.)"""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def shown(text: str) -> str:
    """``text`` (a key or name read from storage) as one printable line: quoted when it holds
    a line break or another control character, so it cannot forge lines of output."""
    return text if text.isprintable() else repr(text)


def load_json(data: bytes, max_bytes: int = 1 << 30) -> Any:
    """Parse ``data``; raises ValueError saying what is wrong with it."""
    if len(data) > max_bytes:
        raise ValueError(f"{len(data):,} bytes, more than the {max_bytes:,} it can be")
    if not data.strip():
        raise ValueError("empty")
    try:
        tree = json.loads(data.decode("utf-8", errors="replace"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"nests more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    if too_deep(tree):
        raise ValueError(f"nests more than {MAX_DEPTH} levels deep")
    return tree


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse(data: bytes, shape: Any, max_bytes: int = 1 << 30) -> Any:
    """``data`` parsed and checked against ``shape``; ValueError naming the first problem."""
    tree = load_json(data, max_bytes)
    try:
        check(tree, shape, "")
    except _Wrong as e:
        raise ValueError(str(e)) from None
    return tree


# --------------------------------------------------------------------------------------
# Shapes: a small language for what a JSON value must be.
#   str, bool, Count (an int 0..2**63-1), Number (finite), Text(regex), OneOf(strings),
#   Optional(shape), Obj(required={...}, optional={...}) and Map(value shape, key regex).


class Count:
    """A non-negative integer that fits int64 (sizes, counts, ids, pids)."""


class Number:
    """A finite number (a time in seconds)."""


class Text:
    def __init__(self, pattern: str, what: str) -> None:
        self.pattern, self.what = re.compile(pattern), what


class OneOf:
    """One of a few strings."""

    def __init__(self, *values: str) -> None:
        self.values = values


class Optional:
    def __init__(self, shape: Any) -> None:
        self.shape = shape


class Obj:
    def __init__(self, required: dict[str, Any], optional: dict[str, Any] | None = None) -> None:
        self.required, self.optional = required, optional or {}


class Map:
    def __init__(self, value: Any, key: Text | None = None) -> None:
        self.value, self.key = value, key


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _at(path: str, key: str) -> str:
    if re.fullmatch(r"\w+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def check(value: Any, shape: Any, path: str) -> None:
    if isinstance(shape, Optional):
        if value is not None:
            check(value, shape.shape, path)
    elif shape is str:
        if not isinstance(value, str):
            raise _Wrong(path, f"expected a string, got {_show(value)}")
    elif shape is bool:
        if not isinstance(value, bool):
            raise _Wrong(path, f"expected true or false, got {_show(value)}")
    elif shape is Count:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_MAX:
            raise _Wrong(path, f"expected a non-negative integer, got {_show(value)}")
    elif shape is Number:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Wrong(path, f"expected a number, got {_show(value)}")
    elif isinstance(shape, Text):
        if not isinstance(value, str) or not shape.pattern.fullmatch(value):
            raise _Wrong(path, f"expected {shape.what}, got {_show(value)}")
    elif isinstance(shape, OneOf):
        if not isinstance(value, str) or value not in shape.values:
            raise _Wrong(path, f"expected one of {', '.join(map(json.dumps, shape.values))}, got {_show(value)}")
    elif isinstance(shape, Obj):
        if not isinstance(value, dict):
            raise _Wrong(path, f"expected an object, got {_show(value)}")
        for key, inner in shape.required.items():
            if key not in value:
                raise _Wrong(_at(path, key), "missing")
            check(value[key], inner, _at(path, key))
        for key, inner in shape.optional.items():
            if key in value:
                check(value[key], inner, _at(path, key))
    elif isinstance(shape, Map):
        if not isinstance(value, dict):
            raise _Wrong(path, f"expected an object, got {_show(value)}")
        for key, inner in value.items():
            if shape.key is not None and not shape.key.pattern.fullmatch(key):
                raise _Wrong(_at(path, key), f"expected a key that is {shape.key.what}")
            check(inner, shape.value, _at(path, key))
    elif isinstance(shape, list):  # [item shape]: an array of them
        if not isinstance(value, list):
            raise _Wrong(path, f"expected an array, got {_show(value)}")
        for i, item in enumerate(value):
            check(item, shape[0], f"{path}[{i}]")
    else:
        raise TypeError(f"unknown shape {shape!r}")


# Keys relative to a backup dir, as the manifest lists them: no empty, '.' or '..'
# element, no backslash or NUL, so that no key built from one leaves the dir.
RELATIVE_KEY = Text(r"(?!.*(?:^|/)\.{1,2}(?:/|$))[^/\\\x00]+(?:/[^/\\\x00]+)*", "a key inside the backup")
