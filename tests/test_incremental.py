"""Incremental backups end to end on a real Milvus 2.3.5 and SeaweedFS (issue #12 points 1-3).

One collection, three states (flushed segments; then rows inserted and deleted; then again),
and one backup of each: a full one, an increment on it, an increment on that. The module
fixture makes them once; the tests read what they printed, what they read from Milvus's
bucket (through a counting proxy), and restore them.

Milvus 2.3 merges three small segments of one partition in the background, at a moment of its
choosing, and a merged segment is new to an increment. So no partition here ever holds three:
the base's segments are one per partition, each state adds one segment to one partition, and
partition "pc" is never written again, so every increment shares its binlogs for certain.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time

import pytest
from pymilvus import DataType, MilvusClient

from faultproxy import FaultProxy
from mbackup_dev.devstack import backup_config
from milvus_backup.backup.catalog import collection_segments
from milvus_backup.backup.pool import POOL_DIR, parse_pool_key
from milvus_backup.format import meta
from milvus_data import Truth, _truth, assert_same_rows, client, error_line, mbackup, ok, read_back

pytestmark = pytest.mark.milvus

BUCKET = "mbk-inc-backups"
ROOT = "inc"
COLL = "inc_c"
DIM = 8
LINE = re.compile(r"incremental backup on base (\w+): ([\d,]+) objects \(.*?\) new, to copy from Milvus; "
                  r"([\d,]+) objects \(.*?\) shared")


def _rows(start: int, n: int) -> list[dict]:
    return [{"id": i, "vec": [((i * 7 + d) % 97) / 97.0 for d in range(DIM)]} for i in range(start, start + n)]


PARTITIONS = ["_default", "pb", "pc"]


def _state(mc: MilvusClient, deleted: list[int]) -> Truth:
    return _truth(mc, "default", COLL, "id", "vec", DataType.FLOAT_VECTOR, list(deleted), PARTITIONS)


def _create_collection(mc: MilvusClient, name: str, dim: int = DIM) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    mc.create_collection(name, schema=schema, num_shards=1, consistency_level="Strong")
    index = mc.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    mc.create_index(name, index)


@pytest.fixture(scope="module")
def scenario(milvus_clusters, seaweedfs, tmp_path_factory):
    src, dst = milvus_clusters.source, milvus_clusters.target
    d = tmp_path_factory.mktemp("inc-config")
    configs = {}
    for role, cluster in (("src", src), ("dst", dst)):
        configs[role] = d / f"{role}.yaml"
        configs[role].write_text(backup_config(cluster, backup_bucket=BUCKET, backup_root=ROOT))
    proxy = FaultProxy(seaweedfs.endpoint, max_lifetime=1800).start()
    # Milvus's bucket read through a counting proxy: another endpoint, so every object is
    # streamed (GET) rather than copied server-side, and each GET is seen.
    port = proxy.endpoint.rsplit(":", 1)[1].rstrip("/")
    configs["counted"] = d / "counted.yaml"
    configs["counted"].write_text(backup_config(src, backup_bucket=BUCKET, backup_root=ROOT).replace(
        f"    port: {src.s3.s3_port}\n    bucketName: {src.bucket}", f"    port: {port}\n    bucketName: {src.bucket}"))
    mc = client(src.uri)
    _create_collection(mc, COLL)
    out: dict = {"configs": configs, "proxy": proxy, "cluster": src, "truth": {}, "stderr": {}, "gets": {}}
    try:
        for start, partition in zip((0, 1000, 2000), PARTITIONS, strict=True):  # one flushed segment per partition
            if partition != "_default":
                mc.create_partition(COLL, partition)
            mc.insert(COLL, _rows(start, 1000), partition_name=partition)
            mc.flush(COLL)
        deleted: list[int] = []
        out["truth"]["inc_full"] = _state(mc, deleted)
        ok(mbackup(configs["src"], "create", "-n", "inc_full", "--filter", COLL))
        states = (("inc_1", "counted", 3000, "_default", range(0, 1000, 10)),
                  ("inc_2", "src", 4000, "pb", range(1000, 1500, 10)))
        for name, config, start, partition, gone in states:
            mc.insert(COLL, _rows(start, 500), partition_name=partition)
            mc.delete(COLL, ids=list(gone))
            deleted += gone
            mc.flush(COLL)
            out["truth"][name] = _state(mc, deleted)
            proxy.seen.clear()
            out["stderr"][name] = ok(mbackup(configs[config], "create", "-n", name, "--filter", COLL,
                                             "--incremental")).stderr
            out["gets"][name] = {k.split(" ", 1)[1] for k, n in proxy.seen.items()
                                 if k.startswith(f"GET /{src.bucket}/") and n}
        yield out
    finally:
        proxy.stop()
        mc.drop_collection(COLL)
        mc.close()
        other = client(dst.uri)
        for suffix in ("_full_r", "_1_r", "_2_r", "_x_r", "_o_r"):
            if other.has_collection(COLL + suffix):
                other.drop_collection(COLL + suffix)
        other.close()
        seaweedfs.delete_bucket(BUCKET)


def _files(seaweedfs, name: str) -> dict[str, tuple[str, int]]:
    """rel -> (Milvus source key, size) of every binlog the backup's meta lists."""
    s = seaweedfs.store(BUCKET)
    info = meta.loads(meta.BackupInfo, s.get(f"{ROOT}/{name}/meta/{meta.FULL_META}"))
    bdir = f"{ROOT}/{name}"
    return {dst[len(bdir) + 1:]: (src, size) for c in info.collection_backups for seg in collection_segments(c)
            for src, dst, size in meta.segment_files(bdir, seg)}


