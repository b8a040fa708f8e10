"""The lock every command that changes a backup takes (issue #8 items 5 and 6), on the real
SeaweedFS and the engine's memory store: takeover of a stale lock by one conditional write,
renewal that notices a takeover, release of our own lock only, and damaged lock objects.
The conditional writes it is built on are part of every backend's contract (tests/contract).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import inprocess
from milvus_backup import _engine
from milvus_backup.backup import create as backup_module
from milvus_backup.backup.create import write_meta
from milvus_backup.errors import ConfigError
from milvus_backup.backup.lock import LockedError, LockLostError, StoreLock
from test_faults import assert_clear_failure, mbackup, milvus_cfg, snapshot
from test_faults import dataset as _faults_dataset

dataset = _faults_dataset  # the same collection fixture as the fault tests (one flushed segment per partition)


@pytest.fixture(params=["s3", "memory", "file"])
def store(request, seaweedfs, bucket, tmp_path):
    """Every kind of store the engine opens natively: each writes conditionally on a version."""
    if request.param == "s3":
        return seaweedfs.store(bucket)
    if request.param == "file":
        return _engine.Store(f"file://{tmp_path}")
    return _engine.Store(f"memory://lock-{uuid.uuid4().hex}")


# --------------------------------------------------------------------------------------
# The lock


KEY = "backup/nightly/mbackup.lock"


def lock(s, **kw) -> StoreLock:
    kw.setdefault("warn", lambda m: None)
    return StoreLock(s, KEY, "backup 'nightly'", **kw)


def stale_lock(s, **fields) -> str:
    """A lock a run on another host left 10 minutes ago; returns its version."""
    body = {"token": uuid.uuid4().hex, "pid": 1, "host": "elsewhere", "heartbeat": time.time() - 600,
            "command": "create"} | fields
    return s.put(KEY, json.dumps(body).encode())


def holder(s) -> dict:
    return json.loads(s.get(KEY))


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


# A run holding the lock and working, checking it between steps as create does.
HOLDER = """
import json, os, sys, time
from milvus_backup import _engine
from milvus_backup.errors import MBackupError
from milvus_backup.backup.lock import StoreLock

url, options = json.loads(os.environ["LOCK_TEST_STORE"])
with StoreLock(_engine.Store(url, options), sys.argv[1], "backup 'nightly'", command="create", lease=2.0,
               heartbeat=0.25, on_loss="stopped") as lock:
    print("held", flush=True)
    try:
        while True:
            lock.check()
            time.sleep(0.05)
    except MBackupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
