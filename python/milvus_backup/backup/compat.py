"""Can this backup be restored into that Milvus? Checked before anything is created.

A backup is refused, in one line that says what and why, when it needs what the target's line
lacks (the target adapter's :class:`~milvus_backup.milvus.adapters.base.Capabilities`): a
format it cannot restore, a newer line than it takes (a backup restores into the same or a
newer line, the Go tool's rule), a schema feature, a segment storage version its import cannot
read, or L0 delete segments it cannot import. Those deletes may be left out knowingly with
``--skip-l0``: the rows they deleted come back, and restore says so.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import MBackupError
from ..format import meta
from ..milvus.adapters.base import BASE_TYPES, FEATURES_SINCE, TYPE_FEATURES, Capabilities, line_of


class IncompatibleBackup(MBackupError):
    """The backup needs what the target Milvus line lacks."""


# How a refusal names each feature: "Milvus 2.3.5 lacks <noun>".
NOUNS = {
    "bfloat16_vector": "BFloat16Vector fields",
    "sparse_float_vector": "SparseFloatVector fields", "int8_vector": "Int8Vector fields",
    "several_vector_fields": "collections with several vector fields", "nullable": "nullable fields",
    "clustering_key": "clustering keys",
    "default_value": "default values", "functions": "functions", "struct_array": "struct array fields",
    "geometry": "Geometry fields", "timestamptz": "Timestamptz fields", "text": "Text fields",
}
_VECTORS = {t for t in meta.DataType if t.name.endswith("Vector") and t != meta.DataType.ArrayOfVector}


def _release(version: str) -> str:
    return version.strip().removeprefix("v")


def _type_name(value: int) -> str:
    try:
        return meta.DataType(value).name
    except ValueError:
        return f"data type {value}"


def schema_needs(schema: meta.CollectionSchema | None) -> Iterator[tuple[str, str]]:
    """(feature, what in the schema needs it) for every feature of FEATURES_SINCE the schema
    uses ("" for a data type no line is known to have); the dynamic field ($meta) is the
    server's own and needs nothing."""
    fields = [f for f in (schema.fields if schema else []) if not f.is_dynamic]
    for f in fields:
        for t in (f.data_type, f.element_type) if f.element_type else (f.data_type,):
            if t not in BASE_TYPES:
                yield TYPE_FEATURES.get(t, ""), f"field {f.name!r} of type {_type_name(t)}"
        if f.nullable:
            yield "nullable", f"nullable field {f.name!r}"
        if f.default_value_base64 or f.default_value_proto or f.default_value is not None:
            yield "default_value", f"field {f.name!r} with a default value"
        if f.is_function_output:
            yield "functions", f"field {f.name!r} that a function fills"
        if f.is_clustering_key:
            yield "clustering_key", f"clustering key field {f.name!r}"
    vectors = [f.name for f in fields if f.data_type in _VECTORS]
    if len(vectors) > 1:
        yield "several_vector_fields", f"{len(vectors)} vector fields ({', '.join(vectors)})"
    for fn in schema.functions if schema else []:
        kind = meta.FunctionType(fn.type).name if fn.type in set(meta.FunctionType) else f"type {fn.type}"
        yield "functions", f"function {fn.name!r} ({kind})"
    for sa in schema.struct_array_fields if schema else []:
        yield "struct_array", f"struct array field {sa.name!r}"


def segments(coll: meta.CollectionBackupInfo) -> list[meta.SegmentBackupInfo]:
    """Every segment of a collection: its partitions' and its collection-level L0 ones."""
    return [s for p in coll.partition_backups for s in p.segment_backups if s is not None] + [
        s for s in coll.l0_segments if s is not None]


def check_restorable(info: meta.BackupInfo, collections: list[tuple[str, meta.CollectionBackupInfo]],
                     caps: Capabilities, target_version: str, *, skip_l0: bool = False,
                     meta_only: bool = False) -> list[str]:
    """Refuse (IncompatibleBackup) what ``caps`` cannot restore of backup ``info``: its
    ``collections`` (label, collection) that are to be restored into Milvus
    ``target_version``. Returns the warnings of what is restored without (--skip-l0)."""
    target = f"Milvus {_release(target_version)}"
    name = info.name
    if info.format not in (meta.FORMAT_BINLOG, meta.FORMAT_SNAPSHOT):
        raise IncompatibleBackup(f"backup {name!r} has format {info.format!r}, which this mbackup does not know: "
                                 "restore it with the tool that made it")
    if info.format == meta.FORMAT_SNAPSHOT:
        since = FEATURES_SINCE["snapshot_restore"]
        if not caps.has("snapshot_restore"):
            raise IncompatibleBackup(
                f"backup {name!r} is in the snapshot format, which only Milvus {since} and newer restore "
                f"(RestoreExternalSnapshot); {target} cannot: restore it into Milvus {since} or newer")
    taken, newest = line_of(info.milvus_version), line_of(caps.newest_backup_line)
    if taken and newest and taken > newest:
        raise IncompatibleBackup(
            f"backup {name!r} was taken on Milvus {_release(info.milvus_version)}, and {target} restores backups "
            f"of Milvus {caps.newest_backup_line} and older only (a backup restores into the same or a newer line): "
            f"restore it into Milvus {taken[0]}.{taken[1]} or newer")
    for label, coll in collections:
        for feature, what in schema_needs(coll.schema):
            if not feature:
                raise IncompatibleBackup(f"{label} has {what}, which mbackup knows no Milvus line to have: restore it "
                                         "with the tool that made the backup, or leave it out with --filter")
            if not caps.has(feature):
                since = FEATURES_SINCE[feature]
                raise IncompatibleBackup(
                    f"{label} has {what}: {target} lacks {NOUNS[feature]} (they came with Milvus {since}); restore "
                    f"it into Milvus {since} or newer, or leave it out with --filter")
    if meta_only:
        return []  # nothing is imported
    warnings = []
    for label, coll in collections:
        segs = segments(coll)
        for seg in segs:
            version = seg.storage_version
            if version in caps.storage_versions:
                continue
            where = f"{label} holds segment {seg.segment_id} in storage format v{version}"
            if version == 3:
                raise IncompatibleBackup(f"{where}, which no Milvus imports from a backup yet (milvus#52930); "
                                         "only backups made with storage v3 off restore")
            if version == 2:
                since = FEATURES_SINCE["storage_v2"]
                raise IncompatibleBackup(f"{where}, which {target} cannot import: restore it into Milvus {since} "
                                         "or newer")
            raise IncompatibleBackup(f"{where}, which {target} cannot import (it reads "
                                     f"{', '.join(f'v{v}' for v in sorted(caps.storage_versions))})")
        l0 = [s for s in segs if s.is_l0]
        if l0 and not caps.has("l0_import"):
            n = f"{len(l0)} L0 segment" + ("s" if len(l0) > 1 else "")
            if not skip_l0:
                raise IncompatibleBackup(
                    f"{label} holds deletes in {n}, which {target} cannot import: the rows they delete would come "
                    f"back. Fold them into the data segments first with mbackup l0compact -n {name}, restore with "
                    f"--skip-l0 to leave them out knowingly, or into Milvus {FEATURES_SINCE['l0_import']} or newer")
            warnings.append(f"--skip-l0: the deletes in {n} of {label} are left out: rows they deleted are restored")
    return warnings
