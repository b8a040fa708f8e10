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
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from ..config.params import BY_KEY
from ..errors import MBackupError, PartialError
from ..format import meta
from ..milvus.adapters.base import MilvusAdapter
from ..milvus.adapters.replicate import (
    ALL_PARTITIONS,
    ALTER_LOAD_CONFIG,
    COMMIT_IMPORT,
    CREATE_COLLECTION,
    CREATE_DATABASE,
    CREATE_INDEX,
    IMPORT,
    RESTORE_RBAC,
    V1,
    V2,
    Broadcast,
    ReplicateStream,
    pchannel,
    time_tick,
)
from ..milvus.adapters.restore_v2 import field_to_proto, rbac_from_backup
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


#: Segments per import job: the REST API's limit the Go tool keeps to.
BATCH = 256
#: Seconds between polls of an import job; how long a job may stay unknown to the target (its
#: message still on its way); how long the DDL may take to show; how long to wait for the
#: target to confirm everything sent. The Go tool's values; tests shorten them.
POLL_S, UNKNOWN_JOB_S, VERIFY_S, CONFIRM_S = 3.0, 60.0, 30.0, 600.0
#: The system fields every replicated schema carries (common.RowIDField, common.TimeStampField).
_ROW_ID, _TIMESTAMP = 0, 1
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
# The messages


def _kvs(pairs: Any) -> list[Any]:
    from ..milvus._proto import common_pb2 as c

    return [c.KeyValuePair(key=kv.key, value=kv.value) for kv in pairs]


def replicated_schema(coll: meta.CollectionBackupInfo, *, consistency: bool) -> Any:
    """The backed-up schema as the secondary gets it: every field with its id ($meta too), the
    functions and struct arrays, and the two system fields; with ``consistency`` the
    consistency level as a property (the create message's)."""
    from ..milvus._proto import common_pb2 as c
    from ..milvus._proto import schema_pb2 as s
    from ..milvus.adapters.restore_v2 import schema_to_proto

    b = coll.schema or meta.CollectionSchema()
    name = f"{coll.db_name}.{coll.collection_name}"
    out = schema_to_proto(b, b.name or coll.collection_name, [], name)
    for f in b.fields:
        proto = field_to_proto(f, name)
        proto.is_dynamic = f.is_dynamic
        out.fields.append(proto)
    if consistency:
        level = c.ConsistencyLevel.Name(coll.consistency_level) if coll.consistency_level in \
            c.ConsistencyLevel.values() else str(coll.consistency_level)
        out.properties.append(c.KeyValuePair(key="consistency_level", value=level))
    out.fields.append(s.FieldSchema(fieldID=_ROW_ID, name="RowID", description="row id", data_type=int(meta.DataType.Int64)))
    out.fields.append(s.FieldSchema(fieldID=_TIMESTAMP, name="Timestamp", description="time stamp",
                                    data_type=int(meta.DataType.Int64)))
    return out


def create_database(db: meta.DatabaseBackupInfo, control: str) -> Broadcast:
    from ..milvus._proto import messages_pb2 as m

    return Broadcast(CREATE_DATABASE, V2, m.CreateDatabaseMessageHeader(db_name=db.db_name, db_id=db.db_id),
                     m.CreateDatabaseMessageBody(properties=_kvs(db.properties)), [control])


def create_collection(coll: meta.CollectionBackupInfo, db_id: int, control: str, ts: int) -> Broadcast:
    from ..milvus._proto import common_pb2 as c
    from ..milvus._proto import messages_pb2 as m
    from ..milvus._proto import msg_pb2 as mp

    pids = [p.partition_id for p in coll.partition_backups]
    body = mp.CreateCollectionRequest(
        base=c.MsgBase(msg_type=c.MsgType.CreateCollection, timestamp=ts), db_name=coll.db_name,
        collectionName=coll.collection_name, dbID=db_id, collectionID=coll.collection_id,
        virtualChannelNames=coll.virtual_channel_names, physicalChannelNames=coll.physical_channel_names,
        collection_schema=replicated_schema(coll, consistency=True),
        partitionNames=[p.partition_name for p in coll.partition_backups], partitionIDs=pids)
    header = m.CreateCollectionMessageHeader(collection_id=coll.collection_id, db_id=db_id, partition_ids=pids)
    return Broadcast(CREATE_COLLECTION, V1, header, body, [*coll.virtual_channel_names, control])


def create_index(coll: meta.CollectionBackupInfo, index: meta.IndexInfo, db_id: int, control: str) -> Broadcast:
    from ..milvus._proto import index_pb2 as ix
    from ..milvus._proto import messages_pb2 as m

    field_id = index.field_id or next((f.field_id for f in (coll.schema.fields if coll.schema else [])
                                       if f.name == index.field_name), 0)
    params = index.index_params or [meta.KeyValuePair(k, v) for k, v in index.params.items()]
    info = ix.IndexInfo(collectionID=coll.collection_id, fieldID=field_id, index_name=index.index_name,
                        indexID=index.index_id, type_params=_kvs(index.type_params), index_params=_kvs(params),
                        is_auto_index=index.is_auto_index, user_index_params=_kvs(index.user_index_params),
                        min_index_version=index.min_index_version, max_index_version=index.max_index_version)
    header = m.CreateIndexMessageHeader(db_id=db_id, collection_id=coll.collection_id, field_id=field_id,
                                        index_id=index.index_id, index_name=index.index_name)
    body = m.CreateIndexMessageBody(field_index=ix.FieldIndex(index_info=info, create_time=index.create_time))
    return Broadcast(CREATE_INDEX, V2, header, body, [control])


