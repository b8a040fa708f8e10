"""The v2 resource API against real Milvus 2.3.5 and SeaweedFS, over real HTTP, with a token: a
create job polled to the end, the backup read back from /backups, a restore job with every row
equal, the delete; and a running create cancelled mid-copy: it stops, says cancelled, leaves
no lock behind, and the same request run again finishes the backup.

One set-up for the module: one collection (tests/milvus_data.py's e2e_int), one bucket.
"""

from __future__ import annotations

import time

import pytest

from milvus_data import assert_same_rows, mbackup, ok, read_back
from server_client import Server, milvus_stack

pytestmark = pytest.mark.milvus

TOKEN = "v2-milvus-s3cr3t-3456"
BUCKET = "mbk-srv-v2-backups"
ROOT = "srv2"
SUFFIX = "_srv2"


@pytest.fixture(scope="module")
def stack(milvus_clusters, seaweedfs, tmp_path_factory):
    env = {"MBACKUP_SERVER_TOKEN": TOKEN}
    for state in milvus_stack(milvus_clusters, tmp_path_factory, bucket=BUCKET, root=ROOT, suffix=SUFFIX, env=env,
                              token=TOKEN):
        yield {**state, "env": env}
    seaweedfs.delete_bucket(BUCKET)


def wait_for(server, job_id: str, until, timeout: float = 300) -> list[dict]:
    """GET the job until ``until(job)``; every answer seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        seen.append(server.get(f"/api/v2/jobs/{job_id}").json)
        if until(seen[-1]) or time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def ended(job: dict) -> bool:
    return job["state"] in ("succeeded", "failed", "cancelled")


def test_create_read_restore_and_delete_through_v2(stack):
    server, truth = stack["server"], stack["truth"]
    r = server.post("/api/v2/jobs", {"kind": "create", "backup_name": "v2_full", "id": "v2_create",
                                     "filter": {"default": {"colls": ["e2e_int"]}}})
    assert r.status == 202 and r.headers["location"] == "/api/v2/jobs/v2_create", r.body
    seen = wait_for(server, "v2_create", ended)
    job = seen[-1]
    assert job["state"] == "succeeded" and job["progress"] == 100 and job["error"] is None, job
    assert job["resumable"] is False and job["ended"] >= job["started"]
    progress = [j["progress"] for j in seen]
    assert progress == sorted(progress), progress

    [summary] = [b for b in server.get("/api/v2/backups").json["backups"] if b["name"] == "v2_full"]
    assert summary["complete"] is True and summary["milvus_version"] == stack["cluster"].version
    backup = server.get("/api/v2/backups/v2_full").json
    [coll] = backup["collections"]
    assert (coll["db"], coll["name"], coll["has_index"]) == ("default", "e2e_int", True)
    assert coll["rows"] >= len(truth.rows) > 0 and backup["size"] == summary["size"] > 0

    r = server.post("/api/v2/jobs", {"kind": "restore", "backup_name": "v2_full", "collection_suffix": SUFFIX})
    assert r.status == 202 and r.json["kind"] == "restore" and r.json["backup"] == "v2_full"
    restored = wait_for(server, r.json["id"], ended)[-1]
    assert restored["state"] == "succeeded" and restored["progress"] == 100, restored
    assert_same_rows(read_back(stack["cluster"].uri, "default", "e2e_int" + SUFFIX, truth), truth)
    r = server.post(f"/api/v2/jobs/{restored['id']}/cancel", None)
    assert r.status == 409 and r.json["error"]["code"] == "conflict"

    r = server.call("DELETE", "/api/v2/backups/v2_full")
    assert r.status == 200 and r.json["name"] == "v2_full" and r.json["deleted_objects"] > 0
    assert server.get("/api/v2/backups/v2_full").status == 404


def test_a_running_create_cancelled_mid_copy_stops_and_the_same_request_finishes_it(stack, seaweedfs):
    slow = Server(stack["slow"], "--rescan", "3600", env=stack["env"], token=TOKEN)
    request = {"kind": "create", "backup_name": "v2_cancelled", "filter": {"default": {"colls": ["e2e_int"]}}}
    store = seaweedfs.store(BUCKET)
    try:
        r = slow.post("/api/v2/jobs", {**request, "id": "v2_cancel_me"})
        assert r.status == 202, r.body
        # The copy is under way: past the 19 of "discover", some objects copied, not all.
        seen = wait_for(slow, "v2_cancel_me", lambda j: 20 < j["progress"] < 100 or ended(j), timeout=120)
        assert seen[-1]["state"] == "running", seen[-1]
        r = slow.post("/api/v2/jobs/v2_cancel_me/cancel", None)
        assert r.status == 202 and r.json["state"] == "running", r.json
        job = wait_for(slow, "v2_cancel_me", ended, timeout=60)[-1]
        copied = [k for k, _, _ in store.list(f"{ROOT}/v2_cancelled/binlogs/")]
        time.sleep(3)  # nothing more is copied once it says cancelled
        assert [k for k, _, _ in store.list(f"{ROOT}/v2_cancelled/binlogs/")] == copied
    finally:
        slow.stop()
    assert job["state"] == "cancelled" and job["ended"] is not None, job
    assert job["error"]["code"] == "cancelled" and job["error"]["retriable"] is True and job["resumable"] is True
    assert copied  # it had begun
    # The locks are released (the job's, the backup's) and the request to cancel is gone.
    left = {k.rsplit("/", 1)[-1] for k, _, _ in store.list(f"{ROOT}/.mbackup-jobs/")}
    assert {n for n in left if n.startswith("v2_cancel_me")} == {"v2_cancel_me.json"}
    assert store.head(f"{ROOT}/v2_cancelled/mbackup.lock") is None
    server = stack["server"]
    assert "incomplete" in server.get("/api/v2/backups/v2_cancelled").json["error"]["message"]
    assert server.get("/api/v2/jobs/v2_cancel_me").json == job  # as saved: any server tells it

    # The same request, a new job: it resumes the backup (nothing waits out a lease) and finishes it.
    r = server.post("/api/v2/jobs", {**request, "id": "v2_cancel_resumed"})
    assert r.status == 202, r.body
    done = wait_for(server, "v2_cancel_resumed", ended)[-1]
    assert done["state"] == "succeeded", done
    assert ok(mbackup(stack["config"], "verify", "-n", "v2_cancelled")).stdout.endswith(": 0 problems\n")
    # The cancel stopped the copy part way, not once it was done.
    assert len(copied) < len(store.list(f"{ROOT}/v2_cancelled/binlogs/")), len(copied)


def test_a_restore_another_server_runs_is_cancelled_through_the_root(stack, seaweedfs):
    server, store = stack["server"], seaweedfs.store(BUCKET)
    r = server.post("/api/v2/jobs", {"kind": "create", "backup_name": "v2_to_restore", "id": "v2_made"})
    assert wait_for(server, "v2_made", ended)[-1]["state"] == "succeeded"
    slow = Server(stack["slow"], "--rescan", "3600", env=stack["env"], token=TOKEN)
    try:
        # A suffix of its own: the first test restored e2e_int with SUFFIX, and that collection stays.
        # Staged into the Milvus bucket at 2 requests a second: long enough to be cancelled.
        r = slow.post("/api/v2/jobs", {"kind": "restore", "backup_name": "v2_to_restore", "id": "v2_restore_me",
                                       "collection_suffix": "_cancelled" + SUFFIX, "collection_names": ["e2e_int"]})
        assert r.status == 202, r.body
        # Asked of the server that does not run it: it leaves the request beside the job.
        r = server.post("/api/v2/jobs/v2_restore_me/cancel", None)
        assert r.status == 202 and r.json["state"] == "running", r.json
        job = wait_for(slow, "v2_restore_me", ended, timeout=60)[-1]
    finally:
        slow.stop()
    assert job["state"] == "cancelled" and job["error"]["code"] == "cancelled", (job["state"], job["error"])
    left = {k.rsplit("/", 1)[-1] for k, _, _ in store.list(f"{ROOT}/.mbackup-jobs/")}
    assert {n for n in left if n.startswith("v2_restore_me")} == {"v2_restore_me.json"}
    assert server.get("/api/v2/jobs/v2_restore_me").json == job
