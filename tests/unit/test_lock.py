"""The lock every command that changes a backup takes (issue #8 items 5 and 6), on the engine's
memory and file stores: takeover of a stale lock by one conditional write, renewal that
notices a takeover, release of our own lock only, and damaged lock objects. The conditional
writes it is built on are part of every backend's contract (tests/contract); a holder
paused past its lease on SeaweedFS is in tests/test_lock.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid

import pytest

from milvus_backup import _engine
from milvus_backup.backup.lock import LockedError, LockLostError, StoreLock, honours_conditional_writes
from milvus_backup.errors import ConfigError
from milvus_backup.storage.location import Location


@pytest.fixture(params=["memory", "file", "unconditional-s3"])
def store(request, tmp_path, monkeypatch):
    """The engine's native stores that need no server, each writing conditionally on a version;
    and an S3 server that ignores conditional writes, where the lock reads back instead."""
    if request.param == "file":
        return _engine.Store(f"file://{tmp_path}")
    if request.param == "memory":
        return _engine.Store(f"memory://lock-{uuid.uuid4().hex}")
    monkeypatch.setenv("MBACKUP_LOCK_SETTLE", "0.1")
    s = unconditional_store(request.getfixturevalue("unconditional_s3"))
    assert not honours_conditional_writes(Location(s, "", s.url), "probe", lambda m: None, 0.1)  # found once, here
    return s


def unconditional_store(server) -> _engine.Store:
    name = f"lock-{uuid.uuid4().hex[:12]}"
    server.create_bucket(name)
    return server.store(name)


KEY = "backup/nightly/mbackup.lock"


def lock(s, **kw) -> StoreLock:
    kw.setdefault("warn", lambda m: None)
    return StoreLock(Location(s, "", s.url), KEY, "backup 'nightly'", **kw)


def stale_lock(s, **fields) -> str:
    """A lock a run on another host left 10 minutes ago; returns its version."""
    body = {"token": uuid.uuid4().hex, "pid": 1, "host": "elsewhere", "heartbeat": time.time() - 600,
            "command": "create"} | fields
    return s.put(KEY, json.dumps(body).encode())


def holder(s) -> dict:
    return json.loads(s.get(KEY))


class CtrlCAfter:
    """``store``, with a Ctrl-C landing as its ``n``-th call returns (a signal's Python handler
    runs when the engine call it arrived during is back)."""

    def __init__(self, store, n: int) -> None:
        self._store, self._n, self.calls = store, n, 0

    def disarm(self) -> None:
        self._n = 0

    def __getattr__(self, name: str):
        attr = getattr(self._store, name)
        if name not in ("get", "put", "head", "delete"):
            return attr

        def call(*args, **kwargs):
            result = attr(*args, **kwargs)
            self.calls += 1
            if self.calls == self._n:
                raise KeyboardInterrupt
            return result
        return call


@pytest.mark.parametrize("before", ["free", "stale"])
def test_a_ctrl_c_at_any_call_of_taking_the_lock_leaves_no_lock_of_ours(store, before):
    """Ctrl-C after each store call of acquire in turn (the write that took the lock among
    them): the rerun takes the lock at once. A lock left with our token would turn it away
    for a lease (two minutes), as a run still working."""
    honours_conditional_writes(Location(store, "", store.url), KEY, lambda m: None, 0.1)  # probed once, before
    for n in range(1, 20):
        if before == "stale":
            store.delete(KEY)
            stale_lock(store)
        wrapped = CtrlCAfter(store, n)
        try:
            taken = lock(wrapped).acquire()
        except KeyboardInterrupt:
            with lock(store):  # the rerun
                pass
            assert store.head(KEY) is None
            continue
        assert n > wrapped.calls  # every call of a whole acquire was interrupted after in turn
        wrapped.disarm()
        taken.release()
        assert store.head(KEY) is None
        return
    pytest.fail("acquire made more calls than the test interrupts")


def test_a_held_lock_is_refused_naming_its_holder_and_released_by_its_owner(store):
    with lock(store, command="create") as held:
        assert holder(store)["token"] == held.token
        with pytest.raises(LockedError) as refused:
            lock(store, command="delete").acquire()
        assert re.fullmatch(
            rf"another mbackup is working on backup 'nightly' \(pid {os.getpid()} on {re.escape(socket.gethostname())} "
            r"running create, alive at \d\d:\d\d:\d\d\): wait for it; if it died, run again after 120 s", str(refused.value))
    assert store.head(KEY) is None


def test_two_runs_taking_over_one_stale_lock_exactly_one_wins(store):
    """Both judge the lock stale; the takeover is one write on the version read, so one wins."""
    for _ in range(30):
        stale_lock(store)
        start, won, refused = threading.Barrier(2), [], []

        def take() -> None:
            run = lock(store, heartbeat=5)
            start.wait()
            try:
                won.append(run.acquire())
            except LockedError as e:
                refused.append(str(e))

        threads = [threading.Thread(target=take) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1, refused
        assert refused[0].startswith(f"another mbackup is working on backup 'nightly' (pid {os.getpid()} ")
        assert holder(store)["token"] == won[0].token
        won[0].release()
        assert store.head(KEY) is None


def test_a_holder_whose_renewal_is_refused_has_lost_the_lock(store):
    """A holder that went quiet past its lease (its heartbeat stopped, as in a paused process)
    is taken over; its next renewal is refused, it never overwrites the new holder, and its
    release leaves the new holder's lock alone."""
    first = lock(store, lease=1.0, heartbeat=0.2, on_loss="run the create again").acquire()
    lost = threading.Event()
    first.on_lost(lost.set)
    first._stop.set()  # the heartbeat stops, as when the process is paused
    first._thread.join()
    time.sleep(1.5)
    second = lock(store, lease=1.0, heartbeat=0.2).acquire()
    try:
        with pytest.raises(LockLostError) as e:
            first.renew()
        assert re.fullmatch(r"lost the lock on backup 'nightly': another run took it over after this one went \d s "
                            r"without renewing it \(the lease is 1 s\); run the create again", str(e.value))
        assert lost.is_set()
        first.release()
        assert holder(store)["token"] == second.token
        time.sleep(0.5)  # the new holder renews on its version
        assert holder(store)["token"] == second.token and not second.lost.is_set()
        second.renew()
    finally:
        second.release()
    assert store.head(KEY) is None


