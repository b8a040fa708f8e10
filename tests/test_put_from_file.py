"""Local file -> S3 uploads streamed from the file (issue #14): two passes over the file in
bounded chunks, one PUT whose payload is unsigned and whose CRC32C the server checks.

Against the real SeaweedFS (which refuses a wrong x-amz-checksum-crc32c with BadDigest) and
moto's S3 server (which stores whatever it is sent: the server that does not check). The
tests' FaultProxy shows what went over the wire and damages an upload on its way.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid

from faultproxy import FaultProxy
from milvus_backup import _engine
from test_copy import peak_rss_mib, write_folder

KIB, MIB = 1024, 1024 * 1024
CHUNK = 256 * KIB  # rust/src/copy/from_file.rs


def mbackup(env, *args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def url(endpoint: str, bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}"


def records(proc) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return {r["src_key"]: r for r in lines if "src_key" in r}


def crc32c_header(data: bytes) -> str:
    return base64.b64encode(struct.pack(">I", _engine.checksum("crc32c", data))).decode()


def puts_of(proxy: FaultProxy, bucket: str, prefix: str) -> dict[str, dict[str, str]]:
    """The headers of each PUT under ``prefix``, by key below it."""
    start = f"/{bucket}/{prefix}/"
    return {path[len(start):]: headers for method, path, headers in proxy.heads
            if method == "PUT" and path.startswith(start)}


# Empty, one byte, one chunk exactly, a chunk and a byte, several chunks: every edge of the passes.
OBJECTS = {
    "empty": b"",
    "one": b"x",
    "d/chunk": os.urandom(CHUNK),
    "d/chunk-and-one": os.urandom(CHUNK + 1),
    "d/e/several": os.urandom(3 * MIB + 17),
}


def test_local_files_stream_unsigned_with_a_crc32c_the_server_checks(seaweedfs, s3env, bucket, tmp_path):
    write_folder(tmp_path / "src", OBJECTS)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        r = mbackup(s3env, "--log-level", "info", "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"),
                    "--json", "--records")
        puts = puts_of(proxy, bucket, "dst")
    got = records(r)
    stored = seaweedfs.store(bucket)
    assert {k: stored.get(f"dst/{k}") for k in OBJECTS} == OBJECTS  # bytes equal
    for key, data in OBJECTS.items():
        headers = puts[key]
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", headers
        assert headers["x-amz-checksum-crc32c"] == crc32c_header(data), headers
        assert int(headers["content-length"]) == len(data)
        assert got[key]["strategy"] == "stream" and got[key]["error"] is None
        assert got[key]["checksum"] == f"{_engine.checksum('crc32c', data):08x}"
        assert got[key]["etag"]
    # One probe with a wrong CRC, refused, so nothing of it is left; said once in the log.
    probes = [k for k in puts if ".mbackup-crc32c-probe-" in k]
    assert len(probes) == 1, puts.keys()  # under the destination prefix (a folder of one of its keys)
    assert sorted(k for k, _, _ in stored.list("dst")) == sorted(f"dst/{k}" for k in OBJECTS)
    said = [line for line in r.stderr.splitlines() if "x-amz-checksum-crc32c" in line]
    assert len(said) == 1 and "stream unsigned, CRC32C-checked" in said[0], r.stderr


def test_an_upload_damaged_on_the_wire_is_refused_by_the_server_and_sent_again(seaweedfs, s3env, bucket, tmp_path):
    data = os.urandom(2 * MIB)
    write_folder(tmp_path / "src", {"obj": data})
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt_request(count=1, at_byte=700_000, paths="/dst/obj")
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"), "--json", "--records")
        assert proxy.stats["corrupted_requests"] == 1
    record = records(r)["obj"]
    assert record["attempts"] == 2 and record["error"] is None, record
    assert record["checksum"] == f"{_engine.checksum('crc32c', data):08x}"
    assert seaweedfs.store(bucket).get("dst/obj") == data

    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt_request(at_byte=700_000, paths="/never/obj")  # every attempt
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "never"))
    assert r.returncode == 1, r.stderr
    failed = [line for line in r.stderr.splitlines() if line.startswith("failed: obj: ")]
    assert len(failed) == 1 and "damaged on the way to the server" in failed[0], r.stderr
    assert not list(seaweedfs.store(bucket).list("never"))


def test_a_server_that_ignores_the_crc_gets_signed_uploads_and_keeps_no_probe(moto, s3env, tmp_path):
    """moto stores an object whatever CRC32C it is told: the probe finds that out, deletes
    its object, and every upload goes as before (whole body, SHA-256 signed, no CRC header)."""
    bucket = f"put-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(bucket)
    write_folder(tmp_path / "src", OBJECTS)
    with FaultProxy(moto.endpoint, max_lifetime=120) as proxy:
        r = mbackup(s3env, "--log-level", "info", "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"),
                    "--json", "--records")
        puts = puts_of(proxy, bucket, "dst")
        deleted = [path for method, path, _ in proxy.heads if method == "DELETE"]
    assert records(r).keys() == OBJECTS.keys()
    assert moto.objects(bucket, "dst/") == OBJECTS  # bytes equal, and no probe object left
    probes = [k for k in puts if ".mbackup-crc32c-probe-" in k]
    assert len(probes) == 1 and deleted == [f"/{bucket}/dst/{probes[0]}"], (puts.keys(), deleted)
    for key in OBJECTS:
        assert puts[key]["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD", puts[key]
        assert "x-amz-checksum-crc32c" not in puts[key], puts[key]
    said = [line for line in r.stderr.splitlines() if "x-amz-checksum-crc32c" in line]
    assert len(said) == 1 and "read whole and signed" in said[0], r.stderr


def test_a_file_changed_while_it_is_sent_is_sent_again_with_the_checksum_of_what_landed(
        seaweedfs, s3env, bucket, tmp_path):
    """The first pass sums the old bytes; while the second sends them (slowed by a cap) the
    file is rewritten in place. The server refuses the mix, the copy sees the file changed
    and sends it again: the object and its recorded checksum are the new bytes'."""
    old, new = os.urandom(4 * MIB), os.urandom(4 * MIB)
    write_folder(tmp_path / "src", {"obj": old})
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        def rewrite() -> None:
            deadline = time.monotonic() + 60
            while not any(m == "PUT" and p.endswith("/dst/obj") for m, p, _ in list(proxy.heads)):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)
            with open(tmp_path / "src" / "obj", "r+b") as f:
                f.write(new)

        writer = threading.Thread(target=rewrite, daemon=True)
        writer.start()
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"), "--json", "--records",
                    "--max-bandwidth", "2MiB/s")
        writer.join(10)
    record = records(r)["obj"]
    assert record["error"] is None and record["attempts"] >= 2, record
    assert seaweedfs.store(bucket).get("dst/obj") == new
    assert record["checksum"] == f"{_engine.checksum('crc32c', new):08x}", record


def test_peak_rss_of_local_to_s3_does_not_hold_whole_files(seaweedfs, s3env, bucket, tmp_path):
    """48 files of 4 MiB at the default memory budget (128 MiB), 64 at a time: before, each
    was read whole for its PUT and the copy peaked at ~184 MiB; streamed, a few chunks per
    file are held (measured: see benches/README.md, issue #14)."""
    objects = {f"big/o{i}": os.urandom(4 * MIB) for i in range(48)}
    write_folder(tmp_path / "src", objects)
    peak = peak_rss_mib(s3env, "copy", str(tmp_path / "src"), url(seaweedfs.endpoint, bucket, "dst"),
                        "--parallel", "64", "--quiet")
    stored = seaweedfs.store(bucket)
    assert {k[len("dst/"):]: stored.get(k) for k, _, _ in stored.list("dst")} == objects
    assert peak < 100, peak
