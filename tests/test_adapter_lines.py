"""Backups of Milvus 2.4, 2.5, 2.6 and 3.x, against the contract server (tests/milvus_contract):
a wire contract hand-built from the protos and the Go tool, NOT a Milvus. What is proven: the
requests each line's adapter sends (which flush RPC, the GC pause and its release, the
``dbname`` header, REST describe or listing) and how it reacts to the answers; the binlogs
are made-up bytes in a real SeaweedFS bucket, copied and checked byte for byte. What is not:
that a real 2.4+ server answers as the contract does.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

import inprocess
from milvus_backup.backup.catalog import open_stores
from milvus_backup.backup.compat import IncompatibleBackup, check_restorable
from milvus_backup.backup.create import BackupError, CreateRequest, create_backup
from milvus_backup.config.settings import load_config
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import Capabilities
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.milvus.adapters.v2_4_plus import Milvus24Adapter, Milvus25Adapter, Milvus26Adapter, Milvus30Adapter
from milvus_backup.milvus.connection import MilvusEndpoint, MilvusError, connect
from milvus_backup.milvus.versions import Feature
from milvus_backup.plugins.manager import milvus_adapters
from milvus_backup.transfer.copy import CopySettings
from milvus_backup.transfer.progress import Reporter
from milvus_contract import L0, PROFILES, schema_field
from sample_backup import config_yaml

pytest_plugins = ["milvus_contract.fixtures"]

DT = schema_pb2.DataType
PAUSE = "GET /management/datacoord/garbage_collection/pause"
RESUME = "GET /management/datacoord/garbage_collection/resume"
DESCRIBE = "POST /v2/vectordb/segments/describe"
NEWER = ["2.4.23", "2.5.8", "2.6.5", "2.6.11", "3.0.0"]
PLUGIN_2_4_PLUS = "milvus_backup.milvus.adapters.v2_4_plus"
CONTRACT_TESTED = ("contract-tested only: against a wire contract built from the protos and the Go tool, not a live "
                   "Milvus")


class Collected(Reporter):
    """A reporter that keeps the warnings a run shows."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def endpoint(contract) -> MilvusEndpoint:
    return MilvusEndpoint(host="127.0.0.1", port=contract.grpc_port, management_endpoint=contract.http_url,
                          rest_endpoint=contract.http_url)


def adapter(contract, line: str = ""):
    return connect(endpoint(contract), milvus_adapters(), line=line)


def config_file(tmp_path: Path, seaweedfs, bucket: str, contract) -> Path:
    path = tmp_path / "backup.yaml"
    path.write_text(config_yaml(seaweedfs, bucket, grpc_port=contract.grpc_port, http_url=contract.http_url))
    return path


@pytest.fixture
def stores(tmp_path, seaweedfs, bucket, contract):
    return open_stores(load_config(str(config_file(tmp_path, seaweedfs, bucket, contract)), env={}, cwd=tmp_path))


def docs_schema() -> schema_pb2.CollectionSchema:
    return schema_pb2.CollectionSchema(fields=[
        schema_field("pk", DT.Int64, is_primary_key=True), schema_field("vec", DT.FloatVector, dim=4)])


def seed(contract, stores, *, collections: int = 1):
    """db1.docs (and db1.docs2...): a segment in each partition, a partition-level L0 and a
    collection-level L0, a growing segment the flush seals; their binlogs in the bucket."""
    state = contract.state
    state.add_database("db1", properties={"owner": "team-a"})
    colls = []
    for i in range(collections):
        coll = state.add_collection("db1", f"docs{i or ''}", docs_schema(), partitions=("_default", "p1"),
                                    aliases=(f"docs_alias{i or ''}",), indexes=(("vec", "HNSW"),))
        state.add_segment(coll, "_default", rows=100, deltas=1)
        state.add_segment(coll, "p1", rows=50)
        state.add_segment(coll, "p1", level=L0, deltas=1)
        state.add_segment(coll, None, level=L0, deltas=2)
        state.add_segment(coll, "_default", rows=7, state=common_pb2.SegmentState.Growing)
        colls.append(coll)
    written = state.write_binlogs(stores.milvus, "files")
    return colls, written


def backup(contract, stores, *, strategy: str = "", filters=("db1.*",), reporter=None, line: str = "",
           rbac: bool = False):
    """A backup in the binlog format, which these tests are about (3.0's default, the snapshot
    format, is tests/test_snapshot_format.py's)."""
    reporter = reporter or Collected()
    request = CreateRequest(name=f"b{time.time_ns()}", filters=list(filters), strategy=strategy, rbac=rbac,
                            format="binlog")
    result = create_backup(lambda: adapter(contract, line), stores, request, CopySettings(parallel=4), reporter=reporter)
    return result, reporter


def index(methods: list[str], method: str, last: bool = False) -> int:
    found = [i for i, m in enumerate(methods) if m == method]
    assert found, f"{method} never called: {methods}"
    return found[-1] if last else found[0]


# --------------------------------------------------------------------------------------
# Which adapter, for which server


@pytest.mark.parametrize("name,cls", [("2.3.5", Milvus23Adapter), ("2.4.23", Milvus24Adapter), ("2.5.8", Milvus25Adapter),
                                      ("2.6.5", Milvus26Adapter), ("2.6.11", Milvus26Adapter), ("3.0.0", Milvus30Adapter)])
