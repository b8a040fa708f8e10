"""Restoring into Milvus 2.4, 2.5, 2.6 and 3.0 (adapters/restore_v2.py), against the contract
server (tests/milvus_contract): a wire contract hand-built from the pymilvus 3.0 protos and the
Go tool (zilliztech/milvus-backup f81df44), NOT a Milvus. What these tests prove is the requests
mbackup sends each line, in which order and with which headers, and what a user sees when the
server answers badly; not that a real server of these lines restores the rows (none runs here).

Backups are written to the real SeaweedFS as the Go tool lays them out for these lines (group
dirs, L0 segments, collection-level L0 under partition -1, storage version 2 from 2.6). The
contract reads no binlogs: each test says what rows an import of an insert prefix finds
(``State.rows_by_prefix``).

The 2.4+ lines are served by the adapters a plugin registers for them; on a tree that has none
yet, by a stand-in made of the 2.3 adapter's requests and RestoreV2 (``ContractLineAdapter``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from pymilvus.grpc_gen import schema_pb2

import inprocess
from milvus_backup.backup.catalog import open_stores
from milvus_backup.backup.restore import RestoreError, RestoreRequest, restore_backup
from milvus_backup.config.settings import load_config
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.http_api import HttpApi
from milvus_backup.milvus.adapters.restore_v2 import RestoreV2
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.milvus.connection import MilvusEndpoint, connect
from milvus_backup.milvus.versions import ServerVersion
from milvus_backup.plugins.hookspecs import hookimpl
from milvus_backup.plugins.manager import manager, milvus_adapters
from milvus_backup.wiring import copy_settings
from milvus_contract import PROFILES
from sample_backup import config_yaml

pytest_plugins = ["milvus_contract.fixtures"]

LINES = ("2.4", "2.5", "2.6", "3.0")
NEWER = ["2.4.23", "2.5.8", "2.6.5", "2.6.11", "3.0.0"]
COLL, DEFAULT_P, P1 = 3001, 2001, 2002
DB, NAME = "db1", "docs"


class ContractLineAdapter(RestoreV2, Milvus23Adapter):
    """A stand-in for the 2.4+ line adapters where none is registered: the 2.3 adapter's
    requests, with the restore side of 2.4+ in front."""

    def __init__(self, version: str, connection, rest_url: str) -> None:
        super().__init__(version, connection)
        self.server = ServerVersion.of(version)
        self._rest = HttpApi(rest_url, "the Milvus REST API")


class _StandIns:
    def __init__(self, lines: list[str], rest_url: str) -> None:
        self.lines, self.rest_url = lines, rest_url

    @hookimpl
    def mbackup_register_milvus_adapter(self, register) -> None:
        for line in self.lines:
            register(line, lambda version, connection: ContractLineAdapter(version, connection, self.rest_url))


@pytest.fixture
def lines(contract):
    missing = [line for line in LINES if line not in milvus_adapters().lines()]
    pm = manager()
    pm.register(_StandIns(missing, contract.http_url), name="contract-line-stand-ins")
    yield contract
    pm.unregister(name="contract-line-stand-ins")


def endpoint(contract) -> MilvusEndpoint:
    # Where the tree's MilvusEndpoint knows a REST endpoint, the contract's HTTP server is it.
    rest = {"rest_endpoint": contract.http_url} if "rest_endpoint" in {f.name for f in dataclasses.fields(
        MilvusEndpoint)} else {}
    return MilvusEndpoint(host="127.0.0.1", port=contract.grpc_port, **rest)


# --------------------------------------------------------------------------------------
# Backups as the Go tool writes them for these lines


@dataclasses.dataclass
class Seg:
    id: int
    partition: int  # partition id; -1: collection-level (L0)
    rows: int = 0
    l0: bool = False
    vch: int = 0
    deltas: int = 0


# _default: one data segment; p1: three data segments on two channels and an L0 segment; two
# collection-level L0 segments.
DOCS = [Seg(1005, DEFAULT_P, rows=7), Seg(1001, P1, rows=10), Seg(1002, P1, rows=20), Seg(1003, P1, rows=5, vch=1),
        Seg(1004, P1, l0=True, deltas=2), Seg(1006, -1, l0=True, deltas=1), Seg(1007, -1, l0=True, deltas=1)]
FIELDS = [meta.FieldSchema(field_id=100, name="pk", is_primary_key=True, data_type=meta.DataType.Int64),
          meta.FieldSchema(field_id=101, name="vec", data_type=meta.DataType.FloatVector,
                           type_params=[meta.KeyValuePair("dim", "4")])]


def vchannel(i: int) -> str:
    return f"by-dev-rootcoord-dml_{i}_{COLL}v{i}"


def _segment(s: Seg, sv: int) -> tuple[meta.SegmentBackupInfo, dict[str, bytes]]:
    base = "files"
    sources: dict[str, bytes] = {}
    binlogs, deltalogs = [], []
    if not s.l0:
        for f in (0, 1, 100, 101):
            log, data = s.id * 100 + f, os.urandom(64 + f)
            src = f"{base}/insert_log/{COLL}/{s.partition}/{s.id}/{f}/{log}"
            sources[src] = data
            binlogs.append(meta.FieldBinlog(field_id=f, binlogs=[meta.Binlog(log_path=src, log_size=len(data), log_id=log)]))
    if s.deltas:
        fb = meta.FieldBinlog()
        for i in range(s.deltas):
            log, data = s.id * 100 + 90 + i, os.urandom(40)
            src = f"{base}/delta_log/{COLL}/{s.partition}/{s.id}/{log}"
            sources[src] = data
            fb.binlogs.append(meta.Binlog(log_path=src, log_size=len(data), log_id=log))
        deltalogs.append(fb)
    size = sum(len(v) for v in sources.values())
    return meta.SegmentBackupInfo(
        segment_id=s.id, collection_id=COLL, partition_id=s.partition, num_of_rows=s.rows, binlogs=binlogs,
        deltalogs=deltalogs, size=size, group_id=0 if s.partition == -1 else s.id, is_l0=s.l0,
        v_channel=vchannel(s.vch), storage_version=sv), sources


def write_backup(stores, name: str, profile: str, *, segments=DOCS, schema: meta.CollectionSchema | None = None,
                 rbac=None, db_properties=None, properties=(), snapshot: str = "") -> meta.BackupInfo:
    """A backup of ``db1.docs`` made on ``profile`` by the Go tool, written to the backup store."""
    sv = PROFILES[profile].storage_version
    bdir = meta.backup_dir(stores.backup_root, name)
    partitions = {DEFAULT_P: meta.PartitionBackupInfo(partition_id=DEFAULT_P, partition_name="_default",
                                                      collection_id=COLL),
                  P1: meta.PartitionBackupInfo(partition_id=P1, partition_name="p1", collection_id=COLL)}
    coll = meta.CollectionBackupInfo(
        id="c1", collection_id=COLL, db_name=DB, collection_name=NAME, shards_num=2, consistency_level=2,
        schema=schema or meta.CollectionSchema(name=NAME, fields=FIELDS), partition_backups=list(partitions.values()),
        virtual_channel_names=[vchannel(0), vchannel(1)], properties=list(properties))
    for s in segments:
        seg, sources = _segment(s, sv)
        (coll.l0_segments if s.partition == -1 else partitions[s.partition].segment_backups).append(seg)
        for src, key, _ in meta.segment_files(bdir, seg):
            stores.backup.write(key, sources[src])
    coll.size = sum(s.size for p in coll.partition_backups for s in p.segment_backups) + sum(
        s.size for s in coll.l0_segments)
    if snapshot:  # the Go tool's snapshot format: no segments, the bundle Milvus exported beside the meta
        coll.snapshot_backup = meta.SnapshotBackup(metadata_path=snapshot, total_files=1, total_bytes=2)
        stores.backup.write(f"{bdir}/{snapshot}", b"{}")
    info = meta.BackupInfo(id=f"id-{name}", name=name, milvus_version=PROFILES[profile].build_tags,
                           format=meta.FORMAT_SNAPSHOT if snapshot else meta.FORMAT_BINLOG,
                           collection_backups=[coll], size=coll.size, rbac_meta=rbac,
                           database_backups=[meta.DatabaseBackupInfo(db_name=DB, db_id=9,
                                                                     properties=list(db_properties or []))])
    files = meta.write_meta_files(info)
    for fname in [n for n in files if n != meta.BACKUP_META] + [meta.BACKUP_META]:
        stores.backup.write(meta.meta_key(bdir, fname), files[fname])
    return info


def expect_rows(contract, segments=DOCS) -> None:
    contract.state.rows_by_prefix = {f"insert_log/{COLL}/{s.partition}/{s.id}/": s.rows for s in segments if not s.l0}


@pytest.fixture
def setup(lines, seaweedfs, bucket, tmp_path):
    """(contract, stores, config path): the backup and Milvus in one bucket (no staging)."""
    path = tmp_path / "backup.yaml"
    path.write_text(contract_config(seaweedfs, bucket, lines))
    return lines, open_stores(load_config(path, env={})), path


def contract_config(seaweedfs, bucket: str, contract, **kw) -> str:
    """The sample config, Milvus being the contract server (gRPC, and its HTTP server as the REST API)."""
    text = config_yaml(seaweedfs, bucket, grpc_port=contract.grpc_port, **kw)
    return text.replace("milvus:\n", f"milvus:\n  rest:\n    endpoint: {contract.http_url}\n", 1)


def restore(contract, path: Path, name: str, **request) -> dict:
    """The library's restore (what ``mbackup restore`` runs), with ``request`` fields the CLI has no flag for."""
    cfg = load_config(path, env={})
    adapter = connect(endpoint(contract), milvus_adapters())
    try:
        return restore_backup(adapter, open_stores(cfg), RestoreRequest(name=name, **request), copy_settings(cfg)).summary()
    finally:
        adapter.close()


