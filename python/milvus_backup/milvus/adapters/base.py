"""The contract between the backup/restore flows and a Milvus line.

The flows (``backup/create.py``, ``backup/restore.py``) never call pymilvus directly: they ask an
adapter, and find binlogs in storage through its :class:`StorageLayout`.
Adding Milvus 2.4/2.5/2.6 support means writing an adapter plugin (import v2, L0 segments,
REST segment describe, GC tickets, storage v2), not touching the flows.

Metadata is exchanged as the meta dataclasses of ``milvus_backup.format.meta`` (the Go tool's
JSON model), so what an adapter reads is exactly what a backup stores.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum

from ...format import meta

#: Backup strategies that came with a Milvus newer than any line mbackup has an adapter for,
#: and the version that brings each: ``mbackup create`` refuses them before connecting.
NEWER_STRATEGIES = {"bulk_flush": "2.6.11"}

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
    ``delta_log/<collection>/<partition>/<segment>/<log>``."""

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


class MilvusAdapter(ABC):
    """One Milvus server of one line. Implementations must be safe to call from one thread
    at a time; the flows do not share an adapter across threads."""

    #: The server's version, e.g. "v2.3.5".
    version: str
    layout: StorageLayout = StorageLayout()

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

    # --- consistency of what is read -----------------------------------------------------
    @abstractmethod
    def flush(self, db: str, collection: str) -> None:
        """Seal growing segments and wait until they are flushed to storage."""

    def pause_gc(self, seconds: int) -> bool:
        """Ask the server not to garbage-collect binlogs for ``seconds``. Returns False when
        the server has no such control (the caller warns and goes on)."""
        return False

    def resume_gc(self) -> None:
        return None

    @abstractmethod
    def list_segments(self, db: str, collection: str) -> list[SegmentRef]:
        """Flushed segments of the collection (growing ones are not in storage)."""

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

    def count_rows(self, db: str, collection: str) -> int:
        """Rows visible to a query (used by checks and tests); needs the collection loaded."""
        raise NotImplementedError

    def close(self) -> None:
        return None

