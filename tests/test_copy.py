"""`mbackup copy` against a real SeaweedFS: what a user sees (files, bytes, messages, exit codes)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from milvus_backup import _engine

KIB, MIB = 1024, 1024 * 1024


@pytest.fixture
def more_buckets(seaweedfs, bucket):
    """Names for destination buckets the CLI creates; removed after the test."""
    made = []

    def name(suffix: str) -> str:
        made.append(f"{bucket}-{suffix}")
        return made[-1]

    yield name
    for b in made:
        try:
            seaweedfs.delete_bucket(b)
        except Exception:
            pass  # never created (the test failed before)


def url(seaweedfs, bucket: str, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}?endpoint={seaweedfs.endpoint}"


def mbackup(env, *args, timeout=300, check=None):
    proc = subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, proc.stderr + proc.stdout
    return proc


def fill(s: _engine.Store, objects: dict[str, bytes]) -> None:
    """Write many objects fast: stage in memory, let the engine copy them in parallel."""
    staging = _engine.Store(f"memory://fill-{id(objects)}")
    for k, v in objects.items():
        staging.put(k, v)
    results = _engine.Copier(parallel=64).run([(staging, k, s, k, len(v)) for k, v in objects.items()])
    assert not [r for r in results if r["error"]]


def tree(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def listing(s: _engine.Store, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) + 1:]: s.get(k) for k, _, _ in s.list(prefix)}


SAMPLE = {
    "files/insert_log/1/2/3/100/11": os.urandom(20 * KIB),
    "files/insert_log/1/2/3/101/12": os.urandom(3 * KIB),
    "files/delta_log/1/2/3/13": os.urandom(100),
    "files/empty": b"",
    "files/with space/ünïcødé ✓.bin": b"unicode key",
}


@pytest.fixture
def sample_bucket(seaweedfs, bucket):
    fill(seaweedfs.store(bucket), SAMPLE)
    return bucket


def test_bucket_to_bucket_local_and_back(seaweedfs, s3env, sample_bucket, more_buckets, tmp_path):
    dst = more_buckets("dst")
    r = mbackup(s3env, "copy", url(seaweedfs, sample_bucket, "files"), url(seaweedfs, dst, "copy"), "--json", check=0)
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["objects_copied"] == len(SAMPLE) and summary["objects_failed"] == 0
    assert summary["strategies"] == {"server_copy": len(SAMPLE)}
    expected = {k[len("files/"):]: v for k, v in SAMPLE.items()}
    assert listing(seaweedfs.store(dst), "copy") == expected

    folder = tmp_path / "out"
    mbackup(s3env, "copy", url(seaweedfs, dst, "copy"), str(folder), "--verify", check=0)
    assert tree(folder) == expected
    assert (folder / "empty").stat().st_size == 0
    assert not (folder / "files").exists() and not os.path.samefile(folder, tmp_path)

    back = more_buckets("back")
    r = mbackup(s3env, "copy", f"file://{folder}", url(seaweedfs, back, "x/y"), check=0)
    assert "copied 5 objects" in r.stdout and "failed 0" in r.stdout
    assert listing(seaweedfs.store(back), "x/y") == expected


def test_rerun_copies_nothing_and_partial_destination_is_completed(seaweedfs, s3env, sample_bucket, tmp_path):
    folder = tmp_path / "out"
    src = url(seaweedfs, sample_bucket, "files")
    mbackup(s3env, "copy", src, str(folder), check=0)
    r = mbackup(s3env, "copy", src, str(folder), "--json", check=0)
    summary = json.loads(r.stdout)
    assert summary["objects_copied"] == 0 and summary["objects_skipped"] == len(SAMPLE)

    (folder / "insert_log/1/2/3/100/11").unlink()
    (folder / "delta_log/1/2/3/13").write_bytes(b"short")  # wrong size: copied again
    r = mbackup(s3env, "copy", src, str(folder), "--json", "--records", check=0)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    copied = sorted(x["dst_key"] for x in lines[:-1])
    assert copied == ["delta_log/1/2/3/13", "insert_log/1/2/3/100/11"]
    assert lines[-1]["objects_skipped"] == len(SAMPLE) - 2
    assert tree(folder) == {k[len("files/"):]: v for k, v in SAMPLE.items()}


def test_verify_repairs_a_corrupted_destination(seaweedfs, s3env, sample_bucket, tmp_path):
    folder = tmp_path / "out"
    src = url(seaweedfs, sample_bucket, "files")
    mbackup(s3env, "copy", src, str(folder), check=0)
    victim = folder / "insert_log/1/2/3/100/11"
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    victim.write_bytes(bytes(data))

    r = mbackup(s3env, "copy", src, str(folder), check=0)  # size-only check cannot see it
    assert "copied 0 objects" in r.stdout
    r = mbackup(s3env, "copy", src, str(folder), "--verify", check=0)
    assert "repaired 1 that differed from the source" in r.stdout
    assert victim.read_bytes() == SAMPLE["files/insert_log/1/2/3/100/11"]


def test_multipart_paths_with_lowered_thresholds(seaweedfs, s3env, bucket, more_buckets, tmp_path):
    big = os.urandom(12 * MIB + 123)
    fill(seaweedfs.store(bucket), {"big/object": big})
    args = ["--multipart-threshold", "5MiB", "--part-size", "5MiB",
            "--multipart-copy-threshold", "5MiB", "--copy-part-size", "5MiB", "--verify", "--json", "--records"]

    def strategy(r):
        return json.loads(r.stdout.splitlines()[0])["strategy"]

    r = mbackup(s3env, "copy", url(seaweedfs, bucket, "big"), url(seaweedfs, more_buckets("mp"), "big"), *args, check=0)
    assert strategy(r) == "server_multipart"
    r = mbackup(s3env, "copy", url(seaweedfs, bucket, "big"), str(tmp_path / "l"), *args, check=0)
    assert strategy(r) == "stream_multipart"
    r = mbackup(s3env, "copy", str(tmp_path / "l"), url(seaweedfs, more_buckets("mp2"), "big"), *args, check=0)
    assert strategy(r) == "stream_multipart"
    assert (tmp_path / "l" / "object").read_bytes() == big
    for b in (f"{bucket}-mp", f"{bucket}-mp2"):  # the names more_buckets handed out
        got = seaweedfs.store(b).get("big/object")
        assert hashlib.sha256(got).digest() == hashlib.sha256(big).digest()


def test_ten_thousand_small_objects(seaweedfs, s3env, bucket, more_buckets):
    objects = {f"files/insert_log/7/8/{i // 100}/{100 + i % 5}/{i}": os.urandom(64 + i % 512) for i in range(10_000)}
    fill(seaweedfs.store(bucket), objects)
    r = mbackup(s3env, "copy", url(seaweedfs, bucket, "files"), url(seaweedfs, more_buckets("10k"), "files"),
                "--parallel", "64", "--json", check=0)
    summary = json.loads(r.stdout)
    assert summary["objects_copied"] == 10_000 and summary["objects_failed"] == 0
    dst = seaweedfs.store(f"{bucket}-10k")
    keys = sorted(k for k, _, _ in dst.list("files"))
    assert keys == sorted(objects)
    with ThreadPoolExecutor(16) as pool:
        assert dict(zip(keys, pool.map(dst.get, keys), strict=False)) == objects  # every object, byte for byte


def test_include_exclude_dry_run_and_manifest(seaweedfs, s3env, sample_bucket, tmp_path):
    src = url(seaweedfs, sample_bucket, "files")
    folder = tmp_path / "out"
    r = mbackup(s3env, "copy", src, str(folder), "--include", "insert_log/*", "--exclude", "*/101/*", "--dry-run", check=0)
    assert r.stdout.startswith("would copy 1 objects")
    assert not folder.exists()

    manifest = tmp_path / "manifest.json"
    mbackup(s3env, "copy", src, str(folder), "--include", "insert_log/*", "--checksum", "crc64nvme",
            "--manifest", str(manifest), check=0)
    assert sorted(tree(folder)) == ["insert_log/1/2/3/100/11", "insert_log/1/2/3/101/12"]
    m = json.loads(manifest.read_text())
    entry = m["objects"]["insert_log/1/2/3/100/11"]
    assert entry["size"] == 20 * KIB and entry["checksum_algo"] == "crc64nvme"
    assert int(entry["checksum"], 16) == _engine.checksum("crc64nvme", SAMPLE["files/insert_log/1/2/3/100/11"])

    r = mbackup(s3env, "copy", src, str(folder), "--include", "nothing/*", check=2)
    assert r.stderr.strip() == f"error: nothing to copy: none of the {len(SAMPLE)} objects under s3://{sample_bucket}/files match --include/--exclude"


def test_bad_input_one_line_and_nothing_created(seaweedfs, s3env, sample_bucket, tmp_path):
    folder = tmp_path / "never"
    src = url(seaweedfs, sample_bucket, "files")

    bad_env = dict(s3env, AWS_SECRET_ACCESS_KEY="wrong-secret-value")
    r = mbackup(bad_env, "copy", src, str(folder), check=2)
    assert r.stderr.startswith(f"error: s3://{sample_bucket}/files: the server rejected the credentials")
    assert "wrong-secret-value" not in r.stderr + r.stdout

    r = mbackup(s3env, "copy", url(seaweedfs, "no-such-bucket-here", "files"), str(folder), check=2)
    assert r.stderr.strip() == "error: s3://no-such-bucket-here/files: the bucket does not exist; create it or fix the bucket name"

    # Done, as rclone has it (a nightly copy of a prefix empty today), with a note.
    r = mbackup(s3env, "copy", url(seaweedfs, sample_bucket, "no/such/prefix"), str(folder), check=0)
    assert "note: nothing to copy: " in r.stderr and "has no objects (check the bucket and prefix)" in r.stderr

    started = time.monotonic()
    r = mbackup(s3env, "copy", "s3://b/files?endpoint=http://127.0.0.1:9", str(folder), check=3, timeout=60)
    assert time.monotonic() - started < 30
    assert "cannot reach the endpoint" in r.stderr and "check the address and port" in r.stderr

    for args, message in [
        (["--checksum", "md5"], "--checksum: unknown algorithm 'md5'"),
        (["--max-bandwidth", "fast"], "--max-bandwidth: invalid rate 'fast'"),
        (["--part-size", "1XB"], "--part-size: invalid size '1XB'"),
    ]:
        r = mbackup(s3env, "copy", src, str(folder), *args, check=2)
        assert r.stderr.startswith(f"error: {message}"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1

    r = mbackup(s3env, "copy", f"s3://{sample_bucket}/x?secret_access_key=abc", str(folder), check=2)
    assert "the URL holds the secret secret_access_key (not shown)" in r.stderr and "abc" not in r.stderr
    assert not folder.exists()


def timed(env, *args, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run mbackup and time it from outside (a monotonic clock around the whole process),
    so a cap is measured against the clock, not against what mbackup reports."""
    started = time.monotonic()
    proc = mbackup(env, *args, **kwargs)
    return proc, time.monotonic() - started


