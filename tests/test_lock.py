"""The lock every command that changes a backup takes (issue #8 items 5 and 6), where it needs
real processes and servers: a holder paused past its lease on SeaweedFS, and the commands
that take it on real Milvus. Its logic on the engine's memory and file stores is in
tests/unit/test_lock.py; the conditional writes it is built on, on every backend, in
tests/contract.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

import inprocess
from milvus_backup.backup import create as backup_module
from milvus_backup.backup.create import write_meta
from test_faults import assert_clear_failure, mbackup, milvus_cfg, snapshot
from test_faults import dataset as _faults_dataset
from unit.test_lock import KEY, holder, lock

dataset = _faults_dataset  # the same collection fixture as the fault tests (one flushed segment per partition)


# A run holding the lock and working, checking it between steps as create does.
HOLDER = """
import json, os, sys, time
from milvus_backup import _engine
from milvus_backup.errors import MBackupError
from milvus_backup.backup.lock import StoreLock
from milvus_backup.storage.location import Location

url, options = json.loads(os.environ["LOCK_TEST_STORE"])
with StoreLock(Location(_engine.Store(url, options), "", url), sys.argv[1], "backup 'nightly'", command="create", lease=2.0,
               heartbeat=0.25, on_loss="stopped") as lock:
    print("held", flush=True)
    try:
        while True:
            lock.check()
            time.sleep(0.05)
    except MBackupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
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
        assert proc.returncode == 3, err  # another run has it: retry later
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
    lines = assert_clear_failure(deletes[0], codes=(3,))  # held by the create: retry later
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
    assert re.search(rf"^{name} +- +- +- +INCOMPLETE .* \(a create did not finish\)$", listed.stdout, re.M), listed.stdout

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
    lines = [line for line in assert_clear_failure(result, codes=(3,)) if not line.startswith("warning: ")]
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
