"""Golden backups of every Milvus line (issue #10 items 4 and 6), made at test time from a real
Milvus 2.3.5 collection's binlogs wrapped in meta as the Go tool writes it for each line
(tests/golden/generate.py says what each golden is).

- The meta files are the Go tool's bytes (checked against the facts derived from its source)
  and mbackup reads them and writes them back byte for byte.
- ``mbackup list``, ``get`` and ``verify`` show each as a complete, whole backup.
- What each line would do with each golden: restore it, or refuse it with the line the user
  sees (a table over golden x target line).
- Against the live 2.3.5 target: a 2.4-layout backup restores with every row equal; a 2.5 one
  with L0 deletes is refused unless --skip-l0, which restores the deleted rows knowingly;
  newer backups and schema features 2.3 lacks are refused before anything is created.
- The features the 2.3 adapter says its line lacks, a real 2.3.5 refuses or drops.

The binlogs in every golden are 2.3.5's (storage v0): what newer servers write in them is not
tested here; only the layout and the meta are each line's.
"""

from __future__ import annotations

import json

import pytest
from pymilvus import DataType, MilvusClient

from gofacts import facts, problems
from golden import generate
from milvus_backup.backup.compat import IncompatibleBackup, check_restorable
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import Capabilities, MilvusAdapter
from milvus_backup.milvus.binlog import count_records
from milvus_data import (
    Truth,
    assert_same_rows,
    client,
    drop_prefixed,
    error_line,
    mbackup,
    ok,
    read_back,
    read_rows,
    segmented,
    shared_configs,
)

pytestmark = pytest.mark.milvus

ROOT = "golden"  # in the source Milvus's own bucket: restores into the source import in place
SOURCE = "golden_src"
PARTS = ("_default", "pb")


# --------------------------------------------------------------------------------------
# The source collection, its backup, the goldens


def _rows(rnd: int, part: int) -> list[dict]:
    start = 1000 * rnd + 500 * part
    return [{"id": i, "s": f"s<{i}>&", "doc": {"i": i, "part": PARTS[part], "l": [rnd, "x"]},
             "tags": list(range(i % 4)), "vec": [((i * 13 + j) % 17) / 17.0 for j in range(4)],
             **({"extra": f"dyn{i}"} if i % 3 == 0 else {})} for i in range(start, start + 150)]


@pytest.fixture(scope="module")
def source(milvus_clusters):
    """golden_src on the source: two partitions, two flushed segments each, a JSON, an array,
    a dynamic field; rows deleted by id in every segment. Its rows before and after the deletes."""
    mc = client(milvus_clusters.source.uri)
    try:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("s", DataType.VARCHAR, max_length=32)
        schema.add_field("doc", DataType.JSON)
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        before = segmented(mc, SOURCE, schema, PARTS, _rows)
        deleted = [pk for pk in before if pk % 37 == 0]
        mc.delete(SOURCE, ids=deleted)
        after = read_rows(mc, SOURCE, "id")
        mc.release_collection(SOURCE)
    finally:
        mc.close()
    assert len(after) == len(before) - len(deleted) > 0
    yield {"before": before, "after": after, "deleted": deleted}
    drop_prefixed([milvus_clusters.source.uri, milvus_clusters.target.uri], SOURCE)


def truth(rows: dict) -> Truth:
    return Truth("default", SOURCE, "id", "vec", DataType.FLOAT_VECTOR, rows, [], list(PARTS))


@pytest.fixture(scope="module")
def configs(milvus_clusters, tmp_path_factory):
    return shared_configs(milvus_clusters, tmp_path_factory.mktemp("golden-config"), ROOT)


