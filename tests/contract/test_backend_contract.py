"""The contract every storage backend keeps, run on each of them (restic's
internal/backend/test is the model): two S3 servers (SeaweedFS and moto), the file store
and the memory store, each reached the way mbackup reaches it, through
``milvus_backup.storage`` Locations and the engine's ``Store`` and ``Copier``; for reads
alone, GCS on fake-gcs-server (it takes no writes from object_store); for the lock's weaker
mode, an S3 server that ignores conditional writes (moto behind tests/unconditional_s3.py,
the one stand-in).

Where backends legitimately differ, the table ``BACKENDS`` says so, once; tests read it,
and a test of a capability only some rows have runs on exactly those rows, so a row that
claims too much or too little fails. Adding a backend (issue #15: GCS reads, more servers)
is one row, plus a small class saying how to reach it when it is a new kind of server.

``Store`` exposes no ranged read: the engine makes them when it streams an object in parts,
which the multipart copies here do from every backend.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from milvus_backup import _engine
from milvus_backup.backup.lock import honours_conditional_writes
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.storage import Location, ObjectInfo, StorageError
from milvus_backup.transfer.copy import CopySettings, plan_copy, run_plan

MIB = 1 << 20

open_location = storage_backends().open  # a URL opened as mbackup opens it


# --------------------------------------------------------------------------------------
# How each kind of server is reached


class MemoryServer:
    """``memory://``: no server, and a bucket is a namespace, there from its first write."""

    def reach(self, bucket: str, **options: str) -> tuple[str, dict[str, str]]:
        return f"memory://{bucket}", options

    def create_bucket(self, name: str) -> None:
        pass

    def delete_bucket(self, name: str) -> None:
        pass


class FolderServer:
    """``file://``: a bucket is a folder under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def reach(self, bucket: str, **options: str) -> tuple[str, dict[str, str]]:
        return f"file://{self.root / bucket}", options

    def create_bucket(self, name: str) -> None:
        (self.root / name).mkdir()

    def delete_bucket(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)


class S3Server:
    """An S3 server the suite runs (``tests/conftest.py``), reached with its keys, as a
    profile or the config file gives them."""

    def __init__(self, server: Any, access_key: str, secret_key: str) -> None:
        self.server, self.access_key, self.secret_key = server, access_key, secret_key

    def reach(self, bucket: str, **options: str) -> tuple[str, dict[str, str]]:
        return f"s3://{bucket}", {"endpoint": self.server.endpoint, "access_key_id": self.access_key,
                                  "secret_access_key": self.secret_key, **options}

    def create_bucket(self, name: str) -> None:
        self.server.create_bucket(name)

    def delete_bucket(self, name: str) -> None:
        self.server.delete_bucket(name)


class GCSServer:
    """fake-gcs-server, reached through GCS's own API as ``gs://`` URLs are, with an endpoint and
    a key file that needs no OAuth. It serves mbackup's reads but takes no writes from it (no
    XML-API uploads): objects are laid in by its JSON API, as the server's own hands."""

    def __init__(self, server: Any, key_file: Path) -> None:
        self.server, self.key_file = server, key_file

    def reach(self, bucket: str, **options: str) -> tuple[str, dict[str, str]]:
        return f"gs://{bucket}", {"endpoint": self.server.endpoint, "service_account": str(self.key_file), **options}

    def create_bucket(self, name: str) -> None:
        self.server.create_bucket(name)

    def delete_bucket(self, name: str) -> None:
        self.server.delete_bucket(name)

    def seed(self, bucket: str, key: str, body: bytes) -> None:
        self.server.upload(bucket, key, body)


def _memory(request: pytest.FixtureRequest) -> MemoryServer:
    return MemoryServer()


def _folder(request: pytest.FixtureRequest) -> FolderServer:
    return FolderServer(request.getfixturevalue("tmp_path_factory").mktemp("contract"))


def _seaweedfs(request: pytest.FixtureRequest) -> S3Server:
    s3 = request.getfixturevalue("seaweedfs")
    return S3Server(s3, s3.access_key, s3.secret_key)


