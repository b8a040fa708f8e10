"""Restore's checks that need no server (issue #8, items 3 and 4): the rows an import must
report, and what a journal read back from storage may hold before anything in it is used.
The same checks run against real Milvus 2.3.5 in tests/test_backup_restore.py."""

from __future__ import annotations

import json

import pytest

from milvus_backup import _engine
from milvus_backup.backup.catalog import Stores
from milvus_backup.backup.restore import (
    JOURNAL_DIR,
    PlannedImport,
    RestoreError,
    RestoreRequest,
    Target,
    check_rows,
    discard_journals,
    read_journal,
    rows_differ,
)
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import ImportJob
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.storage.location import Location

# --------------------------------------------------------------------------------------
# The rows an import must report


def _target() -> Target:
    return Target(meta.CollectionBackupInfo(db_name="default", collection_name="c"), "default", "c_r")


ADAPTER = Milvus23Adapter("v2.3.5", None)


def _partition_job(inserted: int, deletes: int) -> PlannedImport:
    return PlannedImport(ImportJob("p", "p", (("s/insert_log/1/2/", ""),), (), by_partition=True), inserted, deletes)


@pytest.mark.parametrize("inserted, deletes, rows, mismatch", [
    (1000, 0, 1000, None),  # no deletes: exactly the rows backed up
    (1000, 0, 999, [1000, 1000, 1000, 0]),  # one row lost
    (1000, 0, 1001, [1000, 1000, 1000, 0]),  # one row more than the backup holds
    (1501, 27, 1476, None),  # seen on 2.3.5: 25 rows deleted by 27 records
    (1501, 27, 1474, None),  # every record deleting a row
    (1501, 27, 1501, None),  # records deleting nothing that was imported
    (1501, 27, 1473, [1474, 1501, 1501, 27]),  # more missing than the deletes explain
    (19793, 300, 14845, [19493, 19793, 19793, 300]),  # issue #8: one segment's binlogs gone
    (10, 50, 0, None),  # every row deleted
], ids=["exact", "lost", "extra", "deletes", "all-deletes", "no-deletes-hit", "too-few", "issue", "all-deleted"])
def test_rows_an_import_must_report(inserted, deletes, rows, mismatch):
    job = _partition_job(inserted, deletes)
    assert check_rows(ADAPTER, _target(), job, rows) == mismatch


def test_an_import_that_found_no_binlogs_names_the_likely_cause():
    job = _partition_job(10, 0)
    with pytest.raises(RestoreError, match=r"^import of default.c_r partition 'p' completed without rows: "
                                           r"Milvus found no binlogs under s/insert_log/1/2/; check that"):
        check_rows(ADAPTER, _target(), job, 0)


def test_the_line_naming_partition_expected_and_actual():
    assert rows_differ(_target(), "partition 'pa'", 19493, 19793, 19793, 300, 14845, "nightly") == (
        "rows of default.c_r partition 'pa' differ from the backup: expected 19,493 to 19,793 (19,793 rows, 300 "
        "deletes), Milvus imported 14,845; default.c_r is incomplete: check the backup with mbackup verify -n "
        "nightly, then restore it again with --drop-exist-collection")
    assert rows_differ(_target(), "partition '_default'", 500, 500, 500, 0, 250, "n").startswith(
        "rows of default.c_r partition '_default' differ from the backup: expected 500, Milvus imported 250; ")


# --------------------------------------------------------------------------------------
# A journal read back from storage


def _good() -> dict:
    return {"backup": "n", "backup_id": "id", "request": {"backup_id": "id"}, "command": "mbackup restore -n n",
            "collections": {"default.c_r": {"state": "created", "collection_id": 7, "staging": "mbackup-restore-0123456789ab",
                                            "snapshot_job": None,
                                            "partitions": {"p": {"job": "11,12", "done": False, "rows": None,
                                                                 "mismatch": None}}}}}


def _with(path: list, value) -> dict:
    data = _good()
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return data


R = ["collections", "default.c_r"]
P = R + ["partitions", "p"]


