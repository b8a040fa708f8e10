"""What plugins can extend, one hook each. Read top to bottom as a table of contents.

Built-in storage backends, Milvus adapters and lifecycle plugins implement these hooks
exactly as third-party plugins do (see ``milvus_backup.plugins.manager``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ..storage.location import Location

hookspec = pluggy.HookspecMarker("milvus_backup")
hookimpl = pluggy.HookimplMarker("milvus_backup")


# --- Storage backends ---------------------------------------------------------------

@hookspec
def mbackup_register_storage(register: Callable[..., None]) -> None:
    """Register storage backends: ``register(scheme, open)`` for each URL scheme served.

    ``open(url, options) -> Location`` gets the URL split once (a
    :class:`~milvus_backup.storage.StorageUrl`: scheme, bucket, prefix, query) and the options
    of a profile or the config file. A scheme ending in ``+`` (``"fsspec+"``) serves every
    ``fsspec+<protocol>`` URL. A Location's ``store`` is either a native
    ``milvus_backup._engine.Store`` (the engine does the I/O in Rust) or any object with
    ``list(prefix)``, ``get(key)``, ``put(key, data)``, ``head(key)`` and ``delete(key)`` (the
    engine calls it from worker threads).

    A backend a config file can name as ``storage.provider`` also passes
    ``providers=("minio", ...)`` and ``target=fn(section) -> StorageTarget`` (the section as a
    URL and options), and ``open_root=fn(target) -> (Location, root path)`` when its store is
    not opened at a bucket. A scheme or a provider registered by two plugins stops mbackup
    when plugins load, naming both.
    """


@hookspec(warn_on_impl=DeprecationWarning(
    "mbackup_storage_schemes is deprecated: implement mbackup_register_storage(register) instead"))
def mbackup_storage_schemes() -> list[str]:
    """Deprecated: the schemes a plugin implementing ``mbackup_open_storage`` opens, for
    ``mbackup plugins`` and errors."""


@hookspec(firstresult=True, warn_on_impl=DeprecationWarning(
    "mbackup_open_storage is deprecated: implement mbackup_register_storage(register) instead"))
def mbackup_open_storage(url: str, options: dict[str, str]) -> Location | None:
    """Deprecated: open ``url`` and return a Location, or None when the scheme is not this
    plugin's. Asked only for URLs whose scheme no plugin registered."""


# --- Milvus version adapters ---------------------------------------------------------

@hookspec
def mbackup_register_milvus_adapter(register: Callable[..., None]) -> None:
    """Register Milvus adapters: ``register(line, factory)`` for each Milvus line served
    (``"2.3"``: every 2.3.x server). ``factory(version, connection)`` returns the
    :class:`~milvus_backup.milvus.adapters.base.MilvusAdapter` for a server of ``version``
    (``"v2.3.5"``) reached through ``connection``. The adapter owns everything that differs
    between Milvus lines: segment discovery and the binlog layout, flush, GC pause, the
    import API and its quirks, field types. A line registered by two plugins stops mbackup
    when plugins load, naming both."""


# --- Lifecycle -------------------------------------------------------------------------

@hookspec
def mbackup_before_create(context: dict[str, Any]) -> None:
    """Called before a backup starts; ``context`` has the backup name and what it covers."""


@hookspec
def mbackup_after_create(context: dict[str, Any], summary: dict[str, Any]) -> None:
    """Called after a backup completed; ``summary`` is what ``mbackup create --json`` prints."""


@hookspec
def mbackup_before_restore(context: dict[str, Any]) -> None:
    """Called before a restore starts."""


@hookspec
def mbackup_after_restore(context: dict[str, Any], summary: dict[str, Any]) -> None:
    """Called after a restore completed."""


@hookspec
def mbackup_on_failure(context: dict[str, Any], error: str) -> None:
    """Called when a create or restore fails, with the one-line error shown to the user."""
