"""Backup meta files: byte compatibility with the Go tool, readers, key layout."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup.errors import BackupNameError, MBackupError, MetaError
from milvus_backup.format import meta as m


def compact(text: str) -> bytes:
    """The example re-serialized compactly, keeping its key order."""
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------
# Illustrations: the anchor notes' examples (§3.5), typed by hand, pretty-printed here. They
# show a realistic backup; what the Go tool really writes is checked against tables derived
# from its source in test_go_compat.py (which also checks these examples against them).

BACKUP_META = r"""
{"id":"7c1f6f0e-3b7d-4d3e-9a8b-1f2e3d4c5b6a","state_code":0,"name":"my_backup","size":10487211,"milvus_version":"v2.6.11"}
"""

COLLECTION = r"""{
  "id":"7c1f6f0e-3b7d-4d3e-9a8b-1f2e3d4c5b6a",
  "collection_id":449577733491839211,"db_name":"default","collection_name":"hello_milvus",
  "schema":{"name":"hello_milvus","description":"hello_milvus is the simplest demo",
    "fields":[
      {"fieldID":100,"name":"pk","is_primary_key":true,"data_type":5},
      {"fieldID":101,"name":"random","data_type":11},
      {"fieldID":102,"name":"embeddings","data_type":101,"type_params":[{"key":"dim","value":"8"}]}],
    "enable_dynamic_field":true},
  "shards_num":1,"consistency_level":2,
  "partition_backups":[%(partitions)s],
  "size":10487211,"has_index":true,
  "index_infos":[{"field_name":"embeddings","index_name":"_default_idx_102","index_type":"HNSW",
    "params":{"index_type":"HNSW","metric_type":"L2","params":"{\"M\": 8, \"efConstruction\": 64}"},
    "index_id":449577733491839230}],
  "load_state":"Loaded",%(l0)s"db_id":1,"created_timestamp":449577733000000000,
  "virtual_channel_names":["by-dev-rootcoord-dml_0_449577733491839211v0"],
  "physical_channel_names":["by-dev-rootcoord-dml_0"]}"""

PARTITION = r"""{"partition_id":449577733491839212,"partition_name":"_default","collection_id":449577733491839211,%(segments)s
           "size":10487211,"load_state":"Loaded"}"""

SEGMENTS = r"""
 {"segment_id":449577733492043187,"collection_id":449577733491839211,"partition_id":449577733491839212,
  "num_of_rows":3000,
  "binlogs":[
   {"binlogs":[{"log_path":"files/insert_log/449577733491839211/449577733491839212/449577733492043187/0/449577733492043190","log_size":24153,"log_id":449577733492043190}]},
   {"fieldID":1,"binlogs":[{"log_path":"files/insert_log/.../449577733492043187/1/449577733492043191","log_size":24153,"log_id":449577733492043191}]},
   {"fieldID":100,"binlogs":[{"log_path":"files/insert_log/.../449577733492043187/100/449577733492043192","log_size":24150,"log_id":449577733492043192}]},
   {"fieldID":101,"binlogs":[{"log_path":"files/insert_log/.../101/449577733492043193","log_size":24160,"log_id":449577733492043193}]},
   {"fieldID":102,"binlogs":[{"log_path":"files/insert_log/.../102/449577733492043194","log_size":96200,"log_id":449577733492043194}]}],
  "deltalogs":[{"binlogs":[{"log_path":"files/delta_log/449577733491839211/449577733491839212/449577733492043187/449577733492043300","log_size":812,"log_id":449577733492043300}]}],
  "size":193628,"group_id":449577733492043187,
  "v_channel":"by-dev-rootcoord-dml_0_449577733491839211v0","storage_version":2},
 {"segment_id":449577733492043400,"collection_id":449577733491839211,"partition_id":449577733491839212,
  "deltalogs":[{"binlogs":[{"log_path":"files/delta_log/.../449577733492043400/449577733492043401","log_size":640,"log_id":449577733492043401}]}],
  "size":640,"group_id":449577733492043400,"is_l0":true,"v_channel":"by-dev-rootcoord-dml_0_449577733491839211v0"}