@dataclass
class Batch:
    """One import: segments of one partition sharing a vchannel and a storage version."""

    partition_id: int
    segments: list[meta.SegmentBackupInfo]
    l0: bool
    end_ts: int
    storage_version: int
    files: list[list[str]] = field(default_factory=list)  # per segment: [insert dir, delta dir] (or [delta dir])

    def options(self) -> dict[str, str]:
        out = {"skip_disk_quota_check": "true", "auto_commit": "false", "end_ts": str(self.end_ts),
               "storage_version": str(self.storage_version)}
        out["l0_import" if self.l0 else "backup"] = "true"
        return out


def batches(coll: meta.CollectionBackupInfo, segments: list[meta.SegmentBackupInfo], partition_id: int, l0: bool,
            bdir: str, ticks: dict[str, int]) -> list[Batch]:
    """The Go tool's batches: by (vchannel, storage version), at most :data:`BATCH` segments."""
    def key(s: meta.SegmentBackupInfo) -> tuple[str, int]:
        return s.v_channel, s.storage_version

    out = []
    for (vch, sv), grouped in groupby(sorted(segments, key=lambda s: (key(s), s.segment_id)), key=key):
        same = list(grouped)
        end_ts = ticks.get(pchannel(vch or coll.virtual_channel_names[0]), 0)
        for start in range(0, len(same), BATCH):
            chunk = same[start:start + BATCH]
            files = [meta.segment_import_dirs(bdir, s).files() for s in chunk]
            out.append(Batch(partition_id, chunk, l0, end_ts, sv, files))
    return out


def import_message(coll: meta.CollectionBackupInfo, batch: Batch, job_id: int, ts: int, prefix: str) -> Broadcast:
    from ..milvus._proto import common_pb2 as c
    from ..milvus._proto import messages_pb2 as m
    from ..milvus._proto import msg_pb2 as mp

    files = [mp.ImportFile(id=i + 1, paths=[f"{prefix}/{p}" if prefix else p for p in paths])
             for i, paths in enumerate(batch.files)]
    body = mp.ImportMsg(base=c.MsgBase(msg_type=c.MsgType.Import, timestamp=ts), db_name=coll.db_name,
                        collection_name=coll.collection_name, collectionID=coll.collection_id,
                        partitionIDs=[batch.partition_id], options=batch.options(), files=files,
                        schema=replicated_schema(coll, consistency=False), jobID=job_id)
    return Broadcast(IMPORT, V1, m.ImportMessageHeader(), body, coll.virtual_channel_names)


def commit_import(coll: meta.CollectionBackupInfo, job_id: int) -> Broadcast:
    from ..milvus._proto import messages_pb2 as m

    return Broadcast(COMMIT_IMPORT, V2, m.CommitImportMessageHeader(collection_id=coll.collection_id, job_id=job_id),
                     b"", coll.virtual_channel_names)


def load_collection(coll: meta.CollectionBackupInfo, db_id: int, control: str) -> Broadcast:
    """Load every partition and every field, each with its index. (The Go tool looks each
    field's index up by the field's id in a table keyed by index ids, so it names index 0 for
    nearly every field; this names the field's own index.)"""
    from ..milvus._proto import messages_pb2 as m

    schema = coll.schema or meta.CollectionSchema()
    by_field = {i.field_id or next((f.field_id for f in schema.fields if f.name == i.field_name), 0): i.index_id
                for i in coll.index_infos}
    header = m.AlterLoadConfigMessageHeader(
        db_id=db_id, collection_id=coll.collection_id, use_local_replica_config=True,
        partition_ids=sorted(p.partition_id for p in coll.partition_backups),
        load_fields=[m.LoadFieldConfig(field_id=f.field_id, index_id=by_field.get(f.field_id, 0)) for f in schema.fields])
    return Broadcast(ALTER_LOAD_CONFIG, V2, header, m.AlterLoadConfigMessageBody(), [control])


def restore_rbac(rbac: Any, current: Any, control: str) -> tuple[Broadcast, dict[str, int]]:
    """The users, roles, grants and privilege groups of the backup the target lacks."""
    from ..milvus._proto import messages_pb2 as m
    from ..milvus._proto import milvus_pb2 as mp

    wanted = rbac_from_backup(rbac) if rbac else mp.RBACMeta()
    users = {u.user for u in current.users}
    roles = {r.name for r in current.roles}
    groups = {g.group_name for g in current.privilege_groups}
    grants = {g.SerializeToString(deterministic=True) for g in current.grants}
    out = mp.RBACMeta(users=[u for u in wanted.users if u.user not in users],
                      roles=[r for r in wanted.roles if r.name not in roles],
                      grants=[g for g in wanted.grants if g.SerializeToString(deterministic=True) not in grants],
                      privilege_groups=[g for g in wanted.privilege_groups if g.group_name not in groups])
    counts = {"users": len(out.users), "roles": len(out.roles), "grants": len(out.grants),
              "privilege_groups": len(out.privilege_groups)}
    return Broadcast(RESTORE_RBAC, V2, m.RestoreRBACMessageHeader(), m.RestoreRBACMessageBody(rbac_meta=out),
                     [control]), counts


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
