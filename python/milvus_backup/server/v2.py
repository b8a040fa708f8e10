"""The v2 resource API, ``/api/v2``, beside the Go tool's v1 (its maintainers propose one in
their #1124): backups as resources read from storage only, jobs as resources with a state,
progress and a typed error, and plain HTTP status codes.

- ``GET /backups``, ``GET /backups/{name}``, ``DELETE /backups/{name}``;
- ``POST /jobs`` (``{"kind": "create" | "restore", "id"?: ..., ...the v1 request's fields}``,
  202 and the job), ``GET /jobs``, ``GET /jobs/{id}``, ``POST /jobs/{id}/cancel``;
- ``GET /openapi.json``: this API's OpenAPI 3 document, committed as docs/openapi-v2.json.

Jobs are the v1 service's (the same store, runner and flows; v1 can poll them too). Every
error is ``{"error": {"code", "message", "retriable"}}``; a request's mistake names the field
or parameter. Unknown top-level fields of a job request are refused, not ignored (v1 ignores
them, as the Go tool does).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..backup import catalog, delete
from ..backup.lock import LockedError
from ..errors import EXIT_FAILED, EXIT_INTEGRITY, EXIT_UNREACHABLE, EXIT_USAGE, MBackupError
from ..format import meta
from . import requests
from .jobs import FAIL, INITIAL, SUCCESS, UNFINISHED, Job
from .requests import BadRequest
from .v1 import NOT_FOUND, NOT_SUPPORT, PARAMETER_ERROR, Failed, Service

log = logging.getLogger(__name__)

PREFIX = "/api/v2"
KINDS = ("create", "restore")
#: The kinds a job listed may be: also v1's restore_secondary (started through /api/v1 only).
LISTED_KINDS = (*KINDS, "restore_secondary")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")

# The fields a job request takes besides kind and id: the v1 request's, less what v2 decides
# itself (every job runs in the background; the id is the job's).
_FIELDS: dict[str, requests.Spec] = {
    kind: {k: v for k, v in spec.items() if k not in ("async", "requestId", "id")}
    for kind, spec in (("create", requests.CREATE), ("restore", requests.RESTORE))
}
_FIELDS["create"] |= {"incremental": "bool", "base": "str"}  # v2's own: create --incremental [--base]

# Error codes: (HTTP status, retriable)
ERRORS = {
    "bad_request": (400, False), "not_supported": (400, False), "unauthorized": (401, False),
    "not_found": (404, False), "method_not_allowed": (405, False),
    "conflict": (409, False), "busy": (409, True),
    "too_large": (413, False), "damaged": (422, False), "unavailable": (503, True), "internal": (500, False),
}
# What a failed job's error code is, by its exit code (errors.py); 0: a bug.
_JOB_ERRORS = {EXIT_USAGE: "bad_request", EXIT_UNREACHABLE: "unavailable", EXIT_INTEGRITY: "damaged",
               EXIT_FAILED: "partial"}
_RETRIABLE_JOB_ERRORS = ("unavailable", "partial", "cancelled")


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def error(code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    status, retriable = ERRORS[code]
    return JSONResponse({"error": {"code": code, "message": message, "retriable": retriable}}, status_code=status,
                        headers=headers)


def _failure(e: Exception) -> Response:
    """An exception of a handler as its answer: the request's mistake, the state of the
    store, or (never expected) a bug."""
    if isinstance(e, ApiError):
        return error(e.code, e.message)
    if isinstance(e, BadRequest):
        return error("bad_request", str(e))
    if isinstance(e, Failed):  # the v1 service's checks of a request
        code = {NOT_FOUND: "not_found", NOT_SUPPORT: "not_supported", PARAMETER_ERROR: "bad_request"}
        return error(code.get(e.code, "busy"), e.msg)  # else: the job's lock is held
    if isinstance(e, catalog.BackupNotFound):
        return error("not_found", str(e))
    if isinstance(e, LockedError):
        return error("busy", str(e))
    if isinstance(e, MBackupError):
        by_exit = {EXIT_UNREACHABLE: "unavailable", EXIT_INTEGRITY: "damaged", EXIT_FAILED: "unavailable"}
        return error(by_exit.get(e.exit_code, "bad_request"), str(e))
    raise e


# --- views -------------------------------------------------------------------------------


def _time(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def job_state(job: Job) -> str:
    if job.state_code == INITIAL:
        return "queued"
    if job.state_code in UNFINISHED:
        return "running"
    if job.state_code == SUCCESS:
        return "succeeded"
    return "cancelled" if job.cancelled else "failed"


def job_view(job: Job) -> dict[str, Any]:
    state = job_state(job)
    err = None
    if state in ("failed", "cancelled"):
        code = "cancelled" if job.cancelled else _JOB_ERRORS.get(job.exit_code, "internal")
        err = {"code": code, "message": job.error, "retriable": code in _RETRIABLE_JOB_ERRORS}
    return {
        "id": job.id, "kind": job.kind, "backup": job.name, "state": state, "progress": job.progress(),
        # The flows keep what they did: the same request run again picks up where this one stopped.
        "resumable": state != "succeeded" and job.exit_code != EXIT_USAGE,
        "started": _time(job.start_time), "ended": _time(job.end_time) if job.state_code not in UNFINISHED else None,
        "error": err,
    }


def backup_summary(name: str, complete: bool, info: meta.BackupInfo | None) -> dict[str, Any]:
    return {"name": name, "complete": complete and info is not None, "id": info.id if info else None,
            "size": info.size if info else None, "milvus_version": info.milvus_version if info else None,
            "taken": _time(catalog.taken_at(info)) if info else None}


def backup_view(service: Service, name: str, info: meta.BackupInfo) -> dict[str, Any]:
    return {
        **backup_summary(name, True, info), "meta_size": catalog.meta_size(service.stores, name),
        "format": info.format or "binlog",
        "collections": [{"db": c.db_name or "default", "name": c.collection_name, "size": c.size,
                         "rows": sum(s.num_of_rows for s in catalog.collection_segments(c) if not s.is_l0),
                         "has_index": c.has_index} for c in info.collection_backups],
    }


# --- handlers ----------------------------------------------------------------------------


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    try:
        return meta.validate_backup_name(name)
    except MBackupError as e:
        raise ApiError("bad_request", f"name: {e}") from None


def _job(service: Service, request: Request) -> Job:
    job = service.runner.load(request.path_params["id"])
    if job is None:
        raise ApiError("not_found", f"id: no job {request.path_params['id']!r}")
    return job


def list_backups_(service: Service, request: Request, body: bytes) -> Response:
    entries = catalog.list_backups(service.stores)
    return JSONResponse({"backups": [backup_summary(e.name, e.complete, e.info) for e in entries]})


def get_backup(service: Service, request: Request, body: bytes) -> Response:
    name = _name(request)
    return JSONResponse(backup_view(service, name, catalog.read_backup(service.stores, name)))


def delete_backup_(service: Service, request: Request, body: bytes) -> Response:
    name = _name(request)
    return JSONResponse({"name": name, "deleted_objects": delete.delete_backup(service.stores, name)})


def create_job(service: Service, request: Request, body: bytes) -> Response:
    kind = requests.parse_body(body, {"kind": "str"}).get("kind")
    if kind not in KINDS:
        raise BadRequest(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    spec = {"kind": "str", "id": "str", **_FIELDS[kind]}
    _strict(json.loads(body), spec, "", kind)
    req = requests.parse_body(body, spec)
    job_id = req.pop("id", "") or str(uuid.uuid4())
    if not meta.BACKUP_ID.pattern.fullmatch(job_id):
        raise BadRequest(f"id: expected {meta.BACKUP_ID.what}, got {job_id[:40]!r}")
    if service.jobs.load(job_id) is not None:
        raise ApiError("conflict", f"id: a job {job_id!r} exists already: use another id")
    job = service.create_job(req, job_id) if kind == "create" else service.restore_job({**req, "id": job_id})
    service._submit(job)
    return JSONResponse(job_view(job), status_code=202, headers={"Location": f"{PREFIX}/jobs/{job.id}"})


def _strict(tree: Any, spec: Any, path: str, kind: str) -> None:
    """What v1 lets pass as Go's encoding/json does and v2 refuses: keys not of the message
    (or not spelt as it spells them) and nulls. The types are parse_body's to check."""
    if isinstance(spec, list) and isinstance(tree, list):
        for i, item in enumerate(tree):
            _strict(item, spec[0], f"{path}[{i}]", kind)
    if spec == requests.FILTER and isinstance(tree, dict):
        spec = {db: {"colls": "strs"} for db in tree}
    if not isinstance(spec, dict) or not isinstance(tree, dict):
        return
    for key, value in tree.items():
        where = f"{path}.{key}" if path else key
        if key not in spec:
            raise BadRequest(f"{where}: not a field of a {kind} job (see /api/v2/openapi.json)")
        if value is None:
            raise BadRequest(f"{where}: null is not a value: leave the field out")
        _strict(value, spec[key], where, kind)


