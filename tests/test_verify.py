"""`mbackup verify` and restore's quick check against a real SeaweedFS: what a user sees.

Most backups here are built without Milvus, with the product's own meta writer, binlogs of
random bytes and a manifest in mbackup's format; the one Milvus test makes a real backup
with `mbackup create` and damages it before restoring.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from milvus_backup.backup.catalog import open_stores
from milvus_backup.backup.verify import DamagedBackupError, check_before_restore
from milvus_backup.config.settings import load_config
from milvus_backup.format import meta
from sample_backup import COLL, PART, ROOT, Sample, config_yaml, crc32c


@pytest.fixture
def env():
    e = dict(os.environ)
    e.pop("MBACKUP_PLUGINS", None)
    return e


@pytest.fixture
def cfg(seaweedfs, bucket, tmp_path) -> str:
    path = tmp_path / "backup.yaml"
    path.write_text(config_yaml(seaweedfs, bucket))
    return str(path)


def mbackup(env, cfg, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args, "--config", cfg], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sample(seaweedfs, bucket) -> Sample:
    return Sample(seaweedfs.store(bucket), "nightly")


def test_clean_backup_passes_quick_and_deep(env, cfg, sample):
    assert len(sample.binlogs) == 9 and len(sample.objects) == 15  # 9 binlogs, 5 meta files, the manifest
    quick = mbackup(env, cfg, "verify", "-n", "nightly")
    assert (quick.returncode, quick.stdout) == (0, sample.summary() + "\n"), quick.stderr

    deep = mbackup(env, cfg, "verify", "-n", "nightly", "--deep")
    assert (deep.returncode, deep.stdout) == (0, sample.summary(checksums=9) + "\n"), deep.stderr

    report = json.loads(mbackup(env, cfg, "verify", "-n", "nightly", "--deep", "--json").stdout)
    assert {k: report[k] for k in ("backup", "ok", "deep", "manifest", "checksum_algo", "objects", "checksums",
                                   "problems", "warnings")} == {
        "backup": "nightly", "ok": True, "deep": True, "manifest": True, "checksum_algo": "crc32c",
        "objects": 15, "checksums": 9, "problems": [], "warnings": []}
    assert report["bytes"] == sum(len(v) for v in sample.objects.values())


def test_flipped_byte_passes_quick_check_and_fails_deep(env, cfg, sample):
    rel = sample.binlogs[3]
    before = crc32c(sample.store, f"{sample.bdir}/{rel}")
    data = bytearray(sample.objects[rel])
    data[len(data) // 2] ^= 0x01
    sample.put(rel, bytes(data))
    after = crc32c(sample.store, f"{sample.bdir}/{rel}")

    quick = mbackup(env, cfg, "verify", "-n", "nightly")
    assert (quick.returncode, quick.stdout) == (0, sample.summary() + "\n")

    deep = mbackup(env, cfg, "verify", "-n", "nightly", "--deep")
    assert deep.returncode == 4  # integrity problem
    assert deep.stdout.splitlines() == [f"corrupted: {rel}: crc32c expected {before}, found {after}",
                                        sample.summary(checksums=9, problems="1 problem")]
    report = json.loads(mbackup(env, cfg, "verify", "-n", "nightly", "--deep", "--json").stdout)
    assert report["ok"] is False
    assert report["problems"] == [{"kind": "corrupted", "key": rel, "detail": f"crc32c expected {before}, found {after}",
                                   "expected_checksum": before, "found_checksum": after}]


def test_truncated_and_deleted_objects_are_reported_with_sizes(env, cfg, sample):
    truncated, deleted = sample.binlogs[0], sample.binlogs[5]
    full, gone = len(sample.objects[truncated]), len(sample.objects[deleted])
    sample.put(truncated, sample.objects[truncated][:100])
    sample.delete(deleted)

    proc = mbackup(env, cfg, "verify", "-n", "nightly")
    assert proc.returncode == 4
    assert proc.stdout.splitlines() == [
        f"resized: {truncated}: expected {full:,} bytes, found 100 bytes",
        f"missing: {deleted}: expected {gone:,} bytes",
        sample.summary(problems="2 problems")]
    report = json.loads(mbackup(env, cfg, "verify", "-n", "nightly", "--json").stdout)
    assert report["problems"] == [
        {"kind": "resized", "key": truncated, "detail": f"expected {full:,} bytes, found 100 bytes",
         "expected_size": full, "found_size": 100},
        {"kind": "missing", "key": deleted, "detail": f"expected {gone:,} bytes", "expected_size": gone}]


def test_damaged_meta_files_are_named(env, cfg, sample):
    original = sample.objects["meta/segment_meta.json"]
    sample.put("meta/segment_meta.json", b'{"infos": [}')
    proc = mbackup(env, cfg, "verify", "-n", "nightly")
    assert proc.returncode == 4
    assert proc.stdout.splitlines() == [
        "damaged: meta/segment_meta.json: not valid JSON (expecting value at byte 11, line 1 column 12)",
        sample.summary(problems="1 problem")]

    # With full_meta.json cut short, the level files still say which binlogs the backup holds.
    sample.put("meta/segment_meta.json", original)
    full = sample.objects["meta/full_meta.json"]
    sample.put("meta/full_meta.json", full[:40])
    gone = sample.binlogs[2]
    size = len(sample.objects[gone])
    sample.delete(gone)
    proc = mbackup(env, cfg, "verify", "-n", "nightly")
    assert proc.returncode == 4
    assert proc.stdout.splitlines() == [
        "damaged: meta/full_meta.json: not valid JSON (truncated at byte 40)",
        f"missing: {gone}: expected {size:,} bytes",
        sample.summary(problems="2 problems")]


def test_go_tool_backup_without_manifest(env, cfg, seaweedfs, bucket):
    sample = Sample(seaweedfs.store(bucket), "from_go", manifest=False)
    quick = mbackup(env, cfg, "verify", "-n", "from_go")
    assert (quick.returncode, quick.stdout) == (0, sample.summary() + "\n")

    deep = mbackup(env, cfg, "verify", "-n", "from_go", "--deep")
    assert deep.returncode == 0
    assert deep.stdout.splitlines() == [
        "warning: deep verification needs a backup made by mbackup: this one has no checksum manifest "
        "(meta/mbackup_manifest.json), so only sizes were checked",
        sample.summary(checksums=0, problems="0 problems, 1 warning")]

    # Sizes come from the meta's log_size when there is no manifest.
    rel = sample.binlogs[-1]
    size = len(sample.objects[rel])
    sample.put(rel, sample.objects[rel] + b"x")
    proc = mbackup(env, cfg, "verify", "-n", "from_go")
    assert proc.returncode == 4
    assert proc.stdout.splitlines()[0] == f"resized: {rel}: expected {size:,} bytes, found {size + 1:,} bytes"


def test_unexpected_binlog_is_a_warning_and_unknown_name_is_bad_input(env, cfg, sample, bucket):
    extra = f"binlogs/insert_log/{COLL}/{PART}/5001/5001/100/999"
    sample.put(extra, b"orphan")
    sample.orphans.add(extra)
    proc = mbackup(env, cfg, "verify", "-n", "nightly")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        f"warning: unexpected: {extra}: 6 bytes, not in the backup's meta or manifest (restore does not read it)",
        sample.summary(problems="0 problems, 1 warning")]

    missing = mbackup(env, cfg, "verify", "-n", "nope")
    assert missing.returncode == 2
    assert missing.stderr.splitlines()[-1] == (
        f"error: no backup named 'nope' at s3://{bucket}/{ROOT}/nope (mbackup list shows the backups there)")


def test_restore_quick_check_refuses_in_one_line(seaweedfs, bucket, cfg, sample):
    """The check restore runs (in-process: restore itself needs Milvus, see the milvus test)."""
    stores = open_stores(load_config(cfg))
    check_before_restore(stores, "nightly")  # a whole backup passes

    rel = sample.binlogs[1]
    size = len(sample.objects[rel])
    original = sample.objects["meta/collection_meta.json"]
    sample.delete(rel)
    sample.put("meta/collection_meta.json", b"")
    with pytest.raises(DamagedBackupError) as refused:
        check_before_restore(stores, "nightly")
    assert str(refused.value) == (
        "backup 'nightly' failed the quick check: damaged: meta/collection_meta.json: empty (2 problems); "
        "see them all with mbackup verify -n nightly, or restore anyway with --force")

    # A meta-only restore reads no binlogs: only the meta counts for it.
    with pytest.raises(DamagedBackupError, match=r"collection_meta.json: empty \(1 problem\)"):
        check_before_restore(stores, "nightly", meta_only=True)
    sample.put("meta/collection_meta.json", original)
    check_before_restore(stores, "nightly", meta_only=True)
    with pytest.raises(DamagedBackupError) as refused:
        check_before_restore(stores, "nightly")
    assert str(refused.value).startswith(
        f"backup 'nightly' failed the quick check: missing: {rel}: expected {size:,} bytes (1 problem); ")


@pytest.mark.milvus
def test_restore_refuses_a_damaged_backup_unless_forced(env, milvus_clusters, seaweedfs, bucket, tmp_path):
    """A real backup made by mbackup create verifies (quick and deep); with one binlog gone,
    restore refuses before creating anything; with --force it goes past the check, and a
    damaged file restore never reads (the level files) does not stop it."""
    from pymilvus import DataType, MilvusClient

    cluster = milvus_clusters.source
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket, grpc_port=cluster.port, milvus_bucket=cluster.bucket,
                               milvus_root=cluster.root_path))
    cfg = str(cfg)
    coll, name = f"verify_{uuid.uuid4().hex[:8]}", f"verify_{uuid.uuid4().hex[:8]}"
    client = MilvusClient(uri=cluster.uri)
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=8)
    client.create_collection(coll, schema=schema)
    client.insert(coll, [{"id": i, "vec": [i / 300.0] * 8} for i in range(300)])
    client.flush(coll)
    try:
        created = mbackup(env, cfg, "create", "-n", name, "--filter", coll, "-q", timeout=300)
        assert created.returncode == 0, created.stderr
        deep = mbackup(env, cfg, "verify", "-n", name, "--deep", "--json")
        report = json.loads(deep.stdout)
        assert (deep.returncode, report["ok"], report["manifest"]) == (0, True, True), deep.stdout + deep.stderr
        assert report["checksums"] > 0 and report["checksums"] == report["objects"] - 6  # all but meta + manifest

        s = seaweedfs.store(bucket)
        bdir = meta.backup_dir(ROOT, name)
        binlogs = sorted(k for k, _, _ in s.list(f"{bdir}/binlogs"))
        victim = binlogs[0]
        data = s.get(victim)
        s.delete(victim)
        refused = mbackup(env, cfg, "restore", "-n", name, "--suffix", "_r")
        assert refused.returncode == 4
        assert refused.stderr.splitlines()[-1] == (
            f"error: backup '{name}' failed the quick check: missing: {victim[len(bdir) + 1:]}: "
            f"expected {len(data):,} bytes (1 problem); see them all with mbackup verify -n {name}, "
            "or restore anyway with --force")
        assert not client.has_collection(f"{coll}_r")

        # Restore reads full_meta.json: damage in a level file fails the check but not a forced restore.
        s.put(victim, data)
        s.put(f"{bdir}/meta/{meta.SEGMENT_META}", b"{")
        assert mbackup(env, cfg, "restore", "-n", name, "--suffix", "_r").returncode == 4
        assert not client.has_collection(f"{coll}_r")
        forced = mbackup(env, cfg, "restore", "-n", name, "--suffix", "_r", "--force", "-q", timeout=600)
        assert forced.returncode == 0, forced.stderr
        assert f"restored default.{coll} as default.{coll}_r: 300 rows in backup" in forced.stdout
        assert client.get_collection_stats(f"{coll}_r")["row_count"] == 300
    finally:
        for c in (coll, f"{coll}_r"):
            client.drop_collection(c)
        client.close()


# Content read from storage is untrusted (issue #8 item 8): damage verify reports, each as one finding.
DAMAGED = [
    ("meta/full_meta.json", b"{}", "damaged: meta/full_meta.json: id: missing"),
    ("meta/full_meta.json", b"[" * 3000 + b"]" * 3000, "damaged: meta/full_meta.json: nests more than 64 levels deep"),
    ("meta/mbackup_manifest.json", b"[" * 3000 + b"]" * 3000, "damaged: meta/mbackup_manifest.json: nests more than 64 levels deep"),
    ("meta/mbackup_manifest.json", b'{"checksum_algo": "crc32c", "objects": {"binlogs/x": {"size": -5}}}',
     "damaged: meta/mbackup_manifest.json: objects['binlogs/x'].size: expected a non-negative integer, got -5"),
    ("meta/mbackup_manifest.json", b'{"checksum_algo": "crc32c", "objects": {"binlogs//x": {"size": 5}}}',
     "damaged: meta/mbackup_manifest.json: objects['binlogs//x']: expected a key that is a key inside the backup"),
    ("meta/mbackup_manifest.json", b'{"checksum_algo": "crc32c", "objects": {"a": {"size": 1, "checksum": "' + b"f" * 999 + b'"}}}',
     "damaged: meta/mbackup_manifest.json: objects.a.checksum: expected a hex checksum, got 'fffffffff"),
]


@pytest.mark.parametrize(("rel", "data", "line"), DAMAGED, ids=[f"{d[0].split('/')[-1]}-{i}" for i, d in enumerate(DAMAGED)])
def test_damaged_content_is_one_finding(env, cfg, sample, rel, data, line):
    sample.put(rel, data)
    proc = mbackup(env, cfg, "verify", "-n", "nightly")
    assert (proc.returncode, proc.stderr) == (4, ""), proc.stderr
    assert proc.stdout.splitlines()[0].startswith(line), proc.stdout
    assert proc.stdout.splitlines()[-1].endswith(" 1 problem"), proc.stdout
