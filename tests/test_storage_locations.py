"""Storage knowledge lives in storage/ (issue #9, part A): every call on a store goes through a
Location method, so a store's error is said once, in one line, whichever command met it; the
backends turn a config file's storage section into their own options and open it at its
bucket; and whether two locations are one bucket is theirs to say. Real SeaweedFS, real
folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from milvus_backup import _engine
from sample_backup import ROOT, Sample, config_yaml


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


# --------------------------------------------------------------------------------------
# A config file's storage section, opened by its backend


@pytest.mark.parametrize("folder", ["my backups", "100%", "données", "a#b"])
def test_a_local_root_path_is_the_folder_as_written(tmp_path, folder):
    """Characters a URL escapes are part of the folder's name, not escapes."""
    root = tmp_path / folder
    root.mkdir()
    sample = Sample(_engine.Store(f"file://{root}"), "nightly")
    cfg = tmp_path / "backup.yaml"
    cfg.write_text("configVersion: v2\n"
                   f"milvus:\n  storage:\n    provider: local\n    rootPath: {json.dumps(str(tmp_path / 'milvus'))}\n"
                   f"backup:\n  storage:\n    provider: local\n    rootPath: {json.dumps(str(root / ROOT))}\n")
    r = mbackup(cfg, "verify", "-n", "nightly")
    assert (r.returncode, r.stdout) == (0, sample.summary() + "\n"), r.stderr
    r = mbackup(cfg, "list")
    assert r.returncode == 0 and r.stdout.splitlines()[2].startswith("nightly  "), r.stdout + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["backup.yaml", folder])  # nothing made elsewhere


# --------------------------------------------------------------------------------------
# One bucket or two: the backends say


@pytest.mark.parametrize("a, b, same", [
    (("s3://b", {"endpoint": "http://127.0.0.1:9000"}), ("s3://b", {"endpoint": "http://127.0.0.1:9000"}), True),
    (("s3://b", {"endpoint": "http://127.0.0.1:9000"}), ("s3://b", {"endpoint": "http://127.0.0.1:9001"}), False),
    (("s3://b", {"endpoint": "http://127.0.0.1:9000"}), ("s3://c", {"endpoint": "http://127.0.0.1:9000"}), False),
    (("s3://b", {"endpoint": "http://127.0.0.1:9000"}), ("s3a://b", {"endpoint": "http://127.0.0.1:9000"}), True),
    (("az://c", {"account": "one"}), ("az://c", {"account": "one"}), True),
    (("az://c", {"account": "one"}), ("az://c", {"account": "two"}), False),
    (("memory://m", {}), ("memory://m", {}), True),
    (("memory://m", {}), ("memory://n", {}), False),
    (("gs://b", {}), ("s3://b", {"endpoint": "http://127.0.0.1:9000"}), False),
    (("az://c", {"account": "one", "endpoint": "http://127.0.0.1:10000/one"}), ("az://c", {"account": "one"}), False),
    (("gs://b", {"endpoint": "http://127.0.0.1:4443"}), ("gs://b", {"endpoint": "http://127.0.0.1:4443"}), True),
    (("gs://b", {"endpoint": "http://127.0.0.1:4443"}), ("gs://b", {}), False),
    (("gs://b", {"endpoint": "http://127.0.0.1:4443"}), ("gs://b", {"endpoint": "http://127.0.0.1:4444"}), False),
], ids=["s3", "s3-other-server", "s3-other-bucket", "s3a", "azure", "azure-other-account", "memory", "memory-other",
        "gcs-s3", "azure-other-endpoint", "gcs", "gcs-emulator-google", "gcs-other-server"])
def test_two_locations_are_one_bucket_only_on_one_server(a, b, same, monkeypatch):
    from milvus_backup.backup.catalog import Stores
    from milvus_backup.plugins.manager import storage_backends

    for var in ("AWS_ENDPOINT_URL", "AZURE_STORAGE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    first, second = (storage_backends().open(url, options) for url, options in (a, b))
    assert Stores(first, "files", second, "backup").same_bucket is same
    assert Stores(second, "files", first, "backup").same_bucket is same


def test_local_folders_are_one_bucket_when_one_store_holds_both(tmp_path):
    from milvus_backup.backup.catalog import Stores
    from milvus_backup.plugins.manager import storage_backends

    (tmp_path / "milvus").mkdir()
    (tmp_path / "other").mkdir()
    opened = [storage_backends().open(str(tmp_path / name)) for name in ("milvus", "milvus", "other")]
    assert Stores(opened[0], "", opened[1], "").same_bucket is True
    assert Stores(opened[0], "", opened[2], "").same_bucket is False
