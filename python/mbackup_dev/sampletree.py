"""A synthetic object tree shaped like a Milvus bucket, for the demo and the benchmarks.

Milvus 2.3 keeps ``<root>/insert_log/<coll>/<part>/<seg>/<field>/<log>`` (one object per
field per flushed binlog, fields 0 and 1 are row id and timestamp), plus small delta and
stats logs per segment. Sizes here follow what flushed segments look like: insert logs from
8 KiB to 16 MiB (vector fields largest), delta and stats logs of 1 to 8 KiB.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from milvus_backup import _engine
from milvus_backup.storage.location import Location

KIB, MIB = 1024, 1024 * 1024
# Field id -> share of a segment's insert bytes (vectors dominate real collections).
FIELDS = {0: 0.04, 1: 0.04, 100: 0.04, 101: 0.08, 102: 0.80}


@dataclass
class TreeStats:
    objects: int
    bytes: int
    segments: int


def plan_tree(total_bytes: int, root: str = "files", seed: int = 7,
              collection: int = 446000000000000001, partitions: int = 2) -> list[tuple[str, int]]:
    """(key, size) for every object of a tree of about ``total_bytes``."""
    rng = random.Random(seed)
    objects: list[tuple[str, int]] = []
    made, seg = 0, 446000000000100000
    while made < total_bytes:
        seg += 1
        part = 446000000000000010 + seg % partitions
        # A segment's size is log-uniform between 128 KiB and 20 MiB.
        seg_bytes = int(2 ** rng.uniform(17, 24.3))
        log = seg * 10
        for field, share in FIELDS.items():
            size = max(8 * KIB, min(16 * MIB, int(seg_bytes * share)))
            log += 1
            objects.append((f"{root}/insert_log/{collection}/{part}/{seg}/{field}/{log}", size))
            made += size
        for kind in ("delta_log", "stats_log"):
            log += 1
            size = rng.randint(1 * KIB, 8 * KIB)
            key = (f"{root}/delta_log/{collection}/{part}/{seg}/{log}" if kind == "delta_log"
                   else f"{root}/stats_log/{collection}/{part}/{seg}/100/{log}")
            objects.append((key, size))
            made += size
    return objects


def plan_small(count: int, root: str = "files", seed: int = 7) -> list[tuple[str, int]]:
    """``count`` objects of 1 to 64 KiB, the shape of delta logs and small segments' logs."""
    rng = random.Random(seed)
    return [(f"{root}/delta_log/446000000000000001/446000000000000011/{446000000000100000 + i // 100}/{i}",
             rng.randint(1 * KIB, 64 * KIB)) for i in range(count)]


def plan_huge(count: int, size: int, root: str = "files") -> list[tuple[str, int]]:
    """``count`` objects of ``size`` bytes each, the shape of a few huge vector binlogs."""
    return [(f"{root}/insert_log/446000000000000001/446000000000000011/446000000000100001/102/{i}", size)
            for i in range(count)]


def write_tree(target: Location, total_bytes: int, *, seed: int = 7, parallel: int = 64) -> TreeStats:
    """Write the tree under ``target``. Bytes are random (incompressible) and staged in
    memory one batch at a time, then written by the engine in parallel."""
    objects = plan_tree(total_bytes, seed=seed)
    write_objects(target, objects, seed=seed, parallel=parallel)
    segments = len({k.split("/")[4] for k, _ in objects if "/insert_log/" in k})
    return TreeStats(len(objects), sum(s for _, s in objects), segments)


def write_objects(target: Location, objects: list[tuple[str, int]], *, seed: int = 7, parallel: int = 64) -> None:
    """Write random bytes of each (key, size) under ``target``, staged in memory a batch at a time."""
    staging = _engine.Store(f"memory://sampletree-{os.getpid()}-{seed}")
    batch: list[tuple[str, int]] = []
    budget, used = 256 * MIB, 0
    copier = _engine.Copier(parallel=parallel, checksum="none")

    def flush() -> None:
        jobs = [(staging, key, target.store, target.key(key), size) for key, size in batch]
        for r in copier.run(jobs):
            if r["error"]:
                raise RuntimeError(f"writing sample object {r['dst_key']}: {r['error']}")
        for key, _ in batch:
            staging.delete(key)
        batch.clear()

    for key, size in objects:
        staging.put(key, os.urandom(size))
        batch.append((key, size))
        used += size
        if used >= budget:
            flush()
            used = 0
    if batch:
        flush()
