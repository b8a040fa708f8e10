"""`mbackup diff A B`: two real full backups of one collection on Milvus 2.3.5, taken before
and after an insert, a delete and a flush (and an index created), then compared as a user
reads the report; and the schema and index changes of two backups written by hand."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mbackup_dev.devstack import backup_config
from milvus_backup import _engine
from milvus_backup.backup.pool import pool_key
from milvus_backup.format import meta
from milvus_backup.units import format_bytes
from milvus_data import client, mbackup, ok
from sample_backup import ROOT, Sample
from test_forget_prune import at, write_backup
from test_verify import cfg as _verify_cfg

cfg = _verify_cfg
NAME = "diff_products"
DIM = 8


def _rows(start: int, n: int) -> list[dict]:
    return [{"id": i, "vec": [((i * 7 + j) % 13) / 13.0 for j in range(DIM)]} for i in range(start, start + n)]


def _binlog_bytes(store, name: str) -> dict[str, int]:
    return {k: size for k, size, _ in store.list(f"{ROOT}/{name}/binlogs/")}


@pytest.mark.milvus
def test_diff_of_two_full_backups_across_insert_delete_and_flush(milvus_clusters, seaweedfs, bucket, tmp_path):
    cluster = milvus_clusters.source
    config = tmp_path / "backup.yaml"
    config.write_text(backup_config(cluster, backup_bucket=bucket, backup_root=ROOT))
    mc = client(cluster.uri)
    if mc.has_collection(NAME):
        mc.drop_collection(NAME)
    mc.create_collection(NAME, dimension=DIM, primary_field_name="id", vector_field_name="vec", auto_id=False,
                         shards_num=1)
    mc.release_collection(NAME)
    mc.drop_index(NAME, "vec")
    try:
        mc.insert(NAME, _rows(0, 1000))
        ok(mbackup(config, "create", "-n", "before", "--filter", f"default.{NAME}"))
        mc.insert(NAME, _rows(1000, 500))
        mc.delete(NAME, ids=list(range(0, 100)))
        params = mc.prepare_index_params()
        params.add_index("vec", index_type="IVF_FLAT", metric_type="L2", index_name="vec_idx", params={"nlist": 8})
        mc.create_index(NAME, params)
        ok(mbackup(config, "create", "-n", "after", "--filter", f"default.{NAME}"))

        r = ok(mbackup(config, "diff", "before", "after", "--json"))
        report = json.loads(r.stdout)
        store = seaweedfs.store(bucket)
        before, after = _binlog_bytes(store, "before"), _binlog_bytes(store, "after")
        (coll,) = report["collections"]
        (part,) = coll["partitions"]
        assert (coll["name"], coll["state"], part["name"]) == (f"default.{NAME}", "changed", "_default")
        assert (len(part["segments_added"]), part["segments_removed"], part["rows_added"], part["rows_removed"],
                part["deletes_added"]) == (1, [], 500, 0, 100)
        assert len(part["segments_changed"]) == 1  # the first segment: it got the delete log
        assert coll["indexes_added"] == ["vec_idx (IVF_FLAT on vec)"]
        assert (coll["fields_added"], coll["fields_removed"], coll["fields_changed"]) == ([], [], [])
        assert report["compared_by"] == "key, size and checksum"
        # Every binlog of the first backup is in the second, unchanged: shared; the rest is new.
        assert report["bytes_shared"] == sum(before.values())
        assert report["bytes_new"] == sum(after.values()) - sum(before.values()) > 0

        text = ok(mbackup(config, "diff", "before", "after")).stdout.splitlines()
        assert text == [
            "diff before -> after (objects compared by key, size and checksum)",
            f"default.{NAME}: changed",
            f"  partition _default: segments +1 -0 ~1, rows +500 -0, deletes +100; {format_bytes(report['bytes_new'])} "
            f"new, {format_bytes(report['bytes_shared'])} shared",
            "  index added: vec_idx (IVF_FLAT on vec)",
            f"total: {format_bytes(report['bytes_new'])} new, {format_bytes(report['bytes_shared'])} shared",
        ]
        back = json.loads(ok(mbackup(config, "diff", "after", "before", "--json")).stdout)
        assert (back["collections"][0]["partitions"][0]["rows_removed"], back["bytes_new"]) == (500, 0)
    finally:
        mc.drop_collection(NAME)
        mc.close()


def _info(fields: list[meta.FieldSchema], indexes: list[meta.IndexInfo], colls=("products",)):
    return [meta.CollectionBackupInfo(
        collection_id=1, db_name="default", collection_name=c, schema=meta.CollectionSchema(name=c, fields=fields),
        index_infos=indexes, partition_backups=[meta.PartitionBackupInfo(partition_id=2, partition_name="_default")])
        for c in colls]


def test_diff_names_schema_and_index_changes_and_collections_added(seaweedfs, bucket, cfg):
    store = seaweedfs.store(bucket)
    pk = meta.FieldSchema(field_id=100, name="id", is_primary_key=True, data_type=meta.DataType.Int64)
    vec8 = meta.FieldSchema(field_id=101, name="vec", data_type=meta.DataType.FloatVector,
                            type_params=[meta.KeyValuePair("dim", "8")])
    vec16 = meta.FieldSchema(field_id=101, name="vec", data_type=meta.DataType.FloatVector,
                             type_params=[meta.KeyValuePair("dim", "16")])
    price = meta.FieldSchema(field_id=102, name="price", data_type=meta.DataType.Double)
    flat = meta.IndexInfo(field_name="vec", index_name="vec_idx", index_type="FLAT", params={"metric_type": "L2"})
    hnsw = meta.IndexInfo(field_name="vec", index_name="vec_idx", index_type="HNSW", params={"metric_type": "L2"})
    write_backup(store, "old", at(1), collections=_info([pk, vec8, price], [flat]))
    write_backup(store, "new", at(2), collections=_info([pk, vec16], [hnsw], colls=("products", "orders")))
    r = mbackup(cfg, "diff", "old", "new")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.splitlines() == [
        "diff old -> new (objects compared by key and size (a backup has no manifest))",
        "default.orders: added",
        "  partition _default: segments +0 -0 ~0, rows +0 -0, deletes +0; 0 B new, 0 B shared",
        "default.products: changed",
        "  field removed: price (Double)",
        "  field changed: vec: type_params {dim=8} -> {dim=16}",
        "  index changed: vec_idx (FLAT on vec) -> HNSW {'metric_type': 'L2'}",
        "total: 0 B new, 0 B shared",
    ]
    missing = mbackup(cfg, "diff", "old", "nope")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.startswith("error: no backup named 'nope' at s3://")


def test_diff_reads_a_backup_whose_binlogs_live_in_the_pool(seaweedfs, bucket, cfg):
    """The same segments as a full backup, kept in the shared pool (a version 2 manifest), one
    binlog with other bytes: that one is new, the rest shared, its segment changed."""
    store = seaweedfs.store(bucket)
    full = Sample(store, "full")
    changed = full.binlogs[0]
    objects = {}
    for rel in full.binlogs:
        data = full.objects[rel] if rel != changed else bytes(b ^ 1 for b in full.objects[rel])
        checksum = f"{_engine.checksum('crc32c', data):08x}"
        key = pool_key(rel, len(data), "crc32c", checksum)
        store.put(f"{ROOT}/{key}", data)
        objects[rel] = {"size": len(data), "checksum": checksum, "pool": key}
    manifest = {"version": 2, "backup": "pooled", "incremental": True, "base": "full", "checksum_algo": "crc32c",
                "objects": objects}
    store.put(f"{ROOT}/pooled/meta/mbackup_manifest.json", json.dumps(manifest).encode())
    files = meta.write_meta_files(dataclasses.replace(full.info, name="pooled"))
    for fname in [n for n in files if n != meta.BACKUP_META] + [meta.BACKUP_META]:
        store.put(f"{ROOT}/pooled/meta/{fname}", files[fname])

    report = json.loads(ok(mbackup(cfg, "diff", "full", "pooled", "--json")).stdout)
    (part,) = report["collections"][0]["partitions"]
    total = sum(len(full.objects[rel]) for rel in full.binlogs)
    assert (report["compared_by"], report["bytes_new"], report["bytes_shared"]) == (
        "key, size and checksum", len(full.objects[changed]), total - len(full.objects[changed]))
    assert (part["segments_added"], part["segments_removed"], part["segments_changed"]) == ([], [], [5001])
    # The changed object is segment 5001's delete log, read from the pool: random bytes, no count.
    assert "/delta_log/" in changed and part["deletes_added"] is None
    assert "deletes +?;" in ok(mbackup(cfg, "diff", "full", "pooled")).stdout
