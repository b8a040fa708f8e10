"""Copies done the way a user would write them with boto3 or obstore, as programs of their own.

copy_bench.py runs this file in a subprocess (with whichever interpreter has the library),
so the peak memory measured is the library's and not the benchmark's.

    python peer_clients.py --probe boto3            # print the library's version, exit 3 if missing
    python peer_clients.py boto3 '<job as JSON>'    # copy; exit 1 if any object failed

Job: {"direction": "bucket->bucket" | "S3->local" | "local->S3", "parallel": N, "endpoint": ...,
"region": ..., "src": bucket or folder, "dst": bucket or folder}; credentials come from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Only stdlib and the library are imported here.
"""

import json
import os
import sys


def local_files(root):
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            yield os.path.relpath(path, root).replace(os.sep, "/"), path


def run_boto3(job):
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    settings = dict(max_pool_connections=job["parallel"], retries={"max_attempts": 5, "mode": "standard"},
                    s3={"addressing_style": "path"})
    try:
        # boto3 >= 1.36 sends and checks CRCs by default; most S3-compatible stores need this.
        config = Config(request_checksum_calculation="when_required",
                        response_checksum_validation="when_required", **settings)
    except TypeError:
        config = Config(**settings)
    client = boto3.client("s3", endpoint_url=job["endpoint"], region_name=job["region"], config=config)
    direction, src, dst = job["direction"], job["src"], job["dst"]

    if direction == "local->S3":
        work = list(local_files(src))

        def one(item):
            key, path = item
            client.upload_file(path, dst, key)
    else:
        keys = [obj["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=src)
                for obj in page.get("Contents", [])]
        if direction == "bucket->bucket":
            work = keys

            def one(key):
                client.copy_object(Bucket=dst, Key=key, CopySource={"Bucket": src, "Key": key})
        else:
            work = keys

            def one(key):
                path = os.path.join(dst, *key.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                client.download_file(src, key, path)

    errors = []
    with ThreadPoolExecutor(max_workers=job["parallel"]) as pool:
        for item, future in [(item, pool.submit(one, item)) for item in work]:
            try:
                future.result()
            except Exception as e:  # report every failure, keep going like the CLIs do
                errors.append(f"{item}: {e}")
    return len(work), errors


def run_obstore(job):
    import asyncio
    from pathlib import Path

    import obstore as obs
    from obstore.store import S3Store

    def s3(bucket):
        return S3Store(bucket, endpoint=job["endpoint"], region=job["region"],
                       access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                       secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                       virtual_hosted_style_request=False,
                       client_options={"allow_http": job["endpoint"].startswith("http://")})

    direction, src, dst = job["direction"], job["src"], job["dst"]
    # obstore's put streams in 5 MiB chunks as a multipart upload; a small object read
    # whole goes up as one PUT, so only objects above this are streamed.
    stream_above = 5 * 1024 * 1024

    async def main():
        semaphore = asyncio.Semaphore(job["parallel"])
        errors = []

        if direction == "local->S3":
            store = s3(dst)
            work = list(local_files(src))

            async def one(item):
                key, path = item
                await obs.put_async(store, key, Path(path))
        else:
            source = s3(src)
            work = [(meta["path"], meta["size"]) for meta in obs.list(source).collect()]
            if direction == "bucket->bucket":
                # obstore.copy stays inside one store (one bucket): cross-bucket data goes
                # through this process, a GET streamed into a PUT.
                target = s3(dst)

                async def one(item):
                    key, size = item
                    got = await obs.get_async(source, key)
                    if size > stream_above:
                        await obs.put_async(target, key, got)
                    else:
                        await obs.put_async(target, key, await got.bytes_async())
            else:
                async def one(item):
                    key, _ = item
                    path = os.path.join(dst, *key.split("/"))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    got = await obs.get_async(source, key)
                    with open(path, "wb") as f:
                        async for chunk in got.stream(min_chunk_size=8 * 1024 * 1024):
                            f.write(chunk)

        async def guarded(item):
            async with semaphore:
                try:
                    await one(item)
                except Exception as e:
                    errors.append(f"{item[0]}: {e}")

        await asyncio.gather(*(guarded(item) for item in work))
        return len(work), errors

    return asyncio.run(main())


RUNNERS = {"boto3": run_boto3, "obstore": run_obstore}


def main():
    if sys.argv[1] == "--probe":
        try:
            module = __import__(sys.argv[2])
        except ImportError:
            sys.exit(3)
        print(getattr(module, "__version__", "unknown"))
        return
    name, job = sys.argv[1], json.loads(sys.argv[2])
    count, errors = RUNNERS[name](job)
    for error in errors[:20]:
        print(f"failed: {error}", file=sys.stderr)
    print(json.dumps({"objects": count, "failed": len(errors)}))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: obstore 0.12.1 sometimes aborts (SIGABRT) there after many
    # concurrent requests, when all the work is done. The benchmark checks the copy itself.
    os._exit(1 if errors else 0)


if __name__ == "__main__":
    main()
