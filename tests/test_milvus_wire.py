"""mbackup's own declaration of the Milvus wire format (proto/milvus_backup/milvus/_proto/*.proto,
generated into milvus_backup.milvus._proto by scripts/gen-proto): every message, field, enum value
and method it declares is Milvus's, as pymilvus' generated descriptors (the dev extra) say; the
generated modules are those of the .proto files; and the CLI backs up and restores with pymilvus
not importable at all, as in a user's install."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pymilvus.grpc_gen import milvus_pb2 as theirs
from pymilvus.grpc_gen import msg_pb2 as _their_msgs  # noqa: F401  (registers milvus.proto.msg in their pool)

from milvus_backup.milvus._proto import common_pb2, index_pb2, messages_pb2, milvus_pb2, msg_pb2, schema_pb2
from milvus_contract import PROFILES
from test_adapter_lines import config_file, docs_schema

pytest_plugins = ["milvus_contract.fixtures"]

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "proto" / "milvus_backup" / "milvus" / "_proto"
OURS = (common_pb2, schema_pb2, milvus_pb2, msg_pb2)
# Milvus' internal messages (pkg/proto), which pymilvus does not ship: checked against their
# .proto files only; the contract server reads them with field tables of its own.
INTERNAL = (index_pb2, messages_pb2)


def _messages(desc):
    for message in desc.message_types_by_name.values() if hasattr(desc, "message_types_by_name") else desc.nested_types:
        yield message
        yield from _messages(message)  # map entries


MESSAGES = [m for module in OURS for m in _messages(module.DESCRIPTOR)]
ENUMS = [e for module in OURS for e in module.DESCRIPTOR.enum_types_by_name.values()]
METHODS = list(milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"].methods)


def _wire(field) -> tuple:
    """What decides how a field travels and reads: number, type, repeated or not, presence, the
    message or enum it holds, its oneof."""
    return (field.number, field.type, field.is_repeated, field.has_presence,
            field.message_type.full_name if field.message_type else None,
            field.enum_type.full_name if field.enum_type else None,
            field.containing_oneof.name if field.containing_oneof else None)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.full_name)
def test_every_declared_field_is_milvus_s(message):
    milvus = theirs.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
    for field in message.fields:
        assert field.name in milvus.fields_by_name, f"{message.full_name}.{field.name} is not Milvus's"
        assert _wire(field) == _wire(milvus.fields_by_name[field.name]), f"{message.full_name}.{field.name}"


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.full_name)
def test_every_declared_enum_value_is_milvus_s(enum):
    milvus = theirs.DESCRIPTOR.pool.FindEnumTypeByName(enum.full_name)
    assert {v.name: v.number for v in enum.values}.items() <= {v.name: v.number for v in milvus.values}.items()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_declared_method_is_milvus_s(method):
    milvus = theirs.DESCRIPTOR.services_by_name["MilvusService"].methods_by_name[method.name]
    assert method.containing_service.full_name == milvus.containing_service.full_name == "milvus.proto.milvus.MilvusService"
    assert (method.input_type.full_name, method.output_type.full_name) == (
        milvus.input_type.full_name, milvus.output_type.full_name)
    streams = method.name == "CreateReplicateStream"  # the one bidirectional stream: restore secondary
    assert (method.client_streaming, method.server_streaming) == (milvus.client_streaming, milvus.server_streaming) \
        == (streams, streams)


def _declared(text: str) -> set[tuple[str, str, int]]:
    """(message or enum, field or value, number) as the .proto text says them."""
    out, block = set(), None
    for line in text.splitlines():
        line = line.split("//")[0].strip()
        if m := re.match(r"(message|enum) (\w+) \{", line):
            block = m.group(2)
        elif m := re.match(r"(?:repeated )?(?:map<[^>]+>|[\w.]+ )?\s*(\w+) = (\d+);", line):
            out.add((block, m.group(1), int(m.group(2))))
    return out


@pytest.mark.parametrize("module", OURS + INTERNAL, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_the_generated_module_is_its_proto_file(module):
    """scripts/gen-proto was run after the last edit of the .proto."""
    desc = module.DESCRIPTOR
    generated = {(m.name, f.name, f.number) for m in desc.message_types_by_name.values() for f in m.fields}
    generated |= {(e.name, v.name, v.number) for e in desc.enum_types_by_name.values() for v in e.values}
    assert _declared((PROTOS / Path(desc.name).name).read_text()) == generated


def test_the_generated_modules_live_apart_from_pymilvus_s():
    """Both register the same names: each in its own pool, so both import in one process."""
    assert milvus_pb2.DESCRIPTOR.pool is not theirs.DESCRIPTOR.pool
    reply = milvus_pb2.FlushAllResponse()
    reply.flush_all_msgs["ch"].properties["_tt"] = "z1"
    assert theirs.FlushAllResponse.FromString(reply.SerializeToString()).flush_all_msgs["ch"].properties["_tt"] == "z1"


# --------------------------------------------------------------------------------------
# The channel: what pymilvus' GrpcHandler did for mbackup, done by mbackup's own


def test_every_call_carries_the_login_and_the_identifier_connect_handed_out(contract):
    from milvus_backup.milvus.connection import MilvusEndpoint, connect
    from milvus_backup.plugins.manager import milvus_adapters

    state = contract.reset(PROFILES["2.6.11"])
    state.add_database("db1")
    state.add_collection("db1", "docs", docs_schema())
    adapter = connect(MilvusEndpoint(host="127.0.0.1", port=contract.grpc_port, user="alice", password="s3cret:x"),
                      milvus_adapters())
    try:
        adapter.describe_collection("db1", "docs")
    finally:
        adapter.close()
    hello, *calls = contract.calls()
    login = base64.b64encode(b"alice:s3cret:x").decode()  # as pymilvus sends user and password
    assert hello.method == "Connect" and hello.metadata.get("authorization") == login
    assert (hello.request.client_info.sdk_type, hello.request.client_info.user) == ("mbackup", "alice")
    assert len(calls) > 5 and "identifier" not in hello.metadata
    for call in calls:
        assert call.metadata.get("authorization") == login, call.method
        assert call.metadata.get("identifier", "").isdigit(), call.method
    assert len({call.metadata["identifier"] for call in calls}) == 1  # the one Connect answered
    assert {c.metadata.get("dbname") for c in calls if c.method != "ListDatabases"} == {"db1"}


def test_a_reply_past_grpc_s_default_4_mib_limit_is_read(contract):
    from milvus_backup.milvus.connection import MilvusEndpoint, connect
    from milvus_backup.plugins.manager import milvus_adapters

    state = contract.reset(PROFILES["2.6.11"])
    state.add_database("db1")
    schema = docs_schema()
    schema.description = "d" * (5 << 20)
    state.add_collection("db1", "docs", schema)
    adapter = connect(MilvusEndpoint(host="127.0.0.1", port=contract.grpc_port), milvus_adapters())
    try:
        assert len(adapter.describe_collection("db1", "docs").schema.description) == 5 << 20
    finally:
        adapter.close()


# --------------------------------------------------------------------------------------
# The CLI with pymilvus not importable


@pytest.fixture
def without_pymilvus(tmp_path) -> dict[str, str]:
    """The environment of an mbackup run that cannot import pymilvus: a package of that name
    first on the path, refusing to be imported (the test runner's venv has the real one)."""
    blocker = tmp_path / "blocked" / "pymilvus"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("pymilvus is not installed")\n')
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")]))


def _mbackup(env, config, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "milvus_backup", "--config", str(config), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def test_the_blocker_blocks(without_pymilvus):
    proc = subprocess.run([sys.executable, "-c", "import pymilvus"], env=without_pymilvus, capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "ImportError: pymilvus is not installed" in proc.stderr


@pytest.mark.milvus
def test_backup_and_restore_on_milvus_2_3_without_pymilvus(without_pymilvus, milvus_clusters, seaweedfs, tmp_path):
    from pymilvus import DataType, MilvusClient

    from mbackup_dev.devstack import backup_config

    source, target = milvus_clusters.source, milvus_clusters.target
    name, rows = "wire_rows", [{"pk": i, "tag": f"t{i % 3}", "vec": [i / 10, 1.0, 0.5, -1.0]} for i in range(50)]
    mc = MilvusClient(uri=source.uri)
    try:
        schema = mc.create_schema(auto_id=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("tag", DataType.VARCHAR, max_length=16)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
        mc.create_collection(name, schema=schema)
        mc.insert(name, rows)
        mc.flush(name)
    finally:
        mc.close()
    configs = {}
    for which, cluster in (("source", source), ("target", target)):
        configs[which] = tmp_path / f"{which}.yaml"
        configs[which].write_text(backup_config(cluster, backup_bucket="mbk-wire", backup_root="wire"))
    seaweedfs.create_bucket("mbk-wire")
    try:
        _mbackup(without_pymilvus, configs["source"], "create", "-n", "wire1", "--filter", f"default.{name}")
        _mbackup(without_pymilvus, configs["target"], "restore", "-n", "wire1", "--suffix", "_back")
        mc = MilvusClient(uri=target.uri)
        try:
            index = mc.prepare_index_params()
            index.add_index("vec", index_type="FLAT", metric_type="L2")
            mc.create_index(f"{name}_back", index)
            mc.load_collection(f"{name}_back")
            got = mc.query(f"{name}_back", filter="pk >= 0", output_fields=["pk", "tag", "vec"], limit=100)
        finally:
            mc.close()
        assert sorted((r["pk"], r["tag"], [round(v, 4) for v in r["vec"]]) for r in got) == [
            (r["pk"], r["tag"], [round(v, 4) for v in r["vec"]]) for r in rows]
    finally:
        for cluster, drop in ((source, name), (target, f"{name}_back")):
            mc = MilvusClient(uri=cluster.uri)
            try:
                mc.drop_collection(drop)
            finally:
                mc.close()
        seaweedfs.delete_bucket("mbk-wire")


def test_backup_and_restore_on_the_2_6_contract_without_pymilvus(without_pymilvus, contract, tmp_path, seaweedfs,
                                                                 bucket):
    """The requests of the 2.4+ lines (FlushAll, segment levels, ImportV2) from a process
    without pymilvus, against the contract server (no live Milvus of these lines runs here)."""
    from milvus_backup.backup.catalog import open_stores
    from milvus_backup.config.settings import load_config

    config = config_file(tmp_path, seaweedfs, bucket, contract)
    state = contract.reset(PROFILES["2.6.11"])
    state.add_database("db1")
    coll = state.add_collection("db1", "docs", docs_schema(), partitions=("_default", "p1"))
    state.add_segment(coll, "_default", rows=100, deltas=1)
    state.add_segment(coll, "p1", rows=50)
    state.write_binlogs(open_stores(load_config(str(config), env={}, cwd=tmp_path)).milvus, "files")
    state.rows_by_prefix = {f"insert_log/{coll.id}/{s.partition_id}/{s.id}/": s.rows for s in coll.segments.values()}

    _mbackup(without_pymilvus, config, "create", "-n", "wire2", "--filter", "db1.docs")
    assert contract.calls("FlushAll") and contract.calls("GetPersistentSegmentInfo")
    _mbackup(without_pymilvus, config, "restore", "-n", "wire2", "--suffix", "_r")
    made = state.collections[("db1", "docs_r")]
    assert [f.name for f in made.schema.fields] == [f.name for f in coll.schema.fields]
    assert list(made.partitions) == ["_default", "p1"]
    assert sorted(job.rows for job in state.imports.values()) == sorted(s.rows for s in coll.segments.values())
