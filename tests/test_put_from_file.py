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
from urllib.parse import parse_qs

import pytest

from faultproxy import FaultProxy
from milvus_backup import _engine
from test_copy import peak_rss_mib, write_folder
from test_storage_safety import uploads

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
    assert len(said) == 1 and "uploads go unsigned, each stating its CRC32C" in said[0], r.stderr


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
    assert len(said) == 1 and "uploads are signed" in said[0], r.stderr


def test_a_probe_object_the_store_will_not_delete_is_named_and_the_copy_goes_on(moto, s3env, tmp_path):
    """Writing allowed, deleting not (a bucket policy): the probe's object stays, one warning in
    the log names it, and the uploads go signed as on any server that stores a wrong CRC32C."""
    bucket = f"put-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(bucket)
    write_folder(tmp_path / "src", OBJECTS)
    with FaultProxy(moto.endpoint, max_lifetime=120) as proxy:
        proxy.deny(methods="DELETE")
        r = mbackup(s3env, "--log-level", "warn", "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"),
                    "--json", "--records")
        assert proxy.stats["denied"] == 1
    assert records(r).keys() == OBJECTS.keys()  # exit 0, every object copied
    kept = {k: v for k, v in moto.objects(bucket, "dst/").items() if k not in OBJECTS}
    assert len(kept) == 1 and next(iter(kept)).rsplit("/", 1)[-1].startswith(".mbackup-crc32c-probe-"), kept
    assert {k: v for k, v in moto.objects(bucket, "dst/").items() if k in OBJECTS} == OBJECTS  # bytes equal
    said = [line for line in r.stderr.splitlines() if "checksum probe" in line]
    assert len(said) == 1 and f"dst/{next(iter(kept))} stays: not deleted" in said[0], r.stderr[-3000:]
    assert "AccessDenied" in said[0]


# Files above the multipart threshold (issue #14): each part summed, then streamed unsigned with
# its own CRC32C, into an upload that declares CRC32C. Parts of PART bytes: files this small
# get parts of --part-size (longer ones only above 8 parts' worth: `long_range` in
# rust/src/copy.rs), and PART is not a multiple of CHUNK, so every part ends mid-chunk.
PART = 8 * MIB + 1000
MULTIPART = ["--multipart-threshold", "5MiB", "--part-size", str(PART)]
LARGE = {
    "two": os.urandom(PART + 1),
    "d/three": os.urandom(2 * PART + CHUNK // 3),
    "exact": os.urandom(2 * PART),
}


def parts_of(heads, bucket: str, key: str) -> dict[int, dict[str, str]]:
    """The headers of each UploadPart of ``key``, by part number."""
    out = {}
    for method, path, headers in heads:
        where, _, query = path.partition("?")
        if method == "PUT" and where == f"/{bucket}/{key}" and "partNumber=" in query:
            out[int(parse_qs(query)["partNumber"][0])] = headers
    return out


def test_large_files_stream_in_parts_each_with_a_crc32c_the_server_checks(seaweedfs, s3env, bucket, tmp_path):
    write_folder(tmp_path / "src", LARGE)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"), *MULTIPART,
                    "--json", "--records")
        heads = list(proxy.heads)
    got = records(r)
    stored = seaweedfs.store(bucket)
    assert {k: stored.get(f"dst/{k}") for k in LARGE} == LARGE  # bytes equal
    for key, data in LARGE.items():
        assert got[key]["strategy"] == "stream_multipart" and got[key]["error"] is None, got[key]
        assert got[key]["checksum"] == f"{_engine.checksum('crc32c', data):08x}"  # the whole file's
        created = [h for m, p, h in heads if m == "POST" and p == f"/{bucket}/dst/{key}?uploads="]
        assert len(created) == 1 and created[0]["x-amz-checksum-algorithm"] == "CRC32C", created
        pieces = [data[at:at + PART] for at in range(0, len(data), PART)]
        parts = parts_of(heads, bucket, f"dst/{key}")
        assert sorted(parts) == list(range(1, len(pieces) + 1)), parts.keys()
        for n, piece in enumerate(pieces, 1):
            assert parts[n]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", parts[n]
            assert parts[n]["x-amz-checksum-crc32c"] == crc32c_header(piece), n
            assert int(parts[n]["content-length"]) == len(piece)
    assert uploads(seaweedfs, bucket) == []


