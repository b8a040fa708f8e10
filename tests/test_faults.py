"""Faults injected into real processes: throttling, dropped and stalled connections, a dead
S3 server, a full disk, a killed create, a killed Milvus (issue #4 §4).

Every case asserts the same contract: the command either completes after retrying or
fails with clear one-line messages (no traceback), a re-run then leaves a complete and
correct result, and the source is never modified. Faults come from tests/faultproxy.py
(a TCP proxy on 127.0.0.1) or from stopping real servers; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import S3_SECRET, record_written, tmpfs
from faultproxy import FaultProxy
from mbackup_dev.devstack import SeaweedFS, s3_request
from milvus_backup import _engine

KIB = 1024


# --- helpers ------------------------------------------------------------------------------

def mbackup(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def url(endpoint: str, bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}"


def fill(s: _engine.Store, objects: dict[str, bytes]) -> None:
    staging = _engine.Store(f"memory://faults-{uuid.uuid4().hex}")
    for k, v in objects.items():
        staging.put(k, v)
    results = _engine.Copier(parallel=64).run([(staging, k, s, k, len(v)) for k, v in objects.items()])
    assert not [r for r in results if r["error"]]


def snapshot(s: _engine.Store, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` with its bytes, keys relative to the prefix."""
    keys = [k for k, _, _ in s.list(prefix)]
    with ThreadPoolExecutor(16) as pool:
        return {k[len(prefix) + 1:]: v for k, v in zip(keys, pool.map(s.get, keys), strict=False)}


def tree(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def assert_clear_failure(proc, codes: tuple[int, ...] = (1, 2, 3)) -> list[str]:
    """A failure exit code (3: the store did not answer), and every line on stderr is one message
    (no traceback, no noise)."""
    assert proc.returncode in codes, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.splitlines()
    assert lines, "a failed command must say why"
    assert "Traceback" not in proc.stderr
    assert all(line.startswith(("error: ", "failed: ", "warning: ")) for line in lines), proc.stderr[-2000:]
    return lines


def completed_or_clear_failure(proc) -> bool:
    """True if the command completed; otherwise it must have failed with one-line messages."""
    if proc.returncode == 0:
        return True
    assert_clear_failure(proc)
    return False


@pytest.fixture(scope="module")
def small_objects(seaweedfs):
    """2,000 small objects in a bucket of their own, shared by the throttling tests."""
    name = f"faults-small-{uuid.uuid4().hex[:8]}"
    seaweedfs.create_bucket(name)
    objects = {f"src/{i // 100}/{i}": os.urandom(64 + i % 700) for i in range(2000)}
    fill(seaweedfs.store(name), objects)
    yield name, {k[len("src/"):]: v for k, v in objects.items()}
    seaweedfs.delete_bucket(name)



# --- the proxy itself ---------------------------------------------------------------------

def test_fault_proxy_answers_like_s3_and_stops_by_itself(seaweedfs, bucket):
    with FaultProxy(seaweedfs.endpoint, max_lifetime=2) as proxy:
        def put(key: str):
            return s3_request(proxy.endpoint, "PUT", bucket, key, body=b"v", access_key=seaweedfs.access_key,
                              secret_key=seaweedfs.secret_key, timeout=10)

        assert put("a").status == 200  # signed for the proxy's address, checked by the server
        proxy.slowdown(count=1)
        throttled = put("b")
        assert (throttled.status, throttled.error_code) == (503, "SlowDown")
        assert throttled.headers["connection"] == "close"
        assert put("b").status == 200
        assert seaweedfs.list_keys(bucket) == ["a", "b"]
        assert [seaweedfs.store(bucket).get(k) for k in ("a", "b")] == [b"v", b"v"]
        idle = socket.create_connection(("127.0.0.1", proxy.port))  # held open by nobody
        time.sleep(2.5)  # past max_lifetime
        assert not proxy.running
        assert idle.recv(1) == b""  # closed by the proxy
        idle.close()
        with pytest.raises(OSError):
            put("c")


# --- a. throttling ------------------------------------------------------------------------

def test_copy_rides_out_20_percent_slowdown(seaweedfs, s3env, small_objects, tmp_path):
    bucket, expected = small_objects
    src = seaweedfs.store(bucket)
    log = tmp_path / "copy.log"
    with FaultProxy(seaweedfs.endpoint, seed=20, max_lifetime=240) as proxy:
        proxy.slowdown(fraction=0.2)
        r = mbackup(s3env, "--set", f"log.file.path={log}", "copy", url(proxy.endpoint, bucket, "src"),
                    url(proxy.endpoint, bucket, "dst"), "--json", "--records")
        throttled = proxy.stats["slowdown"]
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        summary, records = lines[-1], lines[:-1]
        assert summary["strategies"].get("server_copy", 0) == summary["objects_copied"]
        assert throttled > 0.15 * proxy.stats["requests"]
        failed = [x for x in records if x["error"]]
        # Every throttled answer is accounted for: the store client or the engine retried it
        # (one line in the log each), or it was the last attempt of an object that failed. The
        # engine's retries, which the summary counts, are only the requests throttled 4 times
        # in a row (~3 in 2,000 objects here, and sometimes none), so they are counted, not
        # required.
        retried = [x for x in log.read_text().splitlines() if re.search(r"attempt \d of \d failed \(.*SlowDown", x)]
        engine = [x for x in retried if re.search(r" copy [^:]+: attempt \d of 5 failed", x)]
        assert len(retried) + len(failed) == throttled, (len(retried), len(failed), throttled)
        assert summary["retries"] == len(engine), (summary["retries"], engine)
        if r.returncode != 0:  # only ever the throttling, after every attempt: retry later
            assert r.returncode == 3 and failed and summary["objects_failed"] == len(failed), r.stderr
            assert all("503 SlowDown" in x["error"] and x["attempts"] == 5 for x in failed), failed[:3]
        rerun = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), url(proxy.endpoint, bucket, "dst"), "--json")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert json.loads(rerun.stdout)["objects_copied"] == len(failed)
    assert snapshot(src, "dst") == expected
    assert snapshot(src, "src") == expected  # the source is untouched
    # Server-side copies get the same per-request retries as streamed ones under each of the
    # engine's attempts: at 20% throttling a failure needs 20 throttled tries in a row.
    assert not failed, failed[:3]


