"""What ``mbackup copy`` decides before the engine moves a byte: which keys its filters keep,
which objects the destination already has, and which it copies again; on ``memory://`` and
``file://`` locations. Copies between servers are in tests/test_copy.py and tests/contract."""

from __future__ import annotations

import json
import uuid

import pytest

import inprocess
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.storage import Location, ObjectInfo
from milvus_backup.transfer.copy import CopySettings, manifest, matches, plan_copy, recheck_skipped, run_plan, selected

open_location = storage_backends().open  # a URL opened as mbackup opens it


@pytest.mark.parametrize(("key", "include", "exclude", "copied"), [
    ("a/b.log", [], [], True),
    ("a/b.log", ["*.log"], [], True),  # * crosses folders, as fnmatch does
    ("a/b.log", ["a/*"], [], True),
    ("a/b.log", ["b/*"], [], False),
    ("a/b.log", [], ["*.log"], False),
    ("a/b.log", ["a/*"], ["*.log"], False),  # an exclude wins over an include
    ("a/b.log", ["x", "a/?.log"], [], True),  # any include will do
    ("A/b.log", ["a/*"], [], False),  # case-sensitive, on every platform
    ("a/[1].log", ["a/[[]1].log"], [], True),
], ids=["no-filter", "include-ext", "include-dir", "include-other", "exclude", "exclude-wins", "any-include",
        "case", "brackets"])
def test_filters_keep_keys_like_rsync(key, include, exclude, copied):
    assert selected(key, include, exclude) is copied


MD5 = '"9e107d9d372bb6826bd81d3542a419d6"'


@pytest.mark.parametrize(("src", "dst", "same"), [
    (ObjectInfo("k", 5, MD5), None, False),
    (ObjectInfo("k", 5, MD5), ObjectInfo("k", 6, MD5), False),
    (ObjectInfo("k", 5, MD5), ObjectInfo("k", 5, MD5), True),
    (ObjectInfo("k", 5, MD5), ObjectInfo("k", 5, MD5.strip('"').upper()), True),  # quotes and case aside
    (ObjectInfo("k", 5, MD5), ObjectInfo("k", 5, '"e4d909c290d0fb1ca068ffaddf22cbd0"'), False),
    (ObjectInfo("k", 5, MD5), ObjectInfo("k", 5, '"9e107d9d372bb6826bd81d3542a419d6-2"'), True),  # multipart: size only
    (ObjectInfo("k", 5, '"7"'), ObjectInfo("k", 5, "99c46e-18ecdad2e5d11fa2-5"), True),  # memory vs file: size only
    (ObjectInfo("k", 5, None), ObjectInfo("k", 5, MD5), True),
], ids=["absent", "size", "md5", "md5-unquoted", "md5-differs", "multipart", "not-md5", "no-etag"])
def test_the_destination_already_has_an_object_when_size_and_md5_agree(src, dst, same):
    assert matches(src, dst) is same


@pytest.fixture(params=["memory", "file"])
def places(request, tmp_path) -> tuple[Location, Location]:
    if request.param == "memory":
        run = uuid.uuid4().hex
        return open_location(f"memory://src-{run}/data"), open_location(f"memory://dst-{run}/copy")
    return open_location(f"file://{tmp_path}/src"), open_location(f"file://{tmp_path}/dst/copy")


def write(loc: Location, objects: dict[str, bytes]) -> None:
    for rel, body in objects.items():
        loc.write(rel, body)


SOURCE = {"a/1.log": b"one", "a/2.log": b"two!", "b/3.bin": b"three", "c.txt": b"4"}


def test_a_plan_copies_what_the_destination_lacks_or_holds_at_another_size(places):
    src, dst = places
    write(src, SOURCE)
    write(dst, {"a/1.log": b"one", "a/2.log": b"2", "b/3.bin": b"THREE", "extra": b"kept"})
    plan = plan_copy(src, dst)
    assert plan.listed == 4
    assert [(o.key, key) for o, key in plan.jobs] == [("a/2.log", "a/2.log"), ("c.txt", "c.txt")]
    # Same size is taken as the same object where no MD5 ETags say otherwise: --verify checks that.
    assert [o.key for o in plan.skipped] == ["a/1.log", "b/3.bin"]
    assert plan.bytes == 5
    assert [o.key for o, _ in plan_copy(src, dst, skip_existing=False).jobs] == sorted(SOURCE)


def test_filters_apply_to_keys_relative_to_the_source(places):
    src, dst = places
    write(src, SOURCE)
    plan = plan_copy(src, dst, include=["a/*", "*.txt"], exclude=["*2*"])
    assert (plan.listed, [o.key for o, _ in plan.jobs]) == (4, ["a/1.log", "c.txt"])


def test_verify_copies_again_what_differs_behind_the_same_size(places):
    src, dst = places
    write(src, SOURCE)
    write(dst, {"a/1.log": b"one", "b/3.bin": b"THREE"})
    plan = plan_copy(src, dst)
    recheck_skipped(plan, src, dst, CopySettings())
    assert [o.key for o in plan.skipped] == ["a/1.log"] and list(plan.checksums) == ["a/1.log"]
    assert [o.key for o in plan.repaired] == ["b/3.bin"]
    assert [o.key for o, _ in plan.jobs] == ["a/2.log", "c.txt", "b/3.bin"]


def test_a_run_copies_the_plan_and_a_second_plan_is_empty(places):
    src, dst = places
    write(src, SOURCE)
    write(dst, {"c.txt": b"4"})
    settings = CopySettings(verify=True)
    plan = plan_copy(src, dst)
    report = run_plan(plan, src, dst, settings)
    assert (report.summary()["objects_copied"], report.summary()["objects_skipped"], report.failed) == (3, 1, [])
    assert {o.key: dst.read(o.key) for o in dst.list()} == SOURCE
    assert plan_copy(src, dst).jobs == []
    made = manifest(report, src, dst, settings.checksum)
    assert (made["source"], made["destination"], sorted(made["objects"])) == (src.url, dst.url, sorted(SOURCE))
    assert made["objects"]["c.txt"]["checksum"] is None  # skipped without --verify's recheck: size only
    assert all(made["objects"][k]["verified"] for k in SOURCE if k != "c.txt")


def test_keys_a_folder_cannot_hold_side_by_side_are_said_once_with_the_fix(tmp_path):
    """An S3 prefix may hold an object x and objects under x/; copied into a folder, one of
    each pair fails, and the command says why in one line, not that a link was met."""
    src = open_location(f"memory://clash-{uuid.uuid4().hex}")
    write(src, {f"d{i}": b"file" for i in range(3)} | {f"d{i}/x": b"under" for i in range(3)} | {"ok": b"fine"})
    code, out, err = inprocess.run("copy", src.url, str(tmp_path / "dst"), "-q", "--parallel", "1", "--json")
    summary = json.loads(out.splitlines()[-1])
    assert (code, summary["objects_copied"], summary["objects_failed"]) == (1, 4, 3), err
    code, out, err = inprocess.run("copy", src.url, str(tmp_path / "dst"), "-q", "--parallel", "1")
    assert code == 1
    assert err.splitlines() == [
        f"error: file://{tmp_path}/dst: keys a folder cannot hold side by side (an object x and objects under x/, "
        "which S3 can hold): 3 of 3 objects not copied (e.g. d0/x, d1/x, d2/x); --exclude skips one of each pair"]
    assert (tmp_path / "dst" / "ok").read_bytes() == b"fine"
