"""Golden backups: the binlogs of a backup mbackup made of a live Milvus 2.3.5 collection,
wrapped in meta as the Go tool writes it for each Milvus line, with its layout.

Each golden is the base backup's full_meta.json edited the way the Go tool's backup of that
line differs (read from its source, core/backup/*.go at HEAD f81df44; see
shared/notes/milvus-lines.md), then shaped and split into the five meta files by rules derived
from the Go source (tests/compat/go_facts: key order, omitempty, what each file keeps). So the
bytes are what the Go tool writes, not what mbackup's writer makes; tests read them with
mbackup and check that writing them again gives the same bytes.

- ``golden_v2_3``: the base backup (mbackup's layout is the Go tool's).
- ``golden_v2_4``: a 2.4 backup after L0 compaction: deletes in the data segments' delta
  logs, database id 1, each segment's field binlogs in another order (the Go tool groups them
  in a map).
- ``golden_v2_5``: a 2.5.8 backup before L0 compaction (REST segment describe: ``v_channel``;
  storage version 0): a partition's deletes in a partition-level L0 segment
  (``delta_log/<c>/<p>/<seg>/<seg>/<log>``), the ``_default`` partition's in a collection-level
  one (partition -1, ``l0_segments``, ``delta_log/<c>/-1/<seg>/<log>``).
- ``golden_v2_5_functions``: 2.5.8 with nullable and default-value fields and a BM25 function.
- ``golden_v2_6``: 2.6.11, storage version 2, FlushAll positions, Int8Vector, struct array,
  Geometry and Timestamptz fields.
- ``golden_rbac``: 2.5.8 with users, roles, grants and privilege groups.
- ``golden_snapshot``: 3.0.1 in the snapshot format: no partition or segment meta, a bundle.
- ``golden_v3_storage_v3``: 3.0.1 binlogs in storage format v3 (milvus#52930).

Only the meta and the layout are each line's: the binlogs are 2.3.5's (storage v0) in every
golden, so no golden proves what a newer server's binlogs hold.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gofacts import facts, go_compact, strip_cleared
from milvus_backup import _engine
from milvus_backup.format import meta

GO = facts("HEAD")
_ZERO = {"integer": 0, "boolean": False, "string": "", "array": [], "object(map)": {}}


def go_shape(doc: dict, message: str) -> dict:
    """``doc`` as Go's encoding/json writes ``message``: keys in struct order, zero values left
    out where the field has omitempty, written where it has not."""
    fields = GO["messages"][message]["fields"]
    unknown = set(doc) - {f["json"] for f in fields}
    assert not unknown, f"{message} has no fields {unknown}"
    out = {}
    for spec in fields:
        key, kind = spec["json"], spec["json_type"]
        if key not in doc:
            if not spec["omitempty"]:
                out[key] = _ZERO[kind]
            continue
        value = doc[key]
        inner = spec.get("message") or spec.get("items", {}).get("message")
        if inner and kind == "array":
            value = [go_shape(v, inner) for v in value]
        elif inner and kind == "object" and value is not None:
            value = go_shape(value, inner)
        elif kind == "object(map)":
            value = dict(sorted(value.items()))
        empty = value is None if kind == "object" else value in (0, False, "", [], {}) and not isinstance(value, float)
        if spec["omitempty"] and empty:
            continue
        out[key] = value
    return out


def meta_files(doc: dict) -> dict[str, bytes]:
    """The meta files the Go tool writes for the backup ``doc`` (its full_meta.json tree):
    backup_meta.json keeps the backup's scalars, each level file clears what its builder
    clears, the snapshot format has no partition or segment file."""
    doc = go_shape(doc, "BackupInfo")
    spec = {x["file"]: x for x in GO["meta_files"]["files"]}
    always = [f["json"] for f in GO["messages"]["BackupInfo"]["fields"] if not f["omitempty"]]
    out = {meta.BACKUP_META: {k: v for k, v in doc.items() if k in spec[meta.BACKUP_META]["only"] or k in always}}
    colls = doc.get("collection_backups", [])
    out[meta.COLLECTION_META] = {"infos": [strip_cleared(c, "CollectionBackupInfo",
                                                         spec[meta.COLLECTION_META]["cleared"], GO) for c in colls]}
    if doc.get("format") != meta.FORMAT_SNAPSHOT:
        parts = [p for c in colls for p in c.get("partition_backups", [])]
        out[meta.PARTITION_META] = {"infos": [strip_cleared(p, "PartitionBackupInfo",
                                                            spec[meta.PARTITION_META]["cleared"], GO) for p in parts]}
        out[meta.SEGMENT_META] = {"infos": [s for p in parts for s in p.get("segment_backups", [])]}
    out[meta.FULL_META] = doc
    messages = {meta.BACKUP_META: "BackupInfo", meta.COLLECTION_META: "CollectionLevelBackupInfo",
                meta.PARTITION_META: "PartitionLevelBackupInfo", meta.SEGMENT_META: "SegmentLevelBackupInfo",
                meta.FULL_META: "BackupInfo"}
    return {name: go_compact(go_shape(out[name], messages[name])) for name in GO["meta_files"]["write_order"]
            if name in out}


@dataclass
class Golden:
    """One golden backup: its meta tree, and its objects (copied from the base backup, or written)."""

    name: str
    line: str  # the Milvus line it is a backup of
    doc: dict
    copies: dict[str, str] = field(default_factory=dict)  # key in this backup -> key in the base (relative)
    written: dict[str, bytes] = field(default_factory=dict)  # key in this backup (relative) -> bytes

    @property
    def files(self) -> dict[str, bytes]:
        return meta_files(self.doc)

    @property
    def info(self) -> meta.BackupInfo:
        return meta.loads(meta.BackupInfo, self.files[meta.FULL_META])

    def write(self, store: _engine.Store, root: str, base_dir: str, sizes: dict[str, int]) -> str:
        """Put it under ``<root>/<name>`` (the meta's completion marker last); returns that dir."""
        bdir = f"{root}/{self.name}"
        results = _engine.Copier().run([(store, f"{base_dir}/{src}", store, f"{bdir}/{dst}", sizes[src])
                                        for dst, src in self.copies.items()])
        assert not [r for r in results if r["error"]], results
        for rel, data in self.written.items():
            store.put(f"{bdir}/{rel}", data)
        files = self.files
        for name in sorted(files, key=lambda n: n == meta.BACKUP_META):
            store.put(f"{bdir}/meta/{name}", files[name])
        return bdir


# --------------------------------------------------------------------------------------
# Walking a tree


def segments(doc: dict) -> Iterator[dict]:
    """Every segment of the tree: the partitions' and the collection-level L0 ones."""
    for c in doc.get("collection_backups", []):
        for p in c.get("partition_backups", []):
            yield from p.get("segment_backups", [])
        yield from c.get("l0_segments", [])


def _relative_keys(seg: dict) -> list[tuple[int, str, int]]:
    """(log id, key relative to the backup dir, size) of every binlog of a segment, as
    mbackup's reader lays them out (the Go tool's mpath)."""
    info = meta.loads(meta.SegmentBackupInfo, go_compact(go_shape(seg, "SegmentBackupInfo")))
    return [(int(key.rsplit("/", 1)[1]), key[len("B/"):], size) for _, key, size in meta.segment_files("B", info)]


def _copies(doc: dict, base_keys: dict[int, str]) -> dict[str, str]:
    return {rel: base_keys[log_id] for seg in segments(doc) for log_id, rel, _ in _relative_keys(seg)}


def _sizes(doc: dict) -> None:
    """Sizes as the Go tool's builder sums them: a segment's binlogs, a partition's segments, a
    collection's and the backup's every segment (collection-level L0 ones too)."""
    total = 0
    for c in doc["collection_backups"]:
        for p in c.get("partition_backups", []):
            for s in p.get("segment_backups", []):
                s["size"] = sum(b["log_size"] for fb in s.get("binlogs", []) + s.get("deltalogs", [])
                                for b in fb.get("binlogs", []))
            p["size"] = sum(s["size"] for s in p.get("segment_backups", []))
        for s in c.get("l0_segments", []):
            s["size"] = sum(b["log_size"] for fb in s.get("deltalogs", []) for b in fb.get("binlogs", []))
        c["size"] = sum(p["size"] for p in c.get("partition_backups", [])) + sum(
            s["size"] for s in c.get("l0_segments", []))
        total += c["size"]
    doc["size"] = total


# --------------------------------------------------------------------------------------
# What each line's backup looks like


def _named(base: dict, name: str, version: str) -> dict:
    doc = copy.deepcopy(base)
    doc["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    doc["name"], doc["milvus_version"] = name, version
    doc.pop("backup_timestamp", None)  # mbackup's create writes it; the Go tool since 0.5 does not
    for c in doc["collection_backups"]:
        c["id"] = doc["id"]
    return doc


def _go_2_4(base: dict, name: str, version: str, *, describe: bool) -> dict:
    """What every 2.4+ backup has that a 2.3.5 one lacks: database ids (DescribeDatabase,
    2.4.3), field binlogs in map order; with the REST segment describe (2.5.8) each segment's
    vchannel, and no empty delta-log entry."""
    doc = _named(base, name, version)
    for d in doc.get("database_backups", []):
        d["db_id"] = 1 if d["db_name"] == "default" else 2
    for c in doc["collection_backups"]:
        c["db_id"] = 1 if c["db_name"] == "default" else 2
        channels = c.get("virtual_channel_names") or [""]
        for i, s in enumerate(s for p in c["partition_backups"] for s in p.get("segment_backups", [])):
            s["binlogs"] = list(reversed(s.get("binlogs", [])))
            if describe:
                s["v_channel"] = channels[i % len(channels)]
                s["deltalogs"] = [fb for fb in s.get("deltalogs", []) if fb.get("binlogs")]
    return doc


def _deletes_into_l0(doc: dict, records: Callable[[str], int], base_keys: dict[int, str]) -> None:
    """Every partition's delete logs moved out of its data segments into one L0 segment: the
    ``_default`` partition's at collection level (partition -1, group 0), the others' in
    their partition, as 2.5 keeps deletes before an L0 compaction."""
    next_id = max(s["segment_id"] for s in segments(doc)) + 1000
    for c in doc["collection_backups"]:
        for p in c["partition_backups"]:
            logs = []
            for s in p.get("segment_backups", []):
                logs += [b for fb in s.get("deltalogs", []) for b in fb.get("binlogs", [])]
                s["deltalogs"] = []
            if not logs:
                continue
            collection_level = p["partition_name"] == "_default"
            part = -1 if collection_level else p["partition_id"]
            moved = []
            for b in logs:
                root = b["log_path"].split("/delta_log/", 1)[0]
                moved.append(dict(b, log_path=f"{root}/delta_log/{c['collection_id']}/{part}/{next_id}/{b['log_id']}"))
            seg = {"segment_id": next_id, "collection_id": c["collection_id"], "partition_id": part,
                   "num_of_rows": sum(records(base_keys[b["log_id"]]) for b in logs), "deltalogs": [{"binlogs": moved}],
                   "group_id": 0 if collection_level else next_id, "is_l0": True,
                   "v_channel": (c.get("virtual_channel_names") or [""])[0]}
            if collection_level:
                c.setdefault("l0_segments", []).append(seg)
            else:
                p["segment_backups"].append(seg)
            next_id += 1


def _field(fid: int, name: str, data_type: int, **kw: Any) -> dict:
    return {"fieldID": fid, "name": name, "data_type": int(data_type), **kw}


def _default_value(**value: Any) -> str:
    from pymilvus.grpc_gen import schema_pb2

    return base64.b64encode(schema_pb2.ValueField(**value).SerializeToString()).decode()


def _functions_2_5(doc: dict) -> None:
    T = meta.DataType
    for c in doc["collection_backups"]:
        fields = c["schema"]["fields"]
        top = max(f["fieldID"] for f in fields)
        fields += [
            _field(top + 1, "age", T.Int32, nullable=True),
            _field(top + 2, "color", T.VarChar, type_params=[{"key": "max_length", "value": "16"}],
                   default_value_base64=_default_value(string_data="red")),
            _field(top + 3, "text", T.VarChar, type_params=[{"key": "enable_analyzer", "value": "true"},
                                                            {"key": "max_length", "value": "512"}]),
            _field(top + 4, "sparse", T.SparseFloatVector, is_function_output=True),
        ]
        c["schema"]["functions"] = [{"name": "text_bm25", "id": 100, "type": int(meta.FunctionType.BM25),
                                     "input_field_names": ["text"], "input_field_ids": [top + 3],
                                     "output_field_names": ["sparse"], "output_field_ids": [top + 4]}]


def _features_2_6(doc: dict) -> None:
    T = meta.DataType
    for c in doc["collection_backups"]:
        fields = c["schema"]["fields"]
        top = max(f["fieldID"] for f in fields)
        fields += [_field(top + 1, "i8vec", T.Int8Vector, type_params=[{"key": "dim", "value": "8"}]),
                   _field(top + 2, "place", T.Geometry), _field(top + 3, "at", T.Timestamptz)]
        c["schema"]["struct_array_fields"] = [{"fieldID": top + 4, "name": "clips", "fields": [
            _field(top + 5, "clip_vec", T.ArrayOfVector, element_type=int(T.FloatVector),
                   type_params=[{"key": "dim", "value": "4"}, {"key": "max_capacity", "value": "8"}]),
            _field(top + 6, "clip_len", T.Array, element_type=int(T.Int32),
                   type_params=[{"key": "max_capacity", "value": "8"}])]}]


RBAC = {
    "users": [{"user": "alice", "password": "JDJhJDEwJGdvbGRlbnBhc3N3b3JkaGFzaA==", "roles": [{"name": "reader"}]},
              {"user": "bob"}],
    "roles": [{"name": "reader"}, {"name": "writer"}],
    "grants": [{"role": {"name": "reader"}, "object": {"name": "Collection"}, "object_name": "*",
                "grantor": {"user": {"name": "root"}, "privilege": {"name": "Query"}}, "db_name": "default"}],
    "privilege_groups": [{"group_name": "readers", "privileges": [{"name": "Query"}, {"name": "Search"}]}],
}


def build(base: dict, base_dir_keys: dict[int, str], records: Callable[[str], int]) -> list[Golden]:
    """Every golden, from the base backup's tree (``base``: its full_meta.json as read),
    ``base_dir_keys`` (log id -> its key relative to the base backup dir) and ``records``
    (relative key -> records the binlog holds)."""
    out = []

    def golden(name: str, line: str, doc: dict) -> Golden:
        _sizes(doc)
        g = Golden(name, line, doc, _copies(doc, base_dir_keys))
        out.append(g)
        return g

    golden("golden_v2_3", "2.3", _named(base, "golden_v2_3", base["milvus_version"]))
    golden("golden_v2_4", "2.4", _go_2_4(base, "golden_v2_4", "v2.4.13", describe=False))

    doc = _go_2_4(base, "golden_v2_5", "v2.5.8", describe=True)
    _deletes_into_l0(doc, records, base_dir_keys)
    golden("golden_v2_5", "2.5", doc)

    doc = _go_2_4(base, "golden_v2_5_functions", "v2.5.8", describe=True)
    _functions_2_5(doc)
    golden("golden_v2_5_functions", "2.5", doc)

    doc = _go_2_4(base, "golden_v2_6", "v2.6.11", describe=True)
    for s in segments(doc):
        s["storage_version"] = 2
    channels = sorted({ch for c in doc["collection_backups"] for ch in c.get("physical_channel_names", [])})
    doc["flush_all_msgs_base64"] = {ch: base64.b64encode(f"flush-all {ch}".encode()).decode() for ch in channels}
    doc["control_channel_name"] = "by-dev-rootcoord-dml_0_control"
    doc["physical_channel_names"] = channels
    _features_2_6(doc)
    golden("golden_v2_6", "2.6", doc)

    doc = _go_2_4(base, "golden_rbac", "v2.5.8", describe=True)
    doc["rbac_meta"] = copy.deepcopy(RBAC)
    golden("golden_rbac", "2.5", doc)

    doc = _go_2_4(base, "golden_v3_storage_v3", "v3.0.1", describe=True)
    for s in segments(doc):
        s["storage_version"] = 3
    golden("golden_v3_storage_v3", "3.0", doc)

    out.append(_snapshot(base, base_dir_keys))
    return out


def _snapshot(base: dict, base_dir_keys: dict[int, str]) -> Golden:
    """3.0's snapshot format: Milvus exports each collection's snapshot into ``bundle/``; the
    meta records where its metadata landed, and holds no segments."""
    doc = _go_2_4(base, "golden_snapshot", "v3.0.1", describe=True)
    doc["format"] = meta.FORMAT_SNAPSHOT
    g = Golden("golden_snapshot", "3.0", doc)
    for c in doc["collection_backups"]:
        files = [(log_id, rel, size) for s in segments({"collection_backups": [c]})
                 for log_id, rel, size in _relative_keys(s)]
        bundle = f"bundle/{c['collection_name']}"
        for log_id, _, _ in files:
            g.copies[f"{bundle}/data/{log_id}"] = base_dir_keys[log_id]
        metadata = go_compact({"collection": c["collection_name"], "files": [f"data/{i}" for i, _, _ in files]})
        g.written[f"{bundle}/metadata.json"] = metadata
        c["snapshot_backup"] = {"metadata_path": f"{bundle}/metadata.json", "total_files": len(files) + 1,
                                "total_bytes": sum(size for _, _, size in files) + len(metadata)}
        c["backup_timestamp"] = 449577801234567168
        for p in c["partition_backups"]:
            p["segment_backups"], p["size"] = [], 0
        c["size"] = c["snapshot_backup"]["total_bytes"]
    doc["size"] = sum(c["size"] for c in doc["collection_backups"])
    return g
