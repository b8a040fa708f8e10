"""Storage that never follows a link out of its root, lists any key, names what is not S3, and
cleans its own leftovers (issue #8, items 7, 11, 12). Real SeaweedFS and real files; what the
user sees: files outside the root byte for byte unchanged, the messages, the exit codes."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import tmpfs
from milvus_backup import _engine
from sample_backup import ROOT, Sample, config_yaml

KIB, MIB = 1024, 1024 * 1024


def mbackup(env, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def s3url(seaweedfs, bucket: str, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}?endpoint={seaweedfs.endpoint}"


def errors(proc) -> list[str]:
    """stderr without warnings; never a traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]


def state(folder: Path) -> dict[str, object]:
    """Every entry under a folder: file bytes, link targets, folders."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = ("link", os.readlink(p)) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


def uploads(seaweedfs, bucket: str, prefix: str = "") -> list[str]:
    """Keys of the incomplete multipart uploads in a bucket (ListMultipartUploads)."""
    import xml.etree.ElementTree as ET

    r = seaweedfs.request("GET", bucket, query={"uploads": "", "prefix": prefix})
    assert r.status == 200, r.body
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    return [u.findtext(f"{ns}Key") for u in ET.fromstring(r.body).iter(f"{ns}Upload")]


# --- 7. links: never followed out of the root, on any command ---------------------------------

@pytest.fixture
def outside(tmp_path):
    """A folder that is no one's backup: nothing may ever read, write or delete in it."""
    folder = tmp_path / "outside"
    (folder / "deep").mkdir(parents=True)
    (folder / "secret.bin").write_bytes(os.urandom(3000))
    (folder / "deep" / "data.bin").write_bytes(os.urandom(500))
    return folder


@pytest.fixture
def local_backups(seaweedfs, bucket, tmp_path, outside, s3env):
    """Local backup storage at <tmp>/backup holding a real backup `good` with links inside it
    pointing outside, and a linked "backup" folder `evil` whose target looks like a backup."""
    good = Sample(_engine.Store(f"file://{tmp_path}"), "good")
    bdir = tmp_path / ROOT / "good"
    os.symlink(outside, bdir / "binlogs" / "linked_dir")
    os.symlink(outside / "secret.bin", bdir / "meta" / "linked_file.json")
    # The target of `evil`: a complete backup somewhere else, which must stay whole.
    Sample(_engine.Store(f"file://{outside}"), "evil")
    os.symlink(outside / ROOT / "evil", tmp_path / ROOT / "evil")
    cfg = tmp_path / "local.yaml"
    text = config_yaml(seaweedfs, bucket)
    cfg.write_text(text[:text.index("backup:\n")] + f"backup:\n  storage:\n    provider: local\n    rootPath: {tmp_path / ROOT}\n")
    return cfg, good


# (id, args, exit code, stderr must contain, stdout must contain)
LINK_CASES = [
    ("list", ["list"], 0, None, "good"),
    ("get", ["get", "-n", "good"], 0, None, "backup good"),
    ("verify", ["verify", "-n", "good", "--deep"], 0, None, ": 0 problems"),
    ("get-linked-backup", ["get", "-n", "evil"], 2, "crosses the symbolic link evil", None),
    ("verify-linked-backup", ["verify", "-n", "evil"], 2, "no backup named 'evil'", None),
    ("create-linked-backup", ["create", "-n", "evil"], 2, "crosses the symbolic link evil", None),
    ("delete-linked-backup", ["delete", "-n", "evil"], 2, "no backup named 'evil'", None),
    ("delete", ["delete", "-n", "good"], 0, None, "delete backup done: good"),
]


