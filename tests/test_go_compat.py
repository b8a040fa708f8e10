"""Compatibility with the Go tool, checked against facts derived from its source.

The expectations come from tests/compat/go_facts/*.json, which tests/compat/derive_go_facts.py
derives mechanically from zilliztech/milvus-backup's generated code (core/proto/backuppb) at
HEAD and v0.5.16: key names, order, JSON types and omitempty of every message, what each meta
file holds, what `get` prints. Nothing here is typed from memory of what the Go tool writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings

import gofacts
from gofacts import every_key, facts, go_compact, problems, strip_cleared
from milvus_backup.format import meta as m

COMPAT = Path(__file__).resolve().parent / "compat"
LEVEL_FILES = {
    "BackupInfo": m.BackupInfo,
    "CollectionLevelBackupInfo": m.CollectionLevelBackupInfo,
    "PartitionLevelBackupInfo": m.PartitionLevelBackupInfo,
    "SegmentLevelBackupInfo": m.SegmentLevelBackupInfo,
}


# --------------------------------------------------------------------------------------
# The tables themselves


@pytest.mark.optional_in_ci("needs a clone of the Go tool; the committed tables are used otherwise")
def test_fact_tables_are_what_the_go_source_says():
    repo = os.environ.get("MBACKUP_GO_TOOL_REPO", "/work/.mirror/zilliztech+milvus-backup/repo")
    if not Path(repo, "HEAD").exists():
        pytest.skip(f"no clone of zilliztech/milvus-backup at {repo} (set MBACKUP_GO_TOOL_REPO)")
    r = subprocess.run([sys.executable, str(COMPAT / "derive_go_facts.py"), "--repo", repo, "--check"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("version", gofacts.TARGETS)
def test_the_go_tool_writes_meta_and_get_with_encoding_json(version):
    f = facts(version)
    calls = f["encoding"]["calls"]
    assert {c["call"] for c in calls if c["at"].startswith("core/backup/meta_builder.go")} == {"json.Marshal"}
    assert [c["call"] for c in calls if c["at"].startswith("cmd/get/get.go")] == ["json.MarshalIndent"]
    assert not [c for c in calls if "proto" in c["call"] or "jsonpb" in c["call"]]


# --------------------------------------------------------------------------------------
# mbackup's model has the Go tool's keys, in its order


def _model_pairs(go: str, cls: type, f: dict, seen: dict) -> None:
    """Pair each Go message reachable from ``go`` with the mbackup class that models it."""
    if go in seen:
        return
    seen[go] = cls
    specs = {s.key: s for s in m._specs(cls)}
    for field in f["messages"][go]["fields"]:
        s = specs.get(field["json"])
        if s is None or s.kind == "any":
            continue
        inner = field.get("message") or field.get("items", {}).get("message")
        if inner and isinstance(s.item, type) and issubclass(s.item, m._Message):
            _model_pairs(inner, s.item, f, seen)


def _pairs(version: str) -> dict[str, type]:
    seen: dict[str, type] = {}
    for go, cls in {**LEVEL_FILES, "BackupInfoBrief": m.BackupInfoBrief}.items():
        _model_pairs(go, cls, facts(version), seen)
    return seen


def test_every_meta_message_is_modelled():
    # rbac_meta is kept opaque (as read), the rest is modelled field by field.
    assert sorted(_pairs("HEAD")) == sorted([
        "BackupInfo", "Binlog", "CollectionBackupInfo", "CollectionLevelBackupInfo", "CollectionSchema",
        "DatabaseBackupInfo", "FieldBinlog", "FieldSchema", "FunctionSchema", "IndexInfo", "KeyValuePair",
        "PartitionBackupInfo", "PartitionLevelBackupInfo", "RPCChannelInfo", "SegmentBackupInfo",
        "SegmentLevelBackupInfo", "SnapshotBackupInfo", "StructArrayFieldSchema", "BackupInfoBrief",
        "CollectionBackupInfoBrief",
    ])


@pytest.mark.parametrize("go", sorted(_pairs("HEAD")))
def test_mbackup_message_keys_are_the_go_keys_in_go_order(go):
    cls = _pairs("HEAD")[go]
    fields = facts("HEAD")["messages"][go]["fields"]
    assert [s.key for s in m._specs(cls)] == [x["json"] for x in fields]
    # Written even when zero exactly where Go has no omitempty.
    assert [s.key for s in m._specs(cls) if s.always] == [x["json"] for x in fields if not x["omitempty"]]
    kinds = {"string": "str", "integer": "int", "boolean": "bool", "object": "msg", "array": "list", "object(map)": "map"}
    for s, x in zip(m._specs(cls), fields, strict=False):
        assert s.kind == "any" or s.kind == kinds[x["json_type"]], (s, x)


@pytest.mark.parametrize(("name", "enum"), [("DataType", m.DataType), ("ConsistencyLevel", m.ConsistencyLevel),
                                            ("FunctionType", m.FunctionType), ("FieldState", m.FieldState)])
def test_enums_have_the_go_values(name, enum):
    go = {int(v): n for v, n in facts("HEAD")["enums"][name].items()}
    assert {e.value: e.name.rstrip("_") for e in enum} == go


# --------------------------------------------------------------------------------------
# Reading: a file using every key of every message is read without loss


@pytest.mark.parametrize("version", gofacts.TARGETS)
@pytest.mark.parametrize("message", LEVEL_FILES)
def test_a_file_with_every_key_reads_and_writes_back_byte_for_byte(version, message):
    f = facts(version)
    doc = every_key(message, f)
    assert problems(doc, message, f) == []  # the generator makes what Go would write
    data = go_compact(doc)
    back = m.dumps_compact(m.loads(LEVEL_FILES[message], data, "x.json"))
    assert back == data


def test_the_hand_typed_illustrations_in_test_meta_follow_the_table():
    from unit.test_meta import EXAMPLES

    for name, cls, text in EXAMPLES:
        doc = _without_opaque(json.loads(text))
        assert problems(doc, cls.__name__, facts("HEAD")) == [], name


# --------------------------------------------------------------------------------------
# Writing: the meta files hold what the Go builders put in them


def test_meta_files_hold_what_the_go_builders_write():
    f = facts("HEAD")
    doc = every_key("BackupInfo", f)
    files = m.write_meta_files(m.loads(m.BackupInfo, go_compact(doc), "full_meta.json"))
    spec = {x["file"]: x for x in f["meta_files"]["files"]}
    assert list(files) == f["meta_files"]["write_order"]

    only = spec["backup_meta.json"]["only"]
    always = [x["json"] for x in f["messages"]["BackupInfo"]["fields"] if not x["omitempty"]]
    expected = {k: v for k, v in doc.items() if k in only or k in always}
    assert files["backup_meta.json"] == go_compact(expected)

    colls = [strip_cleared(c, "CollectionBackupInfo", spec["collection_meta.json"]["cleared"], f) for c in doc["collection_backups"]]
    assert files["collection_meta.json"] == go_compact({"infos": colls})
    parts = [strip_cleared(p, "PartitionBackupInfo", spec["partition_meta.json"]["cleared"], f)
             for c in doc["collection_backups"] for p in c["partition_backups"]]
    assert files["partition_meta.json"] == go_compact({"infos": parts})
    segs = [s for c in doc["collection_backups"] for p in c["partition_backups"] for s in p["segment_backups"]]
    assert files["segment_meta.json"] == go_compact({"infos": segs})
    assert files["full_meta.json"] == go_compact(doc)


def _without_opaque(doc):
    """``doc`` without the values mbackup keeps as it read them (rbac_meta, a field's
    default_value): their shape is the file's, checked by the every-key round trip."""
    if isinstance(doc, list):
        return [_without_opaque(v) for v in doc]
    if isinstance(doc, dict):
        return {k: _without_opaque(v) for k, v in doc.items() if k not in ("rbac_meta", "default_value")}
    return doc