def test_five_slowdowns_in_a_row_are_retried_on_every_copy_path(seaweedfs, s3env, bucket, tmp_path):
    """A burst of 5 throttled PUTs on one object: a streamed upload rides it out (its client
    retries each request 3 times under the engine's 5 attempts); a server-side copy should too."""
    s = seaweedfs.store(bucket)
    data = os.urandom(1000)
    s.put("one/x", data)

    def strategy(proc) -> str:
        record, _summary = [json.loads(x) for x in proc.stdout.splitlines()]
        assert record["error"] is None, record
        return record["strategy"]

    with FaultProxy(seaweedfs.endpoint, seed=5, max_lifetime=120) as proxy:
        proxy.slowdown(count=5, methods="PUT")
        # Different endpoints: the bytes stream through mbackup.
        streamed = mbackup(s3env, "copy", url(seaweedfs.endpoint, bucket, "one"), url(proxy.endpoint, bucket, "streamed"),
                           "--json", "--records")
        assert streamed.returncode == 0 and proxy.stats["slowdown"] == 5, streamed.stderr
        proxy.slowdown(count=5, methods="PUT")
        # One endpoint: a server-side copy.
        server = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "one"), url(proxy.endpoint, bucket, "server"),
                         "--json", "--records")
        assert proxy.stats["slowdown"] == 10
    assert server.returncode == 0, server.stderr
    assert (strategy(streamed), strategy(server)) == ("stream", "server_copy")
    assert [s.get(k) for k in ("one/x", "streamed/x", "server/x")] == [data, data, data]


