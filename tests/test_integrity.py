"""A copy never reports a torn or damaged object as copied (issue #8, items 1, 2 and 9).

Against the real SeaweedFS: a source overwritten in the middle of a multipart copy, on
every copy path; bytes damaged on the wire (tests/faultproxy.py flips one); and engine
parameters no Python caller can make it panic with.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time

import pytest

from faultproxy import FaultProxy
from milvus_backup import _engine

MIB = 1 << 20
SIZE = 24 * MIB  # five parts of 5 MiB (the last 4 MiB)
# Each strategy slowed by a cap so a copy of SIZE bytes takes seconds, and when the last
# part can be read at the earliest, counted from the start of the process: streams at
# 3 MiB/s with a quarter second of burst; server-side copies at one request a second
# (CreateMultipartUpload and 4 UploadPartCopy before the last).
SLOW = {
    "bytes": (["--part-size", "5MiB", "--max-bandwidth", "3MiB/s"], (SIZE - 0.75 * MIB) / (3 * MIB)),
    "requests": (["--multipart-copy-threshold", "5MiB", "--copy-part-size", "5MiB", "--max-requests", "1"], 5.0),
}


def mbackup(env, *args, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def url(endpoint: str, bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}"


def summary(proc) -> dict:
    return json.loads(proc.stdout.splitlines()[-1])


def one_line_failure(proc, key: str) -> str:
    """Exit 1 and a `failed:` line naming ``key``; no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"failed: {key}: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def parts_uploaded(seaweedfs, bucket: str, key: str) -> int:
    """Parts of the multipart upload in progress at ``key`` (0 if none has started)."""
    listing = seaweedfs.request("GET", bucket, query={"uploads": "", "prefix": key})
    upload = re.search(rb"<UploadId>(.*?)</UploadId>", listing.body)
    if not upload:
        return 0
    parts = seaweedfs.request("GET", bucket, key, query={"uploadId": upload.group(1).decode()})
    return parts.body.count(b"<Part>")


# --- 1. a source overwritten mid-copy -----------------------------------------------------

# (source, destination, slowed by): every strategy that reads one object in several requests.
PATHS = {
    "s3-to-folder": ("s3", "folder", "bytes"),            # stream_multipart: ranged GETs
    "s3-to-other-endpoint": ("s3", "other", "bytes"),     # stream_multipart to another server
    "s3-to-s3-server-side": ("s3", "s3", "requests"),     # server_multipart: UploadPartCopy
    "folder-to-s3": ("folder", "s3", "bytes"),            # stream_multipart from local files
}


@pytest.mark.parametrize("path", PATHS)
def test_a_source_overwritten_mid_copy_is_copied_again_whole(seaweedfs, s3env, bucket, tmp_path, path):
    src_kind, dst_kind, slowed_by = PATHS[path]
    old, new = os.urandom(SIZE), os.urandom(SIZE)
    store = seaweedfs.store(bucket)
    # Streams from S3 read through a proxy that shows when the first part was asked for;
    # another proxy is "another endpoint" (both on the one SeaweedFS, so the copy streams).
    with FaultProxy(seaweedfs.endpoint, max_lifetime=170) as reads, \
            FaultProxy(seaweedfs.endpoint, max_lifetime=170) as other:
        if src_kind == "s3":
            store.put("src/big", old)
            streamed = dst_kind != "s3"
            src = url(reads.endpoint if streamed else seaweedfs.endpoint, bucket, "src")

            def overwrite():
                store.put("src/big", new)
        else:
            streamed = False
            (tmp_path / "src").mkdir()
            (tmp_path / "src" / "big").write_bytes(old)
            src = str(tmp_path / "src")

            def overwrite():  # the way a writer replaces a file: a new file renamed over it
                (tmp_path / "src" / "big.tmp").write_bytes(new)
                os.replace(tmp_path / "src" / "big.tmp", tmp_path / "src" / "big")
        if dst_kind == "folder":
            dst = str(tmp_path / "dst")

            def copied():
                return (tmp_path / "dst" / "big").read_bytes()
        else:
            dst = url(other.endpoint if dst_kind == "other" else seaweedfs.endpoint, bucket, "dst")

            def copied():
                return store.get("dst/big")

        def started():
            if streamed:
                return reads.seen[f"GET /{bucket}/src/big"] >= 1
            return parts_uploaded(seaweedfs, bucket, "dst/big") >= 1

        flags, last_read_not_before = SLOW[slowed_by]
        launched = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "copy", src, dst, "--json", "--records",
                                 *flags], env=s3env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: started() or proc.poll() is not None, "the first part read or written")
            assert proc.poll() is None, "the copy ended before the source could be overwritten"
            overwrite()
            overwritten = time.monotonic() - launched
            out, err = proc.communicate(timeout=150)
        finally:
            proc.kill()
    # Mid-copy: the new version was in place while parts of the old were yet to be read.
    assert overwritten < last_read_not_before, (overwritten, last_read_not_before)
    assert proc.returncode == 0, err
    record, totals = [json.loads(line) for line in out.splitlines()]
    got = copied()
    assert got == new, "the destination is not the new version" + (" (a mix of both)" if got != old else "")
    # The change was noticed and the object copied again, not patched up.
    assert record["attempts"] >= 2 and totals["retries"] >= 1, (record, totals)
    assert record["strategy"] == ("server_multipart" if slowed_by == "requests" else "stream_multipart")


