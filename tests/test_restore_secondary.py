"""``mbackup restore secondary``: a backup restored into a newly deployed CDC secondary
(Milvus 2.6+) through the replicate stream, as the Go tool's ``restore secondary`` does it.

The secondary is the contract server's (tests/milvus_contract/replicate.py): a FAKE of the
Milvus 2.6 wire contract, because no Milvus 2.6 runs on this machine. It decodes every
message the stream brings and applies it to its cluster state, so what these tests check is
what the secondary then holds: collections under the source's ids with their schemas,
partitions and indexes, import jobs naming the backup's segment directories, committed, load
states. The refusal of a target older than 2.6 is checked against the real Milvus 2.3.5 too.
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

import pytest
from pymilvus.grpc_gen import common_pb2

from milvus_backup.format import meta
from milvus_contract import PROFILES
from milvus_contract.replicate import replica
from sample_backup import config_yaml
from test_adapter_lines import backup, config_file, seed

pytest_plugins = ["milvus_contract.fixtures"]

SOURCE, TARGET = "by-dev-src", "dr-1"
LOADED = common_pb2.LoadState.LoadStateLoaded


@pytest.fixture
def stores(tmp_path, seaweedfs, bucket, contract):
    return made_stores(config_file(tmp_path, seaweedfs, bucket, contract))


def made_stores(config: Path):
    from milvus_backup.backup.catalog import open_stores
    from milvus_backup.config.settings import load_config

    return open_stores(load_config(str(config), env={}, cwd=config.parent))


def mbackup(config: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", "--config", str(config), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def secondary(name: str, *extra: str) -> list[str]:
    return ["restore", "secondary", "-n", name, "--source_cluster_id", SOURCE, "--target_cluster_id", TARGET, *extra]


def source_backup(contract, stores) -> meta.BackupInfo:
    """A backup the 2.6.11 contract made of db1.docs (loaded) and db1.docs1 (not): data
    segments, partition-level and collection-level L0, two partitions, an index each."""
    colls, _ = seed(contract, stores, collections=2)
    colls[0].load_state = LOADED
    result, _ = backup(contract, stores, strategy="bulk_flush")
    assert result.info.flush_all_msgs_base64 and result.info.control_channel_name
    return result.info


def new_secondary(contract, info: meta.BackupInfo, profile: str = "2.6.11"):
    """A newly deployed secondary: an empty cluster whose replicate configuration names it
    (with the backup's pchannels) and the source."""
    state = contract.reset(PROFILES[profile])
    replica(state).clusters = {SOURCE: list(info.physical_channel_names), TARGET: list(info.physical_channel_names)}
    return state


@pytest.fixture
def made(contract, stores, tmp_path, seaweedfs, bucket):
    info = source_backup(contract, stores)
    return info, config_file(tmp_path, seaweedfs, bucket, contract)


def test_the_secondary_holds_the_collections_with_the_sources_ids_data_and_load_states(contract, made, s3env):
    info, config = made
    state = new_secondary(contract, info)
    state.import_store = made_stores(config).milvus  # the backup is in Milvus's bucket: imported where it is
    r = mbackup(config, *secondary(info.name), env=s3env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "created databases: db1" or lines[0].startswith("created databases: ")
    assert any(line.startswith("restored db1.docs (id ") and ", loaded, " in line for line in lines)
    assert any(line.startswith("restored db1.docs1 (id ") and ", loaded" not in line for line in lines)
    assert lines[-1].startswith(f"restore secondary success: {info.name} into {TARGET} as {SOURCE}, ")

    flush_ticks = {int(common_pb2.ImmutableMessage.FromString(base64.b64decode(m)).properties["_tt"], 36)
                   for m in info.flush_all_msgs_base64.values()}
    assert state.databases["db1"].id == next(d.db_id for d in info.database_backups if d.db_name == "db1")
    assert state.databases["db1"].properties == {"owner": "team-a"}
    for c in info.collection_backups:
        got = state.collections[("db1", c.collection_name)]
        assert got.id == c.collection_id
        assert got.partitions == {p.partition_name: p.partition_id for p in c.partition_backups}
        assert [(f.fieldID, f.name, f.data_type) for f in got.schema.fields] == [
            (f.field_id, f.name, f.data_type) for f in c.schema.fields]
        assert [(i.index_name, i.indexID, i.field_name) for i in got.indexes] == [
            (i.index_name, i.index_id, i.field_name) for i in c.index_infos]
        assert got.load_state == (LOADED if c.load_state == meta.LOAD_STATE_LOADED else
                                  common_pb2.LoadState.LoadStateNotLoad)
        # The import jobs name exactly the backup's segment directories, each committed.
        jobs = [j for j in state.imports.values() if j.collection == c.collection_name]
        segments = [s for p in c.partition_backups for s in p.segment_backups] + list(c.l0_segments)
        bdir = meta.backup_dir("backup", info.name)
        assert sorted(tuple(paths) for j in jobs for paths in j.files) == sorted(
            tuple(meta.segment_import_dirs(bdir, s).files()) for s in segments)
        assert all(j.committed and j.observe()[0] == "Completed" for j in jobs)
        for j in jobs:
            assert j.options["auto_commit"] == "false" and j.options["skip_disk_quota_check"] == "true"
            assert int(j.options["end_ts"]) in flush_ticks and j.options["storage_version"] == "2"
            l0 = j.options.get("l0_import") == "true"
            assert l0 != (j.options.get("backup") == "true")
    # Streams opened in the source cluster's name; the target moved its checkpoint.
    r_ = replica(state)
    said = re.search(r", (\d+) messages sent and confirmed, in ", lines[-1])
    assert said and int(said.group(1)) == len(r_.received)  # each received once: no stream broke here
    assert r_.streams and {s["cluster-id"] for s in r_.streams} == {SOURCE}
    assert all(r_.checkpoints.get((SOURCE, p), 0) > 0 for p in info.physical_channel_names)


def test_a_backup_kept_in_another_bucket_is_staged_into_milvus_s_and_the_copies_removed(contract, tmp_path, seaweedfs,
                                                                                        bucket, s3env):
    milvus_bucket = f"{bucket[:40]}-mv"
    seaweedfs.create_bucket(milvus_bucket)
    try:
        config = tmp_path / "two.yaml"
        config.write_text(config_yaml(seaweedfs, bucket, grpc_port=contract.grpc_port, http_url=contract.http_url,
                                      milvus_bucket=milvus_bucket))
        stores = made_stores(config)
        info = source_backup(contract, stores)
        state = new_secondary(contract, info)
        state.import_store = stores.milvus  # an import naming a prefix with nothing there fails, as in Milvus
        r = mbackup(config, *secondary(info.name), env=s3env)
        assert r.returncode == 0, r.stderr
        jobs = list(state.imports.values())
        assert jobs and all(j.observe()[0] == "Completed" for j in jobs)
        prefixes = {p.split("/", 1)[0] for j in jobs for paths in j.files for p in paths}
        assert len(prefixes) == len(info.collection_backups) and all(p.startswith("mbackup-restore-") for p in prefixes)
        assert not [o for p in prefixes for o in stores.milvus.list(p)]  # removed once imported
    finally:
        seaweedfs.delete_bucket(milvus_bucket)


def test_a_second_restore_into_the_same_secondary_is_refused_before_sending(contract, made, s3env):
    info, config = made
    state = new_secondary(contract, info)
    assert mbackup(config, *secondary(info.name), env=s3env).returncode == 0
    received = len(replica(state).received)
    r = mbackup(config, *secondary(info.name), env=s3env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"error: {TARGET} already has a replicate checkpoint (") and r.stderr.count("\n") == 1
    assert "deploy a new secondary" in r.stderr
    assert len(replica(state).received) == received


def test_a_target_holding_a_collection_of_the_backup_is_refused(contract, made, s3env):
    info, config = made
    state = new_secondary(contract, info)
    from test_adapter_lines import docs_schema

    state.add_collection("db1", "docs1", docs_schema())
    r = mbackup(config, *secondary(info.name), env=s3env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("error: the target already holds db1.docs1: it is not a newly deployed secondary")
    assert replica(state).received == [] and replica(state).streams == []


@pytest.mark.parametrize("profile", ["2.5.8", "2.4.23"])
def test_a_target_older_than_2_6_is_refused_in_one_line(contract, made, s3env, profile):
    info, config = made
    state = new_secondary(contract, info, profile)
    r = mbackup(config, *secondary(info.name), env=s3env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (f"error: restore secondary needs Milvus 2.6.0 or newer (the CDC replicate stream); this "
                        f"server is v{profile}\n")
    assert not state.collections and not contract.calls("CreateReplicateStream", "GetReplicateInfo")


@pytest.mark.milvus
def test_the_real_milvus_2_3_5_is_refused_and_left_as_it_was(contract, made, s3env, milvus_clusters, seaweedfs,
                                                              bucket, tmp_path):
    from pymilvus import MilvusClient

    info, _ = made
    target = milvus_clusters.target
    config = tmp_path / "real.yaml"
    config.write_text(config_yaml(seaweedfs, bucket, grpc_port=target.port, milvus_bucket=target.bucket))
    mc = MilvusClient(uri=target.uri)
    try:
        before = {db: sorted(mc.list_collections(db_name=db) if db != "default" else mc.list_collections())
                  for db in mc.list_databases()}
        r = mbackup(config, *secondary(info.name), env=s3env)
        after = {db: sorted(mc.list_collections(db_name=db) if db != "default" else mc.list_collections())
                 for db in mc.list_databases()}
    finally:
        mc.close()
    assert (r.returncode, r.stdout) == (2, "")
    assert target.version.startswith("v2.3.5")  # as the server reports itself: v2.3.5-lite
    assert r.stderr == ("error: restore secondary needs Milvus 2.6.0 or newer (the CDC replicate stream); this server "
                        f"is {target.version}\n")
    assert after == before


@pytest.mark.parametrize("args, says", [
    (["restore", "secondary", "-n", "b1", "--target_cluster_id", "t"],
     "error: empty source cluster id: give --source_cluster_id, the id of the cluster the secondary replicates from"),
    (["restore", "secondary", "-n", "b1", "--source_cluster_id", "s"],
     "error: empty target cluster id: give --target_cluster_id, the id of the secondary"),
])
def test_missing_cluster_ids_are_usage_errors(tmp_path, args, says):
    r = subprocess.run([sys.executable, "-m", "milvus_backup", *args], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", says + "\n")


def test_an_unknown_backup_is_refused(contract, made, s3env):
    info, config = made
    new_secondary(contract, info)
    r = mbackup(config, *secondary("no_such_backup"), env=s3env)
    assert (r.returncode, r.stdout) == (2, "")
    assert "no_such_backup" in r.stderr and r.stderr.count("\n") == 1
    assert not contract.calls("CreateReplicateStream")


def test_a_backup_without_flush_all_messages_is_refused(contract, stores, tmp_path, seaweedfs, bucket, s3env):
    contract.reset(PROFILES["2.6.5"])  # before FlushAll: a backup with no flush-all messages
    seed(contract, stores)
    result, _ = backup(contract, stores)
    config = config_file(tmp_path, seaweedfs, bucket, contract)
    new_secondary(contract, result.info)
    r = mbackup(config, *secondary(result.info.name), env=s3env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith(f"error: backup {result.info.name!r} holds no flush-all messages and channels")
    assert "Milvus 2.6.11 or newer with --strategy bulk_flush" in r.stderr


def test_a_failed_import_fails_the_restore_and_a_rerun_is_refused(contract, made, s3env):
    info, config = made
    state = new_secondary(contract, info)
    docs = next(c for c in info.collection_backups if c.collection_name == "docs")
    state.failing_files = {f"insert_log/{docs.collection_id}/": "checksum mismatch in binlog"}
    r = mbackup(config, *secondary(info.name, "-q"), env=s3env)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr.startswith("error: import job ") and r.stderr.count("\n") == 1
    assert "failed: checksum mismatch in binlog; the secondary holds part of the backup" in r.stderr
    again = mbackup(config, *secondary(info.name), env=s3env)
    assert again.returncode == 2 and "already has a replicate checkpoint" in again.stderr


def test_a_broken_stream_is_opened_again_and_resends_what_was_not_confirmed(contract, made, s3env):
    info, config = made
    state = new_secondary(contract, info)
    replica(state).drop_after = 3
    r = mbackup(config, *secondary(info.name, "--json"), env=s3env)
    assert r.returncode == 0, r.stderr
    assert len(replica(state).streams) > len(info.physical_channel_names)
    summary = json.loads(r.stdout)
    assert [c["collection_id"] for c in summary["collections"]] == [c.collection_id for c in info.collection_backups]
    assert {(db, n) for db, n in state.collections} == {("db1", "docs"), ("db1", "docs1")}
    # Every import applied once: the resent messages were not applied twice.
    assert len(state.imports) == sum(c["import_jobs"] for c in summary["collections"])


def test_a_restore_stopped_mid_stream_exits_143_and_a_rerun_is_refused(contract, made, s3env):
    info, config = made
    state = new_secondary(contract, info)
    state.import_polls = 10_000  # the imports never finish
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "--config", str(config), *secondary(info.name)],
                            env=s3env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not state.imports and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.imports, "no import started"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and out == ""
    said = err.splitlines()[-1]
    assert re.fullmatch(r"interrupted: \d+ messages sent to the secondary, which holds part of the backup and will "
                        r"refuse a re-run\. A secondary restore runs once, .* deploy a new secondary and restore into "
                        r"that", said), said
    again = mbackup(config, *secondary(info.name), env=s3env)
    assert again.returncode == 2
    assert "already has a replicate checkpoint" in again.stderr or "already holds db1.docs" in again.stderr


def test_the_flag_walk_finds_restore_secondary_and_restore_keeps_its_own(tmp_path):
    env = dict(os.environ, COLUMNS="250")
    out = subprocess.run([sys.executable, "-m", "milvus_backup", "restore", "-h"], capture_output=True, text=True,
                         env=env, timeout=60).stdout
    assert "CDC secondary (Milvus 2.6+): mbackup restore secondary (see its -h)" in " ".join(out.split())
    r = subprocess.run([sys.executable, "-m", "milvus_backup", "restore", "-n", "x", "--suffix", "a b"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (2, "error: invalid --suffix 'a b': use letters, digits and _\n")


def test_the_server_runs_restore_secondary_as_the_go_server_does(contract, made):
    from server_client import Server

    info, config = made
    state = new_secondary(contract, info)
    s = Server(config)
    try:
        body = {"backup_name": info.name, "sourceClusterID": SOURCE, "targetClusterID": TARGET, "requestId": "sec1"}
        r = s.post("/api/v1/restore_secondary", body)
        assert (r.json["requestId"], r.json.get("code", 0), r.json["msg"]) == ("sec1", 0, "success"), r.json
        assert r.json["data"]["id"] == "sec1" and r.json["data"]["state_code"] == 2
        assert [t["target_collection_name"] for t in r.json["data"]["collection_restore_tasks"]] == [
            c.collection_name for c in info.collection_backups]
        assert s.get("/api/v1/get_restore?id=sec1").json["data"]["progress"] == 100
        listed = s.get("/api/v2/jobs?kind=restore_secondary").json["jobs"]
        assert [(j["id"], j["kind"], j["state"]) for j in listed] == [("sec1", "restore_secondary", "succeeded")]
        assert {name for _, name in state.collections} == {"docs", "docs1"}
        # The same secondary again: the job fails, and says why (code 3).
        again = s.post("/api/v1/restore_secondary", {**body, "requestId": "sec2"}).json
        assert again["code"] == 3 and "already has a replicate checkpoint" in again["msg"]
    finally:
        s.stop()


def test_a_target_that_cannot_say_its_checkpoint_is_unreachable_exit_3(contract, made, s3env):
    import grpc

    info, config = made
    state = new_secondary(contract, info)
    contract.fail("GetReplicateInfo", code=grpc.StatusCode.UNAVAILABLE, reason="connection refused", times=None)
    r = mbackup(config, *secondary(info.name), env=s3env)
    assert (r.returncode, r.stdout) == (3, "")
    assert r.stderr.startswith("error: cannot read the replicate checkpoint of by-dev-rootcoord-dml_0 on Milvus v2.6.11")
    assert r.stderr.rstrip().endswith("connection refused") and replica(state).streams == []


def test_a_secondary_that_drops_everything_fails_on_the_first_import_it_never_knew(contract, made, stores,
                                                                                   monkeypatch):
    """A used secondary whose configuration does not name it (so the checkpoint check is
    skipped, as the Go tool skips it): every message is behind its checkpoint and dropped. The
    first import job stays unknown, and the restore fails saying why, as the Go tool's does."""
    from milvus_backup.backup import secondary as flow
    from milvus_backup.transfer.copy import CopySettings
    from test_adapter_lines import adapter

    info, _ = made
    state = new_secondary(contract, info)
    r = replica(state)
    r.clusters = {}
    r.checkpoints = {(SOURCE, p): 1 << 62 for p in info.physical_channel_names}
    monkeypatch.setattr(flow, "UNKNOWN_JOB_S", 0.5)
    request = flow.SecondaryRequest(info.name, SOURCE, TARGET)
    with pytest.raises(flow.SecondaryFailed) as e:
        flow.restore_secondary(lambda: adapter(contract), stores, request, CopySettings(parallel=2))
    assert e.value.exit_code == 1
    assert str(e.value).startswith("the target does not know import job ")
    assert "after 0.5 s: the import message was never applied" in str(e.value)
    assert not state.collections and not state.imports  # it applied nothing


def test_a_target_that_refuses_the_stream_fails_at_once_saying_so(contract, made, s3env):
    import grpc

    info, config = made
    new_secondary(contract, info)
    contract.fail("CreateReplicateStream", code=grpc.StatusCode.PERMISSION_DENIED, reason="not a secondary of by-dev-src",
                  times=None)
    started = time.monotonic()
    r = mbackup(config, *secondary(info.name, "-q"), env=s3env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (f"error: Milvus v2.6.11 at 127.0.0.1:{contract.grpc_port} refused the replicate stream of "
                        "by-dev-rootcoord-dml_0: not a secondary of by-dev-src\n")
    assert time.monotonic() - started < 30  # not the minute an unknown import job is waited for