def _manifest(seaweedfs, name: str) -> dict:
    return json.loads(seaweedfs.store(BUCKET).get(f"{ROOT}/{name}/meta/mbackup_manifest.json"))


def _stored(s, e: dict) -> bytes:
    """The bytes of a manifest entry: at the backup that lends it while there, else in the pool."""
    lent = f"{ROOT}/{e['lent']}/{parse_pool_key(e['pool'])[0]}" if "lent" in e else None
    return s.get(lent) if lent and s.head(lent) is not None else s.get(f"{ROOT}/{e['pool']}")


def _announced(stderr: str) -> tuple[str, int, int]:
    m = LINE.search(stderr)
    assert m, stderr
    return m[1], int(m[2].replace(",", "")), int(m[3].replace(",", ""))


def test_the_increment_names_as_new_exactly_the_binlogs_the_base_does_not_hold(scenario, seaweedfs):
    for name, base in (("inc_1", "inc_full"), ("inc_2", "inc_1")):
        mine, earlier = _files(seaweedfs, name), _files(seaweedfs, base)
        # New segments and new delete logs of old segments; the old segments' binlogs are shared.
        new = {rel for rel, (_, size) in mine.items() if earlier.get(rel, (None, -1))[1] != size}
        assert new
        assert len(mine) > len(new)  # at least partition pc's segment, never written again
        assert _announced(scenario["stderr"][name]) == (base, len(new), len(mine) - len(new))


def test_an_increment_reads_only_its_new_objects_from_milvus(scenario, seaweedfs, milvus_clusters):
    mine, earlier = _files(seaweedfs, "inc_1"), _files(seaweedfs, "inc_full")
    new_sources = {f"/{milvus_clusters.source.bucket}/{src}" for rel, (src, size) in mine.items()
                   if earlier.get(rel, (None, -1))[1] != size}
    assert scenario["gets"]["inc_1"] == new_sources


def test_every_object_lives_once_in_the_pool_or_the_full_base_and_the_dirs_hold_only_meta(scenario, seaweedfs):
    s = seaweedfs.store(BUCKET)
    for name in ("inc_1", "inc_2"):
        assert sorted(k for k, _, _ in s.list(f"{ROOT}/{name}/")) == sorted(
            f"{ROOT}/{name}/meta/{f}" for f in (*meta.META_FILES, "mbackup_manifest.json"))
    pooled = [parse_pool_key(k[len(ROOT) + 1:]) for k, _, _ in s.list(f"{ROOT}/{POOL_DIR}/")]
    rels = [p[0] for p in pooled]
    assert len(rels) == len(set(rels))
    # What the full base holds is borrowed where it is (lent), not copied into the pool: every
    # object of an increment the base holds with the same size (partition pc's at least).
    lent = {rel for name in ("inc_1", "inc_2") for rel, e in _manifest(seaweedfs, name)["objects"].items()
            if e.get("lent") == "inc_full"}
    full = _files(seaweedfs, "inc_full")
    held = {rel for name in ("inc_1", "inc_2") for rel, (_, size) in _files(seaweedfs, name).items()
            if full.get(rel, (None, -1))[1] == size}
    assert lent == held and lent
    assert not lent & set(rels)
    assert set(rels) | lent == set(_files(seaweedfs, "inc_1")) | set(_files(seaweedfs, "inc_2"))
    # list shows the backups, not the pool; get reads an increment like any backup.
    listed = ok(mbackup(scenario["configs"]["src"], "list")).stdout
    assert "inc_1" in listed and "inc_2" in listed and POOL_DIR not in listed
    assert "backup inc_2 (" in ok(mbackup(scenario["configs"]["src"], "get", "-n", "inc_2")).stdout