def test_every_retry_is_in_the_log_with_what_why_the_attempt_and_the_wait(seaweedfs, s3env, bucket, tmp_path):
    """503 SlowDown on uploads and on listings: the runs succeed, and the log file says each
    retry the engine made and each one the store client made of a request."""
    s = seaweedfs.store(bucket)
    s.put("one/x", os.urandom(1000))
    fill(s, {f"many/{i}": b"x" for i in range(5)})
    log = tmp_path / "retries.log"
    with FaultProxy(seaweedfs.endpoint, seed=5, max_lifetime=120) as proxy:
        proxy.slowdown(count=5, methods="PUT")  # past the client's 3 retries: the engine tries the job again
        up = mbackup(s3env, "--set", f"log.file.path={log}", "copy", url(seaweedfs.endpoint, bucket, "one"),
                     url(proxy.endpoint, bucket, "up"), "-q")
        assert (up.returncode, proxy.stats["slowdown"]) == (0, 5), up.stderr
        proxy.slowdown(count=4, methods="GET")  # a listing throttled past the client's retries
        listed = mbackup(s3env, "--set", f"log.file.path={log}", "copy", url(proxy.endpoint, bucket, "many"),
                         str(tmp_path / "out"), "-q")
        assert (listed.returncode, proxy.stats["slowdown"]) == (0, 9), listed.stderr
    assert s.get("up/x") == s.get("one/x") and len(list((tmp_path / "out").iterdir())) == 5
    lines = log.read_text().splitlines()
    # Each PUT of the upload (SeaweedFS checks CRC32Cs: the store's probe, then the object's
    # PUT, both our own requests) retried 3 times by the client, then the job by the engine.
    puts = [x for x in lines if re.search(r"S3 request: attempt \d of 4 failed \(PUT ", x)]
    assert len(puts) == 4 and all(re.search(r"WARN  S3 request: attempt \d of 4 failed \(PUT .*SlowDown.*\); "
                                            r"retrying in [\d.]+s", x) for x in puts), "\n".join(lines)
    job = [x for x in lines if " copy one/x: attempt" in x]
    assert len(job) == 1 and re.search(r"WARN  copy one/x: attempt 1 of 5 failed \(.*SlowDown.*\); retrying in [\d.]+s",
                                       job[0]), "\n".join(lines)
    listing = [x for x in lines if re.search(r"(S3 request|listing): attempt \d of 4 failed \((?!PUT )", x)]
    assert len(listing) == 4 and all(re.search(r"WARN  .*: attempt \d of 4 failed \(.*\); retrying in [\d.]+s", x)
                                     for x in listing), lines


# --- b. dropped connections ---------------------------------------------------------------

def test_dropped_connections_mid_body(seaweedfs, s3env, bucket, tmp_path):
    objects = {f"src/{i // 50}/{i}": os.urandom(16 * KIB + i) for i in range(300)}
    s = seaweedfs.store(bucket)
    fill(s, objects)
    expected = {k[len("src/"):]: v for k, v in objects.items()}
    folder = tmp_path / "out"
    with FaultProxy(seaweedfs.endpoint, seed=4, max_lifetime=240) as proxy:
        # A quarter of the responses (listings and GETs) are cut inside their body.
        proxy.drop(fraction=0.25, after_bytes=(512, 12 * KIB))
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), str(folder), "-q")
        assert proxy.stats["dropped"] > 20
        done = tree(folder) if folder.exists() else {}
        assert all(expected[k] == v for k, v in done.items())  # nothing half-written, whatever happened
        if not completed_or_clear_failure(r):
            proxy.passthrough()
            again = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), str(folder), "-q")
            assert again.returncode == 0, again.stderr
        assert tree(folder) == expected

        # Uploads whose answer is lost: the PUT reached the server, the connection closed
        # before the reply. The retry writes the same bytes again.
        proxy.drop(fraction=0.25, after_bytes=0, methods="PUT")
        dropped = proxy.stats["dropped"]
        r = mbackup(s3env, "copy", str(folder), url(proxy.endpoint, bucket, "back"), "-q")
        assert proxy.stats["dropped"] > dropped
        if not completed_or_clear_failure(r):
            proxy.passthrough()
            r = mbackup(s3env, "copy", str(folder), url(proxy.endpoint, bucket, "back"), "-q")
            assert r.returncode == 0, r.stderr
    assert snapshot(s, "back") == expected
    assert snapshot(s, "src") == expected


