"""mbackup's checksum manifest (``<backup>/meta/mbackup_manifest.json``): what a backup holds.

Version 1 (a full backup): every binlog under the backup dir, ``{rel: {size, checksum}}``, and
since create records it, ``etag``: the ETag Milvus's store listed (see below).
Version 2 (``create --incremental``): ``"incremental": true``, ``"base"`` (the backup it was
taken against, or null), and each binlog entry also names its ``pool`` key (relative to the
backup root, see pool.py) and ``etag``, the ETag Milvus's store listed for it when it was
backed up, which is what lets the next increment know the object again without reading it.
"""

from __future__ import annotations

from typing import Any

from ..format import meta, untrusted
from .catalog import MANIFEST, Stores, backup_dir, backup_storage_errors
from .pool import ALGOS, POOL_DIR, parse_pool_key, under_root

MANIFEST_KEY = f"{meta.META_DIR}/{MANIFEST}"

# As backup.write_meta writes it.
SHAPE = untrusted.Obj(
    {"checksum_algo": untrusted.OneOf(*ALGOS),
     "objects": untrusted.Map(untrusted.Obj(
         {"size": untrusted.Count},
         {"checksum": untrusted.Optional(untrusted.Text(r"[0-9a-f]{1,16}", "a hex checksum")),
          "pool": untrusted.Text(rf"{POOL_DIR}/[^\\\x00]+", "a key in the shared pool"),
          "etag": untrusted.Optional(str)}),
         untrusted.RELATIVE_KEY)},
    {"version": untrusted.Count, "backup": str, "id": str, "incremental": bool, "base": untrusted.Optional(str)})


def parse(data: bytes) -> dict[str, Any]:
    """The manifest, checked; ValueError naming the first problem (a pool key that is not one,
    or that names another object than its entry, too)."""
    manifest: dict[str, Any] = untrusted.parse(data, SHAPE)
    for rel, entry in manifest["objects"].items():
        if "pool" in entry:
            prel, size, algo, checksum = parse_pool_key(entry["pool"])
            if (prel, size, algo, checksum) != (rel, entry["size"], manifest["checksum_algo"], entry.get("checksum")):
                raise ValueError(f"objects[{rel!r}].pool names another object ({entry['pool']!r})")
    return manifest


def read(stores: Stores, name: str) -> dict[str, Any] | None:
    """Backup ``name``'s manifest; None when it has none (a backup made by the Go tool).
    ValueError when it is damaged."""
    key = f"{backup_dir(stores, name)}/{MANIFEST_KEY}"
    with backup_storage_errors(stores):
        if not stores.backup.exists(key):
            return None
        return parse(stores.backup.read(key))


def located(stores: Stores, bdir: str, manifest: dict[str, Any] | None) -> dict[str, str]:
    """Bucket key of each object that does not live at its place in the backup dir (those in the
    pool), by the key the Go layout gives it under ``bdir``; {} for a full backup."""
    if manifest is None:
        return {}
    return {f"{bdir}/{rel}": under_root(stores.backup_root, entry["pool"])
            for rel, entry in manifest["objects"].items() if "pool" in entry}
