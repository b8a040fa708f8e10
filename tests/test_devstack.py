"""The local stack every other test stands on: a real SeaweedFS and two real Milvus servers."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import closing

import pytest

from conftest import tmpfs
from mbackup_dev.devstack import LocalStack, SeaweedFS, StartupError, disk_shortfall, s3_request, scratch_folder


def test_s3_accepts_the_right_keys_and_rejects_wrong_ones(seaweedfs, bucket):
    assert seaweedfs.request("PUT", bucket, "hello.txt", body=b"hi").status == 200

    def get(access_key, secret_key):
        return s3_request(seaweedfs.endpoint, "GET", bucket, "hello.txt",
                          access_key=access_key, secret_key=secret_key)

    right = get(seaweedfs.access_key, seaweedfs.secret_key)
    assert (right.status, right.body) == (200, b"hi")
    wrong_secret = get(seaweedfs.access_key, "not-the-secret")
    assert (wrong_secret.status, wrong_secret.error_code) == (403, "SignatureDoesNotMatch")
    unknown_key = get("nobody", seaweedfs.secret_key)
    assert (unknown_key.status, unknown_key.error_code) == (403, "InvalidAccessKeyId")
    assert get(None, None).status == 403  # anonymous


def test_a_created_bucket_can_be_written_listed_and_read_back(seaweedfs, bucket):
    data = os.urandom(300_000)
    key = "dir/sub dir/naïve+name=1.bin"  # characters SigV4 must encode exactly

    assert seaweedfs.request("PUT", bucket, key, body=data).status == 200
    assert seaweedfs.request("PUT", bucket, "other/x", body=b"x").status == 200

    assert seaweedfs.list_keys(bucket, "dir/") == [key]
    assert sorted(seaweedfs.list_keys(bucket)) == [key, "other/x"]
    got = seaweedfs.request("GET", bucket, key)
    assert (got.status, got.body) == (200, data)


def test_create_bucket_is_idempotent_and_keeps_the_objects(seaweedfs, bucket):
    seaweedfs.request("PUT", bucket, "keep", body=b"1")
    seaweedfs.create_bucket(bucket)
    assert seaweedfs.list_keys(bucket) == ["keep"]


def test_holds_many_written_buckets_at_once(seaweedfs):
    # Each bucket reserves 7 volumes at its first write; with `weed server`'s default of 8
    # volumes the second or third fails with "No writable volumes and no free volumes left".
    names = [f"many-{i}-{uuid.uuid4().hex[:8]}" for i in range(12)]
    try:
        for name in names:
            seaweedfs.create_bucket(name)
            put = seaweedfs.request("PUT", name, "k", body=b"v")
            assert put.status == 200, (name, put.error_code)
        assert all(seaweedfs.list_keys(name) == ["k"] for name in names)
    finally:
        for name in names:
            seaweedfs.delete_bucket(name)
    assert seaweedfs.request("HEAD", names[0]).status == 404


def test_a_server_that_cannot_start_says_why_with_its_log(tmp_path):
    (tmp_path / "data").write_text("a file where weed wants its data folder")
    s3 = SeaweedFS(tmp_path)
    with pytest.raises(StartupError) as failure:
        s3.start(timeout=30)
    message = str(failure.value)
    assert str(tmp_path / "weed.log") in message
    assert "Not a valid folder" in message  # weed's own words, from the tail of its log
    assert not s3.running


MIB = 1 << 20


# A 64 MiB filesystem: SeaweedFS's floor (1%) is 0.64 MiB. (room asked, bytes left free by a
# filler file) -> whether it is short.
@pytest.mark.parametrize("room,free,short", [
    (0, 40 * MIB, False),
    (30 * MIB, 40 * MIB, False),
    (50 * MIB, 40 * MIB, True),
    (0, MIB // 2, True),  # under the floor itself
])
def test_disk_shortfall_counts_the_floor_seaweedfs_stops_at(tmp_path, room, free, short):
    with tmpfs(tmp_path / "disk", "size=64m") as disk:
        (disk / "filler").write_bytes(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - free))
        line = disk_shortfall(disk, room)
        assert (line is not None) is short
        if short:
            assert line.startswith(f"{disk} has 0.0 GiB free of 0 GiB: SeaweedFS stops taking writes below")
            assert "free some space" in line


def test_seaweedfs_without_room_on_its_disk_is_not_started_and_says_so(tmp_path):
    with tmpfs(tmp_path / "disk", "size=64m") as disk:
        s3 = SeaweedFS(disk / "s3", disk_room=100 * MIB)
        with pytest.raises(StartupError, match=r"^SeaweedFS not started: .* this needs 0\.1 GiB above that; "
                                               r"free some space"):
            s3.start(timeout=30)
        assert not s3.running
        assert not (disk / "s3" / "weed.log").exists()


def _scratch_with_server_files(tmp_path, monkeypatch, keep=False, fail=False, failed=None, log=True):
    """A scratch folder holding a server's data and log, as LocalStack leaves them."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with scratch_folder("bench", keep, failed) as work:
        (work / "stack" / "seaweedfs" / "data").mkdir(parents=True)
        (work / "stack" / "seaweedfs" / "data" / "b_1.dat").write_bytes(b"x" * 4096)
        if log:
            (work / "stack" / "seaweedfs" / "weed.log").write_text("volume grow\n")
        if fail:
            raise RuntimeError("the bench failed")
    return work


