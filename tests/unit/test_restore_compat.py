"""Cross-version refusals (issue #10 item 4): what each Milvus line restores, as tables over
(backup line, target line, feature) -> allowed, or the exact line restore refuses with.

The target lines' capabilities are Capabilities.of_line (the feature table of
milvus/adapters/base.py); 2.3's are the adapters' default, which tests/test_golden.py checks
against a real 2.3.5 (each feature it lacks, the server refuses too).
"""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup.backup.compat import IncompatibleBackup, check_restorable
from milvus_backup.backup.restore import RestoreRequest
from milvus_backup.format import meta
from milvus_backup.milvus.adapters.base import FEATURES_SINCE, Capabilities, MilvusAdapter, line_of

T = meta.DataType
VERSIONS = {"2.2": "v2.2.16", "2.3": "v2.3.5", "2.4": "v2.4.13", "2.5": "v2.5.8", "2.6": "v2.6.11", "3.0": "v3.0.1"}
TARGETS = ("2.3", "2.4", "2.5", "2.6", "3.0")


def caps(line: str) -> Capabilities:
    return MilvusAdapter.capabilities if line == "2.3" else Capabilities.of_line(line)


def field(fid: int, name: str, data_type: int, **kw) -> meta.FieldSchema:
    return meta.FieldSchema(field_id=fid, name=name, data_type=data_type, **kw)


def plain_fields() -> list[meta.FieldSchema]:
    return [field(100, "id", T.Int64, is_primary_key=True),
            field(101, "vec", T.FloatVector, type_params=[meta.KeyValuePair("dim", "4")])]


def segment(sid: int, part: int = 2, **kw) -> meta.SegmentBackupInfo:
    return meta.SegmentBackupInfo(segment_id=sid, collection_id=1, partition_id=part, num_of_rows=10, group_id=sid, **kw)


def backup(version: str = "v2.3.5", *, fields=None, functions=(), structs=(), segs=None, l0=(),
           fmt: str = "") -> meta.BackupInfo:
    schema = meta.CollectionSchema(name="c", fields=fields or plain_fields(), functions=list(functions),
                                   struct_array_fields=list(structs))
    part = meta.PartitionBackupInfo(partition_id=2, partition_name="_default", collection_id=1,
                                    segment_backups=list(segs if segs is not None else [segment(3)]))
    coll = meta.CollectionBackupInfo(collection_id=1, db_name="default", collection_name="c", schema=schema,
                                     partition_backups=[part], l0_segments=list(l0))
    return meta.BackupInfo(id="i", name="n", milvus_version=version, collection_backups=[coll], format=fmt)


def check(info: meta.BackupInfo, line: str, **kw) -> list[str]:
    version = "v2.3.5" if line == "2.3" else VERSIONS[line]
    return check_restorable(info, [("default.c", c) for c in info.collection_backups], caps(line), version, **kw)


def refusal(info: meta.BackupInfo, line: str, **kw) -> str:
    with pytest.raises(IncompatibleBackup) as e:
        check(info, line, **kw)
    return str(e.value)


# --------------------------------------------------------------------------------------
# The line rule: the Go tool's table (README "Compatibility"), and 2.3, which the Go tool
# does not restore into, taking 2.4 and 2.5 backups too (their storage v0 binlogs).

