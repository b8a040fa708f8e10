"""Lent references: an increment on a full backup borrows that backup's binlogs in place.

An increment whose base is a full backup copies none of the base's binlogs: each entry of
its manifest names the pool key the object would have (``pool``) and the backup that lends
it (``lent``). Every reader finds it at ``<root>/<lender>/<rel>`` while the lender lists it
with its size, else at the pool key (manifest.locate). Prune counts the pool key as a
reference like any other. So the first increment on a full base costs what later ones cost:
it copies only what is new.

The object moves into the pool only when the lender goes: ``mbackup delete`` (so ``forget``,
and the server's retention) of a backup first copies, server-side and checked against the
checksum its pool key names, every object of it that a complete backup's manifest or a
running create's marker lends, and only then deletes. Killed during the move, the backup is
still whole (nothing is deleted before every loan is in the pool) and the same delete
finishes it. The Go tool's own delete knows nothing of this: it breaks the borrowers, and
``verify`` names the missing object and its lender.

A create that borrows and a delete of its lender, at once (the shape of prune's protocol,
see prune.py): the delete takes the lender's lock, then reads who borrows; the create lists
what it borrows in its marker, then waits while the lender's lock is held, then checks each
borrowed object is at the lender or in the pool (copying from Milvus what is in neither).
Either the delete's reading saw the marker, and moved those objects; or the create's wait
began while the delete held the lock, so its check comes after the delete ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import EXIT_UNREACHABLE, IntegrityError, MBackupError, PartialError
from ..storage.location import ObjectInfo
from ..transfer.copy import CopySettings, Plan, run_plan
from ..transfer.progress import SILENT, Reporter
from . import manifest as manifests
from .catalog import LOCK, Stores, backup_dir, backup_storage_errors
from .lock import StoreLock, is_held
from .pool import list_pool, marker_lent, parse_pool_key, under_root
from .prune import claims, wait_while

PATIENCE = 10  # lock leases a create waits for a lender's delete before it gives up (exit 3)


class LenderBusy(MBackupError):
    """A backup this create borrows from is being deleted for longer than the create waits."""

    exit_code = EXIT_UNREACHABLE


def lent_by(stores: Stores, lender: str) -> set[str]:
    """The pool keys of every object of ``lender`` that a complete backup's manifest or a
    running create's marker borrows."""

    def from_manifest(data: bytes) -> set[str]:
        return {e["pool"] for e in manifests.parse(data)["objects"].values() if e.get("lent") == lender}

    return claims(stores, lambda data: marker_lent(data).get(lender, []), from_manifest, frozenset({lender}),
                  f"run the delete of {lender!r} again")


def loans_to_move(stores: Stores, name: str) -> dict[str, tuple[str, int, str, str]]:
    """The pool keys (parsed) of the objects of backup ``name`` that another backup borrows and
    the pool does not hold yet."""
    lent = lent_by(stores, name)
    present = list_pool(stores.backup, stores.backup_root, lent)
    return {k: parse_pool_key(k) for k in sorted(lent) if present.get(k) != parse_pool_key(k)[1]}


def release_loans(stores: Stores, name: str, lock: StoreLock, settings: CopySettings | None = None,
                  reporter: Reporter = SILENT) -> int:
    """Copy into the pool every object of backup ``name`` that another backup borrows and the
    pool does not hold yet (server-side, each checked against the checksum its key names);
    return the bytes copied. Re-runnable: what a killed run moved is skipped. Raises
    IntegrityError, having deleted nothing of the backup, when one of them is damaged."""
    bdir = backup_dir(stores, name)
    todo = loans_to_move(stores, name)
    if not todo:
        return 0
    in_dir = {o.key: o.size for o in stores.backup.list(f"{bdir}/binlogs/")}
    lost = [k for k, (rel, size, _, _) in todo.items() if in_dir.get(f"{bdir}/{rel}") != size]
    if lost:
        raise IntegrityError(f"{len(lost)} objects of backup {name!r} that other backups borrow are neither in it nor "
                             f"in the pool (first: {bdir}/{todo[lost[0]][0]}): run mbackup verify on the backups "
                             f"that borrow from {name!r}; nothing was deleted")
    copied = 0
    for algo in sorted({a for _, _, a, _ in todo.values()}):
        plan = Plan(jobs=[(ObjectInfo(f"{bdir}/{rel}", size), under_root(stores.backup_root, k))
                          for k, (rel, size, a, _) in todo.items() if a == algo], skipped=[])
        how = CopySettings(**{**(settings or CopySettings()).__dict__, "verify": True, "checksum": algo})
        moved = run_plan(plan, stores.backup, stores.backup, how, reporter=reporter, label="pool", stop=lock.lost)
        lock.check()
        moved.raise_for_failures(PartialError, f"copying the objects of backup {name!r} that other backups borrow "
                                 "into the pool (nothing was deleted: run the delete again)",
                                 resume="nothing was deleted: run the delete again")
        check_sums(stores, moved.copied, f"run mbackup verify --deep -n {name}; nothing was deleted")
        copied += moved.bytes_copied
    return copied


def check_sums(stores: Stores, copied: list[Any], advice: str) -> None:
    """Each pool object just written has the checksum its key names; a wrong one is removed."""
    cut = len(stores.backup_root) + 1 if stores.backup_root else 0
    wrong = [r for r in copied if r["checksum"] is not None and r["checksum"] != parse_pool_key(r["dst_key"][cut:])[3]]
    if wrong:
        stores.backup.delete_many([r["dst_key"] for r in wrong])
        raise IntegrityError(f"{len(wrong)} objects read from the backup store do not match the checksums recorded "
                             f"for them (first: {wrong[0]['src_key']}): {advice}")


def wait_for_lenders(stores: Stores, lenders: set[str], lock: StoreLock, say: Callable[[str], None]) -> None:
    """Return once no live run holds the lock of any of ``lenders`` (a delete moving their
    loans, then deleting them); LenderBusy after PATIENCE lock leases."""

    def busy() -> str | None:
        with backup_storage_errors(stores):
            return next((f"backup {lender!r}" for lender in sorted(lenders)
                         if is_held(stores.backup, f"{backup_dir(stores, lender)}/{LOCK}")), None)

    wait_while(busy, PATIENCE * lock.lease, lock, say, lambda what: (
        f"waiting for a delete of {what}, whose binlogs this backup borrows: they are in the pool once it is done"),
        lambda what, after: LenderBusy(
            f"{what}, whose binlogs this backup borrows, is being deleted, and still was after {after}: run the same "
            "create again once that delete is done (the backup is incomplete until then)"))
