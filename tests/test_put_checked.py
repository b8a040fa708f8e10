"""Objects read from one S3 store and written to another (bytes through the client: a stream,
not a server-side copy) go to a server that checks CRC32C unsigned, each request stating the
CRC32C of its body (issue #14; rust/src/copy/checked.rs).

SeaweedFS does not check the signed payload hash: before, a PUT or a part with a byte flipped on
the wire was stored and the copy reported success. Both stores here are the real SeaweedFS; the
destination is reached through the tests' FaultProxy (another endpoint, so the copy streams),
which shows the headers sent and damages one request on its way.
"""

from __future__ import annotations

import os

import pytest

from faultproxy import FaultProxy
from milvus_backup import _engine
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.storage.location import AlreadyExists, BucketNotFound, StorageError, VersionChanged
from test_put_from_file import MIB, crc32c_header, mbackup, records, url
from test_storage_safety import uploads

PART = 8 * MIB
MULTIPART = ["--multipart-threshold", "5MiB", "--part-size", "8MiB"]
# One PUT of 2 MiB, or the second of three ranged parts: the request damaged, and what it is.
CASES = {"one-put": (2 * MIB, [], ""), "parts": (2 * PART + 5, MULTIPART, "?partNumber=2&")}


@pytest.mark.parametrize("how", CASES)
def test_a_body_damaged_on_the_wire_is_refused_and_sent_again(seaweedfs, s3env, bucket, how):
    size, flags, request = CASES[how]
    data = os.urandom(size)
    seaweedfs.store(bucket).put(f"src-{how}/obj", data)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt_request(count=1, at_byte=700_000, paths=f"/{bucket}/dst-{how}/obj{request}")
        r = mbackup(s3env, "copy", url(seaweedfs.endpoint, bucket, f"src-{how}"), url(proxy.endpoint, bucket, f"dst-{how}"),
                    *flags, "--json", "--records")
        assert proxy.stats["corrupted_requests"] == 1
        sent = [(m, p, h) for m, p, h in proxy.heads if m == "PUT" and p.startswith(f"/{bucket}/dst-{how}/obj")]
    record = records(r)["obj"]
    assert record["strategy"] == ("stream_multipart" if flags else "stream"), record
    assert record["attempts"] == 2 and record["error"] is None, record  # refused, then sent again
    assert record["checksum"] == f"{_engine.checksum('crc32c', data):08x}"
    assert seaweedfs.store(bucket).get(f"dst-{how}/obj") == data  # bytes equal
    assert uploads(seaweedfs, bucket) == []  # the refused attempt's upload was aborted
    for _, path, headers in sent:  # every body went unsigned with its own CRC32C
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", (path, headers)
        assert "x-amz-checksum-crc32c" in headers, (path, headers)
    if not flags:
        assert sent[-1][2]["x-amz-checksum-crc32c"] == crc32c_header(data)


def test_every_attempt_damaged_fails_in_one_line_and_stores_nothing(seaweedfs, s3env, bucket):
    data = os.urandom(2 * MIB)
    seaweedfs.store(bucket).put("src-never/obj", data)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        proxy.corrupt_request(at_byte=700_000, paths=f"/{bucket}/never/obj")  # every attempt
        r = mbackup(s3env, "copy", url(seaweedfs.endpoint, bucket, "src-never"), url(proxy.endpoint, bucket, "never"))
    assert r.returncode == 1, r.stderr
    failed = [line for line in r.stderr.splitlines() if line.startswith("failed: obj: ")]
    assert len(failed) == 1 and "damaged on the way to the server" in failed[0], r.stderr
    assert not list(seaweedfs.store(bucket).list("never"))


# Small writes from Python (meta files, markers, locks: Location.write) take the same care:
# to a server that checks CRC32C they go unsigned, stating it, in their conditional modes.
@pytest.fixture
def through_proxy(seaweedfs, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        yield proxy, storage_backends().open(url(proxy.endpoint, bucket, "meta"))


def test_a_small_write_damaged_on_the_wire_is_refused_and_sent_again(seaweedfs, bucket, through_proxy):
    proxy, location = through_proxy
    data = os.urandom(3000)
    proxy.corrupt_request(count=1, at_byte=1000, paths=f"/{bucket}/meta/backup_meta.json")
    location.write("backup_meta.json", data)
    assert proxy.stats["corrupted_requests"] == 1
    assert seaweedfs.store(bucket).get("meta/backup_meta.json") == data  # bytes equal
    sent = [h for m, p, h in proxy.heads if m == "PUT" and p == f"/{bucket}/meta/backup_meta.json"]
    assert len(sent) == 2  # refused, then sent again
    for headers in sent:
        assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", headers
        assert headers["x-amz-checksum-crc32c"] == crc32c_header(data), headers


def test_a_small_write_damaged_every_time_fails_and_stores_nothing(seaweedfs, bucket, through_proxy):
    proxy, location = through_proxy
    proxy.corrupt_request(at_byte=10, paths=f"/{bucket}/meta/marker")
    with pytest.raises(StorageError):
        location.write("marker", b"complete: every object copied")
    assert not list(seaweedfs.store(bucket).list("meta"))


def test_checked_small_writes_keep_their_conditions(seaweedfs, bucket, through_proxy):
    """Of two writers racing for a key, or for one version of it, exactly one wins."""
    proxy, location = through_proxy
    first = location.write("lock", b"held by run 1", if_absent=True)
    with pytest.raises(AlreadyExists):
        location.write("lock", b"held by run 2", if_absent=True)
    second = location.write("lock", b"renewed by run 1", if_match=first)
    with pytest.raises(VersionChanged):
        location.write("lock", b"stale renewal", if_match=first)
    assert second != first
    assert seaweedfs.store(bucket).get("meta/lock") == b"renewed by run 1"
    conditional = [h for m, p, h in proxy.heads if m == "PUT" and p == f"/{bucket}/meta/lock"]
    assert [("if-none-match" in h, "if-match" in h) for h in conditional] == [(True, False)] * 2 + [(False, True)] * 2
    assert all(h["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD" for h in conditional)


def test_a_write_before_its_bucket_exists_does_not_settle_the_question(seaweedfs, monkeypatch):
    """The probe meets a missing bucket: that is no answer about checksums. The write fails as
    it always did, and once the bucket is made the next write asks again and goes checked."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    later = f"later-{os.urandom(4).hex()}"
    try:
        with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
            location = storage_backends().open(url(proxy.endpoint, later, "meta"))
            with pytest.raises(BucketNotFound, match="the bucket does not exist; create it or fix the bucket name"):
                location.write("backup_meta.json", b"{}")
            seaweedfs.create_bucket(later)
            location.write("backup_meta.json", b'{"name": "nightly"}')
            sent = [h for m, p, h in proxy.heads if m == "PUT" and p == f"/{later}/meta/backup_meta.json"]
        assert seaweedfs.store(later).get("meta/backup_meta.json") == b'{"name": "nightly"}'
        assert sent[-1]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD", sent[-1]
        assert sent[-1]["x-amz-checksum-crc32c"] == crc32c_header(b'{"name": "nightly"}')
    finally:
        seaweedfs.delete_bucket(later)