@pytest.mark.parametrize("data", [
    _with(R + ["staging"], "files"),  # a staging prefix that names Milvus's own data
    _with(R + ["staging"], "mbackup-restore-0123456789ab/../files"),
    _with(R + ["collection_id"], "7"),
    _with(R + ["collection_id"], True),
    _with(R + ["snapshot_job"], "12; drop"),
    _with(R + ["snapshot_job"], 1.5),
    _with(R + ["state"], "imported"),
    _with(R + ["partitions"], []),
    _with(P + ["job"], "12; drop"),
    _with(P + ["rows"], "many"),
    _with(P + ["mismatch"], "a line to print"),
    _with(P + ["mismatch"], [1, 2, 3]),
    _with(["collections"], []),
    _with(["request"], "x"),
    {"collections": {}},
], ids=["staging-root", "staging-escape", "id-string", "id-bool", "snapshot-job-text", "snapshot-job-float",
        "state", "partitions-list", "job", "rows", "mismatch-text",
        "mismatch-short", "collections-list", "request", "no-request"])
def test_a_journal_not_shaped_like_ours_is_not_used(data):
    store = _engine.Store(f"memory://journal-shape-{id(data)}")
    journals = Location(store, "", f"memory://journal-shape-{id(data)}", "memory")
    store.put("j.json", json.dumps(data).encode())
    assert read_journal(journals, "j.json") is None
    store.put("j.json", json.dumps(_good()).encode())
    assert read_journal(journals, "j.json") == _good()
    store.put("j.json", b"{not json")
    assert read_journal(journals, "j.json") is None


def test_discarding_a_tampered_journal_deletes_no_milvus_data():
    store = _engine.Store("memory://discard-tampered")
    store.put("files/insert_log/1/2/3/100/4", b"milvus data")
    store.put("mbackup-restore-0123456789ab/bk/n/binlogs/insert_log/1/2/3/3/100/4", b"staged")
    store.put(f"{JOURNAL_DIR}/n/a.json", json.dumps(_with(R + ["staging"], "files")).encode())
    store.put(f"{JOURNAL_DIR}/n/b.json", json.dumps(_good()).encode())
    loc = Location(store, "", "memory://discard-tampered", "memory")
    lines = discard_journals(Stores(loc, "files", loc, "bk"), "n")
    assert lines == ["discarded an unreadable restore journal",
                     "discarded the journal of `mbackup restore -n n` (restored into: default.c_r); the collections it "
                     "restored into are left as they are"]
    assert [k for k, _, _ in store.list("")] == ["files/insert_log/1/2/3/100/4"]


@pytest.mark.parametrize("flags", [{"suffix": "_x"}, {"filters": ["c"]}, {"renames": ["a:b"]}, {"force": True},
                                   {"skip_create_collection": True}, {"load": True}])
def test_discard_journal_takes_only_the_name(flags):
    with pytest.raises(RestoreError, match=r"^--discard-journal takes no other flag than -n: it discards every "
                                           r"journal of the backup and restores nothing$"):
        RestoreRequest(name="n", discard_journal=True, **flags).validate()
    RestoreRequest(name="n", discard_journal=True).validate()


class _DeletesFail:
    """A store whose deletes fail, which no local server can be made to do on demand: the
    one fake here. Everything else is the engine's memory store."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def delete_many(self, keys, parallel=32):
        return [(k, "AccessDenied") for k in keys]


def test_staged_copies_that_cannot_be_deleted_keep_their_journal():
    store = _engine.Store("memory://discard-fails")
    staged = "mbackup-restore-0123456789ab/bk/n/binlogs/insert_log/1/2/3/3/100/4"
    store.put(staged, b"staged")
    store.put(f"{JOURNAL_DIR}/n/b.json", json.dumps(_good()).encode())
    loc = Location(_DeletesFail(store), "", "memory://discard-fails", "memory")
    with pytest.raises(RestoreError, match=(
            rf"^could not delete 1 of the 1 staged copies under memory://discard-fails/mbackup-restore-0123456789ab/ "
            rf"\(first: {staged}: AccessDenied\): the journal memory://discard-fails/{JOURNAL_DIR}/n/b.json is kept; "
            "run the discard again$")):
        discard_journals(Stores(loc, "files", loc, "bk"), "n")
    assert [k for k, _, _ in store.list("")] == [staged, f"{JOURNAL_DIR}/n/b.json"]
