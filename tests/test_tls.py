"""`mbackup copy` over HTTPS to an S3 server whose certificate a private CA signed (issue #4 §6).

A CA and a server certificate for 127.0.0.1/localhost are made with the openssl CLI (pki.py); a
second SeaweedFS serves S3 over TLS with them. The user passes the CA as ``ca_file`` in the
URL: object_store (list, get, put) and the engine's own HTTP client (server-side CopyObject)
must both trust it, and without it the command must say what is wrong in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import S3_SECRET
from mbackup_dev.devstack import SeaweedFS
from milvus_backup import _engine
from pki import Pki, make_pki, needs_openssl

pytestmark = needs_openssl

SRC, DST = "tls-src", "tls-dst"
OBJECTS = {
    "data/a.bin": os.urandom(70 * 1024),
    "data/sub/b.bin": b"second object",
    "data/empty": b"",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def ca_pem(pki) -> Path:
    return pki.ca


@pytest.fixture(scope="module")
def tls_s3(pki, tmp_path_factory):
    """A SeaweedFS serving S3 over HTTPS too, with bucket SRC holding OBJECTS and empty DST."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs-tls"), secret_key=S3_SECRET,
                   tls=(pki.server_cert, pki.server_key)) as s3:
        assert s3.https_endpoint.startswith("https://")
        for bucket in (SRC, DST):
            s3.create_bucket(bucket)
        store = _engine.Store(f"s3://{SRC}", {
            "aws_endpoint": s3.https_endpoint, "aws_access_key_id": s3.access_key,
            "aws_secret_access_key": s3.secret_key, "ca_file": str(pki.ca)})
        for key, data in OBJECTS.items():
            store.put(key, data)
        yield s3


@pytest.fixture(scope="module")
def env(tls_s3):
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=tls_s3.access_key, AWS_SECRET_ACCESS_KEY=tls_s3.secret_key)
    for name in ("MBACKUP_PLUGINS", "AWS_ENDPOINT_URL", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        env.pop(name, None)
    return env


def url(s3: SeaweedFS, bucket: str, prefix: str, ca: Path | None) -> str:
    return f"s3://{bucket}/{prefix}?endpoint={s3.https_endpoint}" + (f"&ca_file={ca}" if ca else "")


def mbackup(env, *args):
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def expected() -> dict[str, bytes]:
    return {k[len("data/"):]: v for k, v in OBJECTS.items()}


def tree(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_copy_to_folder_with_the_ca(tls_s3, env, ca_pem, tmp_path):
    folder = tmp_path / "out"
    r = mbackup(env, "copy", url(tls_s3, SRC, "data", ca_pem), str(folder), "--verify")
    assert r.returncode == 0, r.stderr + r.stdout
    assert tree(folder) == expected()


def test_bucket_to_bucket_server_side_copy_with_the_ca(tls_s3, env, ca_pem):
    # CopyObject is signed and sent by the engine's own HTTP client: it must trust the CA too.
    r = mbackup(env, "copy", url(tls_s3, SRC, "data", ca_pem), url(tls_s3, DST, "copy", ca_pem), "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["objects_failed"] == 0
    assert summary["strategies"] == {"server_copy": len(OBJECTS)}
    assert sorted(tls_s3.list_keys(DST, "copy/")) == sorted(f"copy/{k}" for k in expected())
    for key, data in expected().items():
        assert tls_s3.request("GET", DST, f"copy/{key}").body == data


def assert_untrusted(r: subprocess.CompletedProcess, location: str) -> None:
    assert r.returncode == 2, r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert location in line and "certificate is not trusted" in line and "ca_file" in line, line
    assert "Traceback" not in r.stderr and "<" not in line


def test_source_without_the_ca_fails_in_one_line_and_writes_nothing(tls_s3, env, tmp_path):
    folder = tmp_path / "out"
    r = mbackup(env, "copy", url(tls_s3, SRC, "data", None), str(folder))
    assert_untrusted(r, f"s3://{SRC}/data")
    assert not folder.exists()


def test_destination_without_the_ca_fails_in_one_line_and_writes_nothing(tls_s3, env, ca_pem):
    r = mbackup(env, "copy", url(tls_s3, SRC, "data", ca_pem), url(tls_s3, DST, "untrusted", None))
    assert_untrusted(r, f"s3://{DST}/untrusted")
    assert tls_s3.list_keys(DST, "untrusted") == []  # read over plain HTTP


def test_an_untrusted_certificate_has_its_own_error_code(tls_s3):
    """Whether the engine's own S3 requests or object_store's client (Azure, GCS) met it,
    the error says tls_untrusted: no retry can fix it, and the message can say what to do."""
    s3 = _engine.Store(f"s3://{SRC}", {"aws_endpoint": tls_s3.https_endpoint, "aws_access_key_id": tls_s3.access_key,
                                       "aws_secret_access_key": tls_s3.secret_key})
    azure = _engine.Store("az://container", {"azure_storage_account_name": "devstoreaccount1",
                                             "azure_storage_account_key": "a2V5", "azure_endpoint": tls_s3.https_endpoint})
    for call in (lambda: s3.list("data"), lambda: azure.get("k")):
        with pytest.raises(_engine.EngineError) as raised:
            call()
        assert raised.value.code == "tls_untrusted", str(raised.value)


@pytest.mark.parametrize("dst", ["folder", "bucket"])
def test_allow_invalid_certificates_holds_for_every_request(tls_s3, env, tmp_path, dst):
    """The object_store option, given in the URL, without the CA: the engine's own requests
    (its listing, GETs, CopyObject) must accept the certificate as object_store's do."""
    allow = "&allow_invalid_certificates=true"
    src = url(tls_s3, SRC, "data", None) + allow
    target = str(tmp_path / "out") if dst == "folder" else url(tls_s3, DST, f"insecure-{tmp_path.name}", None) + allow
    r = mbackup(env, "copy", src, target, "--verify")
    assert r.returncode == 0, r.stderr + r.stdout
    if dst == "folder":
        assert tree(tmp_path / "out") == expected()
    else:
        for key, data in expected().items():
            assert tls_s3.request("GET", DST, f"insecure-{tmp_path.name}/{key}").body == data
