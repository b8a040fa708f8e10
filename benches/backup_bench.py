"""Back up and restore a 200,000-row x 128-dim collection on a local stack and report
where the time goes (issue #3 §10).

    python benches/backup_bench.py [--rows 200000] [--dim 128] [--segments 8]

Starts SeaweedFS and one Milvus 2.3.5 (mbackup_dev.devstack), inserts the rows in
``--segments`` flushes, then times ``create`` (phases: metadata, flush, discover, copy, meta)
and ``restore`` (into the same cluster under a new name), checks the restored row count,
and writes a markdown table to benches/results/backup-<date>.md.

Target: planning and meta (everything but the copy) add at most 20% to the copy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import sys
import time

import benchlib

from mbackup_dev.devstack import LocalStack, backup_config, scratch_folder
from milvus_backup.backup.catalog import open_stores
from milvus_backup.backup.create import CreateRequest, create_backup
from milvus_backup.backup.restore import RestoreRequest, restore_backup
from milvus_backup.config.settings import load_config
from milvus_backup.milvus.connection import MilvusEndpoint, connect
from milvus_backup.plugins.manager import milvus_adapters
from milvus_backup.transfer.copy import CopySettings

NAME = "bench_vectors"


def populate(uri: str, rows: int, dim: int, segments: int) -> float:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=uri)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("label", DataType.VARCHAR, max_length=32)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection(NAME, schema=schema)
    rng = random.Random(1)
    started = time.monotonic()
    per_segment = rows // segments
    for s in range(segments):
        for start in range(s * per_segment, (s + 1) * per_segment, 5000):
            end = min(start + 5000, (s + 1) * per_segment)
            client.insert(NAME, [{"id": i, "label": f"l{i % 1000}", "vec": [rng.random() for _ in range(dim)]}
                                 for i in range(start, end)])
        client.flush(NAME)
    client.close()
    return time.monotonic() - started


def count(uri: str, name: str) -> int:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    index = client.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_index(name, index)
    client.load_collection(name)
    n = client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]
    client.close()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (servers' data, logs)")
    args = parser.parse_args()
    benchlib.clean_commit()  # refuse before measuring anything a table could not name
    with scratch_folder("bench", args.keep) as work, LocalStack(work / "stack", clusters=1) as stack:
        cluster = stack.source
        insert_s = populate(cluster.uri, args.rows, args.dim, args.segments)
        (work / "backup.yaml").write_text(backup_config(cluster, backup_bucket="bench-backups"))
        # SeaweedFS sets up a new bucket's storage on its first write (0.2 s here): a one-time
        # cost of the bucket, not of a backup, so it is paid before timing.
        stack.s3.create_bucket("bench-backups")
        stack.s3.request("PUT", "bench-backups", "warm-up", body=b"x")
        stack.s3.request("DELETE", "bench-backups", "warm-up")
        cfg = load_config(str(work / "backup.yaml"))
        stores = open_stores(cfg)
        settings = CopySettings(parallel=args.parallel)
        endpoint = MilvusEndpoint(host=cluster.host, port=cluster.port,
                                  management_endpoint=f"http://{cluster.host}:{cluster.metrics_port}")
        adapter = connect(endpoint, milvus_adapters())
        result = create_backup(adapter, stores, CreateRequest(name="bench", filters=[NAME]), settings)
        started = time.monotonic()
        restored = restore_backup(adapter, stores, RestoreRequest(name="bench", suffix="_restored"), settings)
        restore_s = time.monotonic() - started
        rows_back = count(cluster.uri, NAME + "_restored")
        adapter.close()
    phases = dict(result.phases)
    copy_s = phases.get("copy", 0.0)
    # Flushing is Milvus sealing its own segments, not mbackup's planning: shown, not counted.
    phases["other (connect-free setup: lock, marker, GC-pause probe)"] = result.seconds - sum(phases.values())
    other = result.seconds - copy_s - phases.get("flush", 0.0)
    objects = len(result.copy.results) if result.copy else 0
    share = other / copy_s if copy_s else float("nan")
    lines = [
        f"# Backup and restore benchmark, {dt.date.today().isoformat()}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "SeaweedFS (weed mini) and Milvus 2.3.5 (embedded) on the same machine, loopback.",
        f"Collection: {args.rows:,} rows x {args.dim}-dim float vectors + varchar, {args.segments} flushes "
        f"(insert took {insert_s:.1f} s); backup to a second bucket of the same SeaweedFS, --parallel {args.parallel}.",
        "Measured by benches/backup_bench.py (one run; wall-clock of each phase inside mbackup). The backup "
        "bucket existed before the run: SeaweedFS's first write into a new bucket costs about 0.2 s, once.",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| create: {k} | {v:.2f} |" for k, v in phases.items()],
        f"| create: total | {result.seconds:.2f} |",
        f"| restore (stage + import, {restored.collections[0]['import_jobs']} jobs) | {restore_s:.2f} |",
        "",
        f"Backup size {result.info.size / 2**20:.1f} MiB in {objects} objects; "
        f"{sum(len(p.segment_backups) for c in result.info.collection_backups for p in c.partition_backups)} segments; "
        f"rows after restore: {rows_back:,} (expected {args.rows:,}).",
        "",
        f"Planning and meta (create total minus copy and Milvus's flush): {other:.2f} s = {share:.0%} of the "
        f"copy's {copy_s:.2f} s "
        f"(target: at most 20%) -> {'met' if share <= 0.20 else 'NOT met'}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = benchlib.write_result("backup", text, "backup_bench.py")
    print(f"written to {out}", file=sys.stderr)
    if rows_back != args.rows:
        raise SystemExit("restored row count differs")


if __name__ == "__main__":
    main()
