"""mbackup's checksum manifest (``<backup>/meta/mbackup_manifest.json``): what a backup holds.

Version 1 (a full backup): every binlog under the backup dir, ``{rel: {size, checksum}}``, and
since create records it, ``etag``: the ETag Milvus's store listed (see below).
Version 2 (``create --incremental``): ``"incremental": true``, ``"base"`` (the backup it was
taken against, or null), and each binlog entry also names its ``pool`` key (relative to the
backup root, see pool.py) and ``etag``, the ETag Milvus's store listed for it when it was
backed up, which is what lets the next increment know the object again without reading it.
An entry may also name ``lent``: the full backup that holds the object in its own dir and
lends it (lending.py); the object is there while that backup holds it, else at ``pool``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..format import meta, untrusted
from ..storage.location import BucketNotFound, NotFound, in_parallel
from .catalog import MANIFEST, Stores, backup_dir, backup_storage_errors
from .pool import ALGOS, POOL_DIR, list_rels, parse_pool_key, pool_root, under_root

MANIFEST_KEY = f"{meta.META_DIR}/{MANIFEST}"

# As backup.write_meta writes it.
SHAPE = untrusted.Obj(
    {"checksum_algo": untrusted.OneOf(*ALGOS),
     "objects": untrusted.Map(untrusted.Obj(
         {"size": untrusted.Count},
         {"checksum": untrusted.Optional(untrusted.Text(r"[0-9a-f]{1,16}", "a hex checksum")),
          "pool": untrusted.Text(rf"{POOL_DIR}/[^\\\x00]+", "a key in the shared pool"),
          "etag": untrusted.Optional(str),
          "lent": untrusted.Text(meta.NAME_PATTERN.pattern, "a backup name")}),
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
        elif "lent" in entry:
            raise ValueError(f"objects[{rel!r}] is lent by {entry['lent']!r} but names no pool key")
    return manifest


def read(stores: Stores, name: str) -> dict[str, Any] | None:
    """Backup ``name``'s manifest; None when it has none (a backup made by the Go tool).
    ValueError when it is damaged."""
    key = f"{backup_dir(stores, name)}/{MANIFEST_KEY}"
    with backup_storage_errors(stores):
        try:
            data = stores.backup.read(key)
        except BucketNotFound:
            raise
        except NotFound:  # one round trip, not a HEAD and then a GET
            return None
        return parse(data)


@dataclass(frozen=True)
class Place:
    """Where one object of an incremental backup is now."""

    key: str  # its bucket key: the lender's copy while there, else the pool's
    size: int | None  # as listed there; None: listed in neither place (only when ``listed``)
    pool: str  # its pool key, relative to the root
    lender: str | None = None  # the backup that lends it, if any


def locate(stores: Stores, manifest: dict[str, Any] | None, listed: bool = False) -> dict[str, Place]:
    """Where each object of the manifest that is not under its own backup dir is, by key
    relative to the backup dir; {} for a full backup. A lent object is the lender's copy while
    the lender lists it with its size, else the pool's (lending.py). ``listed``: list the pool
    too, so that ``size`` says whether the object is there (one LIST per collection prefix)."""
    if manifest is None:
        return {}
    entries = {rel: e for rel, e in manifest["objects"].items() if "pool" in e}
    root = stores.backup_root
    lent_by = sorted({e["lent"] for e in entries.values() if "lent" in e})
    folders = [(backup_dir(stores, lender), [rel for rel, e in entries.items() if e.get("lent") == lender])
               for lender in lent_by] + ([(pool_root(root), list(entries))] if listed else [])
    found = in_parallel(lambda folder: list_rels(stores.backup, *folder), folders)  # every LIST at once
    lenders = dict(zip(lent_by, found, strict=False))
    pool = found[-1] if listed else {}
    out = {}
    for rel, e in entries.items():
        in_pool = under_root(root, e["pool"])
        lender = e.get("lent")
        if lender is not None:
            at_lender = f"{backup_dir(stores, lender)}/{rel}"
            if lenders[lender].get(at_lender) == e["size"]:
                out[rel] = Place(at_lender, e["size"], e["pool"], lender)
                continue
        out[rel] = Place(in_pool, pool.get(in_pool), e["pool"], lender)
    return out


def located(stores: Stores, bdir: str, manifest: dict[str, Any] | None) -> dict[str, str]:
    """Bucket key of each object that does not live at its place in the backup dir (those in the
    pool, or lent by a full backup), by the key the Go layout gives it under ``bdir``; {} for a
    full backup."""
    return {f"{bdir}/{rel}": place.key for rel, place in locate(stores, manifest).items()}