def _moto(request: pytest.FixtureRequest) -> S3Server:
    return S3Server(request.getfixturevalue("moto"), "any-key", "any-secret")


def _fake_gcs(request: pytest.FixtureRequest) -> GCSServer:
    key_file = request.getfixturevalue("tmp_path_factory").mktemp("gcs") / "service-account.json"
    key_file.write_text('{"disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}')
    return GCSServer(request.getfixturevalue("fake_gcs"), key_file)


def _unconditional_s3(request: pytest.FixtureRequest) -> S3Server:
    return S3Server(request.getfixturevalue("unconditional_s3"), "any-key", "any-secret")


# --------------------------------------------------------------------------------------
# The capability table: where backends legitimately differ


@dataclass(frozen=True)
class Backend:
    name: str
    start: Callable[[pytest.FixtureRequest], Any]  # its server, from the session fixtures
    buckets: bool  # named buckets: a missing one is an error, and ensure_bucket makes it
    credentials: str  # "checked": wrong ones are refused; "ignored" (an emulator); "none" to give
    server_copy: bool  # copies between its own stores run on the server (CopyObject, UploadPartCopy)
    md5_etags: bool  # a single-part PUT's ETag is the MD5 of its bytes
    uploads_listed: bool  # list_leftovers shows a multipart upload in flight (a folder's staging
    #                       file is a leftover only once no writer holds it)
    key_and_folder: bool  # an object "a" and objects under "a/" side by side (a folder cannot)
    conditional_writes: bool = True  # if_absent and if_match are refused when they do not hold
    writes: bool = True  # takes mbackup's writes (fake-gcs-server only reads: tested for reads alone)
    # A server made to differ in one way only (tests/unconditional_s3.py): the suite runs on it
    # only the tests of that way, not the whole contract again.
    stand_in: bool = False

    def __str__(self) -> str:
        return self.name


BACKENDS = [
    #       name         start        buckets credentials server_copy md5_etags uploads_listed key_and_folder
    Backend("memory",    _memory,     False,  "none",     False,      False,    False,         True),
    Backend("file",      _folder,     False,  "none",     False,      False,    False,         False),
    Backend("seaweedfs", _seaweedfs,  True,   "checked",  True,       True,     True,          True),
    Backend("moto",      _moto,       True,   "ignored",  True,       True,     True,          True),
    # GCS through its own API, for reads: the emulator takes no writes from object_store.
    Backend("fake-gcs",  _fake_gcs,   True,   "ignored",  False,      False,    False,         True, writes=False),
    # S3-compatible servers without conditional writes (MinIO before 2024, older Ceph RGW):
    # none installs here, so moto with those headers dropped stands in for them.
    Backend("unconditional-s3", _unconditional_s3, True, "ignored", True, True, True, True,
            conditional_writes=False, stand_in=True),
]


def rows(where: Callable[[Backend], bool]) -> list[Backend]:
    """The backends a capability test runs on."""
    return [b for b in BACKENDS if where(b)]


def whole(b: Backend) -> bool:
    """A row the whole contract runs on: a real server that takes writes."""
    return b.writes and not b.stand_in


class Place:
    """Buckets on one backend for the tests of this module; emptied and removed at the end."""

    def __init__(self, backend: Backend, server: Any) -> None:
        self.backend, self.server = backend, server
        self.buckets: list[str] = []
        self.main = self.bucket()

    def bucket(self, *, create: bool = True) -> str:
        """A new bucket name, made on the server (by its own hands, not mbackup's) unless
        ``create`` is false; removed at the end either way."""
        name = f"contract-{uuid.uuid4().hex[:12]}"
        if create:
            self.server.create_bucket(name)
        self.buckets.append(name)
        return name

    def location(self, prefix: str = "", *, bucket: str | None = None, **options: str) -> Location:
        url, opts = self.server.reach(bucket or self.main, **options)
        return open_location(f"{url}/{prefix}" if prefix else url, opts)

    def seed(self, loc: Location, rel: str, body: bytes) -> None:
        """Put an object at ``rel`` of ``loc`` (a location in the main bucket): through mbackup
        where the backend takes its writes, else by the server's own hands."""
        if self.backend.writes:
            loc.store.put(loc.key(rel), body)
        else:
            self.server.seed(self.main, loc.key(rel), body)

    def fresh(self, **kw: Any) -> Location:
        """A location under a prefix no other test uses."""
        return self.location(f"t-{uuid.uuid4().hex[:8]}", **kw)

    def remove(self) -> None:
        for name in self.buckets:
            loc = self.location(bucket=name)
            try:
                keys = [loc.key(o.key) for o in loc.list()]
            except StorageError:
                keys = []  # a bucket a test left unmade
            assert loc.store.delete_many(keys) == []
            self.server.delete_bucket(name)


