"""The Go tool's JSON facts (tests/compat/go_facts/, made by tests/compat/derive_go_facts.py):
a conformance check of a JSON document against them, and documents generated from them."""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

FACTS_DIR = Path(__file__).resolve().parent / "compat" / "go_facts"
TARGETS = ("HEAD", "v0.5.16")  # the versions mbackup is compatible with


@functools.cache
def facts(version: str) -> dict:
    return json.loads((FACTS_DIR / f"{version}.json").read_text())


def _empty(value: Any, spec: dict) -> bool:
    """What Go's omitempty leaves out: zero numbers, false, "", nil, empty slices and maps
    (but a non-nil pointer to an empty struct is still written, as {})."""
    if spec["json_type"] == "object":
        return value is None
    return value is None or (not isinstance(value, (dict, list)) and value in (0, False, "")) or value in ([], {})


def _type_problem(value: Any, spec: dict, f: dict, path: str, out: list[str]) -> None:
    jt = spec["json_type"]
    if jt == "string" or jt == "string(base64)":
        ok = isinstance(value, str)
    elif jt == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif jt == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif jt == "boolean":
        ok = isinstance(value, bool)
    elif jt == "object":
        ok = isinstance(value, dict)
        if ok:
            out.extend(problems(value, spec["message"], f, path))
    elif jt == "array":
        ok = isinstance(value, list)
        if ok:
            for i, item in enumerate(value):
                _type_problem(item, spec["items"], f, f"{path}[{i}]", out)
    elif jt == "object(map)":
        ok = isinstance(value, dict) and list(value) == sorted(value)
        if ok:
            for k, v in value.items():
                _type_problem(v, spec["values"], f, f"{path}.{k}", out)
    elif jt == "object(oneof)":
        ok = isinstance(value, dict) and len(value) == 1 and next(iter(value)) in spec["variants"]
        if ok:
            (name, v), = value.items()
            _type_problem(v, spec["variants"][name], f, f"{path}.{name}", out)
    else:  # "any": an external message, written by its own rules
        ok = True
    if not ok:
        out.append(f"{path}: {json.dumps(value)[:60]} is not {jt}" + (" with sorted keys" if jt == "object(map)" else ""))


def problems(doc: Any, message: str, f: dict, path: str = "") -> list[str]:
    """Where ``doc`` differs from what Go's encoding/json writes for ``message``: unknown
    keys, keys out of struct order, wrong JSON types, a key Go always writes missing, or a
    zero value Go would have left out. Empty when it conforms."""
    if not isinstance(doc, dict):
        return [f"{path or message}: not an object"]
    fields = f["messages"][message]["fields"]
    order = [x["json"] for x in fields]
    out = []
    unknown = [k for k in doc if k not in order]
    if unknown:
        out.append(f"{path or message}: keys {unknown} are not fields of {message}")
    known = [k for k in doc if k in order]
    if known != sorted(known, key=order.index):
        out.append(f"{path or message}: keys {known} are not in {message}'s field order {order}")
    for spec in fields:
        key = spec["json"]
        where = f"{path}.{key}" if path else key
        if key not in doc:
            if not spec["omitempty"]:
                out.append(f"{where}: missing; Go always writes it")
            continue
        value = doc[key]
        if spec["omitempty"] and _empty(value, spec):
            out.append(f"{where}: {json.dumps(value)} is empty; Go's omitempty leaves it out")
            continue
        _type_problem(value, spec, f, where, out)
    return out


class _Values:
    """Distinct non-zero values, so that a value read into the wrong field shows."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


def every_key(message: str, f: dict, values: _Values | None = None) -> dict:
    """A document of ``message`` that uses every key of it and of every message inside it,
    each with a non-empty value, in the order Go writes them."""
    values = values or _Values()
    return {spec["json"]: _value(spec, f, values, f"{message}.{spec['json']}") for spec in f["messages"][message]["fields"]}


def _value(spec: dict, f: dict, values: _Values, label: str) -> Any:
    jt, n = spec["json_type"], values.next()
    # Strings are unique and name their field, spelled as a Milvus name must be (letters,
    # digits and _), since names are checked when a backup is read.
    text = re.sub(r"\W", "_", f"{label}_{n}")
    if jt == "string":
        return text
    if jt == "string(base64)":
        return base64.b64encode(text.encode()).decode()
    if jt == "integer":
        if "enum" in spec:  # the largest value the enum declares
            return max(int(v) for v in f["enums"][spec["enum"]])
        go = spec["go_type"]
        # Past 2**53 (floats lose it), and for uint64 past 2**63 (int64 loses it).
        return {"uint64": 2**63 + n, "int64": 2**62 + n}.get(go, n)
    if jt == "number":
        return n + 0.5
    if jt == "boolean":
        return True
    if jt == "object":
        return every_key(spec["message"], f, values)
    if jt == "array":
        return [_value(spec["items"], f, values, label)]
    if jt == "object(map)":
        return {f"k{n}a": _value(spec["values"], f, values, label), f"k{n}b": _value(spec["values"], f, values, label)}
    if jt == "object(oneof)":
        name, variant = next(iter(spec["variants"].items()))
        return {name: _value(variant, f, values, label)}
    raise AssertionError(f"no generator for {jt} ({label})")


def go_compact(doc: Any) -> bytes:
    """``doc`` as Go's json.Marshal writes it, for documents of ASCII strings, ints and bools
    (what every_key makes): no HTML or Unicode escapes to apply."""
    return json.dumps(doc, separators=(",", ":")).encode()


def strip_cleared(doc, message: str, cleared: dict, f: dict):
    """``doc`` without the keys a builder sets to nil, at any depth."""
    if not isinstance(doc, dict):
        return doc
    out = {}
    for spec in f["messages"][message]["fields"]:
        key = spec["json"]
        if key not in doc or key in cleared.get(message, ()):
            continue
        inner = spec.get("message") or spec.get("items", {}).get("message")
        value = doc[key]
        if inner and isinstance(value, list):
            value = [strip_cleared(v, inner, cleared, f) for v in value]
        elif inner:
            value = strip_cleared(value, inner, cleared, f)
        out[key] = value
    return out
