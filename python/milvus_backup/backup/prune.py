"""``mbackup prune``: delete the objects of the shared pool that no backup references.

A pool object is referenced while a backup's manifest names it (``"pool"`` of an entry) or
a create in progress names it in its marker (``pool_refs``). Prune deletes only objects
referenced by neither and last written longer ago than a grace period (at least twice the
lock lease: a create that has not written its marker yet is that young), holding the
root's prune lock so that two prunes never run at once.

A create that runs beside prune is safe from both sides. Before each batch of deletes, prune
names the batch in its pending-delete record (``.mbackup-pool/prune-pending.json``), then
reads the references again and spares what a create references by then. A create lists
what it will reference in its marker, then reads that record before its last check that
every object it references is in the pool: either prune's reading saw the marker, or the
create sees the record (and waits for that batch to be deleted, then copies again what
went), or the batch was deleted before the create's last check, which copies it again.
Prune keeps no state but that record: killed, it has deleted only unreferenced objects, its
record is judged by its lock (a dead prune's record holds nothing up), and run again it
finishes the rest.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import EXIT_UNREACHABLE, IntegrityError, MBackupError, PartialError
from ..format import untrusted
from ..storage.location import NotFound, StorageError, in_parallel
from ..units import format_bytes, format_duration
from . import manifest as manifests
from .catalog import IN_PROGRESS, Stores, backup_storage_errors
from .lock import StoreLock, is_held
from .pool import POOL_DIR, marker_refs, parse_pool_key, pool_root, under_root

PRUNE_LOCK = "prune.lock"
PENDING = "prune-pending.json"
# Deletes per batch: what one pending-delete record names, so what a create sharing one of
# them waits for (500 deletes, 32 at a time: a second or two), and the progress step.
BATCH = 500
POLL = 0.5  # seconds between a waiting create's looks at the record


class PruneRunning(MBackupError):
    """A prune is deleting pool objects a create reuses: retry once it is done."""

    exit_code: ClassVar[int] = EXIT_UNREACHABLE


def prune_lock(stores: Stores, lease: float | None = None) -> StoreLock:
    return StoreLock(stores.backup, _lock_key(stores), "the shared pool",
                     command="prune", lease=lease, on_loss="run prune again")


def _lock_key(stores: Stores) -> str:
    return f"{pool_root(stores.backup_root)}/{PRUNE_LOCK}"


def _pending_key(stores: Stores) -> str:
    return f"{pool_root(stores.backup_root)}/{PENDING}"


def pending_deletes(stores: Stores) -> set[str] | None:
    """The pool keys a running prune is about to delete (empty: none, or its prune is dead);
    None when its record cannot be read (any key may be about to go)."""
    try:
        data = stores.backup.read(_pending_key(stores))
    except NotFound:
        return set()
    if not is_held(stores.backup, _lock_key(stores)):
        return set()  # left by a prune that died: it deletes nothing any more
    try:
        listed = untrusted.load_json(data, 1 << 30)
    except ValueError:
        return None
    keys = listed.get("keys") if isinstance(listed, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return set(keys)


def wait_for_pending_deletes(stores: Stores, refs: set[str], lock: StoreLock, say: Callable[[str], None]) -> None:
    """Return once no running prune is about to delete one of ``refs`` (then the caller checks
    which are gone); PruneRunning if one still is after a lock lease."""

    def doomed() -> str | None:
        pending = pending_deletes(stores)
        n = len(refs if pending is None else refs & pending)
        return f"{n:,} pool objects this backup shares" if n else None

    wait_while(doomed, lock.lease, lock, say, lambda what: (
        f"waiting for a prune that is deleting {what}: they are copied again once it is done"), lambda what, after: (
        PruneRunning(f"a prune is deleting {what}, and still was after {after}: run the same create again once the "
                     "prune is done (the backup is incomplete until then)")))


def wait_while(busy: Callable[[], str | None], patience: float, lock: StoreLock, say: Callable[[str], None],
               waiting: Callable[[str], str], refused: Callable[[str, str], MBackupError]) -> None:
    """Poll ``busy`` (what another run is doing that this one waits for; None: nothing) until
    it answers None, saying ``waiting(what)`` once; raise ``refused(what, how long)`` after
    ``patience`` seconds. A create waits so for a prune or a delete (see lending.py)."""
    deadline = time.monotonic() + patience
    said = False
    while (what := busy()) is not None:
        if time.monotonic() >= deadline:
            raise refused(what, format_duration(patience))
        if not said:
            say(waiting(what))
            said = True
        lock.check()
        time.sleep(POLL)


def min_grace(stores: Stores) -> float:
    """The shortest grace period that is safe: twice the lock lease."""
    return 2 * prune_lock(stores).lease


def references(stores: Stores, forgotten: frozenset[str] = frozenset()) -> set[str]:
    """Every pool key (relative to the root) a backup or a running create references (the
    backups named in ``forgotten`` left out: what ``forget --prune --dry-run`` would have
    deleted by then). A manifest or marker that cannot be read stops prune: what
    it references is unknown. Lent references count: they name the pool key their object
    moves to when its lender goes."""
    return claims(stores, marker_refs, _manifest_refs, forgotten, "run prune again")


def claims(stores: Stores, from_marker: Callable[[bytes], Iterable[str]],
           from_manifest: Callable[[bytes], Iterable[str]], skipped: frozenset[str], again: str) -> set[str]:
    """What every backup of the root (but ``skipped``) claims, read from its in-progress
    marker and its manifest; IntegrityError (``again`` says what to do next) when one of
    them cannot be read."""
    with backup_storage_errors(stores):
        root = stores.backup_root
        dirs, _ = stores.backup.list_dirs(root)
        names = [name for name in sorted(d.rstrip("/").rsplit("/", 1)[-1] for d in dirs)
                 if name != POOL_DIR and name not in skipped]

        def claimed(name: str) -> set[str]:
            bdir = f"{root}/{name}" if root else name
            found: set[str] = set()
            # The marker first: a create that completes meanwhile wrote its manifest before
            # it removed its marker, so one of the two is seen.
            for rel, read in ((IN_PROGRESS, from_marker), (manifests.MANIFEST_KEY, from_manifest)):
                try:
                    data = stores.backup.read(f"{bdir}/{rel}")
                except NotFound:
                    continue
                try:
                    found.update(read(data))
                except ValueError as e:
                    raise IntegrityError(
                        f"cannot tell which pool objects backup {untrusted.shown(name)!r} references: "
                        f"{stores.backup_url(name)}/{rel} is damaged ({e}); delete or repair that backup, "
                        f"then {again} (nothing was deleted)") from None
            return found

        # Backups side by side (each keeps its marker-then-manifest order): a root of many
        # backups is read in the time of a few.
        refs: set[str] = set().union(*in_parallel(claimed, names))
    return refs


def _manifest_refs(data: bytes) -> set[str]:
    return {e["pool"] for e in manifests.parse(data)["objects"].values() if "pool" in e}


@dataclass
class PoolObject:
    key: str  # relative to the backup root: .mbackup-pool/<rel>~<size>~<algo>-<checksum>
    size: int
    modified: float | None


def pool_objects(stores: Stores) -> list[PoolObject]:
    """Every object of the pool (the prune lock and anything else not named as a pool object
    left out), with when it was last written."""
    root, store = stores.backup_root, stores.backup.store
    cut = len(stores.backup.key(under_root(root, "")))  # full store keys to keys relative to the root
    if not hasattr(store, "list_meta"):
        raise MBackupError(f"{stores.backup.url} does not say when objects were written, so prune cannot tell "
                           "an object a running create just wrote: prune needs an S3, GCS, Azure or file store")
    with backup_storage_errors(stores):
        listed = store.list_meta(stores.backup.key(pool_root(root)) + "/")
    out = []
    for key, size, _, modified in listed:
        rel = key[cut:]
        try:
            parse_pool_key(rel)
        except ValueError:
            continue
        out.append(PoolObject(rel, size, modified))
    return out


@dataclass
class PrunePlan:
    """What prune would delete, and what it keeps."""

    grace: float
    doomed: list[PoolObject] = field(default_factory=list)
    referenced: int = 0
    young: int = 0

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.doomed)

    def summary(self) -> dict[str, Any]:
        return {"dry_run": True, "objects_to_delete": len(self.doomed), "bytes_to_delete": self.bytes,
                "referenced": self.referenced, "younger_than_grace": self.young, "grace_seconds": self.grace}

    def kept(self) -> str:
        return (f"{self.referenced:,} referenced, {self.young:,} written within the grace period "
                f"({format_duration(self.grace)})")

    def lines(self) -> list[str]:
        return [f"would delete {len(self.doomed):,} pool objects ({format_bytes(self.bytes)}) that no backup "
                f"references; keep {self.kept()}"]


def plan_prune(stores: Stores, grace: float, forgotten: frozenset[str] = frozenset()) -> PrunePlan:
    """The pool listed first, the references read after: an object a create starts to
    reference meanwhile is listed in its marker by the time it is read."""
    now = time.time()
    objects = pool_objects(stores)
    refs = references(stores, forgotten)
    plan = PrunePlan(grace)
    for obj in objects:
        if obj.key in refs:
            plan.referenced += 1
        elif obj.modified is None or obj.modified > now - grace:
            plan.young += 1
        else:
            plan.doomed.append(obj)
    return plan


@dataclass
class PruneResult:
    plan: PrunePlan
    deleted: list[PoolObject] = field(default_factory=list)
    spared: int = 0  # doomed at first, referenced by a create by the time their turn came

    def summary(self) -> dict[str, Any]:
        return {"dry_run": False, "objects_deleted": len(self.deleted), "bytes_deleted": sum(o.size for o in self.deleted),
                "referenced": self.plan.referenced + self.spared, "younger_than_grace": self.plan.young,
                "grace_seconds": self.plan.grace}

    def line(self) -> str:
        kept = PrunePlan(self.plan.grace, referenced=self.plan.referenced + self.spared, young=self.plan.young)
        return (f"prune: deleted {len(self.deleted):,} pool objects ({format_bytes(sum(o.size for o in self.deleted))}) "
                f"that no backup references; kept {kept.kept()}")


def prune(stores: Stores, grace: float, progress: Callable[[int, int], None] = lambda done, total: None,
          parallel: int = 32) -> PruneResult:
    """Delete the pool objects no backup references, holding the prune lock."""
    with backup_storage_errors(stores), prune_lock(stores) as lock:
        plan = plan_prune(stores, grace)
        result = PruneResult(plan)
        try:
            for start in range(0, len(plan.doomed), BATCH):
                batch = plan.doomed[start:start + BATCH]
                # The record first, the references after: a create whose marker this reading
                # misses reads the record before its last look at the pool.
                lock.renew()
                stores.backup.write(_pending_key(stores), json.dumps(
                    {"keys": [o.key for o in batch]}).encode())
                refs = references(stores)
                result.spared += sum(1 for o in batch if o.key in refs)
                batch = [o for o in batch if o.key not in refs]
                lock.check()
                failures = stores.backup.delete_many([under_root(stores.backup_root, o.key) for o in batch], parallel)
                failed = {key for key, _ in failures}
                result.deleted += [o for o in batch if under_root(stores.backup_root, o.key) not in failed]
                progress(len(result.deleted), len(plan.doomed))
                if failures:
                    key, error = failures[0]
                    raise PartialError(f"could not delete {len(failures)} pool objects (first: {key}: {error}); "
                                       "run prune again")
        finally:
            if plan.doomed and not lock.lost.is_set():  # a prune that took over writes its own
                with contextlib.suppress(StorageError):  # once the lock is free, a record left holds nothing up
                    stores.backup.delete(_pending_key(stores))
        lock.check()
    return result