def _placed(request: pytest.FixtureRequest):
    """The module's buckets on the backend of this parameter, removed at the end."""
    place = Place(request.param, request.param.start(request))
    yield place
    place.remove()


@pytest.fixture(scope="module", params=rows(whole), ids=str)
def place(request: pytest.FixtureRequest):
    yield from _placed(request)


@pytest.fixture(scope="module", params=rows(lambda b: not b.stand_in), ids=str)
def rplace(request: pytest.FixtureRequest):
    """For the tests of reads: every real server, read-only ones too (objects seeded)."""
    yield from _placed(request)


@pytest.fixture
def rloc(rplace: Place) -> Location:
    return rplace.fresh()


@pytest.fixture(scope="module", params=rows(lambda b: b.writes), ids=str)
def every_place(request: pytest.FixtureRequest):
    """Every row that takes writes, stand-ins included: for the ways a stand-in differs."""
    yield from _placed(request)


@pytest.fixture
def loc(place: Place) -> Location:
    return place.fresh()


def data(n: int, seed: str) -> bytes:
    """``n`` bytes that never repeat, so a part copied to the wrong offset shows."""
    return hashlib.shake_256(seed.encode()).digest(n)


def bare(etag: str | None) -> str | None:
    """An ETag without its quotes: GCS lists them bare (its JSON API) and HEAD quotes them (its
    XML API); the engine compares versions this way too."""
    return etag.strip('"') if etag else etag


def checksum(loc: Location, rel: str) -> str:
    (value, _, error), = _engine.Copier().checksums([(loc.store, loc.key(rel))], "crc32c")
    assert error is None, error
    return value


# --------------------------------------------------------------------------------------
# Objects: write, read, head, list, delete


@pytest.mark.parametrize("size", [0, 1, 5 * MIB + 3])
def test_what_is_written_reads_back_with_its_size_and_etag(loc, place, size):
    body = data(size, f"rw-{size}")
    etag = loc.store.put(loc.key("obj"), body)
    assert loc.read("obj") == body
    assert loc.exists("obj")
    assert loc.store.head(loc.key("obj")) == (size, etag)
    assert list(loc.list()) == [ObjectInfo("obj", size, etag)]
    if place.backend.md5_etags:
        assert etag == f'"{hashlib.md5(body).hexdigest()}"'
    again = loc.store.put(loc.key("obj"), body + b"!")
    assert again != etag and loc.store.head(loc.key("obj")) == (size + 1, again)


def test_a_listing_is_every_object_under_the_folder_with_keys_as_spelled(rplace, rloc):
    loc = rloc
    written = {"a/x": b"1", "a/b/c": b"22", "ab/c": b"333", "abc": b"4444", "z/y/x": b"55555"}
    for rel, body in written.items():
        rplace.seed(loc, rel, body)
    etags = {rel: bare(loc.store.head(loc.key(rel))[1]) for rel in written}
    assert all(etags.values()) and {rel: loc.read(rel) for rel in written} == written
    listed = list(loc.list())
    assert [(o.key, o.size, bare(o.etag)) for o in listed] == [(k, len(written[k]), etags[k]) for k in sorted(written)]
    # Under "a" is the folder a/, never its siblings "ab/..." and "abc".
    assert [k for k, _, _ in loc.store.list(loc.key("a"))] == [loc.key("a/b/c"), loc.key("a/x")]
    assert loc.store.list(loc.key("nothing")) == []


