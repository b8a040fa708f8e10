"""Engine errors carry a stable code, mapped to an exception class in one place (issue #9,
item 5): Python decides on the code, never on the words, which are the stores' own.

Each code is produced here by a real cause: a missing bucket on SeaweedFS, wrong credentials, a
closed port, a full and a read-only tmpfs, a symbolic link, a web page where S3 should be, a
proxy that throttles or damages bytes. A Python store raising an exception is the product's own
slow path (a backend only a Python library can reach), not a stand-in."""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import tmpfs
from faultproxy import FaultProxy
from mbackup_dev.devstack import SeaweedFS
from milvus_backup import _engine
from milvus_backup.transfer.copy import CAUSES as GROUPED

PACKAGE = Path(_engine.__file__).parent

# Every code, and the exception class Python catches it as.
CLASSES = {
    "not_found": _engine.NotFoundError, "no_such_bucket": _engine.NotFoundError,
    "auth": _engine.AuthError, "invalid_access_key": _engine.AuthError, "signature_mismatch": _engine.AuthError,
    "expired_token": _engine.AuthError, "access_denied": _engine.AuthError, "no_credentials": _engine.AuthError,
    "unreachable": _engine.TransientError, "timeout": _engine.TransientError, "throttled": _engine.TransientError,
    "server_error": _engine.TransientError, "transient": _engine.TransientError,
    "cancelled": _engine.CancelledError, "already_exists": _engine.AlreadyExistsError,
    "precondition": _engine.PreconditionError, "protocol": _engine.ProtocolError,
    "tls_untrusted": _engine.EngineError, "disk_full": _engine.EngineError, "quota_exceeded": _engine.EngineError,
    "read_only": _engine.EngineError, "permission_denied": _engine.EngineError, "not_permitted": _engine.EngineError,
    "io": _engine.EngineError, "symlink": _engine.EngineError, "bad_key": _engine.EngineError,
    "key_clash": _engine.EngineError,
    "corrupt": _engine.EngineError, "changed": _engine.EngineError, "config": _engine.EngineError,
    "unsupported": _engine.EngineError, "refused": _engine.EngineError, "other": _engine.EngineError,
}


def test_every_code_maps_to_its_exception_class():
    assert dict(_engine.ERROR_CODES) == CLASSES