"""


def test_a_paused_process_whose_lock_was_taken_over_stops_and_fails(seaweedfs, bucket):
    """SIGSTOP a real holder past its lease, take the lock over, SIGCONT it: its renewal is
    refused, it never overwrites the new holder, and it fails with one line."""
    s = seaweedfs.store(bucket)
    options = {"aws_endpoint": seaweedfs.endpoint, "aws_access_key_id": seaweedfs.access_key,
               "aws_secret_access_key": seaweedfs.secret_key, "aws_allow_http": "true"}
    env = dict(os.environ, LOCK_TEST_STORE=json.dumps([f"s3://{bucket}", options]))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, KEY], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    taker = None
    try:
        assert proc.stdout.readline() == "held\n"
        paused = holder(s)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(2.5)  # past the 2 s lease: stale, though the process is alive
        taker = lock(s, lease=2.0, heartbeat=0.25).acquire()
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, err
        assert re.fullmatch(r"error: lost the lock on backup 'nightly': another run took it over after this one went "
                            r"\d s without renewing it \(the lease is 2 s\); stopped\n", err), err
        assert holder(s)["token"] == taker.token != paused["token"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.communicate()
        if taker is not None:
            taker.release()
    assert s.head(KEY) is None


# --------------------------------------------------------------------------------------
# Every command that changes a backup takes the lock: a create and a delete on real Milvus
# (the races of issue #8 item 5, made deterministic by a hook at meta writing or by SIGSTOP).


def _slow_create(env, cfg: str, name: str, coll: str) -> subprocess.Popen:
    """A create slowed to a few requests a second, so that it is caught copying."""
    return subprocess.Popen([sys.executable, "-m", "milvus_backup", "create", "-n", name, "--filter", coll, "-q",
                             "--config", cfg, "--set", "mbackup.maxRequestsPerSecond=6",
                             "--set", "mbackup.maxBandwidth=256KiB/s"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _create_in_process(monkeypatch, cfg: str, name: str, coll: str, before_meta) -> tuple[int, str, str]:
    """``mbackup create`` in this process, calling ``before_meta()`` (a hook) when it is about
    to write its meta files, after the copy."""
    def write_meta_hooked(*args, **kw):
        before_meta()
        return write_meta(*args, **kw)

    monkeypatch.setattr(backup_module, "write_meta", write_meta_hooked)
    try:
        return inprocess.run("create", "-n", name, "--filter", coll, "-q", "--config", cfg)
    finally:
        monkeypatch.undo()


def _copying(backup, name: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while not backup.list(f"backup/{name}/binlogs") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert backup.list(f"backup/{name}/binlogs") and proc.poll() is None, "the create was not caught copying"


@pytest.mark.milvus
def test_delete_is_refused_while_a_create_writes_its_meta(milvus_clusters, dataset, seaweedfs, s3env, bucket,
                                                         tmp_path, monkeypatch):
    """The issue's race: delete while create writes its meta files. The create (in-process,
    held at meta writing by a hook) holds the lock; the delete (a real process) is refused in
    one line naming it and changes nothing; the create then succeeds, whole."""
    coll, _, _ = dataset
    cfg = milvus_cfg(tmp_path, milvus_clusters.source, bucket)
    name = f"busy_{uuid.uuid4().hex[:8]}"
    backup_store = seaweedfs.store(bucket)
    deletes = []

    def delete() -> None:
        before = snapshot(backup_store, f"backup/{name}")
        deletes.append(mbackup(s3env, "delete", "-n", name, "--config", cfg))
        assert snapshot(backup_store, f"backup/{name}") == before

    code, out, err = _create_in_process(monkeypatch, cfg, name, coll, before_meta=delete)
    assert code == 0 and out.startswith(f"create backup success: {name}: 1 collections"), err
    lines = assert_clear_failure(deletes[0], codes=(2,))
    assert len(lines) == 1 and re.match(rf"error: another mbackup is working on backup '{name}' \(pid {os.getpid()} "
                                        rf"on {re.escape(socket.gethostname())} running create, alive at ", lines[0])
    deep = mbackup(s3env, "verify", "-n", name, "--deep", "--config", cfg)
    assert deep.returncode == 0, deep.stdout + deep.stderr


@pytest.mark.milvus
def test_a_create_whose_objects_went_missing_never_reports_success(milvus_clusters, dataset, seaweedfs, s3env,
                                                                   bucket, tmp_path, monkeypatch):
    """An object deleted behind mbackup's back (another tool, a lifecycle rule) after it was
    copied: the create's one LIST before marking the backup complete finds it missing, the
    create fails in one line, and the backup is left incomplete, never complete without it.
    Running the same create again copies it again."""
    coll, _, _ = dataset
    cfg = milvus_cfg(tmp_path, milvus_clusters.source, bucket)
    name = f"lost_{uuid.uuid4().hex[:8]}"
    backup_store = seaweedfs.store(bucket)
    gone = []

    def lose_one() -> None:
        key, size, _ = backup_store.list(f"backup/{name}/binlogs")[0]
        backup_store.delete(key)
        gone.append((key[len(f"backup/{name}/"):], size))

    code, out, err = _create_in_process(monkeypatch, cfg, name, coll, before_meta=lose_one)
    (rel, size), = gone
    assert (code, out) == (2, ""), err
    lines = assert_clear_failure(subprocess.CompletedProcess([], code, out, err), codes=(2,))
    assert [line for line in lines if not line.startswith("warning: ")] == [
        f"error: backup '{name}' is not complete: 1 of its {len(backup_store.list(f'backup/{name}/binlogs')) + 6} objects "
        f"are missing or changed after they were written (first: {rel}: expected {size:,} bytes, missing); something "
        "deleted them during the create: run the same create again"], err
    assert backup_store.head(f"backup/{name}/meta/backup_meta.json") is None
    listed = mbackup(s3env, "list", "--config", cfg)
    assert f"{name}  INCOMPLETE (a create did not finish)" in listed.stdout.splitlines(), listed.stdout

    again = mbackup(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", cfg, timeout=300)
    assert again.returncode == 0 and f"resuming the incomplete backup '{name}'" in again.stderr, again.stderr
    deep = mbackup(s3env, "verify", "-n", name, "--deep", "--config", cfg)
    assert deep.returncode == 0, deep.stdout + deep.stderr


@pytest.mark.milvus
def test_a_paused_create_whose_lock_a_delete_took_over_stops_and_fails(milvus_clusters, dataset, seaweedfs, s3env,
                                                                      bucket, tmp_path):
    """A real create, SIGSTOPped mid-copy past its lease: a delete takes the stale lock over
    and deletes the backup; the create, continued, finds its renewal refused, cancels its
    copies and fails in one line. Nothing is left looking complete, and whatever it wrote
    before it noticed is still a backup that delete can remove."""
    coll, _, _ = dataset
    cfg = milvus_cfg(tmp_path, milvus_clusters.source, bucket)
    name = f"paused_{uuid.uuid4().hex[:8]}"
    backup_store = seaweedfs.store(bucket)
    env = dict(s3env, MBACKUP_LOCK_LEASE="3", MBACKUP_LOCK_HEARTBEAT="0.5")
    proc = _slow_create(env, cfg, name, coll)
    try:
        _copying(backup_store, name, proc)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(4)  # past the lease: the create looks gone
        deleted = mbackup(env, "delete", "-n", name, "--config", cfg)
        assert deleted.returncode == 0 and deleted.stdout.startswith(f"delete backup done: {name} ("), deleted.stderr
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.communicate()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    lines = [line for line in assert_clear_failure(result, codes=(2,)) if not line.startswith("warning: ")]
    assert len(lines) == 1 and re.fullmatch(
        rf"error: lost the lock on backup '{name}': another run took it over after this one went \d+ s without "
        r"renewing it \(the lease is 3 s\); stopped before marking the backup complete: run the same create again",
        lines[0]), lines
    assert "create backup success" not in out
    assert backup_store.head(f"backup/{name}/meta/backup_meta.json") is None
    listed = mbackup(s3env, "list", "--config", cfg).stdout.splitlines()
    assert not [line for line in listed if line.startswith(f"{name} ") and "INCOMPLETE" not in line], listed
    if backup_store.list(f"backup/{name}"):
        again = mbackup(s3env, "delete", "-n", name, "--config", cfg)
        assert again.returncode == 0, again.stderr
    assert not backup_store.list(f"backup/{name}")
