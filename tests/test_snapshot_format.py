"""The snapshot format (Milvus 3.0+), against the contract server (tests/milvus_contract): a wire
contract hand-built from the protos and the Go tool, NOT a Milvus. No Milvus 3.x runs here, so
Milvus' part (freezing a collection, copying it into a bundle, restoring one) is the contract's
stand-in: it writes a bundle of its own shape into the real SeaweedFS bucket the backup lives
in, and restores from it. What is proven: the requests mbackup sends (which, in what order,
with which names, URIs and headers), that it waits for the jobs, what it records in the meta
(the Go tool's fields), and what the user sees when Milvus refuses or fails. What is not: that
a real 3.x server answers this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import grpc
import pytest

from gofacts import facts, problems
from milvus_backup.backup import snapshot as snapshot_flow
from milvus_backup.backup.catalog import list_backups, open_stores
from milvus_backup.backup.create import CreateRequest, create_backup
from milvus_backup.backup.restore import RestoreRequest, restore_backup
from milvus_backup.backup.snapshot import SnapshotError, metadata_path
from milvus_backup.backup.verify import verify_backup
from milvus_backup.config.settings import load_config
from milvus_backup.errors import MBackupError
from milvus_backup.format import meta
from milvus_backup.transfer.copy import CopySettings
from milvus_contract import L0, PROFILES
from sample_backup import ROOT
from test_adapter_lines import Collected, adapter, config_file, docs_schema

pytest_plugins = ["milvus_contract.fixtures"]

SNAPSHOT_RPCS = ["CreateSnapshot", "DescribeSnapshot", "ExportSnapshot", "GetExportSnapshotState", "DropSnapshot",
                 "RestoreExternalSnapshot", "GetRestoreSnapshotState"]
LINES_WITHOUT = ["2.4.23", "2.5.8", "2.6.5", "2.6.11"]


@pytest.fixture
def stores(tmp_path, seaweedfs, bucket, contract):
    return open_stores(load_config(str(config_file(tmp_path, seaweedfs, bucket, contract)), env={}, cwd=tmp_path))


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(snapshot_flow, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(snapshot_flow, "DROP_PAUSE", 0.0)


def on_3_0(contract, stores, bucket, *, collections: int = 2):
    """A 3.0.0 cluster whose bundles go to (and come from) the test's bucket; db1.docs and
    db1.docs1, each with a segment per partition and an L0 segment."""
    state = contract.reset(PROFILES["3.0.0"])
    state.bundle_store, state.bundle_bucket = stores.backup, bucket
    state.add_database("db1")
    colls = []
    for i in range(collections):
        coll = state.add_collection("db1", f"docs{i or ''}", docs_schema(), partitions=("_default", "p1"),
                                    aliases=(f"a{i}",))
        state.add_segment(coll, "_default", rows=100, deltas=1)
        state.add_segment(coll, "p1", rows=50)
        state.add_segment(coll, None, level=L0, deltas=1)
        colls.append(coll)
    state.write_binlogs(stores.milvus, "files")
    return colls


def create(contract, stores, fmt: str = "auto", reporter=None, name: str = ""):
    reporter = reporter or Collected()
    request = CreateRequest(name=name or f"s{time.time_ns()}", filters=["db1.*"], format=fmt)
    return create_backup(lambda: adapter(contract), stores, request, CopySettings(parallel=4), reporter=reporter)


def under(stores, prefix: str) -> list[str]:
    return sorted(o.key for o in stores.backup.list(prefix))


def snapshot_calls(contract):
    return [c for c in contract.calls() if c.method in SNAPSHOT_RPCS]


# --------------------------------------------------------------------------------------
# Backup


def test_auto_on_3_0_exports_each_collection_as_the_go_tool_and_records_the_bundle(contract, stores, bucket):
    colls = on_3_0(contract, stores, bucket)
    result = create(contract, stores)
    name, info = result.info.name, result.info
    target = f"s3://{bucket}/{ROOT}/{name}/bundle"

    # Per collection, one after the other: create, describe, export, wait, drop; all under mbk_<name>.
    calls = snapshot_calls(contract)
    per = [c.method for c in calls]
    assert per == ["CreateSnapshot", "DescribeSnapshot", "ExportSnapshot", "GetExportSnapshotState",
                   "GetExportSnapshotState", "DropSnapshot"] * 2
    for call in calls:
        if call.method != "GetExportSnapshotState":
            assert call.request.name == f"mbk_{name}" and call.request.db_name == "db1"
            assert call.metadata["dbname"] == "db1"
    assert [c.request.collection_name for c in calls if c.method == "ExportSnapshot"] == ["docs", "docs1"]
    assert {c.request.target_s3_path for c in calls if c.method == "ExportSnapshot"} == {target}
    assert {c.request.external_spec for c in calls if c.method == "ExportSnapshot"} == {""}  # no secret on the wire
    assert all(c.request.compaction_protection_seconds == 0 for c in calls if c.method == "CreateSnapshot")
    assert contract.state.snapshots == {}  # every snapshot dropped
    # A snapshot holds its files: no GC pause, and mbackup copies no binlog itself.
    assert not [c for c in contract.calls() if "garbage_collection" in c.method]
    assert under(stores, f"{ROOT}/{name}/binlogs") == []

    # The meta: format snapshot, each collection's bundle metadata relative to the backup dir.
    assert info.format == meta.FORMAT_SNAPSHOT
    for coll, got in zip(colls, info.collection_backups, strict=True):
        snap = got.snapshot_backup
        rel = f"bundle/snapshots/{coll.id}/metadata/"
        assert snap.metadata_path.startswith(rel) and snap.metadata_path.endswith(".json")
        bundle = under(stores, f"{ROOT}/{name}/bundle/snapshots/{coll.id}/")
        assert snap.total_files == len(bundle)
        assert snap.total_bytes == sum(o.size for o in stores.backup.list(f"{ROOT}/{name}/bundle/snapshots/{coll.id}/"))
        assert got.size == snap.total_bytes
        assert got.backup_timestamp > 0 and all(p.segment_backups == [] for p in got.partition_backups)
    assert info.size == sum(c.size for c in info.collection_backups)

    # Written as the Go tool writes it: no partition or segment meta; the fields in its order.
    files = under(stores, f"{ROOT}/{name}/meta/")
    assert f"{ROOT}/{name}/meta/partition_meta.json" not in files
    assert f"{ROOT}/{name}/meta/segment_meta.json" not in files
    backup_meta = stores.backup.read(f"{ROOT}/{name}/meta/backup_meta.json").decode()
    assert backup_meta.endswith('"milvus_version":"v3.0.0","format":"snapshot"}')
    full = stores.backup.read(f"{ROOT}/{name}/meta/full_meta.json").decode()
    snap = info.collection_backups[0].snapshot_backup
    assert (f'"aliases":["a0"],"snapshot_backup":{{"metadata_path":"{snap.metadata_path}",'
            f'"total_files":{snap.total_files},"total_bytes":{snap.total_bytes}}}}}') in full

    # Every meta file the snapshot format has: the keys, order, JSON types and omitempty of the
    # Go tool's messages (tests/compat/go_facts, derived from its source).
    go = facts("HEAD")
    for spec in go["meta_files"]["files"]:
        key = f"{ROOT}/{name}/meta/{spec['file']}"
        if spec["file"] in ("partition_meta.json", "segment_meta.json"):
            continue
        doc = json.loads(stores.backup.read(key))
        assert problems(doc, spec["message"], go) == [], spec["file"]

    # list, get and verify keep working on it.
    entry, = [e for e in list_backups(stores) if e.name == name]
    assert entry.complete and entry.info.format == meta.FORMAT_SNAPSHOT
    report = verify_backup(stores, name)
    assert report.problems == [] and report.objects >= 2


def test_binlog_on_3_0_when_asked_sends_no_snapshot_request(contract, stores, bucket):
    on_3_0(contract, stores, bucket, collections=1)
    result = create(contract, stores, "binlog")
    assert snapshot_calls(contract) == []
    assert result.info.format == meta.FORMAT_BINLOG and result.info.collection_backups[0].snapshot_backup is None
    assert under(stores, f"{ROOT}/{result.info.name}/binlogs") != []


def on_line(contract, line: str) -> None:
    """A cluster of ``line`` with db1.docs (no segment)."""
    contract.reset(PROFILES[line])
    contract.state.add_database("db1")
    contract.state.add_collection("db1", "docs", docs_schema())


def test_meta_only_on_3_0_is_the_binlog_format_and_refused_as_a_snapshot(contract, stores, bucket):
    """A meta-only backup exports no bundle: in the snapshot format nothing could restore it."""
    on_3_0(contract, stores, bucket, collections=1)
    request = CreateRequest(name=f"m{time.time_ns()}", filters=["db1.*"], strategy="meta_only")
    result = create_backup(lambda: adapter(contract), stores, request, CopySettings(), reporter=Collected())
    assert result.info.format == meta.FORMAT_BINLOG and snapshot_calls(contract) == []
    before = under(stores, ROOT)
    request = CreateRequest(name=f"m{time.time_ns()}", filters=["db1.*"], strategy="meta_only", format="snapshot")
    with pytest.raises(SnapshotError) as e:
        create_backup(lambda: adapter(contract), stores, request, CopySettings(), reporter=Collected())
    assert str(e.value) == ("--strategy meta_only exports no snapshot, so it cannot be in the snapshot format: leave "
                            "out --format snapshot")
    assert under(stores, ROOT) == before and snapshot_calls(contract) == []


@pytest.mark.parametrize("line", LINES_WITHOUT)
def test_auto_before_3_0_is_the_binlog_format(contract, stores, line):
    on_line(contract, line)
    result = create(contract, stores)
    assert result.info.format == meta.FORMAT_BINLOG and snapshot_calls(contract) == []


@pytest.mark.parametrize("line", LINES_WITHOUT)
def test_snapshot_on_a_line_without_snapshots_is_refused_before_anything_is_written(contract, stores, line):
    on_line(contract, line)
    before = under(stores, ROOT)
    with pytest.raises(MBackupError) as e:
        create(contract, stores, "snapshot")
    assert str(e.value) == (f"--format snapshot needs Milvus 3.0 or newer, and Milvus v{line} has no snapshots: "
                            "use --format binlog (or auto)")
    assert under(stores, ROOT) == before and snapshot_calls(contract) == []
    assert not [c for c in contract.calls() if c.method in ("Flush", "FlushAll") or "garbage" in c.method]


def test_the_cli_refuses_snapshot_on_2_6_and_an_unknown_format_in_one_line(contract, tmp_path, seaweedfs, bucket):
    contract.reset(PROFILES["2.6.11"])
    cfg = config_file(tmp_path, seaweedfs, bucket, contract)
    run = [sys.executable, "-m", "milvus_backup", "create", "-n", "snap1", "--config", str(cfg)]
    refused = subprocess.run([*run, "--format", "snapshot"], capture_output=True, text=True, timeout=120)
    assert (refused.returncode, refused.stderr.splitlines()) == (2, [
        "error: --format snapshot needs Milvus 3.0 or newer, and Milvus v2.6.11 has no snapshots: use --format "
        "binlog (or auto)"])
    contract.log.clear()
    unknown = subprocess.run([*run, "--format", "bundle"], capture_output=True, text=True, timeout=120)
    assert (unknown.returncode, unknown.stderr.splitlines()) == (2, [
        "error: unknown format 'bundle': use auto, binlog, snapshot"])
    assert contract.calls() == []  # refused before connecting


def test_a_failed_export_is_one_line_drops_the_snapshot_and_leaves_no_backup(contract, stores, bucket):
    on_3_0(contract, stores, bucket)
    contract.state.snapshot_outcome = {"state": "Failed", "reason": "copy failed: access denied", "polls_left": 1}
    name = f"f{time.time_ns()}"
    with pytest.raises(SnapshotError) as e:
        create(contract, stores, name=name)
    job, = [c for c in contract.calls("GetExportSnapshotState")][-1:]
    assert str(e.value) == (f"the snapshot export of db1.docs (job {job.request.job_id}) failed: copy failed: "
                            "access denied")
    assert [c.method for c in snapshot_calls(contract)] == [
        "CreateSnapshot", "DescribeSnapshot", "ExportSnapshot", "GetExportSnapshotState", "GetExportSnapshotState",
        "DropSnapshot"]  # the second collection is not started
    assert contract.state.snapshots == {}
    assert under(stores, f"{ROOT}/{name}") == []  # neither a backup nor the half-written bundle
    assert [e.name for e in list_backups(stores) if e.name == name] == []


@pytest.mark.parametrize("method,what,made", [
    ("CreateSnapshot", "create snapshot {snap} of db1.docs", False),
    ("DescribeSnapshot", "describe snapshot {snap} of db1.docs", True),
    ("ExportSnapshot", "export snapshot {snap} of db1.docs", True),
    ("GetExportSnapshotState", "read the state of snapshot export job {job}", True),
])
def test_a_3_0_build_without_a_snapshot_rpc_is_one_line_saying_to_use_binlog(contract, stores, bucket, method, what,
                                                                             made):
    """Whichever RPC the build lacks: the error names it and the fix, the snapshot made (if
    any) is dropped, and nothing is left in the backup storage."""
    on_3_0(contract, stores, bucket, collections=1)
    contract.fail(method, code=grpc.StatusCode.UNIMPLEMENTED, reason="Method not implemented")
    name = f"u{time.time_ns()}"
    with pytest.raises(MBackupError) as e:
        create(contract, stores, name=name)
    job = next((c.request.job_id for c in contract.calls("GetExportSnapshotState")), 0)
    assert str(e.value) == (f"cannot {what.format(snap=f'mbk_{name}', job=job)} on Milvus v3.0.0 at "
                            f"127.0.0.1:{contract.grpc_port}: Method not implemented (this build has no "
                            f"{method}): use --format binlog")
    calls = [c.method for c in snapshot_calls(contract)]
    assert calls[-1] == ("DropSnapshot" if made else method) and contract.state.snapshots == {}
    assert under(stores, f"{ROOT}/{name}") == []


def test_a_snapshot_that_cannot_be_dropped_is_a_warning_naming_it_and_the_backup_is_made(contract, stores, bucket):
    on_3_0(contract, stores, bucket, collections=1)
    contract.fail("DropSnapshot", status=65535, reason="snapshot is pinned", times=None)
    reporter = Collected()
    result = create(contract, stores, reporter=reporter)
    drops = contract.calls("DropSnapshot")
    assert len(drops) == snapshot_flow.DROP_TRIES
    assert reporter.warnings == [
        f"snapshot mbk_{result.info.name} of db1.docs could not be dropped (cannot drop snapshot "
        f"mbk_{result.info.name} of db1.docs on Milvus v3.0.0 at 127.0.0.1:{contract.grpc_port}: snapshot is "
        "pinned): it holds the collection's files against garbage collection until it is dropped by hand"]
    assert stores.backup.exists(f"{ROOT}/{result.info.name}/meta/backup_meta.json")


def test_a_backup_store_milvus_cannot_reach_is_refused_before_anything_is_written(contract, stores, bucket,
                                                                                   tmp_path):
    from milvus_backup.backup.catalog import Stores
    from milvus_backup.plugins.manager import storage_backends

    on_3_0(contract, stores, bucket, collections=1)
    local = storage_backends().open(f"file://{tmp_path}/backups")
    elsewhere = Stores(stores.milvus, stores.milvus_root, local, "backup")
    with pytest.raises(SnapshotError, match=r"^the snapshot format needs the backup storage \(file://.*\) on an S3 "
                                            r"store Milvus can reach \(Milvus uses s3://.*\): Milvus writes and reads "
                                            r"the bundle itself"):
        create(contract, elsewhere)
    assert snapshot_calls(contract) == [] and not list((tmp_path / "backups").rglob("*"))


@pytest.mark.parametrize("reported", [
    "s3://other/backup/b/bundle/snapshots/1/metadata/2.json",  # another bucket
    "s3://bkt/backup/b/bundlex/snapshots/1/metadata/2.json",  # beside the target, not under it
    "s3://bkt/backup/b/bundle/../x.json",  # out of it
    "s3://bkt/backup/b/bundle/",  # the target itself
    "",  # nothing
])
def test_metadata_reported_outside_the_bundle_is_refused(reported):
    with pytest.raises(SnapshotError, match="not under s3://bkt/backup/b/bundle"):
        metadata_path("s3://bkt/backup/b/bundle", reported)
    assert metadata_path("s3://bkt/backup/b/bundle", "s3://bkt/backup/b/bundle/snapshots/1/metadata/2.json") == (
        "bundle/snapshots/1/metadata/2.json")


def test_a_backup_on_another_s3_store_goes_through_an_external_spec_both_ways(contract, bucket, tmp_path, seaweedfs):
    """The backup storage named by another endpoint than Milvus's (localhost, not 127.0.0.1):
    Milvus must be told where it is and how to sign, as the Go tool tells it (extfs JSON).
    The contract's Milvus reaches that store only through the URI and the spec, on the real
    SeaweedFS, so a wrong endpoint or key fails here as it would there."""
    assert seaweedfs.host == "127.0.0.1"
    cfg = config_file(tmp_path, seaweedfs, bucket, contract)
    cfg.write_text(cfg.read_text().replace("backup:\n  storage:\n", f"backup:\n  storage:\n    address: localhost\n"
                                           f"    port: {seaweedfs.s3_port}\n"))
    other = open_stores(load_config(str(cfg), env={}, cwd=tmp_path))
    assert not other.same_bucket
    on_3_0(contract, other, bucket, collections=1)
    contract.state.bundle_store = None  # Milvus's own bucket is not where the bundle goes
    name = create(contract, other).info.name
    export, = contract.calls("ExportSnapshot")
    where = f"minio://localhost:{seaweedfs.s3_port}/{bucket}/{ROOT}/{name}"
    assert export.request.target_s3_path == f"{where}/bundle"
    assert json.loads(export.request.external_spec) == {"extfs": {
        "cloud_provider": "minio", "use_ssl": "false", "access_key_id": seaweedfs.access_key,
        "access_key_value": seaweedfs.secret_key}}
    assert under(other, f"{ROOT}/{name}/bundle/snapshots/")  # written by "Milvus" with the spec's key
    contract.log.clear()
    result = restore(contract, other, name, suffix="_r")
    call, = contract.calls("RestoreExternalSnapshot")
    assert call.request.snapshot_metadata_uri.startswith(f"{where}/bundle/snapshots/")
    assert call.request.external_spec == export.request.external_spec
    assert [r["target"] for r in result.collections] == ["db1.docs_r"] and ("db1", "docs_r") in contract.state.collections


def _storage(**changes):
    from milvus_backup.config.settings import StorageAuthConfig, StorageConfig
    auth = StorageAuthConfig(type="static", access_key_id="AK", secret_access_key="SK")
    for key in ("type", "session_token", "endpoint"):
        if key in changes:
            setattr(auth, key, changes.pop(key))
    return StorageConfig(**{"provider": "minio", "address": "s3.example", "port": 9000, "auth": auth, **changes})


@pytest.mark.parametrize("changes,uri,extfs", [
    ({}, "minio://s3.example:9000/b/k", {"cloud_provider": "minio", "use_ssl": "false", "access_key_id": "AK",
                                         "access_key_value": "SK"}),
    ({"milvus_address": "minio.internal", "milvus_port": 9100, "use_ssl": True, "provider": "aws", "region": "eu-1"},
     "minio://minio.internal:9100/b/k", {"cloud_provider": "aws", "use_ssl": "true", "region": "eu-1",
                                         "access_key_id": "AK", "access_key_value": "SK"}),
    ({"address": "", "region": "us-east-2", "provider": "s3", "type": "iam", "endpoint": "http://iam"},
     "s3://b/k", {"cloud_provider": "aws", "use_ssl": "false", "region": "us-east-2", "use_iam": "true",
                  "iam_endpoint": "http://iam"}),
    ({"provider": "hwc", "address": "https://obs.example/"}, "minio://obs.example:9000/b/k",
     {"cloud_provider": "huawei", "use_ssl": "false", "access_key_id": "AK", "access_key_value": "SK"}),
])
def test_the_external_spec_is_the_go_tools_extfs(changes, uri, extfs):
    cfg = _storage(**changes)
    assert snapshot_flow._external_uri(cfg, "b", "k") == uri
    spec = snapshot_flow.external_spec(cfg)
    assert json.loads(spec) == {"extfs": extfs}
    assert spec == json.dumps({"extfs": extfs}, sort_keys=True, separators=(",", ":"))  # as Go's json.Marshal
    assert "SK" not in repr(snapshot_flow.BundlePlace(uri, spec))


@pytest.mark.parametrize("changes,refusal", [
    ({"session_token": "T"}, "Milvus snapshots cannot use a session token (backup.storage.auth.sessionToken): use a "
                             "permanent key, or --format binlog"),
    ({"type": "default"}, "Milvus snapshots cannot reach backup storage with backup.storage.auth.type default: use "
                          "static or iam, or --format binlog"),
    ({"provider": "local"}, "Milvus snapshots cannot reach local backup storage: use --format binlog"),
    ({"address": ""}, "the snapshot format on backup storage without an address needs backup.storage.region, from "
                      "which Milvus finds the endpoint: set it, or set backup.storage.address"),
])
def test_a_backup_store_milvus_could_not_be_told_how_to_reach_is_refused_in_one_line(changes, refusal):
    cfg = _storage(**changes)
    with pytest.raises(SnapshotError) as e:
        snapshot_flow._external_uri(cfg, "b", "k")
        snapshot_flow.external_spec(cfg)
    assert str(e.value) == refusal


# --------------------------------------------------------------------------------------
# Restore


def restore(contract, stores, name: str, **flags):
    request = RestoreRequest(name=name, **flags)
    return restore_backup(lambda: adapter(contract), stores, request, CopySettings(parallel=4), reporter=Collected())


@pytest.mark.parametrize("flags,target", [({"suffix": "_r"}, ("db1", "docs_r")),
                                          ({"renames": ["db1.docs:db2.copy"]}, ("db2", "copy"))])
def test_a_snapshot_backup_restores_through_restore_external_snapshot(contract, stores, bucket, flags, target):
    coll, _ = on_3_0(contract, stores, bucket)
    contract.state.add_database("db2")
    name = create(contract, stores).info.name
    info = json.loads(stores.backup.read(f"{ROOT}/{name}/meta/full_meta.json"))
    contract.log.clear()
    result = restore(contract, stores, name, filters=[f"{target[0]}.{target[1]}"], **flags)
    assert [r["target"] for r in result.collections] == [".".join(target)]
    call, = contract.calls("RestoreExternalSnapshot")
    rel = info["collection_backups"][0]["snapshot_backup"]["metadata_path"]
    assert (call.request.db_name, call.request.target_collection_name, call.metadata["dbname"]) == (*target, target[0])
    assert call.request.snapshot_metadata_uri == f"s3://{bucket}/{ROOT}/{name}/{rel}"
    assert call.request.external_spec == ""
    polls = contract.calls("GetRestoreSnapshotState")
    assert len(polls) == 2 and {p.request.job_id for p in polls} == {result.collections[0]["snapshot_job"]}
    # Nothing made by mbackup itself: Milvus creates the collection from the bundle.
    assert not [c for c in contract.calls() if c.method in ("CreateCollection", "CreatePartition", "Import",
                                                           "CreateIndex")]
    made = contract.state.collections[target]
    assert [f.name for f in made.schema.fields] == [f.name for f in coll.schema.fields]
    assert list(made.partitions) == ["_default", "p1"]
    assert sorted(s.rows for s in made.segments.values()) == sorted(s.rows for s in coll.segments.values())


def test_a_failed_snapshot_restore_is_one_line_and_leaves_no_collection(contract, stores, bucket):
    on_3_0(contract, stores, bucket, collections=1)
    name = create(contract, stores).info.name
    contract.state.snapshot_outcome = {"state": "Failed", "reason": "disk quota exceeded", "polls_left": 0}
    with pytest.raises(SnapshotError) as e:
        restore(contract, stores, name, suffix="_r")
    job = contract.calls("GetRestoreSnapshotState")[-1].request.job_id
    assert str(e.value) == f"the snapshot restore of db1.docs_r (job {job}) failed: disk quota exceeded"
    assert ("db1", "docs_r") not in contract.state.collections


@pytest.mark.parametrize("method,fault", [
    ("RestoreExternalSnapshot", {"code": grpc.StatusCode.UNIMPLEMENTED, "reason": "Method not implemented"}),
    ("RestoreExternalSnapshot", {"status": 65535, "reason": "no such bucket"}),
    ("GetRestoreSnapshotState", {"code": grpc.StatusCode.UNIMPLEMENTED, "reason": "Method not implemented"}),
    ("GetRestoreSnapshotState", {"status": 65535, "reason": "restore job not found"}),
])
def test_a_restore_request_that_fails_leaves_no_collection(contract, stores, bucket, method, fault):
    """Whichever request fails, nothing restored is left looking complete."""
    on_3_0(contract, stores, bucket, collections=1)
    name = create(contract, stores).info.name
    contract.fail(method, **fault)
    with pytest.raises(MBackupError) as e:
        restore(contract, stores, name, suffix="_r")
    assert fault["reason"] in str(e.value) and "\n" not in str(e.value)
    assert ("db1", "docs_r") not in contract.state.collections


def test_an_existing_target_is_refused_before_anything_is_asked(contract, stores, bucket):
    on_3_0(contract, stores, bucket, collections=1)
    name = create(contract, stores).info.name
    contract.log.clear()
    with pytest.raises(MBackupError, match=r"^collection db1.docs already exists: restore with --suffix"):
        restore(contract, stores, name)
    assert snapshot_calls(contract) == []


@pytest.mark.parametrize("flag,why", [
    ("skip_create_collection", "Milvus creates the collection from the bundle"),
    ("meta_only", "the bundle restores schema and data together"),
    ("rebuild_index", "Milvus restores the indexes from the bundle"),
    ("use_auto_index", "Milvus restores the indexes from the bundle"),
    ("drop_exist_index", "Milvus restores the indexes from the bundle"),
    ("skip_l0", "the bundle restores the deletes with the data"),
])
def test_restore_flags_a_snapshot_backup_cannot_honour_are_refused_before_connecting(contract, stores, bucket, flag,
                                                                                      why):
    on_3_0(contract, stores, bucket, collections=1)
    name = create(contract, stores).info.name
    contract.log.clear()
    with pytest.raises(SnapshotError) as e:
        restore(contract, stores, name, suffix="_r", **{flag: True})
    assert str(e.value) == (f"backup {name!r} is in the snapshot format, where {why}: leave out "
                            f"--{flag.replace('_', '-')}")
    assert contract.calls() == []


@pytest.mark.parametrize("line", LINES_WITHOUT)
def test_a_snapshot_backup_into_a_line_without_snapshots_is_refused_before_anything_is_made(contract, stores, bucket,
                                                                                         line):
    on_3_0(contract, stores, bucket, collections=1)
    name = create(contract, stores).info.name
    contract.reset(PROFILES[line])
    with pytest.raises(MBackupError) as e:
        restore(contract, stores, name)
    assert str(e.value) == (f"backup {name!r} is in the snapshot format, which only Milvus 3.0 and newer restore "
                            f"(RestoreExternalSnapshot); Milvus {line} cannot: restore it into Milvus 3.0 or newer")
    assert not [c for c in contract.calls() if c.method.startswith(("Create", "Drop", "Import", "Restore"))]



def test_the_cli_backs_up_and_restores_a_3_0_collection_in_the_snapshot_format(contract, stores, bucket, tmp_path,
                                                                              seaweedfs):
    on_3_0(contract, stores, bucket, collections=1)
    cfg = str(config_file(tmp_path, seaweedfs, bucket, contract))
    name = f"cli{time.time_ns()}"
    # The dry runs plan the snapshot format and change nothing: no export, no restore, no object.
    plan = subprocess.run([sys.executable, "-m", "milvus_backup", "create", "-n", name, "--config", cfg, "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert plan.stdout.splitlines() == [f"would create backup {name!r} (strategy bulk_flush, format snapshot)",
                                        "would back up db1.docs"], plan.stderr
    assert under(stores, f"{ROOT}/{name}") == []
    made = subprocess.run([sys.executable, "-m", "milvus_backup", "create", "-n", name, "--config", cfg, "-q"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    plan = subprocess.run([sys.executable, "-m", "milvus_backup", "restore", "-n", name, "--suffix", "_r", "--config",
                           cfg, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert plan.stdout == "would restore db1.docs as db1.docs_r (create from its snapshot bundle)\n", plan.stderr
    assert not [c for c in contract.calls() if c.method.startswith("Restore")] and ("db1", "docs_r") not in contract.state.collections
    assert made.stdout.startswith(f"create backup success: {name}: 1 collections, 0 segments, ")
    done = subprocess.run([sys.executable, "-m", "milvus_backup", "restore", "-n", name, "--suffix", "_r", "--config",
                           cfg, "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    job = contract.calls("GetRestoreSnapshotState")[-1].request.job_id
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"restored db1.docs as db1.docs_r from its snapshot bundle (job {job}) in ")
    assert lines[-1].startswith(f"restore backup success: {name} in ")
    assert ("db1", "docs_r") in contract.state.collections


def test_ctrl_c_during_an_export_drops_the_snapshot_and_leaves_no_backup(contract, stores, bucket, tmp_path,
                                                                        seaweedfs):
    on_3_0(contract, stores, bucket, collections=1)
    contract.state.snapshot_outcome = {"state": "Completed", "reason": "", "polls_left": 10_000}  # never done
    cfg = str(config_file(tmp_path, seaweedfs, bucket, contract))
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "create", "-n", "interrupted", "--config", cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while "GetExportSnapshotState" not in contract.methods():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    assert under(stores, f"{ROOT}/interrupted/bundle") != []  # Milvus has begun writing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.splitlines()[-1:]) == (130, ["interrupted"]), err
    assert contract.methods()[-1] == "DropSnapshot" and contract.state.snapshots == {}
    assert under(stores, f"{ROOT}/interrupted") == []


def test_an_interrupted_snapshot_restore_resumes_by_waiting_for_its_job(contract, stores, bucket, tmp_path, seaweedfs):
    """Ctrl-C while Milvus restores: the journal keeps the job; the same command again waits
    for that job instead of asking Milvus for a second restore (refused: the name is taken)."""
    on_3_0(contract, stores, bucket, collections=2)
    name = create(contract, stores).info.name
    contract.state.snapshot_outcome = {"state": "Completed", "reason": "", "polls_left": 10_000}  # never done
    cfg = str(config_file(tmp_path, seaweedfs, bucket, contract))
    command = [sys.executable, "-m", "milvus_backup", "restore", "-n", name, "--suffix", "_r", "--config", cfg, "-q"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while "GetRestoreSnapshotState" not in contract.methods():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "the journal of this restore was kept at " in err and "run the same command again to resume it" in err
    job, = [c.request.job_id for c in contract.calls("GetRestoreSnapshotState")][:1]
    assert ("db1", "docs_r") in contract.state.collections and ("db1", "docs1_r") not in contract.state.collections

    contract.state.snapshot_jobs[job].polls_left = 0  # Milvus finishes it meanwhile
    contract.state.snapshot_outcome = {"state": "Completed", "reason": "", "polls_left": 1}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"warning: resuming an interrupted restore of {name!r}: collections restored are not restored again" in (
        done.stderr)
    assert [c.request.target_collection_name for c in contract.calls("RestoreExternalSnapshot")] == ["docs_r", "docs1_r"]
    assert done.stdout.startswith(f"restored db1.docs as db1.docs_r from its snapshot bundle (job {job}) in ")
    assert {("db1", "docs_r"), ("db1", "docs1_r")} <= set(contract.state.collections)
    assert [o.key for o in stores.milvus.list("mbackup-restore-journal/")] == []  # done: the journal is gone


@pytest.mark.parametrize("meanwhile", ["job failed", "collection dropped"])
def test_a_resumed_snapshot_restore_never_adopts_what_its_job_did_not_make(contract, stores, bucket, meanwhile):
    on_3_0(contract, stores, bucket, collections=1)
    name = create(contract, stores).info.name
    contract.state.snapshot_outcome = {"state": "Completed", "reason": "", "polls_left": 10_000}
    with pytest.raises(KeyboardInterrupt), mock.patch.object(snapshot_flow, "wait_job", side_effect=KeyboardInterrupt):
        restore(contract, stores, name, suffix="_r")
    job = next(j for j in contract.state.snapshot_jobs.values() if j.kind == "restore")
    if meanwhile == "job failed":  # what it made is left, and is not this restore's to resume
        job.state, job.reason, job.polls_left = "Failed", "disk full", 0
        with pytest.raises(MBackupError, match=r"^collection db1.docs_r already exists: restore with --suffix"):
            restore(contract, stores, name, suffix="_r")
    else:  # gone: restored afresh
        del contract.state.collections[("db1", "docs_r")]
        contract.state.snapshot_outcome = {"state": "Completed", "reason": "", "polls_left": 1}
        restore(contract, stores, name, suffix="_r")
        assert len(contract.calls("RestoreExternalSnapshot")) == 2 and ("db1", "docs_r") in contract.state.collections


def test_missing_target_databases_are_made_before_any_collection_is_restored(contract, stores, bucket):
    """A restore that cannot make a database refuses before Milvus restores anything; one that
    can makes every database first."""
    on_3_0(contract, stores, bucket)
    name = create(contract, stores).info.name
    contract.log.clear()
    with contextlib.suppress(MBackupError):  # whether this line makes databases is the restore side's business
        restore(contract, stores, name, renames=["db1.docs:db1.x", "db1.docs1:db9.y"])
    methods = contract.methods("grpc")
    restored = [i for i, m in enumerate(methods) if m == "RestoreExternalSnapshot"]
    if restored:
        assert "db9" in contract.state.databases and methods.index("CreateDatabase") < restored[0]
    assert [c.request.target_collection_name for c in contract.calls("RestoreExternalSnapshot")] in ([], ["x", "y"])
