"""The RPCs the contract server answers, one function each: ``Name(state, request, db)``
returns the response message (``db``: the database the request is for, resolved as a 2.4+
proxy does). An RPC not here answers UNIMPLEMENTED, and the server logs it as unhandled; an
RPC in the profile's ``unimplemented`` never gets here.

Only what the adapters call is answered, as the protos and the Go tool describe it; the
answers are plausible, not Milvus' own (see the package docstring).
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from milvus_backup.plugins.manager import storage_backends

from .replicate import GetReplicateConfiguration, GetReplicateInfo  # noqa: F401  (the 2.6 secondary's RPCs)
from .state import (
    DROPPED,
    FLUSHED,
    GROWING,
    INDEX_NOT_FOUND,
    PARTITION_NOT_FOUND,
    Collection,
    MilvusFault,
    Snapshot,
    SnapshotJob,
    State,
)

OK = common_pb2.Status()
_SEALED = common_pb2.SegmentState.Sealed
_IMPORT_STATES = {"Pending": common_pb2.ImportState.ImportPending, "Importing": common_pb2.ImportState.ImportStarted,
                  "Completed": common_pb2.ImportState.ImportCompleted, "Failed": common_pb2.ImportState.ImportFailed}


def base36(value: int) -> str:
    """How Milvus' streaming messages write a uint64 property (strconv.FormatUint(v, 36))."""
    digits = string.digits + string.ascii_lowercase
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


# --- server ---------------------------------------------------------------------------------

def Connect(state: State, request, db):
    return milvus_pb2.ConnectResponse(status=OK, identifier=state.next_id() % 1_000_000, server_info=common_pb2.ServerInfo(
        build_tags=state.profile.build_tags, deploy_mode="CLUSTER", git_commit="contract"))


def GetVersion(state: State, request, db):
    return milvus_pb2.GetVersionResponse(status=OK, version=state.profile.reported_version())


# --- databases and collections ----------------------------------------------------------

def ListDatabases(state: State, request, db):
    dbs = list(state.databases.values())
    return milvus_pb2.ListDatabasesResponse(status=OK, db_names=[d.name for d in dbs], db_ids=[d.id for d in dbs],
                                            created_timestamp=[d.created for d in dbs])


def DescribeDatabase(state: State, request, db):
    found = state.database(request.db_name or db)
    return milvus_pb2.DescribeDatabaseResponse(
        status=OK, db_name=found.name, dbID=found.id, created_timestamp=found.created,
        properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in found.properties.items()])


def CreateDatabase(state: State, request, db):
    if request.db_name in state.databases:
        raise MilvusFault(65535, f"database already exist: {request.db_name}")
    state.add_database(request.db_name, properties={kv.key: kv.value for kv in request.properties})
    return OK


def ShowCollections(state: State, request, db):
    state.database(db)
    colls = [c for (d, _), c in state.collections.items() if d == db]
    return milvus_pb2.ShowCollectionsResponse(status=OK, collection_names=[c.name for c in colls],
                                              collection_ids=[c.id for c in colls])


def HasCollection(state: State, request, db):
    state.database(db)
    return milvus_pb2.BoolResponse(status=OK, value=(db, request.collection_name) in state.collections)


