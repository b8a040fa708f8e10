"""What every gRPC-speaking Milvus line shares: the requests (built here and sent on the
connection's own stub, the database in the request itself and in the ``dbname`` header), the
errors, the schema read back as the Go tool's meta, and the GC pause over the management port.

The line adapters (``v2_3.py``, ``v2_4_plus.py``) derive from :class:`RpcAdapter` and add what
their line does differently; what depends on a server's version is asked of
:class:`~milvus_backup.milvus.versions.ServerVersion`, the feature table's one home.

The messages (``.._proto``, mbackup's own subset of Milvus's) are imported inside the methods:
the plugins are registered by every mbackup command, most of which never reach Milvus.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ... import logs
from ...format import meta
from ..connection import MilvusError, MilvusUnreachable, service_method, unreachable_status
from ..versions import Feature, ServerVersion
from .base import ImportState, ImportStatus, MilvusAdapter, SegmentRef
from .http_api import GcHold, HttpApi

log = logging.getLogger(__name__)

# Server error codes (merr) and legacy error codes the adapters react to.
_CODE_COLLECTION_NOT_FOUND = 100
_CODE_SEGMENT_NOT_FOUND = 600
_CODE_INDEX_NOT_FOUND = 700
_CODE_DATABASE_NOT_FOUND = 800
_CODE_RATE_LIMIT = 8
_LEGACY_RATE_LIMIT = 49  # commonpb.ErrorCode.RateLimit


class RpcFailed(MilvusError):
    """The server answered a request with an error status."""

    def __init__(self, message: str, reason: str = "", code: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


class RpcThrottled(RpcFailed, MilvusUnreachable):
    """The server kept rate-limiting a request through every retry."""


class RpcUnimplemented(MilvusError):
    """The server does not answer the request at all (gRPC UNIMPLEMENTED)."""


_LOAD_STATES = {0: meta.LOAD_STATE_NOT_LOAD, 1: meta.LOAD_STATE_NOT_LOAD, 2: meta.LOAD_STATE_LOADING, 3: meta.LOAD_STATE_LOADED}



class RpcAdapter(MilvusAdapter):
    """One Milvus server through one dedicated gRPC channel."""

    #: Seconds one request may take.
    rpc_timeout: float = 60.0
    #: Seconds a flush or a load may take before giving up.
    wait_timeout: float = 1800.0
    poll_interval: float = 0.5
    first_poll: float = 0.02
    #: For the first ``quick_span`` seconds of a wait, polls at most ``quick_poll`` apart.
    quick_poll: float = 0.05
    quick_span: float = 2.0

    def __init__(self, version: str, connection: Any) -> None:
        self.version = version
        self.connection = connection
        known = getattr(connection, "server", None)
        self.server: ServerVersion = known if isinstance(known, ServerVersion) else ServerVersion.of(version)
        endpoint = getattr(connection, "endpoint", None)
        management = (getattr(endpoint, "management_endpoint", "") or "").strip()
        # 2.3 answers the pause with 404: not asked, and create warns that GC is not held.
        gc_api = management and self.server.has(Feature.GC_PAUSE)
        self._gc = GcHold(HttpApi(management, "the Milvus management endpoint", timeout=10) if gc_api else None,
                          tickets=self.server.has(Feature.COLLECTION_GC_TICKET))

    def close(self) -> None:
        with contextlib.suppress(MilvusError):  # what the flow held it released; a leftover lapses
            self._gc.release()
        if self.connection is not None:
            self.connection.close()

    # --- reading what exists -------------------------------------------------------------

    def list_databases(self) -> list[str]:
        from .._proto import milvus_pb2 as m

        if not self.server.multi_database:
            return ["default"]  # a Milvus from before databases: everything is in "default"
        return list(self._call("ListDatabases", m.ListDatabasesRequest(), what="list databases").db_names)

    def describe_database(self, db: str) -> meta.DatabaseBackupInfo:
        from .._proto import milvus_pb2 as m

        if self.server.has(Feature.DESCRIBE_DATABASE):
            resp = self._call("DescribeDatabase", m.DescribeDatabaseRequest(db_name=db), db, f"describe database {db}")
            return meta.DatabaseBackupInfo(db_name=db, db_id=int(resp.dbID), properties=_kvs(resp.properties))
        if not self.server.multi_database:
            return meta.DatabaseBackupInfo(db_name=db)
        # Before DescribeDatabase (2.4.3) only ListDatabases says anything, and 2.3.5 leaves
        # its db ids empty.
        resp = self._call("ListDatabases", m.ListDatabasesRequest(), what="list databases")
        ids = dict(zip(resp.db_names, resp.db_ids, strict=True)) if len(resp.db_ids) == len(resp.db_names) else {}
        if db not in resp.db_names:
            raise MilvusError(f"database {db!r} does not exist on Milvus {self._where()}")
        return meta.DatabaseBackupInfo(db_name=db, db_id=int(ids.get(db, 0)))

    def backup_rbac(self) -> dict[str, Any]:
        from .._proto import milvus_pb2 as m

        if not self.server.has(Feature.RBAC):
            raise MilvusError(f"{self.server.needs(Feature.RBAC)}: leave out --rbac")
        resp = self._call("BackupRBAC", m.BackupRBACMetaRequest(), what="back up users, roles and grants")
        return _rbac_from_proto(resp.RBAC_meta)

    def list_collections(self, db: str) -> list[str]:
        from .._proto import milvus_pb2 as m

        resp = self._call("ShowCollections", m.ShowCollectionsRequest(db_name=db), db, f"list collections of {db}")
        return list(resp.collection_names)

    def has_collection(self, db: str, collection: str) -> bool:
        from .._proto import milvus_pb2 as m

        req = m.HasCollectionRequest(db_name=db, collection_name=collection)
        try:
            return bool(self._call("HasCollection", req, db, f"check collection {db}.{collection}").value)
        except RpcFailed as e:
            if _is(e, _CODE_DATABASE_NOT_FOUND, "database not found"):
                return False
            raise

    def collection_id(self, db: str, collection: str) -> int | None:
        from .._proto import milvus_pb2 as m

        req = m.DescribeCollectionRequest(db_name=db, collection_name=collection)
        try:
            return int(self._call("DescribeCollection", req, db, f"describe collection {db}.{collection}").collectionID)
        except RpcFailed as e:
            # 2.3.5 answers code 100 for a missing collection and for a missing database.
            if _is(e, _CODE_COLLECTION_NOT_FOUND, "can't find collection") or _is(e, _CODE_DATABASE_NOT_FOUND):
                return None
            raise

    def describe_collection(self, db: str, collection: str) -> meta.CollectionBackupInfo:
        from .._proto import milvus_pb2 as m

        name = f"{db}.{collection}"
        resp = self._call(
            "DescribeCollection",
            m.DescribeCollectionRequest(db_name=db, collection_name=collection),
            db,
            f"describe collection {name}",
        )
        # The dynamic field ($meta): a 2.3 proxy leaves it out of DescribeCollection (it is
        # kept if a server ever returns it). Nothing is guessed in its place: the schema records
        # enable_dynamic_field, restore never sends $meta (the server adds it), and 2.3 has no
        # AddCollectionField, so the server gives $meta the id after the last user field on the
        # source and on the target alike and the binlogs line up. The Go tool records $meta only
        # when it reads etcd, which mbackup does not.
        schema = _schema_from_proto(resp.schema, f"{db}.{collection}")
        partitions = self._partitions(db, collection, resp.collectionID)
        indexes = self._indexes(db, collection)
        return meta.CollectionBackupInfo(
            collection_id=resp.collectionID,
            db_name=db,
            collection_name=collection,
            schema=schema,
            shards_num=resp.shards_num,
            consistency_level=int(resp.consistency_level),
            partition_backups=partitions,
            has_index=bool(indexes),
            index_infos=indexes,
            load_state=self._load_state(db, collection),
            properties=_kvs(resp.properties),
            db_id=int(getattr(resp, "db_id", 0)),
            created_timestamp=resp.created_timestamp,
            virtual_channel_names=list(resp.virtual_channel_names),
            physical_channel_names=list(resp.physical_channel_names),
            aliases=list(resp.aliases),
        )

    def _partitions(self, db: str, collection: str, collection_id: int) -> list[meta.PartitionBackupInfo]:
        from .._proto import milvus_pb2 as m

        resp = self._call(
            "ShowPartitions",
            m.ShowPartitionsRequest(db_name=db, collection_name=collection),
            db,
            f"list partitions of {db}.{collection}",
        )
        return [
            meta.PartitionBackupInfo(
                partition_id=pid,
                partition_name=pname,
                collection_id=collection_id,
                load_state=self._load_state(db, collection, pname),
            )
            for pname, pid in zip(resp.partition_names, resp.partitionIDs, strict=False)
        ]

    def _indexes(self, db: str, collection: str) -> list[meta.IndexInfo]:
        from .._proto import milvus_pb2 as m

        req = m.DescribeIndexRequest(db_name=db, collection_name=collection)
        try:
            resp = self._call("DescribeIndex", req, db, f"describe indexes of {db}.{collection}")
        except RpcFailed as e:
            if _is(e, _CODE_INDEX_NOT_FOUND, "index not found", "index doesn't exist"):
                return []
            raise
        out = []
        for desc in resp.index_descriptions:
            params = {kv.key: kv.value for kv in desc.params}
            out.append(
                meta.IndexInfo(
                    field_name=desc.field_name,
                    index_name=desc.index_name,
                    index_type=params.get("index_type", ""),
                    params=params,
                    index_id=desc.indexID,
                )
            )
        return out

    def _load_state(self, db: str, collection: str, partition: str | None = None) -> str:
        from .._proto import milvus_pb2 as m

        req = m.GetLoadStateRequest(db_name=db, collection_name=collection, partition_names=[partition] if partition else [])
        resp = self._call("GetLoadState", req, db, f"read the load state of {db}.{collection}")
        return _LOAD_STATES.get(int(resp.state), meta.LOAD_STATE_NOT_LOAD)

    # --- consistency of what is read -----------------------------------------------------

    def flush(self, db: str, collection: str) -> None:
        from .._proto import milvus_pb2 as m

        name = f"{db}.{collection}"
        resp = self._call("Flush", m.FlushRequest(db_name=db, collection_names=[collection]), db, f"flush {name}")
        segment_ids = list(resp.coll_segIDs[collection].data) if collection in resp.coll_segIDs else []
        flush_ts = resp.coll_flush_ts.get(collection, 0)
        req = m.GetFlushStateRequest(segmentIDs=segment_ids, flush_ts=flush_ts, db_name=db, collection_name=collection)
        self._wait(
            lambda: self._call("GetFlushState", req, db, f"read the flush state of {name}").flushed,
            f"flushing {name}",
        )

    def pause_gc(self, seconds: int, collection_ids: Sequence[int] = ()) -> bool:
        return self._gc.pause(seconds, collection_ids)

    def resume_gc(self) -> None:
        self._gc.release()

    def list_segments(self, db: str, collection: str) -> list[SegmentRef]:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        req = m.GetPersistentSegmentInfoRequest(dbName=db, collectionName=collection)
        # Compaction can drop a segment between the listing and the lookup of its info: the
        # server then answers "segment not found"; the Go tool retries up to 50 times.
        for attempt in range(50):
            try:
                resp = self._call("GetPersistentSegmentInfo", req, db, f"list segments of {db}.{collection}")
                break
            except RpcFailed as e:
                if attempt == 49 or not _is(e, _CODE_SEGMENT_NOT_FOUND, "segment not found"):
                    raise
                logs.retry(log, f"list segments of {db}.{collection}", "a segment was compacted away meanwhile",
                           attempt + 1, 50, 0.1)
                time.sleep(0.1)
        segments = [
            SegmentRef(
                segment_id=info.segmentID,
                collection_id=info.collectionID,
                partition_id=info.partitionID,
                num_rows=info.num_rows,
                is_l0=info.level == c.SegmentLevel.L0,  # from 2.4 (2.3 has no L0)
                storage_version=int(info.storage_version),
            )
            for info in resp.infos
            if info.state == c.SegmentState.Flushed
        ]
        return sorted(segments, key=lambda s: s.segment_id)

    # --- creating on restore ---------------------------------------------------------------

    def create_database(self, db: str) -> None:
        from .._proto import milvus_pb2 as m

        if db in self.list_databases():
            return
        try:
            self._call("CreateDatabase", m.CreateDatabaseRequest(db_name=db), what=f"create database {db}")
        except RpcFailed as e:
            if "already exist" not in e.reason.lower():
                raise

    def drop_collection(self, db: str, collection: str) -> None:
        from .._proto import milvus_pb2 as m

        if not self.has_collection(db, collection):
            return
        req = m.DropCollectionRequest(db_name=db, collection_name=collection)
        self._call("DropCollection", req, db, f"drop collection {db}.{collection}")

    def create_partition(self, db: str, collection: str, partition: str) -> None:
        from .._proto import milvus_pb2 as m

        name = f"{db}.{collection}"
        has = m.HasPartitionRequest(db_name=db, collection_name=collection, partition_name=partition)
        if self._call("HasPartition", has, db, f"check partition {partition} of {name}").value:
            return
        req = m.CreatePartitionRequest(db_name=db, collection_name=collection, partition_name=partition)
        self._call("CreatePartition", req, db, f"create partition {partition} of {name}")

    def create_index(self, db: str, collection: str, index: meta.IndexInfo) -> None:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        # DescribeIndex params go back as they came (index_type, metric_type and the "params"
        # JSON string): that is the shape CreateIndex takes.
        params = dict(index.params)
        if index.index_type and "index_type" not in params:
            params["index_type"] = index.index_type
        req = m.CreateIndexRequest(
            db_name=db,
            collection_name=collection,
            field_name=index.field_name,
            index_name=index.index_name,
            extra_params=[c.KeyValuePair(key=k, value=v) for k, v in params.items()],
        )
        self._call("CreateIndex", req, db, f"create index {index.index_name or index.field_name} on {db}.{collection}")

    def drop_indexes(self, db: str, collection: str) -> None:
        from .._proto import milvus_pb2 as m

        for index in self._indexes(db, collection):
            req = m.DropIndexRequest(
                db_name=db, collection_name=collection, field_name=index.field_name, index_name=index.index_name
            )
            self._call("DropIndex", req, db, f"drop index {index.index_name} of {db}.{collection}")

    def load_collection(self, db: str, collection: str) -> None:
        from .._proto import milvus_pb2 as m

        name = f"{db}.{collection}"
        self._call("LoadCollection", m.LoadCollectionRequest(db_name=db, collection_name=collection), db, f"load {name}")
        self._wait(lambda: self._load_state(db, collection) == meta.LOAD_STATE_LOADED, f"loading {name}")

    def create_alias(self, db: str, collection: str, alias: str) -> None:
        from .._proto import milvus_pb2 as m

        req = m.CreateAliasRequest(db_name=db, collection_name=collection, alias=alias)
        self._call("CreateAlias", req, db, f"create alias {alias} for {db}.{collection}")

    def count_rows(self, db: str, collection: str) -> int:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        req = m.QueryRequest(
            db_name=db,
            collection_name=collection,
            expr="",
            output_fields=["count(*)"],
            consistency_level=c.ConsistencyLevel.Strong,
            use_default_consistency=False,
        )
        resp = self._call("Query", req, db, f"count rows of {db}.{collection}")
        for field_data in resp.fields_data:
            return int(field_data.scalars.long_data.data[0])
        raise MilvusError(f"Milvus {self._where()} returned no count for {db}.{collection}")

    # --- plumbing -------------------------------------------------------------------------

    def _where(self) -> str:
        endpoint = getattr(self.connection, "endpoint", None)
        address = getattr(endpoint, "address", "")
        return f"{self.version} at {address}" if address else self.version

    def _call(self, method: str, request: Any, db: str = "", what: str = "") -> Any:
        """Send ``request``; retry while the server is unavailable or rate-limits; raise
        :class:`RpcFailed` with the server's reason on an error status."""
        import grpc

        delay = 0.06
        for attempt in range(6):
            try:
                resp = self.connection.call(method, request, timeout=self.rpc_timeout, db=db)
            except grpc.RpcError as e:
                retriable = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
                if retriable and attempt < 5:
                    logs.retry(log, what or method, f"Milvus answered {e.code().name}", attempt + 1, 6, delay)
                    time.sleep(delay)
                    delay *= 3
                    continue
                error = (RpcUnimplemented if e.code() == grpc.StatusCode.UNIMPLEMENTED else
                         MilvusUnreachable if unreachable_status(e.code()) else MilvusError)
                raise error(f"cannot {what or method} on Milvus {self._where()}: {e.details() or e.code().name}") from None
            status = resp if _status_only(method) else resp.status
            if status.error_code == 0 and status.code == 0:
                return resp
            if (status.code == _CODE_RATE_LIMIT or status.error_code == _LEGACY_RATE_LIMIT) and attempt < 5:
                logs.retry(log, what or method, f"rate-limited: {status.reason or 'no reason given'}", attempt + 1, 6, delay)
                time.sleep(delay)
                delay *= 3
                continue
            reason = status.reason or f"error code {status.code or status.error_code}"
            if status.code == _CODE_RATE_LIMIT or status.error_code == _LEGACY_RATE_LIMIT:
                raise RpcThrottled(f"cannot {what or method} on Milvus {self._where()}: {reason}", reason, status.code)
            raise RpcFailed(f"cannot {what or method} on Milvus {self._where()}: {reason}", reason, status.code)
        raise AssertionError("unreachable")

    def _wait(self, done: Any, what: str) -> None:
        # Short polls first: a flush of a flushed collection is done within a checkpoint tick or
        # two, and doubling the delay from the start overshot that by up to half the wait (0.64 s
        # waited for a flush done after 0.35 s was most of an increment's time). So polls stay at
        # most quick_poll apart for quick_span seconds, then double up to poll_interval.
        start = time.monotonic()
        deadline, delay = start + self.wait_timeout, self.first_poll
        while not done():
            now = time.monotonic()
            if now > deadline:
                raise MilvusError(f"{what} on Milvus {self._where()} did not finish within {self.wait_timeout:g} s")
            time.sleep(delay)
            cap = self.quick_poll if now - start < self.quick_span else self.poll_interval
            delay = min(2 * delay, max(cap, self.first_poll))