def mbackup(path: Path, *args: str) -> tuple[int, str, str]:
    return inprocess.run(*args, "--config", str(path))


def imports(contract) -> list[tuple]:
    """Each gRPC Import: (partition, files, options, the request's db_name, the dbname header)."""
    return [(c.request.partition_name, list(c.request.files), {kv.key: kv.value for kv in c.request.options},
             c.request.db_name, c.metadata.get("dbname")) for c in contract.calls("Import")]


def _data(sv: int) -> dict[str, str]:
    return {"skip_disk_quota_check": "true", "backup": "true", **({"storage_version": str(sv)} if sv else {})}


def _l0(sv: int) -> dict[str, str]:
    return {"skip_disk_quota_check": "true", "l0_import": "true", **({"storage_version": str(sv)} if sv else {})}


def _insert(bdir: str, p: int, s: int) -> str:
    return f"{bdir}/binlogs/insert_log/{COLL}/{p}/{s}/"


def _delta(bdir: str, p: int, s: int) -> str:
    return f"{bdir}/binlogs/delta_log/{COLL}/{p}/{s}/"


# --------------------------------------------------------------------------------------
# The requests, line by line


@pytest.mark.parametrize("profile", NEWER)
def test_each_segment_is_one_import_with_the_database_in_the_header_and_deletes_after_their_data(setup, profile):
    contract, stores, path = setup
    contract.reset(PROFILES[profile])
    contract.state.import_polls = 1  # every job answers Importing once before it completes
    write_backup(stores, "b1", profile)
    expect_rows(contract)
    summary = restore(contract, path, "b1")
    sv, bdir = PROFILES[profile].storage_version, "backup/b1"
    assert imports(contract) == [
        ("_default", [_insert(bdir, DEFAULT_P, 1005), ""], _data(sv), "", DB),
        ("p1", [_insert(bdir, P1, 1001), ""], _data(sv), "", DB),
        ("p1", [_insert(bdir, P1, 1002), ""], _data(sv), "", DB),
        ("p1", [_insert(bdir, P1, 1003), ""], _data(sv), "", DB),
        ("p1", [_delta(bdir, P1, 1004)], _l0(sv), "", DB),
        ("", [_delta(bdir, -1, 1006)], _l0(sv), "", DB),
        ("", [_delta(bdir, -1, 1007)], _l0(sv), "", DB),
    ]
    # Each L0 import starts only once the jobs before it have completed (their last poll).
    log = contract.calls()
    jobs = list(contract.state.imports.values())
    started = [i for i, c in enumerate(log) if c.method == "Import"]
    last_poll = {job.id: max(i for i, c in enumerate(log) if c.method == "GetImportState" and c.request.task == job.id)
                 for job in jobs}
    p1_data, p1_l0, coll_l0 = jobs[1:4], jobs[4], jobs[5:]
    assert all(started[4] > last_poll[j.id] for j in p1_data)
    assert all(started[i] > last_poll[j.id] for i in (5, 6) for j in [*jobs[:4], p1_l0])
    assert all(j.state == "Completed" for j in jobs) and coll_l0
    (restored,) = summary["collections"]
    assert (restored["target"], restored["rows_imported"], restored["import_jobs"]) == (f"{DB}.{NAME}", 42, 7)


