"""The shared object pool of a backup root: where incremental backups keep their binlogs once.

A backup made with ``create --incremental`` copies no binlog under its own dir: each lives
once in ``<root>/.mbackup-pool/``, named by what proves it is the same object (its key
relative to a backup dir in the Go layout, its size and its checksum), and the backup's
manifest (version 2) names the pool key of every object it holds. Milvus never rewrites a
binlog (its key carries the collection, partition, segment, field and log ids), so the same
rel, size and checksum is the same object; anything else is a new one.

The pool's name cannot be a backup's (names are ``[A-Za-z0-9_]``), so every walk over the
backups of a root skips it. Who may delete from it, and when, is prune's business: an object
is referenced while any complete backup's manifest or any in-progress marker's
``pool_refs`` names it.

An increment on a full backup does not copy that backup's binlogs here: it borrows them in
place (a *lent* reference, see lending.py), and they move here only when that backup goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..format import untrusted
from ..storage.location import in_parallel

if TYPE_CHECKING:
    from ..storage.location import Location

POOL_DIR = ".mbackup-pool"
ALGOS = ("crc32c", "crc64nvme")
# What a create in progress lists in its marker, so that prune spares what it will reference.
POOL_REFS = "pool_refs"
# What it lists of what it borrows: {lender backup name: [pool keys]} (see lending.py).
LENT_REFS = "lent_refs"

_KEY = re.compile(rf"{re.escape(POOL_DIR)}/(?P<rel>.+)~(?P<size>0|[1-9][0-9]*)~(?P<algo>{'|'.join(ALGOS)})"
                  r"-(?P<checksum>[0-9a-f]+)")


def pool_key(rel: str, size: int, algo: str, checksum: str) -> str:
    """``.mbackup-pool/<rel>~<size>~<algo>-<checksum>``, relative to the backup root."""
    if algo not in ALGOS:
        raise ValueError(f"unknown checksum algorithm {algo!r}")
    if not re.fullmatch(r"[0-9a-f]+", checksum) or size < 0 or not rel or rel.startswith("/"):
        raise ValueError(f"no pool key for {rel!r} ({size} bytes, checksum {checksum!r})")
    return f"{POOL_DIR}/{rel}~{size}~{algo}-{checksum}"


def parse_pool_key(key: str) -> tuple[str, int, str, str]:
    """(rel, size, algo, checksum) of a pool key relative to the root; ValueError if it is not one."""
    m = _KEY.fullmatch(key)
    if m is None:
        raise ValueError(f"{key!r} is not a pool key ({POOL_DIR}/<rel>~<size>~<algo>-<checksum>)")
    return m["rel"], int(m["size"]), m["algo"], m["checksum"]


def marker_refs(data: bytes) -> list[str]:
    """The pool keys an in-progress marker lists (``pool_refs``; none when it lists none);
    ValueError when they are not pool keys."""
    marker = untrusted.load_json(data, 1 << 30)
    return _keys(marker.get(POOL_REFS, []) if isinstance(marker, dict) else None, POOL_REFS)


def marker_lent(data: bytes) -> dict[str, list[str]]:
    """What an in-progress marker lists as borrowed (``lent_refs``): pool keys by lender;
    ValueError when it is not that."""
    marker = untrusted.load_json(data, 1 << 30)
    lent = marker.get(LENT_REFS, {}) if isinstance(marker, dict) else None
    if not isinstance(lent, dict):
        raise ValueError(f"{LENT_REFS} is not a map of backup names to pool keys")
    return {str(lender): _keys(keys, f"{LENT_REFS}[{lender!r}]") for lender, keys in lent.items()}


def _keys(listed: object, what: str) -> list[str]:
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise ValueError(f"{what} is not a list of pool keys")
    for key in listed:
        parse_pool_key(key)
    return listed


def pool_root(backup_root: str) -> str:
    """The pool's prefix in the backup bucket (no trailing slash)."""
    return f"{backup_root}/{POOL_DIR}" if backup_root else POOL_DIR


def under_root(backup_root: str, key: str) -> str:
    """A key relative to the backup root (a pool key) as a bucket key."""
    return f"{backup_root}/{key}" if backup_root else key


def list_pool(backup: Location, backup_root: str, refs: Iterable[str]) -> dict[str, int]:
    """Size of each pool object (by pool key) under the collection prefixes ``refs`` use:
    one LIST per ``binlogs/<kind>/<collection>`` prefix, not one HEAD per object."""
    return list_pool_rels(backup, backup_root, (parse_pool_key(r)[0] for r in refs))


def list_pool_rels(backup: Location, backup_root: str, rels: Iterable[str]) -> dict[str, int]:
    """Size of each pool object (by pool key) under the collection prefixes of ``rels`` (keys
    relative to a backup dir), whatever their checksums."""
    cut = len(backup_root) + 1 if backup_root else 0
    listed = list_rels(backup, pool_root(backup_root), rels)
    return {key[cut:]: size for key, size in listed.items()}


def list_rels(backup: Location, folder: str, rels: Iterable[str]) -> dict[str, int]:
    """Size of each object (by bucket key) under ``folder`` in the collection prefixes of
    ``rels`` (keys relative to a backup dir): one LIST per ``binlogs/<kind>/<collection>``."""
    prefixes = sorted({"/".join(rel.split("/")[:3]) for rel in rels})
    return {obj.key: obj.size for listed in in_parallel(lambda prefix: backup.list(f"{folder}/{prefix}/"), prefixes)
            for obj in listed}