def list_jobs(service: Service, request: Request, body: bytes) -> Response:
    kind, state = request.query_params.get("kind"), request.query_params.get("state")
    if kind is not None and kind not in LISTED_KINDS:
        raise BadRequest(f"kind: expected one of {', '.join(LISTED_KINDS)}, got {kind!r}")
    if state is not None and state not in STATES:
        raise BadRequest(f"state: expected one of {', '.join(STATES)}, got {state!r}")
    jobs = [service.runner.load(j.id) or j for j in service.jobs.all()]
    views = [job_view(j) for j in sorted(jobs, key=lambda j: (j.start_time, j.id), reverse=True)]
    return JSONResponse({"jobs": [v for v in views if kind in (None, v["kind"]) and state in (None, v["state"])]})


def get_job(service: Service, request: Request, body: bytes) -> Response:
    return JSONResponse(job_view(_job(service, request)))


def cancel_job(service: Service, request: Request, body: bytes) -> Response:
    job = _job(service, request)
    if job.state_code not in UNFINISHED:
        raise ApiError("conflict", f"job {job.id!r} has ended ({job_state(job)}): there is nothing to cancel")
    job = service.runner.cancel(job.id) or job
    # 202: a running job stops at its next object; GET the job to see it cancelled.
    return JSONResponse(job_view(job), status_code=200 if job.state_code == FAIL else 202)