@pytest.mark.parametrize("profile", NEWER)
def test_batched_imports_group_segments_by_channel_and_storage_version_within_the_limit(setup, profile):
    contract, stores, path = setup
    contract.reset(PROFILES[profile])
    segments = [*DOCS, Seg(1008, P1, rows=3), Seg(1009, -1, l0=True, deltas=1, vch=1)]
    write_backup(stores, "b2", profile, segments=segments)
    expect_rows(contract, segments)
    summary = restore(contract, path, "b2", batch_imports=True, max_segments_per_job=2)
    sv, bdir = PROFILES[profile].storage_version, "backup/b2"
    created = [c.request for c in contract.calls("POST /v2/vectordb/jobs/import/create")]
    assert contract.calls("Import") == []  # no gRPC import: every job went through REST
    several_l0 = profile in ("2.6.5", "2.6.11", "3.0.0")  # several L0 segments in one job from 2.6.5
    coll_l0 = [[[_delta(bdir, -1, 1006)], [_delta(bdir, -1, 1007)]]] if several_l0 else [
        [[_delta(bdir, -1, 1006)]], [[_delta(bdir, -1, 1007)]]]
    expected = [
        (("_default",), [[_insert(bdir, DEFAULT_P, 1005)]], _data(sv)),
        (("p1",), [[_insert(bdir, P1, 1001)], [_insert(bdir, P1, 1002)]], _data(sv)),  # channel 0, two at most
        (("p1",), [[_insert(bdir, P1, 1008)]], _data(sv)),
        (("p1",), [[_insert(bdir, P1, 1003)]], _data(sv)),  # channel 1
        (("p1",), [[_delta(bdir, P1, 1004)]], _l0(sv)),
        *[((), files, _l0(sv)) for files in coll_l0],
        ((), [[_delta(bdir, -1, 1009)]], _l0(sv)),  # channel 1
    ]
    assert [((b["partitionName"],) if "partitionName" in b else (), b["files"], b["options"]) for b in created] == expected
    assert {b["dbName"] for b in created} == {DB} and {b["collectionName"] for b in created} == {NAME}
    assert summary["collections"][0]["rows_imported"] == 45
    assert len(contract.calls("POST /v2/vectordb/jobs/import/describe")) >= len(created)


