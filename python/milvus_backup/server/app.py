"""The ASGI application: routes, the bearer token, the body limit, and the shape of errors.

Starlette rather than FastAPI: the answers must be the Go tool's bytes (its field order,
omitempty, integer enums, mixed-case keys), which FastAPI's pydantic models would re-encode,
and the request checks name the Go tool's fields (requests.py); what FastAPI would add is
its own OpenAPI generation and pydantic, a dependency a lean install does not need.
Starlette (and anyio) on uvicorn (h11) is small, typed and maintained.

Handlers are plain functions run in the thread pool: the flows they call block.
"""

from __future__ import annotations

import hmac
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import MBackupError
from . import openapi, v2
from .requests import MAX_BODY, BadRequest
from .v1 import FAIL_CODE, HELLO, Answer, Service

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class TooLarge(Exception):
    pass


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge
    out = bytearray()
    async for chunk in request.stream():
        out += chunk
        if len(out) > MAX_BODY:
            raise TooLarge
    return bytes(out)


def _json(answer: Answer) -> Response:
    return Response(answer.body(), media_type="application/json; charset=utf-8")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def build(service: Service, token: str = "", cli_args: list[str] | None = None) -> Starlette:
    """The server for ``service``; every route but ``/`` and ``/api/v1/hello`` wants
    ``Authorization: Bearer <token>`` when ``token`` is set."""
    expected = f"Bearer {token}".encode()

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def guarded(fn: Callable[[Request, bytes], Response], *, body: bool = False) -> Handler:
        async def endpoint(request: Request) -> Response:
            if token and not authorized(request):
                return JSONResponse({"error": "unauthorized: send Authorization: Bearer <server.token>"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            try:
                data = await _body(request) if body else b""
            except TooLarge:
                return _error(413, f"request body larger than {MAX_BODY} bytes")
            try:
                return await run_in_threadpool(fn, request, data)
            except BadRequest as e:
                return _error(400, f"invalid request body: {e}")
            except MBackupError as e:
                return _json(Answer(request.headers.get("request_id", ""), code=FAIL_CODE, msg=str(e)))
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(500, "internal error: see the server's log")
        return endpoint

    def header_id(request: Request) -> str:
        return request.headers.get("request_id", "")

    def q(request: Request, name: str) -> str:
        return request.query_params.get(name, "")

    async def hello(request: Request) -> Response:
        return PlainTextResponse(HELLO)

    def check(request: Request, _: bytes) -> Response:
        return _check(cli_args or [])

    routes = [
        Route("/", hello, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        Route("/api/v1/hello", hello, methods=["GET"]),
        Route("/api/v1/create", guarded(lambda r, b: _json(service.create(b, header_id(r))), body=True),
              methods=["POST"]),
        Route("/api/v1/list", guarded(lambda r, b: _json(service.list(header_id(r), q(r, "collection_name")))),
              methods=["GET"]),
        Route("/api/v1/get_backup", guarded(lambda r, b: _json(service.get_backup(
            header_id(r), q(r, "backup_name"), q(r, "backup_id"), q(r, "path")))), methods=["GET"]),
        Route("/api/v1/delete", guarded(lambda r, b: _json(service.delete(header_id(r), q(r, "backup_name")))),
              methods=["DELETE"]),
        Route("/api/v1/restore", guarded(lambda r, b: _json(service.restore(b, header_id(r))), body=True),
              methods=["POST"]),
        Route("/api/v1/restore_secondary",
              guarded(lambda r, b: _json(service.restore_secondary(b, header_id(r))), body=True), methods=["POST"]),
        Route("/api/v1/get_restore", guarded(lambda r, b: _json(service.get_restore(header_id(r), q(r, "id")))),
              methods=["GET"]),
        Route("/api/v1/check", guarded(check), methods=["GET"]),
        Route("/api/v1/docs", guarded(lambda r, b: RedirectResponse("/api/v1/docs/index.html")), methods=["GET"]),
        Route("/api/v1/docs/", guarded(lambda r, b: RedirectResponse("/api/v1/docs/index.html")), methods=["GET"]),
        Route("/api/v1/docs/index.html", guarded(lambda r, b: HTMLResponse(openapi.INDEX_HTML)), methods=["GET"]),
        Route("/api/v1/docs/doc.json", guarded(lambda r, b: JSONResponse(openapi.document())), methods=["GET"]),
        Route("/metrics", guarded(lambda r, b: Response(service.metrics.text(), media_type=METRICS_TYPE)),
              methods=["GET"]),
        *v2.routes(service, authorized if token else None, _body, TooLarge),
    ]
    return Starlette(routes=routes)


METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _check(cli_args: list[str]) -> Response:
    """What ``mbackup config show`` and ``mbackup check`` print, as the Go tool's /check
    answers (the configuration table, then the check); 500 with the error when it fails."""
    def run(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "milvus_backup", *cli_args, *words], capture_output=True,
                              text=True, timeout=300, check=False)

    shown, checked = run("config", "show"), run("check")
    for result in (shown, checked):
        if result.returncode:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            return _error(500, errors[-1].removeprefix("error: ") if errors else "check failed")
    return PlainTextResponse(f"Configuration:\n{shown.stdout}{checked.stdout}")


def serve(service: Service, port: int, *, token: str = "", cli_args: list[str] | None = None,
          rescan: float = 30.0, host: str = "0.0.0.0") -> None:
    import uvicorn

    app = build(service, token, cli_args)
    service.runner.watch(rescan)
    print(f"mbackup server: listening on http://{host}:{port} (API at /api/v1 and /api/v2, docs at /api/v1/docs/"
          + (", bearer token required" if token else "") + ")", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        service.runner.stop()