def test_an_engine_error_raised_from_python_still_has_a_code():
    assert _engine.EngineError("made in Python").code == "other"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def web_page(tmp_path_factory):
    """A web server where an S3 endpoint should be: it answers with HTML pages."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path_factory.mktemp("www")))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class Causes:
    seaweedfs: SeaweedFS
    bucket: str
    tmp: Path
    web: str

    def s3(self, bucket: str | None = None, endpoint: str | None = None, **options: str) -> _engine.Store:
        base = {"aws_endpoint": endpoint or self.seaweedfs.endpoint, "aws_allow_http": "true",
                "aws_access_key_id": self.seaweedfs.access_key, "aws_secret_access_key": self.seaweedfs.secret_key}
        return _engine.Store(f"s3://{bucket or self.bucket}", {k: v for k, v in {**base, **options}.items() if v})

    def folder(self, path: Path | None = None) -> _engine.Store:
        path = path or self.tmp / "folder"
        path.mkdir(parents=True, exist_ok=True)
        return _engine.Store(f"file://{path}")

    def mounted(self, options: str):
        return tmpfs(self.tmp / f"mnt-{uuid.uuid4().hex[:6]}", options)

    def full_disk(self) -> None:
        with self.mounted("size=1m") as mount:
            self.folder(mount).put("big", os.urandom(2 << 20))

    def read_only(self) -> None:
        with self.mounted("ro,size=1m") as mount:
            self.folder(mount).put("x", b"x")

    def symlink(self) -> None:
        (self.tmp / "outside").mkdir()
        (self.tmp / "outside" / "x").write_bytes(b"secret")
        store = self.folder()
        os.symlink(self.tmp / "outside", self.tmp / "folder" / "link")
        store.get("link/x")

    def under_a_file(self) -> None:
        store = self.folder()
        store.put("a", b"x")
        store.put("a/b", b"y")

    def taken(self) -> None:
        s = self.s3()
        s.put("lock", b"1", if_absent=True)
        s.put("lock", b"2", if_absent=True)

    def stale_version(self) -> None:
        s = self.s3()
        s.put("v", b"1")
        s.put("v", b"2", if_match='"0123456789abcdef0123456789abcdef"')

    def throttled(self) -> None:
        with FaultProxy(self.seaweedfs.endpoint, max_lifetime=120) as proxy:
            proxy.slowdown()
            self.s3(endpoint=proxy.endpoint).list()

    def azure_unreachable(self) -> None:
        # object_store's own client (GCS and Azure go through it), not the engine's S3 requests.
        _engine.Store("az://container", {"azure_storage_account_name": "devstoreaccount1",
                                         "azure_storage_account_key": "a2V5",
                                         "azure_endpoint": f"http://127.0.0.1:{closed_port()}",
                                         "azure_allow_http": "true"}).get("k")


# (what happens, expected code): each raises the code's exception class with the code.
CAUSES = {
    "get a missing object (S3)": (lambda c: c.s3().get("no/such/key"), "not_found"),
    "get a missing file": (lambda c: c.folder().get("nothing"), "not_found"),
    "get a missing object (memory)": (lambda c: _engine.Store(f"memory://{uuid.uuid4().hex}").get("k"), "not_found"),
    "list a missing bucket": (lambda c: c.s3(bucket="no-such-bucket-here").list(), "no_such_bucket"),
    "get from a missing bucket": (lambda c: c.s3(bucket="no-such-bucket-here").get("k"), "no_such_bucket"),
    "put into a missing bucket": (lambda c: c.s3(bucket="no-such-bucket-here").put("k", b"x"), "no_such_bucket"),
    "list with a wrong secret": (lambda c: c.s3(aws_secret_access_key="wrong-secret").list(), "signature_mismatch"),
    "put with a wrong secret": (lambda c: c.s3(aws_secret_access_key="wrong-secret").put("k", b"x"),
                                "signature_mismatch"),
    "list with an unknown key": (lambda c: c.s3(aws_access_key_id="nobody", aws_secret_access_key="x").list(),
                                 "invalid_access_key"),
    "list with no credentials": (lambda c: c.s3(aws_access_key_id="", aws_secret_access_key="",
                                                aws_metadata_endpoint=f"http://127.0.0.1:{closed_port()}").list(),
                                 "no_credentials"),
    "list a closed port": (lambda c: c.s3(endpoint=f"http://127.0.0.1:{closed_port()}").list(), "unreachable"),
    "get from a closed port (object_store)": (Causes.azure_unreachable, "unreachable"),
    "list a throttling server": (Causes.throttled, "throttled"),
    "list a web page": (lambda c: c.s3(endpoint=c.web).list(), "protocol"),
    "put on a full disk": (Causes.full_disk, "disk_full"),
    "put on a read-only disk": (Causes.read_only, "read_only"),
    "get through a symbolic link": (Causes.symlink, "symlink"),
    "get an empty path segment": (lambda c: c.folder().get("a//b"), "bad_key"),
    "put a staging file's name": (lambda c: c.folder().put("a#1", b"x"), "bad_key"),
    "get a .. segment (S3)": (lambda c: c.s3().get("a/../b"), "bad_key"),
    "put under a file's name": (Causes.under_a_file, "key_clash"),
    "put into a bucket name S3 refuses": (lambda c: c.s3(bucket="Not_A_Bucket_Name").put("k", b"x"), "refused"),
    "put if absent, taken": (Causes.taken, "already_exists"),
    "put if match, stale": (Causes.stale_version, "precondition"),
    "open an unknown scheme": (lambda c: _engine.Store("ftp://host/x"), "config"),
    "open with an unknown option": (lambda c: c.s3(no_such_option="1"), "config"),
}


@pytest.mark.parametrize("cause", CAUSES)
def test_each_code_comes_from_a_real_cause(seaweedfs, bucket, tmp_path, web_page, cause):
    make, code = CAUSES[cause]
    with pytest.raises(_engine.EngineError) as raised:
        make(Causes(seaweedfs, bucket, tmp_path, web_page))
    assert (raised.value.code, type(raised.value)) == (code, CLASSES[code]), str(raised.value)


class Raising:
    """A store a Python backend implements, failing with ``error`` on every call."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get(self, key: str) -> bytes:
        raise self.error

    def put(self, key: str, data: bytes) -> None:
        raise self.error

    def head(self, key: str) -> None:
        raise self.error


@pytest.mark.parametrize("error, code", [
    (PermissionError("not yours"), "access_denied"),
    (FileNotFoundError("gone"), "not_found"),
    (KeyError("k"), "not_found"),
    (ConnectionRefusedError("down"), "unreachable"),
    (TimeoutError("slow"), "timeout"),
    (ValueError("odd"), "other"),
], ids=lambda x: type(x).__name__ if isinstance(x, Exception) else x)
def test_a_python_store_s_exceptions_become_codes(error, code):
    result, = _engine.Copier(max_attempts=1).run([(Raising(error), "k", _engine.Store(f"memory://{uuid.uuid4().hex}"),
                                                    "k", 1)])
    assert (result["error_code"], result["bytes"]) == (code, 0), result
    assert str(error.args[0]) in result["error"]


