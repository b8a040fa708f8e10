"""A stand-in for a Prometheus Pushgateway: an HTTP server in the test process that records
each request (method, path, headers, body) and answers with a status the test chooses. A fake
because no Pushgateway binary is installed here (none ships in a Python package); what is
tested is what mbackup sends, which prometheus-client's push_to_gateway builds."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Push:
    method: str
    path: str
    content_type: str
    body: bytes


class FakePushgateway:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pushes: list[Push] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.pushes.append(Push(self.command, self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = do_DELETE = _record

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
