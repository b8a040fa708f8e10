"""The v1 API's request bodies: their fields as the Go tool's protobuf messages name them
(current and deprecated), read the way Go's encoding/json reads them (keys matched exactly,
else case-insensitively; unknown keys ignored; null as absent), and checked: a value of the
wrong type is refused naming the field, as a 400 answer, never as a 500.
"""

from __future__ import annotations

import json
from typing import Any

# A field's expected JSON: "str", "bool", "int", "strs" (array of strings), "strmap" (object
# of strings), "value" (any JSON: google.protobuf.Value), "filter" ({db: {"colls": [...]}}),
# or a nested table (an object with those fields).
Spec = dict[str, Any]

FILTER = "filter"

CREATE: Spec = {
    "requestId": "str", "backup_name": "str", "collection_names": "strs", "async": "bool", "db_collections": "value",
    "force": "bool", "meta_only": "bool", "gc_pause_enable": "bool", "gc_pause_seconds": "int",
    "gc_pause_address": "str", "rbac": "bool", "backup_root_path": "str", "filter": FILTER, "strategy": "str",
    "with_index_extra": "bool", "format": "str",
}

_COLL_MAPPING: Spec = {"source": "str", "target": "str", "override": {"shardNum": "int", "description": "str"}}
RESTORE_PLAN: Spec = {"mapping": [{"source": "str", "target": "str", "withProp": "bool", "colls": [_COLL_MAPPING]}],
                      "filter": FILTER}

RESTORE: Spec = {
    "requestId": "str", "backup_name": "str", "collection_names": "strs", "collection_suffix": "str",
    "collection_renames": "strmap", "async": "bool", "bucket_name": "str", "path": "str", "db_collections": "value",
    "metaOnly": "bool", "restoreIndex": "bool", "useAutoIndex": "bool", "dropExistCollection": "bool",
    "dropExistIndex": "bool", "skipCreateCollection": "bool", "id": "str", "skipImportDiskQuotaCheck": "bool",
    "rbac": "bool", "maxShardNum": "int",
    "skipParams": {"collectionProperties": "strs", "fieldIndexParams": "strs", "fieldTypeParams": "strs",
                   "indexParams": "strs"},
    "useV2Restore": "bool", "truncateBinlogByTs": "bool", "db_collections_after_rename": "value",
    "restorePlan": RESTORE_PLAN, "ezkMapping": "strmap",
}

RESTORE_SECONDARY: Spec = {"requestId": "str", "backup_name": "str", "sourceClusterID": "str", "targetClusterID": "str",
                           "async": "bool", "path": "str"}

MAX_BODY = 1 << 20  # bytes: a request names collections, it carries no data


class BadRequest(ValueError):
    """A body that is not the message it should be; the message names the field."""


def parse_body(data: bytes, spec: Spec) -> dict[str, Any]:
    """The body's fields by their spec names (absent ones left out)."""
    if not data.strip():
        raise BadRequest("the request body is empty: send a JSON object")
    try:
        tree = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"the request body is not valid JSON ({e})") from None
    return _message(tree, spec, "")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return repr(value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "...")


def _message(tree: Any, spec: Spec, path: str) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise BadRequest(f"{path or 'the request body'}: expected a JSON object, got {_describe(tree)}")
    folded = {k.lower(): k for k in spec}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = key if key in spec else folded.get(key.lower())
        if name is None or value is None:
            continue
        out[name] = _field(value, spec[name], f"{path}.{name}" if path else name)
    return out


def _field(value: Any, kind: Any, path: str) -> Any:
    if isinstance(kind, dict):
        return _message(value, kind, path)
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise BadRequest(f"{path}: expected an array, got {_describe(value)}")
        return [_field(v, kind[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "str":
        if not isinstance(value, str):
            raise BadRequest(f"{path}: expected a string, got {_describe(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise BadRequest(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 31) <= value < 1 << 31:
            raise BadRequest(f"{path}: expected a 32-bit integer, got {_describe(value)}")
        return value
    if kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{path}: expected an array of strings, got {_describe(value)}")
        return value
    if kind == "strmap":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise BadRequest(f"{path}: expected an object of strings, got {_describe(value)}")
        return value
    if kind == FILTER:
        if not isinstance(value, dict):
            raise BadRequest(f'{path}: expected an object such as {{"db1": {{"colls": ["c1"]}}}}, got {_describe(value)}')
        return {db: _message(v, {"colls": "strs"}, f"{path}.{db}").get("colls", []) for db, v in value.items()
                if v is not None}
    return value  # "value": any JSON


def filter_items(filter_: dict[str, list[str]]) -> list[str]:
    """The ``filter`` field as --filter items: ``["*"]`` every collection of the database, ``[]``
    the database alone (the Go tool's filter.FromPB)."""
    out = []
    for db, colls in filter_.items():
        if colls == ["*"]:
            out.append(f"{db}.*")
        elif not colls:
            out.append(f"{db}.")
        else:
            out += [f"{db}.{c}" for c in colls]
    return out


def db_collections(value: Any, field: str) -> str:
    """The deprecated ``db_collections`` value (a JSON object of arrays of names, or a string
    holding one) as the JSON text the CLI's -a takes."""
    doc = value
    if isinstance(value, str):
        try:
            doc = json.loads(value) if value.strip() else {}
        except ValueError:
            doc = None
    if not isinstance(doc, dict) or not all(isinstance(v, list) and all(isinstance(c, str) for c in v)
                                            for v in doc.values()):
        raise BadRequest(f'{field}: expected an object such as {{"db1": ["c1"], "db2": []}} or a string holding one, '
                         f"got {_describe(value)}")
    return json.dumps(doc)


def schema(spec: Spec) -> dict[str, Any]:
    """The OpenAPI schema of a request message."""
    def of(kind: Any) -> dict[str, Any]:
        if isinstance(kind, dict):
            return {"type": "object", "properties": {k: of(v) for k, v in kind.items()}}
        if isinstance(kind, list):
            return {"type": "array", "items": of(kind[0])}
        kinds: dict[str, dict[str, Any]] = {
            "str": {"type": "string"}, "bool": {"type": "boolean"}, "int": {"type": "integer", "format": "int32"},
            "strs": {"type": "array", "items": {"type": "string"}},
            "strmap": {"type": "object", "additionalProperties": {"type": "string"}},
            FILTER: {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"colls": {"type": "array", "items": {"type": "string"}}}}},
        }
        return kinds.get(kind, {})
    return of(spec)
