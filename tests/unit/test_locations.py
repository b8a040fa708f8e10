"""Locations opened from URLs: the prefix a URL names, and what is shown of it. Keys may hold
any character; a URL's '?' starts its options, and nothing else is special."""

from __future__ import annotations

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