def test_deep_verify_passes_and_a_damaged_shared_object_fails_every_backup_holding_it(scenario, seaweedfs):
    config = scenario["configs"]["src"]
    # An increment of the unchanged collection shares every object of inc_2 but the ones Milvus
    # compacted since.
    ok(mbackup(config, "create", "-n", "inc_2b", "--filter", COLL, "--incremental", "--base", "inc_2"))
    for name in ("inc_1", "inc_2", "inc_2b"):
        ok(mbackup(config, "verify", "-n", name, "--deep"))
    s = seaweedfs.store(BUCKET)
    both = set(_files(seaweedfs, "inc_2")) & set(_files(seaweedfs, "inc_2b"))
    key = next(k for k, _, _ in s.list(f"{ROOT}/{POOL_DIR}/binlogs/insert_log/")
               if parse_pool_key(k[len(ROOT) + 1:])[0] in both)
    original = s.get(key)
    s.put(key, bytes(b ^ 0xFF for b in original[:1]) + original[1:])
    try:
        for name in ("inc_2", "inc_2b"):
            result = mbackup(config, "verify", "-n", name, "--deep")
            assert result.returncode == 4, result.stderr
            assert f"(the shared object {key[len(ROOT) + 1:]})" in result.stdout + result.stderr
    finally:
        s.put(key, original)


def test_each_backup_restores_the_rows_it_was_taken_with(scenario, milvus_clusters):
    dst = milvus_clusters.target
    for name in ("inc_full", "inc_2"):
        suffix = name.removeprefix("inc") + "_r"
        ok(mbackup(scenario["configs"]["dst"], "restore", "-n", name, "--suffix", suffix))
        assert_same_rows(read_back(dst.uri, "default", COLL + suffix, scenario["truth"][name]), scenario["truth"][name])


def test_export_writes_a_full_backup_in_the_go_layout_that_restores(scenario, seaweedfs, milvus_clusters, tmp_path):
    out = ok(mbackup(scenario["configs"]["src"], "export", "-n", "inc_2", "--to-root", "inc_export")).stdout
    assert out.startswith(f"export backup success: inc_2 -> s3://{BUCKET}/inc_export/inc_2: ")
    s = seaweedfs.store(BUCKET)
    exported = {k[len("inc_export/inc_2/"):] for k, _, _ in s.list("inc_export/inc_2/")}
    full = {k[len(f"{ROOT}/inc_full/"):] for k, _, _ in s.list(f"{ROOT}/inc_full/")}
    # A full backup's tree: every binlog under the dir at its Go-layout key, the same meta files.
    assert exported == set(_files(seaweedfs, "inc_2")) | {k for k in full if not k.startswith("binlogs/")}
    for f in meta.META_FILES:
        assert s.get(f"inc_export/inc_2/meta/{f}") == s.get(f"{ROOT}/inc_2/meta/{f}")
    manifest = json.loads(s.get("inc_export/inc_2/meta/mbackup_manifest.json"))
    source = json.loads(s.get(f"{ROOT}/inc_2/meta/mbackup_manifest.json"))
    assert manifest["version"] == 1 and set(manifest) == set(json.loads(s.get(f"{ROOT}/inc_full/meta/mbackup_manifest.json")))
    assert manifest["objects"] == {rel: {"size": e["size"], "checksum": e["checksum"]} for rel, e in source["objects"].items()}
    _verifies_and_restores(scenario, milvus_clusters, tmp_path, BUCKET, "inc_export", "_x_r")


def _verifies_and_restores(scenario, milvus_clusters, tmp_path, bucket: str, root: str, suffix: str) -> None:
    """inc_2 exported under ``root`` of ``bucket`` passes verify --deep there and restores its rows."""
    config = tmp_path / "export.yaml"
    config.write_text(backup_config(milvus_clusters.target, backup_bucket=bucket, backup_root=root))
    ok(mbackup(config, "verify", "-n", "inc_2", "--deep"))
    ok(mbackup(config, "restore", "-n", "inc_2", "--suffix", suffix))
    truth = scenario["truth"]["inc_2"]
    assert_same_rows(read_back(milvus_clusters.target.uri, "default", COLL + suffix, truth), truth)