def DescribeCollection(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    # The dynamic field ($meta) is the server's own: DescribeCollection leaves it out.
    schema = schema_pb2.CollectionSchema()
    schema.CopyFrom(coll.schema)
    del schema.fields[:]
    schema.fields.extend(f for f in coll.schema.fields if not f.is_dynamic)
    return milvus_pb2.DescribeCollectionResponse(
        status=OK, schema=schema, collectionID=coll.id, virtual_channel_names=coll.vchannels,
        physical_channel_names=coll.pchannels, created_timestamp=coll.created, shards_num=coll.shards,
        aliases=coll.aliases, consistency_level=coll.consistency_level, collection_name=coll.name,
        properties=[common_pb2.KeyValuePair(key=k, value=v) for k, v in coll.properties.items()], db_name=coll.db,
        num_partitions=len(coll.partitions), db_id=state.database(coll.db).id)


def CreateCollection(state: State, request, db):
    if (db, request.collection_name) in state.collections:
        raise MilvusFault(65535, f"collection already exists: {request.collection_name}")
    schema = schema_pb2.CollectionSchema.FromString(request.schema)
    if any(f.is_dynamic for f in schema.fields):
        raise MilvusFault(1100, "cannot explicitly set a field as a dynamic field")
    for f in schema.fields:
        f.fieldID = 0  # the server numbers fields itself, in the order sent
    if schema.enable_dynamic_field:  # then adds $meta, numbered after them
        schema.fields.append(schema_pb2.FieldSchema(name="$meta", data_type=schema_pb2.DataType.JSON, is_dynamic=True))
    key = any(f.is_partition_key for f in schema.fields)
    partitions = tuple(f"_default_{i}" for i in range(request.num_partitions or 16)) if key else ("_default",)
    coll = state.add_collection(db, request.collection_name, schema, partitions=partitions,
                                shards=request.shards_num or 1,
                                properties={kv.key: kv.value for kv in request.properties})
    coll.consistency_level = request.consistency_level
    return OK


def AddCollectionField(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    field = schema_pb2.FieldSchema.FromString(request.schema)
    if field.is_dynamic:
        raise MilvusFault(1100, "cannot add a dynamic field")
    if any(f.name == field.name for f in coll.schema.fields):
        raise MilvusFault(65535, f"duplicate field name: {field.name}")
    if not field.nullable:
        raise MilvusFault(1100, f"added field must be nullable, please check it, field name = {field.name}")
    field.fieldID = max(f.fieldID for f in coll.schema.fields) + 1  # the next id, as the server gives it
    coll.schema.fields.append(field)
    return OK


def AlterCollection(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    coll.properties.update({kv.key: kv.value for kv in request.properties})
    for key in request.delete_keys:
        coll.properties.pop(key, None)
    return OK


def DropCollection(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    del state.collections[(coll.db, coll.name)]
    return OK


def ShowPartitions(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    return milvus_pb2.ShowPartitionsResponse(status=OK, partition_names=list(coll.partitions),
                                             partitionIDs=list(coll.partitions.values()))


def HasPartition(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    return milvus_pb2.BoolResponse(status=OK, value=request.partition_name in coll.partitions)


def CreatePartition(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    coll.partitions.setdefault(request.partition_name, state.next_id())
    return OK


def DescribeIndex(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    if not coll.indexes:
        raise MilvusFault(INDEX_NOT_FOUND, f"index not found[collection={coll.name}]")
    return milvus_pb2.DescribeIndexResponse(status=OK, index_descriptions=coll.indexes)


def GetLoadState(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    return milvus_pb2.GetLoadStateResponse(status=OK, state=coll.load_state)


def GetLoadingProgress(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    progress = {common_pb2.LoadState.LoadStateLoaded: 100, common_pb2.LoadState.LoadStateLoading: 50}
    return milvus_pb2.GetLoadingProgressResponse(status=OK, progress=progress.get(coll.load_state, 0))


# --- flush and segments -------------------------------------------------------------------

def Flush(state: State, request, db):
    resp = milvus_pb2.FlushResponse(status=OK, db_name=db)
    ts = state.now_ts()
    for name in request.collection_names:
        coll = state.collection(db, name)
        sealed = [s for s in coll.segments.values() if s.state == GROWING]
        for seg in sealed:
            seg.state = _SEALED
        resp.coll_segIDs[name].data.extend(s.id for s in sealed)
        resp.flush_coll_segIDs[name].data.extend(s.id for s in coll.segments.values() if s.state == FLUSHED)
        resp.coll_flush_ts[name] = ts
        resp.coll_seal_times[name] = (ts >> 18) // 1000
        for vch in coll.vchannels:
            resp.channel_cps[vch].channel_name = vch
            resp.channel_cps[vch].timestamp = ts
    return resp


def _finish_flush(state: State, collections: list[Collection]) -> bool:
    if state.flush_polls > 0:
        state.flush_polls -= 1
        return False
    for coll in collections:
        for seg in coll.segments.values():
            if seg.state in (GROWING, _SEALED):
                seg.state = FLUSHED
    return True


def GetFlushState(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    return milvus_pb2.GetFlushStateResponse(status=OK, flushed=_finish_flush(state, [coll]))


def FlushAll(state: State, request, db):
    ts = state.now_ts()
    for coll in state.collections.values():
        for seg in coll.segments.values():
            if seg.state == GROWING:
                seg.state = _SEALED
    resp = milvus_pb2.FlushAllResponse(status=OK, flush_all_ts=ts)
    if state.profile.flush_all_msgs:
        pchannels = sorted({p for c in state.collections.values() for p in c.pchannels} or {"by-dev-rootcoord-dml_0"})
        for pch in pchannels:
            msg = resp.flush_all_msgs[pch]
            msg.id.id = f"{ts}"
            msg.properties["_tt"] = base36(ts)
            msg.properties["_vc"] = pch
        resp.cluster_info.cchannel = "by-dev-rootcoord-dml_0_vcchan"  # Milvus names it <pchannel>_vcchan
        resp.cluster_info.pchannels.extend(pchannels)
    return resp


def GetFlushAllState(state: State, request, db):
    return milvus_pb2.GetFlushAllStateResponse(status=OK, flushed=_finish_flush(state, list(state.collections.values())))


def GetPersistentSegmentInfo(state: State, request, db):
    coll = state.collection(db, request.collectionName)
    return milvus_pb2.GetPersistentSegmentInfoResponse(status=OK, infos=[
        milvus_pb2.PersistentSegmentInfo(
            segmentID=s.id, collectionID=s.collection_id, partitionID=s.partition_id, num_rows=s.rows, state=s.state,
            level=s.level, is_sorted=True, storage_version=s.storage_version, insert_channel=s.vchannel)
        for s in coll.segments.values() if s.state not in (GROWING, DROPPED)])


# --- import ----------------------------------------------------------------------------------

def Import(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    if request.partition_name and request.partition_name not in coll.partitions:
        raise MilvusFault(PARTITION_NOT_FOUND, f"partition not found[partition={request.partition_name}]")
    job = state.new_import(db, request.collection_name, request.partition_name, [list(request.files)],
                           {kv.key: kv.value for kv in request.options}, "grpc")
    return milvus_pb2.ImportResponse(status=OK, tasks=[job.id])


def GetImportState(state: State, request, db):
    job = state.imports.get(request.task)
    if job is None:
        raise MilvusFault(65535, f"import task not found[task={request.task}]")
    coll = state.collections.get((job.db, job.collection))
    seen, progress = job.observe()
    infos = [common_pb2.KeyValuePair(key="progress_percent", value=str(progress)),
             common_pb2.KeyValuePair(key="partition", value=job.partition)]
    if job.reason and seen == "Failed":
        infos.append(common_pb2.KeyValuePair(key="failed_reason", value=job.reason))
    return milvus_pb2.GetImportStateResponse(status=OK, state=_IMPORT_STATES[seen],
                                             row_count=job.rows if seen == "Completed" else 0,
                                             infos=infos, id=job.id, collection_id=coll.id if coll else 0)


# --- snapshots ---------------------------------------------------------------------------

_SNAPSHOT_STATES = {"Pending": milvus_pb2.RestoreSnapshotState.RestoreSnapshotPending,
                    "Importing": milvus_pb2.RestoreSnapshotState.RestoreSnapshotExecuting,
                    "Completed": milvus_pb2.RestoreSnapshotState.RestoreSnapshotCompleted,
                    "Failed": milvus_pb2.RestoreSnapshotState.RestoreSnapshotFailed}


def BackupRBAC(state: State, request, db):
    meta = milvus_pb2.RBACMeta.FromString(state.rbac.SerializeToString())
    if not state.profile.privilege_groups:
        del meta.privilege_groups[:]
    return milvus_pb2.BackupRBACMetaResponse(status=OK, RBAC_meta=meta)


def RestoreRBAC(state: State, request, db):
    # What a real server does with a user it already has is not known here: the contract takes
    # the worst case, the restored password replaces the user's own, so a test can tell.
    meta = request.RBAC_meta
    users = {u.user: u for u in state.rbac.users}
    for user in meta.users:
        if user.user in users:
            users[user.user].CopyFrom(user)
        else:
            state.rbac.users.add().CopyFrom(user)
    for field in ("roles", "grants", "privilege_groups"):
        have = getattr(state.rbac, field)
        for item in getattr(meta, field):
            if item not in have:
                have.add().CopyFrom(item)
    return OK


# --- snapshots (3.0) ---------------------------------------------------------------------------
# A bundle as the contract writes it (NOT Milvus' own format, which the Go tool does not read
# either): <target>/snapshots/<collection id>/metadata/<snapshot id>.json naming the schema,
# partitions and segments, and every binlog under <target>/snapshots/<collection id>/binlogs/.

_SNAPSHOT_STATES = {"Pending": 1, "Executing": 2, "Completed": 3, "Failed": 4}


def _bundle(state: State, uri: str, external_spec: str) -> tuple[Any, str]:
    """The store and object key a snapshot URI names. ``s3://<bucket>/<key>``: the bucket
    this Milvus uses (state.bundle_store). ``minio://<host>/<bucket>/<key>``: another S3
    server, reached, as Milvus does, only with the endpoint of the URI and the credentials of
    the external spec (the Go tool's extfs JSON), so a wrong one fails as it would there."""
    scheme, _, rest = uri.partition("://")
    if scheme == "minio" and external_spec:
        host, _, rest = rest.partition("/")
        bucket, _, key = rest.partition("/")
        extfs = json.loads(external_spec)["extfs"]
        if not key or extfs.get("cloud_provider") != "minio":
            raise MilvusFault(1100, f"invalid snapshot path {uri} for the external spec given")
        http = "https" if extfs.get("use_ssl") == "true" else "http"
        store = storage_backends().open(f"s3://{bucket}", {
            "aws_endpoint": f"{http}://{host}", "aws_access_key_id": extfs.get("access_key_id", ""),
            "aws_secret_access_key": extfs.get("access_key_value", ""), "aws_allow_http": "true"})
        return store, key.strip("/")
    bucket, _, key = rest.partition("/")
    if scheme != "s3" or not key or state.bundle_store is None or bucket != state.bundle_bucket or external_spec:
        raise MilvusFault(1100, f"invalid snapshot path {uri}: not in a bucket this Milvus reaches")
    return state.bundle_store, key.strip("/")


def CreateSnapshot(state: State, request, db):
    coll = state.collection(db, request.collection_name)
    if (db, coll.name, request.name) in state.snapshots:
        raise MilvusFault(65535, f"snapshot already exists[snapshot={request.name}]")
    state.snapshots[(db, coll.name, request.name)] = Snapshot(state.next_id(), db, coll.name, request.name,
                                                             state.now_ts())
    return OK


def _snapshot(state: State, db: str, collection: str, name: str) -> Snapshot:
    found = state.snapshots.get((db, collection, name))
    if found is None:
        raise MilvusFault(65535, f"snapshot not found[snapshot={name}]")
    return found


def DescribeSnapshot(state: State, request, db):
    snap = _snapshot(state, db, request.collection_name, request.name)
    return milvus_pb2.DescribeSnapshotResponse(status=OK, name=snap.name, collection_name=snap.collection,
                                               create_ts=snap.create_ts)


def DropSnapshot(state: State, request, db):
    snap = _snapshot(state, db, request.collection_name, request.name)
    del state.snapshots[(snap.db, snap.collection, snap.name)]
    return OK


def _job(state: State, kind: str, db: str, collection: str, snapshot: str = "") -> SnapshotJob:
    job = SnapshotJob(state.next_id(), kind, db, collection, snapshot, **state.snapshot_outcome)
    state.snapshot_jobs[job.id] = job
    return job


def ExportSnapshot(state: State, request, db):
    snap = _snapshot(state, db, request.collection_name, request.name)
    store, root = _bundle(state, request.target_s3_path, request.external_spec)
    coll = state.collection(db, snap.collection)
    job = _job(state, "export", db, coll.name, snap.name)
    base = f"{root}/snapshots/{coll.id}"
    files = {f"{base}/binlogs/{key.split('/', 1)[1]}": data for key, data in state.binlogs("files").items()
             if key.split("/")[2] == str(coll.id)}
    for key, data in files.items():
        store.write(key, data)
    if job.state == "Failed":
        return milvus_pb2.ExportSnapshotResponse(status=OK, job_id=job.id)  # a half-written bundle, no metadata
    meta_key = f"{base}/metadata/{snap.id}.json"
    metadata = json.dumps({
        "collection": coll.name, "schema": base64.b64encode(coll.schema.SerializeToString()).decode(),
        "partitions": list(coll.partitions), "shards": coll.shards,
        "segments": [{"partition": next((n for n, i in coll.partitions.items() if i == seg.partition_id), ""),
                      "rows": seg.rows, "level": int(seg.level)}
                     for seg in coll.segments.values() if seg.state == FLUSHED],
        "files": sorted(files)}).encode()
    store.write(meta_key, metadata)
    job.metadata_uri = f"{request.target_s3_path.rstrip('/')}/{meta_key[len(root) + 1:]}"
    job.total_files, job.total_bytes = len(files) + 1, sum(map(len, files.values())) + len(metadata)
    return milvus_pb2.ExportSnapshotResponse(status=OK, job_id=job.id)


def _advance(job: SnapshotJob) -> tuple[str, int]:
    if job.polls_left > 0:
        job.polls_left -= 1
        return "Executing", 50
    return job.state, 100 if job.state == "Completed" else 50


def GetExportSnapshotState(state: State, request, db):
    job = state.snapshot_jobs.get(request.job_id)
    if job is None or job.kind != "export":
        raise MilvusFault(65535, f"export job not found[job={request.job_id}]")
    shown, progress = _advance(job)
    done = shown == "Completed"
    return milvus_pb2.GetExportSnapshotStateResponse(status=OK, info=milvus_pb2.ExportSnapshotInfo(
        job_id=job.id, snapshot_name=job.snapshot, db_name=job.db, collection_name=job.collection,
        state=_SNAPSHOT_STATES[shown], progress=progress, reason=job.reason if shown == "Failed" else "",
        total_files=job.total_files, copied_files=job.total_files if done else 0,
        snapshot_metadata_uri=job.metadata_uri if done else "", total_bytes=job.total_bytes if done else 0))


def RestoreExternalSnapshot(state: State, request, db):
    store, key = _bundle(state, request.snapshot_metadata_uri, request.external_spec)
    if "/snapshots/" not in key or "/metadata/" not in key:
        raise MilvusFault(1100, f"invalid snapshot metadata uri {request.snapshot_metadata_uri}")
    state.database(db)
    if (db, request.target_collection_name) in state.collections:
        raise MilvusFault(65535, f"collection already exists: {request.target_collection_name}")
    try:
        bundle = json.loads(store.read(key))
    except Exception:  # whatever the store says, Milvus answers that it cannot read it
        raise MilvusFault(65535, f"read snapshot metadata {request.snapshot_metadata_uri}: no such key") from None
    job = _job(state, "restore", db, request.target_collection_name)
    if job.state == "Failed":
        # Milvus made the collection before failing: the caller must not leave it looking restored.
        state.add_collection(db, job.collection, schema_pb2.CollectionSchema())
        return milvus_pb2.RestoreExternalSnapshotResponse(status=OK, job_id=job.id)
    schema = schema_pb2.CollectionSchema.FromString(base64.b64decode(bundle["schema"]))
    coll = state.add_collection(db, job.collection, schema, partitions=tuple(bundle["partitions"]),
                                shards=bundle["shards"])
    for seg in bundle["segments"]:
        state.add_segment(coll, seg["partition"] or None, rows=seg["rows"], level=seg["level"])
    return milvus_pb2.RestoreExternalSnapshotResponse(status=OK, job_id=job.id)


def GetRestoreSnapshotState(state: State, request, db):
    job = state.snapshot_jobs.get(request.job_id)
    if job is None or job.kind != "restore":
        raise MilvusFault(65535, f"restore job not found[job={request.job_id}]")
    shown, progress = _advance(job)
    return milvus_pb2.GetRestoreSnapshotStateResponse(status=OK, info=milvus_pb2.RestoreSnapshotInfo(
        job_id=job.id, db_name=job.db, collection_name=job.collection, state=_SNAPSHOT_STATES[shown],
        progress=progress, reason=job.reason if shown == "Failed" else ""))