@functools.cache
def _status_only(method: str) -> bool:
    """Whether ``method``'s reply is a bare commonpb.Status, as the service's protos say (a
    list kept by hand missed RPCs and read ``.status`` of a Status)."""
    return service_method(method).output_type.full_name == "milvus.proto.common.Status"


def _import_status(resp: Any) -> ImportStatus:
    from .._proto import common_pb2 as c

    infos = {kv.key: kv.value for kv in resp.infos}
    state = {
        c.ImportState.ImportPending: ImportState.PENDING,
        c.ImportState.ImportFailed: ImportState.FAILED,
        c.ImportState.ImportFailedAndCleaned: ImportState.FAILED,
        c.ImportState.ImportCompleted: ImportState.COMPLETED,
    }.get(resp.state, ImportState.RUNNING)  # Started, Persisted, Flushed
    try:
        progress = int(float(infos.get("progress_percent", "0")))
    except ValueError:
        progress = 0
    if state is ImportState.COMPLETED:
        progress = 100
    reason = infos.get("failed_reason", "") if state is ImportState.FAILED else ""
    return ImportStatus(state=state, progress=progress, reason=reason, rows=int(resp.row_count),
                        collection_id=int(resp.collection_id), partition=infos.get("partition", ""))


def _is(error: RpcFailed, code: int, *phrases: str) -> bool:
    reason = error.reason.lower()
    return error.code == code or any(p in reason for p in phrases)


