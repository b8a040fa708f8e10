"""Objects above the multipart threshold, S3 -> a local folder (issue #14): ranged GETs, each
written at its place in a staging file as its chunks arrive, renamed into place once the bytes
are checked. Real SeaweedFS; faults through the tests' pass-through proxy."""

from __future__ import annotations

import json
import os

from faultproxy import FaultProxy
from milvus_backup import _engine
from test_copy import KIB, MIB, fill, mbackup, peak_rss_mib, tree, url
from test_faults import assert_clear_failure
from test_faults import url as endpoint_url


def records(proc) -> dict[str, dict]:
    """--json --records: one record per object, by destination key."""
    out = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        if "dst_key" in r:
            out[r["dst_key"]] = r
    return out


def test_large_downloads_are_the_source_bytes_whatever_the_part_boundaries(seaweedfs, s3env, bucket, tmp_path):
    """Sizes that split into ranges ending mid-chunk and mid-write: the file is the object,
    byte for byte, and the checksum the copy reports is the whole file's. A multipart source
    (no plain-MD5 ETag) and a single-PUT one (its ETag is the MD5, checked on arrival)."""
    multipart = {"dl/a": os.urandom(40 * MIB + 12_345), "dl/b": os.urandom(17 * MIB + 3)}
    fill(seaweedfs.store(bucket), multipart)  # > 16 MiB through the engine: multipart uploads
    single = os.urandom(21 * MIB + 777)
    seaweedfs.store(bucket).put("dl/c", single)  # one PUT: the ETag is the MD5
    expected = {k[len("dl/"):]: v for k, v in {**multipart, "dl/c": single}.items()}
    for name, extra in (("default", []), ("5mib", ["--part-size", "5MiB"])):
        folder = tmp_path / name
        r = mbackup(s3env, "copy", url(seaweedfs, bucket, "dl"), str(folder), "--json", "--records", *extra, check=0)
        assert tree(folder) == expected  # bytes equal, nothing else in the folder
        got = records(r)
        for key, data in expected.items():
            assert got[key]["strategy"] == "stream_multipart", got[key]
            assert int(got[key]["checksum"], 16) == _engine.checksum("crc32c", data), key


def test_a_byte_damaged_in_a_range_is_caught_and_copied_again(seaweedfs, s3env, bucket, tmp_path):
    """A single-PUT source states its MD5 (the ETag): the ranges arrive out of order, their bytes
    are summed again in order from the staging file before it is renamed into place; a flipped
    byte fails that attempt and the next one copies the object right. The ranges are sent at
    once and the proxy damages whichever reaches it first: every range is 8 MiB, so each has the
    byte (with 5 bytes more, a 5-byte last range that came first under load took the rule and
    nothing was damaged)."""
    data = os.urandom(24 * MIB)
    seaweedfs.store(bucket).put("dmg/o", data)
    log = tmp_path / "copy.log"
    with FaultProxy(seaweedfs.endpoint, seed=3, max_lifetime=120) as proxy:
        proxy.corrupt(count=1, at_byte=3 * MIB + 17, paths="/dmg/o")  # inside a range's body
        mbackup(s3env, "--set", f"log.file.path={log}", "copy", endpoint_url(proxy.endpoint, bucket, "dmg"),
                str(tmp_path / "d"), "-q", check=0)
        assert proxy.stats["corrupted"] == 1
    retried = [x for x in log.read_text().splitlines() if "copy dmg/o: attempt 1 of 5 failed" in x]
    assert len(retried) == 1 and "damaged in transit" in retried[0], log.read_text()
    assert tree(tmp_path / "d") == {"o": data}


def test_peak_rss_of_large_downloads_is_the_writes_in_flight_not_the_parts(seaweedfs, s3env, bucket, tmp_path):
    """4 x 64 MiB S3->local at --parallel 64. Measured here (2 cores shared, peak RSS of the CLI):
    56-57 MiB now; 141-169 MiB when each 8 MiB part was held whole until written (4 parts of each
    object in flight). The bound sits between the two."""
    objects = {f"rss/o{i}": os.urandom(64 * MIB) for i in range(4)}
    fill(seaweedfs.store(bucket), objects)
    peak = peak_rss_mib(s3env, "copy", url(seaweedfs, bucket, "rss"), str(tmp_path / "d"), "--parallel", "64",
                        "--quiet")
    assert tree(tmp_path / "d") == {k[len("rss/"):]: v for k, v in objects.items()}  # bytes equal
    assert peak < 100, peak


def test_a_large_download_cut_on_every_attempt_leaves_the_old_file_and_no_staging(seaweedfs, s3env, bucket,
                                                                                  tmp_path):
    """Every GET of the object is cut 512 KiB into its body (the store client resumes a cut body
    3 times, a range needs more): the copy fails in one line with a failure exit code, the file
    already at the destination name is untouched, and no staging file (`name#n`) is left."""
    data = os.urandom(30 * MIB + 9)
    fill(seaweedfs.store(bucket), {"cut/big": data, "cut/small": b"fine"})
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "big").write_bytes(b"the version from last week")
    with FaultProxy(seaweedfs.endpoint, seed=9, max_lifetime=240) as proxy:
        # Listings and the 4-byte object end before 512 KiB: only the large GETs are cut.
        proxy.drop(fraction=1.0, after_bytes=(512 * KIB, 512 * KIB), methods="GET")
        r = mbackup(s3env, "copy", endpoint_url(proxy.endpoint, bucket, "cut"), str(folder), timeout=240, check=None)
        assert proxy.stats["dropped"] >= 5  # every attempt was cut
    assert_clear_failure(r, codes=(1, 3))
    assert sorted(p.name for p in folder.iterdir()) == ["big", "small"]
    assert (folder / "big").read_bytes() == b"the version from last week"
    assert (folder / "small").read_bytes() == b"fine"
