"""The snapshot format (Milvus 3.0+): Milvus copies each collection itself, as the Go tool's
``--format snapshot`` has it (core/backup/coll_snapshot_task.go, core/restore/coll_snapshot_task.go).

Backup, per collection: CreateSnapshot ``mbk_<backup>`` (DescribeSnapshot: its create
timestamp is the collection's ``backup_timestamp``), ExportSnapshot into
``<backup dir>/bundle``, wait for the export job, record where its metadata landed (relative
to the backup directory) in ``snapshot_backup``, and drop the snapshot whatever happened. No
byte moves through mbackup, and the meta holds no partition or segment files.

Restore, per collection: RestoreExternalSnapshot of that metadata into the target name, and
wait: Milvus creates the collection, its indexes and partitions, and loads the data.

Milvus reads and writes the bundle itself: on the object store Milvus uses, with its own
credentials; on another S3 store, with the endpoint and credentials mbackup sends in an
external spec (the Go tool's extfs JSON). A store Milvus cannot reach at all (a local
folder) is refused before anything is made.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import logs
from ..config.settings import StorageConfig
from ..errors import MBackupError
from ..format import meta
from ..milvus.adapters.base import ImportState, MilvusAdapter, SnapshotJob
from ..milvus.connection import MilvusError
from ..storage.location import Location, split_url
from ..transfer.cancel import uninterrupted
from ..transfer.progress import Reporter
from .catalog import Stores

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class BundlePlace:
    """Where Milvus writes and reads a backup's bundles, and what it needs to reach them."""

    uri: str  # the backup directory as Milvus resolves it
    # The extfs JSON Milvus reaches another store with; it holds credentials: never shown.
    external_spec: str = field(default="", repr=False)

    def under(self, relative: str) -> str:
        return f"{self.uri}/{relative.strip('/')}"


# The config's S3-family providers as Milvus names them in extfs.cloud_provider (the Go tool's
# snapshotCloudProvider). Always sent: s3:// alone does not tell AWS from a self-hosted store.
_CLOUD_PROVIDERS = {"minio": "minio", "s3": "aws", "aws": "aws", "gcp": "gcp", "aliyun": "aliyun",
                    "tencent": "tencent", "hwc": "huawei"}


def bundle_place(stores: Stores, bdir: str) -> BundlePlace:
    """Where Milvus finds backup directory ``bdir``. On the store Milvus uses: ``s3://<bucket>/
    <dir>``, which Milvus resolves with its own config (no endpoint, no credentials on the
    wire). On another S3 store: its endpoint in a ``minio://`` URI and its credentials in an
    external spec, as the Go tool sends them. Anything else is refused."""
    backup, milvus = stores.backup, stores.milvus
    bucket = split_url(backup.url).bucket if backup.scheme == "s3" else ""
    key = backup.key(bdir).strip("/")
    if bucket and milvus.scheme == "s3" and _server_of(backup) and _server_of(backup) == _server_of(milvus):
        return BundlePlace(f"s3://{bucket}/{key}")
    cfg = stores.backup_config
    if not bucket or cfg is None:
        raise SnapshotError(f"the snapshot format needs the backup storage ({backup.url}) on an S3 store Milvus can "
                            f"reach (Milvus uses {milvus.url}): Milvus writes and reads the bundle itself. Put "
                            "backup.storage on an S3 store, or use --format binlog")
    return BundlePlace(_external_uri(cfg, bucket, key), external_spec(cfg))


def _external_uri(cfg: StorageConfig, bucket: str, key: str) -> str:
    # The endpoint Milvus connects to: backup.storage.milvusAddress where Milvus sees the store
    # under another name than mbackup does.
    address, port = (cfg.milvus_address, cfg.milvus_port) if cfg.milvus_address else (cfg.address, cfg.port)
    host = address.strip().removeprefix("https://").removeprefix("http://").strip("/")
    if host:
        return f"minio://{host}:{port}/{bucket}/{key}" if port and ":" not in host else f"minio://{host}/{bucket}/{key}"
    if not cfg.region:
        raise SnapshotError("the snapshot format on backup storage without an address needs backup.storage.region, "
                            "from which Milvus finds the endpoint: set it, or set backup.storage.address")
    return f"s3://{bucket}/{key}"


