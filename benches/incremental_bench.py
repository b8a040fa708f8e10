"""Nightly incremental backups against full ones on a local stack (issue #12).

    python benches/incremental_bench.py [--rows 500000] [--dim 128] [--cycles 7] [--compact-cycle 4] [--tag T]

Starts SeaweedFS and one Milvus 2.3.5 (mbackup_dev.devstack), inserts ``--rows`` rows in
``--segments`` flushes, takes a full backup, then runs ``--cycles`` cycles of: insert 3% new
rows, delete 1% of the rows, flush (cycle ``--compact-cycle`` also compacts the collection by
hand and waits for it), then ``create --incremental`` and, for comparison, a full backup of
the same state into another root (deleted once measured, the last one kept). Reports per
cycle: the bytes read from Milvus's store (the objects copied out of it), the bytes written
into the backup store (copies from Milvus plus copies into the pool inside the backup store),
the new segments' bytes (binlogs in this backup that the previous one did not hold), wall and
CPU seconds of each create, and the bytes copied into the pool. Then the storage of the full
backup and the increments against one full backup of the last state, restores of the third and
the last increment, checked row by row (every id and every vector) against what the benchmark
inserted and deleted, and the delete of the full backup night_0 (which first moves the binlogs
the increments borrow from it into the pool) with the storage left after it.

Targets (issue #12): an increment reads at most the new segments' bytes + 5%; takes at most
0.25x a full backup's time (the compaction cycle excluded, reported apart); the full backup
and seven increments take at most 1.6x the storage of one full backup.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import re
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib

from mbackup_dev.devstack import LocalStack, SeaweedFS, backup_config, scratch_folder
from milvus_backup.backup.catalog import Stores, collection_segments, open_stores
from milvus_backup.backup.create import CreateRequest, CreateResult, create_backup
from milvus_backup.backup.delete import delete_backup
from milvus_backup.backup.restore import RestoreRequest, restore_backup
from milvus_backup.config.settings import load_config
from milvus_backup.format import meta
from milvus_backup.milvus.connection import MilvusEndpoint, connect
from milvus_backup.plugins.manager import milvus_adapters
from milvus_backup.transfer.copy import CopySettings

NAME = "bench_incremental"
BUCKET = "bench-backups"
BATCH = 5000


def vectors(ids, dim: int):
    """The vector of each id: a function of the id, so every row can be checked without keeping
    it, and as random as real embeddings (a few distinct values would let Milvus's binlog
    encoding shrink them to nothing): splitmix64 of (id, dimension), top 24 bits."""
    import numpy as np

    x = np.asarray(ids, dtype=np.uint64)[:, None] * np.uint64(dim) + np.arange(dim, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(40)).astype(np.float64) / float(1 << 24)).astype(np.float32)


def insert(client, ids: list[int], dim: int) -> None:
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        client.insert(NAME, [{"id": int(i), "vec": v.tolist()} for i, v in zip(chunk, vectors(chunk, dim), strict=True)])


def compact(uri: str) -> tuple[float, int]:
    """A manual compaction, waited for; returns its seconds and how many plans Milvus ran."""
    from pymilvus import Collection, connections

    connections.connect(alias="bench", uri=uri)
    started = time.monotonic()
    coll = Collection(NAME, using="bench")
    coll.compact()
    coll.wait_for_compaction_completed(timeout=1800)
    seconds = time.monotonic() - started
    plans = len(coll.get_compaction_plans().plans)
    connections.disconnect("bench")
    return seconds, plans


def check_rows(uri: str, name: str, live: set[int], dim: int) -> str:
    """Every row of ``name`` against ``live`` (ids) and their vectors: "" when all equal."""
    import numpy as np
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    index = client.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, index)
    client.load_collection(name)
    seen: set[int] = set()
    top = max(live) + 1 if live else 0
    wrong = 0
    for low in range(0, top + 20000, 10000):
        rows = client.query(name, filter=f"id >= {low} and id < {low + 10000}", output_fields=["id", "vec"],
                            limit=16384, consistency_level="Strong")
        if not rows:
            continue
        ids = [r["id"] for r in rows]
        got = np.asarray([r["vec"] for r in rows], dtype=np.float32)
        wrong += int((got != vectors(ids, dim)).any(axis=1).sum())
        seen.update(ids)
    client.drop_collection(name)
    client.close()
    if seen != live or wrong:
        return (f"{len(live - seen)} rows missing, {len(seen - live)} rows that should be gone, "
                f"{wrong} vectors differ")
    return ""


def files(info: meta.BackupInfo) -> dict[str, int]:
    bdir = meta.backup_dir("", info.name)
    return {dst[len(bdir) + 1:]: size for c in info.collection_backups for seg in collection_segments(c)
            for _, dst, size in meta.segment_files(bdir, seg)}


def stored(stores: Stores, prefix: str) -> int:
    return sum(o.size for o in stores.backup.list(prefix))


@dataclass
class Timed:
    result: CreateResult
    wall: float
    cpu: float
    span: tuple[float, float]  # wall-clock start and end (time.time()), to match the store's log

    @property
    def read_from_milvus(self) -> int:
        return self.result.copy.bytes_copied if self.result.copy else 0

    @property
    def written(self) -> int:
        inc = self.result.increment
        return self.read_from_milvus + (inc.pooled_bytes if inc else 0) + meta_bytes(self.result)


def meta_bytes(result: CreateResult) -> int:
    return sum(len(v) for v in meta.write_meta_files(result.info).values())


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(run) -> Timed:
    start, wall, cpu = time.time(), time.monotonic(), cpu_seconds()
    result = run()
    return Timed(result, time.monotonic() - wall, cpu_seconds() - cpu, (start, time.time()))


_GROW = re.compile(r"^I(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d+) \S+ volume grow ")


def volume_growths(weed_log: Path) -> list[float]:
    """When SeaweedFS grew a volume (its log: a write that finds its collection's volumes full
    waits for a new one), as time.time() values: a create that meets one is slowed by the
    store, not by its own work."""
    year = dt.date.today().year
    out = []
    for line in weed_log.read_text(errors="replace").splitlines():
        if m := _GROW.match(line):
            month, day, h, mi, s, frac = m.groups()
            at = dt.datetime(year, int(month), int(day), int(h), int(mi), int(s), int(frac[:6].ljust(6, "0")))
            out.append(at.timestamp())  # the log is in local time, as time.time() is read here
    return out


def grown_during(t: Timed, growths: list[float]) -> int:
    return sum(1 for g in growths if t.span[0] <= g <= t.span[1])


PHASES = ("metadata", "flush", "discover", "copy", "meta")


def phase_seconds(t: Timed) -> str:
    """Where a create's wall time went: its phases, and the rest (connecting, the lock, the marker; what ran
    beside the flush is not counted twice)."""
    ph = t.result.phases
    # metadata and flush run while the create finds its base and takes its lock: that part is not waited for
    rest = t.wall - sum(ph.get(p, 0.0) for p in PHASES) + t.result.overlapped
    return " / ".join(f"{ph.get(p, 0.0):.2f}" for p in PHASES) + f" / {rest:.2f}"


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--segments", type=int, default=8, help="flushes of the initial rows")
    parser.add_argument("--cycles", type=int, default=7)
    parser.add_argument("--compact-cycle", type=int, default=4, help="the cycle that also compacts (0: none)")
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--note", default="", help="a line on the conditions of the run, shown with the table")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (servers' data, logs)")
    parser.add_argument("--volume-mib", type=int, default=30_000,
                        help="SeaweedFS's volume size limit, MiB (its own default; with the test stack's 256 a write "
                             "waits for a new volume every 256 MiB a bucket takes in)")
    parser.add_argument("--tag", default="", help="results/incremental-<rows>-<tag>-<date>.md: keep another run's file")
    args = parser.parse_args()
    benchlib.clean_commit()  # refuse before measuring anything a table could not name
    rng = random.Random(12)
    rows_out: list[list[str]] = []
    phases_out: list[list[str]] = []
    failures: list[str] = []
    with (scratch_folder("incbench", args.keep) as work,
          LocalStack(work / "stack", clusters=1, s3=SeaweedFS(work / "stack" / "seaweedfs",
                                                             volume_size_limit_mb=args.volume_mib)) as stack):
        cluster = stack.source
        from pymilvus import DataType, MilvusClient

        client = MilvusClient(uri=cluster.uri)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=args.dim)
        client.create_collection(NAME, schema=schema, num_shards=1)
        live: list[int] = []
        next_id = 0
        per = args.rows // args.segments
        t = time.monotonic()
        for _ in range(args.segments):
            ids = list(range(next_id, next_id + per))
            insert(client, ids, args.dim)
            client.flush(NAME)
            live += ids
            next_id += per
        insert_s = time.monotonic() - t
        stack.s3.create_bucket(BUCKET)
        stack.s3.request("PUT", BUCKET, "warm-up", body=b"x")  # a new bucket's first write: not a backup's cost
        stack.s3.request("DELETE", BUCKET, "warm-up")
        opened = {}
        for root in ("incremental", "full"):  # the full backups apart: never an increment's base
            (work / f"{root}.yaml").write_text(backup_config(cluster, backup_bucket=BUCKET, backup_root=root))
            opened[root] = open_stores(load_config(str(work / f"{root}.yaml")))
        inc_stores, cmp_stores = opened["incremental"], opened["full"]
        settings = CopySettings(parallel=args.parallel)
        endpoint = MilvusEndpoint(host=cluster.host, port=cluster.port,
                                  management_endpoint=f"http://{cluster.host}:{cluster.metrics_port}")
        adapter = connect(endpoint, milvus_adapters())
        first = timed(lambda: create_backup(adapter, inc_stores, CreateRequest(name="night_0", filters=[NAME]), settings))
        previous = files(first.result.info)
        truths: dict[int, set[int]] = {}
        compaction_s, plans = 0.0, 0
        last_full: str | None = None
        spans: list[tuple[Timed, Timed]] = []
        for cycle in range(1, args.cycles + 1):
            added = list(range(next_id, next_id + args.rows * 3 // 100))
            next_id += len(added)
            insert(client, added, args.dim)
            gone = rng.sample(live, args.rows // 100)
            client.delete(NAME, ids=gone)
            live = sorted(set(live) - set(gone)) + added
            client.flush(NAME)
            compacted = cycle == args.compact_cycle
            if compacted:
                compaction_s, plans = compact(cluster.uri)
            truths[cycle] = set(live)
            inc = timed(lambda c=cycle: create_backup(adapter, inc_stores, CreateRequest(
                name=f"night_{c}", filters=[NAME], incremental=True), settings))
            full = timed(lambda c=cycle: create_backup(adapter, cmp_stores, CreateRequest(
                name=f"full_{c}", filters=[NAME]), settings))
            if last_full:
                delete_backup(cmp_stores, last_full)
            last_full = f"full_{cycle}"
            now = files(inc.result.info)
            new_segments = sum(size for rel, size in now.items() if previous.get(rel) != size)
            previous = now
            summary = inc.result.increment.summary() if inc.result.increment else {}
            read = inc.read_from_milvus
            segments = sum(1 for c in inc.result.info.collection_backups for _ in collection_segments(c))
            inc_copy, full_copy = inc.result.phases.get("copy", 0.0), full.result.phases.get("copy", 0.0)
            rows_out.append([
                f"{cycle}{' (compaction)' if compacted else ''}", str(segments), f"{summary.get('objects_new', 0):,}",
                f"{summary.get('objects_shared', 0):,}", mib(new_segments), mib(read),
                f"{read / new_segments:.2f}" if new_segments else "-", mib(inc.written),
                mib(summary.get("bytes_copied_into_pool", 0)), f"{inc.wall:.1f}",
                f"{inc_copy:.2f}", f"{inc.cpu:.1f}", mib(full.read_from_milvus), mib(full.written), f"{full.wall:.1f}",
                f"{full_copy:.2f}", f"{full.cpu:.1f}", f"{inc.wall / full.wall:.2f}",
                f"{inc_copy / full_copy:.2f}" if full_copy else "-"])
            phases_out.append([rows_out[-1][0], *(phase_seconds(t) for t in (inc, full))])
            spans.append((inc, full))
            if new_segments and read > new_segments * 1.05:
                failures.append(f"cycle {cycle}: read {read:,} bytes, more than the new segments' {new_segments:,} + 5%")
        growths = volume_growths(stack.s3.log_path)
        for row, (inc, full) in zip(phases_out, spans, strict=True):
            row += [str(grown_during(inc, growths)), str(grown_during(full, growths))]
        first_dir = stored(inc_stores, "incremental/night_0/")
        increments = stored(inc_stores, "incremental/") - first_dir  # the pool and the increments' dirs
        one_full = stored(cmp_stores, f"full/{last_full}/")
        restores = []
        for cycle in sorted({min(3, args.cycles), args.cycles}):
            t = time.monotonic()
            restore_backup(adapter, inc_stores, RestoreRequest(name=f"night_{cycle}", suffix=f"_r{cycle}"), settings)
            seconds = time.monotonic() - t
            problem = check_rows(cluster.uri, f"{NAME}_r{cycle}", truths[cycle], args.dim)
            restores.append(f"| night_{cycle} | {len(truths[cycle]):,} | {seconds:.1f} | "
                            f"{problem or 'every row equal (ids and vectors)'} |")
            if problem:
                failures.append(f"restore of night_{cycle}: {problem}")
        # The full base goes: what the increments borrow from it moves into the pool first.
        pool_before = stored(inc_stores, "incremental/.mbackup-pool/")
        t = time.monotonic()
        delete_backup(inc_stores, "night_0")
        delete_s, moved = time.monotonic() - t, stored(inc_stores, "incremental/.mbackup-pool/") - pool_before
        after_delete = stored(inc_stores, "incremental/")
        t = time.monotonic()
        restore_backup(adapter, inc_stores, RestoreRequest(name=f"night_{args.cycles}", suffix="_after"), settings)
        seconds = time.monotonic() - t
        problem = check_rows(cluster.uri, f"{NAME}_after", truths[args.cycles], args.dim)
        restores.append(f"| night_{args.cycles}, night_0 deleted | {len(truths[args.cycles]):,} | {seconds:.1f} | "
                        f"{problem or 'every row equal (ids and vectors)'} |")
        if problem:
            failures.append(f"restore of night_{args.cycles} after night_0's delete: {problem}")
        adapter.close()
        client.close()
    m = benchlib.machine()
    ratio = (first_dir + increments) / one_full if one_full else float("nan")
    # The unrounded ratios: the table's two decimals would pass 0.254 as 0.25.
    timing = [inc.wall / full.wall for r, (inc, full) in zip(rows_out, spans, strict=True) if "compaction" not in r[0]]
    lines = [
        f"# Incremental backup benchmark, {dt.date.today().isoformat()}",
        "",
        f"Machine: {platform.machine()}, {m['nproc']} cores, {m['memory']}, load average at the end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}; SeaweedFS and "
        "Milvus 2.3.5 (embedded) on the same machine, loopback." + (f" {args.note}" if args.note else ""),
        f"Collection: {args.rows:,} rows x {args.dim}-dim float vectors in {args.segments} flushes (inserted in "
        f"{insert_s:.0f} s); a full backup (night_0: {mib(first.result.info.size)} MiB, {first.wall:.1f} s); then "
        f"{args.cycles} cycles of +3% rows, -1% rows, flush"
        + (f", cycle {args.compact_cycle} with a manual compaction ({compaction_s:.1f} s, {plans} plans)" if args.compact_cycle else "")
        + f", each followed by `create --incremental` and a full backup of the same state; --parallel {args.parallel}.",
        "Bytes read = bytes of the objects copied out of Milvus's bucket (server-side copies within SeaweedFS "
        "count too); written = those, plus copies into the pool inside the backup store (into pool), plus meta. Wall "
        "seconds "
        "are noisy on a shared machine; CPU seconds (this process, engine threads included) and bytes are not.",
        "",
        benchlib.markdown_table(
            ["cycle", "segments", "new objects", "shared objects", "new segments MiB", "incr. read MiB", "read / new",
             "incr. written MiB", "incr. into pool MiB", "incr. s", "incr. copy s", "incr. CPU s", "full read MiB", "full written MiB",
             "full s", "full copy s", "full CPU s", "incr. s / full s", "incr. copy / full copy"], rows_out),
        "",
        "Where the time went, seconds: " + " / ".join(PHASES) + " / the rest (connecting, "
        "the lock, the in-progress marker, finding the base). Volumes grown: how many new volumes SeaweedFS "
        "created while the create ran (its log: a write that finds its bucket's volumes full waits for a new one, "
        f"the store's pause, not the create's work; volumes here hold up to {args.volume_mib:,} MiB, --volume-mib).",
        "",
        benchlib.markdown_table(["cycle", "increment", "full", "volumes grown, increment", "volumes grown, full"],
                                phases_out),
        "",
        f"Storage: the full backup night_0 ({mib(first_dir)} MiB, the binlogs the increments borrow included) and the "
        f"{args.cycles} increments (the pool and their dirs, {mib(increments)} MiB) take {mib(first_dir + increments)} MiB; "
        f"one full backup of the last state {mib(one_full)} MiB; ratio {ratio:.2f} (target at most 1.6) -> "
        f"{'met' if ratio <= 1.6 else 'NOT met'}. Deleting night_0 (mbackup delete) took {delete_s:.1f} s and moved "
        f"{mib(moved)} MiB it lent into the pool (server-side); the increments then take {mib(after_delete)} MiB "
        f"({after_delete / one_full:.2f}x one full backup).",
        f"Increment time / full time, compaction cycle excluded: at most {max(timing):.3f} (target 0.25) -> "
        f"{'met' if timing and max(timing) <= 0.25 else 'NOT met'}; the copy phases alone: see the last column "
        "(the rest of a create, Milvus's flush, listing and meta, costs the same for both)." if timing else "",
        "",
        "| restored | rows | seconds | check |",
        "|---|---:|---:|---|",
        *restores,
        "",
        *(f"FAILED: {f}" for f in failures),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    out = benchlib.write_result(f"incremental-{args.rows}" + (f"-{args.tag}" if args.tag else ""), text,
                                "incremental_bench.py")
    print(f"written to {out}", file=sys.stderr)
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