def test_an_object_and_objects_under_its_name(place, loc):
    """S3 holds "a" and "a/b" side by side; a folder cannot, and says so whichever comes
    first. Either way a key under an object is simply not there to read or delete."""
    loc.store.put(loc.key("a"), b"1")
    loc.store.put(loc.key("c/d"), b"2")
    assert loc.store.head(loc.key("a/b")) is None and not loc.exists("a/b/c")
    with pytest.raises(_engine.NotFoundError):
        loc.store.get(loc.key("a/b"))
    loc.store.delete(loc.key("a/b"))
    assert loc.store.delete_many([loc.key("a/b")]) == []
    assert loc.store.head(loc.key("c")) is None
    if place.backend.key_and_folder:
        loc.store.put(loc.key("a/b"), b"3")
        loc.store.put(loc.key("c"), b"4")
        assert [o.key for o in loc.list()] == ["a", "a/b", "c", "c/d"]
        return
    for key, file in (("a/b", "a"), ("c", "c")):
        with pytest.raises(_engine.EngineError) as e:
            loc.store.put(loc.key(key), b"x")
        assert str(e.value) == (f"{loc.key(key)}: in a folder, an object {loc.key(file)} and objects under "
                                f"{loc.key(file)}/ cannot both exist (S3 can hold both); --exclude skips one of them")
    assert [(o.key, loc.read(o.key)) for o in loc.list()] == [("a", b"1"), ("c/d", b"2")]


def test_a_folder_listing_is_one_level(rplace, rloc):
    loc = rloc
    for rel in ("top", "d1/x", "d1/sub/y", "d2/z"):
        rplace.seed(loc, rel, b"x")
    dirs, objects = loc.store.list_dirs(loc.prefix)
    assert dirs == [loc.key("d1"), loc.key("d2")]
    assert [k for k, _, _ in objects] == [loc.key("top")]
    dirs, objects = loc.store.list_dirs(loc.key("d1"))
    assert (dirs, [(k, n, bare(e)) for k, n, e in objects]) == (
        [loc.key("d1/sub")], [(loc.key("d1/x"), 1, bare(loc.store.head(loc.key("d1/x"))[1]))])


def test_a_missing_object_is_not_found(rloc):
    loc = rloc
    with pytest.raises(_engine.NotFoundError):
        loc.store.get(loc.key("missing"))
    assert loc.store.head(loc.key("missing")) is None
    assert not loc.exists("missing")
    with pytest.raises(StorageError) as e:
        loc.read("missing")
    assert str(e.value).startswith(f"{loc.url}: ") and "\n" not in str(e.value)


def test_delete_is_done_once_the_key_is_gone(rplace, rloc):
    loc = rloc
    keys = [loc.key(f"k{i}") for i in range(40)]
    for i in range(40):
        rplace.seed(loc, f"k{i}", b"x")
    loc.store.delete(keys[0])
    loc.store.delete(keys[0])  # a missing key is deleted already
    assert loc.store.head(keys[0]) is None
    assert loc.store.delete_many(keys + [loc.key("never")], 8) == []
    assert list(loc.list()) == []


# Keys that URL encoding, signing or a file system could change: each must come back as spelled.
ODD_KEYS = ["with space", "two  spaces", "unicode/ünïcødé-日本語", "caf\u00e9", "cafe\u0301", "a+b", "100%",
            "50%25", "#hash", "~tilde", "q?x=1&y=2", "semi;colon", "'quote'", "(paren)", "star*", "dots.in.name"]


