"""The local filesystem: ``file:///absolute/path`` (a plain path on the command line becomes one). Writes are atomic
(staged then renamed); copies are real copies, never hard links."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ...plugins.hookspecs import hookimpl
from ..location import Location, StorageError, StorageUrl, native_store
from ..registry import StorageTarget

if TYPE_CHECKING:
    from ...config.settings import StorageConfig


@hookimpl
def mbackup_register_storage(register: Callable[..., None]) -> None:
    register("file", open_file, providers=("local",), target=target, open_root=open_root)


def open_file(url: StorageUrl, options: dict[str, str]) -> Location:
    if not url.rest:
        raise StorageError(f"invalid location {url.text!r}: give a directory, e.g. file:///var/backups")
    return _open_folder(url.rest)


def target(st: StorageConfig) -> StorageTarget:
    """A config file's ``local`` storage section: the folder its rootPath names."""
    root = os.path.abspath(st.root_path or ".")
    return StorageTarget(Path(root).as_uri(), {}, "", root, st.provider)


def open_root(target: StorageTarget) -> tuple[Location, str]:
    """The folder of a ``local`` section as a "bucket" of whole keys, as on S3: the store at the
    deepest folder that exists, and the rest of the path as the root path inside it."""
    location = _open_folder(target.root_path)
    root = location.prefix
    url = location.url[: -len(root) - 1] if root else location.url
    return dataclasses.replace(location, prefix="", url=url), root


def _open_folder(path: str) -> Location:
    folder = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise StorageError(f"{folder} is a file, not a directory")
    # Root the store at the deepest folder that exists, so opening a destination creates
    # nothing: the folders appear with the first object written (never on a dry run or
    # a refused copy).
    base = folder
    while not os.path.isdir(base):
        base = os.path.dirname(base)
    prefix = os.path.relpath(folder, base).replace(os.sep, "/") if base != folder else ""
    store = native_store(f"file://{folder}", f"file://{base}", {})
    return Location(store, prefix, f"file://{folder}", "file", bucket_id=f"file://{base}")
