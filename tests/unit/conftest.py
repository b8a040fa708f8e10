"""Keeps tests/unit fast: a test here that asks for a server fixture is refused at collection,
before any server starts."""

from __future__ import annotations

from pathlib import Path

import pytest

# The session fixtures of tests/conftest.py that start a server (or need one).
SERVERS = {"seaweedfs", "s3env", "bucket", "milvus_clusters", "moto", "fake_gcs"}
HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = SERVERS.intersection(getattr(item, "fixturenames", ()))
        if wanted and HERE in Path(item.path).parents:
            raise pytest.UsageError(f"{item.nodeid} asks for {', '.join(sorted(wanted))}: tests/unit starts no "
                                    "server; move it beside the slower tests in tests/")
