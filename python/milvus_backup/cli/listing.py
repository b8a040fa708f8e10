"""What ``mbackup list`` shows: one row per backup, its JSON record and the table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..format import untrusted
from ..units import format_bytes, format_time

if TYPE_CHECKING:
    from ..backup.catalog import BackupEntry
    from ..backup.sharing import Footprint

# --sort: newest first and largest first, as ls -t and ls -S; names A to Z. --reverse turns it.
SORTS = ("time", "name", "size")
COLUMNS = ("NAME", "TIME", "SIZE", "SHARED", "STATE", "MILVUS", "COLLECTIONS")


def record(e: BackupEntry, footprint: Footprint | None = None) -> dict[str, Any]:
    """A backup as ``list --json`` prints it. ``time`` is UTC text, ``backup_timestamp`` the
    same instant in ms since the epoch (the Go tool's unit); both null when unknown.
    ``own_bytes``: what it holds alone; ``shared_bytes``: what other backups hold too (null
    when unknown: an incomplete or damaged backup)."""
    info, taken = e.info, e.taken
    complete = e.complete and info is not None
    return {
        "name": e.name, "complete": complete, "error": e.error or None,
        "size": info.size if info else None, "milvus_version": info.milvus_version if info else None,
        "collections": [f"{c.db_name}.{c.collection_name}" for c in info.collection_backups] if info else [],
        "time": None if taken is None else format_time(taken),
        "backup_timestamp": None if taken is None else round(taken * 1000),
        "state": "damaged" if e.error else "complete" if complete else "incomplete",
        "own_bytes": footprint.own if footprint else None, "shared_bytes": footprint.shared if footprint else None,
    }


def ordered(rows: list[dict[str, Any]], sort: str, reverse: bool = False) -> list[dict[str, Any]]:
    """Rows in ``sort`` order; rows without a time (or size) go last either way."""
    if sort == "name":
        return sorted(rows, key=lambda r: r["name"], reverse=reverse)
    field = "backup_timestamp" if sort == "time" else "size"
    known = sorted((r for r in rows if r[field] is not None), key=lambda r: (r[field], r["name"]), reverse=not reverse)
    return known + sorted((r for r in rows if r[field] is None), key=lambda r: r["name"])


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as aligned columns under a header; every cell one printable line."""
    cells = [list(COLUMNS)]
    for r in rows:
        state = r["state"].upper() if r["state"] != "complete" else "complete"
        detail = r["error"] if r["error"] else (", ".join(r["collections"]) if r["complete"]
                                                else "(a create did not finish)")
        cells.append([untrusted.shown(r["name"]), r["time"] or "-",
                      "-" if r["size"] is None else format_bytes(r["size"]),
                      "-" if r["shared_bytes"] is None else format_bytes(r["shared_bytes"]), state,
                      untrusted.shown(r["milvus_version"] or "-"), untrusted.shown(detail)])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]) for row in cells]
