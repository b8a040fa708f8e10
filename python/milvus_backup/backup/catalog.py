"""The backups under the backup root: where they live, which exist, what each holds.

Keys here are bucket keys, as the Go tool writes them: a backup is ``<root>/<name>/``
inside the backup bucket, and binlog ``log_path`` values are keys of the Milvus bucket.
A backup is complete when ``meta/backup_meta.json`` exists; mbackup writes it last, and
keeps a marker (``mbackup_in_progress.json``) while a create runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..config.settings import Config, StorageConfig
from ..errors import MBackupError, PartialError
from ..format import meta
from ..plugins.manager import storage_backends
from ..storage.location import BucketNotFound, Location, in_parallel
from .lock import StoreLock
from .pool import POOL_DIR

IN_PROGRESS = "mbackup_in_progress.json"
LOCK = "mbackup.lock"
MANIFEST = "mbackup_manifest.json"
# The server's jobs (server/jobs.py), beside the backups: no backup name starts with a dot.
JOBS_DIR = ".mbackup-jobs"


def in_progress_marker(backup_id: str, name: str, **what: Any) -> bytes:
    """The body of ``<backup>/mbackup_in_progress.json``: which run is writing the backup (id,
    name, process, host, start time) and what it was asked (``request``, ``export_of``...)."""
    return json.dumps({"id": backup_id, "name": name, "pid": os.getpid(), "host": socket.gethostname(),
                       "started": dt.datetime.now(dt.timezone.utc).isoformat(), **what}).encode()


class BackupError(MBackupError):
    """A backup could not be made; nothing that looks complete was left behind."""


class BackupIncomplete(BackupError, PartialError):
    """Some binlogs were not copied; the same create, run again, finishes the backup."""


class BackupNotFound(MBackupError):
    """No backup of that name under the backup root."""


@dataclass
class Stores:
    """The two buckets of a run, opened at their roots (keys are whole bucket keys)."""

    milvus: Location
    milvus_root: str
    backup: Location
    backup_root: str
    # The backup storage as configured: what Milvus is told to reach it with, for the
    # snapshot format, when it is not the store Milvus uses (None: not known).
    backup_config: StorageConfig | None = None

    @property
    def same_bucket(self) -> bool:
        """Can Milvus import straight from the backup's keys (its own bucket)?"""
        return self.milvus.same_bucket(self.backup)

    def backup_url(self, name: str = "") -> str:
        return "/".join(p for p in (self.backup.url, self.backup_root, name) if p)


def open_stores(cfg: Config) -> Stores:
    backends = storage_backends()
    milvus, milvus_root = backends.open_root(cfg.milvus.storage)
    backup, backup_root = backends.open_root(cfg.backup.storage)
    return Stores(milvus, milvus_root, backup, backup_root, backup_config=cfg.backup.storage)


def missing_buckets(stores: Stores) -> list[tuple[Location, str]]:
    """The buckets of a run that do not exist, each with the config key that names it
    (once when both sides name one bucket)."""
    sides = [(stores.milvus, "milvus.storage.bucketName")]
    if not stores.same_bucket:
        sides.append((stores.backup, "backup.storage.bucketName"))
    return [(location, key) for location, key in sides if not location.has_bucket()]


@dataclass
class BackupEntry:
    name: str
    complete: bool
    info: meta.BackupInfo | None = None
    error: str = ""
    written: float | None = None  # when backup_meta.json was written (the store's clock), seconds

    @property
    def taken(self) -> float | None:
        """When the backup was taken (seconds since the epoch): what its meta records, else
        when its meta was written; None when neither is known."""
        recorded = taken_at(self.info) if self.info else None
        return recorded if recorded is not None else self.written


# backup_timestamp at or above this is in milliseconds; the Go tool's first releases wrote seconds.
_MS_FROM = 100_000_000_000  # in seconds: the year 5138; in ms: 1973


def taken_at(info: meta.BackupInfo) -> float | None:
    """When a backup was taken, in seconds since the epoch, as its meta records it:
    ``backup_timestamp`` (ms, as mbackup and the Go tool up to 0.4 write it), else its
    collections' flush times (seconds) or hybrid timestamps (ms << 18), which the Go tool
    records with serial_flush. None for the Go tool's 0.5+ bulk_flush backups, which record
    no time at all."""
    if info.backup_timestamp:
        t = info.backup_timestamp
        return t / 1000 if t >= _MS_FROM else float(t)
    stamps = [float(c.backup_physical_timestamp) for c in info.collection_backups if c.backup_physical_timestamp]
    if not stamps:
        stamps = [(c.backup_timestamp >> 18) / 1000 for c in info.collection_backups if c.backup_timestamp]
    return max(stamps) if stamps else None


def collection_segments(coll: meta.CollectionBackupInfo) -> list[meta.SegmentBackupInfo]:
    """Every segment a collection's backup holds: its partitions' and its collection-level L0
    segments (``l0_segments``, Milvus 2.4+), which no partition lists."""
    return [s for p in coll.partition_backups for s in p.segment_backups] + list(coll.l0_segments)


def backup_dir(stores: Stores, name: str) -> str:
    # Every command that takes a name goes through here: the Go tool's naming rule keeps
    # names from reaching outside the backup root ("../x", "a/b").
    return meta.backup_dir(stores.backup_root, meta.validate_backup_name(name))


@contextlib.contextmanager
def backup_storage_errors(stores: Stores) -> Iterator[None]:
    """A missing bucket, while reading the backup storage, as one line naming the setting."""
    try:
        yield
    except BucketNotFound:
        raise MBackupError(f"the backup bucket {stores.backup.url} does not exist: check backup.storage.bucketName "
                           "(minio.backupBucketName in a v1 config)") from None


