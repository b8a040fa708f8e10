"""What plugins can extend, one hook each. Read top to bottom as a table of contents.

Built-in storage backends, Milvus adapters and lifecycle plugins implement these hooks
exactly as third-party plugins do (see ``milvus_backup.plugins.manager``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ..storage.location import Location

hookspec = pluggy.HookspecMarker("milvus_backup")
hookimpl = pluggy.HookimplMarker("milvus_backup")


# --- Storage backends ---------------------------------------------------------------

@hookspec
def mbackup_storage_schemes() -> list[str]:
    """URL schemes this plugin opens (``["s3", "s3a"]``), for ``mbackup plugins`` and errors."""


@hookspec(firstresult=True)
def mbackup_open_storage(url: str, options: dict[str, str]) -> Location | None:
    """Open ``url`` (``scheme://bucket/prefix?query``) with ``options`` (from a profile or the
    config file) and return a Location, or None when the scheme is not this plugin's.

    A Location's ``store`` is either a native ``milvus_backup._engine.Store`` (the engine
    does the I/O in Rust) or any object with ``list(prefix)``, ``get(key)``, ``put(key, data)``,
    ``head(key)`` and ``delete(key)`` (the engine calls it from worker threads).
    """


# --- Milvus version adapters ---------------------------------------------------------

@hookspec(firstresult=True)
def mbackup_milvus_adapter(version: str, connection: Any) -> Any | None:
    """Return the adapter for a Milvus server of ``version`` (``"v2.3.5"``) reached through
    ``connection``, or None when this plugin does not handle that version. The adapter owns
    everything that differs between Milvus lines: segment discovery, flush, GC pause, the
    import API, field types."""


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
