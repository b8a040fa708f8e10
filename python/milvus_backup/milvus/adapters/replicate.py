"""The replicate stream of Milvus 2.6+ (CDC), as ``mbackup restore secondary`` speaks it: the
messages it injects into a newly deployed secondary (built from a backup's meta), the stream
that carries them, and the RPCs that say whether the secondary was ever replicated into. The
flow that orders them is ``backup/secondary.py``.

Tested against a wire contract (tests/milvus_contract: pymilvus' generated gRPC service, the
server decoding every message), NOT against a live Milvus 2.6: none runs on the machine this
was written on. Everything here is what the Go tool (zilliztech/milvus-backup f81df44,
internal/client/milvus/{stream,msg_queue,func,fake_message_id}.go, core/restore/secondary)
sends, encoded as Milvus's pkg/streaming/util/message encodes it:

- a message is a ``common.ImmutableMessage``: the body's bytes as payload; properties ``_t``
  (type, decimal), ``_v`` (version), ``_h`` (base64 of the header), ``_bh`` (base64 of the
  broadcast header: a random broadcast id and the vchannels), ``_vc`` (the one vchannel of
  this copy), ``_tt`` (time tick, base 36), ``_lc`` (last confirmed id, decimal); its id the
  time tick in base 36 on a Kafka WAL;
- a broadcast is split into one message per vchannel; the first copy takes the time tick
  allocated for the broadcast, every further copy the next one, so no two messages of a
  pchannel share a tick (Milvus drops the second);
- one stream per pchannel (the vchannel's name up to its last ``_``), opened with the header
  ``cluster-id: <source cluster>``; every message stays buffered until the target confirms
  its time tick, and a broken stream is opened again and sent everything unconfirmed, in
  order.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from ...format import meta
from ..connection import MilvusError, MilvusUnreachable, service_method
from .restore_v2 import field_to_proto, rbac_from_backup
from .rpc import RpcAdapter

log = logging.getLogger(__name__)

# Message types (messages.proto MessageType) and the version each is built with, as the Go tool builds them.
CREATE_COLLECTION, IMPORT, ALTER_LOAD_CONFIG, CREATE_DATABASE, RESTORE_RBAC, CREATE_INDEX = 5, 11, 14, 16, 21, 34
COMMIT_IMPORT = 45  # not in the Milvus the Go tool builds against: it writes the header by hand
V1, V2 = 1, 2
KAFKA = 3  # common.WALName: the WAL the Go tool's fake message ids name
#: The partition id of a collection-level L0 import (common.AllPartitionsID).
ALL_PARTITIONS = -1
#: Segments per import job: the REST API's limit the Go tool keeps to.
BATCH = 256
#: The system fields every replicated schema carries (common.RowIDField, common.TimeStampField).
_ROW_ID, _TIMESTAMP = 0, 1


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def time_tick(message: Any) -> int:
    """A message's ``_tt`` (base 36); 0 when it has none."""
    try:
        return int(message.properties["_tt"], 36)
    except (KeyError, ValueError):
        return 0


def pchannel(vchannel: str) -> str:
    """``by-dev-rootcoord-dml_0_451v0`` -> ``by-dev-rootcoord-dml_0``, the control channel
    ``..._vcchan`` too; a pchannel is itself (Milvus' ToPhysicalChannel)."""
    cut = vchannel.rfind("_")
    # A name whose last part has no "v" is a pchannel already (a flush-all message's _vc).
    return vchannel if cut < 0 or "v" not in vchannel[cut + 1:] else vchannel[:cut]


@dataclass
class Broadcast:
    """A message to broadcast to ``vchannels``: type, version, header and body (proto messages,
    or the body's bytes)."""

    type: int
    version: int
    header: Any
    body: Any
    vchannels: Sequence[str]

    def split(self) -> list[tuple[str, bytes, dict[str, str]]]:
        """(vchannel, payload, properties) of each copy, before time ticks are set."""
        from .._proto import messages_pb2 as msgs

        bh = msgs.BroadcastHeader(broadcast_id=random.getrandbits(63) or 1, vchannels=list(dict.fromkeys(self.vchannels)))
        props = {"_t": str(self.type), "_v": str(self.version),
                 "_h": base64.b64encode(self.header.SerializeToString()).decode(),
                 "_bh": base64.b64encode(bh.SerializeToString()).decode()}
        payload = self.body if isinstance(self.body, bytes) else self.body.SerializeToString()
        return [(vc, payload, {**props, "_vc": vc}) for vc in bh.vchannels]


