"""Read-only commands change nothing, and ``--dry-run`` predicts the real run (issue #11, point 5).

Against the real SeaweedFS and the two real Milvus 2.3.5 clusters: the state a user could
see (buckets, the objects in each, every Milvus's collections) is taken before and after
each read-only command and must be equal; each dry run's plan is then compared with what
the real run does.
"""

from __future__ import annotations

import json
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

from mbackup_dev.devstack import backup_config
from milvus_data import client, error_line, mbackup, ok
from sample_backup import ROOT, Sample, config_yaml

COLL = "o11c_ro"
NAME = "o11c_ro_backup"
ROWS = 300


def buckets(seaweedfs) -> list[str]:
    resp = seaweedfs.request("GET")
    assert resp.status == 200, resp.body
    return sorted(el.text or "" for el in ET.fromstring(resp.body).iter() if el.tag.endswith("}Name"))


def store_state(seaweedfs, milvus_buckets: frozenset[str] = frozenset()) -> dict[str, list[tuple[str, str]]]:
    """Every bucket with its objects (key, etag). In a Milvus bucket only mbackup's own objects
    (probes, restore journals and staging, all named mbackup...) count: Milvus itself writes
    and garbage-collects there whenever it likes."""
    out = {}
    for b in buckets(seaweedfs):
        objects = [(key, etag or "") for key, _, etag in seaweedfs.store(b).list("")]
        out[b] = sorted(o for o in objects if b not in milvus_buckets or "mbackup" in o[0])
    return out


def milvus_state(stack) -> dict[str, dict[str, list[str]]]:
    out = {}
    for cluster in (stack.source, stack.target):
        dbs = client(cluster.uri).list_databases()
        out[cluster.uri] = {db: sorted(client(cluster.uri, db).list_collections()) for db in dbs}
    return out


# --------------------------------------------------------------------------------------
# Without Milvus: copy and delete


def test_copy_dry_run_to_a_missing_bucket_predicts_the_real_run(seaweedfs, s3env, bucket):
    src = seaweedfs.store(bucket)
    for i in range(5):
        src.put(f"data/{i}", b"x" * (i + 1))
    missing = f"{bucket}-new"
    src_url = f"s3://{bucket}/data?endpoint={seaweedfs.endpoint}"
    dst_url = f"s3://{missing}/copy?endpoint={seaweedfs.endpoint}"
    before = store_state(seaweedfs)
    try:
        dry = ok(mbackup(None, "copy", src_url, dst_url, "--dry-run", env=s3env))
        assert dry.stdout.splitlines() == [f"would create bucket for s3://{missing}/copy",
                                           "would copy 5 objects (15 B), skip 0 already at the destination"]
        plan = json.loads(ok(mbackup(None, "copy", src_url, dst_url, "--dry-run", "--json", env=s3env)).stdout)
        assert plan["bucket_to_create"] is True and plan["objects_to_copy"] == 5
        assert store_state(seaweedfs) == before  # no bucket made by either dry run
        real = json.loads(ok(mbackup(None, "copy", src_url, dst_url, "--json", env=s3env)).stdout)
        assert real["objects_copied"] == plan["objects_to_copy"] and real["bytes_copied"] == plan["bytes_to_copy"]
        assert sorted(k for k, _, _ in seaweedfs.store(missing).list("")) == [f"copy/{i}" for i in range(5)]
    finally:
        seaweedfs.delete_bucket(missing)