def _backups():
    from unit.test_meta import backups  # the property tests' strategy of whole backups

    return backups


@settings(max_examples=150, deadline=None)
@given(_backups())
def test_property_every_written_file_conforms_to_the_go_table(info):
    f = facts("HEAD")
    messages = {x["file"]: x["message"] for x in f["meta_files"]["files"]}
    for name, data in m.write_meta_files(info).items():
        assert problems(_without_opaque(json.loads(data)), messages[name], f) == [], name
    brief = json.loads(m.dumps_indent(m.backup_info_brief(info, 123)))
    assert problems(_without_opaque(brief), "BackupInfoBrief", f) == []


# --------------------------------------------------------------------------------------
# `get --json` prints what the Go tool's get prints


def test_get_json_prints_the_go_tools_brief(seaweedfs, s3env, bucket, tmp_path):
    from sample_backup import ROOT, config_yaml

    f = facts("HEAD")
    doc = every_key("BackupInfo", f)
    doc["name"] = "every_key"
    for c in doc["collection_backups"]:  # a uint64 of seconds, but a backup's reader wants a real time
        c["backup_physical_timestamp"] = 1764500000
    s = seaweedfs.store(bucket)
    files = {"full_meta.json": go_compact(doc), "backup_meta.json": go_compact({"name": "every_key", "state_code": 0, "size": 0})}
    for name, data in files.items():
        s.put(f"{ROOT}/every_key/meta/{name}", data)
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(seaweedfs, bucket))
    r = subprocess.run([sys.executable, "-m", "milvus_backup", "get", "-n", "every_key", "--json", "--config", str(cfg)],
                       env=s3env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    get = f["get"]
    expected: dict[str, typing.Any] = {}
    colls = [{dst: c[src] for dst, src in get["collection_brief_from"].items() if src in c} for c in doc["collection_backups"]]
    values = {**{dst: doc[src] for dst, src in get["from_backup"].items()}, "collection_backups": colls,
              "meta_size": sum(len(v) for v in files.values())}
    for spec in f["messages"]["BackupInfoBrief"]["fields"]:  # Go's order; zero values where Go writes them
        key = spec["json"]
        if key in values or key in get["from_backup"]:
            expected[key] = values.get(key)
        elif not spec["omitempty"]:
            expected[key] = 0
    assert problems(json.loads(r.stdout), "BackupInfoBrief", f) == []
    assert r.stdout == json.dumps(expected, indent=len(get["indent"])) + "\n"


# --------------------------------------------------------------------------------------
# The Go tool's published REST responses agree with the tables of their versions


REST = COMPAT / "go_rest"
REST_FILES = [  # file, the version INDEX.md dates it to, the response message of its endpoint
    ("01-issue158-rest-list-backups-v0.2.2.json", "v0.2.2", "ListBackupsResponse"),
    ("02-issue374-rest-create-failed-v0.4.16.json", "v0.4.16", "BackupInfoResponse"),
    ("03-issue27-rest-get_restore-ongoing-2022.json", "2022-11-29", "RestoreBackupResponse"),
]
# Seconds and milliseconds since 1970 between 2001 and 2286, a hybrid timestamp after 2001.
MAGNITUDE = {"s": (10**9, 10**10), "ms": (10**12, 10**13), "ns": (10**18, 10**19), "tso": (2**18 * 10**12, 2**64)}


def _times(doc, message: str, f: dict):
    """(Message.key, value) of every time-like value in ``doc``."""
    for spec in f["messages"][message]["fields"]:
        value = doc.get(spec["json"])
        if value is None:
            continue
        inner = spec.get("message") or spec.get("items", {}).get("message")
        if inner:
            for v in value if isinstance(value, list) else [value]:
                yield from _times(v, inner, f)
        elif f"{message}.{spec['json']}" in f["time_units"]:
            yield f"{message}.{spec['json']}", value


@pytest.mark.parametrize(("name", "version", "message"), REST_FILES, ids=[r[0][:2] for r in REST_FILES])
def test_published_rest_responses_agree_with_the_tables(name, version, message):
    f = facts(version)
    doc = json.loads((REST / name).read_text())
    assert problems(doc, message, f) == []
    envelope = [x["json"] for x in f["messages"][message]["fields"]]
    assert envelope == ["requestId", "code", "msg", "data"]
    checked = 0
    for key, value in _times(doc, message, f):
        units = {u["unit"] for u in f["time_units"][key]} & set(MAGNITUDE)
        assert units, f"{key}: the table knows no unit for it"
        assert any(lo <= value < hi for lo, hi in (MAGNITUDE[u] for u in units)), (key, value, units)
        checked += 1
    assert checked, "each of these responses carries a time"


def test_rest_time_units_of_the_current_tool():
    """What a server compatible with HEAD and v0.5.16 must send: task times in seconds."""
    for version in gofacts.TARGETS:
        units = facts(version)["time_units"]
        for key in ("BackupInfoBrief.start_time", "BackupInfoBrief.end_time", "RestoreBackupTaskResponse.start_time",
                    "RestoreBackupTaskResponse.end_time", "RestoreCollectionTaskResponse.start_time"):
            assert {u["unit"] for u in units[key]} == {"s"}, (version, key)