def test_a_batched_import_survives_a_poll_nothing_answered_and_fails_in_one_line_on_an_error(setup):
    contract, stores, path = setup
    segments = [Seg(1001, P1, rows=10)]
    write_backup(stores, "b2f", "2.6.11", segments=segments)
    expect_rows(contract, segments)
    contract.fail("POST /v2/vectordb/jobs/import/describe", http_status=503, reason="proxy restarting")
    assert restore(contract, path, "b2f", batch_imports=True)["collections"][0]["rows_imported"] == 10
    contract.reset(PROFILES["2.6.11"])
    write_backup(stores, "b2f", "2.6.11", segments=segments)
    contract.fail("POST /v2/vectordb/jobs/import/create", http_status=403, reason="denied", times=None)
    code, _, err = mbackup(path, "restore", "-n", "b2f", "-q", "--use_v2_restore")
    assert code == 2
    assert error_line(err) == (f"error: cannot start an import of partition 'p1' (segment 1001) into {DB}.{NAME}: the "
                               f"Milvus REST API at {contract.http_url} answered POST "
                               "/v2/vectordb/jobs/import/create with HTTP 403: denied")
    assert (DB, NAME) not in contract.state.collections


def test_a_backup_kept_elsewhere_is_staged_into_the_milvus_bucket_l0_segments_too_then_removed(
        lines, seaweedfs, bucket, tmp_path):
    contract = lines
    milvus_bucket = f"{bucket}-milvus"
    seaweedfs.create_bucket(milvus_bucket)
    try:
        path = tmp_path / "backup.yaml"
        path.write_text(contract_config(seaweedfs, bucket, contract, milvus_bucket=milvus_bucket))
        stores = open_stores(load_config(path, env={}))
        info = write_backup(stores, "st", "2.6.11")
        expect_rows(contract)
        restore(contract, path, "st", keep_temp_files=True)
        files = [f for c in contract.calls("Import") for f in c.request.files if f]
        assert len(files) == 7 and all(f.startswith("mbackup-restore-") and "/backup/st/binlogs/" in f for f in files)
        prefix = files[0].split("/", 1)[0]
        assert {f.split("/", 1)[0] for f in files} == {prefix}
        assert f"{prefix}/backup/st/binlogs/delta_log/{COLL}/-1/1006/" in files
        c = info.collection_backups[0]
        every = [key for s in [*(s for p in c.partition_backups for s in p.segment_backups), *c.l0_segments]
                 for _, key, _ in meta.segment_files("backup/st", s)]
        assert sorted(o.key for o in stores.milvus.list(prefix)) == sorted(f"{prefix}/{key}" for key in every)
    finally:
        seaweedfs.delete_bucket(milvus_bucket)


def test_milvus_2_3_keeps_one_import_per_partition_with_the_database_in_the_request(setup):
    """The 2.3 adapter, unchanged: what the live 2.3.5 suite proves against real Milvus."""
    contract, stores, path = setup
    contract.reset(PROFILES["2.3.5"])
    data = [s for s in DOCS if not s.l0]
    write_backup(stores, "b3", "2.3.5", segments=data)
    contract.state.rows_by_prefix = {f"insert_log/{COLL}/{DEFAULT_P}/": 7, f"insert_log/{COLL}/{P1}/": 35}
    restore(contract, path, "b3")
    assert imports(contract) == [
        ("_default", [f"backup/b3/binlogs/insert_log/{COLL}/{DEFAULT_P}/", ""], _data(0), DB, DB),
        ("p1", [f"backup/b3/binlogs/insert_log/{COLL}/{P1}/", ""], _data(0), DB, DB)]


# --------------------------------------------------------------------------------------
# What a user sees when the server answers badly


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("profile", ["2.4.23", "2.6.11"])
def test_a_failed_import_is_one_line_naming_the_collection_partition_and_reason_and_nothing_is_left(setup, profile):
    contract, stores, path = setup
    contract.reset(PROFILES[profile])
    segments = [Seg(1001, P1, rows=10), Seg(1004, P1, l0=True, deltas=1), Seg(1006, -1, l0=True, deltas=1)]
    write_backup(stores, "b4", profile, segments=segments)
    contract.state.failing_files = {"/insert_log/": "read binlog: column 101 is corrupted"}
    code, out, err = mbackup(path, "restore", "-n", "b4", "-q")
    assert code == 1 and out == ""  # failed; a re-run may succeed
    assert error_line(err) == (f"error: import of {DB}.{NAME} partition 'p1' (segment 1001) failed: read binlog: "
                               "column 101 is corrupted")
    assert (DB, NAME) not in contract.state.collections  # nothing was imported: the collection made is dropped
    assert [c.request.collection_name for c in contract.calls("DropCollection")] == [NAME]
    assert len(contract.calls("Import")) == 1  # no L0 import after failed data


def test_a_failed_import_after_others_wrote_rows_keeps_the_journal_to_resume(setup):
    contract, stores, path = setup
    write_backup(stores, "b4", "2.6.11")
    expect_rows(contract)
    contract.state.failing_files = {f"/{P1}/1002/": "read binlog: segment 1002 column 101 is corrupted"}
    code, _, err = mbackup(path, "restore", "-n", "b4", "-q")
    assert code == 1  # partly done: a re-run resumes
    assert error_line(err).startswith(
        f"error: import of {DB}.{NAME} partition 'p1' (segment 1002) failed: read binlog: segment 1002 column 101 is "
        "corrupted; the journal of this restore was kept at ")
    assert (DB, NAME) in contract.state.collections


