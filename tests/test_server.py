"""``mbackup server`` without Milvus (a real server process on SeaweedFS, real HTTP): the
bearer token, malformed bodies answered 400 naming the field (never 500), the Go tool's
parameter errors, a failed job reported truthfully from storage, the jobs folder kept out of
``list``, and the command without its extra. Milvus-backed routes: test_server_milvus.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sample_backup import ROOT, config_yaml
from server_client import Server

TOKEN = "s3cr3t-server-token-1234"
BUCKET = "mbk-srv-plain"


@pytest.fixture(scope="module")
def config(seaweedfs, tmp_path_factory):
    seaweedfs.create_bucket(BUCKET)  # the bucket exists: answers are about the request, not the store
    path = tmp_path_factory.mktemp("srv") / "backup.yaml"
    path.write_text(config_yaml(seaweedfs, BUCKET))
    yield path
    seaweedfs.delete_bucket(BUCKET)


@pytest.fixture(scope="module")
def server(config):
    s = Server(config, env={"MBACKUP_SERVER_TOKEN": TOKEN}, token=TOKEN)
    yield s
    _, err = s.stop()
    assert TOKEN not in err


def test_token_is_required_on_every_route_but_health(server):
    assert server.get("/api/v1/hello", auth=False).body == b"Hello, This is backup service"
    assert server.get("/", auth=False).status == 200
    for method, path in (("GET", "/api/v1/list"), ("GET", "/api/v1/get_backup?backup_name=x"),
                         ("POST", "/api/v1/create"), ("DELETE", "/api/v1/delete?backup_name=x"),
                         ("POST", "/api/v1/restore"), ("GET", "/api/v1/get_restore?id=x"), ("GET", "/api/v1/check"),
                         ("GET", "/api/v1/docs/doc.json"), ("GET", "/metrics")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = server.call(method, path, {} if method == "POST" else None, headers=headers, auth=False)
            assert r.status == 401, (method, path, headers, r.body)
            assert r.headers["www-authenticate"] == "Bearer" and TOKEN.encode() not in r.body
    assert server.get("/api/v1/list").json == {"data": []}
    assert server.get("/api/v1/docs/doc.json").json["openapi"].startswith("3.")


def test_no_token_configured_means_none_asked(config):
    s = Server(config)
    try:
        assert s.get("/api/v1/list", auth=False).json == {"data": []}
        assert s.get("/metrics", auth=False).status == 200
        assert s.get("/debug/pprof/", auth=False).status == 404  # no profiling endpoints
    finally:
        s.stop()


# (route, body, the field the 400 names)
MALFORMED = [
    ("create", b"not json", "the request body is not valid JSON"),
    ("create", b"", "the request body is empty"),
    ("create", b"[1]", "the request body: expected a JSON object, got an array"),
    ("create", {"backup_name": 5}, "backup_name: expected a string, got 5"),
    ("create", {"backup_name": "a", "async": "yes"}, "async: expected true or false, got 'yes'"),
    ("create", {"collection_names": "c1"}, "collection_names: expected an array of strings"),
    ("create", {"filter": {"db1": {"colls": "c1"}}}, "filter.db1.colls: expected an array of strings"),
    ("create", {"filter": ["db1"]}, "filter: expected an object such as"),
    ("create", {"gc_pause_seconds": 10 ** 20}, "gc_pause_seconds: expected a 32-bit integer"),
    ("create", {"db_collections": 3}, "db_collections: expected an object"),
    ("create", {"db_collections": '{"db1": "c1"}'}, "db_collections: expected an object"),
    ("restore", {"db_collections_after_rename": "{oops"}, "db_collections_after_rename: expected an object"),
    ("restore", {"backup_name": "b", "collection_renames": {"a": 1}}, "collection_renames: expected an object of strings"),
    ("restore", {"backup_name": "b", "skipParams": {"indexParams": [1]}}, "skipParams.indexParams: expected an array of strings"),
    ("restore", {"backup_name": "b", "restorePlan": {"mapping": [{"colls": [{"override": {"shardNum": "2"}}]}]}},
     "restorePlan.mapping[0].colls[0].override.shardNum: expected a 32-bit integer"),
    ("restore", {"backup_name": "b", "maxShardNum": True}, "maxShardNum: expected a 32-bit integer, got true"),
    ("restore_secondary", {"async": 1}, "async: expected true or false, got 1"),
]


@pytest.mark.parametrize(("route", "body", "named"), MALFORMED, ids=[f"{r}-{n[:30]}" for r, _, n in MALFORMED])
def test_a_malformed_body_is_a_400_naming_the_field(server, route, body, named):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = server.call("POST", f"/api/v1/{route}", raw=raw)
    assert r.status == 400, r.body
    assert r.json["error"].startswith(f"invalid request body: {named}"), r.json


def test_an_oversized_body_is_refused_unread(server):
    r = server.announce("/api/v1/create", 2 << 20)
    assert r.status == 413 and r.json == {"error": "request body larger than 1048576 bytes"}


def test_parameter_errors_are_the_go_tools_codes(server):
    r = server.post("/api/v1/create", {"backup_name": "a-b"}, headers={"request_id": "r1"})
    assert r.status == 200 and list(r.json) == ["requestId", "code", "msg", "data"]
    assert r.json["requestId"] == "r1" and r.json["code"] == 400 and r.json["data"] is None
    assert r.json["msg"].startswith("invalid backup name 'a-b'")
    assert server.get("/api/v1/get_backup").json == {
        "code": 400, "msg": "empty backup name and backup id, please set a backup name or id", "data": None}
    assert server.get("/api/v1/list?collection_name=c").json == {
        "code": 400, "msg": "collection_name is deprecated", "data": None}
    r = server.post("/api/v1/restore", {"backup_name": "nope"}, headers={"request_id": "r2"})
    assert r.json == {"requestId": "r2", "code": 400, "msg": "backup nope not found", "data": None}
    r = server.post("/api/v1/restore", {"backup_name": "b", "collection_suffix": "_x", "restorePlan": {}})
    assert r.json["msg"] == "restore plan and collection suffix cannot be set at the same time"
    r = server.post("/api/v1/restore", {"backup_name": "b", "maxShardNum": 2, "ezkMapping": {"a": "b"}})
    assert (r.json["code"], r.json["msg"]) == (1, "not supported by mbackup: maxShardNum, ezkMapping")
    assert server.get("/api/v1/get_restore?id=nope").json["msg"] == "task not found"
    assert server.get("/api/v1/get_restore").json == {"code": 3, "msg": "empty restore id", "data": None}
    # restore_secondary: the Go tool's validation, in its order, then the backup looked up.
    assert server.post("/api/v1/restore_secondary", {}).json["msg"] == "backup name is required"
    r = server.post("/api/v1/restore_secondary", {"backup_name": "b"}, headers={"request_id": "r3"})
    assert r.json == {"requestId": "r3", "code": 400, "msg": "source cluster id is required", "data": None}
    r = server.post("/api/v1/restore_secondary", {"backup_name": "b", "sourceClusterID": "s"})
    assert (r.json["code"], r.json["msg"]) == (400, "target cluster id is required")
    r = server.post("/api/v1/restore_secondary", {"backup_name": "nope", "sourceClusterID": "s",
                                                  "targetClusterID": "t", "requestId": "r4"})
    assert r.json == {"requestId": "r4", "code": 400, "msg": "backup nope not found", "data": None}
    assert server.call("DELETE", "/api/v1/delete").json["code"] == 400


def test_a_failed_job_is_reported_from_storage_and_list_skips_the_jobs(server, config):
    # Milvus answers nothing at port 1: the job fails, and says why.
    r = server.post("/api/v1/create", {"backup_name": "srv_fails", "async": True}, headers={"request_id": "job_fails"})
    assert r.json == {"requestId": "job_fails", "msg": "create backup is executing asynchronously", "data": None}
    final = server.poll("/api/v1/get_backup?backup_id=job_fails", until=3)[-1]["data"]
    assert final["state_code"] == 3 and final["progress"] == 0 and final["id"] == "job_fails"
    assert "127.0.0.1:1" in final["errorMessage"] and final["end_time"] >= final["start_time"] > 0
    # A second server on the same root reads the same job (nothing in memory).
    other = Server(config, env={"MBACKUP_SERVER_TOKEN": TOKEN}, token=TOKEN)
    try:
        assert other.get("/api/v1/get_backup?backup_id=job_fails").json["data"] == final
        again = other.post("/api/v1/create", {"backup_name": "srv_fails"}, headers={"request_id": "job_fails"}).json
        assert again["code"] == 400 and "exists already" in again["msg"]
    finally:
        other.stop()
    listed = subprocess.run([sys.executable, "-m", "milvus_backup", "--config", str(config), "list", "--json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout) == []


def test_the_server_without_its_extra_says_how_to_install_it(config):
    # Hiding the packages is the only way to run without them in the test environment.
    code = ("import sys; sys.modules.update(starlette=None, uvicorn=None); sys.argv[1:] = sys.argv[2:]; "
            "from milvus_backup.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, "milvus_backup", "--config", str(config), "server"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == 'error: mbackup server needs starlette, uvicorn: install them with pip install "mbackup[server]"\n'


def test_list_and_gc_leave_the_jobs_folder_alone(config, seaweedfs):
    s = seaweedfs.store(BUCKET)
    key = f"{ROOT}/.mbackup-jobs/some_job.json"
    s.put(key, b'{"id": "some_job"}')
    mbackup = [sys.executable, "-m", "milvus_backup", "--config", str(config)]
    listed = subprocess.run([*mbackup, "list", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout) == []
    gc = subprocess.run([*mbackup, "gc", "--grace", "0s"], capture_output=True, text=True, check=True)
    assert gc.stdout == "gc: removed 0 leftovers older than 0s\n"
    assert s.get(key) == b'{"id": "some_job"}'


@pytest.mark.parametrize("damaged", [b"{not json", b'{"id": "x", "kind": "create"}', b'["a"]',
                                     b'{"id": "x", "kind": "create", "name": "n", "request": {}, "root": "r", '
                                     b'"collections": [{"nope": 1}]}'])
def test_a_damaged_job_file_is_not_found_never_a_500(server, seaweedfs, damaged):
    seaweedfs.store(BUCKET).put(f"{ROOT}/.mbackup-jobs/damaged_job.json", damaged)
    r = server.get("/api/v1/get_backup?backup_id=damaged_job")
    assert r.status == 200 and r.json["code"] == 3 and "not found" in r.json["msg"]
    assert server.get("/api/v1/get_restore?id=damaged_job").json["msg"] == "task not found"
    assert server.get("/api/v1/get_backup?backup_name=n").json["code"] == 404
