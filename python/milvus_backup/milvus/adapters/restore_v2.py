"""The restore side of the Milvus 2.4 - 3.x adapters: :class:`RestoreV2`, mixed into each line's
adapter (``class Milvus24Adapter(RestoreV2, RpcAdapter)``).

Tested against a wire contract (tests/milvus_contract: pymilvus' generated gRPC service and the
Go tool's HTTP endpoints, hand-built), NOT against a live server of these lines: none runs on
the machine this was written on. Every request is the one the Go tool (zilliztech/milvus-backup
f81df44, core/restore and internal/client/milvus) sends:

- one backup-mode import per segment group: gRPC ``Import`` (served by ImportV2) with
  ``files=[insert_log/c/p/<group>/, delta dir or ""]`` and the options ``backup=true``,
  ``skip_disk_quota_check=true`` and ``storage_version=N`` for a segment stored in a newer
  format; the database travels in the ``dbname`` header only, as ImportV2 reads it;
- L0 segments (deletes only) with ``files=[delta dir]`` and ``l0_import=true``, after their
  partition's data; the collection-level ones (partition -1) last, into partition "";
- batched, where asked: the REST ``/v2/vectordb/jobs/import/create`` with up to
  ``restore.maxSegmentsPerImportJob`` segments per job, grouped by (vchannel, storage version);
  several L0 segments in one job only from 2.6.5;
- the schema: fields whose id is past the dynamic field's (``$meta``) were added after the
  collection was made, and are added again with ``AddCollectionField`` after it is created, so
  every field keeps its id and the binlogs line up; a schema with functions is created with
  ``disable_func_runtime_check=true`` from 2.6.8, then set back to its own value;
- the database with its backed-up properties; users, roles, grants and privilege groups with
  ``RestoreRBAC`` (from 2.4.10), never a user the server has already.

Snapshot-format backups (3.0) are restored by ``backup/snapshot.py`` through the 3.x adapter.

It is an ``rpc.RpcAdapter`` (``_call``: a gRPC request with the ``dbname`` header; ``_where``;
``version``; ``server``, a :class:`~milvus_backup.milvus.versions.ServerVersion`); the line adapter sets ``_rest``
(an :class:`~.http_api.HttpApi` on the REST API, or None), as
``v2_4_plus.Milvus24Adapter`` does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby, pairwise
from typing import Any

from ... import logs
from ...format import meta
from ..connection import MilvusError
from ..versions import Feature
from .base import (
    STAGE_COLLECTION_L0,
    STAGE_DATA,
    STAGE_PARTITION_L0,
    CreateCollectionSpec,
    ImportJob,
    ImportState,
    ImportStatus,
    RbacRestored,
)
from .http_api import HttpApi, HttpFailed
from .rpc import RpcAdapter, RpcFailed, _import_status

log = logging.getLogger(__name__)

IMPORT_CREATE = "/v2/vectordb/jobs/import/create"
IMPORT_DESCRIBE = "/v2/vectordb/jobs/import/describe"
#: How a job id says it was started through the REST API (and is read back through it).
REST_JOB = "rest:"
DISABLE_FUNC_RUNTIME_CHECK = "disable_func_runtime_check"
_SYSTEM_FIELDS = 100  # field ids below are Milvus' own (row id 0, timestamp 1)
_REST_STATES = {"Pending": ImportState.PENDING, "Completed": ImportState.COMPLETED, "Failed": ImportState.FAILED}


class RestoreV2(RpcAdapter):
    """Restoring into Milvus 2.4 and later; see the module docstring."""

    _rest: HttpApi | None

    # --- what this line can restore -------------------------------------------------------

    def can_batch_imports(self) -> bool:
        return getattr(self, "_rest", None) is not None

    def can_restore_rbac(self) -> bool:
        return self.server.has(Feature.RBAC)

    def can_restore_database_properties(self) -> bool:
        return True

    # --- creating --------------------------------------------------------------------------

    def create_database(self, db: str, properties: Sequence[meta.KeyValuePair] = ()) -> None:
        """Create ``db`` with ``properties`` if it does not exist; an existing one is left as it is."""
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        if db in self.list_databases():
            return
        req = m.CreateDatabaseRequest(db_name=db, properties=[c.KeyValuePair(key=kv.key, value=kv.value)
                                                              for kv in properties])
        try:
            self._call("CreateDatabase", req, what=f"create database {db}")
        except RpcFailed as e:
            if "already exist" not in e.reason.lower():
                raise

    def create_collection(self, spec: CreateCollectionSpec) -> None:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        name = f"{spec.db_name}.{spec.collection_name}"
        schema = spec.schema
        create, add = split_added_fields(schema)
        properties = [(kv.key, kv.value) for kv in spec.properties]
        relax = bool(schema.functions) and self.server.has(Feature.FUNC_RUNTIME_CHECK)
        if relax:
            # The server would check each function against a live provider while creating it;
            # the backed-up collection was checked when it was made.
            properties = [kv for kv in properties if kv[0] != DISABLE_FUNC_RUNTIME_CHECK]
            properties.append((DISABLE_FUNC_RUNTIME_CHECK, "true"))
        req = m.CreateCollectionRequest(
            db_name=spec.db_name,
            collection_name=spec.collection_name,
            schema=schema_to_proto(schema, spec.collection_name, create, name).SerializeToString(),
            shards_num=spec.shards_num,
            consistency_level=spec.consistency_level,
            properties=[c.KeyValuePair(key=k, value=v) for k, v in properties],
        )
        if spec.num_partitions > 0 and any(f.is_partition_key for f in schema.fields):
            req.num_partitions = spec.num_partitions
        self._call("CreateCollection", req, spec.db_name, f"create collection {name}")
        try:
            for f in add:
                add_req = m.AddCollectionFieldRequest(db_name=spec.db_name, collection_name=spec.collection_name,
                                                      schema=field_to_proto(f, name).SerializeToString())
                self._call("AddCollectionField", add_req, spec.db_name,
                           f"add field {f.name} (id {f.field_id}, added after {name} was created) to {name}")
            own = {kv.key: kv.value for kv in [*schema.properties, *spec.properties]}.get(DISABLE_FUNC_RUNTIME_CHECK)
            if relax and own != "true":
                alter = m.AlterCollectionRequest(db_name=spec.db_name, collection_name=spec.collection_name,
                                                 properties=[c.KeyValuePair(key=DISABLE_FUNC_RUNTIME_CHECK,
                                                                            value="false")])
                self._call("AlterCollection", alter, spec.db_name,
                           f"set {DISABLE_FUNC_RUNTIME_CHECK} of {name} back to false")
        except BaseException:
            # Not the backed-up collection yet: a half-made one is not left behind.
            with contextlib.suppress(Exception):  # the error at hand is the one to show
                self.drop_collection(spec.db_name, spec.collection_name)
            raise

    # --- importing data ---------------------------------------------------------------------

    def import_jobs(self, collection: meta.CollectionBackupInfo, bdir: str, *, batch: int = 0) -> list[ImportJob]:
        """Per partition its data segments, then its L0 segments; the collection-level L0
        segments last. One segment per job unless ``batch`` asks for REST jobs of up to that
        many segments."""
        jobs: list[ImportJob] = []
        for p in collection.partition_backups:
            data = [s for s in p.segment_backups if s is not None and not s.is_l0]
            jobs += self._data_jobs(collection, p, data, bdir, batch)
            l0 = [s for s in p.segment_backups if s is not None and s.is_l0]
            jobs += self._l0_jobs(p.partition_name, l0, bdir, batch, STAGE_PARTITION_L0)
        return jobs + self._l0_jobs("", [s for s in collection.l0_segments if s is not None], bdir, batch,
                                    STAGE_COLLECTION_L0)

    def _data_jobs(self, c: meta.CollectionBackupInfo, p: meta.PartitionBackupInfo,
                   data: list[meta.SegmentBackupInfo], bdir: str, batch: int) -> list[ImportJob]:
        if not data:
            return []
        if not all(s.group_id for s in data):
            # Made before group ids (2023): the partition's prefixes in one job, as the Go tool does.
            has_delta = any(fb is not None and fb.binlogs for s in data for fb in s.deltalogs)
            dirs = meta.partition_import_dirs(bdir, c.collection_id, p.partition_id, with_delta=has_delta)
            return [ImportJob(p.partition_name, p.partition_name, ((dirs.insert or "", dirs.delta or ""),),
                              tuple(data), storage_version=max(s.storage_version for s in data), by_partition=True)]
        return [_job(p.partition_name, chunk, bdir, STAGE_DATA, bool(batch))
                for chunk in _chunks(data, batch or 1)]

    def _l0_jobs(self, partition: str, l0: list[meta.SegmentBackupInfo], bdir: str, batch: int,
                 stage: int) -> list[ImportJob]:
        # gRPC imports one segment per job; the REST import takes several L0 segments only from 2.6.5.
        size = batch if batch and self.server.has(Feature.MULTI_L0_IN_ONE_JOB) else 1
        return [_job(partition, chunk, bdir, stage, bool(batch)) for chunk in _chunks(l0, size)]

    def start_import_job(self, db: str, collection: str, job: ImportJob) -> str:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        options = {"skip_disk_quota_check": "true", ("l0_import" if job.l0 else "backup"): "true"}
        if job.storage_version > 0:
            options["storage_version"] = str(job.storage_version)
        what = f"start an import of {job.what} into {db}.{collection}"
        if job.batched:
            return REST_JOB + self._rest_import(db, collection, job, options, what)
        (insert, delta), = job.files
        # ImportV2 takes the database from the dbname header only (the Go tool sends no db_name).
        req = m.ImportRequest(collection_name=collection, partition_name=job.partition,
                              files=[delta] if job.l0 else [insert, delta],
                              options=[c.KeyValuePair(key=k, value=v) for k, v in options.items()])
        resp = self._call("Import", req, db, what)
        if not resp.tasks:
            raise MilvusError(f"Milvus {self._where()} started no import job for {job.what} of {db}.{collection}")
        return str(resp.tasks[0])

    def start_import(self, db: str, collection: str, partition: str, files: list[str]) -> str:
        """One backup-mode import of one group of prefixes (the base contract's form)."""
        insert, delta = [*files, "", ""][:2]
        return self.start_import_job(db, collection, ImportJob(partition, partition, ((insert, delta),), ()))

    def _rest_import(self, db: str, collection: str, job: ImportJob, options: dict[str, str], what: str) -> str:
        body = {"dbName": db, "collectionName": collection, "files": [[f for f in group if f] for group in job.files],
                "options": options}
        if job.partition:  # the collection-level L0 deletes name none
            body["partitionName"] = job.partition
        answer = self._rest_call(IMPORT_CREATE, body, what, headers={"Request-Timeout": "600"})
        job_id = str((answer.get("data") or {}).get("jobId") or "") if isinstance(answer.get("data"), dict) else ""
        if not job_id.isdigit():
            raise MilvusError(f"cannot {what}: the Milvus REST API answered without a job id")
        return job_id

    def import_status(self, db: str, job_id: str) -> ImportStatus:
        from .._proto import milvus_pb2 as m

        if job_id.startswith(REST_JOB):
            return self._rest_import_status(db, job_id.removeprefix(REST_JOB))
        resp = self._call("GetImportState", m.GetImportStateRequest(task=int(job_id)), db,
                          f"read import job {job_id}")
        return _import_status(resp)

    def _rest_import_status(self, db: str, job_id: str) -> ImportStatus:
        # A poll may be retried (the Go tool retries it too); a create is not: it could start a job twice.
        answer = self._rest_call(IMPORT_DESCRIBE, {"dbName": db, "jobId": job_id}, f"read import job {job_id}",
                                 attempts=6)
        found = answer.get("data")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        state = _REST_STATES.get(str(data.get("state", "")), ImportState.RUNNING)  # Importing, Uncommitted, ...
        try:
            progress, rows = int(data.get("progress") or 0), int(data.get("totalRows") or 0)
        except (TypeError, ValueError):
            progress, rows = 0, 0
        return ImportStatus(state=state, progress=100 if state is ImportState.COMPLETED else progress,
                            reason=str(data.get("reason") or "") if state is ImportState.FAILED else "", rows=rows)

    def _rest_call(self, path: str, body: dict[str, Any], what: str, headers: dict[str, str] | None = None,
                   attempts: int = 1) -> dict[str, Any]:
        """POST to the REST API; ``attempts`` > 1 retries what nothing answered or a 5xx."""
        rest = getattr(self, "_rest", None)
        if rest is None:
            raise MilvusError(f"cannot {what}: batched imports go through the Milvus REST API, and no REST endpoint "
                              "is known: set milvus.rest.endpoint, or restore without --batch-imports")
        delay = 0.06
        for attempt in range(attempts):
            try:
                answer = rest.request("POST", path, body=body, headers=headers)
                break
            except HttpFailed as e:
                if attempt + 1 < attempts and (e.status == 0 or e.status >= 500):
                    logs.retry(log, what, e, attempt + 1, attempts, delay)
                    time.sleep(delay)
                    delay *= 3
                    continue
                raise MilvusError(f"cannot {what}: {e}") from None
        if answer.get("code"):
            raise MilvusError(f"cannot {what}: the Milvus REST API at {rest.base} answered code {answer['code']}: "
                              f"{answer.get('message') or 'no reason given'}")
        return answer

    def import_found_nothing(self, rows: int) -> bool:
        # ImportV2 fails an import that finds no insert binlogs itself ("no insert binlogs to import").
        return False

    def import_rows_range(self, inserted: int, delete_records: int) -> tuple[int, int]:
        # ImportV2's binlog reader drops, while it reads a segment, every row whose primary key
        # a delete record of that segment's delta logs names (importutilv2/binlog/reader.go):
        # as on 2.3. L0 jobs write deletes, no rows: restore does not check them.
        return max(0, inserted - delete_records), inserted

    # --- access control ---------------------------------------------------------------------

    def restore_rbac(self, rbac: dict[str, Any]) -> RbacRestored:
        from .._proto import milvus_pb2 as m

        if not self.can_restore_rbac():
            raise MilvusError(f"cannot restore users and roles: {self.server.needs(Feature.RBAC)}")
        wanted = rbac_from_backup(rbac)
        unsupported: set[str] = set()
        dropped_grants = 0
        if not self.server.has(Feature.PRIVILEGE_GROUPS):
            # The Go tool sends them anyway; a server before 2.5 has nowhere to keep them, and a
            # grant of a group would name a privilege it does not know. Say so instead.
            unsupported = {g.group_name for g in wanted.privilege_groups}
            del wanted.privilege_groups[:]
            kept = [g for g in wanted.grants if g.grantor.privilege.name not in unsupported]
            dropped_grants = len(wanted.grants) - len(kept)
            del wanted.grants[:]
            wanted.grants.extend(kept)
        have = self._call("BackupRBAC", m.BackupRBACMetaRequest(), what="read the users and roles").RBAC_meta
        users = {u.user for u in have.users}
        roles = {r.name for r in have.roles}
        grants = {_grant_key(g) for g in have.grants}
        groups = {g.group_name for g in have.privilege_groups}
        # As the Go tool (core/restore/conv): only what the server lacks is sent, so an existing
        # user keeps its password and roles.
        out = m.RBACMeta(users=[u for u in wanted.users if u.user not in users],
                         roles=[r for r in wanted.roles if r.name not in roles],
                         grants=[g for g in wanted.grants if _grant_key(g) not in grants],
                         privilege_groups=[g for g in wanted.privilege_groups if g.group_name not in groups])
        done = RbacRestored(users=[u.user for u in out.users], roles=[r.name for r in out.roles], grants=len(out.grants),
                            privilege_groups=[g.group_name for g in out.privilege_groups],
                            existing_users=sorted({u.user for u in wanted.users if u.user in users}),
                            unsupported_groups=sorted(unsupported),
                            unsupported_grants=dropped_grants)
        if out.users or out.roles or out.grants or out.privilege_groups:
            self._call("RestoreRBAC", m.RestoreRBACMetaRequest(RBAC_meta=out), what="restore users and roles")
        return done


# --------------------------------------------------------------------------------------
# Import planning


def _chunks(segments: list[meta.SegmentBackupInfo], size: int) -> Iterator[list[meta.SegmentBackupInfo]]:
    """Segments grouped by (vchannel, storage version), as an import job must hold them, in
    chunks of at most ``size``; in segment id order, so a re-run plans the same jobs."""
    def group(s: meta.SegmentBackupInfo) -> tuple[str, int]:
        return s.v_channel, s.storage_version

    ordered = sorted(segments, key=lambda s: (group(s), s.segment_id))
    for _, grouped in groupby(ordered, key=group):
        same = list(grouped)
        for start in range(0, len(same), size):
            yield same[start:start + size]


def _job(partition: str, segments: list[meta.SegmentBackupInfo], bdir: str, stage: int, batched: bool) -> ImportJob:
    l0 = stage != STAGE_DATA
    files = []
    for s in segments:
        dirs = meta.segment_import_dirs(bdir, s)
        files.append((dirs.insert or "", dirs.delta or ""))
    first = segments[0].segment_id
    key = f"{partition or '-1'}/{'L0/' if l0 else ''}{first}" + (f"+{len(segments) - 1}" if len(segments) > 1 else "")
    return ImportJob(key, partition, tuple(files), tuple(segments), l0=l0, storage_version=segments[0].storage_version,
                     stage=stage, batched=batched)


# --------------------------------------------------------------------------------------
# The schema, from the Go tool's JSON model to the server's proto


def dynamic_field_id(fields: Sequence[meta.FieldSchema]) -> int:
    """The id of the dynamic field (``$meta``), which DescribeCollection leaves out: the first
    gap in the user fields' ids (fields added after the collection was made come after it),
    else the id after the last (the Go tool's GuessDynFieldID)."""
    for f in fields:
        if f.is_dynamic:
            return f.field_id
    ids = sorted(f.field_id for f in fields if f.field_id >= _SYSTEM_FIELDS)
    for a, b in pairwise(ids):
        if b != a + 1:
            return a + 1
    return ids[-1] + 1 if ids else _SYSTEM_FIELDS


def split_added_fields(schema: meta.CollectionSchema) -> tuple[list[meta.FieldSchema], list[meta.FieldSchema]]:
    """(fields to create the collection with, fields to add after), both in id order, the
    dynamic field in neither: the server makes ``$meta`` itself, numbered after the fields it
    is created with, so a field added after it must be added again after it."""
    fields = [f for f in schema.fields if not f.is_dynamic]
    if not all(f.field_id for f in fields):  # hand-written meta: no ids to keep
        return fields, []
    fields.sort(key=lambda f: f.field_id)
    if not schema.enable_dynamic_field:
        return fields, []
    meta_id = dynamic_field_id(schema.fields)
    return [f for f in fields if f.field_id < meta_id], [f for f in fields if f.field_id >= meta_id]


def _kvs(pairs: Iterable[meta.KeyValuePair]) -> list[Any]:
    from .._proto import common_pb2 as c

    return [c.KeyValuePair(key=kv.key, value=kv.value) for kv in pairs]


def field_to_proto(f: meta.FieldSchema, name: str) -> Any:
    """One backed-up field as CreateCollection and AddCollectionField take it (``name``: the
    collection, for messages)."""
    from .._proto import schema_pb2 as s

    out = s.FieldSchema(fieldID=f.field_id, name=f.name, is_primary_key=f.is_primary_key, description=f.description,
                        data_type=f.data_type, type_params=_kvs(f.type_params), index_params=_kvs(f.index_params),
                        autoID=f.auto_id, element_type=f.element_type, is_partition_key=f.is_partition_key,
                        nullable=f.nullable, is_function_output=f.is_function_output)
    default = _default_value(f, name)
    if default is not None:
        out.default_value.CopyFrom(default)
    return out


def _default_value(f: meta.FieldSchema, name: str) -> Any:
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no stubs here

    from .._proto import schema_pb2 as s

    try:
        if f.default_value_base64:
            return s.ValueField.FromString(base64.b64decode(f.default_value_base64, validate=True))
        if f.default_value_proto:  # older backups: the proto's bytes as a string
            return s.ValueField.FromString(f.default_value_proto.encode("utf-8", "surrogateescape"))
    except (binascii.Error, DecodeError, ValueError):
        raise MilvusError(f"the backed-up default value of field {f.name} of {name} is damaged: check the backup "
                          "with mbackup verify") from None
    return None


def schema_to_proto(schema: meta.CollectionSchema, collection: str, fields: Sequence[meta.FieldSchema],
                    name: str) -> Any:
    from .._proto import schema_pb2 as s

    return s.CollectionSchema(
        name=collection,
        description=schema.description,
        autoID=schema.auto_id,
        enable_dynamic_field=schema.enable_dynamic_field,
        properties=_kvs(schema.properties),
        fields=[field_to_proto(f, name) for f in fields],
        functions=[s.FunctionSchema(name=fn.name, id=fn.id, description=fn.description, type=fn.type,
                                    input_field_names=fn.input_field_names, input_field_ids=fn.input_field_ids,
                                    output_field_names=fn.output_field_names, output_field_ids=fn.output_field_ids,
                                    params=_kvs(fn.params)) for fn in schema.functions],
        struct_array_fields=[s.StructArrayFieldSchema(fieldID=sa.field_id, name=sa.name, description=sa.description,
                                                      fields=[field_to_proto(f, name) for f in sa.fields])
                             for sa in schema.struct_array_fields],
    )


# --------------------------------------------------------------------------------------
# RBAC, from the Go tool's JSON model


def rbac_from_backup(rbac: Any) -> Any:
    """A backup's ``rbac_meta`` (the Go tool's JSON) as the server's RBACMeta; a shape that is
    not the Go tool's is refused in one line rather than restored in part."""
    from .._proto import milvus_pb2 as m

    def items(data: Any, key: str) -> list[dict[str, Any]]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ValueError(key)
        return value

    def text(data: Any, *path: str) -> str:
        for key in path:
            data = data.get(key) if isinstance(data, dict) else None
        if data is None:
            return ""
        if not isinstance(data, str):
            raise ValueError(".".join(path))
        return data

    try:
        if not isinstance(rbac, dict):
            raise ValueError("rbac_meta")
        out = m.RBACMeta()
        for u in items(rbac, "users"):
            out.users.add(user=text(u, "user"), password=text(u, "password"),
                          roles=[m.RoleEntity(name=text(r, "name")) for r in items(u, "roles")])
        out.roles.extend(m.RoleEntity(name=text(r, "name")) for r in items(rbac, "roles"))
        for g in items(rbac, "grants"):
            grant = out.grants.add(object_name=text(g, "object_name"), db_name=text(g, "db_name"))
            grant.role.name = text(g, "role", "name")
            grant.object.name = text(g, "object", "name")
            grant.grantor.user.name = text(g, "grantor", "user", "name")
            grant.grantor.privilege.name = text(g, "grantor", "privilege", "name")
        for g in items(rbac, "privilege_groups"):
            out.privilege_groups.add(group_name=text(g, "group_name"),
                                     privileges=[m.PrivilegeEntity(name=text(p, "name")) for p in items(g, "privileges")])
    except ValueError as e:
        raise MilvusError(f"the backup's users and roles (rbac_meta, at {e}) are not in the Go tool's shape: check "
                          "the backup with mbackup verify") from None
    if any(not u.user for u in out.users) or any(not r.name for r in out.roles):
        raise MilvusError("the backup's users and roles (rbac_meta) name a user or role without a name: check the "
                          "backup with mbackup verify")
    return out


def _grant_key(g: Any) -> tuple[str, ...]:
    return (g.object.name, g.object_name, g.role.name, g.grantor.user.name, g.grantor.privilege.name, g.db_name)


__all__ = ["DISABLE_FUNC_RUNTIME_CHECK", "REST_JOB", "RestoreV2", "dynamic_field_id", "field_to_proto",
           "rbac_from_backup", "schema_to_proto", "split_added_fields"]