@pytest.mark.parametrize("fault", ["cut", "throttled"])
def test_a_failed_listing_is_listed_again(seaweedfs, s3env, bucket, tmp_path, fault):
    """The store client retries a request, but not a listing cut inside its body, nor one
    throttled past its 3 retries: the engine lists again instead of giving up."""
    objects = {f"src/{i}": os.urandom(100) for i in range(300)}  # a listing of ~60 KiB
    s = seaweedfs.store(bucket)
    fill(s, objects)
    with FaultProxy(seaweedfs.endpoint, seed=1, max_lifetime=120) as proxy:
        if fault == "cut":
            proxy.drop(count=1, after_bytes=4 * KIB)
        else:
            proxy.slowdown(count=4, methods="GET")
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), str(tmp_path / "out"), "-q")
        assert proxy.stats["dropped" if fault == "cut" else "slowdown"] == (1 if fault == "cut" else 4)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "out") == {k[len("src/"):]: v for k, v in objects.items()}


# --- c. stalls ----------------------------------------------------------------------------

def test_stalled_connections_do_not_hang(seaweedfs, s3env, bucket, tmp_path):
    objects = {f"src/{i // 50}/{i}": os.urandom(16 * KIB + i) for i in range(200)}
    s = seaweedfs.store(bucket)
    fill(s, objects)
    expected = {k[len("src/"):]: v for k, v in objects.items()}
    folder = tmp_path / "out"
    with FaultProxy(seaweedfs.endpoint, seed=8, max_lifetime=300) as proxy:
        # Streamed: some responses go silent in the middle of their body for 8 s, then close.
        proxy.stall(8, fraction=0.03, after_bytes=(1 * KIB, 8 * KIB))
        started = time.monotonic()
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), str(folder), "-q")
        assert time.monotonic() - started < 120
        assert proxy.stats["stalled"] > 0
        # Server-side: some copy requests never reach the server; the connection is silent for 8 s.
        proxy.stall(8, fraction=0.03, methods="PUT")
        stalled = proxy.stats["stalled"]
        started = time.monotonic()
        r2 = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), url(proxy.endpoint, bucket, "dst"), "-q")
        assert time.monotonic() - started < 120
        assert proxy.stats["stalled"] > stalled
        proxy.passthrough()
        for proc, dst in ((r, str(folder)), (r2, url(proxy.endpoint, bucket, "dst"))):
            if not completed_or_clear_failure(proc):
                again = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "src"), dst, "-q")
                assert again.returncode == 0, again.stderr
    assert tree(folder) == expected
    assert snapshot(s, "dst") == expected
    assert snapshot(s, "src") == expected


def test_a_copy_request_that_never_answers_times_out(seaweedfs, s3env, bucket):
    s = seaweedfs.store(bucket)
    data = os.urandom(1000)
    s.put("one/x", data)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=150) as proxy:
        proxy.stall(600, count=1, methods="PUT", then="pass")
        started = time.monotonic()
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "one"), url(proxy.endpoint, bucket, "copy"),
                    "--json", "--records", timeout=90)
        assert r.returncode == 0 and time.monotonic() - started < 60, r.stderr
        # The copy request was held (and never answered), and a second one went through.
        assert proxy.stats["stalled"] == 1
        assert proxy.stats["requests"] >= 3  # the listing, the stalled copy, its retry
    record = json.loads(r.stdout.splitlines()[0])
    assert record["strategy"] == "server_copy" and record["error"] is None
    assert s.get("copy/x") == data and s.get("one/x") == data


def test_a_download_that_goes_silent_mid_body_is_read_again(seaweedfs, s3env, bucket, tmp_path):
    """A GET's body stops for good half-way (the connection stays open): the engine's GET
    client gives up after its 30 s read timeout and reads the object again."""
    s = seaweedfs.store(bucket)
    data = os.urandom(256 * KIB)
    s.put("silent/x", data)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=150) as proxy:
        proxy.stall(600, count=1, after_bytes=64 * KIB, methods="GET", paths=f"/{bucket}/silent/x", then="pass")
        started = time.monotonic()
        r = mbackup(s3env, "copy", url(proxy.endpoint, bucket, "silent"), str(tmp_path / "out"), "--json", timeout=90)
        took = time.monotonic() - started
        assert proxy.stats["stalled"] == 1
    assert r.returncode == 0, r.stderr
    assert 30 <= took < 75, took
    assert (tmp_path / "out" / "x").read_bytes() == data


# --- d. the S3 server dies and comes back -------------------------------------------------

