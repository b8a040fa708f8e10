"""An in-process store, ``memory://name``: for tests and dry runs. Gone when the process ends."""

from __future__ import annotations

from collections.abc import Callable

from ...plugins.hookspecs import hookimpl
from ..location import Location, StorageUrl, native_store


@hookimpl
def mbackup_register_storage(register: Callable[..., None]) -> None:
    register("memory", open_memory)


def open_memory(url: StorageUrl, options: dict[str, str]) -> Location:
    display = f"memory://{url.bucket}/{url.prefix}".rstrip("/")
    return Location(native_store(display, f"memory://{url.bucket}", {}), url.prefix, display, "memory",
                    bucket_id=f"memory://{url.bucket}")