@pytest.fixture(scope="module")
def goldens(source, configs, milvus_clusters, seaweedfs):
    """The base backup (mbackup create of golden_src) and every golden made from it, stored."""
    ok(mbackup(configs["src"], "create", "-n", "golden_base", "--filter", f"default.{SOURCE}"))
    store = seaweedfs.store(milvus_clusters.source.bucket)
    base_dir = f"{ROOT}/golden_base"
    sizes = {k[len(base_dir) + 1:]: size for k, size, _ in store.list(f"{base_dir}/")}
    base = json.loads(store.get(f"{base_dir}/meta/{meta.FULL_META}"))
    keys = {int(rel.rsplit("/", 1)[1]): rel for rel in sizes if rel.startswith("binlogs/")}
    built = generate.build(base, keys, lambda rel: count_records(store.get(f"{base_dir}/{rel}")))
    for g in built:
        g.write(store, ROOT, base_dir, sizes)
    yield {g.name: g for g in built}
    store.delete_many([k for k, _, _ in store.list(f"{ROOT}/")], 16)


NAMES = ["golden_v2_3", "golden_v2_4", "golden_v2_5", "golden_v2_5_functions", "golden_v2_6", "golden_rbac",
         "golden_v3_storage_v3", "golden_snapshot"]


def test_every_line_has_a_golden(goldens):
    assert sorted(goldens) == sorted(NAMES)
    v25 = goldens["golden_v2_5"].info.collection_backups[0]
    # The 2.5 golden keeps its deletes as the Go tool does before an L0 compaction.
    assert [s.partition_id for s in v25.l0_segments] == [-1] and all(s.is_l0 for s in v25.l0_segments)
    assert [p.partition_name for p in v25.partition_backups if any(s.is_l0 for s in p.segment_backups)] == ["pb"]
    assert all(not fb.binlogs for p in v25.partition_backups for s in p.segment_backups if not s.is_l0
               for fb in s.deltalogs)
    assert {s.storage_version for p in goldens["golden_v2_6"].info.collection_backups[0].partition_backups
            for s in p.segment_backups} == {2}


# --------------------------------------------------------------------------------------
# The meta: the Go tool's bytes, read and written back by mbackup


@pytest.mark.parametrize("name", NAMES)
def test_golden_meta_is_the_go_tools_and_round_trips_byte_for_byte(goldens, name):
    files = goldens[name].files
    go = facts("HEAD")
    messages = {x["file"]: x["message"] for x in go["meta_files"]["files"]}
    for fname, data in files.items():
        assert problems(json.loads(data), messages[fname], go) == [], fname
        cls = {"BackupInfo": meta.BackupInfo, "CollectionLevelBackupInfo": meta.CollectionLevelBackupInfo,
               "PartitionLevelBackupInfo": meta.PartitionLevelBackupInfo,
               "SegmentLevelBackupInfo": meta.SegmentLevelBackupInfo}[messages[fname]]
        assert meta.dumps_compact(meta.load_file(cls, data, fname)) == data, fname
    assert meta.write_meta_files(meta.read_meta_files(files)) == files
    snapshot = name == "golden_snapshot"
    assert (meta.PARTITION_META in files) is not snapshot and (meta.SEGMENT_META in files) is not snapshot


# --------------------------------------------------------------------------------------
# list, get, verify


def test_list_shows_every_golden_complete_with_its_version(goldens, configs):
    rows = {r["name"]: r for r in json.loads(ok(mbackup(configs["src"], "list", "--json")).stdout)}
    for name, g in goldens.items():
        r = rows[name]
        assert r["complete"] and r["error"] is None, r
        assert r["milvus_version"] == g.doc["milvus_version"] and r["collections"] == [f"default.{SOURCE}"]
        # The Go tool since 0.5 writes no backup_timestamp: a time from the collections, or when the meta was written.
        assert "backup_timestamp" not in g.doc and r["time"] and r["backup_timestamp"], r
    text = ok(mbackup(configs["src"], "list")).stdout.splitlines()
    assert not [line for line in text if "DAMAGED" in line or "INCOMPLETE" in line], text