def _kvs(pairs: Iterable[Any]) -> list[meta.KeyValuePair]:
    return [meta.KeyValuePair(key=kv.key, value=kv.value) for kv in pairs]


# --------------------------------------------------------------------------------------
# Schema: the server's proto -> the Go tool's JSON model


# The proto fields of each schema message that the conversions below keep. A field set outside
# them would be lost from the backup without a word: refused instead (_refuse_unkept), which
# also catches what a newer Milvus adds before mbackup knows it.
_KEPT = {
    "CollectionSchema": {"name", "description", "autoID", "fields", "enable_dynamic_field", "properties", "functions",
                         "struct_array_fields",
                         "dbName", "version"},  # the backup records the database; the server numbers versions
    "FieldSchema": {"fieldID", "name", "is_primary_key", "description", "data_type", "type_params", "index_params",
                    "autoID", "state", "element_type", "default_value", "is_dynamic", "is_partition_key",
                    "is_clustering_key", "nullable", "is_function_output"},
    "StructArrayFieldSchema": {"fieldID", "name", "description", "fields", "type_params", "nullable"},
    "FunctionSchema": {"name", "id", "description", "type", "input_field_names", "input_field_ids",
                       "output_field_names", "output_field_ids", "params"},
}


def _refuse_unkept(message: Any, where: str) -> None:
    kept = _KEPT[message.DESCRIPTOR.name]
    unkept = [fd.name for fd, _value in message.ListFields() if fd.name not in kept]
    if unkept:
        raise MilvusError(f"{where} sets {', '.join(unkept)}, which mbackup cannot keep in a backup yet (it would "
                          "be lost without a word): leave the collection out with --filter")