RESTORES = {  # target line -> backup lines it takes
    "2.3": {"2.2", "2.3", "2.4", "2.5"},
    "2.4": {"2.2", "2.3", "2.4"},
    "2.5": {"2.2", "2.3", "2.4", "2.5"},
    "2.6": {"2.2", "2.3", "2.4", "2.5", "2.6"},
    "3.0": set(VERSIONS),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("taken", VERSIONS)
def test_a_backup_restores_into_the_same_or_a_newer_line(taken, target):
    info = backup(VERSIONS[taken])
    if taken in RESTORES[target]:
        assert check(info, target) == []
        return
    newest = caps(target).newest_backup_line
    target_version = "2.3.5" if target == "2.3" else VERSIONS[target][1:]
    assert refusal(info, target) == (
        f"backup 'n' was taken on Milvus {VERSIONS[taken][1:]}, and Milvus {target_version} restores backups of "
        f"Milvus {newest} and older only (a backup restores into the same or a newer line): restore it into "
        f"Milvus {taken} or newer")


def test_the_line_refusal_in_full():
    assert refusal(backup("v2.6.11"), "2.5") == (
        "backup 'n' was taken on Milvus 2.6.11, and Milvus 2.5.8 restores backups of Milvus 2.5 and older only "
        "(a backup restores into the same or a newer line): restore it into Milvus 2.6 or newer")


@pytest.mark.parametrize("version", ["", "master-20260101-abc", "unknown"])
def test_a_backup_without_a_release_line_is_judged_by_what_it_holds(version):
    assert check(backup(version), "2.3") == []


# --------------------------------------------------------------------------------------
# Schema features: each is refused by the lines before the one it came with


def _with_feature(feature: str) -> meta.BackupInfo:
    """A backup whose one collection uses ``feature`` and nothing newer."""
    base = plain_fields()
    typed = {"bfloat16_vector": T.BFloat16Vector,
             "sparse_float_vector": T.SparseFloatVector, "int8_vector": T.Int8Vector, "geometry": T.Geometry,
             "timestamptz": T.Timestamptz, "text": T.Text}
    if feature in typed:  # the only vector field, or a scalar beside the float vector
        vector = typed[feature] in (T.BFloat16Vector, T.SparseFloatVector, T.Int8Vector)
        return backup(fields=[base[0], field(102, "x", typed[feature])] + ([] if vector else [base[1]]))
    if feature == "several_vector_fields":
        return backup(fields=base + [field(102, "vec2", T.BinaryVector)])
    if feature == "nullable":
        return backup(fields=base + [field(102, "age", T.Int32, nullable=True)])
    if feature == "default_value":
        value = base64.b64encode(b"\x10\x07").decode()  # ValueField{int_data: 7}
        return backup(fields=base + [field(102, "age", T.Int32, default_value_base64=value)])
    if feature == "functions":
        return backup(fields=base + [field(102, "text", T.VarChar)],
                      functions=[meta.FunctionSchema(name="bm25", type=meta.FunctionType.BM25,
                                                     input_field_names=["text"])])
    if feature == "struct_array":
        return backup(structs=[meta.StructArrayFieldSchema(field_id=103, name="clips",
                                                           fields=[field(104, "t", T.Array, element_type=T.Int64)])])
    raise AssertionError(feature)


WHAT = {
    "bfloat16_vector": "field 'x' of type BFloat16Vector",
    "sparse_float_vector": "field 'x' of type SparseFloatVector", "int8_vector": "field 'x' of type Int8Vector",
    "geometry": "field 'x' of type Geometry", "timestamptz": "field 'x' of type Timestamptz",
    "text": "field 'x' of type Text", "several_vector_fields": "2 vector fields (vec, vec2)",
    "nullable": "nullable field 'age'", "default_value": "field 'age' with a default value",
    "functions": "function 'bm25' (BM25)", "struct_array": "struct array field 'clips'",
}
NOUNS = {
    "bfloat16_vector": "BFloat16Vector fields",
    "sparse_float_vector": "SparseFloatVector fields", "int8_vector": "Int8Vector fields",
    "geometry": "Geometry fields", "timestamptz": "Timestamptz fields", "text": "Text fields",
    "several_vector_fields": "collections with several vector fields", "nullable": "nullable fields",
    "default_value": "default values", "functions": "functions", "struct_array": "struct array fields",
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("feature", sorted(WHAT))
def test_a_schema_feature_is_refused_by_a_line_without_it(feature, target):
    info = _with_feature(feature)
    since = FEATURES_SINCE[feature]
    if line_of(target) >= line_of(since):
        assert check(info, target) == []
        return
    target_version = "2.3.5" if target == "2.3" else VERSIONS[target][1:]
    assert refusal(info, target) == (
        f"default.c has {WHAT[feature]}: Milvus {target_version} lacks {NOUNS[feature]} (they came with Milvus "
        f"{since}); restore it into Milvus {since} or newer, or leave it out with --filter")


def test_float16_vectors_restore_into_every_line():
    # A 2.3.5 server takes them (tests/test_golden.py), though the notes date them to 2.4.
    info = backup(fields=[plain_fields()[0], field(101, "h", T.Float16Vector)])
    assert [check(info, target) for target in TARGETS] == [[]] * len(TARGETS)


@pytest.mark.parametrize("data_type", [0, 107, 300])
def test_a_data_type_no_line_is_known_to_have_is_refused_everywhere(data_type):
    info = backup(fields=plain_fields() + [field(102, "odd", data_type)])
    name = meta.DataType(data_type).name if data_type in set(meta.DataType) else f"data type {data_type}"
    for target in TARGETS:
        assert refusal(info, target) == (
            f"default.c has field 'odd' of type {name}, which mbackup knows no Milvus line to have: restore it with "
            "the tool that made the backup, or leave it out with --filter")


def test_the_dynamic_field_needs_nothing():
    dynamic = field(102, "$meta", T.JSON, is_dynamic=True, nullable=True)
    assert check(backup(fields=plain_fields() + [dynamic]), "2.3") == []


def test_a_function_output_field_is_refused_like_its_function():
    info = backup(fields=plain_fields() + [field(102, "sparse", T.VarChar, is_function_output=True)])
    assert refusal(info, "2.4").startswith("default.c has field 'sparse' that a function fills: Milvus 2.4.13 lacks "
                                           "functions (they came with Milvus 2.5)")


def test_a_meta_only_restore_checks_the_schema_but_not_the_data():
    assert check(backup(segs=[segment(3, storage_version=3)]), "2.3", meta_only=True) == []
    assert refusal(_with_feature("nullable"), "2.3", meta_only=True).startswith("default.c has nullable field 'age'")


FEATURES = sorted(WHAT)


@settings(max_examples=200, deadline=None)
@given(features=st.sets(st.sampled_from(FEATURES)), target=st.sampled_from(TARGETS))
def test_property_a_schema_is_refused_exactly_when_it_needs_a_newer_line(features, target):
    """Any mix of features: refused iff one came after the target's line, naming one of those."""
    fields, functions, structs = plain_fields(), [], []
    for i, feature in enumerate(sorted(features)):
        one = _with_feature(feature).collection_backups[0].schema
        fields += [dataclasses.replace(f, name=f"{f.name}_{i}") for f in one.fields if f.name not in ("id", "vec")]
        functions += one.functions
        structs += one.struct_array_fields
    info = backup(fields=fields, functions=functions, structs=structs)
    newer = {f for f in features | _implied(fields) if line_of(FEATURES_SINCE[f]) > line_of(target)}
    if not newer:
        assert check(info, target) == []
    else:
        line = refusal(info, target)
        assert any(f"lacks {NOUNS[f]} " in line for f in newer), line


def _implied(fields: list[meta.FieldSchema]) -> set[str]:
    """Mixing features can need one more: several vector fields."""
    vectors = [f for f in fields if meta.DataType(f.data_type).name.endswith("Vector")]
    return {"several_vector_fields"} if len(vectors) > 1 else set()


# --------------------------------------------------------------------------------------
# Storage versions and L0 deletes


@pytest.mark.parametrize(("version", "target", "expected"), [
    (0, "2.3", None), (1, "2.3", "which Milvus 2.3.5 cannot import (it reads v0)"),
    (1, "2.4", None), (2, "2.5", "which Milvus 2.5.8 cannot import: restore it into Milvus 2.6 or newer"),
    (2, "2.6", None), (2, "3.0", None),
    (3, "2.6", "which no Milvus imports from a backup yet (milvus#52930); only backups made with storage v3 off restore"),
    (3, "3.0", "which no Milvus imports from a backup yet (milvus#52930); only backups made with storage v3 off restore"),
    (7, "3.0", "which Milvus 3.0.1 cannot import (it reads v0, v1, v2)"),
])
def test_segment_storage_versions_a_line_imports(version, target, expected):
    info = backup("v2.3.5", segs=[segment(3), segment(4, storage_version=version)])
    if expected is None:
        assert check(info, target) == []
    else:
        assert refusal(info, target) == f"default.c holds segment 4 in storage format v{version}, {expected}"


def _l0_backup() -> meta.BackupInfo:
    return backup("v2.4.13", segs=[segment(3), segment(5, is_l0=True)],
                  l0=[meta.SegmentBackupInfo(segment_id=6, collection_id=1, partition_id=-1, is_l0=True)])


def test_l0_deletes_into_2_3_are_refused_unless_skip_l0_says_to_leave_them_out():
    assert refusal(_l0_backup(), "2.3") == (
        "default.c holds deletes in 2 L0 segments, which Milvus 2.3.5 cannot import: the rows they delete would "
        "come back. Fold them into the data segments first with mbackup l0compact -n n, restore with --skip-l0 to "
        "leave them out knowingly, or into Milvus 2.4 or newer")
    assert check(_l0_backup(), "2.3", skip_l0=True) == [
        "--skip-l0: the deletes in 2 L0 segments of default.c are left out: rows they deleted are restored"]
    one = backup("v2.4.13", segs=[segment(3)], l0=[segment(6, part=-1, is_l0=True)])
    assert "holds deletes in 1 L0 segment, which" in refusal(one, "2.3")


@pytest.mark.parametrize("target", ["2.4", "2.5", "2.6", "3.0"])
def test_lines_that_import_l0_take_l0_deletes(target):
    assert check(_l0_backup(), target) == []
    assert check(_l0_backup(), target, skip_l0=True) == []


def test_only_the_collections_restored_are_checked():
    info = _l0_backup()
    assert check_restorable(info, [], caps("2.3"), "v2.3.5") == []


# --------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("target", ["2.3", "2.4", "2.5", "2.6"])
def test_a_snapshot_backup_needs_restore_external_snapshot(target):
    target_version = "2.3.5" if target == "2.3" else VERSIONS[target][1:]
    assert refusal(backup("v2.3.5", fmt="snapshot"), target) == (
        f"backup 'n' is in the snapshot format, which only Milvus 3.0 and newer restore (RestoreExternalSnapshot); "
        f"Milvus {target_version} cannot: restore it into Milvus 3.0 or newer")


def test_a_snapshot_backup_into_3_0_passes_the_check():
    """3.0 restores it through RestoreExternalSnapshot (tests/test_snapshot_format.py)."""
    assert check(backup("v3.0.1", fmt="snapshot"), "3.0") == []


def test_an_unknown_format_is_refused_on_every_line():
    for target in TARGETS:
        assert refusal(backup(fmt="parquet"), target) == (
            "backup 'n' has format 'parquet', which this mbackup does not know: restore it with the tool that made it")


# --------------------------------------------------------------------------------------
# The flag


def test_skip_l0_is_part_of_what_a_restore_is():
    request = RestoreRequest(name="n", skip_l0=True)
    assert request.shape()["skip_l0"] and request.command() == "mbackup restore -n n --skip-l0"
    with pytest.raises(Exception, match="--discard-journal takes no other flag"):
        RestoreRequest(name="n", skip_l0=True, discard_journal=True).validate()
