"""Bad input, table-driven (issue #4 §7): for each case, one clear line on stderr, the exit
code, and nothing created, changed or deleted (the bucket's objects and the working folder
are compared before and after). No Milvus is needed: every case is refused before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sample_backup import ROOT, Sample, config_yaml

GOOD = "nightly"


def yaml(seaweedfs, bucket, extra: str = "") -> str:
    return config_yaml(seaweedfs, bucket, grpc_port=9) + extra


# (id, args, config text or None for the standard one, exit code, expected stderr start)
# "{cfg}" in args is the config path; "{bad}" a config written from the case's text.
CASES = [
    # --- config files
    ("config-missing", ["config", "show", "--config", "nope.yaml"], None, 2,
     "error: config file 'nope.yaml' not found"),
    ("config-yaml", ["config", "show", "--config", "{bad}"], "milvus:\n  grpc: [\n", 2, "error: {bad}: not valid YAML at line 3"),
    ("config-version", ["config", "show", "--config", "{bad}"], "configVersion: v3\n", 2,
     "error: configVersion: unknown version 'v3', expected v1 or v2"),
    ("config-port", ["config", "show", "--config", "{bad}"], "configVersion: v2\nmilvus:\n  grpc:\n    port: abc\n", 2,
     "error: milvus.grpc.port: expected a port number 1-65535, got 'abc'"),
    ("config-concurrency", ["config", "show", "--config", "{bad}"],
     "configVersion: v2\nbackup:\n  concurrency:\n    collections: 0\n", 2,
     "error: backup.concurrency.collections: expected a positive integer, got 0"),
    ("config-provider", ["config", "show", "--config", "{bad}"], "configVersion: v2\nmilvus:\n  storage:\n    provider: ftp\n",
     2, "error: milvus.storage.provider: unknown provider 'ftp'"),
    ("config-tls-v1", ["config", "show", "--config", "{bad}"], "configVersion: v2\nmilvus:\n  grpc:\n    tlsMode: 1\n", 2,
     "error: milvus.grpc.tlsMode: '1' is the v1 spelling; in a v2 config write server"),
    ("config-unknown-key", ["config", "show", "--config", "{bad}"], "configVersion: v2\nmilvus:\n  grpcc: 1\n", 2,
     "error: milvus.grpcc: unknown key; did you mean milvus.grpc.port?"),
    ("set-no-equals", ["--set", "milvus.grpc.port", "config", "show"], None, 2, "error: --set 'milvus.grpc.port': expected KEY=VALUE"),
    ("set-unknown", ["--set", "milvus.grpc.prot=1", "config", "show"], None, 2,
     "error: milvus.grpc.prot: unknown key; did you mean milvus.grpc.port?"),
    # --- CLI flags
    ("copy-checksum", ["copy", "memory://a/b", "{tmp}/o", "--checksum", "md5"], None, 2, "error: --checksum: unknown algorithm 'md5'"),
    ("copy-bandwidth", ["copy", "memory://a/b", "{tmp}/o", "--max-bandwidth", "fast"], None, 2,
     "error: --max-bandwidth: invalid rate 'fast'"),
    ("copy-part-size", ["copy", "memory://a/b", "{tmp}/o", "--part-size", "1XB"], None, 2, "error: --part-size: invalid size '1XB'"),
    ("copy-parallel", ["copy", "memory://a/b", "{tmp}/o", "--parallel", "0"], None, 2, "Usage:"),
    ("create-strategy", ["create", "--strategy", "bulk_flush", "--config", "{cfg}"], None, 2,
     "error: unknown strategy 'bulk_flush': use serial_flush, skip_flush, meta_only (bulk_flush needs Milvus 2.6.11 or newer)"),
    ("create-filter", ["create", "--filter", "a.b.c", "--config", "{cfg}"], None, 2, "error: invalid filter 'a.b.c'"),
    ("restore-suffix-rename", ["restore", "-n", GOOD, "-s", "_x", "-r", "a:b", "--config", "{cfg}"], None, 2,
     "error: --suffix and --rename cannot be used together"),
    ("restore-rename-syntax", ["restore", "-n", GOOD, "-r", "nocolon", "--config", "{cfg}"], None, 2,
     "error: invalid --rename 'nocolon': use old:new with coll, db.coll or db.*"),
    ("restore-skip-drop", ["restore", "-n", GOOD, "--skip-create-collection", "--drop-exist-collection", "--config", "{cfg}"],
     None, 2, "error: --skip-create-collection and --drop-exist-collection cannot be used together"),
    ("restore-suffix-chars", ["restore", "-n", GOOD, "-s", "_x/y", "--config", "{cfg}"], None, 2, "error: invalid --suffix '_x/y'"),
    # --- names
    ("name-slash", ["create", "-n", "a/b", "--config", "{cfg}"], None, 2, "error: invalid backup name 'a/b'"),
    ("name-dotdot", ["get", "-n", "..", "--config", "{cfg}"], None, 2, "error: invalid backup name '..'"),
    ("name-space", ["delete", "-n", "has space", "--config", "{cfg}"], None, 2, "error: invalid backup name 'has space'"),
    ("name-unknown-get", ["get", "-n", "nothere", "--config", "{cfg}"], None, 2, "error: no backup named 'nothere'"),
    ("name-unknown-delete", ["delete", "-n", "nothere", "--config", "{cfg}"], None, 2, "error: no backup named 'nothere'"),
    ("name-unknown-restore", ["restore", "-n", "nothere", "--config", "{cfg}"], None, 2, "error: no backup named 'nothere'"),
    ("name-taken", ["create", "-n", GOOD, "--config", "{cfg}"], None, 2, "error: backup 'nightly' already exists at s3://"),
    # --- URLs
    ("url-no-bucket", ["copy", "s3://", "{tmp}/o"], None, 2, "error: invalid location 's3://': name a bucket"),
    ("url-scheme", ["copy", "ftp://x/y", "{tmp}/o"], None, 2, "error: no storage backend for 'ftp://x/y' (scheme 'ftp')"),
    ("url-secret", ["copy", "s3://b/p?secret_access_key=abc", "{tmp}/o"], None, 2,
     "error: s3://b: do not put aws_secret_access_key in the URL"),
    ("url-file-is-file", ["copy", "memory://a/b", "{tmp}/afile"], None, 2, "error: {tmp}/afile is a file, not a directory"),
    ("url-profile", ["copy", "@nope/x", "{tmp}/o"], None, 2, "error: unknown profile 'nope' in '@nope/x'"),
    # --- credentials
    ("cred-wrong", ["copy", "{s3}", "{tmp}/o"], None, 2, "error: s3://{bucket}/backup: the server rejected the credentials"),
    ("cred-unreachable", ["copy", "s3://b/p?endpoint=http://127.0.0.1:9", "{tmp}/o"], None, 2,
     "error: s3://b/p: cannot reach the endpoint"),
    ("milvus-unreachable", ["check", "--config", "{cfg}"], None, 2, "error: cannot reach Milvus at 127.0.0.1:9"),
    # --- storage layout
    ("layout-empty-prefix", ["copy", "memory://empty/x", "{tmp}/o"], None, 2,
     "error: nothing to copy: memory://empty/x has no objects"),
    ("layout-no-backup-bucket", ["list", "--config", "{cfg}", "--set", "backup.storage.bucketName=no-such-bucket"], None, 2,
     "error: the backup bucket s3://no-such-bucket does not exist: check backup.storage.bucketName"),
    # --- meta files
    ("meta-invalid-json", ["get", "-n", "badjson", "--config", "{cfg}"], None, 2, "error: meta/full_meta.json"),
    ("meta-truncated", ["restore", "-n", "truncated", "--config", "{cfg}"], None, 2,
     "error: backup 'truncated' failed the quick check"),
    ("meta-unsafe-id", ["restore", "-n", "unsafe", "--config", "{cfg}"], None, 2, "error: "),
    # --- content read from storage, damaged or hostile (issue #8 items 5 and 8; staged by stage_hostile)
    ("meta-deep", ["get", "-n", "deep", "--config", "{cfg}"], None, 2,
     "error: meta/full_meta.json nests more than 64 levels deep: the backup is damaged; run mbackup verify"),
    ("meta-empty-object", ["get", "-n", "emptyobj", "--config", "{cfg}"], None, 2,
     "error: meta/full_meta.json: id: missing: the backup is damaged; run mbackup verify"),
    ("meta-empty-object-restore", ["restore", "-n", "emptyobj", "--config", "{cfg}"], None, 2,
     "error: backup 'emptyobj' failed the quick check: damaged: meta/full_meta.json: id: missing"),
    ("meta-negative-rows", ["restore", "-n", "negrows", "--config", "{cfg}"], None, 2,
     "error: backup 'negrows' failed the quick check: damaged: meta/full_meta.json: collection_backups[0]."
     "partition_backups[0].segment_backups[0].num_of_rows: out of range (-5), expected a non-negative integer"),
    ("meta-hostile-name", ["get", "-n", "hostile", "--config", "{cfg}"], None, 2,
     "error: meta/full_meta.json: name: expected a backup name (letters, digits and _), got '../../x': "
     "the backup is damaged; run mbackup verify"),
    ("marker-garbage", ["create", "-n", "badmarker", "--config", "{cfg}"], None, 2,
     "error: s3://{bucket}/backup/badmarker/mbackup_in_progress.json is damaged (expected an object, got an array): "
     "delete the incomplete backup with mbackup delete -n badmarker"),
    ("marker-other-request", ["create", "-n", "halfdone", "--filter", "default.other", "--config", "{cfg}"], None, 2,
     "error: backup 'halfdone' is an incomplete create of --filter default.products --strategy serial_flush, not "
     "--filter default.other --strategy serial_flush: run it again with the same options to finish it, or delete it "
     "with mbackup delete -n halfdone"),
    ("delete-not-a-backup", ["delete", "-n", "notabackup", "--config", "{cfg}"], None, 2,
     "error: s3://{bucket}/backup/notabackup is not a backup (no meta files, binlogs or mbackup objects in it): "
     "mbackup delete only deletes backups; check the name and backup.storage.rootPath"),
    ("delete-under-create", ["delete", "-n", "locked", "--config", "{cfg}"], None, 2,
     "error: another mbackup is working on backup 'locked' (pid 4242 on elsewhere running create, alive at "),
]


@pytest.fixture(scope="module")
def stage(seaweedfs, tmp_path_factory):
    """One bucket with a good backup and three damaged ones, shared by every case."""
    name = "bad-input-cases"
    seaweedfs.create_bucket(name)
    s = seaweedfs.store(name)
    Sample(s, GOOD)
    for broken in ("badjson", "truncated", "unsafe"):
        Sample(s, broken)
    bdir = f"{ROOT}/badjson/meta/full_meta.json"
    s.put(bdir, b"{not json")
    full = s.get(f"{ROOT}/truncated/meta/full_meta.json")
    s.put(f"{ROOT}/truncated/meta/full_meta.json", full[: len(full) // 2])
    s.put(f"{ROOT}/unsafe/meta/full_meta.json",
          s.get(f"{ROOT}/unsafe/meta/full_meta.json").replace(b'"collection_id":447000000000000101', b'"collection_id":"../../etc"'))
    stage_hostile(s)
    yield seaweedfs, name, s
    seaweedfs.delete_bucket(name)


def stage_hostile(s) -> None:
    """Backups whose content read from storage is damaged or hostile (issue #8 item 8)."""
    def full_meta(name: str, edit) -> None:
        tree = json.loads(s.get(f"{ROOT}/{name}/meta/full_meta.json"))
        s.put(f"{ROOT}/{name}/meta/full_meta.json", json.dumps(edit(tree)).encode())

    for name in ("deep", "emptyobj", "negrows", "hostile", "halfdone", "badmarker", "locked"):
        Sample(s, name)
    s.put(f"{ROOT}/deep/meta/full_meta.json", b'{"rbac_meta":' + b"[" * 5000 + b"]" * 5000 + b"}")
    s.put(f"{ROOT}/emptyobj/meta/full_meta.json", b"{}")
    full_meta("negrows", lambda t: t["collection_backups"][0]["partition_backups"][0]["segment_backups"][0].update(
        num_of_rows=-5) or t)
    full_meta("hostile", lambda t: t | {"name": "../../x"})
    # Incomplete creates: one of another request, one with a marker that is not a marker.
    for name, marker in (("halfdone", {"id": "0f1e", "name": "halfdone", "request": {
                             "filters": {"default": ["products"]}, "strategy": "serial_flush"}}),
                         ("badmarker", [1, 2])):
        s.delete(f"{ROOT}/{name}/meta/backup_meta.json")
        s.put(f"{ROOT}/{name}/mbackup_in_progress.json", json.dumps(marker).encode())
    # A create at work on "locked" (its heartbeat a minute ahead: alive for this module's cases).
    s.put(f"{ROOT}/locked/mbackup.lock", json.dumps({"token": "a" * 32, "pid": 4242, "host": "elsewhere",
                                                     "heartbeat": time.time() + 60, "command": "create"}).encode())
    s.put(f"{ROOT}/notabackup/notes.txt", b"not a backup")


def snapshot(s, folder: Path) -> tuple:
    objects = tuple((k, size, s.get(k)) for k, size, _ in s.list(""))
    files = tuple(sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*") if p.is_file()))
    return objects, files


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, stage, tmp_path):
    seaweedfs, bucket, s = stage
    _, args, text, code, expected = case
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(yaml(seaweedfs, bucket))
    (tmp_path / "afile").write_text("a file")
    fill = {"{cfg}": str(cfg), "{tmp}": str(tmp_path), "{bucket}": bucket,
            "{s3}": f"s3://{bucket}/{ROOT}?endpoint={seaweedfs.endpoint}"}
    if text is not None:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        fill["{bad}"] = str(bad)

    def sub(x: str) -> str:
        for k, v in fill.items():
            x = x.replace(k, v)
        return x

    env = dict(os.environ, AWS_ACCESS_KEY_ID=seaweedfs.access_key,
               AWS_SECRET_ACCESS_KEY="wrong" if case[0] == "cred-wrong" else seaweedfs.secret_key)
    env.pop("MBACKUP_PLUGINS", None)
    before = snapshot(s, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "milvus_backup", *map(sub, args)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert lines and lines[0].startswith(sub(expected)), proc.stderr
    if expected != "Usage:":
        assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert snapshot(s, tmp_path) == before, "something was created, changed or deleted"
