"""``server.schedules`` without Milvus: a bad schedule refused at start in one line (exit 2);
a real server process on SeaweedFS firing a near slot, reporting the slots missed while no
server was up and running the latest of them once, and a restarted server firing none of
them again. Milvus answers nothing here (port 1): each fired backup is a job that fails,
which is enough to see what fired when. A schedule whose backup exists afterwards:
test_server_milvus.py."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest

from milvus_backup.backup.catalog import Stores, list_backups
from milvus_backup.backup.retention import Policy
from milvus_backup.server.jobs import Job, JobExists, JobStore, Runner
from milvus_backup.server.metrics import Metrics
from milvus_backup.server.schedules import Schedule, Scheduler
from milvus_backup.storage.location import Location
from sample_backup import ROOT, Sample, config_yaml
from server_client import Server, free_port, metric_samples

BUCKET = "mbk-srv-sched"
UTC = dt.UTC


def _config(seaweedfs, tmp_path, schedules: str):
    path = tmp_path / "backup.yaml"
    path.write_text(config_yaml(seaweedfs, BUCKET) + "server:\n  schedules:\n" + schedules)
    return path


def _server_refuses(config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", "--config", str(config), "server", "-p",
                           str(free_port())], capture_output=True, text=True, timeout=60)


# (the schedules, the error line's start)
BAD = [
    ("    - {name: nightly, cron: '61 2 * * *', backupName: 'nightly_{date}'}\n",
     "server.schedules[0] (nightly).cron: '61 2 * * *' is not a cron expression that fires (is not acceptable, out "
     "of range); write five fields, minute hour day month weekday, e.g. '0 2 * * *' for 02:00 every day"),
    ("    - {name: nightly, cron: '0 2 * *', backupName: 'nightly_{date}'}\n",
     "server.schedules[0] (nightly).cron: '0 2 * *' is not a cron expression that fires (Exactly 5, 6 or 7 columns "
     "has to be specified for iterator expression)"),
    ("    - {name: nightly, cron: '0 2 30 2 *', backupName: 'nightly_{date}'}\n",
     "server.schedules[0] (nightly).cron: '0 2 30 2 *' is not a cron expression that fires (failed to find next "
     "date)"),
    ("    - {name: nightly, cron: 5, backupName: 'nightly_{date}'}\n",
     "server.schedules[0] (nightly).cron: expected a cron expression, got 5"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', incremental: maybe}\n",
     "server.schedules[0] (nightly).incremental: expected true or false, got 'maybe'"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', keepLast: 0, keepDaily: 0}\n",
     "server.schedules[0] (nightly).keepLast: the retention policy (keepLast: 0, keepDaily: 0) keeps no backup, so "
     "each run would forget every backup of the schedule: keep 1 or more, or leave the keep* keys out"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', keepWithin: 2weeks}\n",
     "server.schedules[0] (nightly).keepWithin: invalid duration '2weeks': use years, months, days and hours as "
     "restic does, e.g. 2d12h, 36h or 1y6m (m is months)"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', keepDaily: -1}\n",
     "server.schedules[0] (nightly).keepDaily: expected a number of backups (0 or more), got -1"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', keepName: ['']}\n",
     "server.schedules[0] (nightly).keepName: expected backup name globs, e.g. [nightly_*01_*], got ['']"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', prune: true}\n",
     "server.schedules[0] (nightly).prune: prune: true deletes what forget leaves unreferenced: give a retention "
     "policy too"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{date}', keepLst: 3}\n",
     "server.schedules[0] (nightly).keepLst: unknown key; did you mean keepLast?"),
    ("    - {name: nightly, crn: '0 2 * * *', backupName: 'nightly_{date}'}\n",
     "server.schedules[0] (nightly).crn: unknown key; did you mean cron?"),
    ("    - {name: nightly, cron: '0 2 * * *'}\n",
     "server.schedules[0] (nightly).backupName: required: the backups' name, with the slot's time in it"),
    ("    - {name: hourly, cron: '0 * * * *', backupName: 'hourly_{date}'}\n",
     "server.schedules[0] (hourly).backupName: 'hourly_{date}' names the runs of "),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly_{day}'}\n",
     "server.schedules[0] (nightly).backupName: unknown placeholder {day}: use {date}, {time}, {datetime} or "
     "{schedule}"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'nightly-{date}'}\n",
     "server.schedules[0] (nightly).backupName: invalid backup name 'nightly-"),
    ("    - {name: nightly, cron: '0 2 * * *', backupName: 'n_{date}', filter: [a.b.c]}\n",
     "server.schedules[0] (nightly).filter: invalid filter 'a.b.c': use coll, db.coll, db.* or db."),
    ("    - {name: 'night ly', cron: '0 2 * * *', backupName: 'n_{date}'}\n",
     "server.schedules[0] (night ly).name: expected a name of letters, digits, '_' and '-'"),
    ("    - {name: n, cron: '0 2 * * *', backupName: 'a_{date}'}\n    - {name: n, cron: '0 3 * * *', "
     "backupName: 'b_{date}'}\n", "server.schedules[1] (n).name: 'n' names another schedule too"),
    ("    - {name: nightly, cron: '0 2 * * *', timezone: Mars/Olympus, backupName: 'n_{date}'}\n",
     "server.schedules[0] (nightly).timezone: unknown time zone 'Mars/Olympus': use an IANA name such as UTC or "
     "Europe/Paris"),
    ("    nightly\n", "server.schedules: expected a list of schedules such as [{name: nightly, cron: '0 2 * * *', "),
]


@pytest.mark.parametrize(("schedules", "line"), BAD, ids=[line.split(":")[0] + line.split(":")[1][:20]
                                                           for _, line in BAD])
def test_a_bad_schedule_is_refused_at_start_in_one_line(seaweedfs, tmp_path, schedules, line):
    config = _config(seaweedfs, tmp_path, schedules)
    r = _server_refuses(config)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {line}") and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.rstrip().endswith(f"(file {config})"), r.stderr


def _stamp(t: dt.datetime) -> str:
    return f"{t:%Y%m%d%H%M%S}"


def test_slots_fire_once_missed_ones_are_reported_and_a_restart_fires_none_again(seaweedfs, tmp_path):
    seaweedfs.create_bucket(BUCKET)
    store = seaweedfs.store(BUCKET)
    try:
        now = dt.datetime.now(UTC)
        # "soon": a slot a few seconds ahead (daily at that second: the only one in the test).
        soon = (now + dt.timedelta(seconds=10)).replace(microsecond=0)
        # "hourly": its state as a server that stopped three hours ago left it.
        store.put(f"{ROOT}/.mbackup-jobs/schedules/hourly.state",
                  json.dumps({"schedule": "hourly", "last_slot": (now - dt.timedelta(hours=3)).timestamp()}).encode())
        hours = [now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=h) for h in (2, 1, 0)]
        late = [h for h in hours if (now - h).total_seconds() > 60]  # the latest is on time in its first minute
        config = _config(seaweedfs, tmp_path,
                         f"    - {{name: soon, cron: '{soon:%M %H} * * * {soon.second}', backupName: 's_{{datetime}}',"
                         " filter: default.c1}\n"
                         "    - {name: hourly, cron: '0 * * * *', backupName: 'h_{datetime}'}\n")
        first = Server(config, "--set", "log.level=info")
        try:
            fired = {}
            deadline = time.monotonic() + 60
            for job in (f"schedule_hourly_{_stamp(hours[-1])}", f"schedule_soon_{_stamp(soon)}"):
                while (answer := first.get(f"/api/v1/get_backup?backup_id={job}").json).get("code") == 3 \
                        and "not found" in answer["msg"]:
                    assert time.monotonic() < deadline, f"{job} never fired"
                    time.sleep(0.5)
                fired[job] = answer["data"]
            assert fired[f"schedule_soon_{_stamp(soon)}"]["name"] == f"s_{soon:%Y%m%d_%H%M%S}"
            assert fired[f"schedule_hourly_{_stamp(hours[-1])}"]["name"] == f"h_{hours[-1]:%Y%m%d_%H%M%S}"
            assert all(b["start_time"] >= int(now.timestamp()) for b in fired.values()), fired
            samples = metric_samples(first.get("/metrics").body.decode())
        finally:
            _, err = first.stop()
        assert samples[("mbackup_schedule_missed_total", (("schedule", "hourly"),))] == len(late)
        assert samples[("mbackup_schedule_missed_total", (("schedule", "soon"),))] == 0
        assert samples[("mbackup_schedule_runs_total", (("schedule", "hourly"),))] == 1
        assert samples[("mbackup_schedule_runs_total", (("schedule", "soon"),))] == 1
        assert samples[("mbackup_schedule_next_timestamp_seconds", (("schedule", "hourly"),))] == \
            (hours[-1] + dt.timedelta(hours=1)).timestamp()
        if late:
            assert (f"schedule hourly: {len(late)} slot(s) missed (from {late[0]:%Y-%m-%d %H:%M:%S} to "
                    f"{late[-1]:%Y-%m-%d %H:%M:%S} UTC: no server ran them on time); the latest is run now, once") in err
        jobs = [k.rsplit("/", 1)[-1] for k in seaweedfs.list_keys(BUCKET, f"{ROOT}/.mbackup-jobs/")
                if k.endswith(".json")]
        assert sorted(jobs) == sorted(f"{j}.json" for j in fired), jobs  # the earlier missed slots: not run

        # A server started again fires none of them again, and reports nothing missed.
        second = Server(config, "--set", "log.level=info")
        try:
            time.sleep(3)  # a few ticks of its scheduler
            samples = metric_samples(second.get("/metrics").body.decode())
        finally:
            _, err = second.stop()
        for name in ("soon", "hourly"):
            assert samples[("mbackup_schedule_runs_total", (("schedule", name),))] == 0, err
            assert samples[("mbackup_schedule_missed_total", (("schedule", name),))] == 0, err
        again = [k for k in seaweedfs.list_keys(BUCKET, f"{ROOT}/.mbackup-jobs/") if k.endswith(".json")]
        assert len(again) == 2 and "missed" not in err, (again, err)
        for job in fired:
            assert json.loads(store.get(f"{ROOT}/.mbackup-jobs/{job}.json"))["runs"] == 1
    finally:
        seaweedfs.delete_bucket(BUCKET)


def _stand_in_runner(seaweedfs) -> tuple[Location, Runner, list[str]]:
    """A runner on the test bucket whose create flow only notes the backup's name."""
    location = Location(seaweedfs.store(BUCKET), "", f"s3://{BUCKET}")
    ran: list[str] = []
    runner = Runner(JobStore(Stores(location, "files", location, ROOT)),
                    {"create": lambda job, _reporter: ran.append(job.name)}, Metrics())
    return location, runner, ran