def test_odd_keys_are_kept_as_spelled_through_every_operation(place, loc):
    for rel in ODD_KEYS:
        loc.write(rel, rel.encode())
    listed = {o.key: o for o in loc.list()}
    assert sorted(listed) == sorted(ODD_KEYS)
    for rel in ODD_KEYS:
        assert loc.read(rel) == rel.encode(), rel
        assert loc.store.head(loc.key(rel)) == (len(rel.encode()), listed[rel].etag), rel

    copied = place.fresh()
    report = run_plan(plan_copy(loc, copied), loc, copied, CopySettings(verify=True))
    assert [(r["src_key"], r["error"]) for r in report.failed] == []
    assert sorted(o.key for o in copied.list()) == sorted(ODD_KEYS)
    assert {rel: copied.read(rel) for rel in ODD_KEYS} == {rel: rel.encode() for rel in ODD_KEYS}

    half = len(ODD_KEYS) // 2
    for rel in ODD_KEYS[:half]:
        loc.store.delete(loc.key(rel))
    assert loc.store.delete_many([loc.key(rel) for rel in ODD_KEYS[half:]]) == []
    assert list(loc.list()) == []


@pytest.mark.parametrize("name", ["with space", "a+b", "100%", "50%25", "#hash", "~tilde", "ünï", "x#y/z"])
def test_a_location_at_an_odd_prefix_is_that_prefix(place, loc, name):
    """The prefix in a URL is taken as spelled, '#' and '%' included: never cut, never decoded."""
    for rel in (f"{name}/in", f"{name}x/out", f"{name[:1]}/out"):
        loc.write(rel, rel.encode())
    inner = place.location(f"{loc.prefix}/{name}")
    assert inner.url == f"{loc.url}/{name}"
    assert [o.key for o in inner.list()] == ["in"] and inner.read("in") == f"{name}/in".encode()


# --------------------------------------------------------------------------------------
# Listings past one page (S3 answers 1,000 keys a request): written once per backend

MANY = 1005


@pytest.fixture(scope="module")
def many(rplace: Place) -> Location:
    """MANY objects, each in its own folder, written by the engine from memory (or seeded by
    the server's own hands on a read-only row)."""
    target = rplace.location("many")
    if not rplace.backend.writes:
        for i in range(MANY):
            rplace.seed(target, f"d{i:04d}/k", b"x")
        return target
    source = open_location(f"memory://many-{uuid.uuid4().hex}")
    for i in range(MANY):
        source.store.put(f"d{i:04d}/k", b"x")
    jobs = [(source.store, f"d{i:04d}/k", target.store, target.key(f"d{i:04d}/k"), 1) for i in range(MANY)]
    results = CopySettings(parallel=64).copier().run(jobs)
    assert [r["error"] for r in results if r["error"]] == []
    return target


def test_a_listing_past_one_page_has_every_key_once(many):
    assert [(o.key, o.size) for o in many.list()] == [(f"d{i:04d}/k", 1) for i in range(MANY)]


def test_a_folder_listing_past_one_page_has_every_folder_once(many):
    assert many.store.list_dirs(many.prefix) == ([many.key(f"d{i:04d}") for i in range(MANY)], [])


# --------------------------------------------------------------------------------------
# Conditional writes: what the lock is built on


@pytest.fixture(scope="module", params=rows(lambda b: b.writes and b.conditional_writes), ids=str)
def cond_place(request: pytest.FixtureRequest):
    """The rows that write conditionally (what a server without does: the test below)."""
    yield from _placed(request)


@pytest.fixture
def cond_loc(cond_place: Place) -> Location:
    return cond_place.fresh()


def test_the_lock_finds_out_which_servers_ignore_conditional_writes(every_place):
    """What ``conditional_writes`` claims, the lock's probe finds; on a server that ignores
    the conditions, a write over a taken key or a stale version simply lands."""
    loc = every_place.fresh()
    warnings: list[str] = []
    assert honours_conditional_writes(loc, "lock", warnings.append, 2.0) == every_place.backend.conditional_writes
    assert len(warnings) == (0 if every_place.backend.conditional_writes else 1)
    assert list(loc.list()) == []  # the probe leaves nothing behind
    if not every_place.backend.conditional_writes:
        first = loc.store.put(loc.key("k"), b"one", if_absent=True)
        loc.store.put(loc.key("k"), b"two", if_absent=True)
        loc.store.put(loc.key("k"), b"three", if_match=first)
        assert loc.read("k") == b"three"


