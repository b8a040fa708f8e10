"""How create turns the binlogs it found into the segments of a backup (``attach_segments``),
and where each of them is copied to (``meta.segment_files``, the Go tool's key layout)."""

from __future__ import annotations

import pytest

from milvus_backup.backup import create
from milvus_backup.backup.create import BackupError
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import SegmentRef, StorageLayout
from milvus_backup.storage import ObjectInfo

COLL, P1, P2 = 100, 10, 20
BDIR = "backup/nightly"


def attach_segments(coll, segments, logs) -> None:
    """create.attach_segments for Milvus 2.3's binlog layout, the one these keys use."""
    create.attach_segments(coll, segments, logs, StorageLayout())


def collection() -> meta.CollectionBackupInfo:
    return meta.CollectionBackupInfo(collection_id=COLL, db_name="default", collection_name="c", partition_backups=[
        meta.PartitionBackupInfo(partition_id=P1, partition_name="_default", collection_id=COLL),
        meta.PartitionBackupInfo(partition_id=P2, partition_name="p2", collection_id=COLL)])


def insert(part: int, seg: int, field: int, log: int, size: int) -> ObjectInfo:
    return ObjectInfo(f"files/insert_log/{COLL}/{part}/{seg}/{field}/{log}", size, f'"{log}"')


def delta(part: int, seg: int, log: int, size: int) -> ObjectInfo:
    return ObjectInfo(f"files/delta_log/{COLL}/{part}/{seg}/{log}", size)


def logs_of(*objects: ObjectInfo) -> dict[int, tuple[dict[int, list[ObjectInfo]], list[ObjectInfo]]]:
    """What discover_binlogs returns for these objects: by segment, inserts by field and deltas."""
    out: dict[int, tuple[dict[int, list[ObjectInfo]], list[ObjectInfo]]] = {}
    for o in objects:
        kind, _, _, seg, *rest = o.key.split("/")[1:]
        inserts, deltas = out.setdefault(int(seg), ({}, []))
        if kind == "insert_log":
            inserts.setdefault(int(rest[0]), []).append(o)
        else:
            deltas.append(o)
    return out


def test_segments_fill_their_partitions_with_every_binlog_in_order():
    coll = collection()
    # Listed in no particular order; the meta holds them by segment, field and log id.
    found = logs_of(insert(P2, 7, 100, 72, 30), insert(P1, 5, 101, 51, 20), insert(P1, 5, 100, 53, 11),
                    insert(P1, 5, 100, 50, 10), insert(P2, 7, 101, 71, 40), insert(P1, 5, 101, 52, 21),
                    delta(P1, 5, 59, 3), delta(P1, 5, 58, 4))
    attach_segments(coll, [SegmentRef(7, COLL, P2, num_rows=70, storage_version=2),
                           SegmentRef(5, COLL, P1, num_rows=50)], found)
    p1, p2 = coll.partition_backups
    seg5, = p1.segment_backups
    assert (seg5.segment_id, seg5.partition_id, seg5.num_of_rows, seg5.group_id, seg5.is_l0) == (5, P1, 50, 5, False)
    assert [(fb.field_id, [(b.log_id, b.log_size) for b in fb.binlogs]) for fb in seg5.binlogs] == [
        (100, [(50, 10), (53, 11)]), (101, [(51, 20), (52, 21)])]
    assert [[(b.log_path, b.log_id) for b in fb.binlogs] for fb in seg5.deltalogs] == [
        [(f"files/delta_log/{COLL}/{P1}/5/58", 58), (f"files/delta_log/{COLL}/{P1}/5/59", 59)]]
    assert (seg5.size, p1.size) == (10 + 11 + 20 + 21 + 3 + 4, 69)
    seg7, = p2.segment_backups
    assert (seg7.size, seg7.storage_version, [fb.binlogs for fb in seg7.deltalogs]) == (70, 2, [[]])
    assert (p2.size, coll.size) == (70, 139)


def test_every_binlog_is_copied_once_into_the_go_tools_layout():
    coll = collection()
    found = logs_of(insert(P1, 5, 0, 50, 1), insert(P1, 5, 100, 51, 2), delta(P1, 5, 59, 3))
    attach_segments(coll, [SegmentRef(5, COLL, P1, num_rows=1)], found)
    files = meta.segment_files(BDIR, coll.partition_backups[0].segment_backups[0])
    assert files == [
        (f"files/insert_log/{COLL}/{P1}/5/0/50", f"{BDIR}/binlogs/insert_log/{COLL}/{P1}/5/5/0/50", 1),
        (f"files/insert_log/{COLL}/{P1}/5/100/51", f"{BDIR}/binlogs/insert_log/{COLL}/{P1}/5/5/100/51", 2),
        (f"files/delta_log/{COLL}/{P1}/5/59", f"{BDIR}/binlogs/delta_log/{COLL}/{P1}/5/5/59", 3)]


def test_a_segment_of_a_partition_the_collection_does_not_have_is_left_out():
    """As the Go tool does: a partition dropped after the segments were listed."""
    coll = collection()
    attach_segments(coll, [SegmentRef(9, COLL, 999, num_rows=1)], logs_of(insert(999, 9, 100, 90, 5)))
    assert [p.segment_backups for p in coll.partition_backups] == [[], []] and coll.size == 0


def test_an_l0_segment_holds_deletes_only():
    coll = collection()
    attach_segments(coll, [SegmentRef(8, COLL, P1, num_rows=0, is_l0=True)], logs_of(delta(P1, 8, 80, 6)))
    seg, = coll.partition_backups[0].segment_backups
    assert (seg.is_l0, seg.binlogs, seg.size) == (True, [], 6)


def test_a_segment_without_insert_logs_names_the_settings_to_check():
    with pytest.raises(BackupError) as e:
        attach_segments(collection(), [SegmentRef(5, COLL, P1, num_rows=50)], logs_of(delta(P1, 5, 59, 3)))
    assert str(e.value) == (
        f"segment 5 of default.c has no insert logs under insert_log/{COLL}/{P1}/5/ in the Milvus bucket: check that "
        "milvus.storage.bucketName and rootPath (minio.bucketName, minio.rootPath) name the bucket and root path "
        "Milvus itself writes to")


def test_a_field_with_more_binlogs_than_the_others_is_a_compaction_left_over():
    found = logs_of(insert(P1, 5, 0, 50, 1), insert(P1, 5, 0, 52, 1), insert(P1, 5, 100, 51, 1))
    with pytest.raises(BackupError) as e:
        attach_segments(collection(), [SegmentRef(5, COLL, P1, num_rows=1)], found)
    assert str(e.value) == ("segment 5 has a different number of binlogs per field (field 0: 2, field 100: 1); "
                            "orphan binlogs from a compaction: run the backup again")
