"""Exit codes by cause (issue #11 point 3), each from a real cause: a closed port, a store
that answers every request with 503 SlowDown, a wrong secret, a mistyped key, a flipped
byte, damaged meta, a missing backup, an empty prefix, a copy that partly fails.

0 done, 1 partly failed, 2 usage or config error, 3 not reachable or throttled (retry
later), 4 integrity problem. Run in process (tests/inprocess.py): the same code and lines
as the command, without a Python start per case.
"""

from __future__ import annotations

import contextlib
import socket

import pytest

import inprocess
from faultproxy import FaultProxy
from sample_backup import Sample, config_yaml


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (id, args, exit code, the first line on stderr (or stdout when it starts with "stdout:"))
# "{cfg}" is a config on the staged bucket with Milvus at a closed port; "{endpoint}" the S3
# server, "{proxy}" the same behind a proxy that throttles every request.
CASES = [
    ("done", ["verify", "-n", "nightly", "--config", "{cfg}"], 0, "stdout:verified 15 objects"),
    ("empty-prefix", ["copy", "s3://{bucket}/nothing-here?endpoint={endpoint}", "{tmp}/o"], 0, "note: nothing to copy: s3://"),
    ("delete-missing-if-exists", ["delete", "-n", "gone", "--if-exists", "--config", "{cfg}"], 0,
     "note: no backup named 'gone' at s3://"),
    ("partly-failed-copy", ["copy", "s3://{bucket}/clash?endpoint={endpoint}", "{tmp}/o"], 1, "failed: x"),
    ("wrong-secret", ["copy", "s3://{bucket}/clash?endpoint={endpoint}", "{tmp}/o"], 2, "error: s3://{bucket}/clash: the server rejected the credentials"),
    ("key-typo", ["--set", "milvus.adress=x", "config", "show"], 2, "error: milvus.adress: unknown key"),
    ("unknown-backup", ["get", "-n", "nothere", "--config", "{cfg}"], 2, "error: no backup named 'nothere'"),
    ("delete-missing", ["delete", "-n", "gone", "--config", "{cfg}"], 2, "error: no backup named 'gone'"),
    ("bad-name", ["get", "-n", "a/b", "--config", "{cfg}"], 2, "error: invalid backup name 'a/b'"),
    ("s3-closed-port", ["copy", "s3://b/p?endpoint=http://127.0.0.1:{closed}", "{tmp}/o"], 3,
     "error: s3://b/p: cannot reach the endpoint"),
    ("s3-throttled", ["copy", "s3://{bucket}/clash?endpoint={proxy}", "{tmp}/o"], 3, "error: s3://{bucket}/clash: "),
    ("milvus-closed-port", ["check", "--config", "{cfg}"], 3, "error: cannot reach Milvus at 127.0.0.1:{closed}"),
    ("flipped-byte", ["verify", "-n", "flipped", "--deep", "--config", "{cfg}"], 4, "stdout:corrupted: binlogs/"),
    ("damaged-meta", ["get", "-n", "badmeta", "--config", "{cfg}"], 4, "error: meta/full_meta.json is not valid JSON"),
    ("restore-of-damaged-backup", ["restore", "-n", "missing_binlog", "--config", "{cfg}"], 4,
     "error: backup 'missing_binlog' failed the quick check: missing: binlogs/"),
]


