"""The OpenAPI document of the v1 API (``/api/v1/docs/doc.json``), built from the request
specs (requests.py) and the answer messages (format/meta.py): it cannot drift from them."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from .. import __version__
from ..format import meta
from . import requests

ENVELOPE_CODES = "0 success (omitted), 1 not supported, 3 failed, 400 bad parameter, 404 not found"

INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>mbackup API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<p>The OpenAPI document: <a href="doc.json">doc.json</a></p>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "doc.json", dom_id: "#ui"});</script>
</body></html>
"""


def _schema(hint: Any) -> dict[str, Any]:
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", "format": "int64"}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return {"type": "array", "items": _schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": {"type": "string"}}
    members = [a for a in args if a is not type(None)]
    if len(members) == 1:
        hint = members[0]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    return {}


def _components() -> dict[str, Any]:
    out: dict[str, Any] = {}
    todo: list[type] = [meta.BackupInfoBrief, meta.BackupSummary, meta.RestoreBackupTaskResponse]
    while todo:
        cls = todo.pop()
        if cls.__name__ in out:
            continue
        hints = typing.get_type_hints(cls)
        props = {}
        for f in dataclasses.fields(cls):
            props[f.metadata.get("json", f.name)] = _schema(hints[f.name])
            for a in (hints[f.name], *typing.get_args(hints[f.name])):
                for b in (a, *typing.get_args(a)):
                    if isinstance(b, type) and dataclasses.is_dataclass(b):
                        todo.append(b)
        out[cls.__name__] = {"type": "object", "properties": props}
    return out


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"description": f"HTTP 200 for every business result; code: {ENVELOPE_CODES}",
            "content": {"application/json": {"schema": {"type": "object", "properties": {
                "requestId": {"type": "string"}, "code": {"type": "integer"}, "msg": {"type": "string"},
                "data": {"allOf": [data], "nullable": True}}}}}}  # null when the code is not 0


def _error(what: str) -> dict[str, Any]:
    return {"description": what, "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}


_BAD = _error("the body is not the message: {\"error\": \"invalid request body: <field>: ...\"}")
_UNAUTHORIZED = {"401": _error("server.token is set and the request did not send it as a bearer token")}
_BODY_ERRORS = {"400": _BAD, "413": _error("the body is larger than 1 MiB")}
_HEADER = {"name": "request_id", "in": "header", "required": False, "schema": {"type": "string"}}


def _query(*names: str, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [_HEADER] + [{"name": n, "in": "query", "required": n in required, "schema": {"type": "string"}}
                        for n in names]


def _body(spec: requests.Spec) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": requests.schema(spec)}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


@functools.cache
def document() -> dict[str, Any]:
    text = {"200": {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    paths: dict[str, dict[str, Any]] = {
        "/hello": {"get": {"summary": "Health check (no token needed)", "responses": text}},
        "/create": {"post": {"summary": "Create a backup (async: poll get_backup?backup_id=<requestId>)",
                             "parameters": [_HEADER], "requestBody": _body(requests.CREATE),
                             "responses": {"200": _envelope(_ref("BackupInfoBrief")), **_BODY_ERRORS}}},
        "/list": {"get": {"summary": "List the backups in storage", "parameters": _query("collection_name"),
                          "responses": {"200": _envelope({"type": "array", "items": _ref("BackupSummary")})}}},
        "/get_backup": {"get": {"summary": "A backup by name (read from storage) or a create job by id",
                                "parameters": _query("backup_name", "backup_id", "path"),
                                "responses": {"200": _envelope(_ref("BackupInfoBrief"))}}},
        "/delete": {"delete": {"summary": "Delete a backup", "parameters": _query("backup_name", required=("backup_name",)),
                               "responses": {"200": _envelope({"nullable": True})}}},
        "/restore": {"post": {"summary": "Restore a backup (async: poll get_restore?id=<id>)", "parameters": [_HEADER],
                              "requestBody": _body(requests.RESTORE),
                              "responses": {"200": _envelope(_ref("RestoreBackupTaskResponse")), **_BODY_ERRORS}}},
        "/get_restore": {"get": {"summary": "A restore job", "parameters": _query("id", required=("id",)),
                                 "responses": {"200": _envelope(_ref("RestoreBackupTaskResponse"))}}},
        "/restore_secondary": {"post": {"summary": "Restore a backup into a newly deployed CDC secondary, Milvus 2.6+ "
                                                   "(async: poll get_restore?id=<requestId>)", "parameters": [_HEADER],
                                        "requestBody": _body(requests.RESTORE_SECONDARY),
                                        "responses": {"200": _envelope(_ref("RestoreBackupTaskResponse")),
                                                      **_BODY_ERRORS}}},
        "/check": {"get": {"summary": "The configuration and an end-to-end check", "responses": text}},
    }
    for path, operations in paths.items():
        if path != "/hello":
            for operation in operations.values():
                operation["responses"].update(_UNAUTHORIZED)
    return {"openapi": "3.0.3",
            "info": {"title": "mbackup server (the milvus-backup v1 API)", "version": __version__},
            "servers": [{"url": "/api/v1"}],
            "components": {"schemas": _components(),
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "paths": paths}