@pytest.mark.parametrize("name", NAMES)
def test_get_describes_each_golden(goldens, source, configs, name):
    g = goldens[name]
    got = json.loads(ok(mbackup(configs["src"], "get", "-n", name, "--json")).stdout)
    assert problems(got, "BackupInfoBrief", facts("HEAD")) == []
    assert got["name"] == name and got["milvus_version"] == g.doc["milvus_version"]
    assert got.get("format", "") == g.doc.get("format", "")
    assert got["size"] == g.doc["size"] and got["meta_size"] == sum(len(v) for v in g.files.values())
    text = ok(mbackup(configs["src"], "get", "-n", name)).stdout.splitlines()
    assert text[0].startswith(f"backup {name} ({g.doc['id']}): ")
    if name != "golden_snapshot":
        # L0 segments hold deletes, not rows: the rows are the data segments' (the source's before its deletes).
        l0 = ", 2 L0 delete segments" if name == "golden_v2_5" else ""
        assert text[1].startswith(f"  default.{SOURCE}: 2 partitions, 4 segments{l0}, "
                                  f"{len(source['before']):,} rows, "), text


@pytest.mark.parametrize("name", NAMES)
def test_verify_finds_each_golden_whole(goldens, configs, name):
    result = ok(mbackup(configs["src"], "verify", "-n", name))
    assert result.stdout.rstrip().endswith(": 0 problems"), result.stdout


def test_verify_finds_a_snapshot_bundle_without_its_metadata(goldens, configs, milvus_clusters, seaweedfs):
    store = seaweedfs.store(milvus_clusters.source.bucket)
    path = goldens["golden_snapshot"].doc["collection_backups"][0]["snapshot_backup"]["metadata_path"]
    key = f"{ROOT}/golden_snapshot/{path}"
    data = store.get(key)
    store.delete(key)
    try:
        result = mbackup(configs["src"], "verify", "-n", "golden_snapshot")
        assert result.returncode == 4
        assert f"missing: {path}: the snapshot metadata of default.{SOURCE}" in result.stdout.splitlines()
    finally:
        store.put(key, data)


def test_collection_level_l0_deletes_lost_with_full_meta_are_a_problem(goldens, configs, milvus_clusters, seaweedfs):
    """Only full_meta.json lists collection-level L0 segments (the Go tool's level files never
    did): a 2.5 backup read without it has lost those deletes, which verify says, and so
    restore refuses it before anything is made."""
    store = seaweedfs.store(milvus_clusters.source.bucket)
    src, dst = f"{ROOT}/golden_v2_5", f"{ROOT}/golden_v2_5_levels"
    for key, _, _ in store.list(f"{src}/"):
        if not key.endswith(meta.FULL_META):
            store.put(dst + key[len(src):], store.get(key))
    l0 = goldens["golden_v2_5"].info.collection_backups[0].l0_segments[0]
    logs = sorted(key[len(src) + 1:] for _, key, _ in meta.segment_files(src, l0))
    assert logs and all(f"/delta_log/{l0.collection_id}/-1/{l0.segment_id}/" in rel for rel in logs)
    result = mbackup(configs["src"], "verify", "-n", "golden_v2_5_levels")
    assert result.returncode == 4
    assert [line for line in result.stdout.splitlines() if line.startswith("unlisted: ")] == [
        f"unlisted: {rel}: a collection-level L0 delete log that only meta/full_meta.json lists, and the meta was "
        "read without it: restore would leave its deletes out" for rel in logs]
    refused = mbackup(configs["src"], "restore", "-n", "golden_v2_5_levels", "--skip-l0", "--rename",
                      "default.*:golden_levels.*")
    assert error_line(refused, 4).startswith(f"error: backup 'golden_v2_5_levels' failed the quick check: unlisted: {logs[0]}")
    _nothing_made(milvus_clusters.source, "golden_levels")


# --------------------------------------------------------------------------------------
# What each line does with each golden (the 2.3 row is also run live below)

