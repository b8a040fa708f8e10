"""Secrets never appear in anything mbackup prints (issue #4 §6).

Runs last (file name): it first drives the commands most likely to leak a secret (config
show, errors from refused credentials and unreachable servers, JSON output), then scans the
output of every subprocess the whole test run captured (tests/conftest.py records them)
for the secrets the suite used.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import CAPTURED, MILVUS_PASSWORD, S3_SECRET

ENV_SECRET = "mbk-env-secret-a61b"
SET_SECRET = "mbk-set-secret-93c4"


def mbackup(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_secrets_never_printed(seaweedfs, bucket, tmp_path):
    config = tmp_path / "backup.yaml"
    config.write_text(f"""configVersion: v2
milvus:
  user: root
  password: {MILVUS_PASSWORD}
  grpc: {{address: 127.0.0.1, port: 9}}
  storage:
    address: 127.0.0.1
    port: {seaweedfs.s3_port}
    bucketName: {bucket}
    auth: {{accessKeyID: {seaweedfs.access_key}, secretAccessKey: {S3_SECRET}}}
mbackup:
  profiles:
    test: {{url: "s3://{bucket}/p", endpoint: "{seaweedfs.endpoint}", access_key_id: {seaweedfs.access_key},
            secret_access_key: {S3_SECRET}}}
""")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=ENV_SECRET,
               MILVUS_PASSWORD=MILVUS_PASSWORD)
    runs = [
        ["config", "show"],
        ["config", "show", "--json"],
        ["--set", f"milvus.storage.auth.secretAccessKey={SET_SECRET}", "config", "show"],
        ["create", "-n", "x"],  # Milvus unreachable: the error names the address, never the password
        ["list"],
        ["copy", "@test", str(tmp_path / "out"), "--json", "--records"],
        ["copy", f"s3://{bucket}/p?endpoint={seaweedfs.endpoint}", str(tmp_path / "o2")],  # env secret is wrong
        ["copy", f"s3://{bucket}/p?endpoint=http://127.0.0.1:9", str(tmp_path / "o3")],
    ]
    for args in runs:
        mbackup(args, env, tmp_path)
    shown = [r for r in CAPTURED if "config" in r[0] and "show" in r[0]]
    assert any("****" in out for _, out, _ in shown), "config show masks secrets"
    # The scan is worth something only if it saw real output.
    assert len(CAPTURED) >= len(runs)
    secrets = [S3_SECRET, MILVUS_PASSWORD, ENV_SECRET, SET_SECRET]
    leaks = [(cmd, s) for cmd, out, err in CAPTURED for s in secrets if s in out or s in err]
    assert not leaks, f"secrets printed by: {leaks[:5]}"
