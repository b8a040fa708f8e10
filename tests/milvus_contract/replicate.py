"""The contract server's CDC secondary (Milvus 2.6+): the replicate stream, GetReplicateInfo and
GetReplicateConfiguration. A FAKE of the 2.6 wire contract, NOT a Milvus: no 2.6 runs on the
machine this was written on.

Every message a stream brings is decoded (not only recorded) and applied to the cluster's
State, as a secondary applies what its source replicates: databases with their ids and
properties, collections with the ids, partitions and schema the message names, indexes,
import jobs (held Uncommitted until their commit message, the two-phase commit of a source),
load configs, users and roles. Each broadcast is applied once however many vchannels it went
to. A message at or below the pchannel's checkpoint is acknowledged and dropped, as a
secondary, which only moves its checkpoint forward, drops it. Acks are what Milvus sends:
``ReplicateConfirmedMessageInfo{confirmed_time_tick}``.

The version 1 bodies (CreateCollectionRequest, ImportMsg) are read with pymilvus' msg_pb2;
the version 2 headers and bodies, which pymilvus does not ship, with the field tables below,
transcribed from milvus/pkg/proto/messages.proto and index_coord.proto apart from mbackup's
own declarations (proto/milvus_backup/milvus/_proto/messages.proto), so that a wrong field
number on either side shows.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, msg_pb2, schema_pb2

from .state import Collection, State

# Message types (messages.proto MessageType) and their versions as a 2.6 secondary reads them.
TYPES = {5: "CreateCollection", 11: "Import", 14: "AlterLoadConfig", 16: "CreateDatabase", 21: "RestoreRBAC",
         34: "CreateIndex", 37: "FlushAll", 45: "CommitImport"}


# --- a protobuf wire reader: {field number: [values]} ----------------------------------------

def _varint(data: bytes, at: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, at
        shift += 7


def fields(data: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            value, at = data[at:at + size], at + size
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        elif wire == 5:
            value, at = data[at:at + 4], at + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _int(f: dict[int, list[Any]], n: int) -> int:
    v = f.get(n, [0])[-1]
    return v - (1 << 64) if v >= 1 << 63 else v


def _str(f: dict[int, list[Any]], n: int) -> str:
    return f.get(n, [b""])[-1].decode()


def _ints(f: dict[int, list[Any]], n: int) -> list[int]:
    out = []
    for v in f.get(n, []):
        if isinstance(v, bytes):  # packed
            at = 0
            while at < len(v):
                x, at = _varint(v, at)
                out.append(x)
        else:
            out.append(v)
    return out


def _kvs(f: dict[int, list[Any]], n: int) -> dict[str, str]:
    return {_str(kv, 1): _str(kv, 2) for kv in (fields(b) for b in f.get(n, []))}


def _header(message: Any) -> dict[int, list[Any]]:
    return fields(base64.b64decode(message.properties.get("_h", "")))


# --- the secondary --------------------------------------------------------------------------

@dataclass
class Replica:
    """What the secondary received: every message (type, vchannel, tick), the broadcasts it
    applied, its checkpoints, its configuration."""

    clusters: dict[str, list[str]] = field(default_factory=dict)  # cluster id -> pchannels (GetReplicateConfiguration)
    checkpoints: dict[tuple[str, str], int] = field(default_factory=dict)  # (source cluster, pchannel) -> time tick
    received: list[tuple[str, str, int]] = field(default_factory=list)  # (type, vchannel, time tick)
    applied: set[int] = field(default_factory=set)  # broadcast ids
    streams: list[dict[str, str]] = field(default_factory=list)  # the metadata each stream was opened with
    drop_after: int | None = None  # end every stream after this many messages (then reset to None)
    stop_acking: bool = False  # receive but never confirm


def replica(state: State) -> Replica:
    found = getattr(state, "replica", None)
    if found is None:
        found = Replica()
        state.replica = found  # type: ignore[attr-defined]
    return found


def pchannel(vchannel: str) -> str:
    cut = vchannel.rfind("_")
    # A name whose last part has no "v" is a pchannel already (a flush-all message's _vc).
    return vchannel if cut < 0 or "v" not in vchannel[cut + 1:] else vchannel[:cut]


def apply(state: State, source: str, message: Any) -> int:
    """Apply one replicated message; returns its time tick (what to confirm)."""
    props = message.properties
    tick = int(props["_tt"], 36)
    vch = props.get("_vc", "")
    kind = TYPES.get(int(props.get("_t", "0")), f"type {props.get('_t')}")
    r = replica(state)
    r.received.append((kind, vch, tick))
    key = (source, pchannel(vch))
    if tick <= r.checkpoints.get(key, 0):
        return tick  # behind the checkpoint: dropped, as a secondary drops it
    r.checkpoints[key] = tick
    bh = fields(base64.b64decode(props["_bh"])) if "_bh" in props else {}
    broadcast = _int(bh, 1)
    if broadcast:
        if broadcast in r.applied:
            return tick
        r.applied.add(broadcast)
    handler = _APPLY.get(kind)
    if handler is not None:
        handler(state, message)
    return tick


def _create_database(state: State, message: Any) -> None:
    h, body = _header(message), fields(message.payload)
    name = _str(h, 1)
    if name not in state.databases:
        state.add_database(name, db_id=_int(h, 2), properties=_kvs(body, 1))


def _create_collection(state: State, message: Any) -> None:
    h = _header(message)
    req = msg_pb2.CreateCollectionRequest.FromString(message.payload)
    if any(c.id == req.collectionID for c in state.collections.values()):
        return  # an id the cluster holds: the create is skipped without an error, as Milvus skips it
    if _int(h, 1) != req.collectionID or _ints(h, 2) != list(req.partitionIDs):
        raise ValueError("the create collection header and body disagree")
    db = req.db_name or "default"
    if db not in state.databases:
        state.add_database(db)
    schema = schema_pb2.CollectionSchema()
    schema.CopyFrom(req.collection_schema)
    system = [f for f in schema.fields if f.fieldID < 100]
    for f in system:
        schema.fields.remove(f)
    level = dict((kv.key, kv.value) for kv in schema.properties).get("consistency_level", "Bounded")
    coll = Collection(req.collectionID, db, req.collectionName, schema,
                      dict(zip(req.partitionNames, req.partitionIDs, strict=True)),
                      shards=len(req.virtualChannelNames) or 1,
                      consistency_level=common_pb2.ConsistencyLevel.Value(level), created=state.now_ts())
    coll.replicated_system_fields = [(f.fieldID, f.name) for f in system]  # type: ignore[attr-defined]
    coll.vchannel_names = list(req.virtualChannelNames)  # type: ignore[attr-defined]
    state.collections[(db, req.collectionName)] = coll


def _create_index(state: State, message: Any) -> None:
    h, body = _header(message), fields(message.payload)
    fi = fields(body.get(1, [b""])[-1])
    info = fields(fi.get(1, [b""])[-1])
    coll = state.collection_by_id(_int(h, 2))
    field_id = _int(info, 2)
    name = next((f.name for f in coll.schema.fields if f.fieldID == field_id), "")
    params = _kvs(info, 6)
    coll.indexes.append(milvus_pb2.IndexDescription(
        index_name=_str(info, 3), indexID=_int(info, 4), field_name=name,
        params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in params.items()]))


def _import(state: State, message: Any) -> None:
    msg = msg_pb2.ImportMsg.FromString(message.payload)
    coll = state.collection_by_id(msg.collectionID)
    partition = next((n for n, i in coll.partitions.items() if i == msg.partitionIDs[0]), "") \
        if msg.partitionIDs and msg.partitionIDs[0] != -1 else ""
    job = state.new_import(coll.db, coll.name, partition, [list(f.paths) for f in msg.files], dict(msg.options),
                           "replicate", job_id=msg.jobID)
    store = getattr(state, "import_store", None)  # the Milvus bucket, when a test gives it: Milvus reads only there
    empty = [p for f in msg.files for p in f.paths if store is not None and not store.list(p)]
    if empty:
        job.state, job.progress, job.reason = "Failed", 0, f"no binlog to import under {empty[0]}"
    job.partition_ids = list(msg.partitionIDs)  # type: ignore[attr-defined]
    job.schema_fields = [(f.fieldID, f.name) for f in msg.schema.fields]  # type: ignore[attr-defined]


def _commit_import(state: State, message: Any) -> None:
    h = _header(message)
    job = state.imports.get(_int(h, 2))
    if job is not None and job.collection == state.collection_by_id(_int(h, 1)).name:
        job.committed = True


def _alter_load_config(state: State, message: Any) -> None:
    h = _header(message)
    coll = state.collection_by_id(_int(h, 2))
    coll.load_state = common_pb2.LoadState.LoadStateLoaded
    coll.load_config = {"partition_ids": _ints(h, 3), "use_local_replica_config": bool(_int(h, 7)),  # type: ignore[attr-defined]
                        "load_fields": [(_int(lf, 1), _int(lf, 2)) for lf in (fields(b) for b in h.get(4, []))]}


def _restore_rbac(state: State, message: Any) -> None:
    body = fields(message.payload)
    meta = milvus_pb2.RBACMeta.FromString(body.get(1, [b""])[-1])
    for name in ("users", "roles", "grants", "privilege_groups"):
        have = getattr(state.rbac, name)
        for item in getattr(meta, name):
            if item not in have:
                have.add().CopyFrom(item)


_APPLY = {"CreateDatabase": _create_database, "CreateCollection": _create_collection, "CreateIndex": _create_index,
          "Import": _import, "CommitImport": _commit_import, "AlterLoadConfig": _alter_load_config,
          "RestoreRBAC": _restore_rbac}


# --- the RPCs -------------------------------------------------------------------------------

def stream(server: Any, requests: Any, context: Any) -> Any:
    """CreateReplicateStream: apply each message, confirm its tick."""
    metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
    source = metadata.get("cluster-id", "")
    with server.state.lock:
        r = replica(server.state)
        r.streams.append(metadata)
    if not source:
        context.abort(__import__("grpc").StatusCode.INVALID_ARGUMENT, "no cluster-id in the stream's metadata")
    seen = 0
    for request in requests:
        with server.state.lock:
            tick = apply(server.state, request.replicate_message.source_cluster_id or source,
                         request.replicate_message.message)
            r = replica(server.state)
            seen += 1
            if r.drop_after is not None and seen >= r.drop_after:
                r.drop_after = None
                context.abort(__import__("grpc").StatusCode.UNAVAILABLE, "the stream broke (contract fault)")
            acking = not r.stop_acking
        if acking:
            yield milvus_pb2.ReplicateResponse(
                replicate_confirmed_message_info=milvus_pb2.ReplicateConfirmedMessageInfo(confirmed_time_tick=tick))


def GetReplicateConfiguration(state: State, request: Any, db: str) -> Any:
    cfg = common_pb2.ReplicateConfiguration(clusters=[common_pb2.MilvusCluster(cluster_id=c, pchannels=p)
                                                      for c, p in replica(state).clusters.items()])
    return milvus_pb2.GetReplicateConfigurationResponse(status=common_pb2.Status(), configuration=cfg)


def GetReplicateInfo(state: State, request: Any, db: str) -> Any:
    tick = replica(state).checkpoints.get((request.source_cluster_id, request.target_pchannel), 0)
    return milvus_pb2.GetReplicateInfoResponse(checkpoint=common_pb2.ReplicateCheckpoint(
        cluster_id=request.source_cluster_id, pchannel=request.target_pchannel, time_tick=tick))