@pytest.mark.parametrize(("args", "says"), [
    (["-n", "inc_2"], "export of 'inc_2' would overwrite it: give another --output name or --to-root"),
    (["-n", "inc_2", "--to-root", "inc_export"], f"s3://{BUCKET}/inc_export/inc_2 already holds a backup"),
    (["-n", "nope", "--to-root", "inc_export"], "no backup named 'nope'"),
    (["-n", "inc_2", "--to-root", f"{ROOT}/inc_1"], f"s3://{BUCKET}/{ROOT}/inc_1/inc_2 is inside 'inc_1'"),
    (["-n", "inc_2", "-o", "bad-name", "--to-root", "x"], "invalid backup name 'bad-name'"),
])
def test_export_refuses_what_it_cannot_do_and_writes_nothing(scenario, seaweedfs, args, says):
    before = seaweedfs.store(BUCKET).list("")
    assert says in error_line(mbackup(scenario["configs"]["src"], "export", *args), 2)
    assert seaweedfs.store(BUCKET).list("") == before


def test_export_of_a_damaged_shared_object_exits_4_and_leaves_no_backup(scenario, seaweedfs):
    s = seaweedfs.store(BUCKET)
    key = next(k for k, _, _ in s.list(f"{ROOT}/{POOL_DIR}/binlogs/insert_log/")
               if parse_pool_key(k[len(ROOT) + 1:])[0] in _files(seaweedfs, "inc_2"))
    original = s.get(key)
    s.put(key, bytes(b ^ 0xFF for b in original[:1]) + original[1:])
    try:
        result = mbackup(scenario["configs"]["src"], "export", "-n", "inc_2", "--to-root", "inc_damaged")
        assert "do not match the checksums it recorded" in error_line(result, 4)
        assert s.head(f"inc_damaged/inc_2/meta/{meta.BACKUP_META}") is None
    finally:
        s.put(key, original)


OFFSITE = "mbk-inc-offsite"  # a second bucket, made by the export itself


def _offsite_config(scenario, seaweedfs, tmp_path, endpoint: str | None = None):
    """The source's config with a profile for the second bucket, credentials in the config."""
    config = tmp_path / "offsite.yaml"
    config.write_text(scenario["configs"]["src"].read_text() + (
        f"mbackup:\n  profiles:\n    offsite:\n      url: s3://{OFFSITE}/exp?endpoint={endpoint or seaweedfs.endpoint}\n"
        f"      accessKeyID: {seaweedfs.access_key}\n      secretAccessKey: {seaweedfs.secret_key}\n"))
    return config


def _assert_exported(seaweedfs, read, listed: set[str]) -> None:
    """Every binlog of inc_2 byte-equal to the object inc_2 holds (in the pool or its lender), the meta files
    the source's, and a version 1 manifest listing each binlog with its checksum."""
    s = seaweedfs.store(BUCKET)
    source = json.loads(s.get(f"{ROOT}/inc_2/meta/mbackup_manifest.json"))
    metas = {f"meta/{f}" for f in (*meta.META_FILES, "mbackup_manifest.json")}
    assert listed == set(_files(seaweedfs, "inc_2")) | metas
    for rel, e in source["objects"].items():
        assert read(rel) == _stored(s, e), rel
    for f in meta.META_FILES:
        assert read(f"meta/{f}") == s.get(f"{ROOT}/inc_2/meta/{f}")
    manifest = json.loads(read("meta/mbackup_manifest.json"))
    assert manifest["version"] == 1
    assert manifest["objects"] == {rel: {"size": e["size"], "checksum": e["checksum"]} for rel, e in source["objects"].items()}


def test_export_to_a_local_folder_is_a_backup_that_verifies_there(scenario, seaweedfs, milvus_clusters, tmp_path):
    folder = tmp_path / "offline"
    out = ok(mbackup(scenario["configs"]["src"], "export", "-n", "inc_2", "--to", str(folder))).stdout
    assert out.startswith(f"export backup success: inc_2 -> file://{folder}/inc_2: "), out
    base = folder / "inc_2"
    _assert_exported(seaweedfs, lambda rel: (base / rel).read_bytes(),
                     {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()})
    config = tmp_path / "local.yaml"
    text = scenario["configs"]["src"].read_text()
    config.write_text(text[:text.index("backup:\n")] + f"backup:\n  storage:\n    provider: local\n    rootPath: {folder}\n")
    ok(mbackup(config, "verify", "-n", "inc_2", "--deep"))