def test_release_deletes_only_our_own_lock(store):
    run = lock(store).acquire()
    run._stop.set()
    run._thread.join()
    other = stale_lock(store)  # another run wrote over it (say it judged ours stale)
    run.release()
    assert store.head(KEY)[1] == other


DAMAGED_LOCKS = [
    (b"", "empty"),
    (b"{", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b"[]", "expected an object, got an array"),
    (b"null", "expected an object, got null"),
    (b"[" * 100_000 + b"]" * 100_000, None),  # deep: RecursionError before
    (b"[" * 70 + b"]" * 70, "nests more than 64 levels deep"),
    (json.dumps({"token": 5}).encode(), "token: expected a token, got 5"),
    (json.dumps({"token": "a" * 32, "pid": "1", "host": "h", "heartbeat": 1}).encode(), "pid: expected a non-negative integer, got '1'"),
    (json.dumps({"token": "a" * 32, "pid": 2 ** 70, "host": "h", "heartbeat": 1}).encode(), "pid: expected a non-negative integer, got 1180591620717411303424"),
    (json.dumps({"token": "a" * 32, "pid": 1, "host": "h"}).encode(), "heartbeat: missing"),
    (b'{"token": "' + b"a" * 32 + b'", "pid": 1, "host": "h", "heartbeat": 1e999}', "heartbeat: expected a number, got inf"),
    (b'{"token": "' + b"a" * 32 + b'", "pid": 1, "host": "h", "heartbeat": NaN}', "not valid JSON: NaN is not valid JSON"),
    (b"\xff\xfe garbage", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    (b"x" * 10_000, "10,000 bytes, not a lock"),
]


@pytest.mark.parametrize(("data", "problem"), DAMAGED_LOCKS, ids=[f"damaged-{i}" for i in range(len(DAMAGED_LOCKS))])
def test_a_damaged_lock_is_stale_and_taken_over_with_one_warning(store, data, problem):
    store.put(KEY, data)
    warnings = []
    with lock(store, warn=warnings.append) as run:
        assert holder(store)["token"] == run.token
    assert len(warnings) == 1
    expected = f"took over the lock on backup 'nightly': its object {KEY} was damaged ("
    assert warnings[0].startswith(expected)
    if problem is not None:
        assert warnings[0] == f"{expected}{problem})"
    assert store.head(KEY) is None


@pytest.mark.parametrize("heartbeat", [time.time() + 10 ** 9, 1e18])
def test_a_heartbeat_from_far_in_the_future_is_stale(store, heartbeat):
    stale_lock(store, heartbeat=heartbeat, host=socket.gethostname(), pid=os.getpid())
    with lock(store) as run:
        assert holder(store)["token"] == run.token


def test_lease_and_heartbeat_from_the_environment(monkeypatch, store):
    monkeypatch.setenv("MBACKUP_LOCK_LEASE", "3")
    run = lock(store)
    assert (run.lease, run.heartbeat) == (3.0, 0.75)
    monkeypatch.setenv("MBACKUP_LOCK_HEARTBEAT", "5")
    with pytest.raises(ConfigError, match=r"the lock heartbeat \(5 s\) must be shorter than its lease \(3 s\)"):
        lock(store)
    monkeypatch.setenv("MBACKUP_LOCK_LEASE", "soon")
    with pytest.raises(ConfigError, match="MBACKUP_LOCK_LEASE: expected seconds between 0 and 86400, got 'soon'"):
        lock(store)


@pytest.mark.parametrize("kind", ["memory", "file", "unconditional-s3"])
def test_a_store_that_ignores_conditional_writes_is_named_once_and_still_locked(kind, tmp_path, request, monkeypatch):
    """The lock probes each store once a process: where conditional writes are ignored it says
    so in one warning (only the first lock on that store) and falls back to reading back, so a
    second run is still refused; elsewhere it says nothing."""
    monkeypatch.setenv("MBACKUP_LOCK_SETTLE", "0.1")
    if kind == "unconditional-s3":
        s = unconditional_store(request.getfixturevalue("unconditional_s3"))
    else:
        s = _engine.Store(f"file://{tmp_path}" if kind == "file" else f"memory://probe-{uuid.uuid4().hex}")
    warnings: list[str] = []
    with lock(s, warn=warnings.append) as first:
        with pytest.raises(LockedError, match=r"^another mbackup is working on backup 'nightly'"):
            lock(s, warn=warnings.append).acquire()
        assert holder(s)["token"] == first.token
    with lock(s, warn=warnings.append):
        pass
    if kind != "unconditional-s3":
        assert warnings == []
        return
    assert warnings == [f"{s.url} does not honour conditional writes (If-None-Match, If-Match): locks on it fall back "
                        "to write, wait 0.1 s, read back (weaker: see README, Locks)"]
    assert [k for k, _, _ in s.list("")] == []  # no probe object left behind