def openapi_json(service: Service, request: Request, body: bytes) -> Response:
    return JSONResponse(document())


Handler = Callable[[Service, Request, bytes], Response]
ROUTES: dict[str, dict[str, Handler]] = {
    "/backups": {"GET": list_backups_},
    "/backups/{name}": {"GET": get_backup, "DELETE": delete_backup_},
    "/jobs": {"GET": list_jobs, "POST": create_job},
    "/jobs/{id}": {"GET": get_job},
    "/jobs/{id}/cancel": {"POST": cancel_job},
    "/openapi.json": {"GET": openapi_json},
}


def routes(service: Service, authorized: Callable[[Request], bool] | None,
           read_body: Callable[[Request], Awaitable[bytes]], too_large: type[Exception]) -> list[Route]:
    """The v2 routes; ``authorized`` (None: no token) checks the bearer token, ``read_body``
    reads a body within the server's limit or raises ``too_large``."""
    def endpoint(methods: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            if authorized is not None and not authorized(request):
                return error("unauthorized", "send Authorization: Bearer <server.token>", {"WWW-Authenticate": "Bearer"})
            handler = methods.get("GET" if request.method == "HEAD" else request.method)
            if handler is None:
                return error("method_not_allowed", f"{request.method} {request.url.path}: use {', '.join(methods)}",
                             {"Allow": ", ".join(methods)})
            try:
                body = await read_body(request) if request.method == "POST" else b""
            except too_large:
                return error("too_large", f"request body larger than {requests.MAX_BODY} bytes")
            try:
                return await run_in_threadpool(handler, service, request, body)
            except (ApiError, BadRequest, Failed, MBackupError) as e:
                return _failure(e)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return error("internal", "internal error: see the server's log")
        return serve

    async def unknown(request: Request) -> Response:
        if authorized is not None and not authorized(request):
            return error("unauthorized", "send Authorization: Bearer <server.token>", {"WWW-Authenticate": "Bearer"})
        return error("not_found", f"no route {request.url.path} (see {PREFIX}/openapi.json)")

    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]  # a wrong one: 405 in our shape
    return [*(Route(PREFIX + path, endpoint(methods), methods=every) for path, methods in ROUTES.items()),
            Route(PREFIX + "/{rest:path}", unknown, methods=every)]


