"""Where ``mbackup restore`` puts each collection of a backup: --suffix, --rename and --filter,
checked before anything is created."""

from __future__ import annotations

import pytest

from milvus_backup.backup.restore import RestoreError, RestoreRequest, parse_renames, plan_targets
from milvus_backup.format import meta

# "" is how an old backup names the default database.
BACKUP = meta.BackupInfo(name="nightly", collection_backups=[
    meta.CollectionBackupInfo(db_name=db, collection_name=coll)
    for db, coll in [("", "a"), ("default", "b"), ("db1", "c"), ("db1", "d")]])


def targets(**flags) -> list[tuple[str, str]]:
    """(source, target) of every collection restored."""
    return [(t.source_label, t.label) for t in plan_targets(BACKUP, RestoreRequest(name="nightly", **flags))]


@pytest.mark.parametrize(("flags", "expected"), [
    ({}, ["default.a", "default.b", "db1.c", "db1.d"]),
    ({"suffix": "_r"}, ["default.a_r", "default.b_r", "db1.c_r", "db1.d_r"]),
    ({"renames": ["a:z"]}, ["default.z", "default.b", "db1.c", "db1.d"]),
    ({"renames": ["db1.c:db2.e"]}, ["default.a", "default.b", "db2.e", "db1.d"]),
    ({"renames": ["db1.*:db2.*"]}, ["default.a", "default.b", "db2.c", "db2.d"]),
    ({"renames": ["db1.*:db2.*,db1.c:db3.f"]}, ["default.a", "default.b", "db3.f", "db2.d"]),  # a collection's own wins
    ({"renames": ["default.*:db9.*"]}, ["db9.a", "db9.b", "db1.c", "db1.d"]),
    ({"renames": ["a:b", "b:a"]}, ["default.b", "default.a", "db1.c", "db1.d"]),  # a swap
    ({"filters": ["db1.*"]}, ["db1.c", "db1.d"]),
    ({"filters": ["a_r,db1.d_r"], "suffix": "_r"}, ["default.a_r", "db1.d_r"]),  # filters name targets
    ({"filters": ["db2.e"], "renames": ["db1.c:db2.e"]}, ["db2.e"]),
    ({"filters": ["db1."]}, None),  # a database alone restores no collection
], ids=["same", "suffix", "rename", "rename-db", "move-db", "rename-wins", "move-default", "swap", "filter",
        "filter-suffix", "filter-rename", "filter-db-only"])
def test_each_collection_goes_where_the_flags_say(flags, expected):
    if expected is None:
        with pytest.raises(RestoreError, match="matches no collection"):
            targets(**flags)
        return
    assert [target for _, target in targets(**flags)] == expected


def test_sources_stay_paired_with_their_targets():
    assert targets(renames=["a:b", "b:a"]) == [("default.a", "default.b"), ("default.b", "default.a"),
                                               ("db1.c", "db1.c"), ("db1.d", "db1.d")]
    assert targets(renames=["db1.*:db2.*"], filters=["db2.d"]) == [("db1.d", "db2.d")]


@pytest.mark.parametrize(("flags", "message"), [
    ({"suffix": "_r", "renames": ["a:b"]}, "--suffix and --rename cannot be used together"),
    ({"suffix": "-r"}, "invalid --suffix '-r': use letters, digits and _"),
    ({"renames": ["a:c", "b:c"]}, "two collections would be restored as default.c: fix --rename"),
    ({"renames": ["db1.*:default.*"], "filters": ["c,d"]}, None),  # moved beside others, no clash
    ({"renames": ["db1.c:default.a"]}, "two collections would be restored as default.a: fix --rename"),
    ({"filters": ["x"]}, "--filter x matches no collection of backup 'nightly' (the filter applies to target "
                         "names, after --suffix/--rename)"),
])
def test_targets_that_cannot_be_are_refused_before_anything_is_made(flags, message):
    if message is None:
        targets(**flags)
        return
    with pytest.raises(RestoreError) as e:
        targets(**flags)
    assert str(e.value) == message


@pytest.mark.parametrize(("item", "why"), [
    ("a", "use old:new with coll, db.coll or db.*"),
    ("a:", "use old:new with coll, db.coll or db.*"),
    (":b", "use old:new with coll, db.coll or db.*"),
    ("db.*:b", "a db.* rename needs db.* on both sides"),
    ("a:db.*", "a db.* rename needs db.* on both sides"),
    ("a-b:c", "names are letters, digits and _"),
    ("db.a:d b.c", "names are letters, digits and _"),
])
def test_a_bad_rename_names_the_item_and_the_syntax(item, why):
    with pytest.raises(RestoreError) as e:
        parse_renames([item])
    assert str(e.value) == f"invalid --rename {item!r}: {why}"


def test_renames_parse_into_collections_and_databases():
    assert parse_renames(["a:b, db1.c:db2.d", "x.*:y.*"]) == (
        {("default", "a"): ("default", "b"), ("db1", "c"): ("db2", "d")}, {"x": "y"})