def external_spec(cfg: StorageConfig) -> str:
    """The Go tool's extfs JSON for a backup store Milvus does not use: only what it names
    overrides Milvus's own storage config."""
    cloud = _CLOUD_PROVIDERS.get(cfg.provider)
    if cloud is None:
        raise SnapshotError(f"Milvus snapshots cannot reach {cfg.provider} backup storage: use --format binlog")
    extfs = {"cloud_provider": cloud, "use_ssl": "true" if cfg.use_ssl else "false"}
    if cfg.region:
        extfs["region"] = cfg.region
    auth = cfg.auth
    if auth.type == "static":
        if auth.session_token:
            # extfs has no token field: a temporary key sent as a permanent one fails to sign,
            # with nothing saying why.
            raise SnapshotError("Milvus snapshots cannot use a session token (backup.storage.auth.sessionToken): "
                                "use a permanent key, or --format binlog")
        extfs.update(access_key_id=auth.access_key_id, access_key_value=auth.secret_access_key)
    elif auth.type == "iam":
        extfs["use_iam"] = "true"
        if auth.endpoint:
            extfs["iam_endpoint"] = auth.endpoint
    else:
        raise SnapshotError(f"Milvus snapshots cannot reach backup storage with backup.storage.auth.type {auth.type}: "
                            "use static or iam, or --format binlog")
    return json.dumps({"extfs": extfs}, sort_keys=True, separators=(",", ":"))


def _bucket_and_key(uri: str) -> tuple[str, str]:
    """``minio://host/bucket/key`` and ``s3://bucket/key`` as (bucket, key)."""
    scheme, _, rest = uri.partition("://")
    if scheme == "minio":
        rest = rest.partition("/")[2]
    bucket, _, key = rest.partition("/")
    return bucket, key


def metadata_path(target_uri: str, metadata_uri: str) -> str:
    """The metadata a finished export reports (a URI under ``target_uri``, the endpoint
    spelled either way), relative to the backup directory: ``bundle/snapshots/<coll>/
    metadata/<id>.json``. A URI elsewhere is an error: the backup would not hold its own bundle."""
    bucket, root = _bucket_and_key(target_uri.rstrip("/") + "/")
    got_bucket, key = _bucket_and_key(metadata_uri)
    rel = key[len(root):] if metadata_uri and got_bucket == bucket and key.startswith(root) else ""
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
    place = bundle_place(stores, bdir)
    target = place.under(BUNDLE_DIR)
    snapshot = SNAPSHOT_PREFIX + name
    for coll in collections:
        db, label = coll.db_name or "default", f"{coll.db_name or 'default'}.{coll.collection_name}"
        made = False
        try:  # once made, the snapshot is dropped whatever happens
            with uninterrupted():
                adapter.create_snapshot(db, coll.collection_name, snapshot)
                made = True
            # Its own boundary, read before the export, is the collection's backup timestamp.
            created = adapter.snapshot_timestamp(db, coll.collection_name, snapshot)
            job_id = adapter.export_snapshot(db, coll.collection_name, snapshot, target, place.external_spec)
            job = wait_job(functools.partial(adapter.export_snapshot_state, job_id),
                           f"the snapshot export of {label} (job {job_id})")
            coll.snapshot_backup = meta.SnapshotBackup(metadata_path=metadata_path(target, job.metadata_uri),
                                                       total_files=job.total_files, total_bytes=job.total_bytes)
        finally:
            if made:
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
                logs.retry(log, f"drop snapshot {snapshot} of {label}", e, attempt + 1, DROP_TRIES, DROP_PAUSE)
                time.sleep(DROP_PAUSE)
    reporter.warning(f"snapshot {snapshot} of {label} could not be dropped ({error}): it holds the collection's "
                     "files against garbage collection until it is dropped by hand")


def restore_collection(adapter: MilvusAdapter, stores: Stores, bdir: str, db: str, name: str,
                       source: meta.CollectionBackupInfo, *, job_id: int | None = None,
                       started: Callable[[int], None] = lambda job: None) -> dict[str, Any]:
    """Have Milvus restore ``db.name`` (its database exists) from the collection's bundle in
    the backup, and wait for it. ``job_id``: the restore job an interrupted run started,
    waited for instead of a new one; ``started`` is told the job id before the wait."""
    began = time.monotonic()
    if job_id is None:
        rel = source.snapshot_backup.metadata_path.strip("/") if source.snapshot_backup else ""
        if not rel or "://" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
            raise SnapshotError(f"backup records no snapshot metadata inside it for "
                                f"{source.db_name or 'default'}.{source.collection_name} ({rel or 'none'}): "
                                "check it with mbackup verify")
        place = bundle_place(stores, bdir)
        with uninterrupted():  # a job started and not recorded would be started again
            job_id = adapter.restore_external_snapshot(db, name, place.under(rel), place.external_spec)
            started(job_id)
    else:
        started(job_id)
    try:
        wait_job(functools.partial(adapter.restore_snapshot_state, job_id), f"the snapshot restore of {db}.{name} (job {job_id})")
    except MBackupError:  # the job failed, or its state could not be read
        # Milvus may have made part of the collection: nothing restored must look complete.
        with contextlib.suppress(Exception):
            if adapter.has_collection(db, name):
                adapter.drop_collection(db, name)
        raise
    return {"source": f"{source.db_name or 'default'}.{source.collection_name}", "target": f"{db}.{name}",
            "snapshot_job": job_id, "seconds": round(time.monotonic() - began, 3)}


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