@pytest.fixture(scope="module")
def stage(seaweedfs):
    """One bucket: a good backup, one with a flipped byte, one with a binlog gone, one with
    damaged meta; and two objects a folder cannot hold side by side (clash/x, clash/x/y)."""
    name = "exit-code-cases"
    seaweedfs.create_bucket(name)
    s = seaweedfs.store(name)
    Sample(s, "nightly")
    flipped = Sample(s, "flipped")
    rel = flipped.binlogs[0]
    data = bytearray(flipped.objects[rel])
    data[len(data) // 2] ^= 0x01  # same size: only reading every byte finds it
    flipped.put(rel, bytes(data))
    missing = Sample(s, "missing_binlog")
    missing.delete(missing.binlogs[0])
    Sample(s, "badmeta").put("meta/full_meta.json", b"{not json")
    s.put("clash/x", b"a file")
    s.put("clash/x/y", b"and a file under it")
    s.put("clash/z", b"fine")
    yield seaweedfs, name
    seaweedfs.delete_bucket(name)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exit_code_by_cause(case, stage, tmp_path, monkeypatch):
    seaweedfs, bucket = stage
    name, args, code, expected = case
    port = closed_port()
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket, grpc_port=port))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong" if name == "wrong-secret" else seaweedfs.secret_key)
    monkeypatch.delenv("MBACKUP_PLUGINS", raising=False)
    throttling = any("{proxy}" in a for a in args)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) if throttling else contextlib.nullcontext() as proxy:
        if proxy:
            proxy.slowdown(fraction=1.0)
        fill = {"{cfg}": str(cfg), "{tmp}": str(tmp_path), "{bucket}": bucket, "{closed}": str(port),
                "{endpoint}": seaweedfs.endpoint, "{proxy}": proxy.endpoint if proxy else ""}

        def sub(text: str) -> str:
            for k, v in fill.items():
                text = text.replace(k, v)
            return text

        got, out, err = inprocess.run(*map(sub, args))
    stream, expected = (out, expected[len("stdout:"):]) if expected.startswith("stdout:") else (err, expected)
    assert got == code, out + err
    lines = [line for line in stream.splitlines() if not line.startswith("warning:")]
    assert lines and lines[0].startswith(sub(expected)), out + err
    assert "Traceback" not in err


# Every command refused because another run holds a lock: nothing is wrong with the command,
# so 3 (retry later), not 2 (fix it). The locks are live: this process, on this host, just now.
HELD = [
    (["create", "-n", "busy", "--config", "{cfg}"], "error: another mbackup is working on backup 'busy' "),
    (["create", "-n", "busy", "--dry-run", "--config", "{cfg}"], "error: another mbackup is working on backup 'busy' "),
    (["delete", "-n", "held", "--config", "{cfg}"], "error: another mbackup is working on backup 'held' "),
    (["delete", "-n", "held", "--dry-run", "--config", "{cfg}"], "error: another mbackup is working on backup 'held' "),
    (["restore", "-n", "held", "--discard-journal", "--config", "{cfg}"],
     "error: a restore of backup 'held' is running with the journal "),
    (["restore", "-n", "held", "--discard-journal", "--dry-run", "--config", "{cfg}"],
     "error: a restore of backup 'held' is running with the journal "),
]


@pytest.mark.parametrize(("args", "line"), HELD, ids=[" ".join(a[:-2]) for a, _ in HELD])
def test_a_lock_another_run_holds_exits_3_and_changes_nothing(args, line, stage, tmp_path, monkeypatch):
    import json
    import os
    import time
    import uuid

    seaweedfs, bucket = stage
    s = seaweedfs.store(bucket)
    live = json.dumps({"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(),
                       "heartbeat": time.time(), "command": "create"}).encode()
    Sample(s, "held")
    for key in ("backup/held/mbackup.lock", "backup/busy/mbackup.lock", "mbackup-restore-journal/held/0123.lock"):
        s.put(key, live)
    s.put("mbackup-restore-journal/held/0123.json", json.dumps({"backup": "held", "collections": {}}).encode())
    before = {k: s.get(k) for k, _, _ in s.list("")}
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket, grpc_port=closed_port()))  # never asked: the lock refuses first
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    got, out, err = inprocess.run(*(a.replace("{cfg}", str(cfg)) for a in args))
    assert (got, out) == (3, ""), err
    assert next(x for x in err.splitlines() if not x.startswith("warning:")).startswith(line), err
    assert {k: s.get(k) for k, _, _ in s.list("")} == before


def test_help_and_readme_list_every_exit_code():
    """What a script author reads: ``mbackup --help`` and the README's table name each code."""
    import re

    from mbackup_dev import readme

    code, out, _ = inprocess.run("--help")
    assert code == 0
    shown = out[out.index("Exit codes:"):]
    for number in ("0", "1", "2", "3", "4", "130, 143"):
        assert re.search(rf"^\W*{number}  \w", shown, re.MULTILINE), shown
    table = re.findall(r"^\| (\d+) \|", readme.README.read_text(), re.MULTILINE)
    assert table == ["0", "1", "2", "3", "4", "130", "143"]
