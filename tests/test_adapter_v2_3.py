"""The Milvus 2.3 adapter against two real 2.3.5 servers (source and target) on SeaweedFS.

What a backup and a restore rely on: the schema read from the source re-creates an equal
collection on the target, flushed segments are found with their binlogs in the bucket, a
segment copied in the Go tool's layout imports back with its deletes, and the errors a user
meets name what to fix.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from pymilvus import DataType, MilvusClient

from milvus_backup import _engine
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import CreateCollectionSpec, ImportState
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.milvus.connection import MilvusEndpoint, MilvusError, connect
from milvus_backup.plugins.manager import milvus_adapters

pytestmark = pytest.mark.milvus

DIM = 8
BDIM = 16
ROWS = 3000


def endpoint(cluster) -> MilvusEndpoint:
    return MilvusEndpoint(
        host=cluster.host, port=cluster.port, management_endpoint=f"http://{cluster.host}:{cluster.metrics_port}"
    )


def client(cluster, db: str = "default") -> MilvusClient:
    return MilvusClient(uri=cluster.uri, db_name=db)


def vectors(n: int, seed: int) -> list[list[float]]:
    return [[((i * 31 + j * 7 + seed) % 97) / 97.0 for j in range(DIM)] for i in range(n)]


def binary_vectors(n: int) -> list[bytes]:
    return [(i % 65536).to_bytes(2, "little") for i in range(n)]


def wait_import(adapter, db: str, job: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = adapter.import_status(db, job)
        if status.state is ImportState.COMPLETED:
            return
        assert status.state is not ImportState.FAILED, status.reason
        assert time.monotonic() < deadline, f"import {job} still {status.state} after {timeout} s"
        time.sleep(0.5)


# --------------------------------------------------------------------------------------
# Fixtures: one adapter per cluster, one rich setup per module.


@pytest.fixture(scope="module")
def source(milvus_clusters):
    adapter = connect(endpoint(milvus_clusters.source), milvus_adapters())
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def target(milvus_clusters):
    adapter = connect(endpoint(milvus_clusters.target), milvus_adapters())
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def rich(milvus_clusters, source):
    """Two collections in ``default`` covering what 2.3 has: a varchar primary key with JSON,
    arrays, a dynamic field, 2 extra partitions, an HNSW index, loaded and aliased; and an
    auto-id primary key with a partition key and binary vectors."""
    mc = client(milvus_clusters.source)
    for name in ("mb_varchar", "mb_autoid"):
        if mc.has_collection(name):
            mc.drop_collection(name)

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True, description="varchar pk, rich")
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64, description="the key")
    schema.add_field("title", DataType.VARCHAR, max_length=256)
    schema.add_field("score", DataType.DOUBLE)
    schema.add_field("small", DataType.INT8)
    schema.add_field("flag", DataType.BOOL)
    schema.add_field("doc", DataType.JSON)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    schema.add_field("names", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=32)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    index = mc.prepare_index_params()
    index.add_index("vec", index_type="HNSW", metric_type="L2", index_name="vec_hnsw", params={"M": 8, "efConstruction": 64})
    mc.create_collection("mb_varchar", schema=schema, index_params=index, num_shards=2, consistency_level="Bounded",
                         properties={"collection.ttl.seconds": "864000"})
    for p in ("p1", "p2"):
        mc.create_partition("mb_varchar", p)
    per = ROWS // 3
    for k, part in enumerate(("_default", "p1", "p2")):
        rows = [
            {"pk": f"k{k}-{i}", "title": f"t{i}", "score": i / 3, "small": i % 100, "flag": i % 2 == 0,
             "doc": {"i": i, "part": part}, "tags": [i, i + 1], "names": ["a", f"n{i % 10}"],
             "vec": v, "extra": f"dyn{i}"}
            for i, v in enumerate(vectors(per, k))
        ]
        mc.insert("mb_varchar", rows, partition_name=part)
    mc.load_collection("mb_varchar")
    mc.create_alias("mb_varchar", "mb_varchar_alias")

    schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
    schema.add_field("category", DataType.INT64, is_partition_key=True)
    schema.add_field("bvec", DataType.BINARY_VECTOR, dim=BDIM)
    mc.create_collection("mb_autoid", schema=schema, num_partitions=4, consistency_level="Strong")
    mc.insert("mb_autoid", [{"category": i % 7, "bvec": b} for i, b in enumerate(binary_vectors(1000))])
    mc.close()
    source.flush("default", "mb_varchar")
    source.flush("default", "mb_autoid")
    return {name: source.describe_collection("default", name) for name in ("mb_varchar", "mb_autoid")}


def field_view(f: meta.FieldSchema) -> dict:
    """What must survive a restore (``state`` is the server's own bookkeeping)."""
    return {
        "fieldID": f.field_id, "name": f.name, "pk": f.is_primary_key, "description": f.description,
        "type": f.data_type, "type_params": sorted((kv.key, kv.value) for kv in f.type_params),
        "autoID": f.auto_id, "element_type": f.element_type, "dynamic": f.is_dynamic,
        "partition_key": f.is_partition_key, "nullable": f.nullable,
    }


def spec_from(info: meta.CollectionBackupInfo, db: str, name: str) -> CreateCollectionSpec:
    partition_key = any(f.is_partition_key for f in info.schema.fields)
    return CreateCollectionSpec(
        db_name=db, collection_name=name, schema=info.schema, shards_num=info.shards_num,
        consistency_level=info.consistency_level, properties=info.properties,
        num_partitions=len(info.partition_backups) if partition_key else 0,
    )


# --------------------------------------------------------------------------------------
# Reading


def test_connect_reads_the_version_and_picks_the_2_3_adapter(source, milvus_clusters):
    assert isinstance(source, Milvus23Adapter)
    assert source.version.lstrip("v").startswith("2.3.")
    assert "default" in source.list_databases()
    assert source.describe_database("default").db_name == "default"


def test_describe_collection_captures_what_a_restore_needs(rich, source):
    info = rich["mb_varchar"]
    assert info.collection_id > 0 and info.db_name == "default" and info.collection_name == "mb_varchar"
    schema = info.schema
    assert schema.enable_dynamic_field and schema.description == "varchar pk, rich"
    by_name = {f.name: f for f in schema.fields}
    assert [f.name for f in schema.fields] == ["pk", "title", "score", "small", "flag", "doc", "tags", "names", "vec"]
    assert [f.field_id for f in schema.fields] == list(range(100, 109))
    pk = by_name["pk"]
    assert pk.is_primary_key and pk.data_type == meta.DataType.VarChar and not pk.auto_id
    assert pk.description == "the key" and ("max_length", "64") in [(kv.key, kv.value) for kv in pk.type_params]
    assert by_name["doc"].data_type == meta.DataType.JSON
    tags = by_name["tags"]
    assert (tags.data_type, tags.element_type) == (meta.DataType.Array, meta.DataType.Int64)
    assert ("max_capacity", "8") in [(kv.key, kv.value) for kv in tags.type_params]
    names = {kv.key: kv.value for kv in by_name["names"].type_params}
    assert names == {"max_capacity": "4", "max_length": "32"}
    assert {kv.key: kv.value for kv in by_name["vec"].type_params} == {"dim": str(DIM)}
    assert info.shards_num == 2 and info.consistency_level == meta.ConsistencyLevel.Bounded
    assert {kv.key: kv.value for kv in info.properties} == {"collection.ttl.seconds": "864000"}
    assert [p.partition_name for p in info.partition_backups] == ["_default", "p1", "p2"]
    assert all(p.partition_id > 0 and p.collection_id == info.collection_id for p in info.partition_backups)
    assert info.load_state == "Loaded" and {p.load_state for p in info.partition_backups} == {"Loaded"}
    assert info.aliases == ["mb_varchar_alias"]
    assert len(info.virtual_channel_names) == 2 and len(info.physical_channel_names) == 2
    assert info.created_timestamp > 0
    assert info.has_index and len(info.index_infos) == 1
    index = info.index_infos[0]
    assert (index.field_name, index.index_name, index.index_type) == ("vec", "vec_hnsw", "HNSW")
    assert index.params["index_type"] == "HNSW" and index.params["metric_type"] == "L2"
    assert build_params(index.params) == {"M": 8, "efConstruction": 64}, index.params
    assert index.index_id > 0

    auto = rich["mb_autoid"]
    fields = {f.name: f for f in auto.schema.fields}
    assert fields["id"].auto_id and fields["id"].is_primary_key and fields["category"].is_partition_key
    assert fields["bvec"].data_type == meta.DataType.BinaryVector
    assert len(auto.partition_backups) == 4 and auto.load_state == "NotLoad"
    assert not auto.has_index and auto.index_infos == []
    # The JSON model round-trips through the Go writer rules.
    assert meta.loads(meta.CollectionBackupInfo, meta.dumps_compact(info)) == info


def build_params(params: dict[str, str]) -> dict:
    """Index build parameters, whether a client sent them as one "params" JSON string (the Go
    SDK, pymilvus 2.x) or one key each."""
    rest = {k: json.loads(v) for k, v in params.items() if k not in ("index_type", "metric_type", "params")}
    return {**json.loads(params.get("params", "{}")), **rest}


def test_describe_round_trips_into_create_collection_on_the_target(rich, target):
    for name, info in rich.items():
        target.drop_collection("default", name)
        target.create_collection(spec_from(info, "default", name))
        for p in info.partition_backups:
            if not any(f.is_partition_key for f in info.schema.fields):
                target.create_partition("default", name, p.partition_name)
        for index in info.index_infos:
            target.create_index("default", name, index)
        restored = target.describe_collection("default", name)
        assert [field_view(f) for f in restored.schema.fields] == [field_view(f) for f in info.schema.fields]
        assert restored.schema.enable_dynamic_field == info.schema.enable_dynamic_field
        assert restored.schema.description == info.schema.description
        assert restored.schema.auto_id == info.schema.auto_id
        assert (restored.shards_num, restored.consistency_level) == (info.shards_num, info.consistency_level)
        assert restored.properties == info.properties
        assert [p.partition_name for p in restored.partition_backups] == [p.partition_name for p in info.partition_backups]
        assert [(i.field_name, i.index_name, i.params) for i in restored.index_infos] == [
            (i.field_name, i.index_name, i.params) for i in info.index_infos
        ]
    # Indexes can be dropped (before loading: 2.3 refuses on a loaded collection) and re-made.
    target.drop_indexes("default", "mb_varchar")
    assert target.describe_collection("default", "mb_varchar").index_infos == []
    target.create_index("default", "mb_varchar", rich["mb_varchar"].index_infos[0])
    # Idempotent creation of what already exists.
    target.create_partition("default", "mb_varchar", "p1")
    target.load_collection("default", "mb_varchar")
    target.create_alias("default", "mb_varchar", "mb_varchar_alias")
    again = target.describe_collection("default", "mb_varchar")
    assert again.load_state == "Loaded" and again.aliases == ["mb_varchar_alias"]
    assert target.count_rows("default", "mb_varchar") == 0
    target.drop_indexes("default", "mb_autoid")  # none: nothing to do


def test_list_segments_finds_flushed_segments_with_their_insert_logs(rich, source, milvus_clusters, seaweedfs):
    info = rich["mb_varchar"]
    segments = source.list_segments("default", "mb_varchar")
    assert segments and sum(s.num_rows for s in segments) == ROWS
    assert {s.partition_id for s in segments} == {p.partition_id for p in info.partition_backups}
    assert not any(s.is_l0 for s in segments)
    cluster = milvus_clusters.source
    bucket = seaweedfs.store(cluster.bucket)
    field_ids = {0, 1} | {f.field_id for f in info.schema.fields} | {max(f.field_id for f in info.schema.fields) + 1}
    for s in segments:
        assert s.collection_id == info.collection_id
        prefix = f"{cluster.root_path}/{source.layout.insert_prefix(s.collection_id, s.partition_id, s.segment_id)}"
        keys = [key for key, _size, _etag in bucket.list(prefix)]
        assert keys, f"no insert logs under {prefix}"
        # Row id, timestamp, every user field and $meta (the id after the last user field).
        assert {int(k[len(prefix):].split("/")[0]) for k in keys} == field_ids


def test_pause_gc_is_not_available_on_2_3_5(source):
    assert source.pause_gc(60) is False
    source.resume_gc()


DB = "mb_db"


@pytest.fixture(scope="module")
def staged(source, milvus_clusters, seaweedfs):
    """A collection in a non-default database on the source (2,000 rows, 50 deleted by id,
    flushed), its segments copied into the target bucket in the Go tool's backup layout
    (``insert_log/<coll>/<part>/<seg>/<seg>/<field>/<log>``, segment id twice)."""
    name = "mb_rows"
    mc = client(milvus_clusters.source)
    if DB not in mc.list_databases():
        mc.create_database(DB)
    mc.close()
    source.create_database(DB)  # idempotent
    source.drop_collection(DB, name)
    mc = client(milvus_clusters.source, DB)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("label", DataType.VARCHAR, max_length=32)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    mc.create_collection(name, schema=schema, num_shards=1)
    mc.insert(name, [{"id": i, "label": f"l{i}", "vec": v, "dyn": i * 2} for i, v in enumerate(vectors(2000, 5))])
    source.flush(DB, name)
    deleted = list(range(0, 2000, 40))  # by id: 2.3 refuses delete filters on unloaded collections
    mc.delete(name, ids=deleted)
    mc.close()
    source.flush(DB, name)

    info = source.describe_collection(DB, name)
    segments = source.list_segments(DB, name)
    assert segments and sum(s.num_rows for s in segments) in (2000, 2000 - len(deleted))
    src_cluster, dst_cluster = milvus_clusters.source, milvus_clusters.target
    src, dst = seaweedfs.store(src_cluster.bucket), seaweedfs.store(dst_cluster.bucket)
    bdir = meta.backup_dir(dst_cluster.root_path, "mb-test-restore")
    partitions = {p.partition_id: p.partition_name for p in info.partition_backups}
    jobs, imports = [], []
    for s in segments:
        c, p, g = s.collection_id, s.partition_id, s.segment_id
        ins = f"{src_cluster.root_path}/{source.layout.insert_prefix(c, p, g)}"
        dlt = f"{src_cluster.root_path}/{source.layout.delta_prefix(c, p, g)}"
        for key, size, _ in src.list(ins):
            field_id, log_id = map(int, key[len(ins):].split("/"))
            jobs.append((src, key, dst, meta.insert_log_key(bdir, c, p, g, field_id, log_id), size))
        deltas = [meta.Binlog(log_path=key, log_size=size, log_id=int(key[len(dlt):])) for key, size, _ in src.list(dlt)]
        jobs += [(src, b.log_path, dst, meta.delta_log_key(bdir, c, p, g, b.log_id), b.log_size) for b in deltas]
        backed_up = meta.SegmentBackupInfo(segment_id=g, collection_id=c, partition_id=p, group_id=g,
                                           deltalogs=[meta.FieldBinlog(binlogs=deltas)])
        imports.append((partitions[p], meta.segment_import_dirs(bdir, backed_up).files()))
    if sum(s.num_rows for s in segments) == 2000:  # deletes not compacted away: they are in delta logs
        assert any(len(files) == 2 for _, files in imports), "the deletes left no delta log"
    results = _engine.Copier().run(jobs)
    assert not [r for r in results if r["error"]]
    return {"name": name, "info": info, "imports": imports, "deleted": deleted}


def test_listing_in_a_non_default_database(source, staged):
    name = staged["name"]
    assert name in source.list_collections(DB) and source.has_collection(DB, name)
    assert not source.has_collection(DB, "nope") and not source.has_collection("no_such_db", name)
    assert DB in source.list_databases() and source.describe_database(DB).db_name == DB
    with pytest.raises(MilvusError, match="nope"):
        source.describe_collection(DB, "nope")


def test_full_manual_round_trip_in_a_non_default_database(target, milvus_clusters, staged):
    name, info, deleted = staged["name"], staged["info"], staged["deleted"]
    target.create_database(DB)
    target.create_database(DB)  # idempotent
    target.drop_collection(DB, name)
    target.create_collection(spec_from(info, DB, name))
    for partition, files in staged["imports"]:
        wait_import(target, DB, target.start_import(DB, name, partition, files))
    target.create_index(DB, name, meta.IndexInfo(
        field_name="vec", index_name="vec_idx", index_type="HNSW",
        params={"index_type": "HNSW", "metric_type": "L2", "params": json.dumps({"M": 8, "efConstruction": 64})}))
    target.load_collection(DB, name)
    assert target.count_rows(DB, name) == 2000 - len(deleted)
    mc = client(milvus_clusters.target, DB)
    try:
        assert list(mc.query(name, filter=f"id in {deleted}", output_fields=["id"])) == []
        row = [dict(r) for r in mc.query(name, filter="id == 7", output_fields=["id", "label", "dyn"])]
        assert row == [{"id": 7, "label": "l7", "dyn": 14}]
    finally:
        mc.close()
    restored = target.describe_collection(DB, name)
    assert [(i.index_name, i.params) for i in restored.index_infos] == [
        ("vec_idx", {"index_type": "HNSW", "metric_type": "L2", "params": '{"M": 8, "efConstruction": 64}'})]


def test_import_failures_carry_the_server_reason(target, staged):
    with pytest.raises(MilvusError, match="partition name"):
        target.start_import(DB, staged["name"], "", ["nowhere/", ""])
    # The staged binlogs into a collection whose fields differ from theirs.
    other = "mb_rows_other"
    target.create_database(DB)
    target.drop_collection(DB, other)
    schema = staged["info"].schema
    wrong = meta.CollectionSchema(name=other, fields=[
        schema.fields[0], meta.FieldSchema(name="label", data_type=meta.DataType.Int64), *schema.fields[2:]])
    target.create_collection(CreateCollectionSpec(db_name=DB, collection_name=other, schema=wrong, shards_num=1,
                                                  consistency_level=0))
    partition, files = staged["imports"][0]
    job = target.start_import(DB, other, partition, files)
    deadline = time.monotonic() + 120
    status = target.import_status(DB, job)
    while status.state not in (ImportState.FAILED, ImportState.COMPLETED) and time.monotonic() < deadline:
        time.sleep(0.5)
        status = target.import_status(DB, job)
    assert status.state is ImportState.FAILED and status.reason, status


def test_a_missing_prefix_imports_nothing_without_failing(target, staged):
    # A pitfall of 2.3.5 worth knowing: an import of a prefix with no objects "completes"
    # with 0 rows, so a restore must compare rows, not trust the state alone.
    target.create_database(DB)
    if not target.has_collection(DB, staged["name"]):
        target.create_collection(spec_from(staged["info"], DB, staged["name"]))
    job = target.start_import(DB, staged["name"], "_default", ["mb-no-such-prefix/insert_log/1/2/3/", ""])
    wait_import(target, DB, job)
    assert target.import_status(DB, job).rows == 0


# --------------------------------------------------------------------------------------
# Errors a user meets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_to_a_wrong_port_fails_fast_with_one_clear_line(milvus_clusters):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(MilvusError) as err:
        connect(MilvusEndpoint(host="127.0.0.1", port=port, password="s3cret"), milvus_adapters())
    assert time.monotonic() - started < 12
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "milvus.address" in message and "milvus.port" in message
    assert "\n" not in message and "s3cret" not in message


def test_an_unsupported_version_names_the_supported_lines():
    with pytest.raises(MilvusError) as err:
        milvus_adapters().adapter_for("v2.9.1", connection=None)
    assert str(err.value).startswith("Milvus v2.9.1 is not supported: no adapter for Milvus 2.9 (lines: 2.3, ")
    assert "set mbackup.milvusAdapter: 2.6" in str(err.value)
    assert isinstance(milvus_adapters().adapter_for("v2.3.22", connection=None), Milvus23Adapter)


def test_the_endpoint_never_shows_its_password():
    e = MilvusEndpoint(host="h", port=1, user="root", password="hunter2")
    assert "hunter2" not in repr(e) and "hunter2" not in str(e) and "***" in repr(e)