# One PUT of 2 MiB, or the second of three parts: damaged on the wire, the same length.
DAMAGED = {"one-put": (2 * MIB, [], ""), "parts": (2 * PART + 5, MULTIPART, "?partNumber=2&")}


@pytest.mark.parametrize("how", DAMAGED)
def test_an_upload_damaged_on_the_wire_is_refused_by_the_server_and_sent_again(
        seaweedfs, s3env, bucket, tmp_path, how):
    size, flags, request = DAMAGED[how]
    data = os.urandom(size)
    write_folder(tmp_path / "src", {"obj": data})
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt_request(count=1, at_byte=700_000, paths=f"/dst/obj{request}")
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"), *flags,
                    "--json", "--records")
        assert proxy.stats["corrupted_requests"] == 1
    record = records(r)["obj"]
    assert record["attempts"] == 2 and record["error"] is None, record
    assert record["checksum"] == f"{_engine.checksum('crc32c', data):08x}"
    assert seaweedfs.store(bucket).get("dst/obj") == data
    assert uploads(seaweedfs, bucket) == []  # a refused attempt's upload was aborted

    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt_request(at_byte=700_000, paths=f"/never/obj{request}")  # every attempt
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "never"), *flags)
    assert r.returncode == 1, r.stderr
    failed = [line for line in r.stderr.splitlines() if line.startswith("failed: obj: ")]
    assert len(failed) == 1 and "damaged on the way to the server" in failed[0], r.stderr
    assert not list(seaweedfs.store(bucket).list("never"))
    assert uploads(seaweedfs, bucket) == []


# One PUT (4 MiB at 2 MiB/s) or parts (three of PART at 8 MiB/s), the file rewritten while it is
# sent: in place (the open file changes), or replaced the way writers replace files, a new one
# renamed over it (the open file would still read the old bytes, whole and consistent).
REWRITTEN = {
    "one-put-in-place": (4 * MIB, [], "2MiB/s", False),
    "one-put-renamed-over": (4 * MIB, [], "2MiB/s", True),
    "parts-in-place": (3 * PART, MULTIPART, "8MiB/s", False),
    "parts-renamed-over": (3 * PART, MULTIPART, "8MiB/s", True),
}


@pytest.mark.parametrize("how", REWRITTEN)
def test_a_file_rewritten_while_it_is_sent_is_sent_again_as_it_is_then(seaweedfs, s3env, bucket, tmp_path, how):
    """The first pass sums the old bytes; while the second sends them (slowed by a cap) the
    file is rewritten. The server refuses what no longer matches its sum, or the check of the
    file's version after each pass sees the change: the copy says the file changed and sends
    it again. The object and its recorded checksum are the new bytes', and no upload is left
    behind."""
    size, flags, cap, renamed = REWRITTEN[how]
    old, new = os.urandom(size), os.urandom(size)
    write_folder(tmp_path / "src", {"obj": old})
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        def rewrite() -> None:
            deadline = time.monotonic() + 60
            while not any(m == "PUT" and p.split("?")[0].endswith("/dst/obj") for m, p, _ in list(proxy.heads)):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)
            if renamed:
                (tmp_path / "obj.new").write_bytes(new)
                os.replace(tmp_path / "obj.new", tmp_path / "src" / "obj")
            else:
                with open(tmp_path / "src" / "obj", "r+b") as f:
                    f.write(new)

        writer = threading.Thread(target=rewrite, daemon=True)
        writer.start()
        r = mbackup(s3env, "--log-level", "info", "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"),
                    *flags, "--json", "--records", "--max-bandwidth", cap)
        writer.join(10)
    record = records(r)["obj"]
    assert record["error"] is None and record["attempts"] >= 2, record
    said = [line for line in r.stderr.splitlines() if "copy obj: attempt 1 of" in line]
    why = "another file took its name" if renamed else "written to while it was being read"
    assert len(said) == 1 and why in said[0], r.stderr
    assert seaweedfs.store(bucket).get("dst/obj") == new
    assert record["checksum"] == f"{_engine.checksum('crc32c', new):08x}", record
    assert uploads(seaweedfs, bucket) == []