@pytest.mark.parametrize("keep", [False, True])
def test_a_scratch_folder_goes_unless_kept(tmp_path, monkeypatch, capsys, keep):
    work = _scratch_with_server_files(tmp_path, monkeypatch, keep=keep)
    assert work.parent == tmp_path
    assert work.exists() is keep
    assert (f"scratch folder kept: {work}" in capsys.readouterr().err) is keep


@pytest.mark.parametrize("how", ["raised", "said failed"])
def test_a_failed_run_keeps_only_its_logs_and_says_where(tmp_path, monkeypatch, capsys, how):
    if how == "raised":
        with pytest.raises(RuntimeError, match="the bench failed"):
            _scratch_with_server_files(tmp_path, monkeypatch, fail=True)
    else:  # a bench whose tool failed writes its report all the same: no exception
        _scratch_with_server_files(tmp_path, monkeypatch, failed=lambda: True)
    (work,) = tmp_path.iterdir()
    left = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    assert left == ["stack/seaweedfs/weed.log"]
    assert f"the run failed: its logs are kept in {work}" in capsys.readouterr().err


def test_a_failure_that_left_no_log_leaves_nothing(tmp_path, monkeypatch, capsys):
    """As when the bench stopped before its server started (no `weed` on PATH)."""
    with pytest.raises(RuntimeError, match="the bench failed"):
        _scratch_with_server_files(tmp_path, monkeypatch, fail=True, log=False)
    assert list(tmp_path.iterdir()) == []
    assert "logs are kept" not in capsys.readouterr().err


def test_a_run_that_did_not_fail_leaves_nothing(tmp_path, monkeypatch):
    _scratch_with_server_files(tmp_path, monkeypatch, failed=lambda: False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# Milvus


def _client(cluster):
    from pymilvus import MilvusClient

    return closing(MilvusClient(uri=cluster.uri))


@pytest.mark.milvus
def test_source_and_target_clusters_are_up_and_independent(milvus_clusters):
    source, target = milvus_clusters.source, milvus_clusters.target
    assert source.version.startswith("v2.3.5") and target.version.startswith("v2.3.5")
    assert source.port != target.port
    assert (source.bucket, target.bucket) == ("milvus-src", "milvus-dst")

    only_source = f"only_source_{uuid.uuid4().hex[:8]}"
    only_target = f"only_target_{uuid.uuid4().hex[:8]}"
    with _client(source) as src, _client(target) as dst:
        src.create_collection(only_source, dimension=4)
        dst.create_collection(only_target, dimension=4)
        try:
            assert only_source in src.list_collections()
            assert only_source not in dst.list_collections()
            assert only_target in dst.list_collections()
            assert only_target not in src.list_collections()
        finally:
            src.drop_collection(only_source)
            dst.drop_collection(only_target)


@pytest.mark.milvus
@pytest.mark.parametrize("side", ["source", "target"])
def test_flushed_binlogs_land_in_the_cluster_own_bucket(milvus_clusters, seaweedfs, side):
    cluster = getattr(milvus_clusters, side)
    other = milvus_clusters.target if side == "source" else milvus_clusters.source
    name = f"binlogs_{side}_{uuid.uuid4().hex[:8]}"
    with _client(cluster) as client:
        client.create_collection(name, dimension=4)
        try:
            client.insert(name, [{"id": i, "vector": [i / 100] * 4} for i in range(100)])
            client.flush(name)
            collection_id = client.describe_collection(name)["collection_id"]

            prefix = f"{cluster.root_path}/insert_log/{collection_id}/"
            keys = seaweedfs.list_keys(cluster.bucket, prefix)
            # <partition>/<segment>/<field>/<log>; fields 0 and 1 are row id and timestamp,
            # then the primary key, the vector and the dynamic-field column.
            fields = {key[len(prefix):].split("/")[2] for key in keys}
            assert {"0", "1"} < fields and len(fields) == 5, keys
            assert seaweedfs.list_keys(other.bucket, prefix) == []
        finally:
            client.drop_collection(name)


def test_a_smaller_volume_size_limit_makes_seaweedfs_grow_volumes_sooner(tmp_path):
    # The incremental bench runs SeaweedFS at its own default volume size: the limit must
    # reach the server (here 1 MiB, filled by a few MiB of writes).
    with SeaweedFS(tmp_path / "s3", volume_size_limit_mb=1) as s3:
        s3.create_bucket("small-volumes")
        for i in range(12):
            s3.request("PUT", "small-volumes", f"o{i}", body=os.urandom(MIB))
        deadline = time.monotonic() + 20
        while "reaches full capacity" not in s3.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "no volume filled up: the limit did not reach SeaweedFS"
            time.sleep(0.5)


@pytest.mark.parametrize("started_before", [False, True])
def test_a_stack_stops_the_s3_server_it_started_and_only_that(tmp_path, started_before):
    # A bench handed LocalStack an unstarted SeaweedFS (to set its volume size): the stack
    # started it and left it running, to be killed at exit after its folder was removed.
    s3 = SeaweedFS(tmp_path / "s3")
    if started_before:
        s3.start()
    try:
        with LocalStack(tmp_path / "stack", clusters=0, s3=s3):
            assert s3.running
        assert s3.running == started_before
    finally:
        s3.stop()
