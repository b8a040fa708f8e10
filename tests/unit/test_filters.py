"""What ``mbackup create --filter`` picks: the filter syntax shared with the Go tool, and the
collections chosen among those a server lists (given here as data, no Milvus)."""

from __future__ import annotations

import pytest

from milvus_backup.backup.create import BackupError, CreateRequest, choose_collections, describe_request, parse_filters


@pytest.mark.parametrize(("filters", "parsed"), [
    ([], {}),
    (["c1"], {"default": ["c1"]}),
    (["db1.c2"], {"db1": ["c2"]}),
    (["db2.*"], {"db2": None}),
    (["db3."], {"db3": []}),
    (["*"], {"default": None}),
    (["c1", "db1.c2", "db2.*", "db3."], {"default": ["c1"], "db1": ["c2"], "db2": None, "db3": []}),
    ([" a , b ,,", "a"], {"default": ["a", "b"]}),  # comma lists, spaces, empty items, repeats
    (["db.a", "db.*", "db.b"], {"db": None}),  # a whole database takes in its collections, before or after
    (["db.", "db.a"], {"db": ["a"]}),
    (["DB.c", "db.c"], {"DB": ["c"], "db": ["c"]}),  # names are case-sensitive
], ids=["none", "coll", "db-coll", "db-all", "db-only", "star", "mixed", "commas", "all-wins", "db-then-coll", "case"])
def test_filters_parse_like_the_go_tool(filters, parsed):
    assert parse_filters(filters) == parsed


@pytest.mark.parametrize("item", ["a-b", "db.c.d", ".c", "db.c*", "a b", "db/c", "é-x", "db.-"])
def test_a_bad_filter_names_the_item_and_the_syntax(item):
    with pytest.raises(BackupError) as e:
        parse_filters([f"ok,{item}"])
    assert str(e.value) == f"invalid filter {item!r}: use coll, db.coll, db.* or db."


SERVER = {"default": ["b", "a"], "db1": ["x"], "empty": []}


def choose(*filters: str) -> tuple[list[str], list[tuple[str, str]]]:
    return choose_collections(list(filters), list(SERVER), SERVER.__getitem__)


def test_no_filter_picks_every_collection_of_every_database():
    assert choose() == (["default", "db1", "empty"], [("default", "a"), ("default", "b"), ("db1", "x")])


def test_a_filter_picks_what_it_names_in_its_order():
    assert choose("b", "db1.*", "empty.") == (["default", "db1", "empty"], [("default", "b"), ("db1", "x")])
    assert choose("db1.x,a") == (["db1", "default"], [("db1", "x"), ("default", "a")])


@pytest.mark.parametrize(("filters", "message"), [
    (["nope.*"], "database 'nope' does not exist (databases: db1, default, empty)"),
    (["db1.a"], "collection 'a' does not exist in database 'db1' (collections: x)"),
    (["empty.a"], "collection 'a' does not exist in database 'empty' (collections: none)"),
    (["a", "c"], "collection 'c' does not exist in database 'default' (collections: a, b)"),
])
def test_an_unknown_name_is_refused_naming_what_exists(filters, message):
    with pytest.raises(BackupError) as e:
        choose(*filters)
    assert str(e.value) == message


def test_the_request_recorded_to_resume_reads_back_as_flags():
    """An incomplete backup resumes only for the same request; a different one is named in words."""
    request = CreateRequest("n", ["db2.*", "b", "db3.", "a"], "")
    record = request.record()
    assert record == {"filters": {"db2": None, "db3": [], "default": ["a", "b"]}, "strategy": "auto"}
    assert describe_request(record) == "--filter db2.*,db3.,default.a,default.b --strategy auto"
    assert CreateRequest("n", ["a", "b", "db3.", "db2.*"]).record() == record  # order does not matter
    assert describe_request(CreateRequest("n", [], "skip_flush").record()) == "no --filter --strategy skip_flush"
    assert describe_request(CreateRequest("n", [], "", rbac=True).record()) == "no --filter --strategy auto --rbac"
    assert "rbac" not in CreateRequest("n", []).record()  # markers of creates without --rbac read as before
