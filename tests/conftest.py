"""Session fixtures that start a real local stack (see milvus_backup.devstack)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from milvus_backup.devstack import LocalStack, SeaweedFS

# The test stack's S3 secret: distinctive, so tests/test_zz_secrets.py can prove it never
# shows up in anything mbackup printed during the run.
S3_SECRET = "mbk-test-secret-5f3a9c71"
MILVUS_PASSWORD = "mbk-test-password-0d2e"

# (command, stdout, stderr) of every subprocess the tests ran and captured.
CAPTURED: list[tuple[str, str, str]] = []


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="session", autouse=True)
def record_subprocess_output():
    """Keep what every captured subprocess printed, for the secrets scan at the end."""
    real_run, real_communicate = subprocess.run, subprocess.Popen.communicate

    def run(*args, **kwargs):
        result = real_run(*args, **kwargs)
        CAPTURED.append((str(result.args), _text(result.stdout), _text(result.stderr)))
        return result

    def communicate(self, *args, **kwargs):
        out, err = real_communicate(self, *args, **kwargs)
        CAPTURED.append((str(self.args), _text(out), _text(err)))
        return out, err

    subprocess.run, subprocess.Popen.communicate = run, communicate
    yield CAPTURED
    subprocess.run, subprocess.Popen.communicate = real_run, real_communicate


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "milvus: starts two real Milvus 2.3.5 servers (slow; deselect with -m 'not milvus')"
    )


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory):
    """One SeaweedFS (S3 on a free port, access key minioadmin, secret S3_SECRET) for the run."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), secret_key=S3_SECRET) as s3:
        yield s3


@pytest.fixture(scope="session")
def s3env(seaweedfs):
    """Environment for running the CLI: the test S3's credentials the way a user sets them,
    and every installed plugin loaded."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key)
    env.pop("MBACKUP_PLUGINS", None)
    return env


@pytest.fixture(scope="session")
def milvus_clusters(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory):
    """Source and target Milvus clusters on the shared SeaweedFS, started on first use.

    ``.source`` stores into bucket ``milvus-src``, ``.target`` into ``milvus-dst``; both are
    :class:`~milvus_backup.devstack.MilvusCluster`.
    """
    with LocalStack(tmp_path_factory.mktemp("milvus"), clusters=2, s3=seaweedfs) as stack:
        yield stack


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, request: pytest.FixtureRequest):
    """A fresh bucket named after the test, deleted with its objects afterwards.

    Deleting matters: every bucket holds SeaweedFS volumes until it is gone.
    """
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-") or "test"
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    seaweedfs.create_bucket(name)
    yield name
    seaweedfs.delete_bucket(name)


@contextlib.contextmanager
def tmpfs(mount: Path, options: str):
    """A tmpfs mounted at ``mount`` (made if missing) with ``options`` (``size=4m``, ``ro``...),
    unmounted afterwards; the test is skipped where mounting is not allowed."""
    mount.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