def test_copy_results_carry_the_code(seaweedfs, bucket):
    store = seaweedfs.store(bucket)
    store.put("src/x", b"old version")
    (_, _, listed_etag), = store.list("src")
    store.put("src/x", b"new version")
    missing, changed = _engine.Copier(max_attempts=1).run([
        (store, "src/missing", store, "dst/missing", None),
        (store, "src/x", store, "dst/x", len(b"old version"), listed_etag),
    ])
    assert (missing["error_code"], changed["error_code"]) == ("not_found", "changed"), (missing, changed)
    copier = _engine.Copier()
    copier.cancel()
    cancelled, = copier.run([(store, "src/x", store, "dst/y", None)])
    assert cancelled["error_code"] == "cancelled"
    copied, = _engine.Copier().run([(store, "src/x", store, "dst/z", None)])
    assert (copied["error"], copied["error_code"]) == (None, None)


def test_bytes_damaged_on_every_read_fail_as_corrupt(seaweedfs, bucket):
    data = os.urandom(256 * 1024)
    seaweedfs.store(bucket).put("src/obj", data)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt(at_byte=100_000, paths="/src/obj")
        src = seaweedfs.store(bucket, endpoint=proxy.endpoint)
        result, = _engine.Copier(max_attempts=1).run([(src, "src/obj", _engine.Store(f"memory://{uuid.uuid4().hex}"),
                                                       "obj", len(data))])
    assert result["error_code"] == "corrupt", result


# --- what the user sees, decided on codes -------------------------------------------------

def mbackup(env, *args):
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_keys_a_folder_cannot_hold_are_said_once(seaweedfs, s3env, bucket, tmp_path):
    """`name#<digits>` is how the folder store names unfinished writes: such keys fail as bad
    keys, said once with the others, like keys with control characters."""
    for key in ("d/ok", "d/x#1", "d/y#22"):
        assert seaweedfs.request("PUT", bucket, key, body=b"data").status == 200
    out = tmp_path / "out"
    r = mbackup(s3env, "copy", f"s3://{bucket}/d?endpoint={seaweedfs.endpoint}", str(out))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [f"error: file://{out}: object keys that cannot be addressed: 2 of 3 objects not "
                                     "copied (e.g. x#1, y#22); --exclude skips them"], r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ok"]


def test_no_credentials_is_said_as_such(seaweedfs, s3env, bucket, tmp_path):
    env = {k: v for k, v in s3env.items() if not k.startswith("AWS_")}
    imds = f"http://127.0.0.1:{closed_port()}"
    r = mbackup(env, "copy", f"s3://{bucket}/d?endpoint={seaweedfs.endpoint}&aws_metadata_endpoint={imds}",
                str(tmp_path / "out"))
    assert (r.returncode, r.stderr) == (2, f"error: s3://{bucket}/d: no credentials found; set AWS_ACCESS_KEY_ID and "
                                           "AWS_SECRET_ACCESS_KEY, or use a profile or the config file\n")
    assert not (tmp_path / "out").exists()


# Ways Python used to read the engine's words to decide something: object_store's phrases, S3
# codes and addresses inside messages, and the retired error_kind/error_cause fields.
ENGINE_WORDS = re.compile(
    r"""\bin\s+(str\((e|error|exc)\)|text|message)\b"""
    r"""|["'](NoSuchBucket|SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|ExpiredToken|UnknownIssuer"""
    r"""|invalid peer certificate|certificate verify failed|error sending request|169\.254\.169\.254"""
    r"""|latest/api/token|os error \d+|ENOSPC|EROFS|ECONNREFUSED)["']\s+(not\s+)?in\b"""
    r"""|error_kind|error_cause""")


def test_python_never_decides_on_engine_message_text():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "_engine" not in source:
            continue  # only modules that meet engine errors
        for number, line in enumerate(source.splitlines(), 1):
            if ENGINE_WORDS.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert found == []


def test_the_failure_causes_python_groups_by_are_engine_codes():
    """A cause named after anything but a code (an errno, an S3 code) would never match a
    result, and its failures would be listed one by one instead of said once."""
    assert set(GROUPED) - set(_engine.ERROR_CODES) == set()
