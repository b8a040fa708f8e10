"""The contract server's in-memory cluster: databases, collections (schema, partitions,
segments with level and storage version, aliases, indexes), GC holds, import jobs and RBAC.

Tests seed it with the ``add_*`` methods and write the binlogs their segments name into a
real store with :meth:`State.write_binlogs`, so a backup finds them where a Milvus of the
line keeps them.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from .profiles import Profile

L0, L1 = common_pb2.SegmentLevel.L0, common_pb2.SegmentLevel.L1
FLUSHED, GROWING, DROPPED = common_pb2.SegmentState.Flushed, common_pb2.SegmentState.Growing, common_pb2.SegmentState.Dropped
ALL_PARTITIONS = -1  # where collection-level L0 segments live
ROW_ID, TIMESTAMP = 0, 1  # the system fields every segment has binlogs for


@dataclass
class Database:
    name: str
    id: int
    properties: dict[str, str] = field(default_factory=dict)
    created: int = 0


@dataclass
class Segment:
    id: int
    collection_id: int
    partition_id: int
    rows: int
    level: int = L1
    state: int = FLUSHED
    storage_version: int = 0
    inserts: dict[int, list[int]] = field(default_factory=dict)  # field (or column group) -> log ids
    deltas: list[int] = field(default_factory=list)  # delta log ids
    vchannel: str = ""


@dataclass
class Collection:
    id: int
    db: str
    name: str
    schema: schema_pb2.CollectionSchema
    partitions: dict[str, int]  # name -> id
    shards: int = 1
    consistency_level: int = common_pb2.ConsistencyLevel.Bounded
    properties: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    indexes: list[milvus_pb2.IndexDescription] = field(default_factory=list)
    load_state: int = common_pb2.LoadState.LoadStateNotLoad
    created: int = 0
    segments: dict[int, Segment] = field(default_factory=dict)

    @property
    def vchannels(self) -> list[str]:
        return [f"by-dev-rootcoord-dml_{i}_{self.id}v{i}" for i in range(self.shards)]

    @property
    def pchannels(self) -> list[str]:
        return [f"by-dev-rootcoord-dml_{i}" for i in range(self.shards)]


@dataclass
class ImportJob:
    id: int
    db: str
    collection: str
    partition: str
    files: list[list[str]]
    options: dict[str, str]
    via: str  # "grpc" or "rest"
    state: str = "Completed"  # Pending, Importing, Completed, Failed
    progress: int = 100
    reason: str = ""
    rows: int = 0
    polls: int = 0  # how many more polls answer "Importing" before the outcome above
    committed: bool = False  # a replicated import (auto_commit=false) waits Uncommitted for its commit message

    def observe(self) -> tuple[str, int]:
        """(state, progress) as the next poll sees it."""
        if self.polls > 0:
            self.polls -= 1
            return "Importing", 50
        if self.state == "Completed" and self.options.get("auto_commit") == "false" and not self.committed:
            return "Uncommitted", 100
        return self.state, self.progress


@dataclass
class Snapshot:
    id: int
    db: str
    collection: str
    name: str
    create_ts: int


@dataclass
class SnapshotJob:
    """An export (ExportSnapshot) or restore (RestoreExternalSnapshot) job."""

    id: int
    kind: str  # "export" or "restore"
    db: str
    collection: str
    snapshot: str = ""
    state: str = "Completed"  # Pending, Executing, Completed, Failed
    reason: str = ""
    polls_left: int = 0  # answers "Executing" this many times before its outcome
    metadata_uri: str = ""
    total_files: int = 0
    total_bytes: int = 0


class MilvusFault(Exception):
    """A request the cluster refuses with an error status (code, reason), as Milvus does."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


# merr codes the adapters react to
COLLECTION_NOT_FOUND, INDEX_NOT_FOUND, DATABASE_NOT_FOUND, SEGMENT_NOT_FOUND = 100, 700, 800, 600
PARTITION_NOT_FOUND = 200


