"""Pool keys: the contract inc12 (create) and ret12 (prune) share."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milvus_backup.backup.pool import POOL_DIR, parse_pool_key, pool_key

RELS = st.lists(st.text("abc019_-.~", min_size=1, max_size=8).filter(lambda s: s not in (".", "..")),
                min_size=1, max_size=6).map("/".join)


@given(RELS, st.integers(0, 1 << 40), st.sampled_from(["crc32c", "crc64nvme"]), st.text("0123456789abcdef", min_size=1))
def test_pool_key_round_trips(rel, size, algo, checksum):
    key = pool_key(rel, size, algo, checksum)
    assert key.startswith(POOL_DIR + "/")
    assert parse_pool_key(key) == (rel, size, algo, checksum)


def test_example_key():
    rel = "binlogs/insert_log/1/2/3/3/100/7"
    assert pool_key(rel, 42, "crc32c", "0a0b0c0d") == f".mbackup-pool/{rel}~42~crc32c-0a0b0c0d"


@pytest.mark.parametrize("key", [".mbackup-pool/a~1~md5-00", "a~1~crc32c-00", ".mbackup-pool/a~01~crc32c-00",
                                 ".mbackup-pool/a~1~crc32c-XY", ".mbackup-pool/~1~crc32c-00"])
def test_not_pool_keys(key):
    with pytest.raises(ValueError):
        parse_pool_key(key)
