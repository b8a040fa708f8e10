"""The local filesystem: ``file:///absolute/path`` (a plain path on the command line becomes one). Writes are atomic
(staged then renamed); copies are real copies, never hard links."""

from __future__ import annotations

import os

from ..hookspecs import hookimpl
from ..storage import Location, StorageError, native_store


@hookimpl
def mbackup_storage_schemes() -> list[str]:
    return ["file"]


@hookimpl
def mbackup_open_storage(url: str, options: dict[str, str]) -> Location | None:
    if not url.startswith("file://"):
        return None
    path = url[len("file://"):]
    if not path:
        raise StorageError(f"invalid location {url!r}: give a directory, e.g. file:///var/backups")
    root = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(root) and not os.path.isdir(root):
        raise StorageError(f"{root} is a file, not a directory")
    # The store is rooted at the folder itself so keys stay relative and cannot climb out.
    return Location(native_store(f"file://{root}", f"file://{root}", {}), "", f"file://{root}", "file")
