"""``mbackup l0compact`` end to end on real Milvus 2.3.5 clusters and SeaweedFS (issue #11, 7).

A real backup of a real 2.3.5 collection is made into the backup a Milvus 2.5 would have
taken of it: its deletes in L0 segments. THE FAKE: no 2.5 server runs here, so the L0
segments are added to the meta by this test. Their delete logs are Milvus's own bytes where
a real server wrote them (partition pb: rows deleted on 2.3.5, whose delete logs the backup
took, moved out of the data segments into a partition-level L0 segment; 2.3.5 writes them in
the JSON form 2.5 writes by default), and written here the way Milvus 2.5's JSON delete-log
writer lays them out for the collection-level L0 segment (partition -1): deletes of
``_default`` rows, of a pb row and of a key no row has. What is real: the binlogs, the
restore into 2.3.5 refusing the L0 backup, l0compact's output restored into 2.3.5 with every
remaining row equal, ``verify --deep`` on the output, and the source backup's bytes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymilvus import DataType, MilvusClient

from milvus_backup import _engine
from milvus_backup.format import meta
from milvus_backup.milvus import binlog
from milvus_data import (
    Truth,
    assert_same_rows,
    client,
    drop_prefixed,
    error_line,
    mbackup,
    ok,
    read_back,
    segmented,
    shared_configs,
)

pytestmark = pytest.mark.milvus

ROOT = "l0c"
SOURCE = "l0c_src"
PARTS = ("_default", "pb")
L0 = "l0c_v25"  # the 2.5-style backup
NOWHERE = 987_654_321  # a key no row has


def _rows(rnd: int, part: int) -> list[dict]:
    start = 1000 * rnd + 500 * part
    return [{"id": i, "s": f"s{i}", "vec": [((i * 7 + j) % 11) / 11.0 for j in range(4)]}
            for i in range(start, start + 120)]


@pytest.fixture(scope="module")
def source(milvus_clusters):
    """l0c_src: two partitions, two flushed segments each; rows of pb deleted on the server
    (its delete logs are real). Its rows before any delete."""
    mc = client(milvus_clusters.source.uri)
    try:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("s", DataType.VARCHAR, max_length=16)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        before = segmented(mc, SOURCE, schema, PARTS, _rows)
        on_server = [500, 511, 1500, 1519]  # pb rows of both its segments
        mc.delete(SOURCE, ids=on_server, partition_name="pb")
        mc.release_collection(SOURCE)
    finally:
        mc.close()
    yield {"before": before, "on_server": on_server}
    drop_prefixed([milvus_clusters.source.uri, milvus_clusters.target.uri], SOURCE)


@pytest.fixture(scope="module")
def configs(milvus_clusters, tmp_path_factory):
    return shared_configs(milvus_clusters, tmp_path_factory.mktemp("l0c-config"), ROOT)


def milvus_2_5_delete_log(deletes: list[tuple[int, int]], coll: int, part: int, seg: int) -> bytes:
    """A delete log as Milvus 2.5's DeltalogStreamWriter (deltalogFormat json, the default)
    writes one: the binlog envelope, descriptor payload type String and extras original_size,
    one delete event (timestamps 1, 1), its Parquet one non-null string column "delta" of
    Go-marshalled DeleteLog rows."""
    rows = pa.array([json.dumps({"pk": pk, "ts": ts, "pkType": 5}, separators=(",", ":")) for pk, ts in deletes])
    buf = io.BytesIO()
    pq.write_table(pa.table([rows], schema=pa.schema([pa.field("delta", pa.string(), nullable=False)])), buf)
    log = binlog.Binlog(coll, part, seg, -1, 20, {"original_size": str(rows.nbytes)}, [(binlog.DELETE_EVENT, buf.getvalue())])
    return binlog.write(log)


@pytest.fixture(scope="module")
def backups(source, configs, milvus_clusters, seaweedfs):
    """``l0c_base``: mbackup create of l0c_src (pb's deletes in its data segments' delta logs).
    ``l0c_v25``: the same binlogs, laid out as a 2.5.8 backup before L0 compaction (no manifest,
    as the Go tool writes it). What each L0 segment deletes."""
    ok(mbackup(configs["src"], "create", "-n", "l0c_base", "--filter", f"default.{SOURCE}"))
    store = seaweedfs.store(milvus_clusters.source.bucket)
    base_dir, out_dir = f"{ROOT}/l0c_base", f"{ROOT}/{L0}"
    info = meta.loads(meta.BackupInfo, store.get(f"{base_dir}/meta/{meta.FULL_META}"))
    coll = info.collection_backups[0]
    channel = coll.virtual_channel_names[0]
    parts = {p.partition_name: p for p in coll.partition_backups}
    copies = []
    for seg in (s for p in coll.partition_backups for s in p.segment_backups):
        seg.v_channel = channel
        copies += [(key, out_dir + key[len(base_dir):], size) for _, key, size in meta.segment_files(base_dir, seg)
                   if "/insert_log/" in key]
    # pb: its data segments' real delete logs, moved into one partition-level L0 segment.
    pb = parts["pb"]
    top = max(s.segment_id for s in pb.segment_backups + parts["_default"].segment_backups)
    moved = []  # (its key in the base backup, its meta entry)
    for s in pb.segment_backups:
        logs = [b for fb in s.deltalogs for b in fb.binlogs]
        moved += zip([key for _, key, _ in meta.segment_files(base_dir, dataclasses.replace(s, binlogs=[]))], logs,
                     strict=True)
    assert len(moved) >= 1, "2.3.5 wrote no delete log for pb's deletes"
    for s in pb.segment_backups:
        s.deltalogs = []
    part_l0 = meta.SegmentBackupInfo(segment_id=top + 1, collection_id=coll.collection_id, partition_id=pb.partition_id,
                                     group_id=top + 1, is_l0=True, v_channel=channel,
                                     deltalogs=[meta.FieldBinlog(binlogs=[b for _, b in moved])])
    pb.segment_backups.append(part_l0)
    for (src, b), (_, dst, _) in zip(moved, meta.segment_files(out_dir, part_l0), strict=True):
        copies.append((src, dst, b.log_size))
    # partition -1: _default rows of both its segments, a pb row, a key no row has.
    ts = int(time.time() * 1000) << 18
    coll_deletes = [(7, ts), (119, ts + 1), (1003, ts + 2), (1600, ts + 3), (NOWHERE, ts + 4)]
    data = milvus_2_5_delete_log(coll_deletes, coll.collection_id, -1, top + 2)
    coll_l0 = meta.SegmentBackupInfo(segment_id=top + 2, collection_id=coll.collection_id, partition_id=-1,
                                     is_l0=True, v_channel=channel, deltalogs=[meta.FieldBinlog(binlogs=[
                                         meta.Binlog(log_id=top + 3, log_size=len(data))])])
    coll.l0_segments = [coll_l0]
    results = _engine.Copier().run([(store, src, store, dst, size) for src, dst, size in copies])
    assert not [r for r in results if r["error"]], results
    store.put(meta.segment_files(out_dir, coll_l0)[0][1], data)
    out = dataclasses.replace(info, name=L0, id="l0c-v25-id", milvus_version="v2.5.8")
    files = meta.write_meta_files(out)
    for name in sorted(files, key=lambda n: n == meta.BACKUP_META):  # the completion marker last
        store.put(f"{out_dir}/meta/{name}", files[name])
    deleted = source["on_server"] + [pk for pk, _ in coll_deletes if pk != NOWHERE]
    yield {"store": store, "deleted": deleted}
    store.delete_many([k for k, _, _ in store.list(f"{ROOT}/")], 16)


def objects(store, prefix: str) -> dict[str, bytes]:
    return {k: store.get(k) for k, _, _ in store.list(prefix)}


def truth(rows: dict, name: str) -> Truth:
    return Truth("default", name, "id", "vec", DataType.FLOAT_VECTOR, rows, [], list(PARTS))


def test_a_2_5_backup_refused_by_2_3_5_for_its_l0_deletes_restores_after_l0compact_with_every_row(
        backups, source, configs, milvus_clusters):
    target, store = milvus_clusters.target, backups["store"]
    refused = mbackup(configs["dst"], "restore", "-n", L0, "--suffix", "_refused")
    line = error_line(refused)
    assert "holds deletes in 2 L0 segments, which Milvus" in line and f"mbackup l0compact -n {L0}," in line

    before = objects(store, f"{ROOT}/{L0}/")
    done = ok(mbackup(configs["src"], "l0compact", "-n", L0))
    assert done.stdout.splitlines()[0] == (
        "folded 9 deletes of 2 L0 segments into 4 delete logs (8 entries); 1 matched no row of the backup")
    assert done.stdout.splitlines()[1].startswith(f"l0compact done: {L0} -> {L0}_l0compacted: ")
    assert objects(store, f"{ROOT}/{L0}/") == before  # the source, byte for byte

    out = f"{L0}_l0compacted"
    checked = ok(mbackup(configs["src"], "verify", "-n", out, "--deep"))
    assert ": 0 problems" in checked.stdout and "warning" not in checked.stdout + checked.stderr
    info = meta.loads(meta.BackupInfo, store.get(f"{ROOT}/{out}/meta/{meta.FULL_META}"))
    coll = info.collection_backups[0]
    assert (info.name, coll.l0_segments, [s for p in coll.partition_backups for s in p.segment_backups if s.is_l0]) \
        == (out, [], [])

    restored = ok(mbackup(configs["dst"], "restore", "-n", out, "--suffix", "_l0c"))
    assert f"restored default.{SOURCE} as default.{SOURCE}_l0c: " in restored.stdout
    want = {pk: row for pk, row in source["before"].items() if pk not in backups["deleted"]}
    assert len(want) == len(source["before"]) - 8
    got = read_back(target.uri, "default", f"{SOURCE}_l0c", truth(want, f"{SOURCE}_l0c"), release=True)
    assert_same_rows(got, truth(want, f"{SOURCE}_l0c"))


def test_a_backup_without_l0_segments_is_copied_all_the_same_and_said_so(backups, configs):
    done = ok(mbackup(configs["src"], "l0compact", "-n", "l0c_base", "-o", "l0c_base_copy"))
    assert "warning: backup 'l0c_base' has no L0 segments: nothing to fold; 'l0c_base_copy' is a copy of it" \
        in done.stderr
    assert ok(mbackup(configs["src"], "verify", "-n", "l0c_base_copy", "--deep")).stdout.count(": 0 problems") == 1


def test_an_incremental_backup_whose_binlogs_are_in_the_pool_becomes_a_full_one(backups, configs):
    store = backups["store"]
    ok(mbackup(configs["src"], "create", "-n", "l0c_inc", "--filter", f"default.{SOURCE}", "--incremental"))
    pooled = json.loads(store.get(f"{ROOT}/l0c_inc/meta/mbackup_manifest.json"))["objects"]
    assert pooled and all("pool" in e for e in pooled.values())
    ok(mbackup(configs["src"], "l0compact", "-n", "l0c_inc"))
    assert ok(mbackup(configs["src"], "verify", "-n", "l0c_inc_l0compacted", "--deep")).stdout.count(
        ": 0 problems") == 1
    manifest = json.loads(store.get(f"{ROOT}/l0c_inc_l0compacted/meta/mbackup_manifest.json"))
    assert manifest["version"] == 1 and not any("pool" in e for e in manifest["objects"].values())
    assert all(store.head(f"{ROOT}/l0c_inc_l0compacted/{rel}") for rel in manifest["objects"])


def test_a_non_empty_destination_is_refused_unless_force_empties_it(backups, configs):
    store = backups["store"]
    store.put(f"{ROOT}/l0c_taken/stray.txt", b"someone's")
    line = error_line(mbackup(configs["src"], "l0compact", "-n", L0, "-o", "l0c_taken"))
    assert line.startswith("error: the destination ") and line.endswith(
        f"/{ROOT}/l0c_taken is not empty (1 objects): give another -o/--output, or --force to empty it first")
    assert store.get(f"{ROOT}/l0c_taken/stray.txt") == b"someone's"
    summary = json.loads(ok(mbackup(configs["src"], "l0compact", "-n", L0, "-o", "l0c_taken", "--force",
                                    "--json")).stdout)
    assert {k: summary[k] for k in ("name", "output", "l0_segments", "deletes", "deletes_folded",
                                    "deletes_matching_no_row", "delta_logs_written")} == {
        "name": L0, "output": "l0c_taken", "l0_segments": 2, "deletes": 9, "deletes_folded": 8,
        "deletes_matching_no_row": 1, "delta_logs_written": 4}
    keys = [k for k, _, _ in store.list(f"{ROOT}/l0c_taken/")]
    assert f"{ROOT}/l0c_taken/stray.txt" not in keys and f"{ROOT}/l0c_taken/meta/backup_meta.json" in keys


def test_a_copy_that_fails_its_checksums_halfway_leaves_no_destination(backups, configs):
    """The source's manifest recorded each binlog's checksum: one changed since, same size,
    passes the quick check, and is caught when copied; what was written is removed."""
    store = backups["store"]
    for k, _, _ in store.list(f"{ROOT}/l0c_base/"):
        rel = k[len(f"{ROOT}/l0c_base/"):]
        store.put(f"{ROOT}/l0c_bad/{rel}", store.get(k))
    victim = next(k for k, size, _ in store.list(f"{ROOT}/l0c_bad/binlogs/insert_log/") if size > 64)
    data = bytearray(store.get(victim))
    data[-40] ^= 0xFF
    store.put(victim, bytes(data))
    result = mbackup(configs["src"], "l0compact", "-n", "l0c_bad")
    assert error_line(result, 4).startswith("error: 1 objects of backup 'l0c_bad' do not match the checksums it "
                                            "recorded (first: ")
    assert [k for k, _, _ in store.list(f"{ROOT}/l0c_bad_l0compacted/")] == []


@pytest.mark.parametrize(("args", "line"), [
    (["-n", "l0c_nope"], "error: no backup named 'l0c_nope' at "),
    (["-n", L0, "-o", L0], f"error: -o/--output '{L0}' is the source backup: l0compact writes a new backup, "
                           "give it another name"),
    (["-n", L0, "-o", "no way"], "error: invalid backup name 'no way': use letters, digits and _ (max 128), "
                                 "starting with a letter or _"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(backups, configs, args, line):
    store = backups["store"]
    before = {k for k, _, _ in store.list(f"{ROOT}/")}
    assert error_line(mbackup(configs["src"], "l0compact", *args)).startswith(line)
    assert {k for k, _, _ in store.list(f"{ROOT}/")} == before
