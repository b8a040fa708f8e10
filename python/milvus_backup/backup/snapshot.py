"""The snapshot format (Milvus 3.0+): Milvus copies each collection itself, as the Go tool's
``--format snapshot`` has it (core/backup/coll_snapshot_task.go, core/restore/coll_snapshot_task.go).

Backup, per collection: CreateSnapshot ``mbk_<backup>`` (DescribeSnapshot: its create
timestamp is the collection's ``backup_timestamp``), ExportSnapshot into
``<backup dir>/bundle``, wait for the export job, record where its metadata landed (relative
to the backup directory) in ``snapshot_backup``, and drop the snapshot whatever happened. No
byte moves through mbackup, and the meta holds no partition or segment files.

Restore, per collection: RestoreExternalSnapshot of that metadata into the target name, and
wait: Milvus creates the collection, its indexes and partitions, and loads the data.

Milvus reaches the bundle with its own credentials, so the backup must live on the object
store Milvus uses (the Go tool's case without an external spec); another store is refused
before anything is made.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

from ..errors import MBackupError
from ..format import meta
from ..milvus.adapters.base import ImportState, MilvusAdapter, SnapshotJob
from ..milvus.connection import MilvusError
from ..storage.location import Location, split_url
from ..transfer.progress import Reporter
from .catalog import Stores

BUNDLE_DIR = "bundle"
# Backup names may start with a digit, snapshot names may not: the Go tool's prefix.
SNAPSHOT_PREFIX = "mbk_"
POLL_SECONDS = 1.0
NO_PROGRESS_SECONDS = 3600.0
# A drop right after the export ends can be refused while Milvus releases the export's pin.
DROP_TRIES, DROP_PAUSE = 10, 1.0


class SnapshotError(MBackupError):
    """A snapshot export or restore was refused or failed."""


def resolve_format(adapter: MilvusAdapter, asked: str, strategy: str = "") -> str:
    """The meta ``format`` to write for ``asked`` (one of config.params.FORMATS, checked by
    CreateRequest.validate): auto is the snapshot format where the server has snapshots,
    binlog before; snapshot on a server without them is refused. A meta_only backup exports
    nothing, so it is in the binlog format (restorable with --meta-only), where the Go tool
    would write a snapshot-format backup without bundles that neither tool restores."""
    if asked == "snapshot" and strategy == "meta_only":
        raise SnapshotError("--strategy meta_only exports no snapshot, so it cannot be in the snapshot format: "
                            "leave out --format snapshot")
    if asked == "snapshot" and not adapter.can_snapshot():
        raise SnapshotError(f"--format snapshot needs Milvus 3.0 or newer, and Milvus {adapter.version} has no "
                            "snapshots: use --format binlog (or auto)")
    if asked == "binlog" or strategy == "meta_only" or not adapter.can_snapshot():
        return meta.FORMAT_BINLOG
    return meta.FORMAT_SNAPSHOT


def _server_of(location: Location) -> str:
    # The backend names a bucket "s3://<bucket> at <endpoint>": what follows " at " is the server.
    return location.bucket_id.partition(" at ")[2]


def backup_dir_uri(stores: Stores, bdir: str) -> str:
    """``s3://<bucket>/<bdir>``: the backup directory as Milvus resolves it, through its own
    storage config (no endpoint, no credentials on the wire). Refused unless the backup is on
    the object store Milvus uses."""
    backup, milvus = stores.backup, stores.milvus
    if backup.scheme != "s3" or milvus.scheme != "s3" or not _server_of(backup) \
            or _server_of(backup) != _server_of(milvus):
        raise SnapshotError(f"the snapshot format needs the backup storage ({backup.url}) on the object store Milvus "
                            f"uses ({milvus.url}): Milvus writes and reads the bundle itself, with its own credentials. "
                            "Put backup.storage on Milvus' endpoint, or use --format binlog")
    bucket = split_url(backup.url).bucket
    return f"s3://{bucket}/{backup.key(bdir).strip('/')}"


def metadata_path(target_uri: str, metadata_uri: str) -> str:
    """The metadata a finished export reports (a URI under ``target_uri``), relative to the
    backup directory: ``bundle/snapshots/<coll>/metadata/<id>.json``. A URI elsewhere is an
    error: the backup would not hold its own bundle."""
    root = target_uri.rstrip("/") + "/"
    rel = metadata_uri[len(root):] if metadata_uri.startswith(root) else ""
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        raise SnapshotError(f"Milvus reported the snapshot metadata at {metadata_uri or 'no address'}, not under "
                            f"{target_uri}, where it was asked to export it")
    return f"{BUNDLE_DIR}/{rel}"


def wait_job(state: Callable[[], SnapshotJob], what: str) -> SnapshotJob:
    """Poll a job until it completes; a failed job, or one making no progress for an hour,
    raises."""
    last, changed = -1, time.monotonic()
    while True:
        job = state()
        if job.state == ImportState.COMPLETED:
            return job
        if job.state == ImportState.FAILED:
            raise SnapshotError(f"{what} failed: {job.reason or 'no reason given'}")
        if job.progress != last:
            last, changed = job.progress, time.monotonic()
        elif time.monotonic() - changed > NO_PROGRESS_SECONDS:
            raise SnapshotError(f"{what} made no progress for {NO_PROGRESS_SECONDS:.0f}s; check the Milvus logs")
        time.sleep(POLL_SECONDS)


def export_collections(adapter: MilvusAdapter, stores: Stores, bdir: str, name: str,
                       collections: list[meta.CollectionBackupInfo], reporter: Reporter) -> None:
    """Export each collection's snapshot into the backup's bundle and record it; one
    collection at a time, each snapshot made right before the export that pins it."""
    target = f"{backup_dir_uri(stores, bdir)}/{BUNDLE_DIR}"
    snapshot = SNAPSHOT_PREFIX + name
    for coll in collections:
        db, label = coll.db_name or "default", f"{coll.db_name or 'default'}.{coll.collection_name}"
        adapter.create_snapshot(db, coll.collection_name, snapshot)
        try:  # from here on the snapshot exists, and is dropped whatever happens
            # Its own boundary, read before the export, is the collection's backup timestamp.
            created = adapter.snapshot_timestamp(db, coll.collection_name, snapshot)
            job_id = adapter.export_snapshot(db, coll.collection_name, snapshot, target)
            job = wait_job(functools.partial(adapter.export_snapshot_state, job_id),
                           f"the snapshot export of {label} (job {job_id})")
            coll.snapshot_backup = meta.SnapshotBackup(metadata_path=metadata_path(target, job.metadata_uri),
                                                       total_files=job.total_files, total_bytes=job.total_bytes)
        finally:
            _drop(adapter, db, coll.collection_name, snapshot, label, reporter)
        coll.backup_timestamp = created
        coll.size = coll.snapshot_backup.total_bytes
        for part in coll.partition_backups:
            part.size = 0  # the bundle is the collection's: partitions hold no segments


def remove_bundle(stores: Stores, bdir: str) -> None:
    """Delete what a failed export left of the backup's bundle."""
    keys = [o.key for o in stores.backup.list(f"{bdir}/{BUNDLE_DIR}/")]
    failed = stores.backup.delete_many(keys)
    if failed:
        raise SnapshotError(f"could not delete {failed[0][0]} of the failed export: {failed[0][1]}")


