"""``mbackup server`` against real Milvus 2.3.5 and SeaweedFS, over real HTTP: each v1 route's
answer compared field by field with the Go tool's shapes (the notes on it, section 6), an
async create polled to the end, a server killed (SIGKILL) in the middle of a create and
another started on the same root finishing it (once: two servers never run one job twice),
the backup restored through the API with every row equal, and /metrics read after it all.

One set-up for the module: one collection (tests/milvus_data.py's e2e_int), one bucket.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from fake_pushgateway import FakePushgateway
from milvus_data import assert_same_rows, mbackup, ok, read_back
from server_client import Server, metric_samples, milvus_stack

pytestmark = pytest.mark.milvus

BUCKET = "mbk-srv-backups"
ROOT = "srv"
SUFFIX = "_srv"
BRIEF_KEYS = ["id", "state_code", "start_time", "end_time", "progress", "name", "backup_timestamp",
              "collection_backups", "size", "milvus_version", "database_backups", "meta_size"]
COLLECTION_BRIEF_KEYS = ["id", "collection_id", "db_name", "collection_name", "schema", "shards_num", "size",
                         "has_index", "index_infos", "load_state"]


@pytest.fixture(scope="module")
def stack(milvus_clusters, seaweedfs, tmp_path_factory):
    # No backup bucket yet: the first create makes it, as the CLI's does.
    yield from milvus_stack(milvus_clusters, tmp_path_factory, bucket=BUCKET, root=ROOT, suffix=SUFFIX)
    seaweedfs.delete_bucket(BUCKET)


def test_sync_create_list_get_and_delete_answer_as_the_go_tool(stack):
    server, cluster = stack["server"], stack["cluster"]
    r = server.post("/api/v1/create", {"backup_name": "srv_sync", "collection_names": ["e2e_int"]},
                    headers={"request_id": "req_sync"})
    answer = r.json
    assert r.status == 200 and list(answer) == ["requestId", "msg", "data"], answer
    assert answer["requestId"] == "req_sync" and answer["msg"] == "success"
    brief = answer["data"]
    assert list(brief) == BRIEF_KEYS
    assert brief["id"] == "req_sync" and brief["state_code"] == 2 and brief["progress"] == 100
    assert brief["name"] == "srv_sync" and brief["milvus_version"] == cluster.version and brief["size"] > 0
    assert brief["end_time"] >= brief["start_time"] > 0 and brief["meta_size"] > 0
    [coll] = brief["collection_backups"]
    assert [k for k in coll if k in COLLECTION_BRIEF_KEYS] == COLLECTION_BRIEF_KEYS
    assert (coll["db_name"], coll["collection_name"], coll["has_index"]) == ("default", "e2e_int", True)
    assert [f["name"] for f in coll["schema"]["fields"]] == ["id", "i8", "i16", "i32", "f", "s", "vec"]
    assert coll["schema"]["fields"][0]["data_type"] == 5  # enums as integers: Int64
    assert [d["db_name"] for d in brief["database_backups"]] == ["default"]

    # list: {requestId, data: [{id, name, size, milvus_version}]} (code and msg omitted on success)
    listed = server.get("/api/v1/list", headers={"request_id": "req_list"}).json
    assert list(listed) == ["requestId", "data"] and listed["requestId"] == "req_list"
    [summary] = [s for s in listed["data"] if s["name"] == "srv_sync"]
    assert list(summary) == ["id", "name", "size", "milvus_version"] and summary["size"] == brief["size"]

    # get_backup by name reads storage; by id the job (here the same request).
    by_name = server.get("/api/v1/get_backup?backup_name=srv_sync").json
    assert by_name["msg"] == "success" and by_name["data"] == brief
    assert server.get("/api/v1/get_backup?backup_id=req_sync").json["data"] == brief
    # The CLI's `get --json` prints the same backup fields.
    cli = ok(mbackup(stack["config"], "get", "-n", "srv_sync", "--json"))
    assert '"collection_backups"' in cli.stdout

    # check: text, the configuration table then the end-to-end check (what the CLI prints)
    checked = server.get("/api/v1/check")
    assert checked.status == 200 and checked.headers["content-type"].startswith("text/plain")
    text = checked.body.decode()
    assert text.startswith("Configuration:\nconfig file: ") and text.endswith("Success!\n")
    secrets = [line for line in text.splitlines() if "secretAccessKey" in line]
    assert secrets and all("****" in line for line in secrets), secrets  # masked, as config show does

    # delete: {requestId, msg} and no data (DeleteBackupResponse)
    deleted = server.call("DELETE", "/api/v1/delete?backup_name=srv_sync", headers={"request_id": "req_del"}).json
    assert deleted == {"requestId": "req_del", "msg": "success"}
    gone = server.get("/api/v1/get_backup?backup_name=srv_sync").json
    assert gone["code"] == 404 and "no backup named 'srv_sync'" in gone["msg"]


def _progress(answer: dict) -> int:
    return (answer.get("data") or {}).get("progress", 0)


def test_killed_mid_create_a_new_server_resumes_it_then_an_async_restore_has_every_row(stack, seaweedfs):
    server, truth = stack["server"], stack["truth"]
    slow = Server(stack["slow"], "--rescan", "3600")
    try:
        r = slow.post("/api/v1/create", {"backup_name": "srv_killed", "async": True,
                                         "filter": {"default": {"colls": ["e2e_int"]}}},
                      headers={"request_id": "job_killed"}).json
        assert r == {"requestId": "job_killed", "msg": "create backup is executing asynchronously", "data": None}
        # Wait for the copy to be under way (progress past the 19 of "discover"), then SIGKILL.
        deadline = time.monotonic() + 120
        seen = [0]
        while not 20 < seen[-1] < 100:
            assert time.monotonic() < deadline, f"the copy never started: progress {seen}"
            time.sleep(0.3)
            seen.append(_progress(slow.get("/api/v1/get_backup?backup_id=job_killed").json))
    finally:
        slow.kill()
    # Another server on the root tells the truth about it: executing, part done (as last saved).
    stopped = server.get("/api/v1/get_backup?backup_id=job_killed").json["data"]
    assert stopped["state_code"] == 1 and 5 <= stopped["progress"] < 100 and "end_time" not in stopped, stopped
    # A server started on the root resumes it at once (the killed one's lock is a dead pid's).
    second = Server(stack["config"], "--rescan", "1")
    try:
        seen = second.poll("/api/v1/get_backup?backup_id=job_killed")
        progress = [_progress(a) for a in seen]
        assert seen[-1]["data"]["state_code"] == 2, seen[-1]
        assert progress[-1] == 100 and progress == sorted(progress), progress
        # Two servers on one root: the first (rescanning every second) never ran it too.
        jobs = seaweedfs.store(BUCKET)
        record = json.loads(jobs.get(f"{ROOT}/.mbackup-jobs/job_killed.json"))
        assert record["runs"] == 2 and record["state_code"] == 2
    finally:
        second.stop()
    assert ok(mbackup(stack["config"], "verify", "-n", "srv_killed")).stdout.endswith(": 0 problems\n")

    # Restore it through the API, asynchronously, polled to the end.
    r = server.post("/api/v1/restore", {"backup_name": "srv_killed", "collection_suffix": SUFFIX, "async": True,
                                        "id": "restore_srv"}).json
    assert list(r) == ["requestId", "msg", "data"] and r["msg"] == "restore backup is executing asynchronously"
    assert list(r["data"]) == ["id", "state_code", "start_time", "progress", "collection_restore_tasks"]
    assert r["data"]["id"] == "restore_srv"
    [task] = r["data"]["collection_restore_tasks"]
    assert (task["target_db_name"], task["target_collection_name"]) == ("default", "e2e_int" + SUFFIX)
    seen = server.poll("/api/v1/get_restore?id=restore_srv")
    final = seen[-1]["data"]
    assert final["state_code"] == 2, seen[-1]
    assert final["progress"] == 100 and all(_progress(a) >= 1 for a in seen)
    [task] = final["collection_restore_tasks"]
    assert task["state_code"] == 2 and task["progress"] == 100 and task["end_time"] >= task["start_time"] > 0
    assert_same_rows(read_back(stack["cluster"].uri, "default", "e2e_int" + SUFFIX, truth), truth)


def test_metrics_after_the_jobs(stack):
    server = stack["server"]
    text = server.get("/metrics").body.decode()
    samples = metric_samples(text)
    assert samples[("mbackup_jobs", (("kind", "create"), ("state", "success")))] == 1  # srv_sync; the resumed one ran elsewhere
    assert samples[("mbackup_jobs", (("kind", "restore"), ("state", "success")))] == 1
    assert samples[("mbackup_jobs", (("kind", "create"), ("state", "executing")))] == 0
    assert samples[("mbackup_copied_bytes_total", (("kind", "create"),))] > 0
    assert samples[("mbackup_copied_objects_total", (("kind", "create"),))] > 0
    collection = (("collection", "default.e2e_int"),)
    assert samples[("mbackup_last_success_size_bytes", collection)] > 0
    assert time.time() - 600 < samples[("mbackup_last_success_timestamp_seconds", collection)] <= time.time()
    assert samples[("mbackup_phase_seconds_count", (("kind", "create"), ("phase", "copy")))] == 1


def test_cli_create_writes_its_metrics_file_and_a_failed_push_does_not_fail_it(stack, tmp_path):
    out = tmp_path / "mbackup.prom"
    gateway = FakePushgateway(status=500)  # it records the push, then answers that it failed
    try:
        r = ok(mbackup(stack["config"], "create", "-n", "srv_cron", "--filter", "default.e2e_int", "--metrics-file",
                       str(out), "--pushgateway", gateway.url))
    finally:
        gateway.close()
    assert [line for line in r.stderr.splitlines() if line.startswith("warning: --pushgateway")] == [
        f"warning: --pushgateway {gateway.url}: the metrics were not pushed (Internal Server Error); the create "
        "itself is unaffected"]
    text = out.read_text()
    [push] = gateway.pushes
    assert metric_samples(push.body.decode()) == metric_samples(text)
    samples = metric_samples(text)
    size = stack["server"].get("/api/v1/get_backup?backup_name=srv_cron").json["data"]["size"]
    assert samples[("mbackup_last_run_success", (("command", "create"),))] == 1
    assert samples[("mbackup_last_success_size_bytes", (("backup", "srv_cron"),))] == size > 0
    assert time.time() - 600 < samples[("mbackup_last_success_timestamp_seconds", (("backup", "srv_cron"),))] <= time.time()
    assert samples[("mbackup_copied_objects", (("command", "create"),))] > 0


def test_killed_mid_restore_two_servers_started_together_resume_it_once_with_every_row(stack, seaweedfs):
    server, truth = stack["server"], stack["truth"]
    ok(mbackup(stack["config"], "create", "-n", "srv_rk", "--filter", "default.e2e_int"))
    target = "e2e_int_rk" + SUFFIX
    record_key = f"{ROOT}/.mbackup-jobs/restore_rk.json"
    jobs = seaweedfs.store(BUCKET)
    slow = Server(stack["slow"], "--rescan", "3600")
    try:
        r = slow.post("/api/v1/restore", {"backup_name": "srv_rk", "collection_suffix": "_rk" + SUFFIX,
                                          "async": True, "id": "restore_rk"}).json
        assert r["msg"] == "restore backup is executing asynchronously", r
        # Wait for the copy into Milvus's bucket (held to 2 requests a second) to be under way
        # (as the job was last saved), then SIGKILL the server running it.
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "the restore's copy never started"
            time.sleep(0.3)
            record = json.loads(jobs.get(record_key))  # saved before the answer, then every 2 s
            if record["phase"] == "import" and 0 < record["bytes_done"] < record["bytes_total"]:
                break
    finally:
        slow.kill()
    # Another server on the root tells the truth about it: executing, not done.
    stopped = server.get("/api/v1/get_restore?id=restore_rk").json["data"]
    assert stopped["state_code"] == 1 and stopped["progress"] < 100 and "end_time" not in stopped, stopped

    # Two servers started together on the root, each looking every second for unfinished jobs:
    # both see the job, exactly one runs it, the other reports it as it goes.
    both = [Server(stack["config"], "--rescan", "1", "--set", "log.level=warn", wait=False) for _ in range(2)]
    try:
        for s in both:
            s.ready()
        seen = [s.poll("/api/v1/get_restore?id=restore_rk") for s in both]
        finals = [answers[-1]["data"] for answers in seen]
        assert finals[0]["state_code"] == 2 and finals[0] == finals[1], finals
        assert all(a["data"]["state_code"] in (1, 2) for answers in seen for a in answers), seen
        ran = [metric_samples(s.get("/metrics").body.decode())[("mbackup_jobs", (("kind", "restore"),
                                                                                   ("state", "success")))]
               for s in both]
        assert sorted(ran) == [0, 1], ran
    finally:
        errs = [s.stop()[1] for s in both]
    resumed = [e.count("resuming restore job restore_rk") for e in errs]
    assert sorted(resumed) == [0, 1], errs
    assert json.loads(jobs.get(record_key))["runs"] == 2
    assert_same_rows(read_back(stack["cluster"].uri, "default", target, truth), truth)


def test_a_schedule_fires_within_the_window_its_backup_exists_and_a_restart_does_not_fire_it_again(stack, tmp_path):
    slot = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)).replace(microsecond=0)
    name = f"sched_{slot:%Y%m%d_%H%M%S}"
    config = tmp_path / "scheduled.yaml"
    # Daily at that second (croniter's seconds field, last): one slot in the test's window.
    config.write_text(stack["config"].read_text() + "server:\n  schedules:\n    - name: soon\n"
                      f"      cron: '{slot:%M %H} * * * {slot.second}'\n      filter: [default.e2e_int]\n"
                      "      backupName: 'sched_{datetime}'\n")
    first = Server(config, "--rescan", "3600")
    try:
        answers = first.poll(f"/api/v1/get_backup?backup_name={name}", timeout=120)
    finally:
        first.stop()
    brief = answers[-1]["data"]
    assert brief["state_code"] == 2 and brief["start_time"] >= slot.timestamp(), answers[-1]
    assert [c["collection_name"] for c in brief["collection_backups"]] == ["e2e_int"]
    assert ok(mbackup(stack["config"], "verify", "-n", name)).stdout.endswith(": 0 problems\n")

    second = Server(config, "--rescan", "3600")
    try:
        time.sleep(3)  # a few ticks of its scheduler
        samples = metric_samples(second.get("/metrics").body.decode())
        listed = [b["name"] for b in second.get("/api/v1/list").json["data"]]
    finally:
        second.stop()
    assert samples[("mbackup_schedule_runs_total", (("schedule", "soon"),))] == 0
    assert samples[("mbackup_schedule_missed_total", (("schedule", "soon"),))] == 0
    assert [n for n in listed if n.startswith("sched_")] == [name]


def test_an_incremental_schedule_with_retention_shares_its_last_backup_and_keeps_only_the_newest(stack, caplog):
    """The server's scheduler and job runner in this process (to move the schedule's clock), on
    the module's Milvus and bucket: two slots of ``incremental: true, keepLast: 1, prune: true``.
    The second backup is an increment of the first (the collection has not changed: every
    binlog shared, from the pool), the first is then forgotten, the pool pruned, and the
    second still verifies deep and restores every row; other backups of the root untouched."""
    from milvus_backup.backup import manifest as manifests
    from milvus_backup.backup.catalog import list_backups, open_stores
    from milvus_backup.backup.retention import Policy
    from milvus_backup.config.settings import load_config
    from milvus_backup.server.metrics import Metrics
    from milvus_backup.server.schedules import Schedule, Scheduler
    from milvus_backup.server.v1 import Service
    from milvus_backup.wiring import copy_settings, open_milvus

    cfg = load_config(stack["config"])
    service = Service(stores=open_stores(cfg), milvus=lambda: open_milvus(cfg), settings=copy_settings(cfg),
                      pause_gc=False, metrics=Metrics())
    service.stores.backup.ensure_bucket()  # when the module's tests before this one did not run
    others = sorted(e.name for e in list_backups(service.stores))
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    clock = [t0]
    inc = Schedule("inc", "0 * * * *", ("default.e2e_int",), "inc_{datetime}", incremental=True,
                   policy=Policy(last=1), prune=True)
    scheduler = Scheduler([inc], service.runner, service.metrics.registry, pause_gc=False, clock=lambda: clock[0])
    scheduler.start()
    first, second = "inc_20260101_010000", "inc_20260101_020000"
    with caplog.at_level("INFO", logger="milvus_backup"):
        for hour in (1, 2):
            clock[0] = t0 + hour * 3600 + 5
            scheduler.tick(inc)
            scheduler.settle(300)
    jobs = [service.runner.load(f"schedule_inc_202601010{h}0000") for h in (1, 2)]
    assert [j.state_code for j in jobs if j] == [2, 2], [(j.name, j.error) for j in jobs if j]
    found = manifests.read(service.stores, second)
    assert found is not None and found["incremental"] and found["base"] == first, found
    assert found["objects"] and all("pool" in e for e in found["objects"].values()), found
    assert f"create {second} (job schedule_inc_20260101020000): incremental backup on base {first}: 0 objects " \
           "(0 B) new" in caplog.text
    assert f"schedule inc: forget kept 1 ({second}), forgot 1 of 2 backups" in caplog.text
    assert "schedule inc: prune: deleted " in caplog.text
    samples = metric_samples(service.metrics.text().decode())
    assert samples[("mbackup_schedule_retention_failures_total", (("schedule", "inc"),))] == 0
    assert sorted(e.name for e in list_backups(service.stores)) == sorted([*others, second])

    assert ok(mbackup(stack["config"], "verify", "-n", second, "--deep")).stdout.endswith(": 0 problems\n")
    ok(mbackup(stack["config"], "restore", "-n", second, "--suffix", "_inc" + SUFFIX))
    truth = stack["truth"]
    assert_same_rows(read_back(stack["cluster"].uri, "default", "e2e_int_inc" + SUFFIX, truth), truth)