def test_export_to_another_bucket_is_a_backup_that_verifies_and_restores(scenario, seaweedfs, milvus_clusters,
                                                                         tmp_path):
    try:
        out = ok(mbackup(_offsite_config(scenario, seaweedfs, tmp_path), "export", "-n", "inc_2", "--to",
                         "@offsite")).stdout
        assert out.startswith(f"export backup success: inc_2 -> s3://{OFFSITE}/exp/inc_2: "), out
        s = seaweedfs.store(OFFSITE)
        _assert_exported(seaweedfs, lambda rel: s.get(f"exp/inc_2/{rel}"),
                         {k[len("exp/inc_2/"):] for k, _, _ in s.list("exp/inc_2/")})
        _verifies_and_restores(scenario, milvus_clusters, tmp_path, OFFSITE, "exp", "_o_r")
    finally:
        seaweedfs.delete_bucket(OFFSITE)


@pytest.mark.parametrize(("args", "says"), [
    (["-n", "inc_2", "--to", "@offsite", "--to-root", "x"], "--to and --to-root both say where to export: give one"),
    (["-n", "nope", "--to", "@offsite"], "no backup named 'nope'"),
    (["-n", "inc_2", "--to", "@root"], f"--to s3://{BUCKET}/{ROOT} is the backup root itself: to export within it, "
                                       "drop --to and give another name with -o"),
    (["-n", "inc_2", "--to", "@root/inc_full"], f"s3://{BUCKET}/{ROOT}/inc_full/inc_2 is inside 'inc_full' of the "
                                                f"backup root s3://{BUCKET}/{ROOT}, which owns that folder"),
    (["-n", "inc_2", "--to", "@root/.mbackup-pool/x"], "is inside '.mbackup-pool' of the backup root"),
    (["-n", "inc_2", "--to", "@offsite/taken"], f"s3://{OFFSITE}/exp/taken/inc_2 already holds a backup: "
                                                "give another --output name or --to destination, or delete it"),
])
def test_export_to_a_url_refuses_what_it_cannot_do_and_writes_nothing(scenario, seaweedfs, tmp_path, args, says):
    config = _offsite_config(scenario, seaweedfs, tmp_path)
    config.write_text(config.read_text() + f"    root:\n      url: s3://{BUCKET}/{ROOT}?endpoint={seaweedfs.endpoint}\n"
                      f"      accessKeyID: {seaweedfs.access_key}\n      secretAccessKey: {seaweedfs.secret_key}\n")
    seaweedfs.create_bucket(OFFSITE)
    try:
        ok(mbackup(config, "export", "-n", "inc_full", "-o", "inc_2", "--to", "@offsite/taken"))
        before = {b: seaweedfs.store(b).list("") for b in (BUCKET, OFFSITE)}
        assert says in error_line(mbackup(config, "export", *args), 2)
        assert {b: seaweedfs.store(b).list("") for b in (BUCKET, OFFSITE)} == before
        # -o naming a free backup there is not refused
        ok(mbackup(config, "export", "-n", "inc_full", "-o", "inc_free", "--to", "@offsite/taken"))
    finally:
        seaweedfs.delete_bucket(OFFSITE)


def test_export_dry_run_says_what_it_would_copy_and_writes_nothing(scenario, seaweedfs, tmp_path):
    config, files = _offsite_config(scenario, seaweedfs, tmp_path), _files(seaweedfs, "inc_2")
    args = ["export", "-n", "inc_2", "--to", "@offsite", "--dry-run"]
    lines = ok(mbackup(config, *args)).stdout.splitlines()
    assert lines[0] == f"would create bucket for s3://{OFFSITE}/exp"
    assert lines[1].startswith(f"would export backup inc_2 to s3://{OFFSITE}/exp/inc_2: copy {len(files):,} objects ")
    assert json.loads(ok(mbackup(config, *args, "--json")).stdout) == {
        "dry_run": True, "name": "inc_2", "url": f"s3://{OFFSITE}/exp/inc_2", "bucket_to_create": True,
        "objects_to_copy": len(files), "bytes_to_copy": sum(size for _, size in files.values()), "objects_present": 0}
    assert seaweedfs.request("HEAD", OFFSITE).status == 404  # not even the bucket