class State:
    """One cluster. Every method is safe to call from the server's threads and the test's."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.lock = threading.RLock()
        self._ids = itertools.count(451_000_000_000_000_001)
        self._logs = itertools.count(452_000_000_000_000_001)
        self.databases: dict[str, Database] = {}
        self.collections: dict[tuple[str, str], Collection] = {}
        self.gc_paused_until: float | None = None  # cluster-wide hold (GC_CLUSTER)
        self.gc_tickets: dict[str, int] = {}  # ticket -> collection id (0: cluster-wide), GC_TICKET
        self.gc_history: list[tuple[str, int, str]] = []  # ("pause"/"resume", collection id, ticket)
        self.imports: dict[int, ImportJob] = {}
        self.import_outcome: dict[str, Any] = {"state": "Completed", "progress": 100, "reason": "", "rows": 0}
        self.import_polls = 0  # each new import job answers "Importing" this many polls first
        # Rows an import of a binlog prefix writes, by the prefix's end ("insert_log/<c>/<p>/<group>/"):
        # the contract reads no binlogs, so a test says what a Milvus would have found there.
        self.rows_by_prefix: dict[str, int] = {}
        self.failing_files: dict[str, str] = {}  # an import naming a file with this in it fails, for this reason
        self.flush_polls = 0  # GetFlushState/GetFlushAllState answer "not yet" this many times
        self.rbac = milvus_pb2.RBACMeta()
        self.snapshots: dict[tuple[str, str, str], Snapshot] = {}
        self.snapshot_jobs: dict[int, SnapshotJob] = {}
        # How the next snapshot jobs end: polls answered "Executing" first, then state and reason.
        self.snapshot_outcome: dict[str, Any] = {"state": "Completed", "reason": "", "polls_left": 1}
        # Where ExportSnapshot writes bundles and RestoreExternalSnapshot reads them: a storage
        # Location at the root of the bucket the test's backups live in (as Milvus would reach
        # it with its own credentials); None: the contract cannot reach storage.
        self.bundle_store: Any = None
        self.bundle_bucket = ""
        self.add_database("default", db_id=1)

    # --- time ----------------------------------------------------------------------------

    @staticmethod
    def now_ts() -> int:
        """A hybrid timestamp (physical ms << 18), as Milvus' TSO hands out."""
        return int(time.time() * 1000) << 18

    # --- seeding -------------------------------------------------------------------------

    def add_database(self, name: str, *, db_id: int | None = None, properties: dict[str, str] | None = None) -> Database:
        with self.lock:
            db = Database(name, db_id if db_id is not None else next(self._ids), dict(properties or {}), self.now_ts())
            self.databases[name] = db
            return db

    def add_collection(self, db: str, name: str, schema: schema_pb2.CollectionSchema, *,
                       partitions: tuple[str, ...] = ("_default",), shards: int = 1, aliases: tuple[str, ...] = (),
                       properties: dict[str, str] | None = None, indexes: tuple[tuple[str, str], ...] = (),
                       load_state: int = common_pb2.LoadState.LoadStateNotLoad) -> Collection:
        """``indexes``: (field name, index type) pairs."""
        with self.lock:
            if db not in self.databases:
                self.add_database(db)
            schema = schema_pb2.CollectionSchema.FromString(schema.SerializeToString())
            schema.name = name
            next_field = itertools.count(100)
            for f in schema.fields:
                if not f.fieldID:
                    f.fieldID = next(next_field)
            coll = Collection(next(self._ids), db, name, schema, {p: next(self._ids) for p in partitions},
                              shards=shards, properties=dict(properties or {}), aliases=list(aliases),
                              load_state=load_state, created=self.now_ts())
            for field_name, index_type in indexes:
                coll.indexes.append(milvus_pb2.IndexDescription(
                    index_name=f"{field_name}_idx", indexID=next(self._ids), field_name=field_name,
                    params=[common_pb2.KeyValuePair(key="index_type", value=index_type),
                            common_pb2.KeyValuePair(key="metric_type", value="L2")]))
            self.collections[(db, name)] = coll
            return coll

    def add_segment(self, coll: Collection, partition: str | None = "_default", *, rows: int = 100,
                    level: int = L1, state: int = FLUSHED, storage_version: int | None = None,
                    logs_per_field: int = 1, deltas: int = 0, fields: list[int] | None = None) -> Segment:
        """A segment of ``partition`` (None: collection-level, partition -1, which only L0
        segments are). Its insert logs cover the system fields and every schema field (or
        ``fields``: column groups on storage v2); L0 segments have delta logs only."""
        with self.lock:
            pid = ALL_PARTITIONS if partition is None else coll.partitions[partition]
            seg = Segment(next(self._ids), coll.id, pid, 0 if level == L0 else rows, level, state,
                          self.profile.storage_version if storage_version is None else storage_version,
                          vchannel=coll.vchannels[0])
            if level != L0:
                ids = fields if fields is not None else [ROW_ID, TIMESTAMP, *(f.fieldID for f in coll.schema.fields)]
                seg.inserts = {f: [next(self._logs) for _ in range(logs_per_field)] for f in ids}
            seg.deltas = [next(self._logs) for _ in range(deltas)]
            coll.segments[seg.id] = seg
            return seg

    # --- storage -------------------------------------------------------------------------

    @staticmethod
    def insert_key(seg: Segment, field_id: int, log_id: int, root: str = "files") -> str:
        return f"{root}/insert_log/{seg.collection_id}/{seg.partition_id}/{seg.id}/{field_id}/{log_id}".lstrip("/")

    @staticmethod
    def delta_key(seg: Segment, log_id: int, root: str = "files") -> str:
        return f"{root}/delta_log/{seg.collection_id}/{seg.partition_id}/{seg.id}/{log_id}".lstrip("/")

    def binlogs(self, root: str = "files") -> dict[str, bytes]:
        """Every binlog key the cluster's non-dropped segments name, with made-up contents
        (not Milvus binlogs: what is checked is where they are and that they arrive whole)."""
        out: dict[str, bytes] = {}
        with self.lock:
            for coll in self.collections.values():
                for seg in coll.segments.values():
                    if seg.state == DROPPED:
                        continue
                    for f, logs in seg.inserts.items():
                        for log in logs:
                            out[self.insert_key(seg, f, log, root)] = f"insert {seg.id}/{f}/{log};".encode() * 7
                    for log in seg.deltas:
                        out[self.delta_key(seg, log, root)] = f"delta {seg.id}/{log};".encode() * 5
        return out

    def write_binlogs(self, location: Any, root: str = "files") -> dict[str, bytes]:
        """Write :meth:`binlogs` through a storage Location (``location.write(key, data)``)."""
        written = self.binlogs(root)
        for key, data in written.items():
            location.write(key, data)
        return written

    # --- lookups the handlers share --------------------------------------------------------

    def database(self, name: str) -> Database:
        db = self.databases.get(name)
        if db is None:
            raise MilvusFault(DATABASE_NOT_FOUND, f"database not found[database={name}]")
        return db

    def collection(self, db: str, name: str) -> Collection:
        self.database(db)
        coll = self.collections.get((db, name))
        if coll is None:
            raise MilvusFault(COLLECTION_NOT_FOUND, f"collection not found[database={db}][collection={name}]")
        return coll

    def collection_by_id(self, collection_id: int) -> Collection:
        for coll in self.collections.values():
            if coll.id == collection_id:
                return coll
        raise MilvusFault(COLLECTION_NOT_FOUND, f"collection not found[collection={collection_id}]")

    def gc_held(self) -> list[str]:
        """What still holds GC back: "cluster" for a cluster-wide pause, a ticket each otherwise."""
        held = list(self.gc_tickets)
        if self.gc_paused_until is not None and self.gc_paused_until > time.time():
            held.append("cluster")
        return held

    def next_id(self) -> int:
        return next(self._ids)

    def new_import(self, db: str, collection: str, partition: str, files: list[list[str]], options: dict[str, str],
                   via: str, job_id: int = 0) -> ImportJob:
        """An import job with the outcome the test set (``import_outcome``, ``import_polls``,
        ``failing_files``); its rows are those ``rows_by_prefix`` gives its insert prefixes, when
        it gives any."""
        outcome = dict(self.import_outcome)
        for part, reason in self.failing_files.items():
            if any(part in f for group in files for f in group):
                outcome.update(state="Failed", progress=0, reason=reason, rows=0)
        found = [rows for group in files if group for end, rows in self.rows_by_prefix.items() if group[0].endswith(end)]
        if found and outcome["state"] == "Completed":
            outcome["rows"] = sum(found)
        job = ImportJob(job_id or self.next_id(), db, collection, partition, files, options, via,
                        polls=self.import_polls, **outcome)
        self.imports[job.id] = job
        return job


def schema_field(name: str, data_type: int, **kw: Any) -> schema_pb2.FieldSchema:
    """A schema field; ``dim=8``, ``max_length=64`` and friends become type params."""
    params = {k: str(kw.pop(k)) for k in ("dim", "max_length", "max_capacity") if k in kw}
    return schema_pb2.FieldSchema(name=name, data_type=data_type,
                                  type_params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items()], **kw)