def test_put_if_absent_writes_only_where_nothing_is(cond_loc):
    key = cond_loc.key("k")
    first = cond_loc.store.put(key, b"one", if_absent=True)
    with pytest.raises(_engine.AlreadyExistsError, match=f"^{key} already exists$"):
        cond_loc.store.put(key, b"two", if_absent=True)
    assert cond_loc.store.get(key) == b"one" and cond_loc.store.head(key) == (3, first)


def test_put_if_match_writes_only_over_the_version_read(cond_loc):
    store, key = cond_loc.store, cond_loc.key("k")
    first = store.put(key, b"one")
    assert store.head(key) == (3, first)
    second = store.put(key, b"two", if_match=first)
    assert second != first and store.get(key) == b"two"

    # SeaweedFS answers a stale If-Match with 412 PreconditionFailed; every store alike.
    with pytest.raises(_engine.PreconditionError, match=f"^{key} changed or was deleted since it was read$"):
        store.put(key, b"three", if_match=first)
    assert store.get(key) == b"two"
    with pytest.raises(_engine.PreconditionError):
        store.put(cond_loc.key("gone"), b"x", if_match=second)  # nothing there: no version matches
    assert store.head(cond_loc.key("gone")) is None
    with pytest.raises(ValueError, match="exclude each other"):
        store.put(key, b"x", if_absent=True, if_match=second)


def _race(write: Callable[[], str], lost: type[Exception]) -> list[str]:
    """Two threads run ``write`` at once; the ETags of those that won."""
    start, won = threading.Barrier(2), []

    def one() -> None:
        start.wait()
        try:
            won.append(write())
        except lost:
            pass

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return won


def test_of_two_writers_creating_one_key_exactly_one_wins(cond_loc):
    for i in range(15):
        key = cond_loc.key(f"k{i}")
        won = _race(lambda: cond_loc.store.put(key, uuid.uuid4().bytes, if_absent=True), _engine.AlreadyExistsError)
        assert len(won) == 1
        assert cond_loc.store.head(key)[1] == won[0]


def test_of_two_writers_on_one_version_exactly_one_wins(cond_loc):
    store, key = cond_loc.store, cond_loc.key("k")
    for _ in range(25):
        version = store.put(key, uuid.uuid4().bytes)
        won = _race(lambda: store.put(key, uuid.uuid4().bytes, if_match=version), _engine.PreconditionError)
        assert len(won) == 1
        assert store.head(key)[1] == won[0]


# --------------------------------------------------------------------------------------
# Copies through the engine: server-side where the backend can, in parts above a threshold

# Thresholds at S3's smallest part, so an object of a few MiB takes the multipart paths.
PARTS = CopySettings(verify=True, part_size=5 * MIB, multipart_threshold=5 * MIB, copy_part_size=5 * MIB,
                     multipart_copy_threshold=5 * MIB)
OBJECTS = {"small": 1000, "big": 11 * MIB}  # big: three parts


def _copied_whole(src: Location, dst: Location) -> dict[str, str]:
    """Copy everything under ``src`` to ``dst``, check it arrived whole; each object's strategy."""
    report = run_plan(plan_copy(src, dst), src, dst, PARTS)
    assert [(r["src_key"], r["error"]) for r in report.failed] == []
    for r in report.copied:
        assert dst.read(r["dst_key"]) == src.read(r["src_key"]), r["src_key"]
        assert r["verified"] and r["checksum"] in (None, checksum(src, r["src_key"])), r
    assert plan_copy(src, dst).jobs == []  # a second run has nothing left to copy
    return {r["src_key"]: r["strategy"] for r in report.copied}


def test_a_copy_between_two_buckets_of_the_backend(place, loc):
    for rel, size in OBJECTS.items():
        loc.write(rel, data(size, rel))
    other = place.fresh(bucket=place.bucket())
    strategies = _copied_whole(loc, other)
    if place.backend.server_copy:
        assert strategies == {"small": "server_copy", "big": "server_multipart"}
    else:
        assert strategies == {"small": "stream", "big": "stream_multipart"}


