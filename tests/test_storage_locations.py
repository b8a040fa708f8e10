"""Storage knowledge lives in storage/ (issue #9, part A): every call on a store goes through a
Location method, so a store's error is said once, in one line, whichever command met it; the
backends turn a config file's storage section into their own options and open it at its
bucket; and whether two locations are one bucket is theirs to say. Real SeaweedFS, real
folders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sample_backup import config_yaml


def mbackup(cfg, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MBACKUP_PLUGINS", None)
    extra = ["--config", str(cfg)] if cfg else []
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args, *extra], env=env, capture_output=True,
                          text=True, timeout=120)


# --------------------------------------------------------------------------------------
# One line for a store's error, whichever command met it

# Commands that read storage and never reach Milvus.
COMMANDS = {"list": ["list"], "get": ["get", "-n", "a"], "verify": ["verify", "-n", "a"], "delete": ["delete", "-n", "a"],
            "discard-journal": ["restore", "-n", "a", "--discard-journal"], "gc": ["gc"]}


@pytest.mark.parametrize("command", COMMANDS)
def test_rejected_credentials_are_said_in_one_line_by_every_command(seaweedfs, bucket, tmp_path, command):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket).replace(seaweedfs.secret_key, "not-the-secret"))
    r = mbackup(cfg, *COMMANDS[command])
    assert (r.returncode, r.stdout, r.stderr) == (2, "", (
        f"error: s3://{bucket}: the server rejected the credentials (SignatureDoesNotMatch); check the access key "
        "and secret (or the profile/config they come from)\n"))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_bucket_is_said_in_one_line_by_every_command(seaweedfs, tmp_path, command):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, "no-backup-bucket", milvus_bucket="no-milvus-bucket"))
    r = mbackup(cfg, *COMMANDS[command])
    if command == "discard-journal":  # journals are kept in the Milvus bucket
        line = "s3://no-milvus-bucket: the bucket does not exist; create it or fix the bucket name"
    elif command == "gc":
        line = "s3://no-backup-bucket: the bucket does not exist; create it or fix the bucket name"
    else:
        line = ("the backup bucket s3://no-backup-bucket does not exist: check backup.storage.bucketName "
                "(minio.backupBucketName in a v1 config)")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {line}\n")


@pytest.mark.parametrize("url", ["s3://[bucket/x", "gs://[b", "az://c[/x", "memory://[m"])
def test_a_malformed_url_is_refused_in_one_line(tmp_path, url):
    r = mbackup(None, "copy", url, str(tmp_path / "dst"))
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert r.stderr == (f"error: invalid location {url!r}: use a URL such as s3://bucket/prefix, file:///path or "
                        "memory://name\n")
    assert not (tmp_path / "dst").exists()


def test_a_malformed_endpoint_url_in_the_config_is_a_problem_line(tmp_path):
    cfg = tmp_path / "backup.yaml"
    cfg.write_text("configVersion: v2\n")
    r = mbackup(cfg, "config", "show", "--set", "milvus.management.endpoint=http://[x")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", (
        "error: milvus.management.endpoint: expected an absolute http(s) URL such as http://localhost:9091, got "
        "'http://[x' (--set milvus.management.endpoint)\n"))
