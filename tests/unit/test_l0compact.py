"""l0compact's codecs and fold (milvus_backup.milvus.deltalog, backup.l0compact) without a
server: every delete-log and insert-log form Milvus writes, built here with pyarrow and the
envelope layout, read back; the delete logs l0compact writes read by pyarrow alone; and the
fold over a backup's meta (a key in two segments, in none, deleted twice, per channel).
The same codecs run on a real 2.3.5 backup in tests/test_l0compact.py."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import milvus_backup
from milvus_backup.backup.l0compact import compacted_info, plan_fold
from milvus_backup.format import meta
from milvus_backup.milvus import binlog, deltalog
from milvus_backup.milvus.deltalog import INT64, VARCHAR

KEYS = {INT64: [7, -3, 2**62], VARCHAR: ["a", "ключ", "x" * 300]}
ARROW = {INT64: pa.int64(), VARCHAR: pa.string()}


def parquet(columns: dict[str, pa.Array], field_ids: dict[str, int] | None = None) -> bytes:
    fields = [pa.field(n, a.type, nullable=False,
                       metadata={b"PARQUET:field_id": str(field_ids[n]).encode()} if field_ids else None)
              for n, a in columns.items()]
    buf = io.BytesIO()
    pq.write_table(pa.table(list(columns.values()), schema=pa.schema(fields)), buf)
    return buf.getvalue()


def envelope(payloads: list[bytes], payload_type: int, extras: dict, event: int = binlog.DELETE_EVENT) -> bytes:
    return binlog.write(binlog.Binlog(1, 2, 3, -1, payload_type, extras, [(event, p) for p in payloads]))


# --------------------------------------------------------------------------------------
# Delete logs: every form, both key types


def _json_rows(deletes, pk_type):
    return pa.array([json.dumps({"pk": pk, "ts": ts, "pkType": pk_type}) for pk, ts in deletes])


FORMS = {
    # storage v0/v1, Milvus's default (deltalogFormat json): one string column of JSON rows.
    "v1 json": (0, lambda d, t: envelope([parquet({"delta": _json_rows(d, t)})], deltalog.STRING,
                                         {"original_size": "1"})),
    "v1 json, two events": (1, lambda d, t: envelope([parquet({"delta": _json_rows(d[:1], t)}),
                                                      parquet({"delta": _json_rows(d[1:], t)})], deltalog.STRING, {})),
    # deltalogFormat parquet: pk and ts columns in the envelope, marked MULTI_FIELD.
    "v1 MULTI_FIELD": (1, lambda d, t: envelope([parquet({"pk": pa.array([p for p, _ in d], ARROW[t]),
                                                          "ts": pa.array([s for _, s in d], pa.int64())})],
                                                INT64, {"original_size": "1", "version": "MULTI_FIELD"})),
    # storage v2 (and v3): bare Parquet, pk and ts.
    "v2 parquet": (2, lambda d, t: parquet({"pk": pa.array([p for p, _ in d], ARROW[t]),
                                            "ts": pa.array([s for _, s in d], pa.int64())})),
    "v3 parquet": (3, lambda d, t: parquet({"0": pa.array([p for p, _ in d], ARROW[t]),
                                            "1": pa.array([s for _, s in d], pa.int64())}, {"0": 0, "1": 1})),
    # What l0compact writes, for every storage version.
    "ours": (0, lambda d, t: deltalog.write_deltalog(d, t, 1, 2, 3)),
}


@pytest.mark.parametrize("pk_type", [INT64, VARCHAR], ids=["int64", "varchar"])
@pytest.mark.parametrize("form", list(FORMS))
def test_every_delete_log_form_reads_back_every_key_and_timestamp(form, pk_type):
    deletes = list(zip(KEYS[pk_type], [449_000_000_000_000_001, 5, 2**63 - 1], strict=True))
    version, make = FORMS[form]
    assert deltalog.read_deltalog(make(deletes, pk_type), version, pk_type) == deletes


def test_the_format_before_2_2_pk_comma_ts_reads_too():
    data = envelope([parquet({"delta": pa.array(["12,400", "13,401"])})], deltalog.STRING, {})
    assert deltalog.read_deltalog(data, 0, INT64) == [(12, 400), (13, 401)]


@pytest.mark.parametrize("pk_type", [INT64, VARCHAR], ids=["int64", "varchar"])
def test_the_delete_log_l0compact_writes_is_milvus_s_json_form_read_by_pyarrow_alone(pk_type):
    """Byte by byte: magic, descriptor (ids, payload type String, 8 post-header sizes, extras
    with original_size), one delete event whose timestamps span the deletes, its Parquet the
    one non-null string column "delta" of {"pk","ts","pkType"} rows."""
    deletes = [(KEYS[pk_type][0], 10), (KEYS[pk_type][1], 30)]
    data = deltalog.write_deltalog(deletes, pk_type, 11, 22, 33)
    assert struct.unpack_from("<i", data)[0] == 0xFFFABC
    _, kind, length, nxt = struct.unpack_from("<qbii", data, 4)
    coll, part, seg, fid, _, _, ptype = struct.unpack_from("<qqqqQQi", data, 21)
    assert (kind, nxt, coll, part, seg, fid, ptype) == (0, 4 + length, 11, 22, 33, -1, 20)
    assert data[73:81] == bytes([52, 16, 16, 16, 16, 16, 16, 16])
    (extra_len,) = struct.unpack_from("<i", data, 81)
    extras = json.loads(data[85:85 + extra_len])
    pos = 4 + length
    _, kind, elen, _ = struct.unpack_from("<qbii", data, pos)
    start, end = struct.unpack_from("<QQ", data, pos + 17)
    assert (kind, start, end, pos + elen) == (2, 10, 30, len(data))
    table = pq.read_table(io.BytesIO(data[pos + 33:]))
    assert extras == {"original_size": str(len(data) - pos - 33)}
    assert table.schema == pa.schema([pa.field("delta", pa.string(), nullable=False)])
    assert [json.loads(r) for r in table.column(0).to_pylist()] == [
        {"pk": pk, "ts": ts, "pkType": pk_type} for pk, ts in deletes]
    assert binlog.count_records(data) == 2


@pytest.mark.parametrize(("data", "version", "pk_type", "says"), [
    (b"PAR1 not an envelope", 0, INT64, "not a delete log: no binlog magic number"),
    (envelope([b"junk"], deltalog.STRING, {}), 0, INT64, "not a Parquet file Milvus writes"),
    (envelope([parquet({"delta": _json_rows([("a", 1)], VARCHAR)})], deltalog.STRING, {}), 0, INT64,
     "whose key is not the schema's"),
    (parquet({"pk": pa.array([1]), "ts": pa.array([1.5])}), 2, INT64, "a delete log of pk and ts columns"),
    (parquet({"pk": pa.array(["a"]), "ts": pa.array([1])}), 2, INT64, "primary-key column of type string"),
    (b"", 7, INT64, "storage version 7 is not one Milvus writes"),
])
def test_a_delete_log_that_is_not_milvus_s_is_refused_naming_why(data, version, pk_type, says):
    with pytest.raises(deltalog.DeltalogError, match=says):
        deltalog.read_deltalog(data, version, pk_type)


# --------------------------------------------------------------------------------------
# Primary keys of data segments


@pytest.mark.parametrize("pk_type", [INT64, VARCHAR], ids=["int64", "varchar"])
def test_insert_binlogs_of_the_pk_field_give_its_keys_in_order(pk_type):
    keys = KEYS[pk_type]
    blobs = [envelope([parquet({"val": pa.array(keys[:2], ARROW[pk_type])})], pk_type, {}, binlog.INSERT_EVENT),
             envelope([parquet({"val": pa.array(keys[2:], ARROW[pk_type])})], pk_type, {}, binlog.INSERT_EVENT)]
    assert deltalog.read_insert_pks(blobs, pk_type) == keys


@pytest.mark.parametrize("by", ["field id metadata", "column name"])
def test_a_column_group_gives_the_pk_column_by_field_id_and_none_without_it(by):
    names = ["vec", "key", "tags"] if by == "field id metadata" else ["100", "101", "102"]
    group = parquet({names[0]: pa.array([1.0, 2.0]), names[1]: pa.array(["k1", "k2"]), names[2]: pa.array([[1], [2]])},
                    dict(zip(names, [100, 101, 102], strict=True)) if by == "field id metadata" else None)
    assert deltalog.column_group_pks(group, 101, VARCHAR) == ["k1", "k2"]
    assert deltalog.column_group_pks(group, 999, VARCHAR) is None


# --------------------------------------------------------------------------------------
# The fold over a backup's meta

B = "root/src"


def _segment(seg_id, part, keys, *, l0=False, channel="ch0", version=0, deltas=None) -> meta.SegmentBackupInfo:
    group = 0 if part == -1 else seg_id
    s = meta.SegmentBackupInfo(segment_id=seg_id, collection_id=1, partition_id=part, group_id=group, is_l0=l0,
                               v_channel=channel, storage_version=version)
    if l0:
        s.deltalogs = [meta.FieldBinlog(binlogs=[meta.Binlog(log_id=seg_id * 10 + 1, log_size=1)])]
    else:
        s.binlogs = [meta.FieldBinlog(field_id=100, binlogs=[meta.Binlog(log_id=seg_id * 10, log_size=1)]),
                     meta.FieldBinlog(field_id=101, binlogs=[meta.Binlog(log_id=seg_id * 10 + 5, log_size=1)])]
    return s


def _backup(partitions, l0_segments, pk_type=INT64):
    schema = meta.CollectionSchema(fields=[
        meta.FieldSchema(field_id=100, name="id", is_primary_key=True, data_type=pk_type),
        meta.FieldSchema(field_id=101, name="v", data_type=int(meta.DataType.FloatVector))])
    parts = [meta.PartitionBackupInfo(partition_id=p, collection_id=1, segment_backups=segs)
             for p, segs in partitions.items()]
    coll = meta.CollectionBackupInfo(collection_id=1, collection_name="c", schema=schema, partition_backups=parts,
                                     l0_segments=l0_segments)
    return meta.BackupInfo(id="x", name="src", collection_backups=[coll])


def _objects(info, pks: dict[int, list], deletes: dict[int, list], pk_type=INT64) -> dict[str, bytes]:
    """Each data segment's pk binlog holds ``pks[seg]``; each L0 segment's delete log ``deletes[seg]``."""
    out = {}
    for c in info.collection_backups:
        for s in [x for p in c.partition_backups for x in p.segment_backups] + c.l0_segments:
            for _, key, _ in meta.segment_files(B, s):
                if s.is_l0:
                    out[key] = deltalog.write_deltalog(deletes[s.segment_id], pk_type, 1, s.partition_id, s.segment_id)
                elif key.split("/")[-2] == "100":
                    out[key] = envelope([parquet({"v": pa.array(pks[s.segment_id], ARROW[pk_type])})], pk_type, {},
                                        binlog.INSERT_EVENT)
    return out


def _folded(fold, info) -> dict[int, list]:
    return {seg: deltalog.read_deltalog(data, 0, info.collection_backups[0].schema.fields[0].data_type)
            for seg, (_, data) in fold.logs.items()}


def test_a_delete_folds_into_every_segment_holding_the_key_with_its_timestamp_and_none_where_no_segment_has_it():
    info = _backup({10: [_segment(1, 10, []), _segment(2, 10, []), _segment(9, 10, [], l0=True)],
                    20: [_segment(3, 20, [])]}, [])
    objects = _objects(info, {1: [1, 2, 3], 2: [3, 4], 3: [5, 6]}, {9: [(3, 500), (4, 90), (77, 1), (5, 2)]})
    fold = plan_fold(info, B, objects.__getitem__)
    # key 3 is in two segments; 77 in none; 5 is in partition 20, which a partition-level L0 of 10 does not touch
    assert _folded(fold, info) == {1: [(3, 500)], 2: [(3, 500), (4, 90)]}
    assert (fold.l0_segments, fold.deletes, fold.folded, fold.unmatched) == (1, 4, 3, 2)


def test_collection_level_deletes_fold_into_every_partition_of_their_channel_only():
    info = _backup({10: [_segment(1, 10, [], channel="ch0")], 20: [_segment(2, 20, [], channel="ch0"),
                                                                   _segment(3, 20, [], channel="ch1")]},
                   [_segment(8, -1, [], l0=True, channel="ch0"), _segment(9, -1, [], l0=True, channel="ch1")])
    objects = _objects(info, {1: [1, 2], 2: [3, 4], 3: [5, 6]}, {8: [(1, 10), (3, 11), (5, 12)], 9: [(6, 13)]})
    fold = plan_fold(info, B, objects.__getitem__)
    assert _folded(fold, info) == {1: [(1, 10)], 2: [(3, 11)], 3: [(6, 13)]}
    assert (fold.deletes, fold.folded, fold.unmatched) == (4, 3, 1)  # 5 is on ch1's segment, deleted on ch0


def test_without_channel_names_collection_level_deletes_fold_into_every_partition():
    """A backup listed before 2.5.8 names no segment's channel (nor, then, the L0 segments')."""
    info = _backup({10: [_segment(1, 10, [], channel="")], 20: [_segment(2, 20, [], channel="ch1")]},
                   [_segment(8, -1, [], l0=True, channel="")])
    objects = _objects(info, {1: [1, 2], 2: [3, 4]}, {8: [(1, 10), (4, 11), (9, 12)]})
    fold = plan_fold(info, B, objects.__getitem__)
    assert _folded(fold, info) == {1: [(1, 10)], 2: [(4, 11)]}
    assert (fold.deletes, fold.folded, fold.unmatched) == (3, 2, 1)


def test_a_key_deleted_at_both_levels_keeps_the_latest_timestamp():
    info = _backup({10: [_segment(1, 10, []), _segment(7, 10, [], l0=True)]}, [_segment(8, -1, [], l0=True)])
    objects = _objects(info, {1: ["a", "b"]}, {7: [("a", 50), ("b", 70)], 8: [("a", 60), ("b", 20)]}, VARCHAR)
    info.collection_backups[0].schema.fields[0].data_type = VARCHAR
    fold = plan_fold(info, B, objects.__getitem__)
    assert _folded(fold, info) == {1: [("a", 60), ("b", 70)]}


def test_the_output_meta_drops_l0_segments_and_records_the_new_logs_above_every_log_id():
    info = _backup({10: [_segment(1, 10, []), _segment(7, 10, [], l0=True)]}, [_segment(8, -1, [], l0=True)])
    objects = _objects(info, {1: [1, 2]}, {7: [(1, 5)], 8: [(2, 6)]})
    fold = plan_fold(info, B, objects.__getitem__)
    log_id, data = fold.logs[1]
    assert log_id == 82  # above 81, the collection-level L0 segment's log, the highest
    out = compacted_info(info, fold, "root/dst", "dst")
    coll = out.collection_backups[0]
    assert coll.l0_segments == [] and [s.segment_id for s in coll.partition_backups[0].segment_backups] == [1]
    seg = coll.partition_backups[0].segment_backups[0]
    assert seg.deltalogs == [meta.FieldBinlog(field_id=0, binlogs=[meta.Binlog(
        log_id=82, log_size=len(data), log_path="root/dst/binlogs/delta_log/1/10/1/1/82")])]
    assert (out.name, out.id != info.id) == ("dst", True)
    assert info.collection_backups[0].l0_segments  # the source's meta is left as it was
    assert plan_fold(_backup({10: [_segment(1, 10, [])]}, []), B, objects.__getitem__).logs == {}


def test_without_pyarrow_the_command_says_how_to_install_it_before_anything_else(tmp_path):
    code = ("import sys, runpy; sys.modules['pyarrow'] = None; "
            "sys.argv = ['mbackup', 'l0compact', '-n', 'any']; runpy.run_module('milvus_backup', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(Path(milvus_backup.__file__).parents[1])}  # this tree's package
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (
        2, "", 'error: mbackup l0compact needs pyarrow to read and write Parquet: install it with '
               'pip install "mbackup[l0compact]"\n')