def test_an_import_without_progress_times_out_in_one_line(setup):
    contract, stores, path = setup
    write_backup(stores, "b5", "2.6.11", segments=[Seg(1001, P1, rows=10)])
    contract.state.import_outcome = {"state": "Pending", "progress": 0, "reason": "", "rows": 0}
    with pytest.raises(RestoreError) as e:
        restore(contract, path, "b5", import_timeout=1.0)
    job = next(iter(contract.state.imports))
    # The job may still run: the journal is kept, so a re-run waits for it instead of importing twice.
    assert str(e.value).startswith(f"import of {DB}.{NAME} partition 'p1' (segment 1001) made no progress for 1s "
                                   f"(job {job}); check the Milvus logs; the journal of this restore was kept at ")


def test_the_same_restore_run_twice_at_once_is_refused_while_the_first_imports(setup):
    """Both would start the same import jobs, every row twice: the second run is refused in one
    line naming the first; once the first ends, the same command runs (and finds nothing to do)."""
    contract, stores, path = setup
    write_backup(stores, "b7", "2.6.11", segments=[Seg(1001, P1, rows=10)])
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    contract.state.import_outcome = {"state": "Pending", "progress": 0, "reason": "", "rows": 0}
    first: dict = {}
    runner = threading.Thread(target=lambda: first.update(result=restore(contract, path, "b7")))
    runner.start()
    deadline = time.monotonic() + 60
    while not contract.state.imports:
        assert runner.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    code, _, err = mbackup(path, "restore", "-n", "b7", "-q")
    assert code == 3  # held by the running restore: retry later
    assert re.fullmatch(r"error: another mbackup is working on the restore of backup 'b7' this command makes \(pid "
                        rf"{os.getpid()} on \S+ running mbackup restore -n b7, alive at [\d:]+\): wait for it; if it "
                        r"died, run again after \d+ s", error_line(err)), err
    # Another backup's journals are not this one's, whatever their names share.
    code, out, err = mbackup(path, "restore", "-n", "b", "--discard-journal")
    assert (code, out) == (0, f"no restore journal of backup 'b' in {stores.milvus.url}\n"), err
    code, _, err = mbackup(path, "restore", "-n", "b7", "--discard-journal")
    assert code == 3 and error_line(err).startswith("error: a restore of backup 'b7' is running with the journal ")
    job, = contract.state.imports.values()
    job.state, job.progress, job.rows = "Completed", 100, 10
    runner.join(60)
    assert first["result"]["collections"][0]["rows_imported"] == 10
    assert len(contract.calls("Import")) == 1  # the second run started none
    assert [o.key for o in stores.milvus.list("mbackup-restore-journal/")] == []  # journal and lock gone


def test_an_import_the_server_does_not_answer_is_one_line_and_a_transient_failure_is_retried(setup):
    contract, stores, path = setup
    write_backup(stores, "b6", "2.6.11", segments=[Seg(1001, P1, rows=10)])
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    contract.fail("GetImportState", code=grpc.StatusCode.UNAVAILABLE, reason="proxy restarting")
    assert restore(contract, path, "b6")["collections"][0]["rows_imported"] == 10
    contract.reset(PROFILES["2.6.11"])
    write_backup(stores, "b6", "2.6.11", segments=[Seg(1001, P1, rows=10)])
    contract.fail("Import", code=grpc.StatusCode.UNIMPLEMENTED, reason="Method not implemented: Import", times=None)
    code, _, err = mbackup(path, "restore", "-n", "b6", "-q")
    assert code == 2
    assert error_line(err).startswith(f"error: cannot start an import of partition 'p1' (segment 1001) into {DB}.{NAME} "
                                      f"on Milvus v2.6.11 at 127.0.0.1:{contract.grpc_port}: Method not implemented")
    assert (DB, NAME) not in contract.state.collections


def test_rows_an_import_did_not_write_fail_the_restore_naming_the_segment(setup):
    contract, stores, path = setup
    write_backup(stores, "b7", "2.6.11")
    expect_rows(contract)
    contract.state.rows_by_prefix[f"insert_log/{COLL}/{P1}/1002/"] = 13
    code, _, err = mbackup(path, "restore", "-n", "b7", "-q")
    assert code == 4  # the rows restored are not the backup's
    assert error_line(err).startswith(f"error: rows of {DB}.{NAME} partition 'p1' (segment 1002) differ from the "
                                      "backup: expected 20, Milvus imported 13; ")