def test_each_line_gets_its_adapter_from_the_build_tags_without_asking_get_version(contract, name, cls):
    contract.reset(PROFILES[name])
    chosen = adapter(contract)
    try:
        assert type(chosen) is cls and chosen.version == PROFILES[name].build_tags
        assert chosen.server.multi_database
    finally:
        chosen.close()
    assert "GetVersion" not in contract.methods()  # build tags that are a version are the version
    assert contract.methods("grpc")[-2:] == ["Connect", "ListDatabases"]


def test_a_dev_build_asks_get_version_and_a_cloud_description_names_the_line(contract):
    contract.reset(PROFILES["2.6.11"].but(build_tags="Zilliz Cloud Vector Database(Compatible with Milvus 2.6)",
                                          version="unknown-20260608-7ea6e3526"))
    chosen = adapter(contract)
    try:
        assert type(chosen) is Milvus26Adapter and chosen.version == "unknown-20260608-7ea6e3526"
        assert chosen.server.number == (2, 6, 9999) and chosen.server.has(Feature.FLUSH_ALL)
    finally:
        chosen.close()
    assert contract.methods("grpc")[-3:] == ["Connect", "ListDatabases", "GetVersion"]


@pytest.mark.parametrize("name", ["2.3.5", "2.4.23"])
def test_a_server_without_databases_is_backed_up_as_the_default_one(contract, stores, name):
    """ListDatabases answering UNIMPLEMENTED (Milvus before databases) says there is only
    "default", as the Go tool reads it."""
    contract.reset(PROFILES[name].but(unimplemented=PROFILES[name].unimplemented | {"ListDatabases"}))
    contract.state.add_collection("default", "docs", docs_schema())
    chosen = adapter(contract)
    try:
        assert chosen.server.multi_database is False and chosen.list_databases() == ["default"]
    finally:
        chosen.close()
    result, _ = backup(contract, stores, filters=())
    assert [(c.db_name, c.collection_name) for c in result.info.collection_backups] == [("default", "docs")]
    assert [d.db_name for d in result.info.database_backups] == ["default"]


@pytest.mark.parametrize("tags,shown", [
    ("v3.1.0", "Milvus v3.1.0 is not supported: no adapter for Milvus 3.1"),
    ("master-20260226-abcdef", "Milvus master-20260226-abcdef is not supported: no adapter for a development build "
                               "of no known line"),
    ("v2.2.16", "Milvus v2.2.16 is not supported: no adapter for Milvus 2.2"),
])
def test_a_line_without_adapter_is_refused_naming_the_nearest_and_how_to_force_it(contract, tags, shown):
    contract.reset(PROFILES["3.0.0"].but(build_tags=tags))
    with pytest.raises(MilvusError) as e:
        adapter(contract)
    near = "2.3" if tags == "v2.2.16" else "3.0"
    assert str(e.value) == (f"{shown} (lines: 2.3, 2.4, 2.5, 2.6, 3.0); to try the nearest, {near}, set "
                            f"mbackup.milvusAdapter: {near} (or --set mbackup.milvusAdapter={near}), or install an "
                            f"adapter plugin for {shown.rsplit('for ', 1)[1]}")
    forced = adapter(contract, line=near)
    try:
        assert type(forced).__name__ == ("Milvus23Adapter" if near == "2.3" else "Milvus30Adapter")
    finally:
        forced.close()
    with pytest.raises(MilvusError, match=r"^mbackup.milvusAdapter is '4.0', and no adapter serves that Milvus line "
                                          r"\(lines: 2.3, 2.4, 2.5, 2.6, 3.0\)"):
        adapter(contract, line="4.0")


