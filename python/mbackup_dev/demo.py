"""The README's main job on an embedded default: a local S3 (SeaweedFS) and Milvus 2.3.5,
then mbackup doing what it is for, with a summary at the end.

    python -m mbackup_dev.demo [--size 64MiB] [--rows 20000] [--keep]

1. copy: a Milvus-shaped object tree is written to a bucket, copied to another bucket
   (server-side) and to a local folder (streamed), verified byte for byte.
2. backup and restore: a sample collection (partitions, deletes, dynamic fields) is backed
   up with ``mbackup create``, restored under a new name with ``mbackup restore``, and
   every row of the two collections is compared.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from mbackup_dev.devstack import LocalStack, backup_config, scratch_folder
from mbackup_dev.sampletree import write_tree
from milvus_backup.plugins.manager import storage_backends
from milvus_backup.units import format_bytes, parse_size

COLLECTION = "demo_products"


def mbackup(*args: str, env: dict[str, str] | None = None) -> None:
    print(f"\n$ mbackup {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed: mbackup {args[0]} exited {proc.returncode}")


def copy_story(stack: LocalStack, work: Path, size: int) -> list[str]:
    s3 = stack.s3
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    s3.create_bucket("demo-src")
    src = f"s3://demo-src/files?endpoint={s3.endpoint}"
    print(f"writing a Milvus-shaped tree of {format_bytes(size)} to {src.split('?')[0]} ...", flush=True)
    stats = write_tree(storage_backends().open(src, {"aws_access_key_id": s3.access_key, "aws_secret_access_key": s3.secret_key}),
                       size)
    started = time.monotonic()
    mbackup("copy", src, f"s3://demo-copy/files?endpoint={s3.endpoint}", "--parallel", "64", "--verify", env=env)
    bucket_s = time.monotonic() - started
    folder = work / "local-copy"
    started = time.monotonic()
    mbackup("copy", src, str(folder), "--parallel", "64", env=env)
    local_s = time.monotonic() - started
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) == stats.objects and sum(p.stat().st_size for p in files) == stats.bytes
    return [
        f"tree: {stats.objects:,} objects in {stats.segments} segments, {format_bytes(stats.bytes)}",
        f"bucket -> bucket (server-side, verified): {bucket_s:.1f}s",
        f"bucket -> local folder (streamed, crc32c): {local_s:.1f}s, {len(files):,} files match",
    ]


def make_collection(uri: str, rows: int) -> None:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=uri)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("name", DataType.VARCHAR, max_length=64)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=16)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=32)
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 64})
    client.create_collection(COLLECTION, schema=schema, index_params=index)
    client.create_partition(COLLECTION, "clearance")
    rng = random.Random(42)
    batch = max(rows // 4, 1)
    for start in range(0, rows, batch):  # several flushes: several segments
        data = [{"id": i, "name": f"product {i}", "price": round(rng.uniform(1, 500), 2),
                 "tags": rng.sample(["red", "blue", "new", "sale", "eco"], 2),
                 "embedding": [rng.random() for _ in range(32)], "stock": rng.randint(0, 99)}
                for i in range(start, min(start + batch, rows))]
        client.insert(COLLECTION, data, partition_name="clearance" if start // batch % 2 else "_default")
        client.flush(COLLECTION)
    client.delete(COLLECTION, ids=list(range(0, rows, 97)))  # deleted rows must stay deleted
    client.flush(COLLECTION)
    client.close()


def all_rows(uri: str, name: str) -> dict[int, dict]:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    client.load_collection(name)
    out: dict[int, dict] = {}
    last = -1
    while True:  # page by primary key: query windows are capped at 16,384 rows
        page = client.query(name, filter=f"id > {last}", output_fields=["*"], limit=10_000)
        if not page:
            break
        for row in page:
            out[row["id"]] = row
        last = max(r["id"] for r in page)
    client.close()
    return out


def backup_story(stack: LocalStack, work: Path, rows: int) -> list[str]:
    cluster = stack.source
    make_collection(cluster.uri, rows)
    config = work / "backup.yaml"
    config.write_text(backup_config(cluster, backup_bucket="backups"))
    cfg = ["--config", str(config)]
    started = time.monotonic()
    mbackup("create", *cfg, "-n", "demo_backup", "--filter", COLLECTION)
    backup_s = time.monotonic() - started
    mbackup("list", *cfg)
    started = time.monotonic()
    mbackup("restore", *cfg, "-n", "demo_backup", "--suffix", "_restored", "--rebuild-index", "--load")
    restore_s = time.monotonic() - started
    original = all_rows(cluster.uri, COLLECTION)
    restored = all_rows(cluster.uri, COLLECTION + "_restored")
    if original != restored:
        missing = len(original.keys() - restored.keys())
        extra = len(restored.keys() - original.keys())
        raise SystemExit(f"demo failed: rows differ ({missing} missing, {extra} extra)")
    return [
        f"collection: {rows:,} rows inserted in 4 flushes over 2 partitions, "
        f"{rows - len(original):,} deleted, dynamic field 'stock'",
        f"backup {backup_s:.1f}s, restore (with index and load) {restore_s:.1f}s",
        f"{len(restored):,} rows in {COLLECTION}_restored equal to the original, field by field",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="64MiB", help="size of the sample object tree (default 64MiB)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows in the sample collection")
    parser.add_argument("--keep", action="store_true", help="keep the stack's data directory")
    args = parser.parse_args()
    summary: list[str] = []
    with scratch_folder("demo", args.keep) as work:
        print(f"starting SeaweedFS and Milvus 2.3.5 in {work} ...", flush=True)
        with LocalStack(work / "stack", clusters=1) as stack:
            summary += copy_story(stack, work, parse_size(args.size))
            summary += backup_story(stack, work, args.rows)
    print("\nsummary")
    for line in summary:
        print(f"  {line}")


if __name__ == "__main__":
    main()