def test_a_source_that_keeps_changing_fails_alone_in_one_line(seaweedfs, s3env, bucket, tmp_path):
    store = seaweedfs.store(bucket)
    small = {f"src/small/{i}": os.urandom(1000 + i) for i in range(5)}
    for k, v in small.items():
        store.put(k, v)
    store.put("src/big", os.urandom(SIZE))
    stop = threading.Event()
    rewrites = []

    def keep_rewriting():
        while not stop.is_set():
            store.put("src/big", os.urandom(SIZE))
            rewrites.append(time.monotonic())
            stop.wait(0.3)

    writer = threading.Thread(target=keep_rewriting, daemon=True)
    writer.start()
    try:
        proc = mbackup(s3env, "copy", url(seaweedfs.endpoint, bucket, "src"), str(tmp_path / "dst"), *SLOW["bytes"][0])
    finally:
        stop.set()
        writer.join(30)
    line = one_line_failure(proc, "big")
    assert re.fullmatch(r"failed: big: source src/big changed during the copy \(.*\), on each of 5 attempts: "
                        r"copy it again once nothing writes to it", line), line
    assert len(rewrites) > 5
    assert not (tmp_path / "dst" / "big").exists()  # nothing half-made
    assert {f"src/small/{p.name}": p.read_bytes() for p in (tmp_path / "dst" / "small").iterdir()} == small


# --- 2. bytes damaged in transit ----------------------------------------------------------

def crc_header(algo: str, data: bytes) -> dict[str, str]:
    value = _engine.checksum(algo, data)
    packed = struct.pack(">Q", value) if algo == "crc64nvme" else struct.pack(">I", value)
    return {f"x-amz-checksum-{algo}": base64.b64encode(packed).decode()}


def put_multipart(seaweedfs, bucket: str, key: str, data: bytes) -> str:
    """Upload ``data`` as a one-part multipart upload: its ETag (`...-1`) is no MD5, and it
    has no checksum of the whole object."""
    created = seaweedfs.request("POST", bucket, key, query={"uploads": ""})
    upload_id = re.search(rb"<UploadId>(.*?)</UploadId>", created.body).group(1).decode()
    part = seaweedfs.request("PUT", bucket, key, query={"partNumber": "1", "uploadId": upload_id}, body=data)
    done = seaweedfs.request("POST", bucket, key, query={"uploadId": upload_id}, body=(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{part.headers['etag']}</ETag></Part></CompleteMultipartUpload>").encode())
    assert done.status == 200, done.body
    return seaweedfs.request("HEAD", bucket, key).headers["etag"]


def copy_with_one_byte_damaged(seaweedfs, s3env, bucket: str, dst, *flags) -> dict:
    """Copy src/ to the folder ``dst`` through a proxy that flips one byte of the first read
    of src/obj; the copy must succeed. Returns the object's record."""
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt(count=1, at_byte=100_000, paths="/src/obj")
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), str(dst), "--json", "--records", *flags)
        assert proxy.stats["corrupted"] == 1
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[0])


# How the source states its bytes: an MD5 ETag, or a CRC stored with the object (SeaweedFS
# keeps x-amz-checksum-* sent with a PUT and returns them to x-amz-checksum-mode: ENABLED).
SOURCES = {
    "md5-etag": None,
    "crc32c": "crc32c",
    "crc64nvme": "crc64nvme",
}


@pytest.mark.parametrize("stated_by", SOURCES)
@pytest.mark.parametrize("size", [256 * 1024, SIZE], ids=["whole-get", "ranged-parts"])
def test_bytes_damaged_in_transit_are_caught_by_the_source_checksum(seaweedfs, s3env, bucket, tmp_path,
                                                                    stated_by, size):
    data = os.urandom(size)
    algo = SOURCES[stated_by]
    resp = seaweedfs.request("PUT", bucket, "src/obj", body=data, headers=crc_header(algo, data) if algo else {})
    assert resp.status == 200 and (not algo or f"x-amz-checksum-{algo}" in resp.headers), resp.headers
    record = copy_with_one_byte_damaged(seaweedfs, s3env, bucket, tmp_path / "once", "--part-size", "8MiB")
    assert record["attempts"] == 2 and record["error"] is None, record
    assert (tmp_path / "once" / "obj").read_bytes() == data

    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt(at_byte=100_000, paths="/src/obj")  # every read of it, every attempt
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), str(tmp_path / "never"), "--part-size", "8MiB")
    line = one_line_failure(r, "obj")
    assert "src/obj was damaged in transit (read " in line and ", the source states " in line, line
    assert not (tmp_path / "never" / "obj").exists()