LINES = {"2.3": "v2.3.5", "2.4": "v2.4.13", "2.5": "v2.5.8", "2.6": "v2.6.11", "3.0": "v3.0.1"}
OK = None
L0_23 = "default.golden_src holds deletes in 2 L0 segments, which Milvus 2.3.5 cannot import"
NULLABLE_23 = "default.golden_src has nullable field 'age': Milvus 2.3.5 lacks nullable fields"
SNAPSHOT = "backup 'golden_snapshot' is in the snapshot format, which only Milvus 3.0 and newer restore"


def _line(name: str, taken: str, target: str) -> str:
    version = LINES[target][1:]
    newest = "2.5" if target == "2.3" else target
    return f"backup '{name}' was taken on Milvus {taken}, and Milvus {version} restores backups of Milvus {newest} "


PLANS = {
    "golden_v2_3": dict.fromkeys(LINES, OK),
    "golden_v2_4": dict.fromkeys(LINES, OK),
    "golden_v2_5": {"2.3": L0_23, "2.4": _line("golden_v2_5", "2.5.8", "2.4"), "2.5": OK, "2.6": OK, "3.0": OK},
    "golden_v2_5_functions": {"2.3": NULLABLE_23, "2.4": _line("golden_v2_5_functions", "2.5.8", "2.4"),
                              "2.5": OK, "2.6": OK, "3.0": OK},
    "golden_rbac": {"2.3": OK, "2.4": _line("golden_rbac", "2.5.8", "2.4"), "2.5": OK, "2.6": OK, "3.0": OK},
    "golden_v2_6": {**{t: _line("golden_v2_6", "2.6.11", t) for t in ("2.3", "2.4", "2.5")}, "2.6": OK, "3.0": OK},
    "golden_v3_storage_v3": {**{t: _line("golden_v3_storage_v3", "3.0.1", t) for t in ("2.3", "2.4", "2.5", "2.6")},
                             "3.0": "default.golden_src holds segment "},
    "golden_snapshot": {**dict.fromkeys(("2.3", "2.4", "2.5", "2.6"), SNAPSHOT), "3.0": OK},
}


@pytest.mark.parametrize("target", LINES)
@pytest.mark.parametrize("name", NAMES)
def test_what_each_line_does_with_each_golden(goldens, name, target):
    info = goldens[name].info
    caps = MilvusAdapter.capabilities if target == "2.3" else Capabilities.of_line(target)
    colls = [(f"{c.db_name}.{c.collection_name}", c) for c in info.collection_backups]
    expected = PLANS[name][target]
    if expected is OK:
        assert check_restorable(info, colls, caps, LINES[target]) == []
    else:
        with pytest.raises(IncompatibleBackup) as e:
            check_restorable(info, colls, caps, LINES[target])
        assert str(e.value).startswith(expected), str(e.value)


# --------------------------------------------------------------------------------------
# Live: into the real 2.3.5


def test_a_2_4_layout_backup_restores_into_2_3_5_with_every_row_equal(goldens, source, configs, milvus_clusters):
    """Issue #10: a backup laid out as the Go tool writes one of 2.4 (group dirs, storage
    version 0, database ids, field binlogs in another order) restores into Milvus 2.3.5; the
    rows are the source's, deletes applied, every field (ids, vectors, JSON, arrays, dynamic)."""
    out = ok(mbackup(configs["dst"], "restore", "-n", "golden_v2_4", "--suffix", "_v24")).stdout
    assert f"restored default.{SOURCE} as default.{SOURCE}_v24: " in out and ", 2 import jobs, " in out
    got = read_back(milvus_clusters.target.uri, "default", f"{SOURCE}_v24", truth(source["after"]), release=True)
    assert_same_rows(got, truth(source["after"]))


def _nothing_made(cluster, db: str) -> None:
    """The restore into database ``db`` made nothing: not the database, no staged copy, no journal."""
    mc = client(cluster.uri)
    try:
        assert db not in mc.list_databases()
    finally:
        mc.close()
    assert [k for k, _, _ in cluster.s3.store(cluster.bucket).list("mbackup-restore")] == []