def test_slots_a_later_one_overtook_are_missed_and_only_the_latest_runs(seaweedfs):
    """The scheduler's own tick, its clock moved by the test (a stand-in flow: no Milvus)."""
    seaweedfs.create_bucket(BUCKET)
    try:
        _, runner, ran = _stand_in_runner(seaweedfs)
        t0 = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
        clock = [t0]
        every10 = Schedule("s", "* * * * * */10", (), "s_{datetime}")
        scheduler = Scheduler([every10], runner, runner.metrics.registry, pause_gc=False, clock=lambda: clock[0])
        scheduler.start()  # new: counts from t0
        clock[0] = t0 + 35  # stalled past three slots (00:10, 00:20, 00:30), the last 5 s ago
        scheduler.tick(every10)
        clock[0] = t0 + 36
        scheduler.tick(every10)  # nothing new is due
        deadline = time.monotonic() + 30
        while runner.running_here("schedule_s_20260101000030"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ran == ["s_20260101_000030"]
        samples = metric_samples(runner.metrics.text().decode())
        assert samples[("mbackup_schedule_missed_total", (("schedule", "s"),))] == 2
        assert samples[("mbackup_schedule_runs_total", (("schedule", "s"),))] == 1
        assert samples[("mbackup_schedule_next_timestamp_seconds", (("schedule", "s"),))] == t0 + 40
    finally:
        seaweedfs.delete_bucket(BUCKET)


def test_a_schedule_in_a_time_zone_fires_at_its_local_time(seaweedfs):
    seaweedfs.create_bucket(BUCKET)
    try:
        _, runner, ran = _stand_in_runner(seaweedfs)
        t0 = dt.datetime(2026, 6, 30, 12, tzinfo=UTC).timestamp()
        clock = [t0]
        paris = Schedule("p", "0 2 * * *", (), "p_{datetime}", "Europe/Paris")  # 02:00 CEST is 00:00 UTC
        scheduler = Scheduler([paris], runner, runner.metrics.registry, pause_gc=False, clock=lambda: clock[0])
        scheduler.start()
        clock[0] = dt.datetime(2026, 7, 1, 0, 0, 5, tzinfo=UTC).timestamp()
        scheduler.tick(paris)
        deadline = time.monotonic() + 30
        while runner.running_here("schedule_p_20260701000000"):  # the job id is the slot in UTC
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ran == ["p_20260701_020000"]  # the name, in local time
        samples = metric_samples(runner.metrics.text().decode())
        assert samples[("mbackup_schedule_missed_total", (("schedule", "p"),))] == 0
        assert samples[("mbackup_schedule_next_timestamp_seconds", (("schedule", "p"),))] == \
            dt.datetime(2026, 7, 2, tzinfo=UTC).timestamp()
    finally:
        seaweedfs.delete_bucket(BUCKET)


def test_a_job_saved_since_the_caller_looked_is_never_run_twice(seaweedfs):
    """What makes a slot run once when two servers fire it: the job is looked for again under
    its lock. The flow is a stand-in (the lock and the store are what is tested; no Milvus)."""
    seaweedfs.create_bucket(BUCKET)
    try:
        location, runner, ran = _stand_in_runner(seaweedfs)
        runner.submit(Job(id="slot_1", kind="create", name="b1", request={}, root=ROOT)).join()
        # The second server looked before the first saved it; it takes the lock after the first let go.
        with pytest.raises(JobExists, match="a job with id 'slot_1' exists already"):
            runner.submit(Job(id="slot_1", kind="create", name="b1", request={}, root=ROOT))
        assert ran == ["b1"]
        assert location.head(f"{ROOT}/.mbackup-jobs/slot_1.lock") is None  # given back
    finally:
        seaweedfs.delete_bucket(BUCKET)


def test_two_servers_on_one_root_fire_a_slot_once(seaweedfs, tmp_path):
    seaweedfs.create_bucket(BUCKET)
    try:
        slot = (dt.datetime.now(UTC) + dt.timedelta(seconds=10)).replace(microsecond=0)
        config = _config(seaweedfs, tmp_path, f"    - {{name: soon, cron: '{slot:%M %H} * * * {slot.second}', "
                                              "backupName: 's_{datetime}'}\n")
        both = [Server(config, wait=False) for _ in range(2)]
        try:
            for s in both:
                s.ready()
            job = f"schedule_soon_{_stamp(slot)}"
            answers = [s.poll(f"/api/v1/get_backup?backup_id={job}", until=3, timeout=60)[-1] for s in both]
            time.sleep(2)  # a tick or two past the slot on both
            samples = [metric_samples(s.get("/metrics").body.decode()) for s in both]
        finally:
            for s in both:
                s.stop()
        assert answers[0]["data"]["state_code"] == 3 and answers[0]["data"] == answers[1]["data"], answers
        runs = sorted(x[("mbackup_schedule_runs_total", (("schedule", "soon"),))] for x in samples)
        assert runs == [0, 1]
        assert all(x[("mbackup_schedule_missed_total", (("schedule", "soon"),))] == 0 for x in samples)
        assert json.loads(seaweedfs.store(BUCKET).get(f"{ROOT}/.mbackup-jobs/{job}.json"))["runs"] == 1
    finally:
        seaweedfs.delete_bucket(BUCKET)


def _sample_runner(seaweedfs) -> Runner:
    """A runner whose create flow writes a small backup as mbackup writes one (sample_backup.py)
    under the job's name: what retention reads is real objects on SeaweedFS; no Milvus."""
    location = Location(seaweedfs.store(BUCKET), "", f"s3://{BUCKET}")
    runner = Runner(JobStore(Stores(location, "files", location, ROOT)),
                    {"create": lambda job, _reporter: Sample(seaweedfs.store(BUCKET), job.name) and None}, Metrics())
    return runner


def _fire_hours(scheduler: Scheduler, schedule: Schedule, clock: list[float], t0: float, hours: int) -> None:
    for hour in range(1, hours + 1):
        clock[0] = t0 + hour * 3600 + 5
        scheduler.tick(schedule)
        scheduler.settle(60)  # the backup, then the retention after it


def test_retention_forgets_the_schedules_own_backups_only_and_prunes(seaweedfs, caplog):
    seaweedfs.create_bucket(BUCKET)
    try:
        runner = _sample_runner(seaweedfs)
        stores = runner.store.stores
        Sample(seaweedfs.store(BUCKET), "other_20260101_000000")  # another name: never the schedule's
        Sample(seaweedfs.store(BUCKET), "h_manual")  # the template's prefix, not a name it gives
        t0 = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
        clock = [t0]
        hourly = Schedule("h", "0 * * * *", (), "h_{datetime}", policy=Policy(last=1), prune=True)
        scheduler = Scheduler([hourly], runner, runner.metrics.registry, pause_gc=False, clock=lambda: clock[0])
        scheduler.start()
        with caplog.at_level("INFO", logger="milvus_backup.server.schedules"):
            _fire_hours(scheduler, hourly, clock, t0, 3)
        names = sorted(e.name for e in list_backups(stores))
        assert names == ["h_20260101_030000", "h_manual", "other_20260101_000000"], caplog.text
        assert "schedule h: forget kept 1 (h_20260101_030000), forgot 1 of 2 backups" in caplog.text
        assert "schedule h: prune: deleted 0 pool objects" in caplog.text
        samples = metric_samples(runner.metrics.text().decode())
        assert samples[("mbackup_schedule_retention_failures_total", (("schedule", "h"),))] == 0
        assert samples[("mbackup_schedule_runs_total", (("schedule", "h"),))] == 3
    finally:
        seaweedfs.delete_bucket(BUCKET)


def test_a_retention_that_fails_is_counted_and_the_backups_stand(seaweedfs, caplog):
    """A policy keeping none of the schedule's backups (a name glob that matches none of them):
    refused as forget refuses it, logged, counted; every backup stays."""
    seaweedfs.create_bucket(BUCKET)
    try:
        runner = _sample_runner(seaweedfs)
        t0 = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
        clock = [t0]
        odd = Schedule("g", "0 * * * *", (), "g_{datetime}", policy=Policy(names=("release_*",)))
        scheduler = Scheduler([odd], runner, runner.metrics.registry, pause_gc=False, clock=lambda: clock[0])
        scheduler.start()
        with caplog.at_level("INFO", logger="milvus_backup.server.schedules"):
            _fire_hours(scheduler, odd, clock, t0, 2)
        assert sorted(e.name for e in list_backups(runner.store.stores)) == ["g_20260101_010000", "g_20260101_020000"]
        assert ("schedule g: retention after backup g_20260101_020000 failed (the backup stands): the policy keeps "
                "none of the schedule's 2 backups: none forgotten") in caplog.text
        samples = metric_samples(runner.metrics.text().decode())
        assert samples[("mbackup_schedule_retention_failures_total", (("schedule", "g"),))] == 2
    finally:
        seaweedfs.delete_bucket(BUCKET)