def test_delete_dry_run_names_what_the_real_delete_removes_and_removes_nothing(seaweedfs, s3env, bucket, tmp_path):
    Sample(seaweedfs.store(bucket), "doomed")
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    before = store_state(seaweedfs)
    dry = ok(mbackup(cfg, "delete", "-n", "doomed", "--dry-run", env=s3env))
    plan = json.loads(ok(mbackup(cfg, "delete", "-n", "doomed", "--dry-run", "--json", env=s3env)).stdout)
    assert store_state(seaweedfs) == before
    n = len(seaweedfs.list_keys(bucket, f"{ROOT}/doomed/"))
    assert dry.stdout == f"would delete backup doomed: {n} objects\n" and plan["objects_to_delete"] == n
    assert error_line(mbackup(cfg, "delete", "-n", "nothere", "--dry-run", env=s3env)).startswith(
        "error: no backup named 'nothere'")  # the real run's refusal
    real = json.loads(ok(mbackup(cfg, "delete", "-n", "doomed", "--json", env=s3env)).stdout)
    assert real["objects_deleted"] == n and not seaweedfs.list_keys(bucket, f"{ROOT}/doomed/")


def test_delete_dry_run_refuses_a_backup_another_run_holds_as_the_real_delete_does(seaweedfs, s3env, bucket,
                                                                                     tmp_path):
    Sample(seaweedfs.store(bucket), "busy")
    live = {"token": uuid.uuid4().hex, "pid": 4242, "host": "elsewhere", "heartbeat": time.time(), "command": "create"}
    seaweedfs.store(bucket).put(f"{ROOT}/busy/mbackup.lock", json.dumps(live).encode())
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    before = store_state(seaweedfs)
    dry = error_line(mbackup(cfg, "delete", "-n", "busy", "--dry-run", env=s3env), code=3)
    assert dry.startswith("error: another mbackup is working on backup 'busy' (pid 4242 on elsewhere running create")
    assert store_state(seaweedfs) == before
    assert error_line(mbackup(cfg, "delete", "-n", "busy", env=s3env), code=3) == dry
    assert store_state(seaweedfs) == before


# --------------------------------------------------------------------------------------
# With Milvus: check, create, restore and the other read-only commands


@pytest.fixture(scope="module")
def setup(milvus_clusters, seaweedfs, tmp_path_factory):
    stack = milvus_clusters
    mc = client(stack.source.uri)
    mc.create_collection(COLL, dimension=4)
    mc.insert(COLL, [{"id": i, "vector": [float(i), 0.0, 1.0, 2.0]} for i in range(ROWS)])
    backups = f"o11c-ro-{id(stack) % 10000}"
    seaweedfs.create_bucket(backups)
    d = tmp_path_factory.mktemp("o11c-ro")
    cfgs = {}
    for role, cluster in (("src", stack.source), ("dst", stack.target)):
        cfgs[role] = d / f"{role}.yaml"
        cfgs[role].write_text(backup_config(cluster, backup_bucket=backups, backup_root="ro"))
    yield stack, cfgs, backups
    for cluster in (stack.source, stack.target):
        for name in client(cluster.uri).list_collections():
            if name.startswith("o11c_"):
                client(cluster.uri).drop_collection(name)
    seaweedfs.delete_bucket(backups)


def snapshot(seaweedfs, stack) -> tuple[dict, dict]:
    return store_state(seaweedfs, frozenset({stack.source.bucket, stack.target.bucket})), milvus_state(stack)


@pytest.mark.milvus
def test_check_names_a_missing_bucket_and_creates_it_only_when_asked(setup, seaweedfs):
    stack, cfgs, _ = setup
    typo = "o11c-typo-bucket"
    before = snapshot(seaweedfs, stack)
    line = error_line(mbackup(cfgs["src"], "--set", f"backup.storage.bucketName={typo}", "check"))
    assert line == (f"error: bucket s3://{typo} does not exist: check backup.storage.bucketName, "
                    "or create it with mbackup check --create-buckets")
    assert snapshot(seaweedfs, stack) == before and typo not in buckets(seaweedfs)
    try:
        made = ok(mbackup(cfgs["src"], "--set", f"backup.storage.bucketName={typo}", "check", "--create-buckets"))
        assert f"created bucket s3://{typo}" in made.stdout and made.stdout.endswith("Success!\n")
        assert typo in buckets(seaweedfs)
    finally:
        seaweedfs.delete_bucket(typo)


