"""An in-process store, ``memory://name``: for tests and dry runs. Gone when the process ends."""

from __future__ import annotations

from ...plugins.hookspecs import hookimpl
from ..location import Location, native_store, split_url


@hookimpl
def mbackup_storage_schemes() -> list[str]:
    return ["memory"]


@hookimpl
def mbackup_open_storage(url: str, options: dict[str, str]) -> Location | None:
    scheme, name, prefix, _ = split_url(url)
    if scheme != "memory":
        return None
    display = f"memory://{name}/{prefix}".rstrip("/")
    return Location(native_store(display, f"memory://{name}", {}), prefix, display, "memory")
