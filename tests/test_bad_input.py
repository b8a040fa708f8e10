"""Bad input, table-driven (issue #4 §7): for each case, one clear line on stderr, the exit
code, and nothing created, changed or deleted (the bucket's objects and the working folder
are compared before and after). No Milvus is needed: every case is refused before it."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
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
    # --- storage that is not what it claims, and gc's flags (issue #8, items 11, 12): "{web}" is
    # the port of a web server that answers 200 and a page to anything (it used to list as an
    # empty bucket, and make create say the backup "already exists")
    ("web-copy", ["copy", "s3://web/files?endpoint=http://127.0.0.1:{web}", "{tmp}/o"], None, 2,
     "error: s3://web/files: http://127.0.0.1:{web}/web does not answer like an S3 server (HTTP 200 with text/html"),
    ("web-list", ["list", "--config", "{cfg}", "--set", "milvus.storage.port={web}"], None, 2,
     "error: s3://{bucket}: http://127.0.0.1:{web}/{bucket} does not answer like an S3 server (HTTP 200 with text/html"),
    ("web-create", ["create", "-n", "fresh", "--config", "{cfg}", "--set", "milvus.storage.port={web}"], None, 2,
     "error: s3://{bucket}: http://127.0.0.1:{web}/{bucket} does not answer like an S3 server (HTTP 200 with text/html"),
    ("web-verify", ["verify", "-n", GOOD, "--config", "{cfg}", "--set", "milvus.storage.port={web}"], None, 2,
     "error: s3://{bucket}: http://127.0.0.1:{web}/{bucket} does not answer like an S3 server (HTTP 200 with text/html"),
    ("gc-grace", ["gc", "--grace", "soon", "--config", "{cfg}"], None, 2,
     "error: --grace: invalid duration 'soon': use a number with s, m, h or d"),
]


class _WebPage(http.server.BaseHTTPRequestHandler):
    def _page(self, body: bool) -> None:
        page = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><p>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        if body:
            self.wfile.write(page)

    def do_GET(self):
        self._page(True)

    def do_HEAD(self):
        self._page(False)

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._page(True)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web_page():
    """A web server on a free port: 200 and an HTML page to any request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


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
    yield seaweedfs, name, s
    seaweedfs.delete_bucket(name)


def snapshot(s, folder: Path) -> tuple:
    objects = tuple((k, size, s.get(k)) for k, size, _ in s.list(""))
    files = tuple(sorted((str(p.relative_to(folder)), p.read_bytes()) for p in folder.rglob("*") if p.is_file()))
    return objects, files


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, stage, tmp_path, web_page):
    seaweedfs, bucket, s = stage
    _, args, text, code, expected = case
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(yaml(seaweedfs, bucket))
    (tmp_path / "afile").write_text("a file")
    fill = {"{cfg}": str(cfg), "{tmp}": str(tmp_path), "{bucket}": bucket, "{web}": str(web_page),
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