def test_a_resumed_restore_imports_only_the_jobs_not_done(setup):
    """Per-segment jobs are journaled by key: a re-run after a failed L0 import does not import
    the data again (which would duplicate its rows)."""
    contract, stores, path = setup
    write_backup(stores, "b8", "2.6.11")
    expect_rows(contract)
    contract.state.failing_files = {"/-1/1007/": "l0 import conflicts with a running import (milvus#51177)"}
    code, _, err = mbackup(path, "restore", "-n", "b8", "-q")
    assert code == 1 and "collection-level deletes (L0 segment 1007) failed" in err and "the journal" in err
    first = len(contract.calls("Import"))
    contract.state.failing_files = {}
    code, out, err = mbackup(path, "restore", "-n", "b8", "-q", "--json")
    assert code == 0, err
    assert [c.request.files[0] for c in contract.calls("Import")[first:]] == [_delta("backup/b8", -1, 1007)]
    assert json.loads(out)["collections"][0]["rows_imported"] == 42


@pytest.mark.parametrize("method", ["CreateCollection", "Import"])
def test_sigterm_while_milvus_makes_something_the_rerun_neither_refuses_nor_imports_twice(setup, method):
    """SIGTERM lands while Milvus answers a request that made something (the collection, an
    import job; the contract holds the reply 3 s after doing it): the run records what was
    made before it stops, and the rerun takes it up. Before, the record went with the
    reply: the rerun refused the collection as existing, or started the import again (on
    a real Milvus, every row twice)."""
    contract, stores, path = setup
    contract.reset(PROFILES["2.3.5"])
    write_backup(stores, "b11", "2.3.5", segments=[Seg(1001, P1, rows=10)])
    contract.state.rows_by_prefix = {f"insert_log/{COLL}/{P1}/": 10}
    contract.fail(method, delay_after=3)
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "restore", "-n", "b11", "-q", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not contract.calls(method):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # done at the server, the reply held
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    code, out, err = mbackup(path, "restore", "-n", "b11", "-q", "--json")
    assert code == 0, err
    assert json.loads(out)["collections"][0]["rows_imported"] == 10
    assert len(contract.calls("Import")) == 1


@pytest.mark.parametrize("flag, profile, says", [
    ("--rbac", "2.3.5", "error: --rbac: Milvus v2.3.5 cannot restore users and roles: restore without --rbac"),
    ("--rbac", "2.4.9", "error: --rbac: Milvus v2.4.9 cannot restore users and roles: restore without --rbac"),
])
def test_what_a_line_cannot_restore_is_refused_before_anything_is_made(setup, flag, profile, says):
    contract, stores, path = setup
    contract.reset(PROFILES.get(profile) or PROFILES["2.4.23"].but(name=profile, build_tags=f"v{profile}"))
    write_backup(stores, "b9", "2.4.23", segments=[Seg(1001, P1, rows=10)])
    code, out, err = mbackup(path, "restore", "-n", "b9", flag)
    assert (code, out, error_line(err)) == (2, "", says)
    assert not contract.calls("CreateCollection", "CreateDatabase", "Import", "RestoreRBAC")


@pytest.mark.parametrize("flag", ["--use_v2_restore", "--batch-imports"])
def test_batched_imports_on_a_line_without_them_warn_and_restore_without_batching(setup, flag):
    """A script written for the Go tool's --use_v2_restore still runs against Milvus 2.3: batching
    changes how segments share import jobs, never what is restored."""
    contract, stores, path = setup
    contract.reset(PROFILES["2.3.5"])
    segments = [Seg(1001, P1, rows=10), Seg(1002, P1, rows=20)]
    write_backup(stores, "b10", "2.4.23", segments=segments)
    contract.state.rows_by_prefix = {f"insert_log/{COLL}/{P1}/": 30}  # 2.3 imports a partition per job
    code, out, err = mbackup(path, "restore", "-n", "b10", "-q", "--json", flag)
    assert code == 0, err
    assert [line for line in err.splitlines() if "batch" in line] == [
        "warning: --use-v2-restore (--batch-imports, mbackup.batchImports): Milvus v2.3.5 takes no batched imports: "
        "importing without batching"]
    assert json.loads(out)["collections"][0]["rows_imported"] == 30
    assert contract.calls("Import") and not contract.calls("POST /v2/vectordb/jobs/import/create")


# --------------------------------------------------------------------------------------
# The schema and the database


def _field_ids(contract) -> dict[str, int]:
    return {f.name: f.fieldID for f in contract.state.collections[(DB, NAME)].schema.fields}


def test_fields_added_after_creation_keep_their_ids_and_nullable_defaults_go_as_backed_up(setup):
    contract, stores, path = setup
    default = schema_pb2.ValueField(string_data="none")
    added = meta.FieldSchema(field_id=103, name="tag", data_type=meta.DataType.VarChar, nullable=True,
                             type_params=[meta.KeyValuePair("max_length", "16")],
                             default_value_base64=base64.b64encode(default.SerializeToString()).decode())
    schema = meta.CollectionSchema(name=NAME, enable_dynamic_field=True, fields=[*FIELDS, added])
    write_backup(stores, "s1", "2.6.11", schema=schema, segments=[Seg(1001, P1, rows=10)])
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    restore(contract, path, "s1")
    (create,) = contract.calls("CreateCollection")
    sent = schema_pb2.CollectionSchema.FromString(create.request.schema)
    assert [f.name for f in sent.fields] == ["pk", "vec"] and sent.enable_dynamic_field
    (add,) = contract.calls("AddCollectionField")
    field = schema_pb2.FieldSchema.FromString(add.request.schema)
    assert (field.name, field.nullable, field.default_value, add.metadata["dbname"]) == ("tag", True, default, DB)
    # The server made $meta 102 after the created fields; the added field got 103, as on the source.
    assert _field_ids(contract) == {"pk": 100, "vec": 101, "$meta": 102, "tag": 103}


