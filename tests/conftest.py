"""Session fixtures that start a real local stack (see milvus_backup.devstack)."""

from __future__ import annotations

import re
import uuid

import pytest

from milvus_backup.devstack import LocalStack, SeaweedFS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "milvus: starts two real Milvus 2.3.5 servers (slow; deselect with -m 'not milvus')"
    )


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory):
    """One SeaweedFS (S3 on a free port, keys minioadmin/minioadmin) for the whole run."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as s3:
        yield s3


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
