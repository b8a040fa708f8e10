"""``verify_backup`` on a backup laid out in ``memory://`` and ``file://``: what it finds when
objects go missing, change size, are corrupted or appear from nowhere. What the command
prints for each, on SeaweedFS, is in tests/test_verify.py."""

from __future__ import annotations

import uuid

import pytest

from milvus_backup.backup.catalog import BackupNotFound, Stores
from milvus_backup.backup.verify import verify_backup
from milvus_backup.plugins.manager import storage_backends
from sample_backup import COLL, PART, ROOT, Sample, crc32c

open_location = storage_backends().open  # a URL opened as mbackup opens it


@pytest.fixture(params=["memory", "file"])
def place(request, tmp_path) -> tuple[Stores, Sample]:
    url = f"memory://verify-{uuid.uuid4().hex}" if request.param == "memory" else f"file://{tmp_path}"
    backup = open_location(url)
    return Stores(backup, "files", backup, ROOT), Sample(backup.store, "nightly")


def lines(report) -> list[str]:
    return [f.line for f in report.problems + report.warnings]


def test_a_whole_backup_passes_quick_and_deep(place):
    stores, sample = place
    quick = verify_backup(stores, "nightly")
    assert (quick.ok, quick.manifest, quick.objects, quick.checksums, lines(quick)) == (True, True, 15, 0, [])
    assert quick.bytes == sum(len(v) for v in sample.objects.values())
    deep = verify_backup(stores, "nightly", deep=True)
    assert (deep.ok, deep.checksums, deep.checksum_algo, lines(deep)) == (True, 9, "crc32c", [])


def test_missing_and_resized_objects_are_found_by_one_listing(place):
    stores, sample = place
    gone, cut = sample.binlogs[0], sample.binlogs[4]
    sizes = {rel: len(sample.objects[rel]) for rel in (gone, cut)}
    sample.delete(gone)
    sample.put(cut, sample.objects[cut][:7])
    report = verify_backup(stores, "nightly")
    assert lines(report) == [f"missing: {gone}: expected {sizes[gone]:,} bytes",
                             f"resized: {cut}: expected {sizes[cut]:,} bytes, found 7 bytes"]
    assert report.objects == 15 and not report.ok


def test_a_corrupted_object_of_the_same_size_is_found_by_the_deep_check_only(place):
    stores, sample = place
    rel = sample.binlogs[2]
    before = crc32c(sample.store, f"{sample.bdir}/{rel}")
    flipped = bytearray(sample.objects[rel])
    flipped[0] ^= 0xFF
    sample.put(rel, bytes(flipped))
    assert verify_backup(stores, "nightly").ok
    deep = verify_backup(stores, "nightly", deep=True)
    after = crc32c(sample.store, f"{sample.bdir}/{rel}")
    assert lines(deep) == [f"corrupted: {rel}: crc32c expected {before}, found {after}"]
    assert (deep.problems[0].expected_checksum, deep.problems[0].found_checksum) == (before, after)


def test_an_object_nothing_lists_is_a_warning_not_a_problem(place):
    stores, sample = place
    extra = f"binlogs/insert_log/{COLL}/{PART}/5001/5001/100/999"
    sample.put(extra, b"orphan")
    report = verify_backup(stores, "nightly")
    assert report.ok and lines(report) == [
        f"warning: unexpected: {extra}: 6 bytes, not in the backup's meta or manifest (restore does not read it)"]


def test_a_backup_without_its_completion_marker_is_incomplete(place):
    stores, sample = place
    sample.delete("meta/backup_meta.json")
    report = verify_backup(stores, "nightly")
    assert lines(report) == ["missing: meta/backup_meta.json: the backup is incomplete (a create or delete did not "
                             "finish)"]


def test_a_backup_of_the_go_tool_has_its_sizes_checked_but_no_checksums(place):
    stores, _ = place
    Sample(stores.backup.store, "from_go", manifest=False)
    deep = verify_backup(stores, "from_go", deep=True)
    assert (deep.ok, deep.manifest, deep.objects, deep.checksums) == (True, False, 14, 0)
    assert lines(deep) == ["warning: deep verification needs a backup made by mbackup: this one has no checksum "
                           "manifest (meta/mbackup_manifest.json), so only sizes were checked"]


def test_no_backup_of_that_name(place):
    stores, _ = place
    with pytest.raises(BackupNotFound, match=r"^no backup named 'other' at .*/backup/other \(mbackup list shows"):
        verify_backup(stores, "other")
