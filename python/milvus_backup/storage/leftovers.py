"""What interrupted runs leave behind, found and removed.

A write killed midway leaves an incomplete multipart upload (S3) or a staging file
``<key>#<n>`` (folders), which no listing shows and which hold space; a killed restore leaves
its staged copies (``mbackup-restore-*/``) and its journal in the Milvus bucket. A re-run
removes the leftovers of the keys it writes (:func:`remove_for_keys`, called by the copy
planner); ``mbackup gc`` finds those older than a grace period (:func:`find_under`,
:func:`find_restore`) and removes them (:func:`remove`). Neither ever touches anything under
a backup whose lock a live run holds, nor any object of a backup.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import _engine
from .location import Location, shown_key

# Every copy imports this module for remove_for_keys; what finds leftovers beside backups
# (backup.catalog, backup.lock, format.meta: a tenth of a second) is imported when that runs.

RESTORE_STAGING = "mbackup-restore-"  # restore.py stages at <this><id>/ in the Milvus bucket
RESTORE_JOURNALS = "mbackup-restore-journal"
JOURNAL_LOCK = ".lock"  # restore.py's Journal.lock_key: <journal key without .json>.lock


@dataclass(frozen=True)
class Leftover:
    what: str  # "incomplete upload", "staging file", "restore staging", "restore journal", "restore lock"
    store: Any
    where: str  # the store's URL, for messages
    key: str  # the key being written, the staging prefix, or the journal's key
    handle: str  # what removes it: an upload id, a staging file's key
    age: float  # seconds since it was last written
    size: int | None = None
    objects: tuple[str, ...] = ()  # a restore staging prefix's objects

    def describe(self) -> str:
        from ..units import format_bytes, format_duration

        size = f", {format_bytes(self.size)}" if self.size is not None else ""
        count = f", {len(self.objects):,} objects" if self.objects else ""
        return f"{self.what} {self.where.rstrip('/')}/{shown_key(self.key)} ({format_duration(self.age)} old{count}{size})"


def _folder(keys: list[str]) -> str:
    """The deepest folder holding every key."""
    common = os.path.commonprefix(keys)  # noqa: RUF071 (cut back to the last '/' below)
    return common.rsplit("/", 1)[0] if "/" in common else ""


def remove_for_keys(store: Any, keys: Iterable[str]) -> int:
    """Remove what earlier runs left while writing any of ``keys``; returns how many. Best
    effort: a store that cannot list its leftovers is left as it is (the copy reports real
    store errors itself)."""
    keys = set(keys)
    if not keys or not hasattr(store, "list_leftovers"):
        return 0
    removed = 0
    with contextlib.suppress(_engine.EngineError):
        for key, handle, _, _ in store.list_leftovers(_folder(sorted(keys))):
            if key in keys:
                with contextlib.suppress(_engine.EngineError):
                    removed += store.remove_leftover(key, handle)
    return removed


class _Locks:
    """Is a key under a folder whose ``mbackup.lock`` a live run holds? Asked per folder once."""

    def __init__(self, store: Any, where: str, base: str) -> None:
        self.location, self.base = Location(store, "", where), base.strip("/")
        self.known: dict[str, bool] = {}  # folder -> a live run holds its lock

    def held_above(self, key: str) -> bool:
        from ..backup.catalog import LOCK
        from ..backup.lock import is_held

        parts = key.split("/")[:-1]
        floor = len(self.base.split("/")) if self.base else 0
        for depth in range(len(parts), floor - 1, -1):
            folder = "/".join(parts[:depth])
            if folder not in self.known:
                self.known[folder] = is_held(self.location, f"{folder}/{LOCK}" if folder else LOCK)
            if self.known[folder]:
                return True
        return False


def find_under(store: Any, where: str, prefix: str, grace: float, now: float) -> list[Leftover]:
    """Incomplete uploads and staging files under ``prefix`` last written more than ``grace``
    seconds ago, outside any folder whose lock a live run holds. Undated ones are kept."""
    if not hasattr(store, "list_leftovers"):
        return []  # a store a plugin implements in Python: it keeps no leftovers we can see
    locks = _Locks(store, where, prefix)
    what = "staging file" if store.kind == "file" else "incomplete upload"
    out = []
    for key, handle, started, size in store.list_leftovers(prefix):
        if started is None or now - started < grace or locks.held_above(key):
            continue
        out.append(Leftover(what, store, where, key, handle, now - started, size))
    return out


def find_restore(store: Any, where: str, grace: float, now: float) -> list[Leftover]:
    """In the Milvus bucket: restore journals and the locks of restores that no longer run,
    last written more than ``grace`` seconds ago, and restore staging prefixes whose newest
    object is that old and that no younger or running journal still names
    (``collections.<label>.staging``), with the incomplete uploads under them. A restore
    running now (its lock held) keeps its lock, its journal and its staging, however old."""
    if not hasattr(store, "list_meta"):
        return []  # a store a plugin implements in Python: no dates to tell a leftover's age by
    from ..backup.catalog import IN_PROGRESS, LOCK
    from ..backup.lock import is_held
    from ..format import meta

    out: list[Leftover] = []
    in_use: set[str] = set()
    journals = store.list_meta(RESTORE_JOURNALS)
    locations = Location(store, "", where)
    running = {key.removesuffix(JOURNAL_LOCK) for key, _, _, _ in journals
               if key.endswith(JOURNAL_LOCK) and is_held(locations, key)}
    for key, size, _, modified in journals:
        is_lock = key.endswith(JOURNAL_LOCK)
        live = key.removesuffix(JOURNAL_LOCK if is_lock else ".json") in running
        if not live and modified is not None and now - modified >= grace:
            out.append(Leftover("restore lock" if is_lock else "restore journal", store, where, key, key,
                                now - modified, size))
        elif not is_lock:
            in_use |= _staging_named_by(store, key)
    dirs, _ = store.list_dirs("")
    for d in dirs:
        name = d.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith(RESTORE_STAGING) or name == RESTORE_JOURNALS or name in in_use:
            continue
        objects = store.list_meta(name)
        dates = [m for _, _, _, m in objects if m is not None]
        # A backup that happens to bear such a name (backups at the bucket root) is no leftover.
        is_backup = any(k in (f"{name}/meta/{meta.BACKUP_META}", f"{name}/{IN_PROGRESS}", f"{name}/{LOCK}") for k, _, _, _ in objects)
        if objects and not is_backup and len(dates) == len(objects) and now - max(dates) >= grace:
            out.append(Leftover("restore staging", store, where, name, name, now - max(dates),
                                sum(size for _, size, _, _ in objects), tuple(k for k, _, _, _ in objects)))
        out += find_under(store, where, name, grace, now)
    return out


def _staging_named_by(store: Any, key: str) -> set[str]:
    """The staging prefixes a journal names; an unreadable journal names none."""
    try:
        data = json.loads(store.get(key))
        collections = data.get("collections", {})
        return {c["staging"] for c in collections.values()
                if isinstance(c, dict) and isinstance(c.get("staging"), str) and c["staging"]}
    except (_engine.EngineError, ValueError, AttributeError, TypeError, KeyError, RecursionError):
        return set()


def remove(item: Leftover) -> bool:
    """Remove one leftover; False when it was gone already (or a writer took it up again)."""
    if item.what in ("restore journal", "restore lock"):
        item.store.delete(item.key)
        return True
    if item.what == "restore staging":
        failures = item.store.delete_many(list(item.objects), 32)
        if failures:
            key, error = failures[0]
            raise _engine.EngineError(f"could not delete {len(failures)} staged objects (first: {shown_key(key)}: {error})")
        return True
    return bool(item.store.remove_leftover(item.key, item.handle))
