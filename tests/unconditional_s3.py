"""moto's S3 server made to ignore conditional writes, as some S3-compatible servers do (MinIO
before its 2024 releases, older Ceph RGW): run as ``python unconditional_s3.py PORT``.

A stand-in, and the only one in the storage tests: no server installable here ignores
``If-None-Match``/``If-Match`` on writes, and mbackup's lock must notice one that does. The
middleware drops those two headers from every write before moto sees it; everything else is
moto as it ships (moto checks no signatures, so the dropped headers break none).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

_CONDITIONS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")


class IgnoreConditionalWrites:
    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD") in ("PUT", "POST"):
            for header in _CONDITIONS:
                environ.pop(header, None)
        return self.app(environ, start_response)


if __name__ == "__main__":
    port = sys.argv[1]
    os.environ["MOTO_PORT"] = port  # moto tells path-style requests from virtual hosts by it, as moto_server sets it
    run_simple("127.0.0.1", int(port), IgnoreConditionalWrites(DomainDispatcherApplication(create_backend_app)),
               threaded=True, request_handler=MotoRequestHandler)
