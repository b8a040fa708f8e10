"""The shared object pool beside the backups, as forget and prune see it (the pool contract:
inc12's backup/pool.py writes it; these names are the contract's)."""

from __future__ import annotations

# A name no backup can have (backup names are [A-Za-z0-9_]): every "which backups exist" walk skips it.
POOL_DIR = ".mbackup-pool"
