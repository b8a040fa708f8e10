"""Locations opened from URLs: the prefix a URL names, and what is shown of it. Keys may hold
any character; a URL's '?' starts its options, and nothing else is special."""

from __future__ import annotations

import threading
import time

import pytest

from milvus_backup.plugins.manager import storage_backends
from milvus_backup.storage import StorageError

open_location = storage_backends().open  # a URL opened as mbackup opens it


@pytest.mark.parametrize(("url", "prefix"), [
    ("memory://n/a#b/c", "a#b/c"),  # '#' is part of a key: no store has fragments
    ("memory://n/#1", "#1"),
    ("memory://n/run#1?x=1", "run#1"),
    ("memory://n/x%20y", "x%20y"),  # kept as spelled: keys are never percent-decoded
    ("memory://n/a b+c~ü", "a b+c~ü"),
])
def test_a_url_names_its_prefix_as_spelled(url, prefix):
    loc = open_location(url)
    assert (loc.prefix, loc.url) == (prefix, f"memory://n/{prefix}")


def test_options_after_a_hash_in_the_prefix_are_still_options():
    """The endpoint after run#1 was dropped with the "fragment": the copy went to AWS, from
    s3://bkt/run."""
    loc = open_location("s3://bkt/run#1?endpoint=http://127.0.0.1:9&region=eu-west-1")
    assert (loc.prefix, loc.url) == ("run#1", "s3://bkt/run#1")
    assert (loc.options["aws_endpoint"], loc.options["aws_region"]) == ("http://127.0.0.1:9", "eu-west-1")


@pytest.mark.parametrize("url", ["s3://b/p?region=x#&secret_access_key=abc", "s3://b/p#?secret_access_key=abc",
                                 "memory://n/p?a=1#&token=abc"])
def test_a_secret_in_the_options_is_refused_wherever_a_hash_stands(url):
    with pytest.raises(StorageError, match=r"the URL holds the secret (secret_access_key|token) \(not shown\)"):
        open_location(url)


def test_many_round_trips_run_side_by_side_and_keep_their_order():
    """Listing a root of many backups reads each one's meta: side by side, not one after
    another. Four calls that each wait for the other three can only all return if they run
    at once; results come back in the order asked, and a failure is raised once all ended."""
    from milvus_backup.storage.location import in_parallel

    together = threading.Barrier(4)
    assert in_parallel(lambda i: (together.wait(timeout=30), i * i)[1], [0, 1, 2, 3]) == [0, 1, 4, 9]

    ended = []

    def call(i):
        if i == 1:
            raise ValueError("backup 1 is damaged")
        time.sleep(0.05)
        ended.append(i)
        return i

    with pytest.raises(ValueError, match="backup 1 is damaged"):
        in_parallel(call, [0, 1, 2, 3, 4])
    assert sorted(ended) == [0, 2, 3, 4]  # the others were not abandoned half-way


def test_a_side_step_runs_beside_the_main_one_and_its_failure_comes_first():
    """An increment marks what it shares while it stages what is new: both at once (each
    waits for the other), both ended before it goes on, and when both fail the side step's
    error is the one shown (it stands for the step that came first)."""
    from milvus_backup.storage.location import alongside

    together = threading.Barrier(2)
    assert alongside(lambda: (together.wait(timeout=30), "marked")[1],
                     lambda: (together.wait(timeout=30), "staged")[1]) == ("marked", "staged")

    ended = []

    def side(fails: bool):
        time.sleep(0.05)
        ended.append("side")
        if fails:
            raise ValueError("lost the lock")

    def main():
        raise OSError("copy failed")

    with pytest.raises(ValueError, match="lost the lock"):
        alongside(lambda: side(True), main)
    with pytest.raises(OSError, match="copy failed"):
        alongside(lambda: side(False), main)
    assert ended == ["side", "side"]  # never abandoned half-way


def test_meta_files_written_and_read_together_are_the_bytes_given():
    from milvus_backup.storage.location import NotFound

    loc = open_location("memory://n/root")
    files = {f"b/meta/{n}.json": f"{n}-{'x' * n}".encode() for n in range(20)}
    loc.write_many(files)
    assert loc.read_many(sorted(files)) == dict(sorted(files.items()))
    assert {o.key: o.size for o in loc.list("b/meta")} == {k: len(v) for k, v in files.items()}
    with pytest.raises(NotFound):
        loc.read_many(["b/meta/1.json", "b/meta/missing.json"])