def test_a_2_5_backup_with_l0_deletes_is_refused_by_2_3_5_unless_skip_l0(goldens, source, configs, milvus_clusters):
    """Milvus 2.3 skips the delete logs of a segment without insert logs: the L0 deletes of a
    2.5 backup would be lost without a word. Refused before anything is made; with --skip-l0
    restored, the rows those deletes removed back (and said so)."""
    uri = milvus_clusters.source.uri
    refused = mbackup(configs["src"], "restore", "-n", "golden_v2_5", "--rename", "default.*:golden_l0.*")
    version = milvus_clusters.source.version.removeprefix("v")
    assert error_line(refused) == (
        f"error: default.{SOURCE} (restored as golden_l0.{SOURCE}) holds deletes in 2 L0 segments, which Milvus "
        f"{version} cannot import: the rows "
        "they delete would come back. Fold them into the data segments first with mbackup l0compact -n golden_v2_5, "
        "restore with --skip-l0 to leave them out knowingly, or into Milvus 2.4 or newer")
    _nothing_made(milvus_clusters.source, "golden_l0")

    # In the Milvus bucket itself: the import reads the partition's delta dir, L0 segment included.
    done = ok(mbackup(configs["src"], "restore", "-n", "golden_v2_5", "--suffix", "_l0", "--skip-l0"))
    assert (f"warning: --skip-l0: the deletes in 2 L0 segments of default.{SOURCE} (restored as default.{SOURCE}_l0) "
            "are left out: rows they deleted are restored") in done.stderr
    n = len(source["before"])
    assert f"restored default.{SOURCE} as default.{SOURCE}_l0: {n:,} rows in backup, {n:,} imported, " in done.stdout
    got = read_back(uri, "default", f"{SOURCE}_l0", truth(source["before"]), release=True)
    assert_same_rows(got, truth(source["before"]))


@pytest.mark.parametrize(("name", "line"), [
    ("golden_v2_5_functions", "error: default.golden_src (restored as golden_refused.golden_src) has nullable field "
                              "'age': Milvus {v} lacks nullable fields "
                              "(they came with Milvus 2.5); restore it into Milvus 2.5 or newer, or leave it out with "
                              "--filter"),
    ("golden_v2_6", "error: backup 'golden_v2_6' was taken on Milvus 2.6.11, and Milvus {v} restores backups of Milvus "
                    "2.5 and older only (a backup restores into the same or a newer line): restore it into Milvus 2.6 "
                    "or newer"),
    ("golden_snapshot", "error: backup 'golden_snapshot' is in the snapshot format, which only Milvus 3.0 and newer "
                        "restore (RestoreExternalSnapshot); Milvus {v} cannot: restore it into Milvus 3.0 or newer"),
    ("golden_v3_storage_v3", "error: backup 'golden_v3_storage_v3' was taken on Milvus 3.0.1, and Milvus {v} restores "
                             "backups of Milvus 2.5 and older only (a backup restores into the same or a newer line): "
                             "restore it into Milvus 3.0 or newer"),
])
def test_what_2_3_5_lacks_is_refused_before_anything_is_made(goldens, configs, milvus_clusters, name, line):
    target = milvus_clusters.target
    result = mbackup(configs["dst"], "restore", "-n", name, "--rename", "default.*:golden_refused.*")
    assert error_line(result) == line.format(v=target.version.removeprefix("v"))
    _nothing_made(target, "golden_refused")


# --------------------------------------------------------------------------------------
# What the 2.3 capabilities say, against a real 2.3.5. Found on the way: 2.3.5 takes a
# Float16Vector field and its rows (2.3 has it, not 2.4 as the notes say); it creates a field
# of a type it does not know (BFloat16Vector, SparseFloatVector, Int8Vector, Geometry,
# Timestamptz) without a word, and an insert into a BFloat16Vector field brought the server
# down: refusing them before anything is created is mbackup's to do. It also keeps an Int64
# default value (undocumented before 2.5; mbackup does not restore default values into 2.3).


