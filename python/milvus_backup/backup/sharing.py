"""What a backup's objects are, by what makes two of them the same: the key relative to the
backup dir (the Go layout), the size and the checksum its manifest records. Two backups
holding an object with the same three hold the same bytes (Milvus never rewrites a binlog);
in the shared pool they hold one copy of it.

Read from mbackup's manifest through manifest.py (version 2 entries also name their
``pool`` key). A backup without one (made by the Go tool) is described by its meta:
key and size, no checksum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError
from ..format import meta
from . import manifest as manifests
from .catalog import Stores, backup_dir, collection_segments
from .pool import under_root


@dataclass(frozen=True)
class StoredObject:
    rel: str  # key relative to the backup dir, in the Go layout
    size: int
    checksum: str | None  # as the manifest records it; None without a manifest
    pool: str | None = None  # its pool key (relative to the root) when it lives in the pool or is lent
    lent: str | None = None  # the full backup that lends it (lending.py)

    @property
    def identity(self) -> tuple[str, int, str | None]:
        return (self.rel, self.size, self.checksum)


def stored_objects(manifest: dict[str, Any]) -> dict[str, StoredObject]:
    """The objects a manifest (as manifest.parse checked it) lists."""
    return {rel: StoredObject(rel, e["size"], e.get("checksum"), e.get("pool"), e.get("lent"))
            for rel, e in manifest["objects"].items()}


def manifest_objects(stores: Stores, name: str) -> dict[str, StoredObject] | None:
    """Backup ``name``'s objects as its manifest lists them; None when it has no manifest."""
    try:
        found = manifests.read(stores, name)
    except ValueError as e:
        raise IntegrityError(f"{stores.backup_url(name)}/{manifests.MANIFEST_KEY} is damaged ({e}): "
                             f"mbackup verify -n {name} says more") from None
    return None if found is None else stored_objects(found)


def segment_objects(info: meta.BackupInfo, listed: dict[str, StoredObject] | None
                    ) -> dict[int, list[StoredObject]]:
    """Every binlog of every segment (by segment id), as the manifest lists it, else by its
    meta (key and size)."""
    out: dict[int, list[StoredObject]] = {}
    for coll in info.collection_backups:
        for seg in collection_segments(coll):
            files = out.setdefault(seg.segment_id, [])
            for _, dst, size in meta.segment_files("b", seg):
                rel = dst[2:]  # relative to the backup dir "b"
                files.append(listed[rel] if listed and rel in listed else StoredObject(rel, size, None))
    return out


def object_key(stores: Stores, name: str, obj: StoredObject) -> str:
    """Where ``obj`` of backup ``name`` is stored: at the backup that lends it while it holds
    it, else in the pool; or under the backup dir."""
    if obj.lent is not None:
        at_lender = f"{backup_dir(stores, obj.lent)}/{obj.rel}"
        if stores.backup.head(at_lender) is not None:
            return at_lender
    return under_root(stores.backup_root, obj.pool) if obj.pool else f"{backup_dir(stores, name)}/{obj.rel}"


@dataclass(frozen=True)
class Footprint:
    """What a backup holds alone (``own``: what forgetting it, then prune, frees) and what it
    shares with other backups (``shared``: pool objects another backup's manifest names too)."""

    own: int
    shared: int


def footprints(stores: Stores, infos: dict[str, meta.BackupInfo]) -> dict[str, Footprint]:
    """The footprint of each complete backup of ``infos``, from the manifests (one read each).
    A copy is shared when more than one backup holds it: a pool object two manifests name, or
    a full backup's binlog an increment borrows (forgetting either frees nothing of it: a
    lender's delete moves it into the pool). One without a manifest holds its meta's size alone."""
    listed: dict[str, dict[str, StoredObject] | None] = {}
    for name in infos:
        try:
            listed[name] = manifest_objects(stores, name)
        except IntegrityError:
            continue  # its footprint is unknown; list shows the backup all the same

    def copy(name: str, o: StoredObject) -> tuple[str, ...]:
        """Which stored copy ``o`` of backup ``name`` is."""
        if o.lent is not None and o.lent in listed:
            return (o.lent, o.rel)
        return (o.pool,) if o.pool else (name, o.rel)

    holders: dict[tuple[str, ...], int] = {}
    for name, objects in listed.items():
        for held in {copy(name, o) for o in (objects or {}).values()}:
            holders[held] = holders.get(held, 0) + 1
    out = {}
    for name, objects in listed.items():
        if objects is None:
            out[name] = Footprint(infos[name].size, 0)
            continue
        shared = sum(o.size for o in objects.values() if holders[copy(name, o)] > 1)
        out[name] = Footprint(sum(o.size for o in objects.values()) - shared, shared)
    return out
