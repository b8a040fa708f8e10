"""The adapter for Milvus 2.3.x (a built-in plugin), live-tested against Milvus 2.3.5.

Requests are built as every line's are (``rpc.py``): the database name set in the request
itself and in the ``dbname`` header. pymilvus 3 relies on the header alone, and a 2.3 proxy
only honours it for some requests: ``Import`` and ``GetPersistentSegmentInfo`` (at least) then
run against ``default``, and an import into another database fails after about 50 s of
server-side retries.

What 2.3 lacks, and this adapter therefore never does: L0 segments, the GC pause endpoint (the
management server answers 404), ``DescribeDatabase`` (and 2.3.5 leaves ``ListDatabases``' db ids
empty, so db ids stay 0), nullable fields, default values, functions, ``AddCollectionField``.
What it adds to the shared requests: the 2.3 import (one job per partition, deletes applied
while reading) and the schema refusals on create.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...format import meta
from ...plugins.hookspecs import hookimpl
from ..connection import MilvusError
from .base import CreateCollectionSpec, HowTested, ImportState, ImportStatus
from .rpc import RpcAdapter, RpcFailed, _import_status


@hookimpl
def mbackup_register_milvus_adapter(register: Callable[..., None]) -> None:
    register("2.3", Milvus23Adapter)


class Milvus23Adapter(RpcAdapter):
    """Milvus 2.3.x through one dedicated gRPC channel."""

    tested = HowTested("live", "against two Milvus 2.3.5 servers")

    def create_collection(self, spec: CreateCollectionSpec) -> None:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        name = f"{spec.db_name}.{spec.collection_name}"
        schema = _schema_to_proto(spec.schema, spec.collection_name, name)
        req = m.CreateCollectionRequest(
            db_name=spec.db_name,
            collection_name=spec.collection_name,
            schema=schema.SerializeToString(),
            shards_num=spec.shards_num,
            consistency_level=spec.consistency_level,
            properties=[c.KeyValuePair(key=kv.key, value=kv.value) for kv in spec.properties],
        )
        if spec.num_partitions > 0 and any(f.is_partition_key for f in spec.schema.fields):
            req.num_partitions = spec.num_partitions
        self._call("CreateCollection", req, spec.db_name, f"create collection {name}")


    # --- importing data -------------------------------------------------------------------

    def start_import(self, db: str, collection: str, partition: str, files: list[str]) -> str:
        from .._proto import common_pb2 as c
        from .._proto import milvus_pb2 as m

        name = f"{db}.{collection}"
        if not partition:
            raise MilvusError(f"importing into {name}: Milvus 2.3 needs a partition name for a backup-mode import")
        # [insert, ""] when a segment has no delta logs, as the Go tool sends it.
        files = list(files) + [""] * (2 - len(files)) if len(files) < 2 else list(files)
        req = m.ImportRequest(
            db_name=db,
            collection_name=collection,
            partition_name=partition,
            files=files,
            options=[
                c.KeyValuePair(key="backup", value="true"),
                c.KeyValuePair(key="skip_disk_quota_check", value="true"),
            ],
        )
        resp = self._call("Import", req, db, f"start an import into {name} (partition {partition})")
        if not resp.tasks:
            raise MilvusError(f"Milvus {self._where()} started no import task for {name}")
        return ",".join(str(t) for t in resp.tasks)

    def import_status(self, db: str, job_id: str) -> ImportStatus:
        from .._proto import milvus_pb2 as m

        states = []
        for task in job_id.split(","):
            resp = self._call("GetImportState", m.GetImportStateRequest(task=int(task)), db, f"read import task {task}")
            states.append(_import_status(resp))
        if len(states) == 1:
            return states[0]
        failed = [s for s in states if s.state is ImportState.FAILED]
        if failed:
            return failed[0]
        if all(s.state is ImportState.COMPLETED for s in states):
            state = ImportState.COMPLETED
        elif any(s.state is not ImportState.PENDING for s in states):
            state = ImportState.RUNNING
        else:
            state = ImportState.PENDING
        return ImportStatus(
            state=state,
            progress=sum(s.progress for s in states) // len(states),
            rows=sum(s.rows for s in states),
            collection_id=states[0].collection_id,
            partition=states[0].partition,
        )

    def import_rows_range(self, inserted: int, delete_records: int) -> tuple[int, int]:
        # A 2.3 backup-mode import applies the deletes while it reads (BinlogAdapter): per
        # segment, every insert row whose primary key one of the segment's delete records
        # names is left out, timestamps aside, and the job reports the rows it wrote. The
        # segments' num_of_rows count rows before the deletes (a delete stays in a delta log
        # until a compaction rewrites the segment). Seen on 2.3.5: 1,501 rows and 27 delete
        # records (two of them deleting a key again) imported as 1,476 rows, which the
        # partition's num_entities and count(*) also say. A record removes at most one row,
        # unless the key was inserted twice into one segment.
        return max(0, inserted - delete_records), inserted

    def import_found_nothing(self, rows: int) -> bool:
        # A 2.3 import of prefixes it finds empty (a wrong bucket or root path) completes, with 0 rows.
        return rows == 0


    # --- plumbing -------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Schema conversion: the server's proto <-> the Go tool's JSON model.


def _schema_to_proto(schema: meta.CollectionSchema, collection: str, name: str) -> Any:
    from .._proto import common_pb2 as c
    from .._proto import schema_pb2 as s

    def unsupported(what: str) -> MilvusError:
        return MilvusError(f"cannot create {name} on Milvus 2.3: {what}, which Milvus 2.3 does not support")

    if schema.functions:
        raise unsupported(f"the schema has functions ({', '.join(f.name for f in schema.functions)})")
    if schema.struct_array_fields:
        raise unsupported("the schema has struct array fields")
    out = s.CollectionSchema(
        name=collection,
        description=schema.description,
        autoID=schema.auto_id,
        enable_dynamic_field=schema.enable_dynamic_field,
        properties=[c.KeyValuePair(key=kv.key, value=kv.value) for kv in schema.properties],
    )
    # The dynamic field is never sent: the server adds it when enable_dynamic_field is set.
    fields = [f for f in schema.fields if not f.is_dynamic]
    # The server numbers fields in the order sent; sending them in id order keeps the ids, and
    # with them the binlog directories, the same as on the source.
    if all(f.field_id for f in fields):
        fields.sort(key=lambda f: f.field_id)
    for f in fields:
        if f.nullable:
            raise unsupported(f"field {f.name} is nullable")
        if f.default_value_base64 or f.default_value_proto:
            raise unsupported(f"field {f.name} has a default value")
        if f.is_function_output:
            raise unsupported(f"field {f.name} is a function output")
        if f.is_clustering_key:
            raise unsupported(f"field {f.name} is the clustering key")
        out.fields.append(
            s.FieldSchema(
                name=f.name,
                is_primary_key=f.is_primary_key,
                description=f.description,
                data_type=f.data_type,
                type_params=[c.KeyValuePair(key=kv.key, value=kv.value) for kv in f.type_params],
                index_params=[c.KeyValuePair(key=kv.key, value=kv.value) for kv in f.index_params],
                autoID=f.auto_id,
                element_type=f.element_type,
                is_partition_key=f.is_partition_key,
            )
        )
    return out


__all__ = ["Milvus23Adapter", "RpcFailed", "mbackup_register_milvus_adapter"]
