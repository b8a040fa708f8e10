"""``create --incremental``: copy from Milvus's store only what the base backup does not hold.

The policy: each binlog of the new backup is either *shared* (the base holds it) or *new*.
What proves "the same object" without reading Milvus's copy: the same key relative to the
backup dir (Milvus names a binlog by collection, partition, segment, field and log id, and
never rewrites one), the same size, and the same ETag -- the ETag Milvus's store lists now
equal to the one it listed when the base backed the object up (recorded in the manifest),
or, for a full base made before full backups recorded it, equal to the ETag of the base's own
copy (a server-side copy keeps its source's ETag, a multipart one included: Milvus uploads a
binlog over 16 MiB in parts). Anything else is new: read from Milvus once and checksummed
while copied, as a full backup's objects are.

Every object of an incremental backup lives once in the root's pool (pool.py), or in the dir
of the full backup that lends it: a shared object already in the pool is referenced as it
is; one in a full base's dir is borrowed where it is (lending.py: it moves into the pool only
when that backup is deleted), so the first increment on a full base copies no more than
later ones; a new one is copied from Milvus into the backup dir (so an interrupted run
resumes like a full create), then server-side into the pool under the key its checksum
gives, then removed from the dir. The pool keys a run will reference, and what it borrows
from whom, go into its in-progress marker before it copies into the pool, and every one is
checked present (at its lender or in the pool) before the backup is marked complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MBackupError
from ..format import meta
from ..storage.location import ObjectInfo, alongside
from ..transfer.copy import CopySettings, Plan, run_plan
from ..transfer.progress import Reporter
from ..units import format_bytes
from . import manifest as manifests
from .catalog import (
    IN_PROGRESS,
    BackupError,
    BackupIncomplete,
    Stores,
    backup_dir,
    collection_segments,
    list_backups,
    read_backup,
)
from .lending import wait_for_lenders
from .lock import StoreLock
from .pool import LENT_REFS, POOL_REFS, list_pool_rels, marker_refs, parse_pool_key, pool_key, under_root
from .prune import wait_for_pending_deletes

log = logging.getLogger(__name__)


class BaseError(MBackupError):
    """The base an incremental create was given cannot be one."""


@dataclass(frozen=True)
class Known:
    """An object a base backup holds, and what proves an object Milvus lists is the same one."""

    size: int
    checksum: str
    etag: str | None  # the ETag Milvus's object must list with (None: it cannot be proven)
    key: str  # bucket key of the copy in the backup store
    pool: str | None = None  # its pool key (relative to the root) when it is in the pool or lent
    lent: str | None = None  # the full backup that lends it (then ``pool`` is where it moves to)


@dataclass
class Base:
    name: str | None  # None: no backup to share with, everything is new
    algo: str | None = None
    objects: dict[str, Known] = field(default_factory=dict)  # by key relative to the backup dir


@dataclass
class Increment:
    """What an incremental create copies and what it shares."""

    base: Base
    algo: str
    shared: dict[str, Known]  # rel -> the base's copy
    new: dict[str, tuple[ObjectInfo, str]]  # rel -> (Milvus's object, key it is staged at in the backup dir)
    sources: dict[str, ObjectInfo] = field(default_factory=dict)  # rel -> Milvus's object, for each shared one
    pooled_bytes: int = 0  # bytes copied into the pool inside the backup store (set once stored)

    @property
    def new_bytes(self) -> int:
        return sum(o.size for o, _ in self.new.values())

    @property
    def shared_bytes(self) -> int:
        return sum(k.size for k in self.shared.values())

    def summary(self) -> dict[str, Any]:
        return {"base": self.base.name, "objects_new": len(self.new), "bytes_new": self.new_bytes,
                "objects_shared": len(self.shared), "bytes_shared": self.shared_bytes,
                "bytes_copied_into_pool": self.pooled_bytes}

    def line(self) -> str:
        on = f"on base {self.base.name}" if self.base.name else "with no base (the first of the root)"
        return (f"incremental backup {on}: {len(self.new):,} objects ({format_bytes(self.new_bytes)}) new, "
                f"to copy from Milvus; {len(self.shared):,} objects ({format_bytes(self.shared_bytes)}) shared")


def norm_etag(etag: str | None) -> str | None:
    """An ETag as compared: unquoted, lower case (MD5 or multipart alike: both are of the content)."""
    return etag.strip('"').lower() if etag else None


def find_base(stores: Stores, name: str, base: str | None, collections: Iterable[tuple[str, str]]) -> Base:
    """The named base, or the newest complete backup of the root holding any of ``collections``
    that mbackup made (it has a manifest); Base(None) when there is none. A named base that is
    missing, incomplete, damaged, made by the Go tool, or of other collections is refused."""
    wanted = set(collections)
    if base is not None:
        if base == name:
            raise BaseError(f"--base {base} names the backup being created: name an earlier backup")
        backup_dir(stores, base)  # the naming rule
        try:
            info = read_backup(stores, base)
            found = manifests.read(stores, base)
        except (ValueError, MBackupError) as e:
            raise BaseError(f"base backup {base!r} cannot be used: {e}") from None
        if found is None:
            raise BaseError(f"base backup {base!r} has no checksum manifest (made by the Go tool?): "
                            "name a backup made by mbackup, or leave out --base")
        if wanted and not wanted & _collections(info):
            raise BaseError(f"base backup {base!r} holds none of the collections to back up "
                            f"({', '.join(sorted(f'{d}.{c}' for d, c in wanted))}): name a backup of them")
        return _known(stores, base, found)
    candidates = [e for e in list_backups(stores) if e.complete and e.info is not None and e.name != name
                  and (not wanted or wanted & _collections(e.info))]
    for entry in sorted(candidates, key=lambda e: e.taken or 0.0, reverse=True):
        try:
            found = manifests.read(stores, entry.name)
        except ValueError as e:
            log.warning("backup %s is not a base: its manifest is damaged (%s)", entry.name, e)
            continue
        if found is not None:
            return _known(stores, entry.name, found)
    return Base(None)


def _collections(info: meta.BackupInfo) -> set[tuple[str, str]]:
    return {(c.db_name or "default", c.collection_name) for c in info.collection_backups}


def _known(stores: Stores, name: str, found: dict[str, Any]) -> Base:
    bdir = backup_dir(stores, name)
    algo = found["checksum_algo"]
    objects: dict[str, Known] = {}
    in_dir = {o.key: o for o in stores.backup.list(f"{bdir}/binlogs/")} if any(
        "pool" not in e for e in found["objects"].values()) else {}
    for rel, entry in found["objects"].items():
        checksum = entry.get("checksum")
        if not checksum or not rel.startswith("binlogs/"):
            continue
        if "pool" in entry:
            objects[rel] = Known(entry["size"], checksum, norm_etag(entry.get("etag")),
                                 under_root(stores.backup_root, entry["pool"]), entry["pool"], entry.get("lent"))
            continue
        copy = in_dir.get(f"{bdir}/{rel}")
        if copy is not None and copy.size == entry["size"]:
            # A full backup made before full backups recorded Milvus's ETag: its copy's own.
            objects[rel] = Known(entry["size"], checksum, norm_etag(entry.get("etag") or copy.etag), copy.key)
    return Base(name, algo, objects)


def plan_increment(bdir: str, collections: list[meta.CollectionBackupInfo], etags: dict[str, str | None],
                   base: Base, algo: str, resumed_refs: Iterable[str] = ()) -> Increment:
    """Split the binlogs of ``collections`` into shared and new. ``resumed_refs``: the pool keys
    an interrupted run of this create listed, whose objects it may have moved into the pool
    already (the same run's re-listing of an immutable binlog: same rel and size suffice)."""
    earlier: dict[str, Known] = {}
    for ref in resumed_refs:
        rel, size, ref_algo, checksum = parse_pool_key(ref)
        if ref_algo == algo:
            earlier[rel] = Known(size, checksum, None, "", ref)
    inc = Increment(base, algo, {}, {})
    for coll in collections:
        for seg in collection_segments(coll):
            for src, dst, size in meta.segment_files(bdir, seg):
                rel = dst[len(bdir) + 1:]
                etag = norm_etag(etags.get(src))
                known = base.objects.get(rel)
                obj = ObjectInfo(src, size, etags.get(src))
                if known is not None and known.size == size and known.etag and known.etag == etag:
                    inc.shared[rel] = Known(size, known.checksum, etag, known.key, known.pool, known.lent)
                    inc.sources[rel] = obj
                elif rel in earlier and earlier[rel].size == size:
                    inc.shared[rel] = Known(size, earlier[rel].checksum, etag, "", earlier[rel].pool)
                    inc.sources[rel] = obj
                else:
                    inc.new[rel] = (obj, dst)
    return inc


def resumed_refs(stores: Stores, bdir: str) -> list[str]:
    """The pool keys an interrupted run of this create listed in its marker (none when the
    marker cannot be read: the run then copies again what it does not find)."""
    try:
        return marker_refs(stores.backup.read(f"{bdir}/{IN_PROGRESS}"))
    except (ValueError, MBackupError):
        return []


def _write_refs(stores: Stores, bdir: str, refs: set[str], lock: StoreLock,
                lent: dict[str, set[str]] | None = None) -> None:
    """List ``refs`` in the in-progress marker: prune spares what a running create will
    reference; and ``lent``, what it borrows by lender: a delete of a lender moves those."""
    lock.renew()
    key = f"{bdir}/{IN_PROGRESS}"
    marker = json.loads(stores.backup.read(key))
    borrowed = {lender: sorted(keys) for lender, keys in sorted((lent or {}).items())}
    if POOL_REFS in marker and set(marker[POOL_REFS] or ()) >= refs and (lent is None or marker.get(LENT_REFS) == borrowed):
        return
    marker[POOL_REFS] = sorted(refs | set(marker.get(POOL_REFS) or ()))
    if lent is not None:
        marker[LENT_REFS] = borrowed
    stores.backup.write(key, json.dumps(marker).encode())


def store_increment(stores: Stores, bdir: str, inc: Increment, copy_new: Any, settings: CopySettings,
                    reporter: Reporter, lock: StoreLock) -> dict[str, dict[str, Any]]:
    """Copy the increment's new objects into the pool, borrow what a full base holds; return
    the manifest's objects. ``copy_new(keys)`` copies the staged keys from Milvus, verified,
    and returns the CopyReport."""
    entries: dict[str, dict[str, Any]] = {}
    lent: dict[str, set[str]] = {}  # lender -> pool keys borrowed from it
    for rel, known in inc.shared.items():
        key = _pool_key(rel, known, inc.algo)
        entries[rel] = {"size": known.size, "checksum": known.checksum, "pool": key, "etag": known.etag}
        lender = known.lent or (inc.base.name if known.pool is None else None)
        if lender is not None:
            entries[rel]["lent"] = lender
            lent.setdefault(lender, set()).add(key)
    refs = {e["pool"] for e in entries.values()}
    # While the new objects are staged: the marker lists what is shared (before the pool is
    # counted on), and the pool is listed where the new ones will go (what it already holds is
    # not copied again; one a prune takes meanwhile is found gone by _ensure_pool).
    def beside_staging() -> dict[str, int]:
        _write_refs(stores, bdir, refs, lock, lent)
        return list_pool_rels(stores.backup, stores.backup_root, inc.new)

    present, report = alongside(beside_staging, lambda: copy_new({dst for _, dst in inc.new.values()}))
    proven = {r["dst_key"]: r["checksum"] for r in report.copied} | report.skipped_checksums
    from_staged: dict[str, str] = {}  # pool key -> the staged copy, verified against Milvus's as it was made
    for rel, (obj, dst) in inc.new.items():
        key = pool_key(rel, obj.size, inc.algo, proven[dst])
        entries[rel] = {"size": obj.size, "checksum": proven[dst], "pool": key, "etag": norm_etag(obj.etag)}
        from_staged[key] = dst
    refs |= from_staged.keys()
    _write_refs(stores, bdir, refs, lock)  # before a single object goes into the pool
    size_of = {e["pool"]: e["size"] for e in entries.values()}
    plan = Plan(jobs=[(ObjectInfo(src, size_of[k]), under_root(stores.backup_root, k))
                      for k, src in sorted(from_staged.items()) if present.get(k) != size_of[k]], skipped=[])
    if plan.jobs:
        how = CopySettings(**{**settings.__dict__, "verify": False, "checksum": inc.algo})
        moved = run_plan(plan, stores.backup, stores.backup, how, reporter=reporter, label="pool", stop=lock.lost)
        lock.check()
        moved.raise_for_failures(BackupIncomplete, "the backup is incomplete, run the same create again to finish it",
                                 resume="run the same create again to finish the backup")
        inc.pooled_bytes += moved.bytes_copied
    staged = [dst for _, dst in inc.new.values()]
    alongside(lambda: stores.backup.delete_many(staged) if staged else None,
              lambda: _ensure_pool(stores, entries, inc, settings, reporter, lock))
    return entries


def _pool_key(rel: str, known: Known, algo: str) -> str:
    return known.pool or pool_key(rel, known.size, algo, known.checksum)


def _ensure_pool(stores: Stores, entries: dict[str, dict[str, Any]], inc: Increment, settings: CopySettings,
                 reporter: Reporter, lock: StoreLock) -> None:
    """Every referenced object is at its lender or in the pool with its size (one LIST per
    collection prefix); one that vanished (a prune of a forgotten base, a lender deleted) is
    copied again from Milvus into the pool, its checksum checked against the one recorded.
    Never returns with one missing. First, a delete of a lender and a prune about to delete
    some of them (whose reading of the references missed the marker) are waited for: see
    lending.py and prune.py. A lent entry whose lender no longer holds it names the pool only."""
    refs = {e["pool"] for e in entries.values()}
    wait_for_lenders(stores, {e["lent"] for e in entries.values() if "lent" in e}, lock, reporter.warning)
    wait_for_pending_deletes(stores, refs, lock, reporter.warning)
    gone = _gone(stores, entries)
    if gone:
        plan = Plan(jobs=[], skipped=[])
        for rel in gone:
            plan.jobs.append((inc.new[rel][0] if rel in inc.new else inc.sources[rel],
                              under_root(stores.backup_root, entries[rel]["pool"])))
        reporter.warning(f"{len(gone)} shared objects vanished from the pool during the create: copying them again")
        verified = CopySettings(**{**settings.__dict__, "verify": True, "checksum": inc.algo})
        report = run_plan(plan, stores.milvus, stores.backup, verified, reporter=reporter, label="pool repair",
                          stop=lock.lost)
        lock.check()
        src_of = {e["pool"]: (rel, e) for rel, e in entries.items()}
        for r in report.copied:
            rel, entry = src_of[r["dst_key"][len(stores.backup_root) + 1 if stores.backup_root else 0:]]
            if r["checksum"] != entry["checksum"]:
                raise BackupError(f"{rel} in Milvus's store no longer has the checksum the base recorded: "
                                  "run a full create instead")
        left = _gone(stores, entries)
        if left or report.failed:
            first = f"{stores.backup_root}/{entries[left[0]]['pool']}" if left else report.failed[0]["dst_key"]
            raise BackupError(f"{len(left) or len(report.failed)} objects the backup references are not in the pool "
                              f"(first: {first}): run the same create again")


def _gone(stores: Stores, entries: dict[str, dict[str, Any]]) -> list[str]:
    """The entries found neither at their lender nor in the pool; a lent one found only in the
    pool stops naming its lender."""
    gone = []
    for rel, place in manifests.locate(stores, {"objects": entries}, listed=True).items():
        if place.size != entries[rel]["size"]:
            gone.append(rel)
        elif place.lender and place.key == under_root(stores.backup_root, place.pool):
            del entries[rel]["lent"]
    return sorted(gone)
