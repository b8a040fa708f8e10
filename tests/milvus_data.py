"""Data on a real Milvus 2.3.5 for the end-to-end tests: one varied dataset written with
pymilvus, read back row by row, and the helpers that run ``mbackup`` as a user would.

What is compared is what a user gets back from Milvus: every row by primary key, every field
(float vectors as the floats returned, binary vectors as bytes, JSON and dynamic fields as
dicts, arrays as lists).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pymilvus import DataType, MilvusClient

DIM = 8
BDIM = 16
MAX_ROWS = 16384  # a 2.3 query returns at most this many rows

# (db, collection) of the dataset.
VARCHAR = ("default", "e2e_varchar")  # varchar pk, JSON, arrays, dynamic, 3 partitions, 2 shards, loaded, alias
INT = ("default", "e2e_int")  # int64 pk, every scalar width, 2 partitions, 2 segments each, not loaded
AUTO = ("db2", "e2e_auto")  # auto id, partition key, binary vectors, JSON, dynamic; in a second database
ALL = (VARCHAR, INT, AUTO)
DB2 = "db2"


def client(uri: str, db: str = "default") -> MilvusClient:
    return MilvusClient(uri=uri, db_name=db)


@dataclass
class Truth:
    """A collection as read back from the source after the dataset was written."""

    db: str
    name: str
    pk: str
    vector: str
    vector_type: DataType
    rows: dict[Any, dict[str, Any]]  # pk -> row
    deleted: list[Any]
    partitions: list[str]
    alias: str = ""
    loaded: bool = False
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)  # index name -> describe_index

    @property
    def label(self) -> str:
        return f"{self.db}.{self.name}"


# --------------------------------------------------------------------------------------
# Writing


def _vec(i: int, seed: int, dim: int = DIM) -> list[float]:
    return [((i * 31 + j * 7 + seed) % 97) / 97.0 - 0.5 for j in range(dim)]


def _bvec(i: int) -> bytes:
    return ((i * 2654435761) % 65536).to_bytes(2, "little")


def build(uri: str, only: tuple[tuple[str, str], ...] = ALL) -> dict[tuple[str, str], Truth]:
    """Write the dataset on the Milvus at ``uri`` (dropping an earlier copy) and read it back;
    ``only`` some of its collections when a test needs no more.

    Several segments per partition come from inserting and flushing in rounds (the three
    collections' flushes run at once: each takes ~3 s on 2.3.5); deletes are by primary key
    (2.3 refuses delete filters on an unloaded collection) and are left for the backup's own
    flush to persist.
    """
    mc = client(uri)
    if DB2 not in mc.list_databases():
        mc.create_database(DB2)
    m2 = client(uri, DB2)  # MilvusClient.use_database needs DescribeDatabase (2.4.3+)
    clients = {VARCHAR: mc, INT: client(uri), AUTO: m2}
    try:
        for key in only:
            c = clients[key]
            if c.has_collection(key[1]):
                for alias in c.describe_collection(key[1]).get("aliases", []):
                    c.drop_alias(alias)  # 2.3 keeps the aliases of a dropped collection
                c.drop_collection(key[1])
        kinds = {VARCHAR: _Varchar, INT: _Int, AUTO: _Auto}
        writers = {key: kinds[key](clients[key]) for key in only}
        with ThreadPoolExecutor(len(writers)) as pool:
            for rnd in range(max(w.rounds for w in writers.values())):
                active = [w for w in writers.values() if rnd < w.rounds]
                for w in active:
                    w.insert(rnd)
                list(pool.map(lambda w: w.mc.flush(w.name), active))
            for w in writers.values():
                w.finish()
            return dict(zip(writers, pool.map(lambda w: w.truth(), writers.values()), strict=False))
    finally:
        for c in clients.values():
            c.close()


def segmented(mc: MilvusClient, name: str, schema: Any, partitions: tuple[str, ...],
              rows: Callable[[int, int], list[dict[str, Any]]], rounds: int = 2) -> dict[Any, dict[str, Any]]:
    """``name`` made anew with ``schema`` (pk "id", a 4-dim vector "vec" under a FLAT index), one
    shard, ``partitions`` (the first is _default), each given ``rows(round, partition index)``
    in every round and flushed after it: a segment per partition and round. Left loaded; its
    rows read back."""
    if mc.has_collection(name):
        mc.drop_collection(name)
    mc.create_collection(name, schema=schema, num_shards=1, consistency_level="Strong")
    for p in partitions[1:]:
        mc.create_partition(name, p)
    index = mc.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    mc.create_index(name, index)
    for rnd in range(rounds):
        for part, p in enumerate(partitions):
            mc.insert(name, rows(rnd, part), partition_name=p)
        mc.flush(name)
    mc.load_collection(name)
    return read_rows(mc, name, "id")


def shared_configs(clusters: Any, directory: Any, root: str) -> dict[str, Any]:
    """Config files in ``directory``: src, the source cluster with backups in its own bucket
    under ``root``; dst, the target cluster reading the same backups (a restore stages them
    into its bucket)."""
    from mbackup_dev.devstack import backup_config

    out = {}
    for role, cluster in (("src", clusters.source), ("dst", clusters.target)):
        out[role] = directory / f"{role}.yaml"
        out[role].write_text(backup_config(cluster, backup_bucket=clusters.source.bucket, backup_root=root))
    return out


def drop_prefixed(uris: list[str], prefix: str) -> None:
    """Drop the collections of the default database named ``prefix``... on each server."""
    for uri in uris:
        mc = client(uri)
        try:
            for name in mc.list_collections():
                if name.startswith(prefix):
                    mc.drop_collection(name)
        finally:
            mc.close()


class _Varchar:
    """Varchar pk, JSON, arrays, a dynamic field; 3 partitions, 2 shards; HNSW and a scalar
    index; loaded; an alias."""

    name, rounds = VARCHAR[1], 2
    partitions = ["_default", "p1", "p2"]

    def __init__(self, mc: MilvusClient) -> None:
        self.mc = mc
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True, description="varchar pk, rich")
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("title", DataType.VARCHAR, max_length=128)
        schema.add_field("score", DataType.DOUBLE)
        schema.add_field("flag", DataType.BOOL)
        schema.add_field("doc", DataType.JSON)
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
        schema.add_field("names", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=32)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
        mc.create_collection(self.name, schema=schema, num_shards=2, consistency_level="Strong")
        index = mc.prepare_index_params()
        index.add_index("vec", index_type="HNSW", metric_type="L2", index_name="vec_hnsw",
                        params={"M": 8, "efConstruction": 32})
        index.add_index("score", index_type="STL_SORT", index_name="score_sort")
        mc.create_index(self.name, index)
        for p in self.partitions[1:]:
            mc.create_partition(self.name, p)

    def insert(self, rnd: int) -> None:
        for k, part in enumerate(self.partitions):
            rows = [{"pk": f"{part}-{rnd}-{i}", "title": f"t<{i}>&", "score": i / 7 + rnd, "flag": i % 3 == 0,
                     "doc": {"i": i, "part": part, "nested": {"r": rnd, "l": [i, "x"]}},
                     "tags": list(range(i % 5)), "names": ["a", f"n{i % 10}"][: 1 + i % 2],
                     "vec": _vec(i, 10 * k + rnd), "extra": f"dyn{i}", **({"only_some": i} if i % 4 == 0 else {})}
                    for i in range(300)]
            self.mc.insert(self.name, rows, partition_name=part)

    def finish(self) -> None:
        self.deleted = [f"{p}-{r}-{i}" for p in self.partitions for r in range(self.rounds) for i in range(0, 300, 60)]
        self.mc.delete(self.name, ids=self.deleted)
        self.mc.create_alias(self.name, "e2e_varchar_alias")

    def truth(self) -> Truth:
        self.mc.load_collection(self.name)
        return _truth(self.mc, "default", self.name, "pk", "vec", DataType.FLOAT_VECTOR, self.deleted,
                      self.partitions, alias="e2e_varchar_alias", keep_loaded=True)


class _Int:
    """Int64 pk and every scalar width; 2 partitions, 1 shard, 2 segments per partition;
    IVF_FLAT; not loaded. (A third round would give 2.3 the 3 small segments per channel and
    partition that trigger an automatic compaction into one.)"""

    name, rounds = INT[1], 2
    partitions = ["_default", "pa"]

    def __init__(self, mc: MilvusClient) -> None:
        self.mc = mc
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("i8", DataType.INT8)
        schema.add_field("i16", DataType.INT16)
        schema.add_field("i32", DataType.INT32)
        schema.add_field("f", DataType.FLOAT)
        schema.add_field("s", DataType.VARCHAR, max_length=32)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=16)
        mc.create_collection(self.name, schema=schema, num_shards=1, consistency_level="Strong")
        index = mc.prepare_index_params()
        index.add_index("vec", index_type="IVF_FLAT", metric_type="IP", index_name="vec_ivf", params={"nlist": 16})
        mc.create_index(self.name, index)
        mc.create_partition(self.name, "pa")
        self.n = 0

    def insert(self, rnd: int) -> None:
        for k, part in enumerate(self.partitions):
            n = self.n
            rows = [{"id": n + i, "i8": (n + i) % 127 - 60, "i16": (n + i) * 3 % 30000, "i32": (n + i) * 1001,
                     "f": (n + i) / 8, "s": f"s{n + i}", "vec": _vec(n + i, k, 16)} for i in range(250)]
            self.n += 250
            self.mc.insert(self.name, rows, partition_name=part)

    def finish(self) -> None:
        self.deleted = list(range(3, self.n, 61))
        self.mc.delete(self.name, ids=self.deleted)

    def truth(self) -> Truth:
        return _truth(self.mc, "default", self.name, "id", "vec", DataType.FLOAT_VECTOR, self.deleted, self.partitions)


class _Auto:
    """Auto id, a partition key (2 partitions), binary vectors, JSON and a dynamic field, in
    db2; BIN_IVF_FLAT; not loaded; an alias."""

    name, rounds = AUTO[1], 2

    def __init__(self, mc: MilvusClient) -> None:
        self.mc = mc
        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=True)
        schema.add_field("id", DataType.INT64, is_primary=True, auto_id=True)
        schema.add_field("category", DataType.INT64, is_partition_key=True)
        schema.add_field("doc", DataType.JSON)
        schema.add_field("bvec", DataType.BINARY_VECTOR, dim=BDIM)
        mc.create_collection(self.name, schema=schema, num_partitions=2, consistency_level="Strong")
        index = mc.prepare_index_params()
        index.add_index("bvec", index_type="BIN_IVF_FLAT", metric_type="HAMMING", index_name="bvec_ivf",
                        params={"nlist": 8})
        mc.create_index(self.name, index)
        self.ids: list[int] = []

    def insert(self, rnd: int) -> None:
        rows = [{"category": i % 7, "doc": {"k": [i, rnd]}, "bvec": _bvec(i + 600 * rnd), "tag": f"g{i % 3}"}
                for i in range(600)]
        self.ids += list(self.mc.insert(self.name, rows)["ids"])

    def finish(self) -> None:
        self.deleted = self.ids[5::60]
        self.mc.delete(self.name, ids=self.deleted)
        self.mc.create_alias(self.name, "e2e_auto_alias")

    def truth(self) -> Truth:
        return _truth(self.mc, DB2, self.name, "id", "bvec", DataType.BINARY_VECTOR, self.deleted,
                      self.mc.list_partitions(self.name), alias="e2e_auto_alias")


def _truth(mc: MilvusClient, db: str, name: str, pk: str, vector: str, vtype: DataType, deleted: list,
           partitions: list[str], *, alias: str = "", keep_loaded: bool = False) -> Truth:
    """Read the collection back; one left unloaded is loaded for the read, then released."""
    if not keep_loaded:
        mc.load_collection(name)
    rows = read_rows(mc, name, pk)
    if not keep_loaded:
        mc.release_collection(name)
    indexes = {i: _index_view(mc.describe_index(name, i)) for i in mc.list_indexes(name)}
    return Truth(db, name, pk, vector, vtype, rows, deleted, partitions, alias, keep_loaded, indexes)


def _index_view(desc: dict[str, Any]) -> dict[str, Any]:
    """What a rebuilt index must reproduce (ids, progress and row counts are the server's own)."""
    drop = {"total_rows", "indexed_rows", "pending_index_rows", "state", "index_state_fail_reason"}
    return {k: v for k, v in desc.items() if k not in drop}


# --------------------------------------------------------------------------------------
# Reading back


def normalize(value: Any) -> Any:
    """A field value as plain Python: bytes for binary vectors, lists of floats, dicts."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and isinstance(value[0], (bytes, bytearray)):
            return bytes(value[0])  # pymilvus returns a binary vector as [b"..."]
        return [normalize(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return normalize(value.tolist())
    return value


def read_rows(mc: MilvusClient, name: str, pk: str) -> dict[Any, dict[str, Any]]:
    """Every row of a loaded collection, by primary key, every field and dynamic key included."""
    count = mc.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
    assert count <= MAX_ROWS, f"{name}: {count} rows, more than one query returns"
    rows = mc.query(name, filter="", output_fields=["*"], limit=MAX_ROWS, consistency_level="Strong")
    out = {}
    for r in rows:
        row = {k: normalize(v) for k, v in dict(r).items()}
        out[row[pk]] = row
    assert len(out) == count, f"{name}: read {len(out)} rows, count(*) says {count}"
    return out


def read_back_all(uri: str, items: list[tuple[str, str, Truth]]) -> list[dict[Any, dict[str, Any]]]:
    """read_back of several (db, collection, truth) at once: loading is mostly waiting."""
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(lambda item: read_back(uri, *item), items))


def read_back(uri: str, db: str, name: str, truth: Truth, *, release: bool = False) -> dict[Any, dict[str, Any]]:
    """Rows of a restored collection: indexed (FLAT) and loaded first when it is not yet."""
    mc = client(uri, db)
    try:
        if not mc.list_indexes(name):
            index = mc.prepare_index_params()
            if truth.vector_type == DataType.BINARY_VECTOR:
                index.add_index(truth.vector, index_type="BIN_FLAT", metric_type="HAMMING")
            else:
                index.add_index(truth.vector, index_type="FLAT", metric_type="L2")
            mc.create_index(name, index)
        was_loaded = load_state(mc, name) == "Loaded"
        if not was_loaded:
            mc.load_collection(name)
        rows = read_rows(mc, name, truth.pk)
        if release and not was_loaded:
            mc.release_collection(name)
        return rows
    finally:
        mc.close()


def load_state(mc: MilvusClient, name: str) -> str:
    state = mc.get_load_state(name)["state"]
    return getattr(state, "name", str(state))


def assert_same_rows(got: dict[Any, dict[str, Any]], truth: Truth) -> None:
    assert not set(truth.deleted) & set(got), f"{truth.label}: deleted rows came back"
    missing, extra = set(truth.rows) - set(got), set(got) - set(truth.rows)
    assert not missing and not extra, (f"{truth.label}: {len(missing)} rows missing (e.g. {sorted(missing)[:3]}), "
                                       f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    diffs = [pk for pk, row in truth.rows.items() if got[pk] != row]
    if diffs:
        pk = diffs[0]
        assert got[pk] == truth.rows[pk], f"{truth.label}: {len(diffs)} rows differ, first {pk!r}"


# --------------------------------------------------------------------------------------
# Running mbackup as a user would


def mbackup(config, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "milvus_backup"] + (["--config", str(config)] if config else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ))


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args[3:]} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one ``error:`` line of a failed run (warnings may precede it; no traceback)."""
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line:\n{result.stderr}"
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], f"the error is not the last line:\n{result.stderr}"
    return errors[0]

