"""The contract between the backup/restore flows and a Milvus line.

The flows (``backup/create.py``, ``backup/restore.py``) never speak to Milvus directly: they ask an
adapter, and find binlogs in storage through its :class:`StorageLayout`. What a line does
differently (import v2, L0 segments, REST segment describe, GC tickets, FlushAll, storage v2)
is the adapter plugin's business, not the flows'.

Metadata is exchanged as the meta dataclasses of ``milvus_backup.format.meta`` (the Go tool's
JSON model), so what an adapter reads is exactly what a backup stores.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, NoReturn

from ...format import meta
from ..connection import MilvusError

#: Backup strategies that came with a Milvus newer than any line mbackup has an adapter for,
#: and the version that brings each: ``mbackup create`` refuses them before connecting.
NEWER_STRATEGIES: dict[str, str] = {}

#: The partition id of a collection-level L0 segment (deletes that apply to every partition):
#: its delta logs are under ``delta_log/<collection>/-1/<segment>/``.
ALL_PARTITIONS = -1

# Ids are int64: a longer run of digits in a listed key is not a binlog's (and would not convert).
_ID = r"(-?\d{1,19})"


@dataclass(frozen=True)
class SegmentRef:
    """A flushed segment as the server reports it (binlogs are found in storage)."""

    segment_id: int
    collection_id: int
    partition_id: int
    num_rows: int
    is_l0: bool = False
    storage_version: int = 0


@dataclass(frozen=True)
class BinlogKey:
    """What a binlog's key says about it."""

    collection_id: int
    partition_id: int
    segment_id: int
    field_id: int | None  # None: a delta log (deletes of the whole segment)
    log_id: int


@dataclass(frozen=True)
class StorageLayout:
    """Where a Milvus line keeps binlogs, relative to its root path: insert logs at
    ``insert_log/<collection>/<partition>/<segment>/<field>/<log>``, delta logs at
    ``delta_log/<collection>/<partition>/<segment>/<log>``. From 2.4, a collection-level L0
    segment's partition is :data:`ALL_PARTITIONS`; on storage v2 (2.6) ``<field>`` is a
    column group id."""

    insert_log: str = "insert_log"
    delta_log: str = "delta_log"

    def insert_prefix(self, collection_id: int, partition_id: int, segment_id: int) -> str:
        return f"{self.insert_log}/{collection_id}/{partition_id}/{segment_id}/"

    def delta_prefix(self, collection_id: int, partition_id: int, segment_id: int) -> str:
        return f"{self.delta_log}/{collection_id}/{partition_id}/{segment_id}/"

    def collection_prefixes(self, collection_id: int) -> tuple[str, ...]:
        """Where to list a collection's binlogs: one LIST each finds every segment's."""
        return f"{self.insert_log}/{collection_id}", f"{self.delta_log}/{collection_id}"

    def parse(self, key: str) -> BinlogKey | None:
        """The ids in a binlog's key (relative to the root path); None for any other key."""
        m = re.fullmatch(rf"{re.escape(self.insert_log)}/{_ID}/{_ID}/{_ID}/{_ID}/{_ID}", key)
        if m:
            return BinlogKey(*(int(g) for g in m.groups()))
        m = re.fullmatch(rf"{re.escape(self.delta_log)}/{_ID}/{_ID}/{_ID}/{_ID}", key)
        if m:
            collection_id, partition_id, segment_id, log_id = (int(g) for g in m.groups())
            return BinlogKey(collection_id, partition_id, segment_id, None, log_id)
        return None


@dataclass(frozen=True)
class SegmentBinlogs:
    """A segment's binlogs as the server names them (not as storage lists them): log ids of
    each field's (or column group's) insert logs, and of its delta logs."""

    inserts: dict[int, tuple[int, ...]]
    deltas: tuple[int, ...] = ()
    v_channel: str = ""


class BinlogDescribeFailed(MilvusError):
    """The server could not name a collection's binlogs: the flow finds them by listing."""