@dataclass
class _Pchannel:
    """One pchannel's stream: what is buffered (unconfirmed), what was sent on the current stream."""

    name: str
    buffered: list[Any] = field(default_factory=list)
    sent: int = 0  # of buffered, on the current stream
    confirmed: int = 0  # the highest time tick the target confirmed
    error: str = ""  # why the last stream ended
    refused: str = ""  # why the target refused the stream for good (no point opening it again)
    opened: int = 0  # streams opened
    call: Any = None  # the stream open now


class ReplicateStream:
    """The replicate streams to one target, one per pchannel, as the Go tool's StreamClient
    runs them. :meth:`send` allocates time ticks and buffers; :meth:`wait_confirmed` blocks
    until the target confirmed every buffered message."""

    #: Seconds between reopening a broken stream, doubling up to max_backoff.
    backoff, max_backoff = 0.1, 10.0

    def __init__(self, connection: Any, source_cluster_id: str, pchannels: Sequence[str], where: str) -> None:
        self._connection = connection
        self._source = source_cluster_id
        self._where = where
        self._lock = threading.Condition()
        self._tick = 0
        self._closed = False
        self.messages = 0  # buffered so far (every copy of every broadcast, and each forwarded one)
        self._channels = {p: _Pchannel(p) for p in pchannels}
        self._threads = [threading.Thread(target=self._run, args=(p,), name=f"replicate-{p.name}", daemon=True)
                         for p in self._channels.values()]
        for t in self._threads:
            t.start()

    # --- what the flow calls -----------------------------------------------------------

    def send(self, build: Any) -> int:
        """``build(ts)`` returns the :class:`Broadcast` to send (``ts``: the tick its body may
        carry); returns ``ts``. Buffered, not yet confirmed."""
        from .._proto import common_pb2 as c

        with self._lock:
            self._tick += 1
            ts = self._tick
            out = []
            for i, (_vc, payload, props) in enumerate(build(ts).split()):
                tick = ts if i == 0 else self._next()
                props = {**props, "_tt": base36(tick), "_lc": str(tick)}
                out.append(c.ImmutableMessage(id=c.MessageID(id=base36(tick), WAL_name=KAFKA), payload=payload,
                                              properties=props))
            self._enqueue(out)
            return ts

    def forward(self, messages: Sequence[Any]) -> None:
        """Buffer messages built by the source (the backup's flush-all messages) as they are."""
        with self._lock:
            self._enqueue(list(messages))

    def check(self) -> None:
        """Raise :class:`MilvusError` when the target refused a stream for good (UNIMPLEMENTED,
        PERMISSION_DENIED, ...): what is sent would never arrive."""
        with self._lock:
            refused = next((p for p in self._channels.values() if p.refused), None)
        if refused is not None:
            raise MilvusError(f"Milvus {self._where} refused the replicate stream of {refused.name}: {refused.refused}")

    def wait_confirmed(self, timeout: float) -> None:
        """Until the target confirmed everything sent; :class:`MilvusUnreachable` after
        ``timeout`` seconds, naming what is unconfirmed and why."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(p.buffered for p in self._channels.values()):
                if any(p.refused for p in self._channels.values()):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    late = [p for p in self._channels.values() if p.buffered]
                    why = "; ".join(f"{p.name}: {len(p.buffered)} unconfirmed" + (f" ({p.error})" if p.error else "")
                                    for p in late)
                    raise MilvusUnreachable(f"Milvus {self._where} did not confirm the replicated messages within "
                                            f"{timeout:g} s ({why})")
                self._lock.wait(min(left, 1.0))
        self.check()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            calls = [p.call for p in self._channels.values() if p.call is not None]
        for call in calls:
            call.cancel()
        for t in self._threads:
            t.join(timeout=5)

    # --- inside --------------------------------------------------------------------------

    def _next(self) -> int:
        self._tick += 1
        return self._tick

    def _enqueue(self, messages: list[Any]) -> None:
        self.messages += len(messages)
        for m in messages:
            p = self._channels.get(pchannel(m.properties.get("_vc", "")))
            if p is None:
                raise MilvusError(f"a replicate message for {m.properties.get('_vc')!r} names none of the backup's "
                                  f"pchannels ({', '.join(self._channels)})")
            p.buffered.append(m)
        self._lock.notify_all()

    def _requests(self, p: _Pchannel, done: threading.Event) -> Any:
        from .._proto import milvus_pb2 as mp

        while True:
            with self._lock:
                while not self._closed and not done.is_set() and p.sent >= len(p.buffered):
                    self._lock.wait(0.5)
                if self._closed or done.is_set():
                    return
                message = p.buffered[p.sent]
                p.sent += 1
            yield mp.ReplicateRequest(replicate_message=mp.ReplicateMessage(source_cluster_id=self._source,
                                                                            message=message))

    def _run(self, p: _Pchannel) -> None:
        import grpc

        desc = service_method("CreateReplicateStream")
        from .._proto import milvus_pb2 as mp

        call = self._connection.channel.stream_stream(f"/{desc.containing_service.full_name}/CreateReplicateStream",
                                                      request_serializer=lambda m: m.SerializeToString(),
                                                      response_deserializer=mp.ReplicateResponse.FromString)
        delay = self.backoff
        while True:
            with self._lock:
                if self._closed:
                    return
                p.sent = 0  # a new stream: everything unconfirmed again, in order
                p.opened += 1
            done = threading.Event()
            try:
                responses = call(self._requests(p, done), metadata=[*self._connection.headers,
                                                                     ("cluster-id", self._source)])
                with self._lock:
                    p.call = responses
                for resp in responses:
                    tick = resp.replicate_confirmed_message_info.confirmed_time_tick
                    if tick:
                        self._confirm(p, tick)
                        delay = self.backoff
                with self._lock:
                    p.error = "the target ended the stream"
            except grpc.RpcError as e:
                with self._lock:
                    p.error = f"{e.code().name}: {e.details() or ''}".rstrip(": ")
                    # After these, opening the stream again cannot help.
                    if e.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED,
                                    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.FAILED_PRECONDITION):
                        p.refused = e.details() or e.code().name
                        self._lock.notify_all()
                        return
            finally:
                done.set()
            with self._lock:
                if self._closed:
                    return
                log.warning("replicate stream of %s to Milvus %s broke (%s): opening it again in %.1f s",
                            p.name, self._where, p.error, delay)
                self._lock.wait(delay)
            delay = min(delay * 2, self.max_backoff)

    def _confirm(self, p: _Pchannel, tick: int) -> None:
        with self._lock:
            p.confirmed = max(p.confirmed, tick)
            cut = 0
            while cut < len(p.buffered) and time_tick(p.buffered[cut]) <= tick:
                cut += 1
            del p.buffered[:cut]
            p.sent = max(0, p.sent - cut)
            self._lock.notify_all()


# --------------------------------------------------------------------------------------
# The messages of a secondary restore, from a backup's meta (the Go tool's
# core/restore/secondary builders)


def _kvs(pairs: Any) -> list[Any]:
    from .._proto import common_pb2 as c

    return [c.KeyValuePair(key=kv.key, value=kv.value) for kv in pairs]


def replicated_schema(coll: meta.CollectionBackupInfo, *, consistency: bool) -> Any:
    """The backed-up schema as the secondary gets it: every field with its id ($meta too), the
    functions and struct arrays, and the two system fields; with ``consistency`` the
    consistency level as a property (the create message's)."""
    from .._proto import common_pb2 as c
    from .._proto import schema_pb2 as s
    from .restore_v2 import schema_to_proto

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
    from .._proto import messages_pb2 as m

    return Broadcast(CREATE_DATABASE, V2, m.CreateDatabaseMessageHeader(db_name=db.db_name, db_id=db.db_id),
                     m.CreateDatabaseMessageBody(properties=_kvs(db.properties)), [control])


def create_collection(coll: meta.CollectionBackupInfo, db_id: int, control: str, ts: int) -> Broadcast:
    from .._proto import common_pb2 as c
    from .._proto import messages_pb2 as m
    from .._proto import msg_pb2 as mp

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
    from .._proto import index_pb2 as ix
    from .._proto import messages_pb2 as m

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
    from .._proto import common_pb2 as c
    from .._proto import messages_pb2 as m
    from .._proto import msg_pb2 as mp

    files = [mp.ImportFile(id=i + 1, paths=[f"{prefix}/{p}" if prefix else p for p in paths])
             for i, paths in enumerate(batch.files)]
    body = mp.ImportMsg(base=c.MsgBase(msg_type=c.MsgType.Import, timestamp=ts), db_name=coll.db_name,
                        collection_name=coll.collection_name, collectionID=coll.collection_id,
                        partitionIDs=[batch.partition_id], options=batch.options(), files=files,
                        schema=replicated_schema(coll, consistency=False), jobID=job_id)
    return Broadcast(IMPORT, V1, m.ImportMessageHeader(), body, coll.virtual_channel_names)


def commit_import(coll: meta.CollectionBackupInfo, job_id: int) -> Broadcast:
    from .._proto import messages_pb2 as m

    return Broadcast(COMMIT_IMPORT, V2, m.CommitImportMessageHeader(collection_id=coll.collection_id, job_id=job_id),
                     b"", coll.virtual_channel_names)


def load_collection(coll: meta.CollectionBackupInfo, db_id: int, control: str) -> Broadcast:
    """Load every partition and every field, each with its index. (The Go tool looks each
    field's index up by the field's id in a table keyed by index ids, so it names index 0 for
    nearly every field; this names the field's own index.)"""
    from .._proto import messages_pb2 as m

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
    from .._proto import messages_pb2 as m
    from .._proto import milvus_pb2 as mp

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



class ReplicateRpcs(RpcAdapter):
    """The replicate RPCs of a Milvus 2.6+ adapter, mixed into it
    (``class Milvus26Adapter(ReplicateRpcs, Milvus25Adapter)``)."""

    def replicate_pchannels(self, cluster_id: str) -> list[str]:
        """The pchannels the replicate configuration names for ``cluster_id``; [] when the
        target has no configuration or does not name it (the Go tool then skips the check)."""
        from .._proto import milvus_pb2 as m

        try:
            cfg = self._call("GetReplicateConfiguration", m.GetReplicateConfigurationRequest(),
                             what="read the replicate configuration").configuration
        except MilvusUnreachable:
            raise
        except MilvusError as e:
            log.info("cannot read the replicate configuration, the checkpoint check is skipped: %s", e)
            return []
        return next((list(c.pchannels) for c in cfg.clusters if c.cluster_id == cluster_id), [])

    def replicate_checkpoint(self, source_cluster_id: str, pchannel: str) -> int:
        """The time tick the target's checkpoint of ``pchannel`` holds for ``source_cluster_id``."""
        from .._proto import milvus_pb2 as m

        req = m.GetReplicateInfoRequest(source_cluster_id=source_cluster_id, target_pchannel=pchannel)
        try:
            resp = self.connection.call("GetReplicateInfo", req, timeout=60.0)
        except Exception as e:  # grpc.RpcError: the reply has no status of its own
            code = getattr(e, "code", lambda: None)()
            detail = getattr(e, "details", lambda: "")() or str(e)
            error = MilvusUnreachable if code is not None and code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED") \
                else MilvusError
            raise error(f"cannot read the replicate checkpoint of {pchannel} on Milvus {self._where()}: "
                        f"{detail}") from None
        return int(resp.checkpoint.time_tick)

    def open_replicate_stream(self, source_cluster_id: str, pchannels: Sequence[str]) -> ReplicateStream:
        return ReplicateStream(self.connection, source_cluster_id, pchannels, self._where())

    def replicated_import_state(self, db: str, job_id: int) -> tuple[str, int, str]:
        """(state, progress, reason) of an import job a replicated ImportMsg started, through
        the REST import describe, as the Go tool polls it: ``Pending``, ``Importing``,
        ``Uncommitted`` (waiting for its commit message), ``Committing``, ``Completed``,
        ``Failed``; "" while the target does not know the job (its message not applied yet)."""
        rest = getattr(self, "_rest", None)
        if rest is None:
            raise MilvusError("restore secondary polls import jobs through the Milvus REST API, and no REST endpoint "
                              "is known: set milvus.rest.endpoint")
        from .http_api import HttpFailed

        try:
            answer = rest.request("POST", "/v2/vectordb/jobs/import/describe", body={"dbName": db, "jobId": str(job_id)})
        except HttpFailed as e:
            raise MilvusUnreachable(f"cannot read import job {job_id} on Milvus {self._where()}: {e}") from None
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        if answer.get("code") or not data:
            return "", 0, ""
        try:
            progress = int(data.get("progress") or 0)
        except (TypeError, ValueError):
            progress = 0
        return str(data.get("state") or ""), progress, str(data.get("reason") or "")


__all__ = ["ALL_PARTITIONS", "BATCH", "Batch", "Broadcast", "ReplicateRpcs", "ReplicateStream", "base36", "batches",
           "commit_import", "create_collection", "create_database", "create_index", "import_message", "load_collection",
           "pchannel", "replicated_schema", "restore_rbac", "time_tick"]