@pytest.mark.parametrize("case", LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_local_backup_commands_never_follow_a_link(case, local_backups, outside, tmp_path, s3env):
    cfg, _good = local_backups
    _, args, code, err, out = case
    before = state(outside)
    r = mbackup(s3env, *args, "--config", str(cfg))
    assert r.returncode == code, r.stderr + r.stdout
    lines = errors(r)
    if err:
        assert len(lines) == 1 and err in lines[0], r.stderr
    else:
        assert not lines, r.stderr
    if out:
        assert out in r.stdout, r.stdout
    assert "evil" not in r.stdout  # a linked folder is never listed as a backup
    assert state(outside) == before  # nothing outside the root read-modified, written or deleted
    if args[0] == "delete" and code == 0:
        left = state(tmp_path / ROOT / "good")
        assert {k for k, v in left.items() if v != "dir"} == {"binlogs/linked_dir", "meta/linked_file.json"}
    if code == 0:  # every listing of the tree met a link and said so, once
        assert "mbackup never follows links" in r.stderr, r.stderr
    if args[0] == "list":
        assert f"warning: file://{tmp_path / ROOT}: skipped 2 symbolic links or special files (evil, " \
               "good/meta/linked_file.json): mbackup never follows links" in r.stderr, r.stderr


def test_copy_from_a_folder_skips_links_and_says_so(tmp_path, outside, s3env):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "ok.bin").write_bytes(b"ok")
    (src / "sub" / "also.bin").write_bytes(b"also")
    os.symlink(outside, src / "sub" / "linked_dir")
    os.symlink(outside / "secret.bin", src / "linked_file")
    os.mkfifo(src / "fifo")  # reading it would hang
    before = state(outside)
    r = mbackup(s3env, "copy", str(src), str(dst), timeout=60)
    assert r.returncode == 0, r.stderr
    assert state(dst) == {"ok.bin": b"ok", "sub": "dir", "sub/also.bin": b"also"}
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: file://{src}: skipped 3 symbolic links or special files (fifo, linked_file, "
                        "sub/linked_dir): mbackup never follows links; copy what they point to by naming it directly"]
    assert state(outside) == before


def test_copy_into_a_linked_subfolder_writes_nothing_through_it(tmp_path, outside, s3env):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for rel in ("top.bin", "deep/one.bin", "deep/two.bin"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode())
    dst.mkdir()
    os.symlink(outside / "deep", dst / "deep")  # a destination subfolder that leads outside
    before = state(outside)
    r = mbackup(s3env, "copy", str(src), str(dst), timeout=60)
    assert r.returncode == 1, r.stderr
    assert errors(r) == [f"error: file://{dst}: the path crosses a symbolic link, which mbackup never follows: "
                         "2 of 3 objects not copied (e.g. deep/one.bin, deep/two.bin); remove the link, or copy the "
                         "folder it points to by naming it"], r.stderr
    assert state(outside) == before
    assert (dst / "top.bin").read_bytes() == b"top.bin"


# --- 12. odd keys: listed as spelled, failing alone, skipped by --exclude ----------------------

ODD = {"odd/ok.bin": b"fine", "odd/tab\there": b"tab", "odd/new\nline": b"newline", "odd/ctl\x01z": b"control"}


@pytest.fixture
def odd_bucket(seaweedfs, bucket):
    for key, data in ODD.items():
        r = seaweedfs.request("PUT", bucket, key, body=data)
        assert r.status == 200, (key, r.status)
    return bucket