@dataclass(frozen=True)
class FlushAllResult:
    """What a FlushAll reports, recorded in the backup as the Go tool records it."""

    control_channel: str = ""
    physical_channels: tuple[str, ...] = ()
    messages_base64: dict[str, str] = field(default_factory=dict)  # pchannel -> base64(proto message)


class ImportState(Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass
class ImportStatus:
    state: ImportState
    progress: int = 0  # percent
    reason: str = ""
    rows: int = 0  # rows the job wrote; see MilvusAdapter.import_rows_range
    collection_id: int = 0  # the collection the job imports into (0: the server does not say)
    partition: str = ""  # and its partition ("": the server does not say)


#: When the imports of one collection start: a job waits for every job of an earlier stage in
#: its partition (in every partition, for a collection-wide job). The Go tool's order: a
#: partition's data, then its L0 deletes, then the collection-level L0 deletes last.
STAGE_DATA, STAGE_PARTITION_L0, STAGE_COLLECTION_L0 = 0, 1, 2


def data_segments(p: meta.PartitionBackupInfo) -> list[meta.SegmentBackupInfo]:
    """The segments of a partition that hold rows (L0 segments hold deletes only)."""
    return [s for s in p.segment_backups if not s.is_l0]


@dataclass(frozen=True)
class ImportJob:
    """One backup-mode import, as a line's adapter plans it (:meth:`MilvusAdapter.import_jobs`)."""

    key: str  # unique within the collection's restore: names the job in the restore journal
    partition: str  # the target partition; "" for the whole collection (collection-level L0)
    files: tuple[tuple[str, str], ...]  # (insert prefix, delta prefix), "" for none, per segment group
    segments: tuple[meta.SegmentBackupInfo, ...]  # what the prefixes hold, staged before the import
    l0: bool = False  # L0 segments: deletes only, imported with l0_import; no rows to check
    storage_version: int = 0
    stage: int = STAGE_DATA
    batched: bool = False  # several segments in one job, through the REST import
    by_partition: bool = False  # the partition's whole prefixes at once (Milvus 2.3, backups without group ids)

    @property
    def what(self) -> str:
        """The job in a message: ``partition 'p' (segment 7)``."""
        where = f"partition {self.partition!r}" if self.partition else "collection-level deletes"
        if self.by_partition or not self.segments:
            return where
        kind = "L0 segment" if self.l0 else "segment"
        first = self.segments[0].segment_id
        return f"{where} ({kind} {first})" if len(self.segments) == 1 else \
            f"{where} ({len(self.segments)} {kind}s from {first})"

    def waits_for(self, other: ImportJob) -> bool:
        return other.stage < self.stage and (not self.partition or other.partition == self.partition)

    def under(self, prefix: str) -> ImportJob:
        """The job reading staged copies of its files, under ``prefix`` in the Milvus bucket."""
        moved = tuple(tuple(f"{prefix}/{f}" if f else "" for f in group) for group in self.files)
        return replace(self, files=moved)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SnapshotJob:
    """How a snapshot export or restore job is doing, as the server reports it."""

    state: ImportState
    progress: int = 0  # percent
    reason: str = ""
    metadata_uri: str = ""  # export: where the bundle's metadata landed (set once completed)
    total_files: int = 0
    total_bytes: int = 0  # export: the whole bundle's, known once completed
    target: tuple[str, str] = ("", "")  # restore: the (database, collection) the job restores into


@dataclass
class CreateCollectionSpec:
    """What restore asks an adapter to create; built from a CollectionBackupInfo."""

    db_name: str
    collection_name: str
    schema: meta.CollectionSchema
    shards_num: int
    consistency_level: int
    properties: list[meta.KeyValuePair] = field(default_factory=list)
    num_partitions: int = 0  # for partition-key collections


# --- what a line restores -----------------------------------------------------------------

#: What a backup may need of the Milvus line it is restored into, and the first line that has
#: each (shared/notes/milvus-lines.md). Restore refuses a backup needing what the target's line
#: lacks, before creating anything.
FEATURES_SINCE: dict[str, str] = {
    "bfloat16_vector": "2.4", "sparse_float_vector": "2.4", "several_vector_fields": "2.4", "l0_import": "2.4",
    "clustering_key": "2.4",
    "nullable": "2.5", "default_value": "2.5", "functions": "2.5",
    "int8_vector": "2.6", "struct_array": "2.6", "geometry": "2.6", "timestamptz": "2.6", "storage_v2": "2.6",
    "text": "3.0", "snapshot_restore": "3.0",
}

_T = meta.DataType
#: The data types of every line: 2.3's. Float16Vector among them: a 2.3.5 server takes it
#: (tests/test_golden.py), though the notes date it to 2.4.
BASE_TYPES = frozenset({_T.Bool, _T.Int8, _T.Int16, _T.Int32, _T.Int64, _T.Float, _T.Double, _T.String, _T.VarChar,
                        _T.Array, _T.JSON, _T.BinaryVector, _T.FloatVector, _T.Float16Vector})
#: The feature each newer data type needs. A type in neither table is one no line mbackup
#: knows has: refused, since a 2.3.5 server creates a field of a type it does not know without
#: a word (and an insert into a BFloat16Vector field brought one down).
TYPE_FEATURES: dict[int, str] = {
    _T.BFloat16Vector: "bfloat16_vector", _T.SparseFloatVector: "sparse_float_vector", _T.Int8Vector: "int8_vector",
    _T.ArrayOfVector: "struct_array", _T.ArrayOfStruct: "struct_array", _T.Struct: "struct_array",
    _T.Geometry: "geometry", _T.Timestamptz: "timestamptz", _T.Text: "text",
}


def line_of(version: str) -> tuple[int, int] | None:
    """``"v2.5.8"`` or ``"2.5"`` -> (2, 5); None when it names no release line."""
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def _lines_of(table: dict[str, str]) -> dict[str, tuple[int, int]]:
    """``table``'s versions as (major, minor); a version that names no line is a bug here."""
    out = {}
    for feature, since in table.items():
        line = line_of(since)
        if line is None:
            raise ValueError(f"{feature}: {since!r} is not a Milvus line")
        out[feature] = line
    return out


_FEATURE_LINES = _lines_of(FEATURES_SINCE)


@dataclass(frozen=True)
class HowTested:
    """How an adapter is tested, which ``mbackup check`` and the README's table of lines show."""

    how: str = ""  # "live" (against a real server), "contract" (a wire contract only), "" (not by mbackup)
    against: str = ""

    def __str__(self) -> str:
        if self.how == "live":
            return f"live-tested {self.against}"
        if self.how == "contract":
            return f"contract-tested only: {self.against}"
        return "not tested by mbackup"


@dataclass(frozen=True)
class Capabilities:
    """What a Milvus line can restore: the features of :data:`FEATURES_SINCE` it has, the
    segment storage versions its backup-mode import reads, and the newest line whose backups
    it takes (the Go tool's rule: a backup restores into the same or a newer line)."""

    line: str
    features: frozenset[str]
    storage_versions: frozenset[int]
    newest_backup_line: str

    @classmethod
    def of_line(cls, line: str, *, newest_backup_line: str = "") -> Capabilities:
        """Everything that came with ``line`` or before. Storage version 0 is every line's, 1
        (2.4's experimental format) is read from 2.4 on, 2 from 2.6 on; no line's backup-mode
        import reads 3 (milvus#52930)."""
        mine = line_of(line)
        if mine is None:
            raise ValueError(f"{line!r} is not a Milvus line (major.minor)")
        features = frozenset(f for f, since in _FEATURE_LINES.items() if since <= mine)
        versions = {0} | ({1} if mine >= (2, 4) else set()) | ({2} if "storage_v2" in features else set())
        return cls(line, features, frozenset(versions), newest_backup_line or line)

    def has(self, feature: str) -> bool:
        return feature in self.features
@dataclass
class RbacRestored:
    """What :meth:`MilvusAdapter.restore_rbac` created, and the users it left as they were."""

    users: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    grants: int = 0
    privilege_groups: list[str] = field(default_factory=list)
    existing_users: list[str] = field(default_factory=list)  # on the server already: not changed
    # Left out because the server has no privilege groups (before 2.5): the groups, and the
    # grants of a group rather than of a privilege.
    unsupported_groups: list[str] = field(default_factory=list)
    unsupported_grants: int = 0


class MilvusAdapter(ABC):
    """One Milvus server of one line. Implementations must be safe to call from one thread
    at a time; the flows do not share an adapter across threads."""

    #: The server's version, e.g. "v2.3.5".
    version: str
    #: How the adapter is tested, which ``mbackup check`` shows: against which live server,
    #: or only against a wire contract.
    tested: HowTested = HowTested()
    #: Whether restore into the line is built; False: every creating method refuses.
    restores: bool = True
    #: Which registered adapter serves the server, and why: set by the registry, shown by check.
    served_by: str = ""
    layout: StorageLayout = StorageLayout()
    #: What the line restores. The default is 2.3's: it also takes 2.4 and 2.5 backups (the Go
    #: tool restores nothing into 2.3; their storage v0 binlogs import on 2.3.5, tested live),
    #: each feature it lacks refused by restore. Adapters of newer lines set their own.
    capabilities: Capabilities = Capabilities.of_line("2.3", newest_backup_line="2.5")

    # --- reading what exists -------------------------------------------------------------
    @abstractmethod
    def list_databases(self) -> list[str]: ...

    @abstractmethod
    def list_collections(self, db: str) -> list[str]: ...

    @abstractmethod
    def has_collection(self, db: str, collection: str) -> bool: ...

    def collection_id(self, db: str, collection: str) -> int | None:
        """The server's id of ``db.collection``; None when there is no such collection. Restore
        binds its journal to it: a collection dropped and made again under the same name has
        another id."""
        if not self.has_collection(db, collection):
            return None
        return self.describe_collection(db, collection).collection_id

    @abstractmethod
    def describe_collection(self, db: str, collection: str) -> meta.CollectionBackupInfo:
        """Everything but segments: id, schema (every field property, the dynamic field
        flag), shards, consistency level, properties, indexes, partitions (ids, names, load
        state), load state, aliases, channels, created timestamp, db id when known."""

    def describe_database(self, db: str) -> meta.DatabaseBackupInfo:
        return meta.DatabaseBackupInfo(db_name=db)

    def backup_rbac(self) -> dict[str, Any]:
        """Users (with their password hashes), roles, grants and privilege groups, as the Go
        tool writes ``rbac_meta`` (omitempty, its key order)."""
        raise MilvusError(f"Milvus {self.version} cannot back up users and roles: leave out --rbac")

    # --- consistency of what is read -----------------------------------------------------
    @abstractmethod
    def flush(self, db: str, collection: str) -> None:
        """Seal growing segments and wait until they are flushed to storage."""

    def can_flush_all(self) -> bool:
        """Whether :meth:`flush_all` is there (the ``bulk_flush`` strategy)."""
        return False

    def flush_all(self) -> FlushAllResult:
        """Seal every collection of the cluster at once and wait until flushed."""
        raise MilvusError(f"Milvus {self.version} cannot flush all collections at once: use --strategy serial_flush")

    def pause_gc(self, seconds: int, collection_ids: Sequence[int] = ()) -> bool:
        """Ask the server not to garbage-collect the binlogs of ``collection_ids`` (or of
        every collection) for ``seconds``, renewed until :meth:`resume_gc`. Returns False when
        the server has no such control or held only part of it (the caller warns and goes
        on)."""
        return False

    def resume_gc(self) -> None:
        """End what :meth:`pause_gc` held; nothing when nothing is held. Raises
        :class:`MilvusError` naming what it could not release."""
        return None

    @abstractmethod
    def list_segments(self, db: str, collection: str) -> list[SegmentRef]:
        """Flushed segments of the collection (growing ones are not in storage)."""

    def segment_binlogs(self, db: str, collection_id: int, segments: Sequence[SegmentRef]) -> dict[int, SegmentBinlogs]:
        """The exact binlogs of each segment, by segment id, where the server names them
        (orphans a compaction left in storage are then not backed up); {} when it cannot, and
        the flow lists storage. Raises :class:`BinlogDescribeFailed` when it should have
        answered and did not."""
        return {}

    # --- creating on restore ---------------------------------------------------------------
    @abstractmethod
    def create_database(self, db: str) -> None:
        """Create ``db`` if it does not exist."""

    @abstractmethod
    def drop_collection(self, db: str, collection: str) -> None: ...

    @abstractmethod
    def create_collection(self, spec: CreateCollectionSpec) -> None:
        """Create the collection from a backed-up schema. The dynamic field (``$meta``) is
        never sent: the server adds it when the schema enables dynamic fields."""

    @abstractmethod
    def create_partition(self, db: str, collection: str, partition: str) -> None:
        """Create ``partition`` if it does not exist."""

    @abstractmethod
    def create_index(self, db: str, collection: str, index: meta.IndexInfo) -> None: ...

    @abstractmethod
    def drop_indexes(self, db: str, collection: str) -> None: ...

    @abstractmethod
    def load_collection(self, db: str, collection: str) -> None:
        """Load and wait until loaded."""

    @abstractmethod
    def create_alias(self, db: str, collection: str, alias: str) -> None: ...

    # --- importing data -------------------------------------------------------------------
    def import_jobs(self, collection: meta.CollectionBackupInfo, bdir: str, *, batch: int = 0) -> list[ImportJob]:
        """The imports that restore ``collection``'s data from the backup at ``bdir``, in the
        order to start them. ``batch`` > 0 asks for up to that many segments per job (see
        :meth:`can_batch_imports`). This default is Milvus 2.3's: one job per partition over
        the partition's whole prefixes, its delta logs applied while the import reads."""
        jobs = []
        for p in collection.partition_backups:
            # L0 segments hold deletes only, which a 2.3 import never reads (it skips the delta
            # logs of a segment without insert logs); restore refused them unless --skip-l0
            # (backup/compat.py).
            segments = data_segments(p)
            if not segments:
                continue
            has_delta = any(fb.binlogs for s in segments for fb in s.deltalogs)
            dirs = meta.partition_import_dirs(bdir, collection.collection_id, p.partition_id, with_delta=has_delta)
            jobs.append(ImportJob(p.partition_name, p.partition_name, ((dirs.insert or "", dirs.delta or ""),),
                                  tuple(segments), by_partition=True))
        return jobs

    def can_batch_imports(self) -> bool:
        """Whether :meth:`import_jobs` can put several segments in one job."""
        return False

    def start_import_job(self, db: str, collection: str, job: ImportJob) -> str:
        """Start ``job``; returns an id for :meth:`import_status`. This default sends it as
        :meth:`start_import` does: one group of prefixes, backup mode."""
        if job.l0 or job.storage_version or len(job.files) != 1:
            raise MilvusError(f"Milvus {self.version} cannot import {job.what} of {db}.{collection}: it imports "
                              "one partition of storage-version-0 data segments per job")
        return self.start_import(db, collection, job.partition, list(job.files[0]))

    @abstractmethod
    def start_import(self, db: str, collection: str, partition: str, files: list[str]) -> str:
        """Start a backup-mode bulk import of binlog prefixes that live in the server's own
        bucket (``files`` = [insert prefix, delta prefix or ""]); returns a job id."""

    @abstractmethod
    def import_status(self, db: str, job_id: str) -> ImportStatus: ...

    @abstractmethod
    def import_rows_range(self, inserted: int, delete_records: int) -> tuple[int, int]:
        """(fewest, most) rows a complete backup-mode import of one partition reports in
        :attr:`ImportStatus.rows`, for binlogs holding ``inserted`` rows (the sum of the
        segments' ``num_of_rows``) and ``delete_records`` delete records (counted in their
        delta logs). Restore fails a partition whose import reports anything else: rows were
        lost, or added, between the backup and Milvus. Whether and how an import subtracts
        the deletes differs between Milvus lines."""

    def import_found_nothing(self, rows: int) -> bool:
        """Whether a completed import reporting ``rows``, fewer than :meth:`import_rows_range`
        allows, may have found no binlogs at all under the prefixes it was given (a wrong
        bucket or root path) rather than lost rows. A line whose server fails such an import
        itself answers False."""
        return False

    # --- snapshots (the snapshot format, Milvus 3.0+) ----------------------------------------
    # Milvus itself copies a collection's files into a bundle and restores from one; the
    # flow (backup/snapshot.py) orders the calls. Lines without snapshots refuse each one.

    def can_snapshot(self) -> bool:
        """Whether the server has CreateSnapshot, ExportSnapshot and RestoreExternalSnapshot."""
        return False

    def _no_snapshots(self) -> NoReturn:
        raise MilvusError(f"Milvus {self.version} has no snapshots (they came with Milvus 3.0): use --format binlog")

    def create_snapshot(self, db: str, collection: str, name: str) -> None:
        """Freeze ``db.collection`` as snapshot ``name``."""
        self._no_snapshots()

    def snapshot_timestamp(self, db: str, collection: str, name: str) -> int:
        """When snapshot ``name`` was made (hybrid timestamp): the backup's boundary."""
        self._no_snapshots()

    def export_snapshot(self, db: str, collection: str, name: str, target_uri: str, external_spec: str = "") -> int:
        """Have the server copy snapshot ``name`` into a bundle under ``target_uri``; a job id.
        ``external_spec``: the extfs JSON that lets it reach a store it does not use itself."""
        self._no_snapshots()

    def export_snapshot_state(self, job_id: int) -> SnapshotJob:
        self._no_snapshots()

    def drop_snapshot(self, db: str, collection: str, name: str) -> None:
        self._no_snapshots()

    def restore_external_snapshot(self, db: str, collection: str, metadata_uri: str, external_spec: str = "") -> int:
        """Have the server create ``db.collection`` from the bundle whose metadata is at
        ``metadata_uri`` (schema, indexes, partitions, data); a job id. ``external_spec`` as
        for :meth:`export_snapshot`."""
        self._no_snapshots()

    def restore_snapshot_state(self, job_id: int) -> SnapshotJob:
        self._no_snapshots()

    def count_rows(self, db: str, collection: str) -> int:
        """Rows visible to a query (used by checks and tests); needs the collection loaded."""
        raise NotImplementedError

    # --- access control ---------------------------------------------------------------------
    def can_restore_rbac(self) -> bool:
        """Whether :meth:`restore_rbac` is there."""
        return False

    def restore_rbac(self, rbac: dict[str, Any]) -> RbacRestored:
        """Create the users, roles, grants and privilege groups of a backup's ``rbac_meta``
        (as the Go tool writes it) that the server does not have yet. An existing user is
        left as it is: its password is never replaced."""
        raise MilvusError(f"Milvus {self.version} cannot restore users and roles (RestoreRBAC came with Milvus 2.4.10)")

    def can_restore_secondary(self) -> bool:
        """Whether the server takes a secondary restore (``mbackup restore secondary``): the
        replicate stream of Milvus 2.6+, through ``open_replicate_stream`` and friends
        (``adapters/replicate.py``)."""
        return False

    def can_restore_database_properties(self) -> bool:
        """Whether ``create_database`` takes the backed-up ``properties`` of a database."""
        return False

    def close(self) -> None:
        return None

