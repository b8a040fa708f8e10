"""Restore a backup into a CDC secondary: what ``mbackup restore secondary`` does.

A Milvus 2.6+ secondary takes no DDL and no imports of its own: everything reaches it through
the replicate stream from its source cluster. So this restore plays the source: it injects,
into the stream opened in the source cluster's name, the messages that made the backed-up
collections, with the source's own ids (databases with their properties, collections with
their partitions and channels, indexes), one import per batch of segments, the commit of
each import once the secondary holds it ready, the users and roles the secondary lacks, the
backup's own flush-all messages (which carry the source's time ticks), and a load for each
collection that was loaded. As the Go tool (zilliztech/milvus-backup f81df44,
core/restore/secondary) does, step for step; the messages and the stream are
``milvus/adapters/replicate.py``'s.

It runs once, against a newly deployed secondary: the messages are time-ticked from 1 and a
secondary only ever moves its checkpoint forward. So it refuses, before sending anything, a
target whose checkpoint is not zero (restored before, or a restore that stopped part way) or
that already holds one of the collections; and, like the Go tool, it does not resume: after a
failure or an interruption, deploy a new secondary and restore into that.

Tested against a wire contract of 2.6 (tests/milvus_contract), not a live 2.6: none runs on
the machine this was written on.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config.params import BY_KEY
from ..errors import MBackupError, PartialError
from ..format import meta
from ..milvus.adapters.base import MilvusAdapter
from ..milvus.adapters.replicate import (
    ALL_PARTITIONS,
    Batch,
    ReplicateStream,
    batches,
    commit_import,
    create_collection,
    create_database,
    create_index,
    import_message,
    load_collection,
    pchannel,
    restore_rbac,
    time_tick,
)
from ..milvus.versions import SINCE, Feature, format_version
from ..transfer.cancel import Interrupted
from ..transfer.copy import CopySettings
from ..transfer.progress import SILENT, Reporter
from .catalog import Stores, backup_dir, read_backup
from .restore import new_staging_prefix, pool_sources, remove_staged, stage_segments


class SecondaryError(MBackupError):
    """A secondary restore was refused before anything was sent (exit 2)."""


class SecondaryFailed(SecondaryError, PartialError):
    """A secondary restore stopped part way: the secondary holds part of the backup (exit 1)."""


#: Seconds between polls of an import job; how long a job may stay unknown to the target (its
#: message still on its way); how long the DDL may take to show; how long to wait for the
#: target to confirm everything sent. The Go tool's values; tests shorten them.
POLL_S, UNKNOWN_JOB_S, VERIFY_S, CONFIRM_S = 3.0, 60.0, 30.0, 600.0
_AGAIN = ("A secondary restore runs once, against a newly deployed secondary: to bootstrap again, deploy a new "
          "secondary and restore into that")


@dataclass
class SecondaryRequest:
    name: str
    source_cluster_id: str
    target_cluster_id: str
    keep_temp_files: bool = BY_KEY["restore.keepTempFiles"].default

    def validate(self) -> None:
        meta.validate_backup_name(self.name)
        if not self.source_cluster_id:
            raise SecondaryError("empty source cluster id: give --source_cluster_id, the id of the cluster the "
                                 "secondary replicates from")
        if not self.target_cluster_id:
            raise SecondaryError("empty target cluster id: give --target_cluster_id, the id of the secondary")


@dataclass
class SecondaryResult:
    backup: str
    databases: list[str]
    collections: list[dict[str, Any]]
    rbac: dict[str, int]
    seconds: float
    messages: int = 0

    def summary(self) -> dict[str, Any]:
        return {"backup": self.backup, "databases": self.databases, "collections": self.collections,
                "rbac": self.rbac, "messages": self.messages, "seconds": round(self.seconds, 3)}


def check_backup(info: meta.BackupInfo) -> dict[str, int]:
    """What the backup must hold for a secondary restore, refused in one line otherwise;
    returns each pchannel's flush-all time tick (the ``end_ts`` of its imports)."""
    from ..milvus._proto import common_pb2 as c

    if info.format == meta.FORMAT_SNAPSHOT:
        raise SecondaryError(f"backup {info.name!r} is in the snapshot format: a secondary restore replays binlogs; "
                             "take the backup with --format binlog")
    if not info.flush_all_msgs_base64 or not info.control_channel_name or not info.physical_channel_names:
        raise SecondaryError(f"backup {info.name!r} holds no flush-all messages and channels (made by Milvus "
                             f"{info.milvus_version or 'unknown'}): a secondary restore replays them, so the backup must "
                             "be taken from the CDC source on Milvus 2.6.11 or newer with --strategy bulk_flush")
    ticks = {}
    for pch, text in info.flush_all_msgs_base64.items():
        try:
            ticks[pch] = time_tick(c.ImmutableMessage.FromString(base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError) as e:
            raise SecondaryError(f"backup {info.name!r}: the flush-all message of {pch} is damaged ({e}): check the "
                                 f"backup with mbackup verify -n {info.name}") from None
    for coll in info.collection_backups:
        missing = sorted({pchannel(v) for v in coll.virtual_channel_names} - set(ticks))
        if missing or not coll.virtual_channel_names:
            raise SecondaryError(f"backup {info.name!r}: {coll.db_name}.{coll.collection_name} has "
                                 f"{'no vchannels' if not missing else 'no flush-all message for ' + ', '.join(missing)}"
                                 ": a secondary restore cannot replay it")
        schema = coll.schema or meta.CollectionSchema()
        if schema.enable_dynamic_field and not any(f.is_dynamic for f in schema.fields):
            # zilliztech/milvus-backup#1013: the secondary would make $meta under another id than the binlogs'.
            raise SecondaryError(f"backup {info.name!r}: {coll.db_name}.{coll.collection_name} has dynamic fields on "
                                 "but its backup does not record the $meta field: a secondary restore cannot replay it")
    return ticks


def check_target(adapter: MilvusAdapter, info: meta.BackupInfo, request: SecondaryRequest) -> None:
    """The Go tool's two preconditions, then the version: a target never restored into
    (its replicate checkpoint zero on every pchannel) that holds none of the collections."""
    if not adapter.can_restore_secondary():
        raise SecondaryError(f"restore secondary needs Milvus {format_version(SINCE[Feature.REPLICATE_STREAM])} or "
                             f"newer (the CDC replicate stream); this server is {adapter.version}")
    rpcs: Any = adapter
    for pch in rpcs.replicate_pchannels(request.target_cluster_id):
        tick = rpcs.replicate_checkpoint(request.source_cluster_id, pch)
        if tick:
            raise SecondaryError(f"{request.target_cluster_id} already has a replicate checkpoint ({pch} is at time "
                                 f"tick {tick}), so it has been restored into before, or a restore stopped part way: "
                                 f"what this restore sends would be discarded. {_AGAIN}")
    databases = set(adapter.list_databases())
    present = [f"{c.db_name}.{c.collection_name}" for c in info.collection_backups
               if c.db_name in databases and adapter.has_collection(c.db_name, c.collection_name)]
    if present:
        raise SecondaryError(f"the target already holds {', '.join(present)}: it is not a newly deployed secondary, "
                             f"and restoring on top would import every row twice. {_AGAIN}")


# --------------------------------------------------------------------------------------
# The flow


@contextlib.contextmanager
def _opened(adapter: Any, request: SecondaryRequest, pchannels: list[str]) -> Iterator[ReplicateStream]:
    stream = adapter.open_replicate_stream(request.source_cluster_id, pchannels)
    try:
        yield stream
    finally:
        stream.close()


@contextlib.contextmanager
def _said_when_stopped(stream: ReplicateStream) -> Iterator[None]:
    """Ctrl-C or SIGTERM: say what the secondary got, and that it cannot be resumed."""
    try:
        yield
    except KeyboardInterrupt as e:
        raise Interrupted(f"{stream.messages} messages sent to the secondary, which holds part of the backup and will "
                          f"refuse a re-run. {_AGAIN}") from e


def restore_secondary(adapter: MilvusAdapter | Callable[[], MilvusAdapter], stores: Stores, request: SecondaryRequest,
                      settings: CopySettings, *, reporter: Reporter = SILENT) -> SecondaryResult:
    """``adapter`` may be a function that connects: called once the backup is read and checked."""
    started = time.monotonic()
    request.validate()
    with reporter.step("restore secondary", backup=request.name):
        info = read_backup(stores, request.name)
        ticks = check_backup(info)
        if not isinstance(adapter, MilvusAdapter):
            with reporter.step("connect"):
                adapter = adapter()
        check_target(adapter, info, request)
        bdir = backup_dir(stores, request.name)
        control = info.control_channel_name
        db_ids = {d.db_name: d.db_id for d in info.database_backups}
        rpcs: Any = adapter
        with _opened(rpcs, request, list(info.physical_channel_names)) as stream, _said_when_stopped(stream):
            for db in info.database_backups:
                stream.send(lambda _ts, db=db: create_database(db, control))
            results = [_restore_collection(rpcs, stream, stores, bdir, request, info, coll,
                                           db_ids.get(coll.db_name, coll.db_id), ticks, settings, reporter)
                       for coll in info.collection_backups]
            rbac_message, rbac = restore_rbac(info.rbac_meta, _current_rbac(rpcs), control)
            stream.send(lambda _ts: rbac_message)
            from ..milvus._proto import common_pb2 as c

            stream.forward([c.ImmutableMessage.FromString(base64.b64decode(text))
                            for _, text in sorted(info.flush_all_msgs_base64.items())])
            with reporter.step("confirm"):
                stream.wait_confirmed(CONFIRM_S)
        _verify(adapter, info)
        return SecondaryResult(request.name, [d.db_name for d in info.database_backups], results, rbac,
                               time.monotonic() - started, stream.messages)


def _current_rbac(adapter: Any) -> Any:
    from ..milvus._proto import milvus_pb2 as mp

    return adapter._call("BackupRBAC", mp.BackupRBACMetaRequest(), what="read the users and roles").RBAC_meta


def _restore_collection(adapter: Any, stream: ReplicateStream, stores: Stores, bdir: str, request: SecondaryRequest,
                        info: meta.BackupInfo, coll: meta.CollectionBackupInfo, db_id: int, ticks: dict[str, int],
                        settings: CopySettings, reporter: Reporter) -> dict[str, Any]:
    label = f"{coll.db_name}.{coll.collection_name}"
    started, control = time.monotonic(), info.control_channel_name
    with reporter.step("create collection", collection=label):
        stream.send(lambda ts: create_collection(coll, db_id, control, ts))
        for index in coll.index_infos:
            stream.send(lambda _ts, index=index: create_index(coll, index, db_id, control))
    stages: list[list[Batch]] = [
        [b for p in coll.partition_backups
         for b in batches(coll, [s for s in p.segment_backups if not s.is_l0], p.partition_id, False, bdir, ticks)],
        [b for p in coll.partition_backups
         for b in batches(coll, [s for s in p.segment_backups if s.is_l0], p.partition_id, True, bdir, ticks)],
        batches(coll, list(coll.l0_segments), ALL_PARTITIONS, True, bdir, ticks),
    ]
    jobs = 0
    pooled = pool_sources(stores, request.name, bdir)
    prefix = ""
    if not stores.same_bucket or pooled:
        prefix = new_staging_prefix()
        stage_segments(stores, bdir, [s for stage in stages for b in stage for s in b.segments], prefix, pooled,
                       settings, reporter, label, resume="deploy a new secondary and restore again")
    try:
        with reporter.step("import", collection=label):
            for stage in stages:
                ids = []
                for b in stage:
                    job_id = random.getrandbits(63) or 1
                    stream.send(lambda ts, b=b, job_id=job_id: import_message(coll, b, job_id, ts, prefix))
                    ids.append((job_id, b))
                _wait_jobs(adapter, stream, coll, ids, reporter, label)
                jobs += len(ids)
    finally:
        left = remove_staged(stores, prefix or None, request.keep_temp_files)
        if left:
            reporter.warning(left)
    loaded = coll.load_state != meta.LOAD_STATE_NOT_LOAD
    if loaded:
        stream.send(lambda _ts: load_collection(coll, db_id, control))
    rows = sum(s.num_of_rows for p in coll.partition_backups for s in p.segment_backups if not s.is_l0)
    return {"collection": label, "collection_id": coll.collection_id, "partitions": len(coll.partition_backups),
            "indexes": len(coll.index_infos), "import_jobs": jobs, "rows_in_backup": rows, "loaded": loaded,
            "seconds": round(time.monotonic() - started, 3)}


def _wait_jobs(adapter: Any, stream: ReplicateStream, coll: meta.CollectionBackupInfo, jobs: list[tuple[int, Batch]],
               reporter: Reporter, label: str) -> None:
    """Until every job completed: a job the secondary holds Uncommitted gets its commit
    message (the two-phase commit of the source); Failed, or unknown for too long, fails the
    restore."""
    waiting = {job_id: b for job_id, b in jobs}
    committed: set[int] = set()
    unknown: dict[int, float] = {}
    done, delay = 0, 0.05  # short polls first, doubling up to the Go tool's 3 s
    while waiting:
        stream.check()
        for job_id, b in list(waiting.items()):
            state, _progress, reason = adapter.replicated_import_state(coll.db_name, job_id)
            what = f"import job {job_id} of {label} ({len(b.segments)} {'L0 ' if b.l0 else ''}segment(s) from " \
                   f"{b.segments[0].segment_id})"
            if state == "Failed":
                raise SecondaryFailed(f"{what} failed: {reason or 'no reason given'}; the secondary holds part of the "
                                      f"backup. {_AGAIN}")
            if state == "":
                since = unknown.setdefault(job_id, time.monotonic())
                if time.monotonic() - since >= UNKNOWN_JOB_S:
                    raise SecondaryFailed(f"the target does not know {what} after {UNKNOWN_JOB_S:g} s: the import "
                                          f"message was never applied (is it a newly deployed secondary?). {_AGAIN}")
                continue
            unknown.pop(job_id, None)
            if state == "Uncommitted" and job_id not in committed:
                stream.send(lambda _ts, job_id=job_id: commit_import(coll, job_id))
                committed.add(job_id)
            elif state == "Completed":
                del waiting[job_id]
                done += 1
        reporter.imports(label, done, len(jobs), 100 * done / max(1, len(jobs)))
        if waiting:
            time.sleep(delay)
            delay = min(2 * delay, POLL_S)


def _verify(adapter: MilvusAdapter, info: meta.BackupInfo) -> None:
    """The messages were confirmed; the collections must also be there (a collection id the
    target still holds reserved makes a replayed create a silent no-op)."""
    deadline = time.monotonic() + VERIFY_S
    while True:
        databases = set(adapter.list_databases())
        missing = [f"{c.db_name}.{c.collection_name}" for c in info.collection_backups
                   if c.db_name not in databases or not adapter.has_collection(c.db_name, c.collection_name)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SecondaryFailed(f"the target confirmed every message, but {', '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} not there after {VERIFY_S:g} s: the creates "
                                  f"were discarded (the target is not a newly deployed secondary). {_AGAIN}")
        time.sleep(0.2)


__all__ = ["SecondaryError", "SecondaryFailed", "SecondaryRequest", "SecondaryResult", "check_backup", "check_target",
           "restore_secondary"]