def test_a_field_added_after_creation_on_a_line_without_add_field_leaves_nothing(setup):
    contract, stores, path = setup
    contract.reset(PROFILES["2.5.8"])  # AddCollectionField came with 2.6
    added = meta.FieldSchema(field_id=103, name="tag", data_type=meta.DataType.Int64, nullable=True)
    write_backup(stores, "s2", "2.5.8", schema=meta.CollectionSchema(name=NAME, enable_dynamic_field=True,
                                                                     fields=[*FIELDS, added]),
                 segments=[Seg(1001, P1, rows=10)])
    code, _, err = mbackup(path, "restore", "-n", "s2", "-q")
    assert code == 2
    assert error_line(err).startswith(f"error: cannot add field tag (id 103, added after {DB}.{NAME} was created) to "
                                      f"{DB}.{NAME} on Milvus v2.5.8")
    assert (DB, NAME) not in contract.state.collections and not contract.calls("Import")


BM25 = meta.FunctionSchema(name="bm25", id=1, type=meta.FunctionType.BM25, input_field_names=["text"],
                           input_field_ids=[102], output_field_names=["sparse"], output_field_ids=[103])
TEXT_FIELDS = [*FIELDS, meta.FieldSchema(field_id=102, name="text", data_type=meta.DataType.VarChar,
                                         type_params=[meta.KeyValuePair("max_length", "256"),
                                                      meta.KeyValuePair("enable_analyzer", "true")]),
               meta.FieldSchema(field_id=103, name="sparse", data_type=meta.DataType.SparseFloatVector,
                                is_function_output=True)]


@pytest.mark.parametrize("profile, own, relaxed, set_back", [
    ("2.6.11", None, True, True),  # from 2.6.8: created without the check, then the check is back
    ("2.6.11", "true", True, False),  # the collection had it off: it stays off
    ("2.6.5", None, False, False),  # before 2.6.8 the server has no such check
])
def test_functions_are_created_without_the_runtime_check_then_it_is_set_back(setup, profile, own, relaxed, set_back):
    contract, stores, path = setup
    contract.reset(PROFILES[profile])
    props = [meta.KeyValuePair("disable_func_runtime_check", own)] if own else []
    write_backup(stores, "s3", profile, schema=meta.CollectionSchema(name=NAME, fields=TEXT_FIELDS, functions=[BM25]),
                 segments=[Seg(1001, P1, rows=10)], properties=props)
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    restore(contract, path, "s3")
    (create,) = contract.calls("CreateCollection")
    sent = schema_pb2.CollectionSchema.FromString(create.request.schema)
    assert [(f.name, list(f.input_field_names), list(f.output_field_names)) for f in sent.functions] == [
        ("bm25", ["text"], ["sparse"])]
    assert [f.is_function_output for f in sent.fields] == [False, False, False, True]
    created_with = {kv.key: kv.value for kv in create.request.properties}.get("disable_func_runtime_check")
    assert created_with == ("true" if relaxed else own)
    alters = [{kv.key: kv.value for kv in c.request.properties} for c in contract.calls("AlterCollection")]
    assert alters == ([{"disable_func_runtime_check": "false"}] if set_back else [])
    assert contract.state.collections[(DB, NAME)].properties.get("disable_func_runtime_check") == (
        "false" if set_back else ("true" if relaxed else own))


def test_a_database_is_created_with_its_backed_up_properties_and_an_existing_one_is_left_alone(setup):
    contract, stores, path = setup
    props = [meta.KeyValuePair("database.replica.number", "2"), meta.KeyValuePair("database.max.collections", "9")]
    write_backup(stores, "d1", "2.6.11", segments=[Seg(1001, P1, rows=10)], db_properties=props)
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    restore(contract, path, "d1")
    assert contract.state.databases[DB].properties == {"database.replica.number": "2", "database.max.collections": "9"}
    contract.reset(PROFILES["2.6.11"])
    contract.state.add_database(DB, properties={"database.replica.number": "1"})
    write_backup(stores, "d1", "2.6.11", segments=[Seg(1001, P1, rows=10)], db_properties=props)
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    restore(contract, path, "d1")
    assert contract.state.databases[DB].properties == {"database.replica.number": "1"}
    assert not contract.calls("CreateDatabase")


# --------------------------------------------------------------------------------------
# Users and roles


RBAC = {
    "users": [{"user": "alice", "password": "hash-from-backup", "roles": [{"name": "reader"}]},
              {"user": "bob", "password": "hash-of-bob", "roles": [{"name": "reader"}]}],
    "roles": [{"name": "reader"}, {"name": "admin"}],
    "grants": [{"role": {"name": "reader"}, "object": {"name": "Collection"}, "object_name": "docs",
                "grantor": {"user": {"name": "root"}, "privilege": {"name": "Search"}}, "db_name": "db1"},
               {"role": {"name": "reader"}, "object": {"name": "Global"}, "object_name": "*",
                "grantor": {"user": {"name": "root"}, "privilege": {"name": "readers"}}, "db_name": "db1"}],
    "privilege_groups": [{"group_name": "readers", "privileges": [{"name": "Query"}, {"name": "Search"}]}],
}