# --- the OpenAPI document ------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], *, nullable: bool = False, extra: bool = False) -> dict[str, Any]:
    out = {"type": "object", "required": list(props), "properties": props, "additionalProperties": extra}
    return {**out, "nullable": True} if nullable else out


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer", "format": "int64"}, {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time", "nullable": True}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _responses(ok: tuple[str, str, str] | None, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok is not None:
        status, what, schema = ok
        out[status] = {"description": what, "content": {"application/json": {"schema": _ref(schema)}}}
    for http in sorted({*errors, 401}):
        codes = [c for c, (code_status, _) in ERRORS.items() if code_status == http]
        out[str(http)] = {"description": " or ".join(codes),
                            "content": {"application/json": {"schema": _ref("Error")}}}
    return out


_NAME = {**_STR, "pattern": f"^{meta.NAME_PATTERN.pattern}$"}


def _started() -> dict[str, Any]:
    """POST /jobs's answers, with links to the job (a client, or a fuzzer, follows them)."""
    out = _responses(("202", "started", "Job"), 400, 409, 413, 503)
    by_id = {"id": "$response.body#/id"}
    out["202"]["links"] = {"getJob": {"operationId": "getJob", "parameters": by_id},
                           "cancelJob": {"operationId": "cancelJob", "parameters": by_id}}
    return out


def _job_request(kind: str) -> dict[str, Any]:
    spec = requests.schema(_FIELDS[kind])
    props = {"kind": {"type": "string", "enum": [kind]}, "id": {**_STR, "pattern": f"^{meta.BACKUP_ID.pattern.pattern}$"},
             **spec["properties"], "backup_name": _NAME}
    return {"type": "object", "required": ["kind", "backup_name"], "properties": props, "additionalProperties": False}


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3 document of /api/v2 (committed as docs/openapi-v2.json: a test compares)."""
    name = {"name": "name", "in": "path", "required": True, "schema": _NAME, "description": "the backup's name"}
    job_id = {"name": "id", "in": "path", "required": True, "schema": _STR}
    schemas = {
        "Error": _obj({"error": _obj({"code": {"type": "string", "enum": list(ERRORS)}, "message": _STR,
                                      "retriable": _BOOL})}),
        "BackupSummary": _obj({"name": _STR, "complete": _BOOL, "id": _nullable(_STR), "size": _nullable(_INT),
                               "milvus_version": _nullable(_STR), "taken": _TIME}),
        "Backup": _obj({"name": _STR, "complete": _BOOL, "id": _nullable(_STR), "size": _nullable(_INT),
                        "milvus_version": _nullable(_STR), "taken": _TIME, "meta_size": _INT, "format": _STR,
                        "collections": {"type": "array", "items": _obj(
                            {"db": _STR, "name": _STR, "size": _INT, "rows": _INT, "has_index": _BOOL})}}),
        "Backups": _obj({"backups": {"type": "array", "items": _ref("BackupSummary")}}),
        "Deleted": _obj({"name": _STR, "deleted_objects": _INT}),
        "Job": _obj({
            "id": _STR, "kind": {"type": "string", "enum": list(LISTED_KINDS)}, "backup": _STR,
            "state": {"type": "string", "enum": list(STATES)},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "resumable": _BOOL,
            "started": _TIME, "ended": _TIME,
            "error": _obj({"code": {"type": "string", "enum": [*_JOB_ERRORS.values(), "cancelled", "internal"]},
                           "message": _STR, "retriable": _BOOL}, nullable=True)}),
        "Jobs": _obj({"jobs": {"type": "array", "items": _ref("Job")}}),
        "CreateJob": _job_request("create"),
        "RestoreJob": _job_request("restore"),
    }
    query = [{"name": n, "in": "query", "required": False, "schema": {"type": "string", "enum": list(values)}}
             for n, values in (("kind", LISTED_KINDS), ("state", STATES))]
    paths = {
        "/backups": {"get": {"summary": "The backups in storage, complete or not", "operationId": "listBackups",
                             "responses": _responses(("200", "the backups", "Backups"), 503)}},
        "/backups/{name}": {
            "parameters": [name],
            "get": {"summary": "A complete backup, read from storage", "operationId": "getBackup",
                    "responses": _responses(("200", "the backup", "Backup"), 400, 404, 422, 503)},
            "delete": {"summary": "Delete a backup (refused while a job writes it)", "operationId": "deleteBackup",
                       "responses": _responses(("200", "deleted", "Deleted"), 400, 404, 409, 503)}},
        "/jobs": {
            "get": {"summary": "Every job on the backup root, newest first", "operationId": "listJobs",
                    "parameters": query, "responses": _responses(("200", "the jobs", "Jobs"), 400, 503)},
            "post": {"summary": "Start a create or restore job (the v1 request's fields); poll GET /jobs/{id}",
                     "operationId": "startJob",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "oneOf": [_ref("CreateJob"), _ref("RestoreJob")],
                         "discriminator": {"propertyName": "kind", "mapping": {
                             "create": "#/components/schemas/CreateJob", "restore": "#/components/schemas/RestoreJob"}}}}}},
                     "responses": _started()}},
        "/jobs/{id}": {"parameters": [job_id],
                       "get": {"summary": "A job", "operationId": "getJob",
                               "responses": _responses(("200", "the job", "Job"), 404, 503)}},
        "/jobs/{id}/cancel": {
            "parameters": [job_id],
            "post": {"summary": "Cancel a job: it stops at its next object and ends cancelled (409 once ended)",
                     "operationId": "cancelJob",
                     "responses": {**_responses(("202", "asked to stop: GET the job to see it end", "Job"), 404, 409,
                                                503),
                                   "200": {"description": "cancelled (no server was running it)",
                                           "content": {"application/json": {"schema": _ref("Job")}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "responses": _responses(
            None) | {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    return {"openapi": "3.0.3",
            "info": {"title": "mbackup server: the v2 resource API", "version": "2"},
            "servers": [{"url": PREFIX}],
            "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "paths": paths}


if __name__ == "__main__":  # python -m milvus_backup.server.v2 > docs/openapi-v2.json
    print(json.dumps(document(), indent=2))