def _schema_from_proto(schema: Any, where: str) -> meta.CollectionSchema:
    """Every schema feature the lines have: functions (BM25 and others) with their output
    fields, struct array fields, and per field nullable, default values, partition and
    clustering keys, the dynamic field flag. What it cannot keep is refused, naming
    ``where`` (db.collection)."""
    _refuse_unkept(schema, f"the schema of {where}")
    for f in schema.fields:
        _refuse_unkept(f, f"field {f.name!r} of {where}")
    for fn in schema.functions:
        _refuse_unkept(fn, f"function {fn.name!r} of {where}")
    for s in schema.struct_array_fields:
        _refuse_unkept(s, f"struct array field {s.name!r} of {where}")
        for f in s.fields:
            _refuse_unkept(f, f"field {f.name!r} of struct array field {s.name!r} of {where}")
    return meta.CollectionSchema(
        name=schema.name,
        description=schema.description,
        auto_id=schema.autoID,
        fields=[_field_from_proto(f) for f in schema.fields],
        enable_dynamic_field=schema.enable_dynamic_field,
        properties=_kvs(schema.properties),
        functions=[_function_from_proto(fn) for fn in schema.functions],
        struct_array_fields=[
            meta.StructArrayFieldSchema(field_id=s.fieldID, name=s.name, description=s.description,
                                        fields=[_field_from_proto(f) for f in s.fields], type_params=_kvs(s.type_params),
                                        nullable=s.nullable)
            for s in schema.struct_array_fields
        ],
    )


