"""How a collection's segments become import jobs on Milvus 2.4+ (adapters/restore_v2.py), for
any segments a backup may hold: no server needed. The requests those jobs send are tested
against the contract server in tests/test_restore_v2.py; Milvus 2.3's one job per partition
against real Milvus 2.3.5 in tests/test_backup_restore.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import STAGE_COLLECTION_L0, STAGE_DATA, STAGE_PARTITION_L0, ImportJob
from milvus_backup.milvus.adapters.restore_v2 import RestoreV2, dynamic_field_id, split_added_fields
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.milvus.versions import ServerVersion

BDIR = "backup/nightly"
COLL = 7
PARTITIONS = ("_default", "p1", "p2")


class _Planner(RestoreV2):
    """The planning half of RestoreV2 on its own (it asks the server's version only)."""

    def __init__(self, version: str) -> None:
        self.server = ServerVersion.of(version)


def _collection(rows: list[tuple[int, bool, str, int, int]]) -> meta.CollectionBackupInfo:
    """``rows``: (partition index, or -1 for collection-level; L0; vchannel; storage version; rows)."""
    partitions = [meta.PartitionBackupInfo(partition_id=100 + i, partition_name=name, collection_id=COLL)
                  for i, name in enumerate(PARTITIONS)]
    c = meta.CollectionBackupInfo(collection_id=COLL, partition_backups=partitions)
    for n, (part, l0, vch, sv, num) in enumerate(rows):
        seg_id, l0 = 1000 + n, l0 or part < 0
        delta = [meta.FieldBinlog(binlogs=[meta.Binlog(log_id=seg_id * 10, log_size=5)])] if l0 or n % 3 == 0 else []
        seg = meta.SegmentBackupInfo(
            segment_id=seg_id, collection_id=COLL, partition_id=-1 if part < 0 else 100 + part,
            num_of_rows=0 if l0 else num, is_l0=l0, v_channel=vch, storage_version=sv,
            group_id=0 if part < 0 else seg_id, deltalogs=delta,
            binlogs=[] if l0 else [meta.FieldBinlog(field_id=100, binlogs=[meta.Binlog(log_id=seg_id, log_size=9)])])
        (c.l0_segments if part < 0 else partitions[part].segment_backups).append(seg)
    return c


_SEGMENTS = st.lists(st.tuples(st.integers(-1, 2), st.booleans(), st.sampled_from(["ch_0", "ch_1"]),
                               st.sampled_from([0, 2]), st.integers(1, 1000)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(rows=_SEGMENTS, batch=st.sampled_from([0, 1, 2, 3, 256]),
       version=st.sampled_from(["v2.4.23", "v2.5.8", "v2.6.4", "v2.6.5", "v3.0.0"]))
def test_every_segment_is_imported_once_in_jobs_a_server_accepts_in_the_go_tools_order(rows, batch, version):
    c = _collection(rows)
    jobs = _Planner(version).import_jobs(c, BDIR, batch=batch)
    multi_l0 = ServerVersion.of(version).number >= (2, 6, 5)
    names = {p.partition_id: p.partition_name for p in c.partition_backups} | {-1: ""}

    planned = [s.segment_id for j in jobs for s in j.segments]
    every = [s.segment_id for p in c.partition_backups for s in p.segment_backups] + [s.segment_id for s in c.l0_segments]
    assert sorted(planned) == sorted(every)  # each once
    assert len({j.key for j in jobs}) == len(jobs)
    for j in jobs:
        segs = j.segments
        assert {(s.v_channel, s.storage_version, s.is_l0, names[s.partition_id]) for s in segs} == {
            (segs[0].v_channel, j.storage_version, j.l0, j.partition)}
        assert j.batched == bool(batch)
        assert len(segs) <= (batch if batch and (multi_l0 or not j.l0) else 1)
        assert j.stage == (STAGE_DATA if not j.l0 else STAGE_PARTITION_L0 if j.partition else STAGE_COLLECTION_L0)
        for s, (insert, delta) in zip(segs, j.files, strict=True):
            part = f"{COLL}/{s.partition_id}/{s.group_id or s.segment_id}/"
            assert insert == ("" if j.l0 else f"{BDIR}/binlogs/insert_log/{part}")
            assert delta == (f"{BDIR}/binlogs/delta_log/{part}" if s.deltalogs else "")
    for j in jobs:  # what waits for what: a partition's L0 after its data, collection-level L0 after all
        for other in jobs:
            should = (other.stage < j.stage and (j.stage == STAGE_COLLECTION_L0 or other.partition == j.partition))
            assert j.waits_for(other) == should, (j.key, other.key)


@settings(max_examples=100, deadline=None)
@given(rows=_SEGMENTS, batch=st.sampled_from([0, 2]), seed=st.integers())
def test_the_plan_does_not_depend_on_the_order_the_backup_lists_segments(rows, batch, seed):
    """A resumed restore finds its finished jobs by key: the same backup plans the same jobs."""
    c, shuffled = _collection(rows), _collection(rows)
    for p in shuffled.partition_backups:
        random.Random(seed).shuffle(p.segment_backups)
    random.Random(seed).shuffle(shuffled.l0_segments)
    planner = _Planner("v2.6.11")
    assert [(j.key, j.files) for j in planner.import_jobs(c, BDIR, batch=batch)] == [
        (j.key, j.files) for j in planner.import_jobs(shuffled, BDIR, batch=batch)]


def test_a_backup_made_before_group_ids_imports_each_partition_whole():
    c = _collection([(1, False, "ch_0", 0, 10), (1, False, "ch_0", 0, 20), (1, True, "ch_0", 0, 0)])
    for s in c.partition_backups[1].segment_backups:
        s.group_id = 0
    data, l0 = _Planner("v2.5.8").import_jobs(c, BDIR)
    assert (data.key, data.partition, data.by_partition, [s.segment_id for s in data.segments]) == (
        "p1", "p1", True, [1000, 1001])
    assert data.files == ((f"{BDIR}/binlogs/insert_log/{COLL}/101/", f"{BDIR}/binlogs/delta_log/{COLL}/101/"),)
    assert (l0.l0, l0.files) == (True, (("", f"{BDIR}/binlogs/delta_log/{COLL}/101/1002/"),))


def test_milvus_2_3_keeps_one_job_per_partition_over_its_whole_prefixes():
    c = _collection([(0, False, "ch_0", 0, 10), (0, False, "ch_1", 0, 20), (2, False, "ch_0", 0, 5)])
    jobs = Milvus23Adapter("v2.3.5", None).import_jobs(c, BDIR, batch=256)
    assert [(j.key, j.files, len(j.segments), j.by_partition) for j in jobs] == [
        ("_default", ((f"{BDIR}/binlogs/insert_log/{COLL}/100/", f"{BDIR}/binlogs/delta_log/{COLL}/100/"),), 2, True),
        ("p2", ((f"{BDIR}/binlogs/insert_log/{COLL}/102/", ""),), 1, True)]


def test_a_job_in_words_names_its_partition_and_segments():
    seg = meta.SegmentBackupInfo(segment_id=42)
    assert ImportJob("p", "p", (), (seg,), by_partition=True).what == "partition 'p'"
    assert ImportJob("p/42", "p", (), (seg,)).what == "partition 'p' (segment 42)"
    assert ImportJob("p/L0/42", "p", (), (seg, seg), l0=True).what == "partition 'p' (2 L0 segments from 42)"
    assert ImportJob("-1/L0/42", "", (), (seg,), l0=True).what == "collection-level deletes (L0 segment 42)"
    moved = ImportJob("p/42", "p", (("b/insert_log/1/2/42/", ""),), (seg,)).under("mbackup-restore-0123456789ab")
    assert moved.files == (("mbackup-restore-0123456789ab/b/insert_log/1/2/42/", ""),)


# --------------------------------------------------------------------------------------
# Fields added after a collection was made


def _f(field_id: int, name: str = "", dynamic: bool = False) -> meta.FieldSchema:
    return meta.FieldSchema(field_id=field_id, name=name or f"f{field_id}", is_dynamic=dynamic)


@pytest.mark.parametrize("ids, dynamic, expected", [
    ([100, 101], None, 102),  # nothing added: $meta after the last field
    ([100, 101, 103], None, 102),  # one field added after $meta (102)
    ([100, 101, 103, 104], None, 102),
    ([100, 102, 103], None, 101),  # the first gap
    ([100, 101, 105], 104, 104),  # a backup that recorded $meta says where it is
    ([0, 1, 100, 101], None, 102),  # system fields do not count
    ([], None, 100),
])
def test_the_dynamic_field_id_is_the_first_gap_else_after_the_last(ids, dynamic, expected):
    fields = [_f(i) for i in ids] + ([_f(dynamic, "$meta", True)] if dynamic else [])
    assert dynamic_field_id(fields) == expected


@pytest.mark.parametrize("ids, dynamic_on, create, add", [
    ([101, 100, 103], True, [100, 101], [103]),  # created in id order, 103 added after $meta
    ([100, 101, 103], False, [100, 101, 103], []),  # no $meta: every field is created, in order
    ([100, 101], True, [100, 101], []),
    ([0, 0], True, [0, 0], []),  # hand-written meta without ids: as given
])
def test_fields_added_after_creation_are_added_again_after_it(ids, dynamic_on, create, add):
    schema = meta.CollectionSchema(fields=[_f(i) for i in ids] + [_f(102, "$meta", True)] * dynamic_on,
                                   enable_dynamic_field=dynamic_on)
    made, added = split_added_fields(schema)
    assert ([f.field_id for f in made], [f.field_id for f in added]) == (create, add)