def test_check_refuses_an_unknown_line_in_one_line_and_runs_with_the_adapter_forced(contract, tmp_path, seaweedfs, bucket):
    contract.reset(PROFILES["3.0.0"].but(build_tags="v3.1.0"))
    cfg = config_file(tmp_path, seaweedfs, bucket, contract)
    run = [sys.executable, "-m", "milvus_backup", "check", "--config", str(cfg)]
    refused = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: Milvus v3.1.0 is not supported: no adapter for Milvus 3.1 (lines: 2.3, 2.4, 2.5, 2.6, 3.0); to try "
        "the nearest, 3.0, set mbackup.milvusAdapter: 3.0 (or --set mbackup.milvusAdapter=3.0), or install an "
        "adapter plugin for Milvus 3.1"]
    forced = subprocess.run([*run, "--set", "mbackup.milvusAdapter=3.0"], capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[:2] == [
        "Milvus version: v3.1.0",
        f"Milvus adapter: 3.0 from plugin {PLUGIN_2_4_PLUS} (forced by mbackup.milvusAdapter); {CONTRACT_TESTED}"]


@pytest.mark.parametrize("name,line", [("2.4.23", "2.4"), ("2.5.8", "2.5"), ("2.6.5", "2.6"), ("2.6.11", "2.6"),
                                       ("3.0.0", "3.0")])
def test_check_names_the_adapter_of_the_servers_line_and_that_it_is_contract_tested(contract, tmp_path, seaweedfs,
                                                                                     bucket, name, line):
    contract.reset(PROFILES[name])
    code, out, err = inprocess.run("check", "--config", str(config_file(tmp_path, seaweedfs, bucket, contract)))
    assert code == 0, err
    assert out.splitlines() == [f"Milvus version: v{name}", f"Milvus adapter: {line} from plugin {PLUGIN_2_4_PLUS}; "
                                f"{CONTRACT_TESTED}", "Success!"]


# --------------------------------------------------------------------------------------
# The requests of a backup, per line


@pytest.mark.parametrize("name", NEWER)
def test_a_backup_sends_each_lines_requests_and_copies_every_binlog(contract, stores, name):
    contract.reset(PROFILES[name])
    (coll,), written = seed(contract, stores)
    result, reporter = backup(contract, stores)
    profile, methods = PROFILES[name], contract.methods()
    assert reporter.warnings == []

    # Flush: FlushAll + GetFlushAllState where the line has it (the Go tool's bulk_flush), else Flush per collection.
    if profile.flush_all_msgs:
        assert "Flush" not in methods
        waited = contract.calls("GetFlushAllState")[-1].request
        assert dict(waited.flush_all_tss) == {"by-dev-rootcoord-dml_0": int(_tt(result.info), 36)}
        assert result.info.physical_channel_names == ["by-dev-rootcoord-dml_0"]
        assert result.info.control_channel_name == "by-dev-rootcoord-dml_0_vcchan"
        first_flush = index(methods, "FlushAll")
    else:
        assert "FlushAll" not in methods and result.info.flush_all_msgs_base64 == {}
        flush, = contract.calls("Flush")
        assert (flush.metadata["dbname"], list(flush.request.collection_names)) == ("db1", ["docs"])
        first_flush = index(methods, "Flush")

    # GC: held from before the flush until every binlog is copied, then released.
    pause, = contract.calls(PAUSE)
    resume, = contract.calls(RESUME)
    if profile.gc == "ticket":
        assert pause.request == {"pause_seconds": "3600", "collection_id": str(coll.id)}
        assert resume.request == {"ticket": contract.state.gc_history[0][2]}
    else:
        assert pause.request == {"pause_seconds": "3600", "collection_id": "0"} and resume.request == {}
    assert index(methods, PAUSE) < first_flush < index(methods, "GetPersistentSegmentInfo") < index(methods, RESUME)
    assert contract.state.gc_held() == []

    # Binlogs: exactly as the REST describe names them from 2.5.8 (one request per segment), by listing before.
    described = contract.calls(DESCRIBE)
    if profile.segment_describe:
        assert sorted(c.request["segmentIds"][0] for c in described) == sorted(coll.segments)
        assert {c.request["dbName"] for c in described} == {"db1"}
        assert {c.request["collectionId"] for c in described} == {coll.id}
    else:
        assert described == []
    for method in ("DescribeCollection", "GetPersistentSegmentInfo", "ShowPartitions"):
        assert {c.metadata.get("dbname") for c in contract.calls(method)} == {"db1"}, method
    assert [c.request.db_name for c in contract.calls("DescribeDatabase")] == ["db1"]

    # What the backup holds: every binlog, byte for byte, where the Go tool puts it.
    got = result.info.collection_backups[0]
    bdir = meta.backup_dir("backup", result.info.name)
    files = [f for seg in [*(s for p in got.partition_backups for s in p.segment_backups), *got.l0_segments]
             for f in meta.segment_files(bdir, seg)]
    assert sorted(src for src, _, _ in files) == sorted(written)
    for src, dst, size in files:
        assert stores.backup.read(dst) == written[src] and size == len(written[src])
    l0, = got.l0_segments
    assert (l0.partition_id, l0.group_id, l0.is_l0, l0.num_of_rows) == (-1, 0, True, 0)
    assert [dst.split(f"{bdir}/binlogs/", 1)[1].rsplit("/", 1)[0] for _, dst, _ in meta.segment_files(bdir, l0)] == [
        f"delta_log/{coll.id}/-1/{l0.segment_id}"] * 2
    p1 = next(p for p in got.partition_backups if p.partition_name == "p1")
    assert sorted(s.is_l0 for s in p1.segment_backups) == [False, True]
    segments = [s for p in got.partition_backups for s in p.segment_backups] + got.l0_segments
    assert {s.storage_version for s in segments} == {profile.storage_version}
    assert {s.v_channel for s in segments} == ({coll.vchannels[0]} if profile.segment_describe else {""})
    assert got.size == sum(len(b) for b in written.values()) == result.info.size
    assert (result.info.database_backups[0].db_id, result.info.database_backups[0].properties) == (
        contract.state.databases["db1"].id, [meta.KeyValuePair("owner", "team-a")])
    assert got.aliases == ["docs_alias"] and got.db_id == contract.state.databases["db1"].id


def test_create_get_and_verify_count_the_collection_level_l0_segments(contract, tmp_path, seaweedfs, bucket):
    """Through the CLI: the collection-level L0 segment, which no partition lists, is copied,
    counted by get and checked by verify --deep."""
    cfg = str(config_file(tmp_path, seaweedfs, bucket, contract))
    stores = open_stores(load_config(cfg, env={}, cwd=tmp_path))
    (coll,), _ = seed(contract, stores)
    code, out, err = inprocess.run("create", "-n", "withl0", "--config", cfg)
    assert code == 0, err
    assert out.startswith("create backup success: withl0: 1 collections, 5 segments, ")
    code, out, err = inprocess.run("get", "-n", "withl0", "--config", cfg)
    assert code == 0 and "  db1.docs: 2 partitions, 3 segments, 2 L0 delete segments, 157 rows, " in out, err
    assert inprocess.run("verify", "-n", "withl0", "--deep", "--config", cfg)[0] == 0
    l0 = next(s for s in coll.segments.values() if s.partition_id == -1)
    stores.backup.delete(f"backup/withl0/binlogs/delta_log/{coll.id}/-1/{l0.id}/{l0.deltas[0]}")
    code, out, err = inprocess.run("verify", "-n", "withl0", "--config", cfg)
    assert code == 4 and f"delta_log/{coll.id}/-1/{l0.id}/{l0.deltas[0]}" in out + err


def _tt(info: meta.BackupInfo) -> str:
    raw = base64.b64decode(info.flush_all_msgs_base64["by-dev-rootcoord-dml_0"])
    return common_pb2.ImmutableMessage.FromString(raw).properties["_tt"]


def test_the_rest_describe_leaves_out_orphans_listing_would_take(contract, stores):
    """A compaction can leave a binlog behind in a segment's directory. From 2.5.8 the
    server names the segment's own and the orphan is not backed up; 2.4 can only list, and
    the per-field count gives the orphan away."""
    for name in ("2.5.8", "2.4.23"):
        contract.reset(PROFILES[name])
        (coll,), written = seed(contract, stores)
        seg = next(s for s in coll.segments.values() if s.inserts)
        orphan = contract.state.insert_key(seg, 100, 999_999_999_999_999_999)
        stores.milvus.write(orphan, b"left by a compaction")
        if name == "2.5.8":
            result, _ = backup(contract, stores)
            sources = {b.log_path for c in result.info.collection_backups for p in c.partition_backups
                       for s in p.segment_backups for fb in s.binlogs for b in fb.binlogs}
            assert orphan not in sources and sources <= set(written)
        else:
            with pytest.raises(BackupError, match=rf"^segment {seg.id} has a different number of binlogs per field "
                                                  r"\(field 0: 1, field 1: 1, field 100: 2, field 101: 1\); orphan"):
                backup(contract, stores)
            assert contract.state.gc_held() == []
        stores.milvus.delete(orphan)


def test_a_binlog_the_server_names_but_the_bucket_lacks_is_refused(contract, stores):
    contract.reset(PROFILES["2.5.8"])
    (coll,), _ = seed(contract, stores)
    seg = next(s for s in coll.segments.values() if s.inserts)
    missing = contract.state.insert_key(seg, 101, seg.inserts[101][0])
    stores.milvus.delete(missing)
    with pytest.raises(BackupError) as e:
        backup(contract, stores)
    assert str(e.value) == (f"segment {seg.id} of db1.docs: Milvus names 1 binlog(s) not in its bucket (first: "
                            f"{missing}): check that milvus.storage.bucketName and rootPath (minio.bucketName, "
                            "minio.rootPath) name the bucket and root path Milvus itself writes to")
    assert contract.state.gc_held() == []


def test_a_failing_rest_describe_falls_back_to_listing_with_one_warning(contract, stores):
    contract.reset(PROFILES["2.6.11"])
    _, written = seed(contract, stores)
    contract.fail(DESCRIBE, http_status=503, reason="restful disabled", times=None)
    result, reporter = backup(contract, stores)
    assert reporter.warnings == [
        f"the Milvus REST API at {contract.http_url} answered POST /v2/vectordb/segments/describe with HTTP 503: "
        "restful disabled: the binlogs of db1.docs are found by listing storage instead (check milvus.rest.endpoint)"]
    assert len(contract.calls(DESCRIBE)) == 1  # the first failure decides for the collection
    assert result.info.size == sum(len(b) for b in written.values())


def test_bulk_flush_on_a_server_without_flush_all_is_refused_before_anything_is_written(contract, stores):
    contract.reset(PROFILES["2.6.5"])
    seed(contract, stores)
    with pytest.raises(BackupError, match=r"^--strategy bulk_flush needs a Milvus that flushes all collections at "
                                          r"once, and Milvus v2.6.5 cannot: use serial_flush$"):
        backup(contract, stores, strategy="bulk_flush")
    assert stores.backup.list("backup") == []
    assert PAUSE not in contract.methods() and "Flush" not in contract.methods()


def test_serial_flush_is_kept_where_flush_all_exists_when_asked(contract, stores):
    seed(contract, stores)
    backup(contract, stores, strategy="serial_flush")
    assert "FlushAll" not in contract.methods() and len(contract.calls("Flush")) == 1


def test_storage_v3_segments_are_refused_in_one_line(contract, stores):
    contract.reset(PROFILES["3.0.0"])
    (coll,), _ = seed(contract, stores)
    loon = contract.state.add_segment(coll, "p1", storage_version=3)
    with pytest.raises(MilvusError) as e:
        backup(contract, stores)
    assert str(e.value) == (f"1 segment(s) of db1.docs (first: {loon.id}) are in storage format v3 (Loon), which "
                            "Milvus cannot import back from a binlog backup (milvus#52930): turn storage v3 off in "
                            "Milvus and let it compact them, then back up again")
    assert contract.state.gc_held() == []


# --------------------------------------------------------------------------------------
# Failures: one clear line, and GC always released


@pytest.mark.parametrize("name", ["2.5.8", "2.6.11"])
@pytest.mark.parametrize("method,fault,message", [
    ("GetPersistentSegmentInfo", {"code": grpc.StatusCode.UNIMPLEMENTED, "reason": "no such method"},
     "cannot list segments of db1.docs on Milvus {v} at {a}: no such method"),
    ("GetPersistentSegmentInfo", {"status": 65535, "reason": "channel checkpoint lagging"},
     "cannot list segments of db1.docs on Milvus {v} at {a}: channel checkpoint lagging"),
    ("GetPersistentSegmentInfo", {"delay": 3.0}, "cannot list segments of db1.docs on Milvus {v} at {a}: Deadline Exceeded"),
])
def test_a_failing_request_stops_the_backup_in_one_line_and_releases_gc(contract, stores, monkeypatch, name, method,
                                                                        fault, message):
    contract.reset(PROFILES[name])
    seed(contract, stores)
    monkeypatch.setattr(Milvus24Adapter, "rpc_timeout", 1.0)
    contract.fail(method, **fault)
    with pytest.raises(MilvusError) as e:
        backup(contract, stores)
    assert str(e.value) == message.format(v=PROFILES[name].build_tags, a=contract.address)
    assert contract.methods()[-1] == RESUME and contract.state.gc_held() == []
    assert stores.backup.list("backup") == []  # refused before a binlog was copied: nothing left behind


def test_milvus_calls_retried_are_logged_with_what_why_the_attempt_and_the_wait(contract, stores):
    """UNAVAILABLE twice, then a rate limit: the backup rides them out, and each retry is a log
    record a log file or -v would show."""
    import logging

    seed(contract, stores)
    contract.fail("GetPersistentSegmentInfo", code=grpc.StatusCode.UNAVAILABLE, reason="busy", times=2)
    contract.fail("GetPersistentSegmentInfo", status=8, reason="rate limit exceeded", times=1)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("milvus_backup")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        backup(contract, stores)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    retries = [r.getMessage() for r in records if "retrying in" in r.getMessage()]
    assert [re.sub(r"in [\d.]+s$", "in Ns", m) for m in retries] == [
        "list segments of db1.docs: attempt 1 of 6 failed (Milvus answered UNAVAILABLE); retrying in Ns",
        "list segments of db1.docs: attempt 2 of 6 failed (Milvus answered UNAVAILABLE); retrying in Ns",
        "list segments of db1.docs: attempt 3 of 6 failed (rate-limited: rate limit exceeded); retrying in Ns"], retries
    assert all(r.levelno == logging.WARNING for r in records if "retrying in" in r.getMessage())


def test_a_pause_refused_for_one_collection_warns_and_still_releases_the_others(contract, stores):
    seed(contract, stores, collections=2)
    contract.fail(PAUSE, http_status=500, reason="datacoord busy")
    result, reporter = backup(contract, stores)
    assert reporter.warnings == ["Milvus v2.6.11 cannot pause garbage collection; segments compacted during the backup "
                                 "may be missing from it (back up while writes are quiet)"]
    assert len(contract.calls(PAUSE)) == 2 and len(contract.calls(RESUME)) == 1
    assert contract.state.gc_held() == [] and len(result.info.collection_backups) == 2


def test_a_failed_release_is_a_warning_after_the_backup_is_made(contract, stores):
    seed(contract, stores)
    contract.fail(RESUME, http_status=500, reason="ticket expired")
    result, reporter = backup(contract, stores)
    assert reporter.warnings == [
        f"could not resume Milvus garbage collection (1 of 1 collection pauses: the Milvus management endpoint at "
        f"{contract.http_url} answered GET /management/datacoord/garbage_collection/resume with HTTP 500: ticket "
        "expired); it resumes by itself when the pause lapses"]
    assert stores.backup.exists(meta.meta_key(meta.backup_dir("backup", result.info.name), meta.BACKUP_META))


def test_gc_pauses_are_renewed_while_held_and_the_old_ticket_given_back(contract):
    coll = contract.state.add_collection("default", "c", docs_schema())
    chosen = adapter(contract)
    try:
        assert chosen.pause_gc(1, [coll.id])
        deadline = time.monotonic() + 20
        while len(contract.calls(PAUSE)) < 2:
            assert time.monotonic() < deadline, contract.methods()
            time.sleep(0.05)
        chosen.resume_gc()
    finally:
        chosen.close()
    history = contract.state.gc_history
    assert [h[0] for h in history[:3]] == ["pause", "pause", "resume"] and history[2][2] == history[0][2]
    assert contract.state.gc_held() == []


@pytest.mark.parametrize("name", ["2.4.23", "2.6.11"])  # cluster-wide pause, per-collection ticket
def test_backup_pause_gc_false_sends_no_pause_and_says_so_once(contract, tmp_path, seaweedfs, bucket, name):
    contract.reset(PROFILES[name])
    cfg = str(config_file(tmp_path, seaweedfs, bucket, contract))
    seed(contract, open_stores(load_config(cfg, env={}, cwd=tmp_path)))
    code, out, err = inprocess.run("create", "-n", "nopause", "--config", cfg, "--set", "backup.pauseGC=false")
    assert code == 0 and out.startswith("create backup success: nopause: 1 collections, 5 segments, "), err
    assert PAUSE not in contract.methods() and RESUME not in contract.methods()
    assert [line for line in err.splitlines() if "pauseGC" in line] == [
        "warning: backup.pauseGC is false: Milvus garbage collection is not paused; segments compacted during the "
        "backup may be missing from it"]


@pytest.mark.parametrize("during", ["GetPersistentSegmentInfo", "GetFlushAllState"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_during_a_backup_releases_gc(contract, tmp_path, seaweedfs, bucket, sig, code, during):
    """Also while the flush is waited for, which runs beside the create's own work: the
    create stops at once, not when Milvus answers."""
    contract.reset(PROFILES["2.6.11"])
    stores = open_stores(load_config(str(config_file(tmp_path, seaweedfs, bucket, contract)), env={}, cwd=tmp_path))
    seed(contract, stores)
    contract.fail(during, delay=30.0)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "create", "-n", "interrupted", "--config",
                             str(tmp_path / "backup.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while during not in contract.methods():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    assert contract.state.gc_held() != []
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.splitlines()[-1:]) == (code, ["interrupted"]), err
    assert time.monotonic() - started < 25  # not held until the delayed answer came
    assert contract.state.gc_held() == [] and contract.methods()[-1] == RESUME
    assert not stores.backup.exists(meta.meta_key(meta.backup_dir("backup", "interrupted"), meta.BACKUP_META))


def test_a_failed_flush_of_an_increment_is_one_line_and_leaves_nothing_that_looks_made(contract, tmp_path, seaweedfs,
                                                                                     bucket):
    """The flush runs while an incremental create finds its base and writes its marker: when
    it fails, the create still stops with Milvus's reason in one line, leaves no backup (not
    even an incomplete one) and gives the GC back; the same create then makes the increment
    it would have made, announced as the dry run announces it. (The contract server, as no
    local Milvus fails a flush on demand.)"""
    contract.reset(PROFILES["2.3.5"])
    cfg = str(config_file(tmp_path, seaweedfs, bucket, contract))
    stores = open_stores(load_config(cfg, env={}, cwd=tmp_path))
    (coll,), _ = seed(contract, stores)
    assert inprocess.run("create", "-n", "night_0", "--filter", "db1.docs", "--config", cfg)[0] == 0
    contract.state.add_segment(coll, "p1", rows=20)
    contract.state.write_binlogs(stores.milvus, "files")
    code, dry, err = inprocess.run("create", "-n", "night_1", "--incremental", "--filter", "db1.docs", "--dry-run",
                                   "--config", cfg)
    assert code == 0, err
    contract.fail("Flush", status=65535, reason="channel checkpoint lagging", times=1)
    code, out, err = inprocess.run("create", "-n", "night_1", "--incremental", "--filter", "db1.docs", "--config", cfg)
    assert (code, [line for line in err.splitlines() if not line.startswith("warning: ")]) == (2, [
        f"error: cannot flush db1.docs on Milvus v2.3.5 at {contract.address}: channel checkpoint lagging"]), err
    assert stores.backup.list("backup/night_1") == [] and contract.state.gc_held() == []
    code, out, err = inprocess.run("list", "--config", cfg)
    assert "night_1" not in out
    code, out, err = inprocess.run("create", "-n", "night_1", "--incremental", "--filter", "db1.docs", "--config", cfg)
    assert code == 0, err
    announced = [line for line in err.splitlines() if line.startswith("incremental backup on base night_0")]
    would = [line for line in dry.splitlines() if "incremental backup on base night_0" in line]
    assert len(announced) == 1 and would == [f"would make an {announced[0]} (segments not flushed yet are not counted)"]
    assert inprocess.run("verify", "-n", "night_1", "--deep", "--config", cfg)[0] == 0


# --------------------------------------------------------------------------------------
# What describe_collection keeps of every schema feature of these lines


def every_feature_schema() -> schema_pb2.CollectionSchema:
    default = schema_pb2.ValueField(long_data=7)
    return schema_pb2.CollectionSchema(
        description="all of it", enable_dynamic_field=True,
        fields=[
            schema_field("pk", DT.VarChar, is_primary_key=True, max_length=64),
            schema_field("text", DT.VarChar, max_length=1024),
            schema_field("dense", DT.FloatVector, dim=8),
            schema_field("sparse", DT.SparseFloatVector, is_function_output=True),
            schema_field("f16", DT.Float16Vector, dim=8),
            schema_field("bf16", DT.BFloat16Vector, dim=8),
            schema_field("i8", DT.Int8Vector, dim=8),
            schema_field("score", DT.Int64, nullable=True, default_value=default),
            schema_field("tenant", DT.Int64, is_partition_key=True),
            schema_field("day", DT.Int64, is_clustering_key=True),
            schema_field("where", DT.Geometry),
            schema_field("when", DT.Timestamptz),
            schema_field("tags", DT.Array, element_type=DT.VarChar, max_capacity=4, max_length=16),
        ],
        functions=[schema_pb2.FunctionSchema(
            name="bm25", id=1, type=schema_pb2.FunctionType.BM25, input_field_names=["text"], input_field_ids=[101],
            output_field_names=["sparse"], output_field_ids=[103],
            params=[common_pb2.KeyValuePair(key="analyzer", value="standard")])],
        struct_array_fields=[schema_pb2.StructArrayFieldSchema(fieldID=200, name="chunks", fields=[
            schema_field("chunk_vec", DT.ArrayOfVector, element_type=DT.FloatVector, dim=4, max_capacity=8)])],
    )


def test_describe_keeps_every_schema_feature_of_these_lines(contract):
    contract.reset(PROFILES["3.0.0"])
    coll = contract.state.add_collection("db1", "all", every_feature_schema(), shards=2, aliases=("a1", "a2"),
                                         properties={"collection.ttl.seconds": "3600"})
    chosen = adapter(contract)
    try:
        got = chosen.describe_collection("db1", "all")
        database = chosen.describe_database("db1")
    finally:
        chosen.close()
    fields = {f.name: f for f in got.schema.fields}
    assert [f.data_type for f in got.schema.fields] == [int(f.data_type) for f in coll.schema.fields]
    assert (fields["sparse"].is_function_output, fields["score"].nullable, fields["tenant"].is_partition_key) == (
        True, True, True)
    assert schema_pb2.ValueField.FromString(base64.b64decode(fields["score"].default_value_base64)).long_data == 7
    assert fields["tags"].element_type == DT.VarChar and {kv.key for kv in fields["tags"].type_params} == {
        "max_capacity", "max_length"}
    bm25, = got.schema.functions
    assert (bm25.name, bm25.type, bm25.input_field_names, bm25.output_field_ids, bm25.params) == (
        "bm25", 1, ["text"], [103], [meta.KeyValuePair("analyzer", "standard")])
    chunks, = got.schema.struct_array_fields
    assert (chunks.field_id, chunks.name, [(f.name, f.data_type, f.element_type) for f in chunks.fields]) == (
        200, "chunks", [("chunk_vec", DT.ArrayOfVector, DT.FloatVector)])
    assert got.schema.enable_dynamic_field and got.schema.description == "all of it"
    assert (got.shards_num, got.aliases, got.properties) == (2, ["a1", "a2"], [meta.KeyValuePair("collection.ttl.seconds",
                                                                                                  "3600")])
    assert (got.db_id, database.db_id) == (contract.state.databases["db1"].id,) * 2
    assert got.virtual_channel_names == coll.vchannels and got.physical_channel_names == coll.pchannels


@pytest.mark.parametrize("name", NEWER)
def test_the_clustering_key_is_backed_up_and_refused_by_a_line_without_it(contract, stores, name):
    """The Go meta has no key for it (the Go tool loses it); mbackup writes is_clustering_key on
    that field only, and a 2.3 target, which has no clustering keys, refuses the collection."""
    contract.reset(PROFILES[name])
    schema = docs_schema()
    schema.fields.append(schema_field("ts", DT.Int64, is_clustering_key=True))
    coll = contract.state.add_collection("db1", "clustered", schema)
    contract.state.add_segment(coll, "_default", rows=10)
    contract.state.write_binlogs(stores.milvus, "files")
    result, _ = backup(contract, stores, filters=("db1.clustered",))
    full = json.loads(stores.backup.read(f"{meta.backup_dir('backup', result.info.name)}/meta/{meta.FULL_META}"))
    fields = {f["name"]: f for f in full["collection_backups"][0]["schema"]["fields"]}
    assert [n for n, f in fields.items() if "is_clustering_key" in f] == ["ts"] and fields["ts"]["is_clustering_key"]
    info = meta.loads(meta.BackupInfo, stores.backup.read(f"{meta.backup_dir('backup', result.info.name)}/meta/"
                                                          f"{meta.FULL_META}"))
    colls = [("db1.clustered", c) for c in info.collection_backups]
    with pytest.raises(IncompatibleBackup) as refused:
        check_restorable(info, colls, Capabilities.of_line("2.3", newest_backup_line="3.0"), "v2.3.5")
    assert str(refused.value) == (
        "db1.clustered has clustering key field 'ts': Milvus 2.3.5 lacks clustering keys (they came with Milvus 2.4); "
        "restore it into Milvus 2.4 or newer, or leave it out with --filter")
    assert check_restorable(info, colls, Capabilities.of_line("3.0"), "v3.0.0") == []


def _set(message, name: str) -> None:
    """Give ``message``'s field ``name`` a value that is not its default."""
    fd = message.DESCRIPTOR.fields_by_name[name]
    value = {fd.TYPE_BOOL: True, fd.TYPE_STRING: "x"}.get(fd.type, 1)
    if fd.message_type is not None:
        target = getattr(message, name)
        (target.add() if hasattr(target, "add") else target).SetInParent()
        if fd.message_type.name == "KeyValuePair":
            target[0].key = "k"
    elif hasattr(getattr(message, name), "append"):
        getattr(message, name).append(value)
    else:
        setattr(message, name, value)


def _unkept() -> list[tuple[str, str]]:
    """(message, proto field) of every schema field pymilvus' protos have that mbackup does
    not keep: what a newer Milvus adds shows up here by itself."""
    kept = {"CollectionSchema": {"name", "description", "autoID", "fields", "enable_dynamic_field", "properties",
                                 "functions", "struct_array_fields", "dbName", "version"},
            "FieldSchema": {"fieldID", "name", "is_primary_key", "description", "data_type", "type_params",
                            "index_params", "autoID", "state", "element_type", "default_value", "is_dynamic",
                            "is_partition_key", "is_clustering_key", "nullable", "is_function_output"},
            "StructArrayFieldSchema": {"fieldID", "name", "description", "fields", "type_params", "nullable"}}
    return [(msg, fd.name) for msg, names in kept.items()
            for fd in getattr(schema_pb2, msg).DESCRIPTOR.fields if fd.name not in names]


@pytest.mark.parametrize("message,name", _unkept())
def test_a_schema_property_mbackup_cannot_keep_is_refused_not_dropped(contract, message, name):
    contract.reset(PROFILES["2.6.11"])  # 3.0 refuses external collections before reading the schema
    schema = every_feature_schema()
    where = {"CollectionSchema": (schema, "the schema of db1.all"),
             "FieldSchema": (schema.fields[1], f"field {schema.fields[1].name!r} of db1.all"),
             "StructArrayFieldSchema": (schema.struct_array_fields[0], "struct array field 'chunks' of db1.all")}
    target, label = where[message]
    _set(target, name)
    contract.state.add_collection("db1", "all", schema)
    chosen = adapter(contract)
    try:
        with pytest.raises(MilvusError) as refused:
            chosen.describe_collection("db1", "all")
    finally:
        chosen.close()
    assert str(refused.value) == (f"{label} sets {name}, which mbackup cannot keep in a backup yet (it would be lost "
                                  "without a word): leave the collection out with --filter")


def test_struct_array_params_and_nullability_are_kept(contract):
    contract.reset(PROFILES["2.6.11"])
    schema = every_feature_schema()
    chunks = schema.struct_array_fields[0]
    chunks.type_params.add(key="max_capacity", value="8")
    chunks.nullable = True
    contract.state.add_collection("db1", "all", schema)
    chosen = adapter(contract)
    try:
        got, = chosen.describe_collection("db1", "all").schema.struct_array_fields
    finally:
        chosen.close()
    assert (got.type_params, got.nullable) == ([meta.KeyValuePair("max_capacity", "8")], True)


def test_an_external_collection_on_3_x_is_refused_naming_its_source(contract):
    contract.reset(PROFILES["3.0.0"])
    schema = docs_schema()
    schema.external_source = "s3://lake/table"
    contract.state.add_collection("default", "lake", schema)
    chosen = adapter(contract)
    try:
        with pytest.raises(MilvusError, match=r"^default.lake is an external collection: its data lives outside Milvus "
                                              r"\(s3://lake/table\), so a backup could not restore it: leave it out "
                                              r"with --filter$"):
            chosen.describe_collection("default", "lake")
    finally:
        chosen.close()


@pytest.mark.parametrize("filters", [("db1.*",), ()])
def test_an_external_collection_is_left_out_of_a_whole_database_with_a_warning(contract, stores, filters):
    contract.reset(PROFILES["3.0.0"])
    seed(contract, stores)
    schema = docs_schema()
    schema.external_source = "s3://lake/table"
    contract.state.add_collection("db1", "lake", schema)
    result, reporter = backup(contract, stores, filters=filters)
    assert [c.collection_name for c in result.info.collection_backups] == ["docs"]
    assert "db1.lake is an external collection, its data in s3://lake/table: left out" in reporter.warnings
    # Named on its own, it is refused: the user asked for exactly that collection.
    with pytest.raises(MilvusError, match=r"^db1.lake is an external collection"):
        backup(contract, stores, filters=("db1.docs", "db1.lake"))


def test_milvus_backup_records_the_flush_all_messages_as_the_go_tool(contract, stores):
    seed(contract, stores)
    result, _ = backup(contract, stores)
    flush_all, = contract.calls("FlushAll")
    assert flush_all.metadata.get("dbname") is None and flush_all.request == milvus_pb2.FlushAllRequest()
    message = common_pb2.ImmutableMessage.FromString(base64.b64decode(
        result.info.flush_all_msgs_base64["by-dev-rootcoord-dml_0"]))
    assert message.properties["_vc"] == "by-dev-rootcoord-dml_0"


# --------------------------------------------------------------------------------------
# RBAC (--rbac): BackupRBAC from 2.4.10, written as the Go tool writes rbac_meta


def seed_rbac(contract) -> None:
    rbac = contract.state.rbac
    rbac.users.add(user="alice", password="$2a$10$hash", roles=[milvus_pb2.RoleEntity(name="reader")])
    rbac.users.add(user="bob")
    rbac.roles.add(name="reader")
    rbac.grants.add(role=milvus_pb2.RoleEntity(name="reader"), object=milvus_pb2.ObjectEntity(name="Collection"),
                    object_name="docs", db_name="db1", grantor=milvus_pb2.GrantorEntity(
                        user=milvus_pb2.UserEntity(name="root"), privilege=milvus_pb2.PrivilegeEntity(name="Query")))
    rbac.privilege_groups.add(group_name="readers", privileges=[milvus_pb2.PrivilegeEntity(name="Query")])


@pytest.mark.parametrize("name", ["2.4.23", "2.5.8"])
def test_rbac_is_backed_up_when_asked_as_the_go_tool_writes_it(contract, stores, name):
    contract.reset(PROFILES[name])
    seed(contract, stores)
    seed_rbac(contract)
    plain, _ = backup(contract, stores)
    assert plain.info.rbac_meta is None and "BackupRBAC" not in contract.methods()
    result, _ = backup(contract, stores, rbac=True)
    groups = ',"privilege_groups":[{"group_name":"readers","privileges":[{"name":"Query"}]}]' if name == "2.5.8" else ""
    full = stores.backup.read(meta.meta_key(meta.backup_dir("backup", result.info.name), meta.FULL_META)).decode()
    assert ('"rbac_meta":{"users":[{"user":"alice","password":"$2a$10$hash","roles":[{"name":"reader"}]},{"user":"bob"}],'
            '"roles":[{"name":"reader"}],"grants":[{"role":{"name":"reader"},"object":{"name":"Collection"},'
            '"object_name":"docs","grantor":{"user":{"name":"root"},"privilege":{"name":"Query"}},"db_name":"db1"}]'
            f'{groups}}}') in full
    backup_rbac, = contract.calls("BackupRBAC")
    assert "dbname" not in backup_rbac.metadata


def test_rbac_on_a_server_before_2_4_10_is_refused_before_anything_is_left(contract, stores):
    contract.reset(PROFILES["2.4.23"].but(build_tags="v2.4.5"))
    seed(contract, stores)
    with pytest.raises(MilvusError, match=r"^BackupRBAC and RestoreRBAC needs Milvus 2.4.10 or newer \(this server is "
                                          r"v2.4.5\): leave out --rbac$"):
        backup(contract, stores, rbac=True)
    assert stores.backup.list("backup") == [] and "BackupRBAC" not in contract.methods()
    assert contract.state.gc_held() == []
