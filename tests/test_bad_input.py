"""Bad input, table-driven (issue #4 §7): for each case, one clear line on stderr, the exit
code, and nothing created, changed or deleted (the bucket's objects and the working folder
are compared before and after). No Milvus is needed: every case is refused before it."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sample_backup import ROOT, Sample, config_yaml

GOOD = "nightly"
LEAK = "Leak7c41e9"  # a secret the cases put where a user might; no output may contain it
S3_FLAG = ["copy", "{s3}", "{tmp}/o"]  # a source with objects: the settings reach the engine
V2 = "configVersion: v2\n"


def laughs(levels: int = 9) -> str:
    """A "billion laughs" YAML file of about 800 bytes: 9**9 values once its aliases expand."""
    lines = [V2.strip(), 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmilvus:\n  password: *l{levels - 1}\n"


def yaml(seaweedfs, bucket, extra: str = "") -> str:
    return config_yaml(seaweedfs, bucket, grpc_port=9) + extra


# (id, args, config text or None for the standard one, exit code, expected stderr start[, env])
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
     "error: backup.concurrency.collections: expected an integer 1-100000, got 0"),
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
    ("copy-parallel", ["copy", "memory://a/b", "{tmp}/o", "--parallel", "0"], None, 2,
     "error: --parallel: expected an integer 1-4096, got '0'"),
    ("create-strategy", ["create", "--strategy", "fast_flush", "--config", "{cfg}"], None, 2,
     "error: unknown strategy 'fast_flush': use auto, serial_flush, bulk_flush, skip_flush, meta_only"),
    ("create-filter", ["create", "--filter", "a.b.c", "--config", "{cfg}"], None, 2, "error: invalid filter 'a.b.c'"),
    ("create-format", ["create", "--format", "parquet", "--config", "{cfg}"], None, 2,
     "error: unknown format 'parquet': use auto, binlog, snapshot"),
    ("restore-suffix-rename", ["restore", "-n", GOOD, "-s", "_x", "-r", "a:b", "--config", "{cfg}"], None, 2,
     "error: --suffix and --rename cannot be used together"),
    ("restore-rename-syntax", ["restore", "-n", GOOD, "-r", "nocolon", "--config", "{cfg}"], None, 2,
     "error: invalid --rename 'nocolon': use old:new with coll, db.coll or db.*"),
    ("restore-skip-drop", ["restore", "-n", GOOD, "--skip-create-collection", "--drop-exist-collection", "--config", "{cfg}"],
     None, 2, "error: --skip-create-collection and --drop-exist-collection cannot be used together"),
    ("restore-suffix-chars", ["restore", "-n", GOOD, "-s", "_x/y", "--config", "{cfg}"], None, 2, "error: invalid --suffix '_x/y'"),
    ("restore-skip-l0-discard", ["restore", "-n", GOOD, "--skip-l0", "--discard-journal", "--config", "{cfg}"], None, 2,
     "error: --discard-journal takes no other flag than -n"),
    # --- numbers and secrets (issue #8 items 9, 10): every number checked where it enters, with its
    # range; no message quotes a secret; no YAML costs more than a config file can need.
    ("num-max-requests-tiny", [*S3_FLAG, "--max-requests", "1e-300"], None, 2,
     "error: --max-requests: expected a number of requests per second 0.01-1000000, or 0 for unlimited, got '1e-300'"),
    ("num-max-requests-nan", [*S3_FLAG, "--max-requests", "nan"], None, 2, "error: --max-requests: expected a number"),
    ("num-max-requests-inf", [*S3_FLAG, "--max-requests", "inf"], None, 2, "error: --max-requests: expected a number"),
    ("num-max-requests-negative", [*S3_FLAG, "--max-requests", "-1"], None, 2, "error: --max-requests: expected a number"),
    ("num-max-bandwidth-huge", [*S3_FLAG, "--max-bandwidth", "99999999999999999999999TiB"], None, 2,
     "error: --max-bandwidth: expected a rate 1KiB/s-1TiB/s, or 0 for unlimited, got '99999999999999999999999TiB'"),
    ("num-max-bandwidth-digits", [*S3_FLAG, "--max-bandwidth", "9" * 400], None, 2,
     "error: --max-bandwidth: expected a rate 1KiB/s-1TiB/s"),
    ("num-max-bandwidth-tiny", [*S3_FLAG, "--max-bandwidth", "1B/s"], None, 2, "error: --max-bandwidth: expected a rate"),
    ("num-part-size-zero", [*S3_FLAG, "--part-size", "0"], None, 2,
     "error: --part-size: expected a size 5MiB-5GiB (S3 part size limits), got '0'"),
    ("num-part-size-huge", [*S3_FLAG, "--part-size", "999999999999TiB"], None, 2, "error: --part-size: expected a size 5MiB-5GiB"),
    ("num-copy-part-size", [*S3_FLAG, "--copy-part-size", "6GiB"], None, 2, "error: --copy-part-size: expected a size 5MiB-5GiB"),
    ("num-multipart-threshold", [*S3_FLAG, "--multipart-threshold", "0"], None, 2,
     "error: --multipart-threshold: expected a size 1MiB-5GiB (one PUT or CopyObject stops at 5 GiB), got '0'"),
    ("num-parallel-u64", [*S3_FLAG, "--parallel", "18446744073709551617"], None, 2,
     "error: --parallel: expected an integer 1-4096, got '18446744073709551617'"),
    ("num-parallel-text", [*S3_FLAG, "--parallel", "many"], None, 2, "error: --parallel: expected an integer 1-4096, got 'many'"),
    ("num-config-parallel", [*S3_FLAG, "--config", "{bad}"], V2 + "mbackup:\n  parallel: 18446744073709551617\n", 2,
     "error: mbackup.parallel: expected an integer 1-4096, got 18446744073709551617 (file {bad})"),
    ("num-config-memory", [*S3_FLAG, "--config", "{bad}"], V2 + "mbackup:\n  memoryBudgetMiB: 99999999999999999999\n", 2,
     "error: mbackup.memoryBudgetMiB: expected an integer 5-1048576 MiB, got 99999999999999999999"),
    ("num-config-copy-threshold", [*S3_FLAG, "--config", "{bad}"],
     V2 + "transfer:\n  multipartCopyThresholdMiB: 18446744073709551617\n", 2,
     "error: transfer.multipartCopyThresholdMiB: expected an integer 1-5120 MiB (one PUT or CopyObject stops at 5 GiB)"),
    ("num-config-rps", [*S3_FLAG, "--config", "{bad}"], V2 + "mbackup:\n  maxRequestsPerSecond: .inf\n", 2,
     "error: mbackup.maxRequestsPerSecond: expected a number of requests per second 0.01-1000000, or 0 for unlimited, got inf"),
    ("num-config-log-days", ["config", "show", "--config", "{bad}"], V2 + "log:\n  file:\n    maxDays: -1\n", 2,
     "error: log.file.maxDays: expected an integer 0-36500, got -1"),
    ("num-config-digits", ["config", "show", "--config", "{bad}"], V2 + "restore:\n  maxSegmentsPerImportJob: '" + "9" * 5000 + "'\n",
     2, "error: restore.maxSegmentsPerImportJob: expected an integer 1-100000, got '9999"),
    ("num-set-rps", ["--set", "mbackup.maxRequestsPerSecond=1e-300", *S3_FLAG], None, 2,
     "error: mbackup.maxRequestsPerSecond: expected a number of requests per second 0.01-1000000, or 0 for unlimited, "
     "got '1e-300' (--set mbackup.maxRequestsPerSecond)"),
    ("num-set-threshold", ["--set", "mbackup.multipartThresholdMiB=18446744073709551617", *S3_FLAG], None, 2,
     "error: mbackup.multipartThresholdMiB: expected an integer 1-5120 MiB (one PUT or CopyObject stops at 5 GiB), "
     "got '18446744073709551617' (--set mbackup.multipartThresholdMiB)"),
    ("num-set-milvus-port", ["--set", "milvus.storage.milvusPort=99999999999999999999", "config", "show"], None, 2,
     "error: milvus.storage.milvusPort: expected a port number 1-65535, or 0 for none, got '99999999999999999999'"),
    ("num-env-v1-parallel", [*S3_FLAG, "--config", "{bad}"], "milvus:\n  address: localhost\n", 2,
     "error: transfer.concurrency: expected an integer 1-4096, got 18446744073709551617 (env BACKUP_PARALLELISM_COPYDATA)",
     {"BACKUP_PARALLELISM_COPYDATA": "18446744073709551617"}),
    ("num-env-v1-collections", ["config", "show", "--config", "{bad}"], "milvus:\n  address: localhost\n", 2,
     "error: backup.concurrency.collections: expected an integer 1-100000, got 999999999 "
     "(env BACKUP_PARALLELISM_BACKUP_COLLECTION)", {"BACKUP_PARALLELISM_BACKUP_COLLECTION": "999999999"}),
    ("secret-undefined-alias", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: *{LEAK}\n", 2,
     "error: {bad}: not valid YAML at line 3, column 13: found undefined alias '****'"),
    ("secret-list", ["config", "show", "--config", "{bad}"],
     V2 + f"milvus:\n  storage:\n    auth:\n      secretAccessKey: [{LEAK}, x]\n", 2,
     "error: milvus.storage.auth.secretAccessKey: expected a single value, got a list"),
    ("secret-mapping", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: {{{LEAK}}}\n", 2,
     "error: milvus.password: expected a single value, got a mapping"),
    ("secret-mapping-value", ["config", "show", "--config", "{bad}"], V2 + f"zillizCloud:\n  apiKey: {{{LEAK}: 1}}\n", 2,
     "error: zillizCloud.apiKey: expected a single value, got a mapping"),
    ("secret-empty-mapping", ["config", "show", "--config", "{bad}"], V2 + "milvus:\n  password: {}\n", 2,
     "error: milvus.password: expected a single value, got a mapping"),
    ("secret-tag", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: !{LEAK}\n", 2,
     "error: {bad}: not valid YAML at line 3, column 13: could not determine a constructor for the tag '****'"),
    ("secret-bad-int", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: !!int {LEAK}\n", 2,
     "error: {bad}: not valid YAML at line 3, column 13: not a valid !!int value"),
    ("secret-bad-bool", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: !!bool {LEAK}\n", 2,
     "error: {bad}: not valid YAML at line 3, column 13: not a valid !!bool value"),
    ("secret-empty-anchor", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: &{LEAK}\n", 2,
     "error: {bad}: not valid YAML at line 3: a value starting with & is read as a YAML anchor"),
    ("secret-duplicate-anchor", ["config", "show", "--config", "{bad}"],
     V2 + f"milvus:\n  password: &{LEAK} a\n  user: &{LEAK} b\n", 2,
     "error: {bad}: not valid YAML at line 4, column 9: second occurrence (found duplicate anchor '****'"),
    ("secret-bad-date", ["config", "show", "--config", "{bad}"], V2 + "milvus:\n  password: 2024-13-45\n", 2,
     "error: {bad}: not valid YAML at line 3, column 13: not a valid !!timestamp value"),
    ("secret-control-char", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  password: {LEAK}\x01\n", 2,
     "error: {bad}: not valid YAML at line 3: unacceptable character #x0001"),
    ("secret-v1-mapping", ["config", "show", "--config", "{bad}"], f"minio:\n  secretAccessKey: {{{LEAK}: 1}}\n", 2,
     "error: minio.secretAccessKey: expected a single value, got a mapping"),
    ("secret-set-space", ["--set", "milvus.password", LEAK, "config", "show"], None, 2,
     "error: --set 'milvus.password': expected KEY=VALUE"),
    ("secret-set-typo", ["--set", f"milvus.pasword={LEAK}", "config", "show"], None, 2,
     "error: milvus.pasword: unknown key; did you mean milvus.password? (--set milvus.pasword)"),
    ("secret-set-syntax", ["--set", f"milvus password={LEAK}", "config", "show"], None, 2,
     "error: --set 'milvus password=...': expected KEY=VALUE"),
    ("yaml-alias-bomb", ["config", "show", "--config", "{bad}"], laughs(), 2,
     "error: {bad}: the YAML expands to more than 100,000 values through its aliases"),
    ("yaml-alias-cycle", ["config", "show", "--config", "{bad}"], "a: &a [*a]\n", 2,
     "error: {bad}: a YAML alias (*name) refers to a value that contains it"),
    ("yaml-deep", ["config", "show", "--config", "{bad}"], "a: " + "[" * 100 + "]" * 100 + "\n", 2,
     "error: {bad}: values nested more than 64 levels deep"),
    ("yaml-deeper-than-python", ["config", "show", "--config", "{bad}"], "a: " + "[" * 5000 + "\n", 2,
     "error: {bad}: values nested too deeply"),
    ("yaml-too-big", ["config", "show", "--config", "{bad}"], "# " + "x" * (300 << 10) + "\n", 2,
     "error: {bad}: larger than 256 KiB"),
    ("url-userinfo-s3", ["copy", f"s3://AK:{LEAK}@b/p", "{tmp}/o"], None, 2,
     "error: s3://***: the URL holds a user:password@ part (not shown)"),
    ("url-userinfo-slash", ["copy", f"s3://AK:{LEAK}/x@b/p", "{tmp}/o"], None, 2, "error: s3://***: the URL holds a user:password@ part"),
    ("url-userinfo-gs", ["copy", f"gs://AK:{LEAK}@b/p", "{tmp}/o"], None, 2, "error: gs://***: the URL holds a user:password@ part"),
    ("url-userinfo-az", ["copy", f"az://AK:{LEAK}@c/p?account=a", "{tmp}/o"], None, 2,
     "error: az://***: the URL holds a user:password@ part"),
    ("url-userinfo-memory", ["copy", f"memory://u:{LEAK}@n/p", "{tmp}/o"], None, 2,
     "error: memory://***: the URL holds a user:password@ part"),
    ("url-userinfo-file", ["copy", "memory://a/b", f"file://u:{LEAK}@/{{tmp}}/o"], None, 2,
     "error: file://***: the URL holds a user:password@ part"),
    ("url-userinfo-unknown-scheme", ["copy", f"ftp://u:{LEAK}@x/y", "{tmp}/o"], None, 2,
     "error: ftp://***: the URL holds a user:password@ part"),
    ("url-secret-gs", ["copy", f"gs://b/p?service_account_key={LEAK}", "{tmp}/o"], None, 2,
     "error: gs://b/p: the URL holds the secret service_account_key (not shown)"),
    ("url-secret-az-key", ["copy", f"az://c/p?account=a&account_key={LEAK}", "{tmp}/o"], None, 2,
     "error: az://c/p: the URL holds the secret account_key (not shown)"),
    ("url-secret-az-sas", ["copy", f"az://c/p?account=a&sas_token={LEAK}", "{tmp}/o"], None, 2,
     "error: az://c/p: the URL holds the secret sas_token (not shown)"),
    ("url-secret-token", ["copy", f"s3://b/p?token={LEAK}", "{tmp}/o"], None, 2, "error: s3://b/p: the URL holds the secret token"),
    ("url-endpoint-userinfo", ["copy", f"s3://b/p?endpoint=http://AK:{LEAK}@127.0.0.1:9", "{tmp}/o"], None, 2,
     "error: s3://b/p: the URL holds a user:password@ part in endpoint (not shown)"),
    ("url-env-endpoint-userinfo", ["copy", "s3://b/p", "{tmp}/o"], None, 2,
     "error: s3://b/p: aws_endpoint holds a user:password@ part (not shown)", {"AWS_ENDPOINT_URL": f"http://AK:{LEAK}@127.0.0.1:9"}),
    ("config-address-userinfo", ["config", "show", "--config", "{bad}"], V2 + f"milvus:\n  storage:\n    address: AK:{LEAK}@host\n", 2,
     "error: milvus.storage.address: holds a user:password@ part (not shown)"),
    ("config-profile-userinfo", ["config", "show", "--config", "{bad}"],
     V2 + f"mbackup:\n  profiles:\n    p: {{url: 's3://AK:{LEAK}@b/p'}}\n", 2,
     "error: mbackup.profiles.p.url: holds a user:password@ part (not shown)"),
    ("config-profile-query-secret", ["config", "show", "--config", "{bad}"],
     V2 + f"mbackup:\n  profiles:\n    p: {{url: 's3://b/p?secret_access_key={LEAK}'}}\n", 2,
     "error: mbackup.profiles.p.url: holds the secret secret_access_key (not shown)"),
    ("grpc-trace", ["check", "--config", "{cfg}"], None, 2,
     "error: GRPC_TRACE=http would make gRPC print the Milvus password", {"GRPC_TRACE": "http", "MILVUS_PASSWORD": LEAK}),
    ("grpc-verbosity-debug", ["check", "--config", "{cfg}"], None, 2,
     "error: GRPC_VERBOSITY=debug would make gRPC print the Milvus password", {"GRPC_VERBOSITY": "debug", "MILVUS_PASSWORD": LEAK}),
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
     "error: s3://b/p: the URL holds the secret secret_access_key (not shown)"),
    ("url-secret-after-hash", ["copy", f"s3://b/run#1?region=x#&secret_access_key={LEAK}", "{tmp}/o"], None, 2,
     "error: s3://b/run#1: the URL holds the secret secret_access_key (not shown)"),
    ("url-file-is-file", ["copy", "memory://a/b", "{tmp}/afile"], None, 2, "error: {tmp}/afile is a file, not a directory"),
    ("url-profile", ["copy", "@nope/x", "{tmp}/o"], None, 2, "error: unknown profile 'nope' in '@nope/x'"),
    # --- credentials
    ("cred-wrong", ["copy", "{s3}", "{tmp}/o"], None, 2, "error: s3://{bucket}/backup: the server rejected the credentials"),
    ("cred-unreachable", ["copy", "s3://b/p?endpoint=http://127.0.0.1:9", "{tmp}/o"], None, 3,
     "error: s3://b/p: cannot reach the endpoint"),
    ("milvus-unreachable", ["check", "--config", "{cfg}"], None, 3, "error: cannot reach Milvus at 127.0.0.1:9"),
    # --- storage layout
    ("layout-empty-prefix", ["copy", "memory://empty/x", "{tmp}/o"], None, 0,  # done, as rclone has it
     "note: nothing to copy: memory://empty/x has no objects"),
    ("layout-no-backup-bucket", ["list", "--config", "{cfg}", "--set", "backup.storage.bucketName=no-such-bucket"], None, 2,
     "error: the backup bucket s3://no-such-bucket does not exist: check backup.storage.bucketName"),
    # --- meta files
    ("meta-invalid-json", ["get", "-n", "badjson", "--config", "{cfg}"], None, 4, "error: meta/full_meta.json"),
    ("meta-truncated", ["restore", "-n", "truncated", "--config", "{cfg}"], None, 4,
     "error: backup 'truncated' failed the quick check"),
    ("meta-unsafe-id", ["restore", "-n", "unsafe", "--config", "{cfg}"], None, 4,
     "error: backup 'unsafe' failed the quick check: damaged: meta/full_meta.json: unsafe insert log path "
     "'files/insert_log/447000000000000101/447000000000000102/5001/100/..': it would build a key outside the backup dir"),
    # --- restore flags
    ("restore-discard-and-restore", ["restore", "-n", GOOD, "--discard-journal", "--suffix", "_x", "--config", "{cfg}"],
     None, 2, "error: --discard-journal takes no other flag than -n: it discards every journal of the backup and "
              "restores nothing"),
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
    # --- content read from storage, damaged or hostile (issue #8 items 5 and 8; staged by stage_hostile)
    ("meta-deep", ["get", "-n", "deep", "--config", "{cfg}"], None, 4,
     "error: meta/full_meta.json nests more than 64 levels deep: the backup is damaged; run mbackup verify"),
    ("meta-empty-object", ["get", "-n", "emptyobj", "--config", "{cfg}"], None, 4,
     "error: meta/full_meta.json: id: missing: the backup is damaged; run mbackup verify"),
    ("meta-empty-object-restore", ["restore", "-n", "emptyobj", "--config", "{cfg}"], None, 4,
     "error: backup 'emptyobj' failed the quick check: damaged: meta/full_meta.json: id: missing"),
    ("meta-negative-rows", ["restore", "-n", "negrows", "--config", "{cfg}"], None, 4,
     "error: backup 'negrows' failed the quick check: damaged: meta/full_meta.json: collection_backups[0]."
     "partition_backups[0].segment_backups[0].num_of_rows: out of range (-5), expected a non-negative integer"),
    ("meta-hostile-name", ["get", "-n", "hostile", "--config", "{cfg}"], None, 4,
     "error: meta/full_meta.json: name: expected a backup name (letters, digits and _), got '../../x': "
     "the backup is damaged; run mbackup verify"),
    ("marker-garbage", ["create", "-n", "badmarker", "--config", "{cfg}"], None, 2,
     "error: s3://{bucket}/backup/badmarker/mbackup_in_progress.json is damaged (expected an object, got an array): "
     "delete the incomplete backup with mbackup delete -n badmarker"),
    ("marker-other-request", ["create", "-n", "halfdone", "--filter", "default.other", "--config", "{cfg}"], None, 2,
     "error: backup 'halfdone' is an incomplete create of --filter default.products --strategy serial_flush, not "
     "--filter default.other --strategy auto: run it again with the same options to finish it, or delete it "
     "with mbackup delete -n halfdone"),
    ("delete-not-a-backup", ["delete", "-n", "notabackup", "--config", "{cfg}"], None, 2,
     "error: s3://{bucket}/backup/notabackup is not a backup (no meta files, binlogs or mbackup objects in it): "
     "mbackup delete only deletes backups; check the name and backup.storage.rootPath"),
    # A lease of an hour: the lock staged with the module stays alive however long the cases
    # before this one take on a loaded machine.
    ("delete-under-create", ["delete", "-n", "locked", "--config", "{cfg}"], None, 3,  # held: retry later
     "error: another mbackup is working on backup 'locked' (pid 4242 on elsewhere running create, alive at ",
     {"MBACKUP_LOCK_LEASE": "3600"}),
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
    # Right types, wrong content: a binlog without log_id whose log_path ends in "..". Its
    # backup key is derived from that last element, so it would leave the backup dir.
    full = s.get(f"{ROOT}/unsafe/meta/full_meta.json")
    damaged = full.replace(b',"log_id":5001100}', b'}').replace(b'/5001/100/5001100"', b'/5001/100/.."')
    assert damaged.count(b'/.."') == 1 and b"5001100" not in damaged
    s.put(f"{ROOT}/unsafe/meta/full_meta.json", damaged)
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
def test_bad_input(case, stage, tmp_path, web_page):
    seaweedfs, bucket, s = stage
    _, args, text, code, expected, *case_env = case
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
               AWS_SECRET_ACCESS_KEY="wrong" if case[0] == "cred-wrong" else seaweedfs.secret_key, **(case_env or [{}])[0])
    env.pop("MBACKUP_PLUGINS", None)
    before = snapshot(s, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "milvus_backup", *map(sub, args)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert lines and lines[0].startswith(sub(expected)), proc.stderr
    if expected != "Usage:":
        assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert LEAK not in proc.stdout + proc.stderr
    assert snapshot(s, tmp_path) == before, "something was created, changed or deleted"
