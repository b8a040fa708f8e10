"""The contract server itself (tests/milvus_contract): a wire contract hand-built from the
protos and the Go tool, NOT a Milvus. These tests pin what it answers per profile, what it
logs and how its faults fail a call, so that the adapter tests built on it assert against a
known stand-in. Raw gRPC stubs and urllib only: no mbackup code is involved here.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

from milvus_contract import L0, PROFILES, schema_field
from milvus_contract.handlers import base36

pytest_plugins = ["milvus_contract.fixtures"]


@pytest.fixture
def stub(contract):
    with grpc.insecure_channel(contract.address) as channel:
        yield milvus_pb2_grpc.MilvusServiceStub(channel)


def http(contract, verb: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(contract.http_url + path, data=data, method=verb,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}")


def seed(contract):
    schema = schema_pb2.CollectionSchema(fields=[
        schema_field("pk", schema_pb2.DataType.Int64, is_primary_key=True),
        schema_field("vec", schema_pb2.DataType.FloatVector, dim=4)])
    coll = contract.state.add_collection("db1", "docs", schema, partitions=("_default", "p1"))
    return coll, contract.state.add_segment(coll, "p1", rows=10, deltas=1), contract.state.add_segment(coll, None, level=L0, deltas=2)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_reports_its_version_and_refuses_what_its_line_lacks(contract, stub, name):
    profile = PROFILES[name]
    contract.reset(profile)
    assert stub.Connect(milvus_pb2.ConnectRequest()).server_info.build_tags == profile.build_tags
    assert stub.GetVersion(milvus_pb2.GetVersionRequest()).version == profile.reported_version()
    for method in sorted(profile.unimplemented & {"DescribeDatabase", "AddCollectionField", "CreateSnapshot"}):
        with pytest.raises(grpc.RpcError) as e:
            getattr(stub, method)(getattr(milvus_pb2, {"CreateSnapshot": "CreateSnapshotRequest",
                                                       "AddCollectionField": "AddCollectionFieldRequest",
                                                       "DescribeDatabase": "DescribeDatabaseRequest"}[method])())
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert contract.calls(method)[-1].answered == "unimplemented"


def test_the_log_keeps_each_request_with_its_dbname_header(contract, stub):
    coll, *_ = seed(contract)
    resp = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collection_name="docs"),
                                   metadata=[("dbname", "db1")])
    assert resp.status.code == 0 and resp.collectionID == coll.id and resp.db_id == contract.state.databases["db1"].id
    # Without the header (and no db_name in the request) a 2.4+ proxy looks in "default".
    missing = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collection_name="docs"))
    assert missing.status.code == 100 and "collection not found" in missing.status.reason
    first, second = contract.calls("DescribeCollection")
    assert (first.metadata.get("dbname"), first.request.collection_name) == ("db1", "docs")
    assert "dbname" not in second.metadata


def test_faults_fail_the_chosen_calls_as_asked(contract, stub):
    seed(contract)
    contract.fail("ShowCollections", code=grpc.StatusCode.UNAVAILABLE, reason="down")
    contract.fail("ShowCollections", status=8, reason="rate limit exceeded[rps=1]")
    with pytest.raises(grpc.RpcError) as e:
        stub.ShowCollections(milvus_pb2.ShowCollectionsRequest(db_name="db1"))
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE, "down")
    limited = stub.ShowCollections(milvus_pb2.ShowCollectionsRequest(db_name="db1"))
    assert (limited.status.code, limited.status.reason) == (8, "rate limit exceeded[rps=1]")
    assert list(stub.ShowCollections(milvus_pb2.ShowCollectionsRequest(db_name="db1")).collection_names) == ["docs"]
    contract.fail("GetVersion", delay=0.3)
    started = time.monotonic()
    stub.GetVersion(milvus_pb2.GetVersionRequest())
    assert time.monotonic() - started >= 0.3
    with pytest.raises(grpc.RpcError) as e:
        contract.fail("GetVersion", delay=5)
        stub.GetVersion(milvus_pb2.GetVersionRequest(), timeout=0.2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [c.answered for c in contract.calls("ShowCollections")] == ["fault", "fault", "ok"]


def test_segment_describe_answers_from_2_5_8_with_the_segments_log_ids(contract):
    contract.reset(PROFILES["2.4.23"])
    coll, seg, l0 = seed(contract)
    body = {"dbName": "db1", "collectionId": coll.id, "segmentIds": [seg.id]}
    assert http(contract, "POST", "/v2/vectordb/segments/describe", body)[0] == 404
    contract.reset(PROFILES["2.5.8"])
    coll, seg, l0 = seed(contract)
    status, answer = http(contract, "POST", "/v2/vectordb/segments/describe",
                          {"dbName": "db1", "collectionId": coll.id, "segmentIds": [l0.id]})
    info, = answer["data"]["segmentInfos"]
    assert status == 200 and (info["partitionID"], info["level"], info["insertLogs"]) == (-1, L0, [])
    assert info["deltaLogs"] == [{"fieldID": 0, "logIDs": l0.deltas}]
    status, answer = http(contract, "POST", "/v2/vectordb/segments/describe",
                          {"dbName": "db1", "collectionId": coll.id, "segmentIds": [seg.id]})
    info, = answer["data"]["segmentInfos"]
    assert {i["fieldID"]: i["logIDs"] for i in info["insertLogs"]} == seg.inserts
    assert set(contract.state.binlogs()) >= {contract.state.insert_key(seg, f, log)
                                             for f, logs in seg.inserts.items() for log in logs}


def test_gc_pause_is_cluster_wide_before_2_6_8_and_by_ticket_after(contract):
    contract.reset(PROFILES["2.6.5"])
    assert http(contract, "GET", "/management/datacoord/garbage_collection/pause?pause_seconds=60&collection_id=0") == (
        200, {"msg": "OK"})
    assert contract.state.gc_held() == ["cluster"]
    assert http(contract, "GET", "/management/datacoord/garbage_collection/resume")[0] == 200
    assert contract.state.gc_held() == []

    contract.reset(PROFILES["2.6.11"])
    status, answer = http(contract, "GET", "/management/datacoord/garbage_collection/pause?pause_seconds=60&collection_id=7")
    assert status == 200 and contract.state.gc_held() == [answer["ticket"]]
    assert http(contract, "GET", "/management/datacoord/garbage_collection/resume")[0] == 500  # no ticket
    assert http(contract, "GET", f"/management/datacoord/garbage_collection/resume?ticket={answer['ticket']}")[0] == 200
    assert contract.state.gc_held() == []
    assert [h[:2] for h in contract.state.gc_history] == [("pause", 7), ("resume", 7)]

    contract.reset(PROFILES["2.3.5"])
    assert http(contract, "GET", "/management/datacoord/garbage_collection/pause?pause_seconds=60")[0] == 404


def test_flush_all_carries_a_message_per_channel_on_2_6_11(contract, stub):
    seed(contract)
    resp = stub.FlushAll(milvus_pb2.FlushAllRequest())
    assert resp.status.code == 0 and list(resp.cluster_info.pchannels) == ["by-dev-rootcoord-dml_0"]
    msg = resp.flush_all_msgs["by-dev-rootcoord-dml_0"]
    assert msg.properties["_tt"] == base36(resp.flush_all_ts) and int(msg.properties["_tt"], 36) == resp.flush_all_ts
    contract.reset(PROFILES["2.6.5"])
    seed(contract)
    older = stub.FlushAll(milvus_pb2.FlushAllRequest())
    assert older.flush_all_ts and not older.flush_all_msgs and not older.cluster_info.pchannels


def test_segments_report_their_level_and_storage_version(contract, stub):
    contract.reset(PROFILES["2.6.5"])
    coll, seg, l0 = seed(contract)
    growing = contract.state.add_segment(coll, "_default", state=common_pb2.SegmentState.Growing)
    infos = stub.GetPersistentSegmentInfo(milvus_pb2.GetPersistentSegmentInfoRequest(collectionName="docs"),
                                          metadata=[("dbname", "db1")]).infos
    assert {(i.segmentID, i.partitionID, i.level, i.storage_version) for i in infos} == {
        (seg.id, coll.partitions["p1"], common_pb2.SegmentLevel.L1, 2), (l0.id, -1, common_pb2.SegmentLevel.L0, 2)}
    assert growing.id not in {i.segmentID for i in infos}


def test_created_collections_number_fields_as_sent_and_added_fields_after_meta(contract, stub):
    schema = schema_pb2.CollectionSchema(name="docs", enable_dynamic_field=True, fields=[
        schema_field("pk", schema_pb2.DataType.Int64, is_primary_key=True),
        schema_field("vec", schema_pb2.DataType.FloatVector, dim=4)])
    assert stub.CreateCollection(milvus_pb2.CreateCollectionRequest(collection_name="docs",
                                                                     schema=schema.SerializeToString())).code == 0
    added = schema_field("tag", schema_pb2.DataType.VarChar, max_length=8, nullable=True)
    assert stub.AddCollectionField(milvus_pb2.AddCollectionFieldRequest(
        collection_name="docs", schema=added.SerializeToString())).code == 0
    not_null = schema_field("n", schema_pb2.DataType.Int64)
    assert stub.AddCollectionField(milvus_pb2.AddCollectionFieldRequest(
        collection_name="docs", schema=not_null.SerializeToString())).code == 1100
    coll = contract.state.collections[("default", "docs")]
    assert [(f.name, f.fieldID) for f in coll.schema.fields] == [("pk", 100), ("vec", 101), ("$meta", 102), ("tag", 103)]
    shown = stub.DescribeCollection(milvus_pb2.DescribeCollectionRequest(collection_name="docs")).schema
    assert [f.name for f in shown.fields] == ["pk", "vec", "tag"]  # $meta is the server's own
    assert stub.AlterCollection(milvus_pb2.AlterCollectionRequest(collection_name="docs", properties=[
        common_pb2.KeyValuePair(key="k", value="v")])).code == 0
    assert coll.properties == {"k": "v"}


def test_imports_answer_importing_for_the_polls_asked_then_the_rows_of_their_prefixes(contract, stub):
    seed(contract)
    contract.state.import_polls = 2
    contract.state.rows_by_prefix = {"insert_log/1/2/3/": 7, "insert_log/1/2/4/": 5}
    job = stub.Import(milvus_pb2.ImportRequest(collection_name="docs", partition_name="p1",
                                               files=["x/insert_log/1/2/3/", ""]), metadata=[("dbname", "db1")]).tasks[0]
    states = [stub.GetImportState(milvus_pb2.GetImportStateRequest(task=job)) for _ in range(3)]
    assert [(s.state, s.row_count) for s in states] == [
        (common_pb2.ImportState.ImportStarted, 0), (common_pb2.ImportState.ImportStarted, 0),
        (common_pb2.ImportState.ImportCompleted, 7)]
    status, answer = http(contract, "POST", "/v2/vectordb/jobs/import/create", {
        "dbName": "db1", "collectionName": "docs", "partitionName": "p1",
        "files": [["insert_log/1/2/3/"], ["insert_log/1/2/4/", "delta_log/1/2/4/"]], "options": {"backup": "true"}})
    assert status == 200 and answer["code"] == 0
    described = [http(contract, "POST", "/v2/vectordb/jobs/import/describe", {"jobId": answer["data"]["jobId"]})[1]
                 for _ in range(3)]
    assert [(d["data"]["state"], d["data"]["totalRows"]) for d in described] == [
        ("Importing", 0), ("Importing", 0), ("Completed", 12)]
    missing = stub.Import(milvus_pb2.ImportRequest(collection_name="docs", partition_name="nope", files=["a/", ""]),
                          metadata=[("dbname", "db1")])
    assert missing.status.code == 200