"""

L0 = r""""l0_segments":[{"segment_id":449577733492043500,"collection_id":449577733491839211,"partition_id":-1,
                    "deltalogs":[{"binlogs":[{"log_path":"files/delta_log/449577733491839211/-1/449577733492043500/449577733492043501","log_size":512,"log_id":449577733492043501}]}],
                    "size":512,"is_l0":true}],"""

COLLECTION_META = '{"infos":[' + COLLECTION % {"partitions": PARTITION % {"segments": ""}, "l0": ""} + "]}"
PARTITION_META = '{"infos":[' + PARTITION % {"segments": ""} + "]}"
SEGMENT_META = '{"infos":[' + SEGMENTS + "]}"
FULL_META = (
    '{"id":"7c1f6f0e-3b7d-4d3e-9a8b-1f2e3d4c5b6a","state_code":0,"name":"my_backup",'
    ' "collection_backups":['
    + COLLECTION % {"partitions": PARTITION % {"segments": '"segment_backups":[' + SEGMENTS + "],"}, "l0": L0}
    + """],
 "size":10487723,"milvus_version":"v2.6.11",
 "rbac_meta":{"users":[{"user":"alice","roles":[{"name":"reader"}]}],"roles":[{"name":"reader"}],
   "grants":[{"role":{"name":"reader"},"object":{"name":"Collection"},"object_name":"hello_milvus",
              "grantor":{"user":{"name":"root"},"privilege":{"name":"Query"}},"db_name":"default"}]},
 "database_backups":[{"db_name":"default","db_id":1}],
 "flush_all_msgs_base64":{"by-dev-rootcoord-dml_0":"CiQIAhAB"},
 "control_channel_name":"by-dev-rootcoord-dml_0_ctrl","physical_channel_names":["by-dev-rootcoord-dml_0"]}"""
)

EXAMPLES = [
    ("backup_meta.json", m.BackupInfo, BACKUP_META),
    ("collection_meta.json", m.CollectionLevelBackupInfo, COLLECTION_META),
    ("partition_meta.json", m.PartitionLevelBackupInfo, PARTITION_META),
    ("segment_meta.json", m.SegmentLevelBackupInfo, SEGMENT_META),
    ("full_meta.json", m.BackupInfo, FULL_META),
]


@pytest.mark.parametrize(("name", "cls", "text"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_anchor_examples_round_trip_byte_for_byte(name, cls, text):
    obj = m.loads(cls, text.encode(), name)
    assert m.dumps_compact(obj) == compact(text)


def test_full_meta_example_parses_into_the_tree():
    info = m.read_meta_files({"meta/full_meta.json": FULL_META.encode()})
    coll = info.collection_backups[0]
    assert coll.consistency_level == m.ConsistencyLevel.Bounded
    assert coll.schema.fields[0].field_id == 100 and coll.schema.fields[0].data_type == m.DataType.Int64
    assert coll.index_infos[0].params["metric_type"] == "L2"
    segs = coll.partition_backups[0].segment_backups
    assert [s.segment_id for s in segs] == [449577733492043187, 449577733492043400]
    assert segs[0].binlogs[0].field_id == 0  # RowID: fieldID omitted in the JSON
    assert segs[1].is_l0 and not segs[1].binlogs
    assert coll.l0_segments[0].partition_id == -1
    assert info.rbac_meta["users"][0]["user"] == "alice"
    assert info.flush_all_msgs_base64 == {"by-dev-rootcoord-dml_0": "CiQIAhAB"}


def test_write_meta_files_matches_the_level_examples_in_write_order():
    info = m.read_meta_files({"full_meta.json": FULL_META.encode()})
    files = m.write_meta_files(info)
    assert list(files) == list(m.META_FILES)
    assert files["backup_meta.json"] == (
        b'{"id":"7c1f6f0e-3b7d-4d3e-9a8b-1f2e3d4c5b6a","state_code":0,"name":"my_backup",'
        b'"size":10487723,"milvus_version":"v2.6.11"}'
    )
    assert files["collection_meta.json"] == compact(COLLECTION_META)
    assert files["partition_meta.json"] == compact(PARTITION_META)
    assert files["segment_meta.json"] == compact(SEGMENT_META)
    assert files["full_meta.json"] == compact(FULL_META)
    assert b"l0_segments" not in files["collection_meta.json"]
    assert b"segment_backups" not in files["collection_meta.json"]


def test_write_meta_files_snapshot_format_has_no_partition_or_segment_files():
    coll = m.CollectionBackupInfo(collection_id=1, collection_name="c", schema=m.CollectionSchema(fields=[m.FieldSchema(name="id")]))
    info = m.BackupInfo(id="x", name="snap", format=m.FORMAT_SNAPSHOT, collection_backups=[coll])
    files = m.write_meta_files(info)
    assert list(files) == ["backup_meta.json", "collection_meta.json", "full_meta.json"]
    assert files["backup_meta.json"] == b'{"id":"x","state_code":0,"name":"snap","size":0,"format":"snapshot"}'
    # And it reads back from the level files alone.
    del files["full_meta.json"]
    back = m.read_meta_files(files)
    assert back.format == "snapshot" and back.collection_backups[0].collection_id == 1


def test_write_meta_files_empty_backup_writes_empty_objects():
    files = m.write_meta_files(m.BackupInfo(id="i", name="n"))
    # Go's omitempty drops an empty "infos" array entirely.
    assert files["collection_meta.json"] == b"{}"
    assert files["segment_meta.json"] == b"{}"


# --------------------------------------------------------------------------------------
# Go encoding/json rules


OMITEMPTY_CASES = [
    ("consistency_level Strong(0) absent, size/has_index present", m.CollectionBackupInfo(consistency_level=m.ConsistencyLevel.Strong), b'{"size":0,"has_index":false}'),
    ("consistency_level as integer", m.CollectionBackupInfo(consistency_level=m.ConsistencyLevel.Bounded), b'{"consistency_level":2,"size":0,"has_index":false}'),
    ("fieldID 0 (RowID) absent", m.FieldSchema(field_id=0, name="RowID", data_type=m.DataType.Int64), b'{"name":"RowID","data_type":5}'),
    ("camel json names", m.FieldSchema(field_id=7, auto_id=True), b'{"fieldID":7,"autoID":true}'),
    ("partition size 0 present", m.PartitionBackupInfo(), b'{"size":0}'),
    ("log_size 0 present", m.Binlog(log_path="x"), b'{"log_path":"x","log_size":0}'),
    ("backup state_code and size present", m.BackupInfo(), b'{"state_code":0,"size":0}'),
    ("empty FieldBinlog inside a list is {}", m.SegmentBackupInfo(deltalogs=[m.FieldBinlog()]), b'{"deltalogs":[{}],"size":0}'),
    ("empty lists and maps omitted", m.CollectionBackupInfo(partition_backups=[], channel_checkpoints={}), b'{"size":0,"has_index":false}'),
    ("non-nil empty message written", m.CollectionBackupInfo(schema=m.CollectionSchema()), b'{"schema":{},"size":0,"has_index":false}'),
    ("maps sorted by key", m.IndexInfo(params={"b": "2", "a": "1", "C": "0"}), b'{"params":{"C":"0","a":"1","b":"2"}}'),
    ("int64 ids as numbers", m.SegmentBackupInfo(segment_id=2**63 - 1, partition_id=-1), b'{"segment_id":9223372036854775807,"partition_id":-1,"size":0}'),
    ("false bools omitted", m.SegmentBackupInfo(is_l0=False, backuped=False), b'{"size":0}'),
    ("int lists", m.FunctionSchema(type=m.FunctionType.BM25, input_field_ids=[1, 2]), b'{"type":1,"input_field_ids":[1,2]}'),
    ("HTML escaping", m.KeyValuePair(key="a<b>&c", value="\u2028x\u2029"), b'{"key":"a\\u003cb\\u003e\\u0026c","value":"\\u2028x\\u2029"}'),
    ("control characters", m.KeyValuePair(key='q"\\\n\t\b\f\x01\x7f'), b'{"key":"q\\"\\\\\\n\\t\\b\\f\\u0001\x7f"}'),
    ("non-ASCII as UTF-8", m.KeyValuePair(key="集合é"), '{"key":"集合é"}'.encode()),
]


@pytest.mark.parametrize(("obj", "expected"), [c[1:] for c in OMITEMPTY_CASES], ids=[c[0] for c in OMITEMPTY_CASES])
def test_dumps_compact_follows_go_encoding_json(obj, expected):
    assert m.dumps_compact(obj) == expected


def test_dumps_compact_rejects_wrong_types():
    with pytest.raises(TypeError, match="segment_id"):
        m.dumps_compact(m.SegmentBackupInfo(segment_id="12"))  # type: ignore[arg-type]


def test_opaque_floats_are_formatted_like_go():
    assert m.dumps_compact([1.5, 100.0, 1e21, 1e-7, 1.5e-10, 0.1, 1e20, -0.0]) == b"[1.5,100,1e+21,1e-7,1.5e-10,0.1,100000000000000000000,-0]"


def test_opaque_values_keep_their_key_order():
    info = m.BackupInfo(rbac_meta={"users": [{"user": "u", "password": "p"}], "roles": []})
    assert m.dumps_compact(info) == b'{"state_code":0,"size":0,"rbac_meta":{"users":[{"user":"u","password":"p"}],"roles":[]}}'


# --------------------------------------------------------------------------------------
# Readers


def test_reader_ignores_unknown_keys_and_defaults_missing_and_null():
    seg = m.loads(m.SegmentBackupInfo, b'{"segment_id":5,"future_field":{"x":1},"binlogs":null,"v_channel":null}', "segment_meta.json")
    assert seg == m.SegmentBackupInfo(segment_id=5)


def test_reader_matches_keys_case_insensitively_like_go():
    assert m.loads(m.FieldSchema, b'{"FieldId":3,"NAME":"x","fieldID":4}', "f").field_id == 4  # exact match wins
    assert m.loads(m.FieldSchema, b'{"fieldid":3}', "f").field_id == 3


def test_level_files_fallback_recomputes_sizes():
    files = {
        "meta/backup_meta.json": BACKUP_META.encode(),
        "meta/collection_meta.json": COLLECTION_META.encode(),
        "meta/partition_meta.json": PARTITION_META.encode(),
        "meta/segment_meta.json": SEGMENT_META.encode(),
    }
    info = m.read_meta_files(files)
    part = info.collection_backups[0].partition_backups[0]
    assert [s.segment_id for s in part.segment_backups] == [449577733492043187, 449577733492043400]
    # The level files claim 10487211; the rebuilt tree sums what it actually holds.
    assert part.size == 193628 + 640
    assert info.collection_backups[0].size == 193628 + 640
    assert info.size == 193628 + 640
    # Things only full_meta.json carries are absent.
    assert info.collection_backups[0].l0_segments == [] and info.rbac_meta is None


def test_level_files_attach_partitions_and_segments_by_ids():
    backup = m.BackupInfo(id="b", name="n")
    colls = m.CollectionLevelBackupInfo([m.CollectionBackupInfo(collection_id=1), m.CollectionBackupInfo(collection_id=2)])
    parts = m.PartitionLevelBackupInfo(
        [m.PartitionBackupInfo(partition_id=10, collection_id=1), m.PartitionBackupInfo(partition_id=10, collection_id=2)]
    )
    segs = m.SegmentLevelBackupInfo(
        [
            m.SegmentBackupInfo(segment_id=100, collection_id=2, partition_id=10, size=7),
            m.SegmentBackupInfo(segment_id=101, collection_id=1, partition_id=10, size=5),
            m.SegmentBackupInfo(segment_id=102, collection_id=1, partition_id=99, size=1000),  # orphan
        ]
    )
    tree = m.level_to_tree(backup, colls, parts, segs)
    assert [c.size for c in tree.collection_backups] == [5, 7]
    assert tree.size == 12
    assert tree.collection_backups[1].partition_backups[0].segment_backups[0].segment_id == 100


def test_full_meta_is_preferred_over_level_files():
    files = {"backup_meta.json": b"not even json", "full_meta.json": FULL_META.encode()}
    assert m.read_meta_files(files).name == "my_backup"


def test_truncated_full_meta_names_the_file_and_the_byte():
    data = compact(FULL_META)[:120]
    with pytest.raises(MetaError) as e:
        m.read_meta_files({"full_meta.json": data})
    assert str(e.value) == "meta/full_meta.json is not valid JSON (truncated at byte 120): the backup is damaged; run mbackup verify"
    assert isinstance(e.value, MBackupError)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"full_meta.json": b""}, "meta/full_meta.json is empty: the backup is damaged; run mbackup verify"),
        (
            {"full_meta.json": b'{"size":"abc"}'},
            "meta/full_meta.json: size: expected an integer, got 'abc': the backup is damaged; run mbackup verify",
        ),
        (
            {"full_meta.json": b'{"collection_backups":[{"partition_backups":[{"size":true}]}]}'},
            "meta/full_meta.json: collection_backups[0].partition_backups[0].size: expected an integer, got true: "
            "the backup is damaged; run mbackup verify",
        ),
        ({"full_meta.json": b"[1,2]"}, "meta/full_meta.json: expected an object, got an array: the backup is damaged; run mbackup verify"),
        (
            {"full_meta.json": b'{"size":1} x'},
            "meta/full_meta.json is not valid JSON (extra data at byte 11, line 1 column 12): the backup is damaged; run mbackup verify",
        ),
        ({"full_meta.json": b'{"size":NaN}'}, "meta/full_meta.json is not valid JSON (NaN is not valid JSON): the backup is damaged; run mbackup verify"),
        (
            {"backup_meta.json": BACKUP_META.encode()},
            "meta/collection_meta.json is missing and there is no meta/full_meta.json: the backup is damaged; run mbackup verify",
        ),
        (
            {},
            "no meta/backup_meta.json or meta/full_meta.json: this is not a backup or it is incomplete; check the name with mbackup list",
        ),
        (
            {"backup_meta.json": BACKUP_META.encode(), "collection_meta.json": b"{", "partition_meta.json": b"{}", "segment_meta.json": b"{}"},
            "meta/collection_meta.json is not valid JSON (truncated at byte 1): the backup is damaged; run mbackup verify",
        ),
    ],
)
def test_damaged_meta_gives_one_line(files, message):
    with pytest.raises(MetaError) as e:
        m.read_meta_files(files)
    assert str(e.value) == message
    assert "\n" not in str(e.value)



def _full(edit) -> dict[str, bytes]:
    tree = json.loads(FULL_META)
    edit(tree)
    return {"full_meta.json": json.dumps(tree).encode()}


def _coll(**fields):
    return lambda t: t["collection_backups"][0].update(fields)


def _seg(**fields):
    return lambda t: t["collection_backups"][0]["partition_backups"][0]["segment_backups"][0].update(fields)


# Meta that decodes (right JSON types) but cannot be a backup's: hostile or damaged content (issue #8 item 8).
HOSTILE_META = [
    ("empty object", {"full_meta.json": b"{}"}, "id: missing"),
    ("no name", _full(lambda t: t.pop("name")), "name: missing"),
    ("name that escapes", _full(lambda t: t.update(name="../../x")),
     "name: expected a backup name (letters, digits and _), got '../../x'"),
    ("id with a slash", _full(lambda t: t.update(id="a/b")),
     "id: expected a backup id (letters, digits, '_', '.', '-'), got 'a/b'"),
    ("negative size", _full(lambda t: t.update(size=-1)), "size: out of range (-1), expected a non-negative integer"),
    ("negative rows", _full(_seg(num_of_rows=-5)), "collection_backups[0].partition_backups[0].segment_backups[0]."
     "num_of_rows: out of range (-5), expected a non-negative integer"),
    ("id past uint64", _full(_seg(segment_id=2 ** 64)), "collection_backups[0].partition_backups[0].segment_backups[0]."
     f"segment_id: out of range ({2 ** 64}), expected a non-negative integer"),
    ("partition below -1", _full(_seg(partition_id=-2)), "collection_backups[0].partition_backups[0].segment_backups[0]."
     "partition_id: out of range (-2), expected -1 or more"),
    ("negative log size", _full(lambda t: t["collection_backups"][0]["l0_segments"][0]["deltalogs"][0]["binlogs"][0].update(
        log_size=-3)), "collection_backups[0].l0_segments[0].deltalogs[0].binlogs[0].log_size: out of range (-3), "
     "expected a non-negative integer"),
    ("null collection", _full(lambda t: t["collection_backups"].append(None)),
     "collection_backups[1]: null where an object belongs"),
    ("no collection name", _full(_coll(collection_name="")), "collection_backups[0].collection_name: missing"),
    ("collection name with a slash", _full(_coll(collection_name="a/b")),
     "collection_backups[0].collection_name: expected a collection name (letters, digits, _ and -), got 'a/b'"),
    ("no schema", _full(lambda t: t["collection_backups"][0].pop("schema")),
     "collection_backups[0].schema: missing: a collection has a schema"),
    ("schema without fields", _full(_coll(schema={"name": "x"})),
     "collection_backups[0].schema.fields: missing: a collection has a schema"),
    ("no partition name", _full(lambda t: t["collection_backups"][0]["partition_backups"][0].pop("partition_name")),
     "collection_backups[0].partition_backups[0].partition_name: missing"),
    ("version that forges a line", _full(lambda t: t.update(milvus_version="v2.3.5\nfake  1 GiB")),
     "milvus_version: expected a short printable text, got 'v2.3.5\\nfake  1 GiB'"),
    ("time after 9999", _full(_coll(backup_physical_timestamp=10 ** 12)),
     "collection_backups[0].backup_physical_timestamp: expected a time before the year 10000, got 1000000000000"),
    ("level file with a negative id", {"backup_meta.json": BACKUP_META.encode(), "collection_meta.json": COLLECTION_META.encode(),
                                       "partition_meta.json": PARTITION_META.encode(),
                                       "segment_meta.json": b'{"infos":[{"segment_id":-7}]}'},
     "infos[0].segment_id: out of range (-7), expected a non-negative integer"),
]


@pytest.mark.parametrize(("files", "problem"), [c[1:] for c in HOSTILE_META], ids=[c[0] for c in HOSTILE_META])
def test_meta_that_cannot_be_a_backup_is_damaged(files, problem):
    with pytest.raises(MetaError) as e:
        m.read_meta_files(files)
    fname = "segment_meta.json" if "segment_meta.json" in files else "full_meta.json"
    assert str(e.value) == f"meta/{fname}: {problem}: the backup is damaged; run mbackup verify"


@pytest.mark.parametrize("depth", [65, 900, 100_000])
def test_deeply_nested_meta_is_damaged_not_a_recursion_error(depth):
    data = b'{"id":"i","name":"n","rbac_meta":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(MetaError) as e:
        m.read_meta_files({"full_meta.json": data})
    assert str(e.value) == "meta/full_meta.json nests more than 64 levels deep: the backup is damaged; run mbackup verify"


def test_the_anchor_examples_are_backups():
    assert m.read_meta_files({"full_meta.json": FULL_META.encode()}).name == "my_backup"
    level = {"backup_meta.json": BACKUP_META, "collection_meta.json": COLLECTION_META,
             "partition_meta.json": PARTITION_META, "segment_meta.json": SEGMENT_META}
    assert m.read_meta_files({k: v.encode() for k, v in level.items()}).id == "7c1f6f0e-3b7d-4d3e-9a8b-1f2e3d4c5b6a"


# --------------------------------------------------------------------------------------
# Property tests

ids = st.integers(min_value=-(2**63), max_value=2**63 - 1)
text = st.text(max_size=12)
small = {"max_size": 2}
kvs = st.lists(st.builds(m.KeyValuePair, key=text, value=text), **small)
json_leaf = st.one_of(st.none(), st.booleans(), ids, text)
opaque = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(text, inner, max_size=2)), max_leaves=5)

binlogs = st.builds(m.Binlog, entries_num=ids, log_path=text, log_size=ids, log_id=ids)
field_binlogs = st.builds(m.FieldBinlog, field_id=ids, binlogs=st.lists(binlogs, **small))
segments = st.builds(
    m.SegmentBackupInfo,
    segment_id=ids,
    collection_id=ids,
    partition_id=ids,
    num_of_rows=ids,
    binlogs=st.lists(field_binlogs, **small),
    deltalogs=st.lists(field_binlogs, **small),
    size=ids,
    group_id=ids,
    is_l0=st.booleans(),
    v_channel=text,
    storage_version=ids,
)
partitions = st.builds(m.PartitionBackupInfo, partition_id=ids, partition_name=text, collection_id=ids, segment_backups=st.lists(segments, **small), size=ids, load_state=text)
fields_ = st.builds(
    m.FieldSchema,
    field_id=ids,
    name=text,
    is_primary_key=st.booleans(),
    data_type=st.sampled_from(list(m.DataType)),
    type_params=kvs,
    auto_id=st.booleans(),
    default_value=st.none() | st.dictionaries(text, json_leaf, max_size=2),
    nullable=st.booleans(),
    default_value_base64=text,
)
schemas = st.builds(
    m.CollectionSchema,
    name=text,
    auto_id=st.booleans(),
    fields=st.lists(fields_, **small),
    properties=kvs,
    functions=st.lists(st.builds(m.FunctionSchema, name=text, type=st.sampled_from(list(m.FunctionType)), input_field_ids=st.lists(ids, **small), output_field_names=st.lists(text, **small)), **small),
    struct_array_fields=st.lists(st.builds(m.StructArrayFieldSchema, field_id=ids, name=text, fields=st.lists(fields_, max_size=1)), max_size=1),
)
collections = st.builds(
    m.CollectionBackupInfo,
    id=text,
    collection_id=ids,
    db_name=text,
    collection_name=text,
    schema=st.none() | schemas,
    consistency_level=st.sampled_from(list(m.ConsistencyLevel)),
    partition_backups=st.lists(partitions, **small),
    backup_timestamp=st.integers(min_value=0, max_value=2**64 - 1),
    size=ids,
    has_index=st.booleans(),
    index_infos=st.lists(st.builds(m.IndexInfo, field_name=text, params=st.dictionaries(text, text, max_size=3), index_id=ids), **small),
    channel_checkpoints=st.dictionaries(text, text, max_size=2),
    l0_segments=st.lists(segments, max_size=1),
    aliases=st.lists(text, **small),
    snapshot_backup=st.none() | st.builds(m.SnapshotBackup, metadata_path=text, total_files=ids),
)
backups = st.builds(
    m.BackupInfo,
    id=text,
    name=text,
    backup_timestamp=st.integers(min_value=0, max_value=2**64 - 1),
    collection_backups=st.lists(collections, **small),
    size=ids,
    milvus_version=text,
    rbac_meta=st.none() | st.dictionaries(text, opaque, max_size=2),
    rpc_channel_info=st.none() | st.builds(m.RPCChannelInfo, name=text, position=text),
    database_backups=st.lists(st.builds(m.DatabaseBackupInfo, db_name=text, db_id=ids, properties=kvs, ezk=text), **small),
    flush_all_msgs_base64=st.dictionaries(text, text, max_size=2),
    physical_channel_names=st.lists(text, **small),
    format=st.sampled_from(["", "snapshot"]),
)


@settings(max_examples=150, deadline=None)
@given(backups)
def test_property_dumps_then_read_round_trips(info):
    # The codec, as Go's: any values of the right types (m.check judges them apart).
    data = m.dumps_compact(info)
    back = m.loads(m.BackupInfo, data)
    assert back == info
    assert m.dumps_compact(back) == data
    # And Go's reading of it (any JSON parser) sees the same document.
    assert json.loads(data) == json.loads(data.decode())


@settings(max_examples=30, deadline=None)
@given(backups, st.data())
def test_property_every_cut_off_file_is_reported_as_truncated(info, data):
    raw = m.dumps_compact(info)
    cut = data.draw(st.integers(min_value=1, max_value=len(raw) - 1))
    with pytest.raises(MetaError, match=rf"truncated at byte {cut}\)"):
        m.read_meta_files({"full_meta.json": raw[:cut]})


@settings(max_examples=300, deadline=None)
@given(
    root=st.sampled_from(["", "backup", "a/b", "/x//y/"]) | st.text(alphabet="ab./\\", max_size=8) | text,
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True) | st.text(alphabet="ab._/", max_size=5) | text,
    coll=st.one_of(ids, ids, st.text(max_size=6)),
    part=st.one_of(st.sampled_from([-1, 0, 7]), ids, st.text(alphabet="-1./", max_size=4)),
    seg=st.one_of(ids, ids, st.text(alphabet="0./", max_size=4)),
    log=ids,
)
def test_property_keys_never_escape_the_backup_dir(root, name, coll, part, seg, log):
    try:
        bdir = m.backup_dir(root, name)
        keys = [
            m.insert_log_key(bdir, coll, part, seg, 101, log),
            m.delta_log_key(bdir, coll, part, seg, log),
            m.meta_key(bdir, m.FULL_META),
        ]
    except MetaError:
        return
    bparts = bdir.split("/")
    assert bparts[-1] == name
    for key in keys:
        parts = key.split("/")
        assert parts[: len(bparts)] == bparts
        assert len(parts) > len(bparts)
        assert all(p not in ("", ".", "..") and "\\" not in p for p in parts)


# --------------------------------------------------------------------------------------
# Names and keys


@pytest.mark.parametrize("name", ["a", "_", "my_backup", "Backup_2024_01_01", "A" * 128, "_1"])
def test_valid_backup_names(name):
    assert m.validate_backup_name(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a b", "a/b", "a-b", "A" * 129, "é", "a\n", " a", "a.b", ".."])
def test_invalid_backup_names(name):
    with pytest.raises(BackupNameError) as e:
        m.validate_backup_name(name)
    assert str(e.value) == f"invalid backup name {name!r}: use letters, digits and _ (max 128), starting with a letter or _"


def test_invalid_backup_name_message_from_the_brief():
    with pytest.raises(BackupNameError, match=r"^invalid backup name 'a/b': use letters, digits and _ \(max 128\), starting with a letter or _$"):
        m.validate_backup_name("a/b")


BDIR = "backup/my_backup"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (m.backup_dir("backup", "my_backup"), "backup/my_backup"),
        (m.backup_dir("/backup/", "my_backup"), "backup/my_backup"),
        (m.backup_dir("a//b", "n"), "a/b/n"),
        (m.backup_dir("", "n"), "n"),
        (m.meta_key(BDIR, "full_meta.json"), "backup/my_backup/meta/full_meta.json"),
        (m.insert_log_key(BDIR, 4540776, 4540107, 4597059, 105, 4597511), "backup/my_backup/binlogs/insert_log/4540776/4540107/4597059/4597059/105/4597511"),
        (m.insert_log_key(BDIR, 1, 2, 3, 0, 5, group_id=9), "backup/my_backup/binlogs/insert_log/1/2/9/3/0/5"),
        (m.delta_log_key(BDIR, 1, 2, 3, 5), "backup/my_backup/binlogs/delta_log/1/2/3/3/5"),
        (m.delta_log_key(BDIR, 1, -1, 3, 5), "backup/my_backup/binlogs/delta_log/1/-1/3/5"),
        (m.delta_log_key(BDIR, 1, -1, 3, 5, group_id=0), "backup/my_backup/binlogs/delta_log/1/-1/3/5"),
    ],
)
def test_key_layout(key, expected):
    assert key == expected


def test_segment_import_dirs():
    data = m.SegmentBackupInfo(segment_id=3, collection_id=1, partition_id=2, group_id=3, deltalogs=[m.FieldBinlog(binlogs=[m.Binlog(log_id=9)])])
    assert m.segment_import_dirs(BDIR, data) == m.ImportDirs(
        "backup/my_backup/binlogs/insert_log/1/2/3/", "backup/my_backup/binlogs/delta_log/1/2/3/"
    )
    assert m.segment_import_dirs(BDIR, data).files() == ["backup/my_backup/binlogs/insert_log/1/2/3/", "backup/my_backup/binlogs/delta_log/1/2/3/"]
    no_delta = dataclasses.replace(data, deltalogs=[m.FieldBinlog()])  # the listing path's "deltalogs":[{}]
    assert m.segment_import_dirs(BDIR, no_delta).files() == ["backup/my_backup/binlogs/insert_log/1/2/3/"]
    part_l0 = m.SegmentBackupInfo(segment_id=4, collection_id=1, partition_id=2, group_id=4, is_l0=True)
    assert m.segment_import_dirs(BDIR, part_l0).files() == ["backup/my_backup/binlogs/delta_log/1/2/4/"]
    coll_l0 = m.SegmentBackupInfo(segment_id=5, collection_id=1, partition_id=-1, is_l0=True)
    assert m.segment_import_dirs(BDIR, coll_l0).files() == ["backup/my_backup/binlogs/delta_log/1/-1/5/"]
    with pytest.raises(MetaError, match="no group id"):
        m.segment_import_dirs(BDIR, m.SegmentBackupInfo(segment_id=6, collection_id=1, partition_id=2))
    assert m.partition_import_dirs(BDIR, 1, 2, with_delta=False).files() == ["backup/my_backup/binlogs/insert_log/1/2/"]


def test_segment_files_of_the_anchor_example():
    seg = m.loads(m.SegmentLevelBackupInfo, SEGMENT_META.encode(), "segment_meta.json").infos[0]
    files = m.segment_files(BDIR, seg)
    c, p, s = 449577733491839211, 449577733491839212, 449577733492043187
    assert files[0] == (
        f"files/insert_log/{c}/{p}/{s}/0/449577733492043190",
        f"{BDIR}/binlogs/insert_log/{c}/{p}/{s}/{s}/0/449577733492043190",
        24153,
    )
    assert files[-1][1] == f"{BDIR}/binlogs/delta_log/{c}/{p}/{s}/{s}/449577733492043300"
    assert sum(size for _, _, size in files) == seg.size


def test_segment_files_derive_missing_log_ids_and_handle_old_layouts():
    seg = m.SegmentBackupInfo(segment_id=3, collection_id=1, partition_id=2, binlogs=[m.FieldBinlog(field_id=100, binlogs=[m.Binlog(log_path="files/insert_log/1/2/3/100/77")])])
    assert m.segment_files(BDIR, seg) == [("files/insert_log/1/2/3/100/77", f"{BDIR}/binlogs/insert_log/1/2/3/100/77", 0)]
    bad = m.SegmentBackupInfo(segment_id=3, collection_id=1, partition_id=2, group_id=3, binlogs=[m.FieldBinlog(binlogs=[m.Binlog(log_path="x/../..")])])
    with pytest.raises(MetaError, match="unsafe insert log path"):
        m.segment_files(BDIR, bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda: m.backup_dir("backup", ".."),
        lambda: m.backup_dir("backup", "a/b"),
        lambda: m.backup_dir("backup", ""),
        lambda: m.backup_dir("../etc", "n"),
        lambda: m.backup_dir("a/./b", "n"),
        lambda: m.insert_log_key(BDIR, "1/../../x", 2, 3, 4, 5),
        lambda: m.insert_log_key(BDIR, 1, 2, 3, True, 5),
        lambda: m.delta_log_key(BDIR, 1, "..", 3, 5),
        lambda: m.meta_key("", m.FULL_META),
        lambda: m.meta_key("../x", m.FULL_META),
    ],
)
def test_unsafe_components_are_refused(call):
    with pytest.raises(MetaError, match=r"^unsafe .*: it would build a key outside the backup dir"):
        call()