def test_a_killed_export_to_another_bucket_is_not_a_backup_and_the_same_export_finishes_it(scenario, seaweedfs,
                                                                                            tmp_path):
    """kill -9 while the binlogs are written to the other bucket (through a stalling proxy)."""
    proxy = scenario["proxy"]
    config = _offsite_config(scenario, seaweedfs, tmp_path, endpoint=proxy.endpoint.rstrip("/"))
    args = ["export", "-n", "inc_2", "--to", "@offsite"]
    proxy.stats["stalled"] = 0
    proxy.stall(120, methods="PUT", paths=f"/{OFFSITE}/exp/inc_2/binlogs/")
    run = subprocess.Popen([sys.executable, "-m", "milvus_backup", "--config", str(config), *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            deadline = time.monotonic() + 90
            while not proxy.stats["stalled"] and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proxy.stats["stalled"], f"the export never wrote a binlog: {run.stderr.read() if run.poll() is not None else ''}"
        finally:
            run.kill()
            _, err = run.communicate(timeout=30)
            proxy.passthrough()
            proxy.stats["stalled"] = 0  # the proxy is the module's: later tests wait for their own stall
        s = seaweedfs.store(OFFSITE)
        assert s.head("exp/inc_2/mbackup_in_progress.json") is not None, err
        assert s.head(f"exp/inc_2/meta/{meta.BACKUP_META}") is None
        ok(mbackup(config, *args))
        assert s.head("exp/inc_2/mbackup_in_progress.json") is None
        verify = tmp_path / "verify.yaml"
        verify.write_text(backup_config(scenario["cluster"], backup_bucket=OFFSITE, backup_root="exp"))
        ok(mbackup(verify, "verify", "-n", "inc_2", "--deep"))
    finally:
        seaweedfs.delete_bucket(OFFSITE)


def test_an_increment_restores_after_its_base_is_deleted(scenario, milvus_clusters, seaweedfs):
    config = scenario["configs"]["dst"]
    ok(mbackup(config, "delete", "-n", "inc_full"))
    assert seaweedfs.store(BUCKET).list(f"{ROOT}/{POOL_DIR}/")  # the pool is prune's, not delete's
    ok(mbackup(config, "restore", "-n", "inc_1", "--suffix", "_1_r"))
    truth = scenario["truth"]["inc_1"]
    assert_same_rows(read_back(milvus_clusters.target.uri, "default", COLL + "_1_r", truth), truth)
    ok(mbackup(config, "verify", "-n", "inc_2", "--deep"))


def test_dry_run_says_what_an_increment_would_copy_and_writes_nothing(scenario, seaweedfs):
    out = ok(mbackup(scenario["configs"]["src"], "create", "-n", "inc_dry", "--filter", COLL, "--incremental",
                     "--dry-run")).stdout
    # (Milvus may have compacted segments since inc_2: what is new is not asserted here.)
    assert re.search(r"would make an incremental backup on base inc_2b: [\d,]+ objects \(.*?\) new, to copy from "
                     r"Milvus; [\d,]+ objects \(.*?\) shared", out), out
    assert not seaweedfs.store(BUCKET).list(f"{ROOT}/inc_dry/")


@pytest.mark.parametrize(("args", "says"), [
    (["--incremental", "--base", "nope"], "base backup 'nope' cannot be used: no backup named 'nope'"),
    (["--base", "inc_2"], "--base inc_2 names the base of an incremental backup: add --incremental"),
    (["--incremental", "--base", "inc_bad"], "--base inc_bad names the backup being created"),
])
def test_a_base_that_cannot_be_one_is_refused_and_nothing_is_made(scenario, seaweedfs, args, says):
    result = mbackup(scenario["configs"]["src"], "create", "-n", "inc_bad", "--filter", COLL, *args)
    assert says in error_line(result, 2)
    assert not seaweedfs.store(BUCKET).list(f"{ROOT}/inc_bad/")


def test_an_incomplete_base_and_a_base_of_other_collections_are_refused(scenario, seaweedfs, milvus_clusters):
    config = scenario["configs"]["src"]
    s = seaweedfs.store(BUCKET)
    s.put(f"{ROOT}/inc_half/mbackup_in_progress.json", b'{"id": "x", "name": "inc_half"}')
    mc = client(milvus_clusters.source.uri)
    mc.create_collection("inc_other", dimension=DIM)
    try:
        result = mbackup(config, "create", "-n", "inc_bad", "--filter", COLL, "--incremental", "--base", "inc_half")
        assert "base backup 'inc_half' cannot be used: backup 'inc_half' is incomplete" in error_line(result, 2)
        ok(mbackup(config, "create", "-n", "inc_other_meta", "--filter", "inc_other", "--strategy", "meta_only"))
        result = mbackup(config, "create", "-n", "inc_bad", "--filter", COLL, "--incremental", "--base", "inc_other_meta")
        assert ("base backup 'inc_other_meta' holds none of the collections to back up (default.inc_c): "
                "name a backup of them") in error_line(result, 2)
        assert not s.list(f"{ROOT}/inc_bad/")
    finally:
        s.delete(f"{ROOT}/inc_half/mbackup_in_progress.json")
        mc.drop_collection("inc_other")
        mc.close()


def test_a_killed_increment_listed_its_pool_objects_and_the_same_create_finishes_it(scenario, seaweedfs,
                                                                                   milvus_clusters):
    """Last: it changes the collection. kill -9 while the new delete logs are read from Milvus
    (deletes only: no new segment for Milvus to compact the shared ones with)."""
    # Its base, taken just before: Milvus compacts small segments in the background, and
    # what it compacted since inc_2b would be new, not shared.
    ok(mbackup(scenario["configs"]["src"], "create", "-n", "inc_3a", "--filter", COLL, "--incremental"))
    mc = client(milvus_clusters.source.uri)
    mc.delete(COLL, ids=list(range(2000, 2100, 10)))
    mc.flush(COLL)
    mc.close()
    proxy, args = scenario["proxy"], ["create", "-n", "inc_3", "--filter", COLL, "--incremental"]
    src = milvus_clusters.source  # object GETs only: a LIST names the prefix in its query
    proxy.stall(120, methods="GET", paths=f"/{src.bucket}/{src.root_path}/delta_log/")
    run = subprocess.Popen([sys.executable, "-m", "milvus_backup", "--config", str(scenario["configs"]["counted"]),
                            *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not proxy.stats["stalled"] and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.stats["stalled"], "the create never read a delete log"
    finally:
        run.kill()
        run.communicate(timeout=30)
        proxy.passthrough()
    s = seaweedfs.store(BUCKET)
    marker = json.loads(s.get(f"{ROOT}/inc_3/mbackup_in_progress.json"))
    pooled = {k[len(ROOT) + 1:] for k, _, _ in s.list(f"{ROOT}/{POOL_DIR}/")}
    # The objects it shares were listed for prune before anything was copied, and are in the pool.
    assert marker["pool_refs"] and set(marker["pool_refs"]) <= pooled
    ok(mbackup(scenario["configs"]["src"], *args))
    assert s.head(f"{ROOT}/inc_3/mbackup_in_progress.json") is None
    ok(mbackup(scenario["configs"]["src"], "verify", "-n", "inc_3", "--deep"))


def _until(done, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"waited {seconds:.0f} s for {what}"
        time.sleep(0.1)


def test_a_prune_deleting_objects_a_running_increment_reuses_is_waited_for(scenario, seaweedfs, milvus_clusters,
                                                                          tmp_path):
    """forget/prune while a create runs. A backup of another collection, deleted: its pool
    objects are unreferenced, and the next increment of that collection (no base: every binlog
    new) finds each of them in the pool already and reuses it. Prune's deletes are held in a
    proxy while that create runs: it must not complete on objects about to go."""
    src, name = milvus_clusters.source, "inc_race_c"
    mc = client(src.uri)
    _create_collection(mc, name)
    mc.insert(name, _rows(0, 1000))
    mc.flush(name)
    truth = _truth(mc, "default", name, "id", "vec", DataType.FLOAT_VECTOR, [], ["_default"])
    config = scenario["configs"]["src"]
    try:
        ok(mbackup(config, "create", "-n", "race_1", "--filter", name, "--incremental"))
        ok(mbackup(config, "delete", "-n", "race_1"))
        time.sleep(2.5)  # older than prune's grace period: twice the 1 s lease it runs with
        with FaultProxy(seaweedfs.endpoint, max_lifetime=300) as proxy:
            via = tmp_path / "via-proxy.yaml"
            via.write_text(config.read_text().replace(f"port: {src.s3.s3_port}\n", f"port: {proxy.port}\n"))
            # Every delete (an S3 DeleteObjects POST) is held; the first POST is the lock probe's.
            proxy.stall(600, count=1, methods="POST", then="pass")
            prune = subprocess.Popen([sys.executable, "-m", "milvus_backup", "--config", str(via), "prune"],
                                     env=dict(os.environ, MBACKUP_LOCK_LEASE="1"), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            _until(lambda: proxy.stats["stalled"] or prune.poll() is not None, 60, "the lock probe's delete")
            proxy.stall(600, methods="POST", then="pass")
            proxy.release()
            _until(lambda: proxy.stats["stalled"] > 1 or prune.poll() is not None, 60, "prune's deletes")
            assert prune.poll() is None, prune.communicate()
            said = tmp_path / "create.stderr"  # read while it runs
            with said.open("w") as stderr:
                create = subprocess.Popen([sys.executable, "-m", "milvus_backup", "--config", str(config), "create",
                                           "-n", "race_2", "--filter", name, "--incremental"],
                                          stdout=subprocess.PIPE, stderr=stderr, text=True)
            _until(lambda: create.poll() is not None or "waiting for a prune" in said.read_text(), 120,
                   "the create to finish or wait")
            proxy.passthrough()
            proxy.release()  # the held deletes reach the store now
            pruned = prune.communicate(timeout=60)
            create.communicate(timeout=180)
        assert prune.returncode == 0 and pruned[0].startswith("prune: deleted "), pruned
        assert create.returncode == 0, said.read_text()
        ok(mbackup(config, "verify", "-n", "race_2", "--deep"))
        assert "warning: waiting for a prune that is deleting " in said.read_text()
        ok(mbackup(scenario["configs"]["dst"], "restore", "-n", "race_2", "--suffix", "_r"))
        assert_same_rows(read_back(milvus_clusters.target.uri, "default", name + "_r", truth), truth)
    finally:
        mc.drop_collection(name)
        mc.close()
        other = client(milvus_clusters.target.uri)
        if other.has_collection(name + "_r"):
            other.drop_collection(name + "_r")
        other.close()


def _read_from_milvus(scenario, bucket: str) -> set[str]:
    return {k.split(" ", 1)[1] for k, n in scenario["proxy"].seen.items() if k.startswith(f"GET /{bucket}/") and n}


def _new_sources(seaweedfs, bucket: str, name: str, base: str) -> set[str]:
    mine, earlier = _files(seaweedfs, name), _files(seaweedfs, base)
    return {f"/{bucket}/{src}" for rel, (src, size) in mine.items() if earlier.get(rel, (None, -1))[1] != size}


def test_an_increment_on_a_full_base_reads_from_milvus_only_its_new_objects_however_large(scenario, seaweedfs,
                                                                                        milvus_clusters):
    """A vector binlog over 16 MiB: Milvus uploads it in parts (its ETag is not an MD5), and the
    full base copied it server-side. It is the base's all the same, not read again (the
    500,000-row bench's first increment re-read 144 MiB of such binlogs)."""
    src, name, dim = milvus_clusters.source, "inc_big_c", 128
    mc = client(src.uri)
    _create_collection(mc, name, dim)
    try:
        rng = random.Random(12)  # random vectors: Milvus's binlog encoding shrinks few distinct values
        for start in range(0, 36_000, 12_000):  # one segment, its vector binlog 18 MB
            mc.insert(name, [{"id": i, "vec": [rng.random() for _ in range(dim)]} for i in range(start, start + 12_000)])
        mc.flush(name)
        ok(mbackup(scenario["configs"]["src"], "create", "-n", "big_full", "--filter", name))
        assert max(size for _, size in _files(seaweedfs, "big_full").values()) > 16 * 2**20
        mc.insert(name, [{"id": i, "vec": [0.5] * dim} for i in range(36_000, 36_100)])
        mc.flush(name)
        scenario["proxy"].seen.clear()
        ok(mbackup(scenario["configs"]["counted"], "create", "-n", "big_1", "--filter", name, "--incremental",
                   "--base", "big_full"))
        assert _read_from_milvus(scenario, src.bucket) == _new_sources(seaweedfs, src.bucket, "big_1", "big_full")
        ok(mbackup(scenario["configs"]["src"], "verify", "-n", "big_1", "--deep"))
        # A full base made before full backups recorded Milvus's ETags: its copies' own prove it.
        key, store = f"{ROOT}/big_full/meta/mbackup_manifest.json", seaweedfs.store(BUCKET)
        manifest = json.loads(store.get(key))
        assert all(e.pop("etag") for e in manifest["objects"].values())
        store.put(key, json.dumps(manifest).encode())
        scenario["proxy"].seen.clear()
        ok(mbackup(scenario["configs"]["counted"], "create", "-n", "big_1b", "--filter", name, "--incremental",
                   "--base", "big_full"))
        assert _read_from_milvus(scenario, src.bucket) == _new_sources(seaweedfs, src.bucket, "big_1b", "big_full")
    finally:
        mc.drop_collection(name)
        mc.close()