def test_odd_keys_fail_alone_and_exclude_skips_them(seaweedfs, s3env, odd_bucket, more_bucket, tmp_path):
    # Server-side, every key is copied exactly as spelled: the listing itself never fails.
    r = mbackup(s3env, "copy", s3url(seaweedfs, odd_bucket, "odd"), s3url(seaweedfs, more_bucket, "copy"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["strategies"] == {"server_copy": len(ODD)}
    copied = {k: seaweedfs.request("GET", more_bucket, k).body for k, _, _ in seaweedfs.store(more_bucket).list("copy")}
    assert copied == {k.replace("odd/", "copy/"): v for k, v in ODD.items()}

    # Into a folder the bytes go through object_store, which cannot address them: only they fail.
    folder = tmp_path / "out"
    r = mbackup(s3env, "copy", s3url(seaweedfs, odd_bucket, "odd"), str(folder))
    assert r.returncode == 1, r.stderr
    assert errors(r) == [f"error: file://{folder}: object keys that cannot be addressed: 3 of 4 objects not copied "
                         "(e.g. 'ctl\\x01z', 'new\\nline', 'tab\\there'); --exclude skips them"], r.stderr
    assert state(folder) == {"ok.bin": b"fine"}

    r = mbackup(s3env, "copy", s3url(seaweedfs, odd_bucket, "odd"), str(folder / "again"), "--exclude", "tab*",
                "--exclude", "new*", "--exclude", "ctl*", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["objects_copied"] == 1
    assert state(folder / "again") == {"ok.bin": b"fine"}


def test_one_odd_key_says_which_and_how_to_skip_it(seaweedfs, s3env, bucket, tmp_path):
    seaweedfs.request("PUT", bucket, "one/good", body=b"g")
    seaweedfs.request("PUT", bucket, "one/bad\tkey", body=b"b")
    r = mbackup(s3env, "copy", s3url(seaweedfs, bucket, "one"), str(tmp_path / "o"))
    assert r.returncode == 1
    line, = errors(r)
    # The engine reads it with its own S3 GET; the folder cannot hold it.
    assert line == 'failed: \'bad\\tkey\': object key "o/bad\\tkey" cannot be addressed (a control character); ' \
                   "--exclude skips it", line


class _OddListing(http.server.BaseHTTPRequestHandler):
    """A stand-in for an S3 server holding keys SeaweedFS cannot hold (it stores `a//b` as `a/b`
    and refuses `./x` with 400): a listing of them, and GETs of each at its exact address. A fake only
    because no local S3 server can produce these keys; signatures are not checked."""

    KEYS = {"src/ok": b"fine", "src/a//b": b"empty segment", "src/./x": b"dot segment"}

    def do_GET(self):
        if "list-type=2" in self.path:
            contents = "".join(f"<Contents><Key>{k}</Key><Size>{len(v)}</Size><ETag>&quot;e&quot;</ETag>"
                               "<LastModified>2026-11-30T12:00:00Z</LastModified></Contents>"
                               for k, v in sorted(self.KEYS.items()))
            body = (f"<ListBucketResult><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>").encode()
            self._answer(200, body, "application/xml")
        elif self.path.startswith("/fake/") and self.path[len("/fake/"):] in self.KEYS:
            self._answer(200, self.KEYS[self.path[len("/fake/"):]], "application/octet-stream")
        else:  # anything else would be a key addressed wrongly
            self._answer(404, b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>", "application/xml")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"e"')
        self.send_header("Last-Modified", "Mon, 30 Nov 2026 12:00:00 GMT")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_keys_no_seaweedfs_can_hold_fail_alone(s3env, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OddListing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = f"s3://fake/src?endpoint=http://127.0.0.1:{server.server_address[1]}"
        r = mbackup(s3env, "copy", src, str(tmp_path / "out"), timeout=60)
        assert r.returncode == 1, r.stderr
        assert errors(r) == [f"error: file://{tmp_path / 'out'}: object keys that cannot be addressed: 2 of 3 objects "
                             "not copied (e.g. ./x, a//b); --exclude skips them"], r.stderr
        assert state(tmp_path / "out") == {"ok": b"fine"}  # nothing written under another key
        r = mbackup(s3env, "copy", src, str(tmp_path / "again"), "--exclude", "./*", "--exclude", "a//*", timeout=60)
        assert r.returncode == 0, r.stderr
        assert state(tmp_path / "again") == {"ok": b"fine"}
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def more_bucket(seaweedfs, bucket):
    name = f"{bucket}-more"
    seaweedfs.create_bucket(name)
    yield name
    seaweedfs.delete_bucket(name)


# --- 11. leftovers: a re-run cleans its own, gc cleans old ones ------------------------------

def _start(env, *args):
    return subprocess.Popen([sys.executable, "-m", "milvus_backup", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc, ready, what: str, timeout: float = 90) -> None:
    try:
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None and ready(), f"the copy ended before {what}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)


MULTIPART = ["--multipart-threshold", "5MiB", "--part-size", "5MiB", "-q"]
# The two ways an object streams into a folder: ranged GETs written as parts, and (over 1 MiB,
# under the multipart threshold) one GET written a megabyte at a time as it arrives.
INTO_A_FOLDER = {"ranged-parts": (24 * MIB, MULTIPART), "one-get": (12 * MIB, ["-q"])}


@pytest.mark.parametrize("how", INTO_A_FOLDER)
def test_killed_copy_into_a_folder_rerun_leaves_no_staging_file(seaweedfs, s3env, bucket, tmp_path, how):
    size, flags = INTO_A_FOLDER[how]
    big = os.urandom(size)
    seaweedfs.store(bucket).put("src/big.bin", big)
    folder = tmp_path / "out"
    proc = _start(s3env, "copy", s3url(seaweedfs, bucket, "src"), str(folder), *flags, "--max-bandwidth", "4MiB/s")
    staging = folder / "big.bin#1"
    _kill_when(proc, lambda: staging.exists() and staging.stat().st_size > 0, "its staging file appeared")
    assert staging.exists()  # SIGKILL: nothing could clean up
    assert not (folder / "big.bin").exists()  # and nothing half-written under the object's name

    r = mbackup(s3env, "copy", s3url(seaweedfs, bucket, "src"), str(folder), *flags)
    assert r.returncode == 0, r.stderr
    assert state(folder) == {"big.bin": big}


def test_killed_copy_to_s3_rerun_leaves_no_incomplete_upload(seaweedfs, s3env, bucket, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    big = os.urandom(24 * MIB)
    (folder / "big.bin").write_bytes(big)
    dst = s3url(seaweedfs, bucket, "dst")
    proc = _start(s3env, "copy", str(folder), dst, *MULTIPART, "--max-bandwidth", "4MiB/s")
    _kill_when(proc, lambda: uploads(seaweedfs, bucket, "dst/") != [], "its multipart upload started")
    assert uploads(seaweedfs, bucket, "dst/") == ["dst/big.bin"]

    r = mbackup(s3env, "copy", str(folder), dst, *MULTIPART)
    assert r.returncode == 0, r.stderr
    assert uploads(seaweedfs, bucket) == []
    assert seaweedfs.store(bucket).get("dst/big.bin") == big


def four_mb_collection(client, stem: str, seed: int) -> str:
    """A new flushed collection of 8,000 rows of 128-dim vectors (4 MB of binlogs): its name.
    The caller drops it."""
    import random

    from pymilvus import DataType, MilvusClient

    coll = f"{stem}_{os.getpid()}_{int(time.time())}"
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=128)
    client.create_collection(coll, schema=schema)
    rng = random.Random(seed)
    client.insert(coll, [{"id": i, "vec": [rng.random() for _ in range(128)]} for i in range(8000)])
    client.flush(coll)
    return coll


@pytest.mark.milvus
def test_killed_create_rerun_leaves_no_incomplete_upload(milvus_clusters, seaweedfs, s3env, bucket, tmp_path):
    """A create killed while a binlog is being copied in parts (UploadPartCopy, with the
    multipart copy threshold lowered to 1 MiB and few requests a second): the resumed create
    leaves no incomplete upload behind."""
    from pymilvus import MilvusClient

    from mbackup_dev.devstack import backup_config

    source = milvus_clusters.source
    client = MilvusClient(uri=source.uri)
    coll = four_mb_collection(client, "big", 7)
    try:
        cfg = tmp_path / "backup.yaml"
        cfg.write_text(backup_config(source, backup_bucket=bucket, extra="transfer:\n  multipartCopyThresholdMiB: 1\n"))
        name = "killed_in_parts"
        proc = _start(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", str(cfg),
                      "--set", "mbackup.maxRequestsPerSecond=2")
        _kill_when(proc, lambda: uploads(seaweedfs, bucket, f"backup/{name}/") != [], "a multipart copy started",
                   timeout=180)
        assert uploads(seaweedfs, bucket, f"backup/{name}/")

        r = mbackup(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", str(cfg), timeout=300)
        assert r.returncode == 0, r.stderr
        assert uploads(seaweedfs, bucket) == []
        r = mbackup(s3env, "verify", "-n", name, "--deep", "--config", str(cfg))
        assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith(": 0 problems"), r.stdout + r.stderr
    finally:
        client.drop_collection(coll)
        client.close()


def _upload(seaweedfs, bucket: str, key: str) -> None:
    r = seaweedfs.request("POST", bucket, key, query={"uploads": ""})
    assert r.status == 200, r.body


def test_gc_removes_old_leftovers_and_keeps_young_and_locked_ones(seaweedfs, s3env, bucket, tmp_path):
    """Old and young leftovers made for real (multipart uploads started, staging files and
    objects written); "old" is 25 s with --grace 18s (two runs of gc take a few seconds each), since S3 cannot backdate an upload."""
    import socket

    s = seaweedfs.store(bucket)
    backup = Sample(s, "complete")
    complete = {k: s.get(k) for k, _, _ in s.list(f"{ROOT}/complete")}
    # A live holder: this process, on this host, heard from now (well within the lease).
    s.put(f"{ROOT}/locked/mbackup.lock", json.dumps(
        {"token": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(), "heartbeat": time.time(),
         "command": "create"}).encode())
    _upload(seaweedfs, bucket, f"{ROOT}/dead/binlogs/x")  # a killed create, no lock: old
    _upload(seaweedfs, bucket, f"{ROOT}/locked/binlogs/y")  # under a live lock: kept
    _upload(seaweedfs, bucket, f"{ROOT}/complete/binlogs/z")
    s.put("mbackup-restore-aaa/backup/x/binlogs/1", b"staged, no journal: old")
    s.put("mbackup-restore-journal/old-1.json", json.dumps({"collections": {"default.c": {"staging": "mbackup-restore-aaa"}}}).encode())
    s.put("mbackup-restore-bbb/backup/x/binlogs/1", b"staged, named by a young journal")
    s.put("mbackup-restore-zzz/meta/backup_meta.json", b"{}")  # a backup of that name at the root: not staging
    time.sleep(25)
    s.put("mbackup-restore-journal/young-2.json", json.dumps({"collections": {"default.c": {"staging": "mbackup-restore-bbb"}}}).encode())
    s.put("mbackup-restore-ccc/backup/x/binlogs/1", b"staged just now")
    _upload(seaweedfs, bucket, f"{ROOT}/dead/binlogs/young")
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    old = {f"incomplete upload s3://{bucket}/{ROOT}/dead/binlogs/x", f"incomplete upload s3://{bucket}/{ROOT}/complete/binlogs/z",
           f"restore journal s3://{bucket}/mbackup-restore-journal/old-1.json", f"restore staging s3://{bucket}/mbackup-restore-aaa"}
    listing = sorted(k for k, _, _ in s.list(""))

    r = mbackup(s3env, "gc", "--dry-run", "--grace", "18s", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert {line.split(" (")[0] for line in lines[:-1]} == {f"would remove {x}" for x in old}, r.stdout
    assert lines[-1] == "gc: would remove 4 leftovers older than 18s"
    assert sorted(k for k, _, _ in s.list("")) == listing and len(uploads(seaweedfs, bucket)) == 4

    r = mbackup(s3env, "gc", "--grace", "18s", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert {line.split(" (")[0] for line in r.stdout.splitlines()[:-1]} == {f"removed {x}" for x in old}
    assert sorted(uploads(seaweedfs, bucket)) == [f"{ROOT}/dead/binlogs/young", f"{ROOT}/locked/binlogs/y"]
    left = sorted(k for k, _, _ in s.list(""))
    assert left == sorted(set(listing) - {"mbackup-restore-aaa/backup/x/binlogs/1", "mbackup-restore-journal/old-1.json"})
    assert {k: s.get(k) for k, _, _ in s.list(f"{ROOT}/complete")} == complete  # a backup's objects: never
    assert backup.name == "complete"


def test_gc_of_a_folder_removes_old_staging_files_only(s3env, tmp_path):
    folder = tmp_path / "dest"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "obj").write_bytes(b"object")
    (folder / "a" / "obj#1").write_bytes(b"old staging")
    (folder / "a" / "new#1").write_bytes(b"young staging")
    (folder / "keep#x").write_bytes(b"not a staging name")
    day = time.time() - 2 * 86400
    os.utime(folder / "a" / "obj#1", (day, day))
    r = mbackup(s3env, "gc", str(folder), "--grace", "24h")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(f"removed staging file file://{folder}/a/obj (48h00m old, 11 B)")
    assert sorted(state(folder)) == ["a", "a/new#1", "a/obj", "keep#x"]
    # A store a plugin implements in Python has no leftovers mbackup can see: nothing to do.
    r = mbackup(s3env, "gc", f"fsspec+file://{folder}")
    assert (r.returncode, r.stdout) == (0, "gc: removed 0 leftovers older than 24h\n"), r.stderr


# --- 12. one cause, said once -------------------------------------------------------------------

@pytest.fixture
def read_only_folder(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        yield mount


def test_a_read_only_destination_is_said_once(seaweedfs, s3env, bucket, read_only_folder):
    s = seaweedfs.store(bucket)
    for i in range(30):
        s.put(f"ro/{i:02d}", b"x" * 100)
    r = mbackup(s3env, "copy", s3url(seaweedfs, bucket, "ro"), str(read_only_folder))
    assert r.returncode == 1
    assert errors(r) == [f"error: file://{read_only_folder}: the destination is read-only (read-only file system): "
                         "30 of 30 objects not copied (e.g. 00, 01, 02, ...); copy to a writable folder, or remount "
                         "it read-write, then run again"], r.stderr
    assert "failed 30" in r.stdout


def test_gc_names_restore_locks_as_locks_and_never_offers_a_held_one(seaweedfs, s3env, bucket, tmp_path):
    """A restore that died leaves its journal and its lock: both old leftovers, named as what they
    are. A restore running now (its lock held by a live process on this host) keeps its lock,
    its journal and the staging the journal names, whatever --grace says."""
    import socket

    s = seaweedfs.store(bucket)
    journals = "mbackup-restore-journal/b"

    def lock(pid: int, heartbeat: float) -> bytes:
        return json.dumps({"token": uuid.uuid4().hex, "pid": pid, "host": socket.gethostname(),
                           "heartbeat": heartbeat, "command": "restore -n b"}).encode()

    s.put(f"{journals}/dead.lock", lock(os.getpid(), time.time() - 3600))  # silent for an hour: stale
    s.put(f"{journals}/dead.json", json.dumps({"collections": {}}).encode())
    s.put(f"{journals}/live.lock", lock(os.getpid(), time.time()))  # this process, alive: held
    s.put(f"{journals}/live.json", json.dumps({"collections": {"default.c": {"staging": "mbackup-restore-live"}}}).encode())
    s.put("mbackup-restore-live/backup/x/binlogs/1", b"staged by the running restore")
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    time.sleep(1.5)

    r = mbackup(s3env, "gc", "--dry-run", "--grace", "1s", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert sorted(line.split(" (")[0] for line in r.stdout.splitlines()) == [
        "gc: would remove 2 leftovers older than 1s",
        f"would remove restore journal s3://{bucket}/{journals}/dead.json",
        f"would remove restore lock s3://{bucket}/{journals}/dead.lock"], r.stdout
    r = mbackup(s3env, "gc", "--grace", "1s", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert sorted(k for k, _, _ in s.list("")) == [
        f"{journals}/live.json", f"{journals}/live.lock", "mbackup-restore-live/backup/x/binlogs/1"]
