"""Starting ``mbackup server`` as a process on a free port, and talking to it over real HTTP
(urllib), for tests/test_server*.py. Every answer's body goes to the secrets scan."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from conftest import record_written


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text as {(name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Server:
    def __init__(self, config, *args: str, env: dict[str, str] | None = None, token: str = "",
                 wait: bool = True) -> None:
        """Start the server; ``wait=False`` returns at once (call :meth:`ready`), so that
        several start together."""
        self.port = free_port()
        self.token = token
        cmd = [sys.executable, "-m", "milvus_backup", "--config", str(config), "server", "-p", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        if wait:
            self.ready()

    def ready(self) -> None:
        """Wait until the server answers."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.call("GET", "/api/v1/hello").status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _out, err = self.stop()
                raise AssertionError(f"server did not start (exit {self.proc.returncode}):\n{err[-3000:]}")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             raw: bytes | None = None, auth: bool = True) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json", **(headers or {})}
        if auth and self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                reply = Reply(r.status, r.read(), {k.lower(): v for k, v in r.headers.items()})
        except urllib.error.HTTPError as e:
            reply = Reply(e.code, e.read(), {k.lower(): v for k, v in e.headers.items()})
        record_written(f"{method} {path}", reply.body)
        return reply

    def announce(self, path: str, length: int) -> Reply:
        """POST announcing a ``length``-byte body and sending none of it. A server refusing a
        body by its announced length answers at once; sending the body too would race the
        server's close (a reset can reach the client before the answer)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.putrequest("POST", path)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(length))
            if self.token:
                conn.putheader("Authorization", f"Bearer {self.token}")
            conn.endheaders()
            r = conn.getresponse()
            reply = Reply(r.status, r.read(), {k.lower(): v for k, v in r.getheaders()})
        finally:
            conn.close()
        record_written(f"POST {path}", reply.body)
        return reply

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Reply:
        return self.call("POST", path, body, **kw)

    def poll(self, path: str, *, until: int = 2, timeout: float = 300) -> list[dict[str, Any]]:
        """GET ``path`` until its data's state_code is ``until`` or a failure; every answer."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(path).json
            seen.append(answer)
            state = (answer.get("data") or {}).get("state_code")
            if state in (until, 3) or time.monotonic() > deadline:
                return seen
            time.sleep(0.5)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate()

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.communicate()


def milvus_stack(milvus_clusters, tmp_path_factory, *, bucket: str, root: str, suffix: str, **server: Any):
    """A module's set-up against the source cluster (for ``yield from`` in a fixture): e2e_int
    written, a backup.yaml on ``bucket``/``root`` and the same with the copy held to 2
    requests a second (slow enough to be stopped midway), a server on the first (``server``:
    Server's keywords); afterwards the collections restored with ``suffix`` are dropped."""
    from mbackup_dev.devstack import backup_config
    from milvus_data import INT, build, client

    cluster = milvus_clusters.source
    truth = build(cluster.uri, only=(INT,))[INT]
    d = tmp_path_factory.mktemp(root)
    config, slow = d / "backup.yaml", d / "slow.yaml"
    config.write_text(backup_config(cluster, backup_bucket=bucket, backup_root=root))
    slow.write_text(backup_config(cluster, backup_bucket=bucket, backup_root=root,
                                  extra="mbackup:\n  maxRequestsPerSecond: 2\n"))
    s = Server(config, "--rescan", "3600", **server)
    yield {"cluster": cluster, "truth": truth, "config": config, "slow": slow, "server": s}
    s.stop()
    mc = client(cluster.uri)
    for name in mc.list_collections():
        if name.endswith(suffix):
            mc.drop_collection(name)
    mc.close()