def test_bandwidth_cap_is_respected(seaweedfs, s3env, bucket, tmp_path):
    size = 6 * MIB
    objects = {f"bw/{i}": os.urandom(size // 6) for i in range(6)}
    fill(seaweedfs.store(bucket), objects)
    cap = 2 * MIB
    r, elapsed = timed(s3env, "copy", url(seaweedfs, bucket, "bw"), str(tmp_path / "bw"), "--max-bandwidth", "2MiB/s",
                       "--json", check=0)
    assert tree(tmp_path / "bw") == {k[len("bw/"):]: v for k, v in objects.items()}
    # The bucket starts with a quarter second of burst; after that the cap holds. Never
    # early: the whole process, start-up included, takes at least the capped time. Slow
    # is allowed (shared cores): up to 4 times that, plus start-up.
    capped = (size - cap / 4) / cap
    assert elapsed >= capped, (elapsed, capped)
    assert elapsed <= 4 * capped + 15, (elapsed, capped)
    assert json.loads(r.stdout)["seconds"] <= elapsed  # what it reports is inside what was measured


def test_ctrl_c_stops_with_summary_and_rerun_completes(seaweedfs, s3env, bucket, tmp_path):
    objects = {f"slow/{i:03d}": os.urandom(256 * KIB) for i in range(40)}
    fill(seaweedfs.store(bucket), objects)
    folder = tmp_path / "slow"
    proc = subprocess.Popen([sys.executable, "-m", "milvus_backup", "copy", url(seaweedfs, bucket, "slow"),
                             str(folder), "--max-bandwidth", "1MiB/s", "--parallel", "4"],
                            env=s3env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (folder.exists() and any(folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.startswith("interrupted: copied ")
    done = tree(folder)
    assert 0 < len(done) < len(objects)
    assert all(objects[f"slow/{k}"] == v for k, v in done.items())  # nothing half-written

    r = mbackup(s3env, "copy", url(seaweedfs, bucket, "slow"), str(folder), "--json", check=0)
    assert json.loads(r.stdout)["objects_copied"] == len(objects) - len(done)
    assert tree(folder) == {k[len("slow/"):]: v for k, v in objects.items()}


def test_example_third_party_plugin(seaweedfs, s3env, sample_bucket, tmp_path):
    r = mbackup(s3env, "plugins", "--json", check=0)
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert plugins["fsspec"]["builtin"] is False and plugins["fsspec"]["version"] == "0.1.0"
    assert plugins["milvus_backup.storage.backends.s3"]["schemes"] == ["s3", "s3a"]

    folder = tmp_path / "fs"
    mbackup(s3env, "copy", url(seaweedfs, sample_bucket, "files"), f"fsspec+file://{folder}", "--verify", check=0)
    assert tree(folder) == {k[len("files/"):]: v for k, v in SAMPLE.items()}

    back = tmp_path / "back"
    r = mbackup(s3env, "copy", f"fsspec+file://{folder}", str(back), "--json", check=0)
    assert json.loads(r.stdout)["strategies"] == {"stream": len(SAMPLE)}
    assert tree(back) == tree(folder)

    r = mbackup(dict(s3env, MBACKUP_PLUGINS=""), "copy", f"fsspec+file://{folder}", str(back), check=2)
    assert "no storage backend for" in r.stderr and "fsspec" in r.stderr


def test_request_rate_cap_is_respected(seaweedfs, s3env, bucket, tmp_path):
    objects = {f"rps/{i:02d}": os.urandom(100) for i in range(30)}
    fill(seaweedfs.store(bucket), objects)
    r, elapsed = timed(s3env, "copy", url(seaweedfs, bucket, "rps"), str(tmp_path / "rps"), "--max-requests", "20",
                       "--json", check=0)
    summary = json.loads(r.stdout)
    assert summary["objects_copied"] == 30
    assert tree(tmp_path / "rps") == {k[len("rps/"):]: v for k, v in objects.items()}
    # Each object is a GET and a PUT: 60 requests at 20/s after a burst of 20 take at least
    # 2 s, by the clock around the whole process; slow is allowed, early is not.
    assert elapsed >= (60 - 20) / 20, elapsed
    assert elapsed <= 4 * (60 - 20) / 20 + 15, elapsed
    assert summary["seconds"] <= elapsed


# What one object under the multipart thresholds costs, per direction: the listing gave its size
# and ETag, so it is never asked for again (no HEAD), and its bytes take one request. Counted by a
# pass-through FaultProxy in front of SeaweedFS. Objects of 1 KiB to 3 MiB: one write or several.
REQUESTS_PER_OBJECT = {"bucket->bucket": "PUT", "S3->local": "GET", "local->S3": "PUT"}
# Per run, not per object: each S3 side listed once (that listing also tells whether the
# destination's bucket exists), and an S3 destination's incomplete uploads listed once (what an
# interrupted earlier run left of these keys is removed).
LISTINGS_PER_RUN = {"bucket->bucket": 3, "S3->local": 1, "local->S3": 2}


@pytest.mark.parametrize("direction", REQUESTS_PER_OBJECT)
def test_one_request_per_object_and_no_head(seaweedfs, s3env, bucket, tmp_path, direction):
    from faultproxy import FaultProxy

    objects = {f"d{i % 3}/sub/o{i}": os.urandom(KIB + i * 97 * KIB) for i in range(32)}
    fill(seaweedfs.store(bucket), {f"src/{k}": v for k, v in objects.items()})
    write_folder(tmp_path / "src", objects)
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        s3 = f"s3://{bucket}/{{}}?endpoint={proxy.endpoint}"
        src = str(tmp_path / "src") if direction == "local->S3" else s3.format("src")
        dst = str(tmp_path / "dst") if direction == "S3->local" else s3.format("dst")
        mbackup(s3env, "copy", src, dst, "--parallel", "8", check=0)
        seen = dict(proxy.seen)
    side = "dst" if REQUESTS_PER_OBJECT[direction] == "PUT" else "src"
    per_object = {k: seen.get(f"{REQUESTS_PER_OBJECT[direction]} /{bucket}/{side}/{k}", 0) for k in objects}
    assert per_object == dict.fromkeys(objects, 1), seen
    assert not [r for r in seen if r.startswith("HEAD ")], seen
    listings = sum(n for r, n in seen.items() if r == f"GET /{bucket}")
    assert listings == LISTINGS_PER_RUN[direction], seen
    # local->S3: one PUT per run (not per object) asks whether the server checks a CRC32C.
    probes = sum(n for r, n in seen.items() if ".mbackup-crc32c-probe-" in r)
    assert probes == (1 if direction == "local->S3" else 0), seen
    assert sum(seen.values()) == len(objects) + listings + probes, seen
    if direction == "S3->local":
        assert tree(tmp_path / "dst") == objects


@pytest.mark.parametrize("direction", ["bucket->bucket", "local->S3"])
def test_a_copy_into_a_new_bucket_makes_it_and_asks_nothing_its_listing_answered(seaweedfs, s3env, bucket, tmp_path,
                                                                                 more_buckets, direction):
    from faultproxy import FaultProxy

    objects = {f"d/o{i}": os.urandom(KIB + i) for i in range(3)}
    fill(seaweedfs.store(bucket), {f"src/{k}": v for k, v in objects.items()})
    write_folder(tmp_path / "src", objects)
    new = more_buckets("new")
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        src = str(tmp_path / "src") if direction == "local->S3" else f"s3://{bucket}/src?endpoint={proxy.endpoint}"
        r = mbackup(s3env, "copy", src, f"s3://{new}/dst?endpoint={proxy.endpoint}", check=0)
        seen = dict(proxy.seen)
    assert f"created bucket for s3://{new}/dst" in r.stderr
    assert listing(seaweedfs.store(new), "dst") == objects
    # The destination's one listing found no bucket: it is made once, and no incomplete uploads
    # are looked for in it (a bucket this run made holds none).
    assert seen.pop(f"GET /{new}") == 1 and seen.pop(f"PUT /{new}") == 1, seen
    if direction == "bucket->bucket":
        assert seen.pop(f"GET /{bucket}") == 1, seen
    probes = [k for k in seen if ".mbackup-crc32c-probe-" in k]
    assert len(probes) == (1 if direction == "local->S3" else 0), seen
    assert {k: n for k, n in seen.items() if k not in probes} == {f"PUT /{new}/dst/{k}": 1 for k in objects}


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "proxy_url"])
def test_gets_go_through_the_proxy_the_environment_names(seaweedfs, s3env, bucket, tmp_path, variable):
    """The engine's GETs have a client of their own (capped read buffers); a proxy named in the
    environment, or by object_store's `proxy_url` option in the URL, must still carry them, as
    it carries every other request. The FaultProxy is the forward proxy: SeaweedFS answers the
    absolute-form requests it passes on."""
    from faultproxy import FaultProxy

    # Small objects take one GET each; the large one ranged GETs (above --multipart-threshold).
    objects = {f"p/o{i}": os.urandom(KIB + i) for i in range(5)} | {"p/large": os.urandom(12 * MIB)}
    fill(seaweedfs.store(bucket), objects)
    env = {k: v for k, v in s3env.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        option = f"&proxy_url={proxy.endpoint}" if variable == "proxy_url" else ""
        if not option:
            env[variable] = proxy.endpoint
        mbackup(env, "copy", f"s3://{bucket}/p?endpoint={seaweedfs.endpoint}{option}", str(tmp_path / "dst"),
                "--multipart-threshold", "5MiB", "--part-size", "5MiB", check=0)
        seen = dict(proxy.seen)
    assert tree(tmp_path / "dst") == {k[len("p/"):]: v for k, v in objects.items()}
    gets = {k: seen.get(f"GET {seaweedfs.endpoint}/{bucket}/{k}", 0) for k in objects}
    assert gets == {k: 1 for k in objects} | {"p/large": gets["p/large"]} and gets["p/large"] >= 2, seen


# A forked child's ru_maxrss starts from its parent's RSS (pytest's, hundreds of MiB here), so the
# CLI is started by a small interpreter of its own, which reports its child's peak.
_PEAK_OF_CHILD = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
                  "_, status, usage = os.wait4(p.pid, 0); print(usage.ru_maxrss); "
                  "sys.exit(os.waitstatus_to_exitcode(status))")


def peak_rss_mib(env, *args) -> float:
    """Run the CLI and return its peak RSS (the kernel's ru_maxrss of that one process)."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_OF_CHILD, sys.executable, "-m", "milvus_backup", *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout) / 1024


def write_folder(base: Path, objects: dict[str, bytes]) -> None:
    for k, v in objects.items():
        (base / k).parent.mkdir(parents=True, exist_ok=True)
        (base / k).write_bytes(v)


# Memory follows bytes in flight, not the number of objects: ten times the objects (16 KiB each,
# 47 MiB more in all) may add a little per object for its listing entry and its result, never
# its bytes. Measured (local->S3, 1-4 KiB objects, peak RSS): 500 objects 56 MiB, 5,000 65 MiB,
# 20,000 89 MiB, ~1.7 KiB per object (2.6 KiB before the result dicts' strings were interned);
# the bound is over three times that and a third of one object's size.
PER_OBJECT_KIB_AT_MOST = 6


@pytest.mark.parametrize("direction", ["S3->local", "local->S3"])
def test_peak_rss_does_not_grow_with_bytes_copied(seaweedfs, s3env, bucket, tmp_path, direction):
    few, many = 300, 3_000
    objects = {f"d{i % 30}/o{i}": os.urandom(16 * KIB) for i in range(many)}
    peaks = {}
    for n in (few, many):
        part = dict(list(objects.items())[:n])
        src_folder = tmp_path / f"src{n}"
        if direction == "local->S3":
            write_folder(src_folder, part)
            src, dst = str(src_folder), url(seaweedfs, bucket, f"dst{n}")
        else:
            fill(seaweedfs.store(bucket), {f"src{n}/{k}": v for k, v in part.items()})
            src, dst = url(seaweedfs, bucket, f"src{n}"), str(tmp_path / f"dst{n}")
        peaks[n] = peak_rss_mib(s3env, "copy", src, dst, "--parallel", "64", "--quiet")
        if direction == "S3->local":
            assert tree(tmp_path / f"dst{n}") == part  # bytes equal
        else:
            assert listing(seaweedfs.store(bucket), f"dst{n}") == part
    per_object_kib = (peaks[many] - peaks[few]) * 1024 / (many - few)
    assert per_object_kib <= PER_OBJECT_KIB_AT_MOST, peaks


def test_peak_rss_is_bounded_by_the_memory_budget(s3env, seaweedfs, bucket, tmp_path):
    """192 MiB of 4 MiB files through a 16 MiB budget: the copy holds a few chunks of each file
    in flight, and no more files at a time than the budget holds (stores that do not check a
    CRC32C get whole files, the budget's first use: see benches/README.md, issue #14)."""
    objects = {f"big/o{i}": os.urandom(4 * MIB) for i in range(48)}
    write_folder(tmp_path / "src", objects)
    config = tmp_path / "backup.yaml"
    config.write_text("mbackup:\n  memoryBudgetMiB: 16\n")
    peak = peak_rss_mib(s3env, "copy", str(tmp_path / "src"), url(seaweedfs, bucket, "dst"), "--parallel", "64",
                        "--quiet", "--config", str(config))
    assert listing(seaweedfs.store(bucket), "dst") == objects
    assert peak < 120, peak  # measured 68 MiB; 192 MiB held at once would be over 220 MiB



def test_peak_rss_of_a_download_stays_within_writes_not_objects(s3env, seaweedfs, bucket, tmp_path):
    """S3->local of 40 objects of 4-8 MiB (~240 MiB) at --parallel 64: each body is written as
    it arrives, one write (1 MiB) at a time per object, so memory stays near the process's own
    plus the connections' buffers, far from the bytes copied (measured: see benches/README.md,
    issue #14)."""
    rng = random.Random(14)
    objects = {f"big/o{i}": os.urandom(rng.randint(4 * MIB, 8 * MIB)) for i in range(40)}
    fill(seaweedfs.store(bucket), objects)
    peak = peak_rss_mib(s3env, "copy", url(seaweedfs, bucket, "big"), str(tmp_path / "dst"), "--parallel", "64",
                        "--quiet")
    assert tree(tmp_path / "dst") == {k[len("big/"):]: v for k, v in objects.items()}  # bytes equal
    # Measured 70-91 MiB (busy 2-core machine); the objects held whole would be over 280.
    assert peak < 150, peak

# A run's modules, written to $MODULES_FILE however the run ends.
_MODULES_OF_RUN = ("import json, os, runpy, sys\nsys.argv = ['mbackup', *sys.argv[1:]]\n"
                   "try:\n    runpy.run_module('milvus_backup', run_name='__main__')\n"
                   "finally:\n    open(os.environ['MODULES_FILE'], 'w').write(json.dumps(sorted(sys.modules)))\n")
EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "mbackup-fsspec"


@pytest.mark.parametrize("quiet", [["--quiet"], []])
def test_a_one_object_copy_loads_only_what_copying_needs(seaweedfs, s3env, bucket, tmp_path, quiet):
    """Every run pays for what it imports (issue #14): a copy loads its plugins, the example
    fsspec one included, but not Milvus's client and gRPC, the server, pydantic (typer's checks
    of each flag), fsspec itself (only fsspec+ URLs need it), the backup catalog, the Milvus
    adapters and the backup format they use, ssl (only a failed TLS handshake is explained with
    it), nor rich when its progress goes to no terminal (here a pipe)."""
    data = os.urandom(20 * KIB)
    fill(seaweedfs.store(bucket), {"one/o": data})
    modules = tmp_path / "modules.json"
    # The example plugin as this tree has it, ahead of any installed copy.
    path = os.pathsep.join(filter(None, [str(EXAMPLE_PLUGIN), s3env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _MODULES_OF_RUN, "copy", url(seaweedfs, bucket, "one"),
                           str(tmp_path / "dst"), *quiet], env=dict(s3env, PYTHONPATH=path, MODULES_FILE=str(modules)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dst" / "o").read_bytes() == data
    loaded = set(json.loads(modules.read_text()))
    assert {"mbackup_fsspec", "milvus_backup.storage.backends.s3"} <= loaded  # plugins registered as ever
    heavy = {"pymilvus", "grpc", "google.protobuf", "pydantic", "fsspec", "starlette", "uvicorn", "pyarrow", "rich",
             "milvus_backup.backup.catalog", "milvus_backup.milvus.adapters.base", "milvus_backup.format.meta",
             "ssl", "milvus_backup.milvus.adapters.registry"}
    assert not {m for m in loaded if m in heavy or m.startswith(tuple(f"{h}." for h in heavy))}
