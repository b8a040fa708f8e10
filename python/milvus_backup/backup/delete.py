"""``mbackup delete``: remove a backup, after moving into the pool what other backups borrow of it.

Every delete goes through here: the command, ``forget``, and the server's API and retention.
"""

from __future__ import annotations

from ..errors import PartialError
from ..format import meta
from ..transfer.copy import CopySettings
from . import catalog
from .catalog import LOCK, DeletePlan, Stores, backup_dir, backup_keys, backup_storage_errors, delete_lock
from .lending import loans_to_move, release_loans


def plan_delete(stores: Stores, name: str) -> DeletePlan:
    """What a delete would remove, and how many objects other backups borrow from it (copied
    into the pool first); every refusal of a delete, found by reading only."""
    plan = catalog.plan_delete(stores, name)
    if _lends(backup_dir(stores, name), plan.keys):
        with backup_storage_errors(stores):
            plan.to_move = len(loans_to_move(stores, name))
    return plan


def _lends(bdir: str, keys: list[str]) -> bool:
    """Only a backup holding binlogs in its dir can lend them."""
    return any(k.startswith(f"{bdir}/binlogs/") for k in keys)


def delete_backup(stores: Stores, name: str, parallel: int = 32, settings: CopySettings | None = None) -> int:
    """Delete every object under the backup's directory, in parallel, holding the backup's
    lock (so never under a running create). First, the binlogs of it that increments borrow
    are copied into the pool (lending.py): nothing is deleted until they all are there.
    Re-runnable: objects already gone count as deleted, and the lock goes last, so a
    half-deleted backup is still recognised as one. Returns how many objects were deleted,
    the lock not counted."""
    catalog.plan_delete(stores, name)
    bdir = backup_dir(stores, name)
    backup = stores.backup
    lock_key = f"{bdir}/{LOCK}"
    with backup_storage_errors(stores):
        with delete_lock(stores, name) as lock:
            keys = [k for k in backup_keys(backup, bdir) if k != lock_key]  # what a create wrote up to now
            if _lends(bdir, keys):
                release_loans(stores, name, lock, settings)
            # The completion marker goes first so a half-deleted backup never looks complete.
            marker = f"{bdir}/{meta.META_DIR}/{meta.BACKUP_META}"
            if marker in keys:
                backup.delete(marker)
            failures = backup.delete_many([k for k in keys if k != marker], parallel)
            lock.check()
        if failures:
            key, error = failures[0]
            raise PartialError(f"could not delete {len(failures)} objects of backup {name!r} (first: {key}: {error}); "
                               "run the delete again")
    return len(keys)
