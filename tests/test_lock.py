"""The lock every command that changes a backup takes (issue #8 items 5 and 6), on the real
SeaweedFS and the engine's memory store: conditional writes in the engine, takeover of a
stale lock by one conditional write, renewal that notices a takeover, release of our own
lock only, and damaged lock objects.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from milvus_backup import _engine


@pytest.fixture(params=["s3", "memory"])
def store(request, seaweedfs, bucket):
    """Both kinds of store that can write conditionally on a version."""
    if request.param == "s3":
        return seaweedfs.store(bucket)
    return _engine.Store(f"memory://lock-{uuid.uuid4().hex}")


# --------------------------------------------------------------------------------------
# The engine: put(if_match=etag)


def test_put_if_match_writes_only_over_the_version_read(store):
    first = store.put("k", b"one")
    assert store.head("k") == (3, first)
    second = store.put("k", b"two", if_match=first)
    assert second != first and store.get("k") == b"two"

    # SeaweedFS answers a stale If-Match with 412 PreconditionFailed; the memory store alike.
    with pytest.raises(_engine.PreconditionError, match="k changed or was deleted since it was read"):
        store.put("k", b"three", if_match=first)
    assert store.get("k") == b"two"
    with pytest.raises(_engine.PreconditionError):
        store.put("gone", b"x", if_match=second)  # nothing there: no version matches
    assert store.head("gone") is None
    with pytest.raises(ValueError, match="exclude each other"):
        store.put("k", b"x", if_absent=True, if_match=second)


def test_of_two_writers_on_one_version_exactly_one_wins(store):
    for _ in range(25):
        version = store.put("k", uuid.uuid4().bytes)
        start, won = threading.Barrier(2), []

        def write() -> None:
            start.wait()
            try:
                won.append(store.put("k", uuid.uuid4().bytes, if_match=version))
            except _engine.PreconditionError:
                pass

        threads = [threading.Thread(target=write) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1
        assert store.head("k")[1] == won[0]


def test_the_file_store_says_it_cannot_write_on_a_version(tmp_path):
    s = _engine.Store(f"file://{tmp_path}")
    etag = s.put("k", b"one") or '"x"'
    with pytest.raises(_engine.EngineError, match="PutMode::Update"):
        s.put("k", b"two", if_match=etag)
    assert s.get("k") == b"one"
