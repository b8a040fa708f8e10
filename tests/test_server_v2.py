"""The v2 resource API (``/api/v2``) of ``mbackup server`` without Milvus: a real server process
on SeaweedFS, real HTTP. Backups read from storage (a sample backup written by hand), every
route's status codes and error shape, job requests refused naming the field, a job that fails
because Milvus does not answer (port 1) reported with a typed error, the cancel of a job no
server runs, and the committed OpenAPI document equal to the served one. Cancelling a running
create needs Milvus: test_server_v2_milvus.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sample_backup import ROOT, Sample, config_yaml
from server_client import Server

TOKEN = "v2-s3cr3t-token-5678"
BUCKET = "mbk-srv-v2"
DOC = Path(__file__).parent.parent / "docs" / "openapi-v2.json"


@pytest.fixture(scope="module")
def config(seaweedfs, tmp_path_factory):
    seaweedfs.create_bucket(BUCKET)
    path = tmp_path_factory.mktemp("srv2") / "backup.yaml"
    path.write_text(config_yaml(seaweedfs, BUCKET))
    Sample(seaweedfs.store(BUCKET), "sample_one")
    yield path
    seaweedfs.delete_bucket(BUCKET)


@pytest.fixture(scope="module")
def server(config):
    s = Server(config, "--rescan", "3600", env={"MBACKUP_SERVER_TOKEN": TOKEN}, token=TOKEN)
    yield s
    _, err = s.stop()
    assert TOKEN not in err and "Traceback" not in err, err


def error_of(reply, status: int, code: str) -> str:
    """The message of a v2 error answer, once its status and shape are checked."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers["content-type"] == "application/json"
    body = reply.json
    assert list(body) == ["error"] and list(body["error"]) == ["code", "message", "retriable"], body
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def wait_for(server, job_id: str, states=("succeeded", "failed", "cancelled"), timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = server.get(f"/api/v2/jobs/{job_id}").json
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


ROUTES = [("GET", "/api/v2/backups"), ("GET", "/api/v2/backups/sample_one"), ("DELETE", "/api/v2/backups/sample_one"),
          ("GET", "/api/v2/jobs"), ("POST", "/api/v2/jobs"), ("GET", "/api/v2/jobs/x"),
          ("POST", "/api/v2/jobs/x/cancel"), ("GET", "/api/v2/openapi.json"), ("GET", "/api/v2/nothing/here")]


def test_every_v2_route_wants_the_token(server):
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = server.call(method, path, {"kind": "create"} if method == "POST" else None, headers=headers, auth=False)
            assert error_of(r, 401, "unauthorized") == "send Authorization: Bearer <server.token>", (method, path)
            assert r.headers["www-authenticate"] == "Bearer" and TOKEN.encode() not in r.body
    assert server.get("/api/v2/backups/sample_one").status == 200  # not deleted by the refused DELETE


def test_backups_are_read_from_storage(server, seaweedfs):
    listed = server.get("/api/v2/backups").json
    [one] = [b for b in listed["backups"] if b["name"] == "sample_one"]
    assert one["complete"] is True and one["milvus_version"] == "v2.3.5" and one["size"] > 0
    got = server.get("/api/v2/backups/sample_one").json
    assert {k: got[k] for k in one} == one
    assert got["format"] == "binlog" and got["meta_size"] > 0
    assert got["collections"] == [{"db": "default", "name": "products", "size": one["size"], "rows": 20,
                                   "has_index": False}]
    # A backup this server never made, written straight to storage, is there at once.
    Sample(seaweedfs.store(BUCKET), "sample_two")
    assert server.get("/api/v2/backups/sample_two").json["name"] == "sample_two"
    r = server.call("DELETE", "/api/v2/backups/sample_two")
    assert r.status == 200 and r.json["name"] == "sample_two" and r.json["deleted_objects"] > 0
    assert seaweedfs.store(BUCKET).list(f"{ROOT}/sample_two/") == []
    assert "not_found" in server.get("/api/v2/backups/sample_two").body.decode()


def test_not_found_bad_names_and_wrong_methods(server, seaweedfs):
    assert "no backup named 'nope'" in error_of(server.get("/api/v2/backups/nope"), 404, "not_found")
    assert "no backup named 'nope'" in error_of(server.call("DELETE", "/api/v2/backups/nope"), 404, "not_found")
    assert error_of(server.get("/api/v2/backups/a-b"), 400, "bad_request").startswith("name: invalid backup name 'a-b'")
    assert error_of(server.get("/api/v2/jobs/nope"), 404, "not_found") == "id: no job 'nope'"
    assert error_of(server.post("/api/v2/jobs/nope/cancel", None), 404, "not_found") == "id: no job 'nope'"
    assert error_of(server.get("/api/v2/jobs/..%2f..%2fx"), 404, "not_found")
    assert "no route /api/v2/nothing" in error_of(server.get("/api/v2/nothing"), 404, "not_found")
    r = server.call("PUT", "/api/v2/backups/sample_one", {})
    assert error_of(r, 405, "method_not_allowed") == "PUT /api/v2/backups/sample_one: use GET, DELETE"
    assert r.headers["allow"] == "GET, DELETE"
    for key in ("kind", "state"):
        assert error_of(server.get(f"/api/v2/jobs?{key}=bogus"), 400, "bad_request").startswith(f"{key}: expected one of")
    # A backup a create is writing (its lock is live) is not deleted under it.
    Sample(seaweedfs.store(BUCKET), "busy_one")
    seaweedfs.store(BUCKET).put(f"{ROOT}/busy_one/mbackup.lock", json.dumps({
        "token": "a" * 32, "pid": 4242, "host": "elsewhere", "heartbeat": time.time() + 60,
        "command": "create"}).encode())
    r = server.call("DELETE", "/api/v2/backups/busy_one")
    assert "busy_one" in error_of(r, 409, "busy") and r.json["error"]["retriable"] is True
    assert server.get("/api/v2/backups/busy_one").status == 200


# (body, the 400's message starts with)
BAD_JOBS = [
    (b"not json", "the request body is not valid JSON"),
    (b"[]", "the request body: expected a JSON object, got an array"),
    ({}, "kind: expected one of create, restore, got None"),
    ({"kind": "backup"}, "kind: expected one of create, restore, got 'backup'"),
    ({"kind": "create", "backup_name": "b", "nmae": "x"}, "nmae: not a field of a create job"),
    ({"kind": "create", "backup_name": "b", "collection_suffix": "_x"}, "collection_suffix: not a field of a create job"),
    ({"kind": "create", "backup_name": "b", "async": True}, "async: not a field of a create job"),
    ({"kind": "create", "backup_name": 7}, "backup_name: expected a string, got 7"),
    ({"kind": "create", "backup_name": "a-b"}, "invalid backup name 'a-b'"),
    ({"kind": "create", "backup_name": "b", "id": "../x"}, "id: expected a backup id"),
    ({"kind": "restore", "backup_name": "nope"}, "backup nope not found"),
    ({"kind": "create", "backup_name": "b", "base": "a"}, "--base a names the base of an incremental backup: add "
                                                           "--incremental"),
    ({"kind": "create", "backup_name": "b", "incremental": True, "base": "a-b"}, "invalid backup name 'a-b'"),
    ({"kind": "restore", "backup_name": "sample_one", "restorePlan": {"mapping": [{"colls": [{"override": {
        "shardNum": "2"}}]}]}}, "restorePlan.mapping[0].colls[0].override.shardNum: expected a 32-bit integer"),
]


@pytest.mark.parametrize(("body", "message"), BAD_JOBS, ids=[m[:40] for _, m in BAD_JOBS])
def test_a_bad_job_request_is_a_400_naming_the_field(server, body, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert error_of(server.call("POST", "/api/v2/jobs", raw=raw), 400, "bad_request").startswith(message)


def test_an_unsupported_restore_field_and_an_oversized_body(server):
    r = server.post("/api/v2/jobs", {"kind": "restore", "backup_name": "sample_one", "maxShardNum": 2})
    assert error_of(r, 400, "not_supported") == "not supported by mbackup: maxShardNum"
    r = server.announce("/api/v2/jobs", (1 << 20) + 1)
    assert error_of(r, 413, "too_large") == "request body larger than 1048576 bytes"


def test_a_failed_job_says_why_and_can_no_longer_be_cancelled(server):
    r = server.post("/api/v2/jobs", {"kind": "create", "backup_name": "v2_fails", "id": "v2_job_fails"})
    assert r.status == 202 and r.headers["location"] == "/api/v2/jobs/v2_job_fails"
    assert r.json["id"] == "v2_job_fails" and r.json["kind"] == "create" and r.json["backup"] == "v2_fails"
    job = wait_for(server, "v2_job_fails")
    assert list(job) == ["id", "kind", "backup", "state", "progress", "resumable", "started", "ended", "error"]
    assert job["state"] == "failed" and job["progress"] == 0 and job["resumable"] is True
    assert job["error"]["code"] == "unavailable" and job["error"]["retriable"] is True
    assert "127.0.0.1:1" in job["error"]["message"]
    assert job["started"].endswith("Z") and job["ended"] >= job["started"]
    # v1 sees the same job.
    assert server.get("/api/v1/get_backup?backup_id=v2_job_fails").json["data"]["state_code"] == 3
    assert job in server.get("/api/v2/jobs?kind=create&state=failed").json["jobs"]
    assert job not in server.get("/api/v2/jobs?state=running").json["jobs"]
    r = server.post("/api/v2/jobs/v2_job_fails/cancel", None)
    assert error_of(r, 409, "conflict") == "job 'v2_job_fails' has ended (failed): there is nothing to cancel"
    assert r.json["error"]["retriable"] is False
    r = server.post("/api/v2/jobs", {"kind": "create", "backup_name": "v2_fails", "id": "v2_job_fails"})
    assert error_of(r, 409, "conflict") == "id: a job 'v2_job_fails' exists already: use another id"
    # A restore job of a backup in storage: Milvus does not answer either.
    r = server.post("/api/v2/jobs", {"kind": "restore", "backup_name": "sample_one", "collection_suffix": "_r"})
    assert r.status == 202 and r.json["kind"] == "restore"
    restored = wait_for(server, r.json["id"])
    assert restored["state"] == "failed" and restored["error"]["code"] == "unavailable"


def test_a_create_job_carries_incremental_and_its_base(server, seaweedfs):
    r = server.post("/api/v2/jobs", {"kind": "create", "backup_name": "v2_inc", "id": "v2_job_inc",
                                     "incremental": True, "base": "sample_one"})
    assert r.status == 202, r.json
    assert wait_for(server, "v2_job_inc")["state"] == "failed"  # Milvus does not answer
    saved = json.loads(seaweedfs.store(BUCKET).get(f"{ROOT}/.mbackup-jobs/v2_job_inc.json"))
    assert (saved["request"]["incremental"], saved["request"]["base"]) == (True, "sample_one")


def test_cancel_of_a_job_no_server_runs(server, seaweedfs):
    # What a server killed mid-create leaves: the job saved as running, its lock not renewed.
    job = {"id": "orphan_job", "kind": "create", "name": "orphaned", "request": {"name": "orphaned"},
           "root": ROOT, "state_code": 1, "start_time": int(time.time()) - 60, "runs": 1}
    store = seaweedfs.store(BUCKET)
    store.put(f"{ROOT}/.mbackup-jobs/orphan_job.json", json.dumps(job).encode())
    assert server.get("/api/v2/jobs/orphan_job").json["state"] == "running"
    r = server.post("/api/v2/jobs/orphan_job/cancel", None)
    assert r.status == 200 and r.json["state"] == "cancelled", r.json
    assert r.json["error"]["code"] == "cancelled" and r.json["resumable"] is True and r.json["ended"]
    assert server.get("/api/v2/jobs/orphan_job").json == r.json
    left = [k for k, _, _ in store.list(f"{ROOT}/.mbackup-jobs/") if "orphan_job" in k]
    assert left == [f"{ROOT}/.mbackup-jobs/orphan_job.json"]  # no lock, no cancel request left behind
    error_of(server.post("/api/v2/jobs/orphan_job/cancel", None), 409, "conflict")


def test_the_committed_openapi_document_is_the_served_one(server):
    served = server.get("/api/v2/openapi.json").json
    assert json.loads(DOC.read_text()) == served, (
        "docs/openapi-v2.json is stale: python -m milvus_backup.server.v2 > docs/openapi-v2.json")
    assert set(served["paths"]) == {"/backups", "/backups/{name}", "/jobs", "/jobs/{id}", "/jobs/{id}/cancel",
                                    "/openapi.json"}
