"""What an incremental create counts as the same object (README: Incremental backups), as a table.

The same key relative to the backup dir, the same size and the same ETag: the one Milvus's store
lists now equal to the one the base recorded (pool objects), or to a full base copy's plain MD5
ETag. Anything else is new.
"""

import pytest

from milvus_backup.backup.incremental import Base, Known, plan_increment
from milvus_backup.backup.pool import pool_key
from milvus_backup.format import meta

BDIR = "root/night_2"
SRC = "files/insert_log/1/2/3/100/7"
REL = "binlogs/insert_log/1/2/3/3/100/7"
MD5 = "0123456789abcdef0123456789abcdef"


def collection(size: int = 10) -> meta.CollectionBackupInfo:
    seg = meta.SegmentBackupInfo(segment_id=3, collection_id=1, partition_id=2, group_id=3, binlogs=[
        meta.FieldBinlog(field_id=100, binlogs=[meta.Binlog(log_path=SRC, log_size=size, log_id=7)])])
    return meta.CollectionBackupInfo(collection_id=1, partition_backups=[
        meta.PartitionBackupInfo(partition_id=2, segment_backups=[seg])])


IN_POOL = Known(10, "00aa", "etag-1", "root/" + pool_key(REL, 10, "crc32c", "00aa"),
                pool_key(REL, 10, "crc32c", "00aa"))
IN_FULL_DIR = Known(10, "00aa", MD5, f"root/night_0/{REL}")  # a full base: its copy's MD5 ETag


@pytest.mark.parametrize(("known", "size", "listed_etag", "shared"), [
    (IN_POOL, 10, '"etag-1"', True),  # the ETag the base recorded, quoted or not
    (IN_POOL, 10, "ETAG-1", True),
    (IN_POOL, 10, '"etag-2"', False),  # rewritten in place (Milvus never does): new
    (IN_POOL, 11, '"etag-1"', False),  # another size: new
    (IN_POOL, 10, None, False),  # a store that lists no ETag proves nothing: new
    (IN_FULL_DIR, 10, f'"{MD5}"', True),
    (IN_FULL_DIR, 10, MD5.upper(), True),
    (IN_FULL_DIR, 10, "ffffffffffffffffffffffffffffffff", False),
    (Known(10, "00aa", None, f"root/night_0/{REL}"), 10, '"abc-2"', False),  # a multipart copy: no MD5 to compare
    (None, 10, f'"{MD5}"', False),  # the base does not hold it
])
def test_what_counts_as_the_same_object(known, size, listed_etag, shared):
    base = Base("night_1", "crc32c", {REL: known} if known else {})
    inc = plan_increment(BDIR, [collection(size)], {SRC: listed_etag}, base, "crc32c")
    assert (REL in inc.shared, REL in inc.new) == (shared, not shared)
    if shared:
        assert inc.shared[REL].checksum == "00aa" and inc.sources[REL].key == SRC
    else:
        assert inc.new[REL][1] == f"{BDIR}/{REL}"  # staged in the backup dir, copied from Milvus


def test_a_resumed_run_reuses_what_it_put_in_the_pool():
    ref = pool_key(REL, 10, "crc32c", "00bb")
    inc = plan_increment(BDIR, [collection()], {SRC: '"x"'}, Base(None), "crc32c", resumed_refs=[ref])
    assert inc.shared[REL].pool == ref and not inc.new
    other_size = plan_increment(BDIR, [collection(12)], {SRC: '"x"'}, Base(None), "crc32c", resumed_refs=[ref])
    assert REL in other_size.new