def _function_from_proto(fn: Any) -> meta.FunctionSchema:
    return meta.FunctionSchema(
        name=fn.name,
        id=fn.id,
        description=fn.description,
        type=int(fn.type),
        input_field_names=list(fn.input_field_names),
        input_field_ids=list(fn.input_field_ids),
        output_field_names=list(fn.output_field_names),
        output_field_ids=list(fn.output_field_ids),
        params=_kvs(fn.params),
    )


def _field_from_proto(f: Any) -> meta.FieldSchema:
    default = base64.b64encode(f.default_value.SerializeToString()).decode() if f.HasField("default_value") else ""
    return meta.FieldSchema(
        field_id=f.fieldID,
        name=f.name,
        is_primary_key=f.is_primary_key,
        description=f.description,
        data_type=int(f.data_type),
        type_params=_kvs(f.type_params),
        index_params=_kvs(f.index_params),
        auto_id=f.autoID,
        state=int(f.state),
        element_type=int(f.element_type),
        is_dynamic=f.is_dynamic,
        is_partition_key=f.is_partition_key,
        is_clustering_key=f.is_clustering_key,
        nullable=f.nullable,
        is_function_output=f.is_function_output,
        default_value_base64=default,
    )


# --------------------------------------------------------------------------------------
# RBAC: the server's proto -> the Go tool's rbac_meta (its omitempty; a grant's role,
# object and grantor are always written, {} when empty)


def _go(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in ("", [], None)}


def _rbac_from_proto(rbac: Any) -> dict[str, Any]:
    return _go(
        users=[_go(user=u.user, password=u.password, roles=[_go(name=r.name) for r in u.roles]) for u in rbac.users],
        roles=[_go(name=r.name) for r in rbac.roles],
        grants=[_go(role=_go(name=g.role.name), object=_go(name=g.object.name), object_name=g.object_name,
                    grantor={"user": _go(name=g.grantor.user.name), "privilege": _go(name=g.grantor.privilege.name)},
                    db_name=g.db_name) for g in rbac.grants],
        privilege_groups=[_go(group_name=p.group_name, privileges=[_go(name=x.name) for x in p.privileges])
                          for p in rbac.privilege_groups],
    )