def test_verify_reads_the_source_again_when_it_states_no_checksum(seaweedfs, s3env, bucket, tmp_path):
    data = os.urandom(256 * 1024)
    assert put_multipart(seaweedfs, bucket, "src/obj", data).strip('"').endswith("-1")
    record = copy_with_one_byte_damaged(seaweedfs, s3env, bucket, tmp_path / "dst", "--verify")
    assert record["attempts"] == 2 and record["verified"] is True, record
    assert (tmp_path / "dst" / "obj").read_bytes() == data


def test_a_server_side_copy_is_pinned_to_the_listed_version(seaweedfs, bucket):
    """CopyObject names the listed version: a source replaced since the listing is copied
    again as it is now, and the result says which it is."""
    store = seaweedfs.store(bucket)
    store.put("src/x", b"old version")
    (_, _, listed_etag), = store.list("src")
    store.put("src/x", b"new version")
    result, = _engine.Copier().run([(store, "src/x", store, "dst/x", len(b"old version"), listed_etag)])
    assert result["error"] is None and result["attempts"] == 2, result
    assert store.get("dst/x") == b"new version"


# --- 9. engine parameters -----------------------------------------------------------------

GIB = 1 << 30
BAD_PARAMETERS = [
    ("parallel", 0), ("parallel", -1), ("parallel", 18446744073709551617), ("parallel", 4097), ("parallel", 1.5),
    ("part_parallel", 0), ("part_parallel", 10**6),
    ("max_attempts", 0), ("max_attempts", 2**32),
    ("part_size", 0), ("part_size", 5 * GIB + 1), ("part_size", -1), ("part_size", 2**64),
    ("copy_part_size", 0), ("copy_part_size", 2**70),
    ("multipart_threshold", -1), ("multipart_threshold", 2**64),
    ("multipart_copy_threshold", 6 * GIB),
    ("memory_budget", 0), ("memory_budget", 2**64),
    ("max_bandwidth", -1), ("max_bandwidth", 2**64), ("max_bandwidth", 10**400),
    ("max_requests_per_sec", 1e-300), ("max_requests_per_sec", -1.0), ("max_requests_per_sec", float("nan")),
    ("max_requests_per_sec", float("inf")), ("max_requests_per_sec", 10**400), ("max_requests_per_sec", 1e7),
]

PROBE = """
import sys
from milvus_backup import _engine
for name, value in eval(sys.argv[1], {"nan": float("nan"), "inf": float("inf")}):
    try:
        copier = _engine.Copier(**{name: value})
        src = _engine.Store("memory://params")
        src.put("k", b"x")
        if sys.argv[2] == "run":  # a cap in effect is used, not just stored
            copier.run([(src, "k", src, "k2", 1)])
        print("accepted")
    except BaseException as e:  # a Rust panic arrives as PanicException, a BaseException
        print(f"{type(e).__name__}: {e}".replace("\\n", " "))
"""


def test_no_engine_parameter_makes_it_panic_or_overflow():
    """Each value out of range is a ValueError naming the parameter and its range. Run in a
    subprocess: a panic must not take the test run with it."""
    proc = subprocess.run([sys.executable, "-c", PROBE, repr(BAD_PARAMETERS), "run"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcomes = proc.stdout.splitlines()
    assert len(outcomes) == len(BAD_PARAMETERS), proc.stdout + proc.stderr
    for (name, value), outcome in zip(BAD_PARAMETERS, outcomes, strict=False):
        assert re.fullmatch(rf"ValueError: {name} must be (an integer from|0 \(no cap\) or from) .+, not .+", outcome), \
            (name, value, outcome)
    assert "must be an integer from 5242880 (5 MiB) to 5368709120 (5 GiB), not 0" in outcomes[9]

    good = [("parallel", 4096), ("part_size", 5 * 2**20), ("part_size", 5 * GIB), ("max_requests_per_sec", 0.01),
            ("max_requests_per_sec", 0), ("max_bandwidth", 1), ("multipart_threshold", 0), ("max_attempts", 100)]
    proc = subprocess.run([sys.executable, "-c", PROBE, repr(good), "build"], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines() == ["accepted"] * len(good), proc.stdout + proc.stderr