def test_seaweedfs_killed_mid_copy_and_restarted(tmp_path):
    s3 = SeaweedFS(tmp_path / "seaweedfs", secret_key=S3_SECRET).start()
    try:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key)
        env.pop("MBACKUP_PLUGINS", None)
        s3.create_bucket("src")
        s3.create_bucket("dst")
        objects = {f"data/{i // 100}/{i}": os.urandom(200 + i % 800) for i in range(3000)}
        fill(s3.store("src"), objects)
        expected = {k[len("data/"):]: v for k, v in objects.items()}
        src, dst = url(s3.endpoint, "src", "data"), url(s3.endpoint, "dst", "data")
        port = s3.s3_port

        proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "copy", src, dst, "-q", "--max-requests", "400"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while len(s3.store("dst").list("data")) < 300 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() is None, "the copy finished before the server could be killed"
            s3.stop(grace=0)  # SIGKILL: no goodbye to the clients
            # Down long enough for the objects in flight to use up all their attempts.
            time.sleep(8)
            s3.restart()
            assert s3.s3_port == port
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        first = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if not completed_or_clear_failure(first):
            assert "Connection refused" in err or "error sending request" in err, err[-2000:]
            assert ", failed " in out and "failed 0" not in out
        rerun = subprocess.run([sys.executable, "-m", "milvus_backup", "copy", src, dst, "-q"], env=env,
                               capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert snapshot(s3.store("dst"), "data") == expected
        assert snapshot(s3.store("src"), "data") == expected
    finally:
        s3.stop(grace=3)  # a restarted weed can sit 20 s on SIGTERM; its data is throwaway


# --- e. a full disk -----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards; ``grow()`` enlarges it keeping its files."""
    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=32m", str(mount)], check=True)

    with tmpfs(tmp_path / "small", "size=4m") as mount:
        yield mount, grow


def test_full_disk_fails_in_one_line_and_rerun_completes(seaweedfs, s3env, bucket, small_disk):
    mount, grow = small_disk
    objects = {f"src/{i:02d}": os.urandom(512 * KIB) for i in range(16)}  # 8 MiB into 4 MiB
    s = seaweedfs.store(bucket)
    fill(s, objects)
    expected = {k[len("src/"):]: v for k, v in objects.items()}
    folder = mount / "out"

    r = mbackup(s3env, "copy", url(seaweedfs.endpoint, bucket, "src"), str(folder), "-q")
    lines = assert_clear_failure(r, codes=(1,))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: file://{folder}: the disk is full (no space left on device): ")
    assert "run again" in lines[0]
    done = {k[len("out/"):]: v for k, v in tree(mount).items()}
    assert 0 < len(done) < len(expected)
    # Whatever is there is complete: no temp files, no short file under a final name.
    assert set(done) <= set(expected), sorted(done)
    assert all(expected[k] == v for k, v in done.items())

    grow()
    r = mbackup(s3env, "copy", url(seaweedfs.endpoint, bucket, "src"), str(folder), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["objects_copied"], summary["objects_skipped"]) == (len(expected) - len(done), len(done))
    assert tree(folder) == expected
    assert snapshot(s, "src") == expected


# --- f, g. Milvus: a killed create, two creates at once, a killed target during restore ---

DIM = 16
PARTITIONS = ("_default", "p1", "p2")
ROWS_PER_PARTITION = 2000


def _row(i: int) -> dict:
    # Multiples of 1/64 survive float32 exactly, so restored rows compare equal.
    return {"id": i, "vec": [((i * 7 + j) % 64) / 64.0 for j in range(DIM)], "tag": f"t{i % 97}", "score": (i % 512) / 8.0}


@pytest.fixture(scope="module")
def dataset(milvus_clusters):
    """A collection on the source: three partitions of one flushed segment each (one segment
    per partition, so auto-compaction has nothing to merge and the binlogs stay put)."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=milvus_clusters.source.uri)
    name = f"faults_{uuid.uuid4().hex[:8]}"
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    schema.add_field("score", DataType.FLOAT)
    client.create_collection(name, schema=schema)
    rows = {}
    for n, partition in enumerate(PARTITIONS):
        if partition != "_default":
            client.create_partition(name, partition)
        batch = [_row(i) for i in range(n * ROWS_PER_PARTITION, (n + 1) * ROWS_PER_PARTITION)]
        client.insert(name, batch, partition_name=partition)
        rows.update({r["id"]: r for r in batch})
    client.flush(name)
    collection_id = client.describe_collection(name)["collection_id"]
    yield name, collection_id, rows
    client.drop_collection(name)
    client.close()


def milvus_cfg(tmp_path: Path, cluster, bucket: str, name: str = "backup.yaml", extra: str = "") -> str:
    from mbackup_dev.devstack import backup_config

    path = tmp_path / name
    path.write_text(backup_config(cluster, backup_bucket=bucket, backup_root="backup", extra=extra))
    return str(path)


def binlogs_of(seaweedfs, cluster, collection_id: int) -> dict[str, bytes]:
    s = seaweedfs.store(cluster.bucket)
    out = {}
    for kind in ("insert_log", "delta_log"):
        out.update({f"{kind}/{k}": v for k, v in snapshot(s, f"{cluster.root_path}/{kind}/{collection_id}").items()})
    return out


def _source_key(backup_key: str) -> str:
    """``insert_log/c/p/group/seg/...`` in a backup -> ``insert_log/p/seg/...``, the key
    binlogs_of gives the same object in Milvus' bucket (relative to the collection)."""
    kind, _coll, p, _group, *rest = backup_key.split("/")
    return "/".join([kind, p, *rest])


def rows_of(cluster, collection: str) -> dict[int, dict]:
    """Every row of a collection, read back (a FLAT index and a load make it queryable)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=cluster.uri)
    try:
        if not client.list_indexes(collection):
            params = client.prepare_index_params()
            params.add_index("vec", index_type="FLAT", metric_type="L2")
            client.create_index(collection, params)
        client.load_collection(collection)
        got = client.query(collection, filter="id >= 0", output_fields=["id", "vec", "tag", "score"],
                           limit=16384)
        out = {}
        for r in got:
            assert r["id"] not in out, f"row {r['id']} twice"
            out[r["id"]] = {"id": r["id"], "vec": [float(x) for x in r["vec"]], "tag": r["tag"], "score": float(r["score"])}
        return out
    finally:
        client.close()


def drop(cluster, collection: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=cluster.uri)
    try:
        client.drop_collection(collection)
    finally:
        client.close()


@pytest.mark.milvus
def test_create_killed_mid_copy_resumes(milvus_clusters, dataset, seaweedfs, s3env, bucket, tmp_path):
    source = milvus_clusters.source
    coll, collection_id, rows = dataset
    cfg = milvus_cfg(tmp_path, source, bucket)
    name = f"killed_{uuid.uuid4().hex[:8]}"
    before = binlogs_of(seaweedfs, source, collection_id)
    backup = seaweedfs.store(bucket)

    # Slow: a few requests a second, so the kill lands with part of the binlogs copied.
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "create", "-n", name, "--filter", coll, "-q",
                             "--config", cfg, "--set", "mbackup.maxRequestsPerSecond=6",
                             "--set", "mbackup.maxBandwidth=256KiB/s"],
                            env=s3env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not backup.list(f"backup/{name}/binlogs") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert proc.poll() is None, "create finished before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-copy: no chance to clean up
        proc.communicate(timeout=30)
    partial = backup.list(f"backup/{name}/binlogs")
    assert partial and backup.head(f"backup/{name}/meta/backup_meta.json") is None

    again = mbackup(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", cfg, "--json", timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming the incomplete backup '{name}'" in again.stderr
    summary = json.loads(again.stdout)
    assert summary["objects_copied"] < summary["objects"]  # what the killed run wrote was kept
    deep = mbackup(s3env, "verify", "-n", name, "--deep", "--config", cfg)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert deep.stdout.splitlines()[-1].endswith(": 0 problems")

    restored = mbackup(s3env, "restore", "-n", name, "--suffix", "_r", "-q", "--config", cfg, timeout=300)
    try:
        assert restored.returncode == 0, restored.stderr
        assert rows_of(source, f"{coll}_r") == rows
    finally:
        drop(source, f"{coll}_r")
    assert binlogs_of(seaweedfs, source, collection_id) == before


@pytest.mark.milvus
def test_two_creates_of_one_name_one_wins(milvus_clusters, dataset, seaweedfs, s3env, bucket, tmp_path):
    coll, collection_id, _ = dataset
    cfg = milvus_cfg(tmp_path, milvus_clusters.source, bucket)
    name = f"race_{uuid.uuid4().hex[:8]}"
    before = binlogs_of(seaweedfs, milvus_clusters.source, collection_id)
    args = [sys.executable, "-m", "milvus_backup", "create", "-n", name, "--filter", coll, "-q", "--config", cfg,
            "--set", "mbackup.maxRequestsPerSecond=20"]
    procs = [subprocess.Popen(args, env=s3env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=180)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    winners = [r for r in results if r.returncode == 0]
    losers = [r for r in results if r.returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(r.returncode, r.stderr) for r in results]
    lines = assert_clear_failure(losers[0], codes=(3,))  # held by the winner: retry later
    assert len(lines) == 1 and lines[0].startswith(
        (f"error: another mbackup is working on backup '{name}' (pid ", f"error: could not take the lock on backup '{name}'")
    ), lines
    assert f"create backup success: {name}" in winners[0].stdout
    verified = mbackup(s3env, "verify", "-n", name, "--deep", "--config", cfg)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert binlogs_of(seaweedfs, milvus_clusters.source, collection_id) == before
    # The one backup holds the source's binlogs, byte for byte, at the Go tool's keys.
    backed_up = snapshot(seaweedfs.store(bucket), f"backup/{name}/binlogs")
    assert {_source_key(k): v for k, v in backed_up.items()} == before


@pytest.mark.milvus
def test_target_milvus_killed_during_restore(milvus_clusters, dataset, seaweedfs, s3env, bucket, tmp_path):
    from pymilvus import MilvusClient

    source, target = milvus_clusters.source, milvus_clusters.target
    coll, collection_id, rows = dataset
    name = f"restore_{uuid.uuid4().hex[:8]}"
    before = binlogs_of(seaweedfs, source, collection_id)
    made = mbackup(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", milvus_cfg(tmp_path, source, bucket))
    assert made.returncode == 0, made.stderr
    backup = seaweedfs.store(bucket)
    backup_before = snapshot(backup, f"backup/{name}")
    one_job_at_a_time = "restore:\n  concurrency:\n    importJobs: 1\n"
    journal = seaweedfs.store(target.bucket)

    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "restore", "-n", name, "-q", "--config",
                             milvus_cfg(tmp_path, target, bucket, "target.yaml", one_job_at_a_time)],
                            env=s3env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        started = False
        while not started and time.monotonic() < deadline and proc.poll() is None:
            for key, _, _ in journal.list("mbackup-restore-journal"):
                if not key.endswith(".json"):
                    continue  # the lock beside the journal
                try:
                    body = journal.get(key)
                except _engine.NotFoundError:  # the restore finished and removed it
                    continue
                record_written(f"restore journal {key}", body)  # for the secrets scan
                state = json.loads(body)["collections"].get(f"default.{coll}", {})
                started = any(p.get("job") for p in state.get("partitions", {}).values())
            time.sleep(0.05)
        assert started and proc.poll() is None, "the restore finished before an import job could be caught running"
        target.stop(grace=0)  # SIGKILL, import job in flight
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    first = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    target.start()  # same data directory and etcd root; new ports
    if not completed_or_clear_failure(first):
        assert "Milvus" in first.stderr, first.stderr

    cfg = milvus_cfg(tmp_path, target, bucket, "target2.yaml", one_job_at_a_time)
    again = mbackup(s3env, "restore", "-n", name, "-q", "--config", cfg, timeout=300)
    client = MilvusClient(uri=target.uri)
    try:
        assert again.returncode == 0, again.stderr
        assert client.get_collection_stats(coll)["row_count"] == len(rows)  # no import ran twice
        assert rows_of(target, coll) == rows
    finally:
        client.close()
        drop(target, coll)
    assert not journal.list("mbackup-restore-journal")
    assert snapshot(backup, f"backup/{name}") == backup_before  # restore reads the backup, never writes it
    assert binlogs_of(seaweedfs, source, collection_id) == before