def test_a_copy_to_and_from_another_kind_of_store(rplace, rloc):
    """From the backend in ranged parts, and back to it as a multipart upload."""
    loc = rloc
    for rel, size in OBJECTS.items():
        rplace.seed(loc, rel, data(size, rel))
    elsewhere = open_location(f"memory://contract-{uuid.uuid4().hex}")
    assert _copied_whole(loc, elsewhere) == {"small": "stream", "big": "stream_multipart"}
    if not rplace.backend.writes:
        return
    back = rplace.fresh()
    assert _copied_whole(elsewhere, back) == {"small": "stream", "big": "stream_multipart"}


@pytest.mark.parametrize("source", ["same-backend", "memory"])
def test_a_cancelled_multipart_copy_leaves_no_upload_and_no_object(place, loc, source):
    """Cancelled after its first part, a copy aborts its upload: nothing at the key, nothing
    left for gc. Slowed by the caps so it is still running when cancelled."""
    src = place.fresh() if source == "same-backend" else open_location(f"memory://cancel-{uuid.uuid4().hex}")
    body = data(16 * MIB, "cancel")
    src.write("big", body)
    copier = CopySettings(parallel=1, part_parallel=1, part_size=5 * MIB, multipart_threshold=5 * MIB,
                          copy_part_size=5 * MIB, multipart_copy_threshold=5 * MIB, max_bandwidth=6 * MIB,
                          max_requests_per_sec=2.0).copier()
    results: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: results.extend(copier.run(
        [(src.store, src.key("big"), loc.store, loc.key("big"), len(body))])))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while copier.progress()["bytes_done"] == 0 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.is_alive(), "the copy ended before it could be cancelled"
        if place.backend.uploads_listed:
            assert [k for k, *_ in loc.store.list_leftovers(loc.prefix)] == [loc.key("big")]
    finally:
        copier.cancel()
        worker.join(60)
    assert not worker.is_alive()
    assert [(r["error_code"], r["strategy"]) for r in results] == [
        ("cancelled", "server_multipart" if place.backend.server_copy and source == "same-backend" else "stream_multipart")]
    assert loc.store.head(loc.key("big")) is None
    assert loc.store.list_leftovers(loc.prefix) == []


def test_a_copy_of_a_missing_object_fails_alone_as_not_found(rplace, rloc):
    loc = rloc
    rplace.seed(loc, "here", b"x")
    dst = rplace.fresh() if rplace.backend.writes else open_location(f"memory://missing-{uuid.uuid4().hex}")
    results = CopySettings().copier().run([(loc.store, loc.key(rel), dst.store, dst.key(rel), None)
                                          for rel in ("missing", "here")])
    assert [(r["error_code"], r["error"] is None) for r in results] == [("not_found", False), (None, True)]
    assert [o.key for o in dst.list()] == ["here"]


# --------------------------------------------------------------------------------------
# Buckets and credentials: what only servers have


@pytest.mark.parametrize("backend", rows(lambda b: whole(b) and b.buckets), ids=str)
def test_a_missing_bucket_is_said_in_one_line_and_ensure_bucket_makes_it(backend, request):
    place = Place(backend, backend.start(request))
    try:
        loc = place.location(bucket=place.bucket(create=False))
        for call in (lambda: loc.store.list(""), lambda: loc.store.get("k"), lambda: loc.store.put("k", b"x")):
            with pytest.raises(_engine.NotFoundError, match="NoSuchBucket"):
                call()
        assert loc.store.head("k") is None  # a HEAD answer has no body to tell a missing bucket by
        for call in (lambda: list(loc.list()), lambda: loc.read("k"), lambda: loc.write("k", b"x")):
            with pytest.raises(StorageError) as e:
                call()
            assert str(e.value) == f"{loc.url}: the bucket does not exist; create it or fix the bucket name"
        assert loc.list_if_bucket() is None and loc.list_if_bucket("sub/") is None
        assert loc.ensure_bucket() is True
        assert loc.ensure_bucket() is False
        assert loc.list_if_bucket() == []
        loc.write("k", b"x")
        loc.make_bucket()  # a bucket another run made meanwhile is taken as made: nothing in it is lost
        assert loc.read("k") == b"x"
        assert [(o.key, o.size) for o in loc.list_if_bucket() or ()] == [("k", 1)]
    finally:
        place.remove()


