"""The contract server: pymilvus' generated MilvusService on a real gRPC server (127.0.0.1, a
free port) plus a small HTTP server for the endpoints the Go tool calls beside gRPC (REST
segment describe and import jobs, the management GC pause). NOT a Milvus: see the package
docstring.

Every request is logged (:class:`Call`: method, request message or JSON, gRPC metadata or
HTTP headers) for tests to assert on, and :meth:`ContractServer.fail` makes chosen calls
fail (a gRPC status, a Milvus error status with its reason, an HTTP status, a delay).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import message_factory
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from . import handlers, replicate
from .profiles import DEFAULT, GC_CLUSTER, GC_NONE, GC_TICKET, Profile
from .state import PARTITION_NOT_FOUND, MilvusFault, State

SERVICE = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]


@dataclass
class Call:
    """One request as the server saw it."""

    kind: str  # "grpc" or "http"
    method: str  # "Flush", or "GET /management/datacoord/garbage_collection/pause"
    request: Any  # the request message (gRPC), the query or JSON body (HTTP)
    metadata: dict[str, str]  # gRPC metadata / HTTP headers, lower-case keys
    answered: str = "ok"  # ok, unimplemented (the line lacks it), unhandled (the contract lacks it), fault


@dataclass
class Fault:
    """How a chosen call fails. ``times``: how many calls it hits (None: every one)."""

    code: grpc.StatusCode | None = None  # a gRPC error status
    status: int = 0  # a Milvus error status (merr code) in the answer
    reason: str = ""
    http_status: int = 0
    delay: float = 0.0  # seconds before answering (then answering normally if nothing else is set)
    delay_after: float = 0.0  # seconds between doing what was asked and answering (the reply in flight)
    times: int | None = 1
    hits: int = field(default=0, compare=False)


class ContractServer:
    """Start with ``with ContractServer() as server:``; ``server.reset(profile)`` between tests."""

    def __init__(self, profile: Profile = DEFAULT) -> None:
        self.state = State(profile)
        self.log: list[Call] = []
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self.grpc_port = 0
        self.http_port = 0

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ContractServer:
        # Milvus's own gRPC servers allow a ping every 5 s, with or without calls (keepalive
        # EnforcementPolicy{MinTime: 5s, PermitWithoutStream: true}); gRPC's default would answer
        # the 10 s pings clients send (pymilvus' options, and mbackup's) with "too many pings".
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[
            ("grpc.http2.min_ping_interval_without_data_ms", 5000), ("grpc.keepalive_permit_without_calls", 1)])
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(_Servicer(self), self._grpc)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self))
        self._http.daemon_threads = True
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="contract-http", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()

    def reset(self, profile: Profile = DEFAULT) -> State:
        """A fresh cluster of ``profile``, an empty log, no faults."""
        with self._lock:
            self.state = State(profile)
            self.log.clear()
            self._faults.clear()
        return self.state

    @property
    def profile(self) -> Profile:
        return self.state.profile

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --- faults and the log ----------------------------------------------------------------

    def fail(self, method: str, **how: Any) -> Fault:
        """Make ``method`` (an RPC name, or "GET /path" / "POST /path") fail as ``how`` says
        (the fields of :class:`Fault`)."""
        fault = Fault(**how)
        with self._lock:
            self._faults.setdefault(method, []).append(fault)
        return fault

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults.get(method, []):
                if fault.times is None or fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def calls(self, *methods: str) -> list[Call]:
        """The logged calls (of ``methods``), oldest first."""
        with self._lock:
            return [c for c in self.log if not methods or c.method in methods]

    def methods(self, kind: str | None = None) -> list[str]:
        return [c.method for c in self.calls() if kind is None or c.kind == kind]

    def _record(self, call: Call) -> Call:
        with self._lock:
            self.log.append(call)
        return call

    # --- gRPC ------------------------------------------------------------------------------

    def handle_grpc(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        call = self._record(Call("grpc", method, _copy(request), metadata))
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.code is not None:
                call.answered = "fault"
                context.abort(fault.code, fault.reason or fault.code.name)
            if fault.status:
                call.answered = "fault"
                return _error_response(method, fault.status, fault.reason)
        if method in self.profile.unimplemented:
            call.answered = "unimplemented"
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"Method not implemented: {method} on Milvus {self.profile.name}")
        handler = getattr(handlers, method, None)
        if handler is None:
            call.answered = "unhandled"
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the contract server does not answer {method}")
        try:
            with self.state.lock:
                answer = handler(self.state, request, _database(request, metadata))
        except MilvusFault as e:
            return _error_response(method, e.code, e.reason)
        if fault is not None and fault.delay_after:
            time.sleep(fault.delay_after)
        return answer

    # --- HTTP ------------------------------------------------------------------------------

    def handle_http(self, verb: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
                    ) -> tuple[int, dict[str, Any]]:
        method = f"{verb} {path}"
        call = self._record(Call("http", method, body if verb == "POST" else query, headers))
        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.http_status:
                call.answered = "fault"
                return fault.http_status, {"msg": fault.reason or "fault"}
        route = _ROUTES.get(method)
        if route is None or not route[0](self.profile):
            call.answered = "unimplemented"
            return 404, {"msg": "404 page not found"}
        with self.state.lock:
            answer = route[1](self.state, query, body)
        if fault is not None and fault.delay_after:
            time.sleep(fault.delay_after)
        return answer


# --------------------------------------------------------------------------------------
# gRPC plumbing


class _Servicer:
    """Every MilvusService method, each sent to ContractServer.handle_grpc."""

    def __init__(self, server: ContractServer) -> None:
        for method in SERVICE.methods:
            setattr(self, method.name, self._method(server, method.name))
        self.CreateReplicateStream = self._stream(server)

    @staticmethod
    def _stream(server: ContractServer):
        def call(requests: Any, context: grpc.ServicerContext) -> Any:
            metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
            entry = server._record(Call("grpc", "CreateReplicateStream", None, metadata))
            fault = server._take_fault("CreateReplicateStream")
            if fault is not None and fault.code is not None:
                entry.answered = "fault"
                context.abort(fault.code, fault.reason or fault.code.name)
            if "CreateReplicateStream" in server.profile.unimplemented:
                entry.answered = "unimplemented"
                context.abort(grpc.StatusCode.UNIMPLEMENTED,
                              f"Method not implemented: CreateReplicateStream on Milvus {server.profile.name}")
            yield from replicate.stream(server, requests, context)

        return call

    @staticmethod
    def _method(server: ContractServer, name: str):
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            return server.handle_grpc(name, request, context)

        return call


def _copy(message: Any) -> Any:
    return type(message).FromString(message.SerializeToString())


def _database(request: Any, metadata: dict[str, str]) -> str:
    """The database a request is for, as a 2.4+ proxy resolves it: the request's own field,
    else the ``dbname`` header, else "default"."""
    for name in ("db_name", "dbName"):
        if name in type(request).DESCRIPTOR.fields_by_name and getattr(request, name):
            return getattr(request, name)
    return metadata.get("dbname") or "default"


def _error_response(method: str, code: int, reason: str) -> Any:
    status = common_pb2.Status(error_code=common_pb2.ErrorCode.UnexpectedError, code=code, reason=reason)
    cls = message_factory.GetMessageClass(SERVICE.methods_by_name[method].output_type)
    return status if cls is common_pb2.Status else cls(status=status)


# --------------------------------------------------------------------------------------
# HTTP routes: (does the profile answer it, handler(state, query, body) -> (status, json))

def _ok(data: Any = None, **extra: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"code": 0, **({"data": data} if data is not None else {}), **extra}


def _segments_describe(state: State, _query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
    try:
        coll = state.collection_by_id(int(body["collectionId"]))
    except MilvusFault as e:
        return 200, {"code": e.code, "message": e.reason}
    infos = []
    for seg_id in body.get("segmentIds", []):
        seg = coll.segments.get(int(seg_id))
        if seg is None:
            return 200, {"code": 65535, "message": f"segment not found[segment={seg_id}]"}
        infos.append({
            "segmentID": seg.id, "collectionID": seg.collection_id, "partitionID": seg.partition_id,
            "numRows": seg.rows, "level": int(seg.level), "state": int(seg.state), "isSorted": True,
            "vChannel": seg.vchannel,
            "insertLogs": [{"fieldID": f, "logIDs": logs} for f, logs in sorted(seg.inserts.items())],
            "deltaLogs": [{"fieldID": 0, "logIDs": seg.deltas}] if seg.deltas else [],
            "statsLogs": [],
        })
    return _ok({"segmentInfos": infos})


def _gc_pause(state: State, query: dict[str, str], _body: Any) -> tuple[int, dict[str, Any]]:
    try:
        seconds = int(query.get("pause_seconds", ""))
    except ValueError:
        return 400, {"msg": f"invalid pause seconds({query.get('pause_seconds')})"}
    collection_id = int(query.get("collection_id", "0") or 0)
    if state.profile.gc == GC_TICKET:
        token = f"{state.next_id()}"
        ticket = base64.b64encode(json.dumps({"token": token, "collection_id": collection_id}).encode()).decode()
        state.gc_tickets[ticket] = collection_id
        state.gc_history.append(("pause", collection_id, ticket))
        return 200, {"msg": "OK", "ticket": ticket}
    state.gc_paused_until = time.time() + seconds
    state.gc_history.append(("pause", collection_id, ""))
    return 200, {"msg": "OK"}


def _gc_resume(state: State, query: dict[str, str], _body: Any) -> tuple[int, dict[str, Any]]:
    ticket = query.get("ticket", "")
    if state.profile.gc == GC_TICKET:
        if ticket not in state.gc_tickets:
            return 500, {"msg": f"failed to resume garbage collection, invalid ticket {ticket!r}"}
        collection_id = state.gc_tickets.pop(ticket)
        state.gc_history.append(("resume", collection_id, ticket))
        return 200, {"msg": "OK"}
    state.gc_paused_until = None
    state.gc_history.append(("resume", 0, ""))
    return 200, {"msg": "OK"}


def _import_create(state: State, _query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
    db = body.get("dbName") or "default"
    try:
        coll = state.collection(db, body.get("collectionName", ""))
    except MilvusFault as e:
        return 200, {"code": e.code, "message": e.reason}
    partition = body.get("partitionName", "")
    if partition and partition not in coll.partitions:
        return 200, {"code": PARTITION_NOT_FOUND, "message": f"partition not found[partition={partition}]"}
    job = state.new_import(db, body["collectionName"], partition, [list(f) for f in body.get("files", [])],
                           dict(body.get("options", {})), "rest")
    return _ok({"jobId": str(job.id)})


def _import_describe(state: State, _query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
    job = state.imports.get(int(body.get("jobId", 0) or 0))
    if job is None:
        return 200, {"code": 65535, "message": f"import job not found[jobID={body.get('jobId')}]"}
    seen, progress = job.observe()
    return _ok({"jobId": str(job.id), "collectionName": job.collection, "state": seen, "progress": progress,
                "reason": job.reason if seen == "Failed" else "", "totalRows": job.rows if seen == "Completed" else 0,
                "details": []})


_ROUTES = {
    "POST /v2/vectordb/segments/describe": (lambda p: p.segment_describe, _segments_describe),
    "GET /management/datacoord/garbage_collection/pause": (lambda p: p.gc in (GC_CLUSTER, GC_TICKET), _gc_pause),
    "GET /management/datacoord/garbage_collection/resume": (lambda p: p.gc != GC_NONE, _gc_resume),
    "POST /v2/vectordb/jobs/import/create": (lambda p: p.rest_import, _import_create),
    "POST /v2/vectordb/jobs/import/describe": (lambda p: p.rest_import, _import_describe),
}


def _http_handler(server: ContractServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, verb: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"_unparsable": raw.decode(errors="replace")}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = server.handle_http(verb, url.path, query, body, headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


__all__ = ["Call", "ContractServer", "Fault"]
