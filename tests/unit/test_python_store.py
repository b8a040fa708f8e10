"""A store a plugin implements in Python (the hookspec's list, get, put, head and delete, and
nothing else) answers every Location method as the engine's own stores do. Typing the engine
(_engine.pyi) showed that list_dirs and delete_many called methods only the engine's stores
have: `mbackup list` on such a backup storage ended in a traceback."""

from __future__ import annotations

import time
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup import _engine
from milvus_backup.storage.leftovers import RESTORE_JOURNALS, find_restore
from milvus_backup.storage.location import Location


class DictStore:
    """The store protocol of the storage hookspec over a dict: the product's slow path for
    backends only a Python library reaches, here without the library."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def list(self, prefix: str = "") -> list[tuple[str, int, str | None]]:
        return sorted((k, len(v), None) for k, v in self.objects.items() if k.startswith(prefix))

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def head(self, key: str) -> tuple[int, None] | None:
        return (len(self.objects[key]), None) if key in self.objects else None

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


segment = st.sampled_from(["a", "b", "ab"])
keys = st.lists(st.lists(segment, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12, unique=True)
places = st.sampled_from(["", "a", "a/b", "ab", "zz"])


def both(objects: list[str], prefix: str) -> tuple[Location, Location]:
    """The same objects behind a Python store and behind the engine's memory store."""
    python, engine = DictStore(), _engine.Store(f"memory://{uuid.uuid4().hex}")
    for key in objects:
        python.put(key, key.encode())
        engine.put(key, key.encode())
    return Location(python, prefix, "py://x"), Location(engine, prefix, "memory://x")


def shown(listing: tuple[list[str], list]) -> tuple[list[str], list[tuple[str, int]]]:
    dirs, objects = listing
    return dirs, [(o.key, o.size) for o in objects]  # a Python store may give no ETags


@settings(max_examples=200, deadline=None)
@given(keys, places, places)
def test_one_level_of_a_python_store_is_the_engine_s(objects, prefix, under):
    python, engine = both(objects, prefix)
    assert shown(python.list_dirs(under)) == shown(engine.list_dirs(under))


@settings(max_examples=100, deadline=None)
@given(keys, st.data())
def test_deleting_many_from_a_python_store_deletes_what_the_engine_would(objects, data):
    python, engine = both(objects, "")
    gone = data.draw(st.lists(st.sampled_from([*objects, "never/there"]), unique=True))
    assert python.delete_many(gone) == engine.delete_many(gone) == []
    assert [o.key for o in python.list()] == [o.key for o in engine.list()]


class FailingDeletes(DictStore):
    def delete(self, key: str) -> None:
        raise PermissionError(f"{key}: not yours")


def test_a_python_store_s_failed_deletes_are_reported_per_key():
    loc = Location(FailingDeletes(), "p", "py://x")
    loc.store.put("p/a", b"1")
    assert loc.delete_many(["a", "b"]) == [("a", "p/a: not yours"), ("b", "p/b: not yours")]
    assert loc.read("a") == b"1"


def test_gc_finds_no_restore_leftovers_in_a_python_store():
    """Restore leftovers are judged by their age, which a Python store does not give."""
    store = DictStore()
    store.put(f"{RESTORE_JOURNALS}/n/b.json", b"{}")
    assert find_restore(store, "py://x", 0, time.time()) == []
    assert store.objects  # nothing removed