@pytest.mark.parametrize("backend", rows(lambda b: whole(b) and not b.buckets), ids=str)
def test_without_buckets_a_name_never_written_is_empty_and_needs_no_making(backend, request):
    place = Place(backend, backend.start(request))
    try:
        loc = place.location(bucket=place.bucket(create=False))
        assert list(loc.list()) == [] and loc.store.head("k") is None
        assert loc.list_if_bucket() == []
        assert loc.ensure_bucket() is False
        loc.write("k", b"x")
        assert loc.read("k") == b"x"
        assert [o.key for o in loc.list_if_bucket() or ()] == ["k"]
    finally:
        place.remove()


@pytest.mark.parametrize("backend", rows(lambda b: whole(b) and b.credentials == "checked"), ids=str)
@pytest.mark.parametrize(("wrong", "code"), [("secret_access_key", "SignatureDoesNotMatch"),
                                             ("access_key_id", "InvalidAccessKeyId")])
def test_wrong_credentials_are_refused_in_one_line(backend, request, wrong, code):
    place = Place(backend, backend.start(request))
    try:
        loc = place.location(**{wrong: "wrong-" + uuid.uuid4().hex[:6]})
        with pytest.raises(_engine.AuthError, match=code):
            loc.store.list("")
        with pytest.raises(_engine.AuthError, match=code):
            loc.store.put("k", b"x")
        with pytest.raises(StorageError) as e:
            list(loc.list())
        assert str(e.value) == (f"{loc.url}: the server rejected the credentials ({code}); check the access key "
                                "and secret (or the profile/config they come from)")
        assert list(place.location().list()) == []  # nothing was written
    finally:
        place.remove()


@pytest.mark.parametrize("backend", rows(lambda b: whole(b) and b.buckets), ids=str)
def test_a_throttling_server_is_retried_then_said_in_one_line_as_retry_later(backend, request):
    """Every request answered 503 SlowDown (S3's throttling, from tests/faultproxy.py in front of
    the server): the engine retries, then a listing fails as one line naming the location, in
    the class that exits 3 (not reachable or throttled: retry later), and a copy fails each object
    alone as throttled after its attempts. Nothing is written."""
    from faultproxy import FaultProxy
    from milvus_backup.errors import EXIT_UNREACHABLE

    place = Place(backend, backend.start(request))
    try:
        source = place.location()
        source.write("a", b"x" * 100)
        with FaultProxy(place.server.server.endpoint, max_lifetime=120) as proxy:
            proxy.slowdown(fraction=1.0)
            throttled = place.location(endpoint=proxy.endpoint)
            with pytest.raises(StorageError) as e:
                throttled.list()
            assert (e.value.exit_code, str(e.value).startswith(f"{throttled.url}: ")) == (EXIT_UNREACHABLE, True)
            assert "SlowDown" in str(e.value) and "\n" not in str(e.value)
            target = place.location("copy", endpoint=proxy.endpoint)
            report = run_plan(plan_copy(source, target, skip_existing=False), source, target, CopySettings(parallel=2))
            assert [(r["error_code"], r["attempts"] > 1) for r in report.results] == [("throttled", True)]
            assert report.exit_code == EXIT_UNREACHABLE and proxy.stats["slowdown"] > 1
        assert [o.key for o in place.location().list()] == ["a"]  # nothing written through the throttled server
    finally:
        place.remove()


@pytest.mark.parametrize("backend", rows(lambda b: whole(b) and b.credentials == "ignored"), ids=str)
def test_an_emulator_that_ignores_credentials_takes_wrong_ones(backend, request):
    """Not a behaviour to rely on: the row says so, and this notices when it changes."""
    place = Place(backend, backend.start(request))
    try:
        loc = place.location(secret_access_key="wrong")
        loc.write("k", b"x")
        assert loc.read("k") == b"x"
    finally:
        place.remove()