def test_a_part_cut_on_the_way_is_sent_again_alone(seaweedfs, s3env, bucket, tmp_path):
    """Two parts' connections are cut before they reach the server: those parts are sent again,
    not the whole file (one attempt at the object), and the object is the file."""
    data = os.urandom(3 * PART)
    write_folder(tmp_path / "src", {"obj": data})
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.stall(0.2, count=2, paths="?partNumber=")  # then close
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"), *MULTIPART,
                    "--json", "--records")
        heads = list(proxy.heads)
    record = records(r)["obj"]
    assert record["attempts"] == 1 and record["error"] is None, record
    assert record["bytes"] == len(data)
    assert seaweedfs.store(bucket).get("dst/obj") == data
    sent = [p for m, p, _ in heads if m == "PUT" and "?partNumber=" in p]
    assert len(sent) == 3 + 2, sent  # three parts, two of them twice
    assert len([p for m, p, _ in heads if m == "POST" and p.endswith("?uploads=")]) == 1
    assert uploads(seaweedfs, bucket) == []


def test_parts_cut_on_the_way_leave_no_upload_behind(seaweedfs, s3env, bucket, tmp_path):
    """Every part's connection is cut before it reaches the server, on every attempt: the copy
    fails in one line with the exit code of "retry later", and each attempt's multipart upload
    was aborted."""
    write_folder(tmp_path / "src", {"obj": os.urandom(2 * PART)})
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.stall(0.2, paths="?partNumber=")  # then close: the part never arrives
        r = mbackup(s3env, "copy", str(tmp_path / "src"), url(proxy.endpoint, bucket, "dst"), *MULTIPART)
        created = [p for m, p, _ in proxy.heads if m == "POST" and p.endswith("?uploads=")]
    assert r.returncode == 3, r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("failed: obj: ")]) == 1, r.stderr
    assert len(created) > 1  # retried, each with an upload of its own
    assert uploads(seaweedfs, bucket) == []
    assert not list(seaweedfs.store(bucket).list("dst"))


# Files at the default memory budget (128 MiB), --parallel 64. Measured (/usr/bin/time, 3 runs
# each, benches/README.md, issue #14): 48 files of 4 MiB, each read whole for its PUT before,
# peaked at ~184 MiB, streamed at 64-77 MiB; 4 files of 64 MiB, above the multipart threshold,
# read as whole 8 MiB parts before, peaked at 168 MiB, streamed (two chunks per part) at
# 56-62 MiB. The bound sits between.
HELD = {"whole-files": (48, 4 * MIB), "parts": (4, 64 * MIB)}


@pytest.mark.parametrize("how", HELD)
def test_peak_rss_of_local_to_s3_holds_chunks_not_files_or_parts(seaweedfs, s3env, bucket, tmp_path, how):
    count, size = HELD[how]
    objects = {f"big/o{i}": os.urandom(size) for i in range(count)}
    write_folder(tmp_path / "src", objects)
    peak = peak_rss_mib(s3env, "copy", str(tmp_path / "src"), url(seaweedfs.endpoint, bucket, "dst"),
                        "--parallel", "64", "--quiet")
    stored = seaweedfs.store(bucket)
    assert {k[len("dst/"):]: stored.get(k) for k, _, _ in stored.list("dst")} == objects
    assert peak < 100, peak
