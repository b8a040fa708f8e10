"""``mbackup diff A B``: what changed between two backups, from their meta and manifests.

Per collection (``db.name``) and partition (by name): the segments added, removed and
changed (same id, other files: Milvus added delete logs to it), the rows of the segments
added and removed, the deletes in the delete logs B has and A has not (counted from the
logs themselves, which are small), and B's bytes that are new or shared with A. Two objects
are the same when their key in the backup, size and checksum are (key and size when either
backup has no manifest: the Go tool writes none). Then the schema's fields and the indexes
added, removed or changed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..format import meta
from ..milvus.binlog import BinlogError, count_records
from .catalog import Stores, read_backup
from .sharing import StoredObject, manifest_objects, object_key, segment_objects

L0_PARTITION = "(L0 deletes of every partition)"


@dataclass
class PartitionDiff:
    name: str
    segments_added: list[int] = field(default_factory=list)
    segments_removed: list[int] = field(default_factory=list)
    segments_changed: list[int] = field(default_factory=list)
    rows_added: int = 0
    rows_removed: int = 0
    deletes_added: int | None = 0  # None: a delete log could not be read
    bytes_new: int = 0
    bytes_shared: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.segments_added or self.segments_removed or self.segments_changed or self.bytes_new)

    def line(self) -> str:
        from ..units import format_bytes

        deletes = "?" if self.deletes_added is None else f"{self.deletes_added:,}"
        return (f"partition {self.name}: segments +{len(self.segments_added)} -{len(self.segments_removed)} "
                f"~{len(self.segments_changed)}, rows +{self.rows_added:,} -{self.rows_removed:,}, deletes +{deletes}; "
                f"{format_bytes(self.bytes_new)} new, {format_bytes(self.bytes_shared)} shared")


@dataclass
class CollectionDiff:
    name: str
    state: str  # "added", "removed", "changed", "same"
    partitions: list[PartitionDiff] = field(default_factory=list)
    partitions_added: list[str] = field(default_factory=list)
    partitions_removed: list[str] = field(default_factory=list)
    fields_added: list[str] = field(default_factory=list)
    fields_removed: list[str] = field(default_factory=list)
    fields_changed: list[str] = field(default_factory=list)
    indexes_added: list[str] = field(default_factory=list)
    indexes_removed: list[str] = field(default_factory=list)
    indexes_changed: list[str] = field(default_factory=list)


@dataclass
class BackupDiff:
    a: str
    b: str
    compared_by: str
    collections: list[CollectionDiff]

    @property
    def bytes_new(self) -> int:
        return sum(p.bytes_new for c in self.collections for p in c.partitions)

    @property
    def bytes_shared(self) -> int:
        return sum(p.bytes_shared for c in self.collections for p in c.partitions)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.a, "to": self.b, "compared_by": self.compared_by, "bytes_new": self.bytes_new,
                "bytes_shared": self.bytes_shared, "collections": [dataclasses.asdict(c) for c in self.collections]}

    def lines(self) -> list[str]:
        from ..format.untrusted import shown
        from ..units import format_bytes

        out = [f"diff {shown(self.a)} -> {shown(self.b)} (objects compared by {self.compared_by})"]
        for c in self.collections:
            out.append(f"{shown(c.name)}: {c.state}")
            out += [f"  partition added: {shown(p)}" for p in c.partitions_added]
            out += [f"  partition removed: {shown(p)}" for p in c.partitions_removed]
            out += [f"  {shown(p.line())}" for p in c.partitions if p.changed or c.state in ("added", "removed")]
            for what, names in (("field added", c.fields_added), ("field removed", c.fields_removed),
                                ("field changed", c.fields_changed), ("index added", c.indexes_added),
                                ("index removed", c.indexes_removed), ("index changed", c.indexes_changed)):
                out += [f"  {what}: {shown(n)}" for n in names]
        out.append(f"total: {format_bytes(self.bytes_new)} new, {format_bytes(self.bytes_shared)} shared")
        return out


def diff_backups(stores: Stores, a: str, b: str) -> BackupDiff:
    info_a, info_b = read_backup(stores, a), read_backup(stores, b)
    listed_a, listed_b = manifest_objects(stores, a), manifest_objects(stores, b)
    with_checksums = listed_a is not None and listed_b is not None

    def same(o: StoredObject) -> tuple[str, int, str | None]:
        return o.identity if with_checksums else (o.rel, o.size, None)

    objects_a, objects_b = segment_objects(info_a, listed_a), segment_objects(info_b, listed_b)
    held_by_a = {same(o) for files in objects_a.values() for o in files}
    new_deletes = _delete_counter(stores, b)
    colls_a = {f"{c.db_name}.{c.collection_name}": c for c in info_a.collection_backups}
    colls_b = {f"{c.db_name}.{c.collection_name}": c for c in info_b.collection_backups}
    out = []
    for name in sorted(colls_a.keys() | colls_b.keys()):
        ca, cb = colls_a.get(name), colls_b.get(name)
        d = CollectionDiff(name, "removed" if cb is None else "added" if ca is None else "same")
        parts_a, parts_b = _partitions(ca), _partitions(cb)
        if ca is not None and cb is not None:
            d.partitions_added = sorted(parts_b.keys() - parts_a.keys() - {L0_PARTITION})
            d.partitions_removed = sorted(parts_a.keys() - parts_b.keys() - {L0_PARTITION})
        ids_a = {s.segment_id for segs in parts_a.values() for s in segs}
        ids_b = {s.segment_id for segs in parts_b.values() for s in segs}
        for pname in sorted(parts_a.keys() | parts_b.keys()):
            p = PartitionDiff(pname)
            for seg in parts_b.get(pname, []):
                files = objects_b[seg.segment_id]
                fresh = [o for o in files if same(o) not in held_by_a]
                p.bytes_new += sum(o.size for o in fresh)
                p.bytes_shared += sum(o.size for o in files) - sum(o.size for o in fresh)
                if seg.segment_id not in ids_a:
                    p.segments_added.append(seg.segment_id)
                    p.rows_added += 0 if seg.is_l0 else seg.num_of_rows
                elif fresh:
                    p.segments_changed.append(seg.segment_id)
                p.deletes_added = _add(p.deletes_added, new_deletes([o for o in fresh if "/delta_log/" in o.rel]))
            for seg in parts_a.get(pname, []):
                if seg.segment_id not in ids_b:
                    p.segments_removed.append(seg.segment_id)
                    p.rows_removed += 0 if seg.is_l0 else seg.num_of_rows
            d.partitions.append(p)
        _schema_changes(d, ca, cb)
        if d.state == "same" and (any(p.changed for p in d.partitions) or d.partitions_added or d.partitions_removed
                                  or d.fields_added or d.fields_removed or d.fields_changed or d.indexes_added
                                  or d.indexes_removed or d.indexes_changed):
            d.state = "changed"
        out.append(d)
    return BackupDiff(a, b, "key, size and checksum" if with_checksums else "key and size (a backup has no manifest)",
                      out)


def _partitions(coll: meta.CollectionBackupInfo | None) -> dict[str, list[meta.SegmentBackupInfo]]:
    if coll is None:
        return {}
    parts = {p.partition_name: list(p.segment_backups) for p in coll.partition_backups}
    if coll.l0_segments:
        parts[L0_PARTITION] = list(coll.l0_segments)
    return parts


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _delete_counter(stores: Stores, name: str) -> Any:
    def count(objects: list[StoredObject]) -> int | None:
        total = 0
        for o in objects:
            try:
                total += count_records(stores.backup.read(object_key(stores, name, o)))
            except BinlogError:
                return None
        return total
    return count


def _schema_changes(d: CollectionDiff, ca: meta.CollectionBackupInfo | None, cb: meta.CollectionBackupInfo | None) -> None:
    if ca is None or cb is None:
        return
    fa = {f.field_id: f for f in (ca.schema.fields if ca.schema else [])}
    fb = {f.field_id: f for f in (cb.schema.fields if cb.schema else [])}
    d.fields_added = [_field(fb[i]) for i in sorted(fb.keys() - fa.keys())]
    d.fields_removed = [_field(fa[i]) for i in sorted(fa.keys() - fb.keys())]
    for i in sorted(fa.keys() & fb.keys()):
        old, new = dataclasses.asdict(fa[i]), dataclasses.asdict(fb[i])
        changes = [f"{k} {_shown(old[k])} -> {_shown(new[k])}" for k in old if old[k] != new[k]]
        if changes:
            d.fields_changed.append(f"{fb[i].name}: {', '.join(changes)}")
    ia = {x.index_name: x for x in ca.index_infos}
    ib = {x.index_name: x for x in cb.index_infos}
    d.indexes_added = [_index(ib[n]) for n in sorted(ib.keys() - ia.keys())]
    d.indexes_removed = [_index(ia[n]) for n in sorted(ia.keys() - ib.keys())]
    d.indexes_changed = [f"{_index(ia[n])} -> {ib[n].index_type} {_shown(ib[n].params)}"
                         for n in sorted(ia.keys() & ib.keys())
                         if (ia[n].field_name, ia[n].index_type, ia[n].params) != (ib[n].field_name, ib[n].index_type, ib[n].params)]


def _field(f: meta.FieldSchema) -> str:
    kind = meta.DataType(f.data_type).name if f.data_type in meta.DataType._value2member_map_ else str(f.data_type)
    return f"{f.name} ({kind})"


def _index(x: meta.IndexInfo) -> str:
    return f"{x.index_name} ({x.index_type} on {x.field_name})"


def _shown(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, dict) and set(v) == {"key", "value"} for v in value):
        return "{" + ", ".join(f"{v['key']}={v['value']}" for v in value) + "}"
    return repr(value)