def list_backups(stores: Stores, *, read: bool = True) -> list[BackupEntry]:
    """Every directory under the backup root, complete or not."""
    with backup_storage_errors(stores):
        return _list_backups(stores, read)


def _list_backups(stores: Stores, read: bool) -> list[BackupEntry]:
    root = stores.backup_root
    dirs, _ = stores.backup.list_dirs(root)
    names = [name for name in sorted(d.rstrip("/").rsplit("/", 1)[-1] for d in dirs)
             if name not in (JOBS_DIR, POOL_DIR)]  # the server's jobs, the incremental backups' shared objects
    # Backups are looked at side by side: a root of a hundred nightly backups is read in the
    # time of a few, not of a hundred (list, and every create --incremental finding its base).
    return [entry for entry in in_parallel(lambda name: _list_entry(stores, name, read), names) if entry is not None]


def _list_entry(stores: Stores, name: str, read: bool) -> BackupEntry | None:
    root = stores.backup_root
    bdir = f"{root}/{name}" if root else name
    complete = stores.backup.exists(f"{bdir}/meta/{meta.BACKUP_META}")
    if not complete and not stores.backup.exists(f"{bdir}/{IN_PROGRESS}") and not stores.backup.list(bdir):
        return None  # an empty "directory" some stores keep after a delete
    entry = BackupEntry(name, complete)
    if complete and read:
        try:
            entry.info = read_backup(stores, name)
        except MBackupError as e:
            entry.error = str(e)
        if entry.info is None or taken_at(entry.info) is None:
            entry.written = meta_written(stores, bdir)  # bdir: also for a name get refuses
    return entry


def read_backup(stores: Stores, name: str) -> meta.BackupInfo:
    """The backup's meta, full_meta.json preferred; one clear line when it is missing or damaged."""
    with backup_storage_errors(stores):
        return _read_backup(stores, name)


def _read_backup(stores: Stores, name: str) -> meta.BackupInfo:
    bdir = backup_dir(stores, name)
    keys = [obj.key for obj in stores.backup.list(f"{bdir}/meta") if obj.key.rsplit("/", 1)[-1] in meta.META_FILES]
    files = {key.rsplit("/", 1)[-1]: data for key, data in stores.backup.read_many(keys).items()}
    if not files:
        where = stores.backup_url(name)
        if stores.backup.exists(f"{bdir}/{IN_PROGRESS}"):
            raise BackupNotFound(f"backup {name!r} is incomplete (a create did not finish) at {where}: "
                                 f"delete it with mbackup delete -n {name}")
        raise BackupNotFound(f"no backup named {name!r} at {where} (mbackup list shows the backups there)")
    return meta.read_meta_files(files)


def meta_written(stores: Stores, bdir: str) -> float | None:
    """When the backup at ``bdir`` had its backup_meta.json (written last) written, by the store's clock."""
    return stores.backup.modified(f"{bdir}/meta/{meta.BACKUP_META}")


def meta_size(stores: Stores, name: str) -> int:
    return sum(obj.size for obj in stores.backup.list(f"{backup_dir(stores, name)}/meta"))


# What only a backup directory holds: either tool's meta files, mbackup's own objects, and
# binlogs in the backup layout (all an interrupted create of either tool may have left).
_BACKUP_OBJECTS = {IN_PROGRESS, LOCK, *(f"{meta.META_DIR}/{n}" for n in (*meta.META_FILES, MANIFEST))}
_BACKUP_PREFIXES = ("binlogs/insert_log/", "binlogs/delta_log/")


def is_backup(bdir: str, keys: list[str]) -> bool:
    """Does a directory holding ``keys`` look like a backup, so that delete may empty it?"""
    rels = (key[len(bdir) + 1:] for key in keys)
    return any(rel in _BACKUP_OBJECTS or rel.startswith(_BACKUP_PREFIXES) for rel in rels)


@dataclass
class DeletePlan:
    """The objects a delete would remove, the lock not counted (``mbackup delete --dry-run``)."""

    name: str
    keys: list[str]
    to_move: int = 0  # objects other backups borrow, copied into the pool first (lending.py)

    def summary(self) -> dict[str, Any]:
        return {"dry_run": True, "name": self.name, "objects_to_delete": len(self.keys),
                "objects_to_move_into_pool": self.to_move}

    def lines(self) -> list[str]:
        moves = f", after copying {self.to_move:,} that other backups borrow into the pool" if self.to_move else ""
        return [f"would delete backup {self.name}: {len(self.keys):,} objects{moves}"]


def plan_delete(stores: Stores, name: str) -> DeletePlan:
    """Every refusal of a delete, found by reading only."""
    bdir = backup_dir(stores, name)
    with backup_storage_errors(stores):
        keys = backup_keys(stores.backup, bdir)
    if not keys:
        raise BackupNotFound(f"no backup named {name!r} at {stores.backup_url(name)} "
                             "(mbackup list shows the backups there)")
    if not is_backup(bdir, keys):
        raise MBackupError(f"{stores.backup_url(name)} is not a backup (no meta files, binlogs or mbackup "
                           "objects in it): mbackup delete only deletes backups; check the name and "
                           "backup.storage.rootPath")
    with backup_storage_errors(stores):
        delete_lock(stores, name).check_free()  # a create or delete running on it: refused as the real run is
    return DeletePlan(name, [k for k in keys if k != f"{bdir}/{LOCK}"])


def delete_lock(stores: Stores, name: str) -> StoreLock:
    return StoreLock(stores.backup, f"{backup_dir(stores, name)}/{LOCK}", f"backup {name!r}", command="delete",
                     on_loss="run the delete again")


def backup_keys(backup: Location, bdir: str) -> list[str]:
    return [obj.key for obj in backup.list(bdir) if obj.key.startswith(bdir + "/")]