def _drop(adapter: MilvusAdapter, db: str, collection: str, snapshot: str, label: str, reporter: Reporter) -> None:
    """Drop the snapshot (the bundle does not need it); a snapshot left holds its
    collection's files against GC, so the user is told to drop it by hand."""
    error: MilvusError | None = None
    for attempt in range(DROP_TRIES):
        try:
            adapter.drop_snapshot(db, collection, snapshot)
            return
        except MilvusError as e:
            error = e
            if attempt + 1 < DROP_TRIES:
                time.sleep(DROP_PAUSE)
    reporter.warning(f"snapshot {snapshot} of {label} could not be dropped ({error}): it holds the collection's "
                     "files against garbage collection until it is dropped by hand")


def restore_collection(adapter: MilvusAdapter, stores: Stores, bdir: str, db: str, name: str,
                       source: meta.CollectionBackupInfo) -> dict[str, Any]:
    """Have Milvus restore ``db.name`` (its database exists) from the collection's bundle in
    the backup."""
    started = time.monotonic()
    rel = source.snapshot_backup.metadata_path.strip("/") if source.snapshot_backup else ""
    if not rel or "://" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
        raise SnapshotError(f"backup records no snapshot metadata inside it for "
                            f"{source.db_name or 'default'}.{source.collection_name} ({rel or 'none'}): "
                            "check it with mbackup verify")
    uri = f"{backup_dir_uri(stores, bdir)}/{rel}"
    job_id = adapter.restore_external_snapshot(db, name, uri)
    try:
        wait_job(functools.partial(adapter.restore_snapshot_state, job_id), f"the snapshot restore of {db}.{name} (job {job_id})")
    except MBackupError:  # the job failed, or its state could not be read
        # Milvus may have made part of the collection: nothing restored must look complete.
        with contextlib.suppress(Exception):
            if adapter.has_collection(db, name):
                adapter.drop_collection(db, name)
        raise
    return {"source": f"{source.db_name or 'default'}.{source.collection_name}", "target": f"{db}.{name}",
            "snapshot_job": job_id, "seconds": round(time.monotonic() - started, 3)}


# What a snapshot restore cannot honour: Milvus makes the collection and its indexes from the
# bundle, and the data comes with them.
_NOT_FOR_SNAPSHOTS = {"skip_create_collection": "Milvus creates the collection from the bundle",
                      "meta_only": "the bundle restores schema and data together",
                      "rebuild_index": "Milvus restores the indexes from the bundle",
                      "use_auto_index": "Milvus restores the indexes from the bundle",
                      "drop_exist_index": "Milvus restores the indexes from the bundle",
                      "skip_l0": "the bundle restores the deletes with the data"}


def refuse_flags(name: str, shape: dict[str, bool]) -> None:
    """Refuse, before connecting, the restore flags (``RestoreRequest.shape()``) a snapshot
    backup cannot honour."""
    for flag, why in _NOT_FOR_SNAPSHOTS.items():
        if shape.get(flag):
            raise SnapshotError(f"backup {name!r} is in the snapshot format, where {why}: leave out "
                                f"--{flag.replace('_', '-')}")