def _create_raw(uri: str, name: str, fields: list, functions: list = ()) -> tuple[bool, object]:
    """CreateCollection with a hand-built schema proto (no client-side checks); then the
    schema the server describes, or the server's refusal."""
    from pymilvus.grpc_gen import milvus_pb2, schema_pb2

    mc = client(uri)
    try:
        stub = mc._get_connection()._stub
        schema = schema_pb2.CollectionSchema(name=name, fields=fields, functions=list(functions))
        status = stub.CreateCollection(milvus_pb2.CreateCollectionRequest(
            db_name="default", collection_name=name, schema=schema.SerializeToString(), shards_num=1))
        if status.error_code or status.code:
            return False, status.reason
        desc = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(db_name="default", collection_name=name))
        stub.DropCollection(milvus_pb2.DropCollectionRequest(db_name="default", collection_name=name))
        return True, desc.schema
    finally:
        mc.close()


def _fields(*extra) -> list:
    from pymilvus.grpc_gen import common_pb2, schema_pb2

    dim = [common_pb2.KeyValuePair(key="dim", value="8")]
    return [schema_pb2.FieldSchema(fieldID=100, name="id", data_type=schema_pb2.DataType.Int64, is_primary_key=True),
            schema_pb2.FieldSchema(fieldID=101, name="vec", data_type=schema_pb2.DataType.FloatVector, type_params=dim),
            *extra]


def test_2_3_5_refuses_several_vector_fields(milvus_clusters):
    from pymilvus.grpc_gen import common_pb2, schema_pb2

    assert not MilvusAdapter.capabilities.has("several_vector_fields")
    dim = [common_pb2.KeyValuePair(key="dim", value="16")]
    made, why = _create_raw(milvus_clusters.target.uri, f"{SOURCE}_feature", _fields(
        schema_pb2.FieldSchema(fieldID=102, name="x", data_type=schema_pb2.DataType.BinaryVector, type_params=dim)))
    assert not made and why == "multiple vector fields is not supported, fields name: vec, x"


def test_2_3_5_drops_nullable_fields_and_functions_without_a_word(milvus_clusters):
    """What a restore into 2.3 would lose silently: refused instead (nullable, functions)."""
    from pymilvus.grpc_gen import common_pb2, schema_pb2

    assert not MilvusAdapter.capabilities.has("nullable") and not MilvusAdapter.capabilities.has("functions")
    made, got = _create_raw(milvus_clusters.target.uri, f"{SOURCE}_feature", _fields(
        schema_pb2.FieldSchema(fieldID=102, name="age", data_type=schema_pb2.DataType.Int32, nullable=True),
        schema_pb2.FieldSchema(fieldID=103, name="text", data_type=schema_pb2.DataType.VarChar,
                               type_params=[common_pb2.KeyValuePair(key="max_length", value="64")])),
        [schema_pb2.FunctionSchema(name="bm25", type=schema_pb2.FunctionType.BM25, input_field_names=["text"],
                                   output_field_names=["vec"])])
    assert made, got
    assert [f.name for f in got.fields if f.nullable] == [] and list(got.functions) == []


def test_2_3_5_takes_float16_vectors_and_their_rows(milvus_clusters):
    import numpy as np

    name = f"{SOURCE}_f16"
    mc = client(milvus_clusters.target.uri)
    try:
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("h", DataType.FLOAT16_VECTOR, dim=8)
        mc.create_collection(name, schema=schema, consistency_level="Strong")
        mc.insert(name, [{"id": i, "h": np.full(8, i / 8, dtype=np.float16)} for i in range(10)])
        mc.flush(name)
        assert mc.get_collection_stats(name)["row_count"] == 10
    finally:
        if mc.has_collection(name):
            mc.drop_collection(name)
        mc.close()