@pytest.mark.parametrize("profile", ["2.4.23", "2.6.11"])
def test_rbac_is_restored_and_an_existing_users_password_is_never_replaced(setup, profile):
    contract, stores, path = setup
    contract.reset(PROFILES[profile])
    contract.state.rbac.users.add(user="alice", password="hash-on-target")
    contract.state.rbac.roles.add(name="admin")
    write_backup(stores, "r1", profile, segments=[Seg(1001, P1, rows=10)], rbac=RBAC)
    expect_rows(contract, [Seg(1001, P1, rows=10)])
    code, out, err = mbackup(path, "restore", "-n", "r1", "--rbac", "-q")
    assert code == 0, err
    assert "warning: users already on Milvus are left as they are, their passwords unchanged: alice\n" in err
    assert "hash-from-backup" not in out + err and "hash-of-bob" not in out + err
    groups = PROFILES[profile].privilege_groups
    assert f"restored users and roles: 1 users, 1 roles, {1 + groups} grants, {int(groups)} privilege groups\n" in out
    assert ("warning: privilege groups not restored, Milvus v2.4.23 has none (2.5 and newer do): readers; "
            "nor the 1 grants of them\n" in err) != groups
    (sent,) = contract.calls("RestoreRBAC")
    assert [u.user for u in sent.request.RBAC_meta.users] == ["bob"]
    assert {u.user: u.password for u in contract.state.rbac.users} == {"alice": "hash-on-target", "bob": "hash-of-bob"}
    assert [r.name for r in contract.state.rbac.roles] == ["admin", "reader"]
    assert [(g.role.name, g.object.name, g.object_name, g.grantor.privilege.name, g.db_name)
            for g in contract.state.rbac.grants] == [("reader", "Collection", "docs", "Search", "db1")] + (
        [("reader", "Global", "*", "readers", "db1")] if groups else [])
    # The Go tool sends privilege groups to 2.4 as well, which has nowhere to keep them.
    assert [(g.group_name, [p.name for p in g.privileges]) for g in contract.state.rbac.privilege_groups] == (
        [("readers", ["Query", "Search"])] if groups else [])
    # Everything already there: nothing is sent again.
    code, out, err = mbackup(path, "restore", "-n", "r1", "--rbac", "-q", "--suffix", "_again")
    assert code == 0, err
    assert contract.calls("RestoreRBAC")[1:] == []
    assert "alice, bob" in err


def test_rbac_in_a_shape_the_go_tool_never_writes_is_refused_in_one_line(setup):
    contract, stores, path = setup
    write_backup(stores, "r2", "2.6.11", segments=[Seg(1001, P1, rows=10)],
                 rbac={"users": [{"user": "eve", "password": 7}]})
    code, _, err = mbackup(path, "restore", "-n", "r2", "--rbac", "-q")
    assert (code, error_line(err)) == (2, "error: the backup's users and roles (rbac_meta, at password) are not in "
                                          "the Go tool's shape: check the backup with mbackup verify")
    assert not contract.calls("RestoreRBAC", "CreateCollection")



def test_every_rpc_refused_with_an_error_status_is_one_line_whatever_its_reply_type(lines):
    """The requests the adapters send read a reply's status wherever the protos put it: a bare
    Status (CreateCollection, AddCollectionField, RestoreRBAC...) or a reply's ``status`` field.
    Every method mbackup declares (its own protos, _proto/milvus.proto) is one of these."""
    from google.protobuf import message_factory

    from milvus_backup.milvus._proto import milvus_pb2 as ours
    from milvus_backup.milvus.adapters.rpc import RpcFailed

    adapter = connect(endpoint(lines), milvus_adapters())
    try:
        service = ours.DESCRIPTOR.services_by_name["MilvusService"]
        unary = [m for m in service.methods if not m.client_streaming and not m.server_streaming
                 and (m.output_type.full_name == "milvus.proto.common.Status" or "status" in m.output_type.fields_by_name)]
        # The two that are neither: the replicate stream, and GetReplicateInfo, whose reply has no
        # status (an error is a gRPC status; adapters/replicate.py reads it so).
        assert {m.name for m in service.methods} - {m.name for m in unary} == {"CreateReplicateStream",
                                                                               "GetReplicateInfo"}
        assert {"AddCollectionField", "AlterCollection", "RestoreRBAC", "Import"} <= {m.name for m in unary}
        for method in unary:
            lines.fail(method.name, status=65535, reason=f"refused {method.name}")
            request = message_factory.GetMessageClass(method.input_type)()
            with pytest.raises(RpcFailed) as e:
                adapter._call(method.name, request, DB, f"call {method.name}")
            assert (e.value.reason, str(e.value)) == (
                f"refused {method.name}", f"cannot call {method.name} on Milvus {adapter.version} at "
                                          f"127.0.0.1:{lines.grpc_port}: refused {method.name}")
    finally:
        adapter.close()


# --------------------------------------------------------------------------------------
