"""What differs between Milvus lines lives in the adapters (issue #9, part A): where binlogs are
in storage (the adapter's StorageLayout), how an import that found nothing completes, which
backup strategies need a newer Milvus; and a third-party adapter registered for the server's
line is the one mbackup talks to."""

from __future__ import annotations

import uuid

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup.backup.catalog import Stores
from milvus_backup.backup.create import BackupError, CreateRequest, attach_segments, discover_binlogs
from milvus_backup.backup.restore import PlannedImport, RestoreError, Target, check_rows
from milvus_backup.format import meta
from milvus_backup.milvus.adapters import base
from milvus_backup.milvus.adapters.base import BinlogKey, ImportJob, MilvusAdapter, SegmentRef, StorageLayout
from milvus_backup.milvus.adapters.v2_3 import Milvus23Adapter
from milvus_backup.milvus.connection import connect
from milvus_backup.plugins import hookspecs
from milvus_backup.plugins.manager import milvus_adapters, storage_backends
from milvus_backup.storage.location import Location

IDS = st.integers(-(2**63), 2**63 - 1)


# --------------------------------------------------------------------------------------
# Binlogs are where the adapter's layout says


@settings(max_examples=300, deadline=None)
@given(collection=IDS, partition=IDS, segment=IDS, field=IDS, log=IDS)
def test_the_layout_reads_back_every_key_it_makes(collection, partition, segment, field, log):
    layout = StorageLayout()
    insert = layout.insert_prefix(collection, partition, segment) + f"{field}/{log}"
    delta = layout.delta_prefix(collection, partition, segment) + f"{log}"
    assert layout.parse(insert) == BinlogKey(collection, partition, segment, field, log)
    assert layout.parse(delta) == BinlogKey(collection, partition, segment, None, log)
    assert layout.parse(insert + "/0") is None and layout.parse(delta + "/0") is None  # one level too deep


@pytest.mark.parametrize("key", [
    "insert_log/1/2/3/100", "delta_log/1/2/3", "insert_log/1/2/3/100/" + "9" * 20, "insert_log/1/2/x/100/7",
    "stats_log/1/2/3/100/7", "files/insert_log/1/2/3/100/7", "insert_log/1/2/3/100/7/", "insert_log//2/3/100/7",
])
def test_keys_that_are_not_binlogs(key):
    assert StorageLayout().parse(key) is None


def _stores() -> tuple[Stores, Location]:
    open_location = storage_backends().open
    milvus = open_location(f"memory://layout-{uuid.uuid4().hex}")
    return Stores(milvus, "files", open_location(f"memory://layout-{uuid.uuid4().hex}"), "backup"), milvus


def test_binlogs_are_found_where_the_adapters_layout_keeps_them():
    """A line that keeps binlogs under other names (as a later line may) is backed up from there."""
    stores, milvus = _stores()
    for key in ("files/segment_log/1/2/3/100/7", "files/segment_log/1/2/3/101/8", "files/deletes/1/2/3/9",
                "files/insert_log/1/2/3/100/6"):  # the last: where the default layout would look
        milvus.write(key, b"x")
    layout = StorageLayout(insert_log="segment_log", delta_log="deletes")
    coll = meta.CollectionBackupInfo(collection_id=1, partition_backups=[meta.PartitionBackupInfo(partition_id=2)])
    segments = [SegmentRef(segment_id=3, collection_id=1, partition_id=2, num_rows=1)]
    found = discover_binlogs(stores, layout, coll, segments)
    assert {seg: ({f: [o.key for o in objs] for f, objs in inserts.items()}, [o.key for o in deltas])
            for seg, (inserts, deltas) in found.items()} == {
        3: ({100: ["files/segment_log/1/2/3/100/7"], 101: ["files/segment_log/1/2/3/101/8"]}, ["files/deletes/1/2/3/9"])}
    attach_segments(coll, segments, found, layout)
    assert [b.log_path for fb in coll.partition_backups[0].segment_backups[0].binlogs for b in fb.binlogs] == [
        "files/segment_log/1/2/3/100/7", "files/segment_log/1/2/3/101/8"]

    empty = meta.CollectionBackupInfo(db_name="default", collection_name="c", collection_id=1)
    with pytest.raises(BackupError, match=r"^segment 3 of default.c has no insert logs under segment_log/1/2/3/ in the "
                                          r"Milvus bucket: "):
        attach_segments(empty, segments, {}, layout)


# --------------------------------------------------------------------------------------
# Import quirks and newer features, per line


class _FailsEmptyImports(Milvus23Adapter):
    """A stand-in for a line whose server fails an import that finds no binlogs itself (no
    such server runs here): the 2.3 quirk is the 2.3 adapter's alone."""

    import_found_nothing = MilvusAdapter.import_found_nothing


def test_an_import_without_rows_is_blamed_on_a_wrong_bucket_only_on_the_line_that_does_that():
    job = PlannedImport(ImportJob("p", "p", (("s/insert_log/1/2/", ""),), (), by_partition=True), 10, 0)
    target = Target(meta.CollectionBackupInfo(db_name="default", collection_name="c"), "default", "c")
    with pytest.raises(RestoreError, match="completed without rows: Milvus found no binlogs under s/insert_log/1/2/"):
        check_rows(Milvus23Adapter("v2.3.5", None), target, job, 0)
    assert check_rows(_FailsEmptyImports("v2.9.0", None), target, job, 0) == [10, 10, 10, 0]


def test_a_strategy_of_a_newer_milvus_is_refused_naming_the_version_from_the_adapters_table(monkeypatch):
    monkeypatch.setitem(base.NEWER_STRATEGIES, "wave_flush", "3.1.0")
    with pytest.raises(BackupError) as e:
        CreateRequest(strategy="wave_flush").validate()
    assert str(e.value) == ("unknown strategy 'wave_flush': use auto, serial_flush, bulk_flush, skip_flush, meta_only "
                            "(wave_flush needs Milvus 3.1.0 or newer)")
    with pytest.raises(BackupError, match=r"^unknown strategy 'fast': use auto, serial_flush, bulk_flush, skip_flush, "
                                          r"meta_only$"):
        CreateRequest(strategy="fast").validate()


# --------------------------------------------------------------------------------------
# The adapter a plugin registers for the server's line, against a real Milvus 2.3.5


@pytest.mark.milvus
def test_connect_returns_the_adapter_a_plugin_registered_for_the_servers_line(milvus_clusters):
    from test_adapter_v2_3 import endpoint

    class ThirdParty23(Milvus23Adapter):
        """A third-party adapter for 2.3 (built on the built-in one)."""

    class Plugin:
        @hookspecs.hookimpl
        def mbackup_register_milvus_adapter(self, register):
            register("2.3", ThirdParty23)

    pm = pluggy.PluginManager("milvus_backup")
    pm.add_hookspecs(hookspecs)
    pm.register(Plugin(), name="third-party-2.3")
    adapter = connect(endpoint(milvus_clusters.source), milvus_adapters(pm))
    try:
        assert type(adapter) is ThirdParty23 and adapter.version.startswith("v2.3.")
        assert "default" in adapter.list_databases()
    finally:
        adapter.close()