@pytest.mark.milvus
def test_dry_runs_predict_create_and_restore_and_change_nothing(setup, seaweedfs):
    stack, cfgs, _ = setup
    before = snapshot(seaweedfs, stack)
    plan = json.loads(ok(mbackup(cfgs["src"], "create", "-n", NAME, "--filter", f"default.{COLL}", "--dry-run",
                                 "--json")).stdout)
    dry = ok(mbackup(cfgs["src"], "create", "-n", NAME, "--filter", f"default.{COLL}", "--dry-run"))
    assert dry.stdout.splitlines() == [f"would create backup {NAME!r} (strategy serial_flush, format binlog)",
                                       f"would back up default.{COLL}"]
    assert snapshot(seaweedfs, stack) == before
    created = json.loads(ok(mbackup(cfgs["src"], "create", "-n", NAME, "--filter", f"default.{COLL}", "--json")).stdout)
    assert plan["collections"] == created["collections"] == [f"default.{COLL}"] and plan["name"] == created["name"]
    # A taken name: the dry run refuses as the real run does.
    assert "already exists" in error_line(mbackup(cfgs["src"], "create", "-n", NAME, "--dry-run"))

    before = snapshot(seaweedfs, stack)
    restore = ("restore", "-n", NAME, "--suffix", "_r")
    dry = ok(mbackup(cfgs["dst"], *restore, "--dry-run"))
    assert dry.stdout == f"would restore default.{COLL} as default.{COLL}_r (create and import {ROWS:,} rows)\n"
    plan = json.loads(ok(mbackup(cfgs["dst"], *restore, "--dry-run", "--json")).stdout)
    assert snapshot(seaweedfs, stack) == before
    done = json.loads(ok(mbackup(cfgs["dst"], *restore, "--json")).stdout)
    assert [(c["source"], c["target"], c["rows_in_backup"]) for c in plan["collections"]] == \
        [(c["source"], c["target"], c["rows_imported"]) for c in done["collections"]]
    # Now the target exists: the dry run refuses as the real run would.
    assert "already exists" in error_line(mbackup(cfgs["dst"], *restore, "--dry-run"))
    replace = ok(mbackup(cfgs["dst"], *restore, "--drop-exist-collection", "--dry-run"))
    assert "(drop and create and import" in replace.stdout


TYPO = ["--set", "backup.storage.bucketName=o11c-typo"]


@pytest.mark.milvus
@pytest.mark.parametrize("args, code", [
    (["check"], 0), ([*TYPO, "check"], 2), (["--set", "milvus.storage.bucketName=o11c-typo", "check"], 2),
    (["list"], 0), ([*TYPO, "list"], 2), (["get", "-n", NAME], 0), (["verify", "-n", NAME, "--deep"], 0),
    (["config", "show"], 0), (["gc", "--dry-run", "--grace", "0s"], 0),
    (["create", "-n", "o11c_other", "--dry-run"], 0), ([*TYPO, "create", "-n", "o11c_other", "--dry-run"], 0),
    (["restore", "-n", NAME, "--suffix", "_x", "--dry-run"], 0),
    (["restore", "-n", NAME, "--discard-journal", "--dry-run"], 0), (["delete", "-n", NAME, "--dry-run"], 0),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_read_only_commands_change_nothing(setup, seaweedfs, args, code):
    stack, cfgs, backups = setup
    if not seaweedfs.list_keys(backups, f"ro/{NAME}/meta/backup_meta.json"):  # when run alone
        ok(mbackup(cfgs["src"], "create", "-n", NAME, "--filter", f"default.{COLL}"))
    before = snapshot(seaweedfs, stack)
    run = mbackup(cfgs["src"], *args)
    assert run.returncode == code, run.stderr
    assert snapshot(seaweedfs, stack) == before
