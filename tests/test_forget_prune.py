"""`mbackup forget` and `mbackup prune` on a real SeaweedFS: what is printed, what is left on
the store, the exit codes.

Backups here are written by hand the way mbackup writes them: full backups (Sample, or meta
files alone, with the time `list` shows), incomplete ones (an in-progress marker), and
backups that keep their binlogs in the shared pool as the pool contract lays it out (a
version 2 manifest whose objects name pool keys; a running create's marker with pool_refs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from faultproxy import FaultProxy
from milvus_backup import _engine
from milvus_backup.backup.catalog import open_stores
from milvus_backup.backup.lock import LockedError, StoreLock
from milvus_backup.backup.pool import parse_pool_key, pool_key
from milvus_backup.backup.prune import PENDING, PRUNE_LOCK, PruneRunning, wait_for_pending_deletes
from milvus_backup.config.settings import load_config
from milvus_backup.format import meta
from sample_backup import ROOT, Sample, config_yaml
from test_signals import start
from test_verify import cfg as _verify_cfg
from test_verify import mbackup

POOL = f"{ROOT}/.mbackup-pool"
cfg = _verify_cfg  # the backup.yaml on the test's bucket, as the verify tests have it


@pytest.fixture
def env():
    e = dict(os.environ, TZ="UTC")  # days, weeks and months are local time: UTC here
    e.pop("MBACKUP_PLUGINS", None)
    return e


@pytest.fixture
def store(seaweedfs, bucket):
    return seaweedfs.store(bucket)


def at(day: int, hour: int = 2) -> dt.datetime:
    return dt.datetime(2025, 1, day, hour, tzinfo=dt.UTC)


def write_backup(store, name: str, when: dt.datetime, pool: dict[str, bytes] | None = None,
                 collections: list[meta.CollectionBackupInfo] | None = None) -> None:
    """A complete backup taken at ``when``: its meta files (with ``collections``), and with
    ``pool`` a version 2 manifest naming those pool objects (keys under the pool) as its binlogs."""
    bdir = meta.backup_dir(ROOT, name)
    if pool is not None:
        objects = {}
        for key, data in pool.items():
            rel, _, _, checksum = parse_pool_key(f".mbackup-pool/{key}")
            objects[rel] = {"size": len(data), "checksum": checksum, "pool": f".mbackup-pool/{key}"}
        manifest = {"version": 2, "backup": name, "incremental": True, "base": None, "checksum_algo": "crc32c",
                    "objects": objects}
        store.put(f"{bdir}/meta/mbackup_manifest.json", json.dumps(manifest).encode())
    info = meta.BackupInfo(id=str(uuid.uuid4()), name=name, milvus_version="v2.3.5",
                           size=sum(len(data) for data in (pool or {}).values()),
                           backup_timestamp=int(when.timestamp() * 1000), collection_backups=collections or [])
    files = meta.write_meta_files(info)
    for fname in [n for n in files if n != meta.BACKUP_META] + [meta.BACKUP_META]:
        store.put(f"{bdir}/meta/{fname}", files[fname])


def write_incomplete(store, name: str, pool_refs: list[str] | None = None) -> None:
    """What a create that has not finished has written: its in-progress marker (with the pool
    keys it will reference, for a create into the pool)."""
    body: dict = {"id": str(uuid.uuid4()), "name": name, "pid": 1, "host": "elsewhere", "started": "now"}
    if pool_refs is not None:
        body["pool_refs"] = [f".mbackup-pool/{k}" for k in pool_refs]
    store.put(f"{meta.backup_dir(ROOT, name)}/mbackup_in_progress.json", json.dumps(body).encode())


def put_pool(store, rel: str, data: bytes) -> str:
    """A pool object as the contract keys it: <rel>~<size>~<algo>-<checksum>; its key under the pool."""
    key = pool_key(rel, len(data), "crc32c", f"{_engine.checksum('crc32c', data):08x}")
    store.put(f"{ROOT}/{key}", data)
    return key.removeprefix(".mbackup-pool/")


def keys(store, under: str = ROOT) -> set[str]:
    return {k for k, _, _ in store.list(under)}


def names_left(store) -> set[str]:
    return {k.split("/")[1] for k in keys(store)} - {".mbackup-pool"}


# --- forget -------------------------------------------------------------------------------

@pytest.fixture
def nightly(store) -> list[str]:
    """Six nightly backups (Jan 1 to 6, 02:00 UTC), a second one on Jan 6 at 01:00, and one
    whose create did not finish."""
    for day in range(1, 7):
        write_backup(store, f"nightly_{day}", at(day))
    write_backup(store, "early_6", at(6, 1))
    write_incomplete(store, "running")
    return [f"nightly_{d}" for d in range(1, 7)] + ["early_6"]


def test_forget_dry_run_says_what_it_keeps_and_why_and_changes_nothing(env, cfg, store, nightly):
    before = keys(store)
    r = mbackup(env, cfg, "forget", "--keep-last", "2", "--keep-daily", "3", "--dry-run")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.splitlines() == [
        "would keep    nightly_6  2025-01-06 02:00:00 UTC  last 1/2, daily 2025-01-06",
        "would keep    early_6  2025-01-06 01:00:00 UTC  last 2/2",
        "would keep    nightly_5  2025-01-05 02:00:00 UTC  daily 2025-01-05",
        "would keep    nightly_4  2025-01-04 02:00:00 UTC  daily 2025-01-04",
        "would forget  nightly_3  2025-01-03 02:00:00 UTC",
        "would forget  nightly_2  2025-01-02 02:00:00 UTC",
        "would forget  nightly_1  2025-01-01 02:00:00 UTC",
        "would leave   running  -  incomplete: a create did not finish or is running "
        "(mbackup delete -n running removes it)",
        "forget: would keep 4, would forget 3 of 8 backups; 1 left alone",
    ]
    assert keys(store) == before


def test_forget_deletes_what_no_policy_keeps(env, cfg, store, nightly):
    r = mbackup(env, cfg, "forget", "--keep-within", "1d", "--keep-weekly", "1", "--keep-name", "nightly_1",
                "--json")
    assert (r.returncode, r.stderr) == (0, "")
    out = json.loads(r.stdout)
    assert {b["name"]: (b["action"], b["reasons"]) for b in out["backups"]} == {
        "nightly_6": ("keep", ["within 1d of the newest", "weekly 2025-W02"]),
        "early_6": ("keep", ["within 1d of the newest"]),
        "nightly_5": ("keep", ["within 1d of the newest"]),  # exactly one day before the newest
        "nightly_4": ("forget", []), "nightly_3": ("forget", []), "nightly_2": ("forget", []),
        "nightly_1": ("keep", ["name matches 'nightly_1'"]),
        "running": ("leave", ["incomplete: a create did not finish or is running (mbackup delete -n running removes it)"]),
    }
    assert (out["kept"], out["forgotten"], out["left_alone"], out["failed"]) == (4, 3, 1, 0)
    assert names_left(store) == {"nightly_6", "early_6", "nightly_5", "nightly_1", "running"}
    listed = json.loads(mbackup(env, cfg, "list", "--json").stdout)
    assert sorted(b["name"] for b in listed) == ["early_6", "nightly_1", "nightly_5", "nightly_6", "running"]


def test_forget_removes_a_full_backup_as_delete_does_and_an_incremental_without_its_pool(env, cfg, store):
    full = Sample(store, "full")
    full.info.backup_timestamp = int(at(1).timestamp() * 1000)  # the oldest
    for fname, data in meta.write_meta_files(full.info).items():
        full.put(f"meta/{fname}", data)
    full_keys = {f"{full.bdir}/{rel}" for rel in full.objects}
    assert full_keys <= keys(store)
    pool = {put_pool(store, f"binlogs/insert_log/1/2/3/3/{f}/{f}", os.urandom(100 + f)): b"" for f in (100, 101)}
    pool = {k: store.get(f"{POOL}/{k}") for k in pool}
    write_backup(store, "incr_1", at(2), pool)
    write_backup(store, "incr_2", at(3), pool)
    pool_before = keys(store, POOL)

    r = mbackup(env, cfg, "forget", "--keep-last", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "forget: kept 1, forgot 2 of 3 backups"
    assert names_left(store) == {"incr_2"}
    assert not full_keys & keys(store)
    assert keys(store, POOL) == pool_before  # forget leaves the pool to prune


@pytest.mark.parametrize(("args", "message"), [
    ([], "error: forget needs a policy, or it would remove every backup: give one or more of --keep-last, "
         "--keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-within, --keep-name"),
    (["--keep-last", "0"], "error: forget needs a policy, or it would remove every backup: give one or more of "
                           "--keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-within, "
                           "--keep-name"),
    (["--keep-daily", "-1"], "error: --keep-daily: expected a number of backups (0 or more), got -1"),
    (["--keep-within", "2x"], "error: --keep-within: invalid duration '2x': use years, months, days and hours as "
                              "restic does, e.g. 2d12h, 36h or 1y6m (m is months)"),
    (["--keep-within", "12h2d"], "error: --keep-within: invalid duration '12h2d': use years, months, days and hours "
                                 "as restic does, e.g. 2d12h, 36h or 1y6m (m is months)"),
    (["--keep-name", "release_*"], "error: the policy keeps none of the 7 backups, so forget would remove them all: "
                                   "check the --keep flags (mbackup forget --dry-run shows each decision), or add "
                                   "--force"),
    (["--keep-name", "release_*", "--dry-run"], "error: the policy keeps none of the 7 backups, so forget would "
                                                "remove them all: check the --keep flags (mbackup forget --dry-run "
                                                "shows each decision), or add --force"),
])
def test_forget_refuses_a_policy_that_is_missing_nonsense_or_keeps_nothing(env, cfg, store, nightly, args, message):
    before = keys(store)
    r = mbackup(env, cfg, "forget", *args)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", message + "\n")
    assert keys(store) == before


def test_forget_force_forgets_every_complete_backup_and_leaves_the_incomplete(env, cfg, store, nightly):
    r = mbackup(env, cfg, "forget", "--keep-name", "release_*", "--force")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "forget: kept 0, forgot 7 of 8 backups; 1 left alone"
    assert names_left(store) == {"running"}


# --- prune --------------------------------------------------------------------------------

@pytest.fixture
def pool_root(store):
    """A root where prune has work: a full backup (no pool), a complete incremental backup
    and a create still running, each referencing two pool objects, and 40 pool objects no one
    references. Returns (referenced pool keys, unreferenced pool keys, the full backup)."""
    full = Sample(store, "full")
    mine = {put_pool(store, f"binlogs/insert_log/1/2/3/3/{f}/{f}", os.urandom(200 + f)) for f in (100, 101)}
    write_backup(store, "incr_1", at(2), {k: store.get(f"{POOL}/{k}") for k in mine})
    theirs = [put_pool(store, f"binlogs/insert_log/1/2/4/4/{f}/{f}", os.urandom(300 + f)) for f in (100, 101)]
    write_incomplete(store, "running", pool_refs=theirs)
    orphans = {put_pool(store, f"binlogs/insert_log/1/2/9/9/{i}/{i}", os.urandom(50 + i)) for i in range(40)}
    return mine | set(theirs), orphans, full


def pool_keys(store) -> set[str]:
    return {k[len(POOL) + 1:] for k in keys(store, POOL)}


def aged(env, lease: float = 1.0) -> dict:
    """An environment whose lock lease (and so the least grace period, twice it) is ``lease``
    seconds; the caller waits longer than that before a prune may delete anything."""
    return dict(env, MBACKUP_LOCK_LEASE=str(lease))


def test_prune_spares_what_is_referenced_or_younger_than_the_grace_period(env, cfg, store, pool_root):
    referenced, orphans, full = pool_root
    before = keys(store)
    # Just written: younger than the default grace period (twice the 120 s lease).
    r = mbackup(env, cfg, "prune")
    assert (r.returncode, r.stdout) == (0, "prune: deleted 0 pool objects (0 B) that no backup references; kept "
                                           "4 referenced, 40 written within the grace period (4m00s)\n"), r.stderr
    assert keys(store) == before

    time.sleep(2.5)
    r = mbackup(aged(env), cfg, "prune", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"dry_run": True, "objects_to_delete": 40, "referenced": 4, "younger_than_grace": 0,
                                    "bytes_to_delete": sum(50 + i for i in range(40)), "grace_seconds": 2.0}
    assert keys(store) == before

    r = mbackup(aged(env), cfg, "prune")
    assert (r.returncode, r.stdout) == (0, "prune: deleted 40 pool objects (2.7 KiB) that no backup references; "
                                           "kept 4 referenced, 0 written within the grace period (2.0s)\n"), r.stderr
    assert pool_keys(store) == referenced
    assert keys(store) == before - {f"{POOL}/{k}" for k in orphans}  # the backups untouched
    assert {f"{full.bdir}/{rel}" for rel in full.objects} <= keys(store)


@pytest.mark.parametrize(("args", "message"), [
    (["--grace", "1s"], "error: --grace: 1s is shorter than twice the lock lease (4m00s), so a create that has not "
                        "yet listed what it references could lose objects: give 4m00s or more"),
    (["--grace", "soon"], "error: --grace: invalid duration 'soon': use a number with s, m, h or d, e.g. 90m or 24h"),
])
def test_prune_refuses_a_grace_period_too_short_or_nonsense(env, cfg, store, pool_root, args, message):
    before = keys(store)
    r = mbackup(env, cfg, "prune", *args)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", message + "\n")
    assert keys(store) == before


def test_prune_refuses_when_a_manifest_it_must_read_is_damaged(env, cfg, store, pool_root):
    store.put(f"{ROOT}/incr_1/meta/mbackup_manifest.json",
              b'{"checksum_algo": "crc32c", "objects": {"a": {"size": 1, "pool": "elsewhere/x"}}}')
    before = keys(store)
    time.sleep(2.5)
    r = mbackup(aged(env), cfg, "prune")
    assert r.returncode == 4 and r.stdout == "", r.stderr
    assert r.stderr.startswith("error: cannot tell which pool objects backup 'incr_1' references: s3://") and \
        r.stderr.endswith("/backup/incr_1/meta/mbackup_manifest.json is damaged (objects.a.pool: expected a key in "
                          "the shared pool, got 'elsewhere/x'); delete or repair that backup, then run prune again "
                          "(nothing was deleted)\n")
    assert keys(store) == before


def test_prune_killed_midway_then_run_again_deletes_exactly_the_unreferenced(env, cfg, s3env, seaweedfs, bucket, store,
                                                                              pool_root, tmp_path):
    referenced, orphans, full = pool_root
    time.sleep(2.5)
    with FaultProxy(seaweedfs.endpoint, seed=3, max_lifetime=120) as proxy:
        via_proxy = tmp_path / "proxy.yaml"
        host, port = proxy.endpoint.removeprefix("http://").split(":")
        via_proxy.write_text(config_yaml(SimpleNamespace(host=host, s3_port=int(port), access_key=seaweedfs.access_key,
                                                         secret_key=seaweedfs.secret_key), bucket))
        # The run is held at its pending-delete record, written just before its deletes: the
        # deletes are stalled from there on (the lock's probe deletes its object with a POST too).
        proxy.stall(600, count=1, methods="PUT", paths=PENDING, then="pass")
        run = start(aged(s3env), "prune", "--config", str(via_proxy))
        deadline = time.monotonic() + 60
        while not proxy.stats.get("stalled", 0):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        # Half the deletes (each an S3 DeleteObjects POST) hang: the run is killed among them.
        proxy.stall(600, fraction=0.5, methods="POST")  # closed unanswered, never sent on
        proxy.release()
        # Killed once some deletes are held by the proxy and some went through: how many
        # requests it took to get there depends on which ones stalled, so it is not counted.
        while not (proxy.stats["stalled"] > 1 and len(pool_keys(store) & orphans) < len(orphans)):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        # While the first holds the lock: a second prune, and its dry run, are refused.
        second = [mbackup(aged(env), str(via_proxy), "prune", *dry) for dry in ([], ["--dry-run"])]
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=30)
    for refused in second:
        assert (refused.returncode, refused.stdout) == (LockedError.exit_code, "")
        assert refused.stderr.startswith(f"error: another mbackup is working on the shared pool (pid {run.pid} ") \
            and refused.stderr.count("\n") == 1, refused.stderr
    left = pool_keys(store)
    assert referenced <= left and {f"{full.bdir}/{rel}" for rel in full.objects} <= keys(store)
    assert 0 < len(left & orphans) < len(orphans)  # killed midway
    assert PENDING in left  # the dead run's record, which holds no create up: its lock is not held

    again = mbackup(aged(env), cfg, "prune")  # the dead run's lock is taken over
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"prune: deleted {len(left & orphans)} pool objects "), again.stdout
    assert pool_keys(store) == referenced  # its record and lock gone too
    for kept in ("full", "incr_1"):
        r = mbackup(env, cfg, "verify", "-n", kept, "--deep")
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("record", "prune_running", "waits"), [
    (None, True, False),  # no prune deleting
    ({"keys": [".mbackup-pool/binlogs/insert_log/9/9/9/9/0/0~1~crc32c-00"]}, True, False),  # deleting others
    ({"keys": ["SHARED"]}, False, False),  # left by a prune that died: it deletes nothing any more
    ({"keys": ["SHARED"]}, True, True),
    (b"{damaged", True, True),  # what it deletes is unknown
])
def test_a_create_waits_for_a_live_prune_about_to_delete_what_it_shares_and_no_longer(cfg, store, tmp_path, record,
                                                                                       prune_running, waits):
    stores = open_stores(load_config(cfg, env={}, cwd=tmp_path))
    shared = put_pool(store, "binlogs/insert_log/1/2/3/3/100/100", b"shared")
    if record is not None:
        body = record if isinstance(record, bytes) else json.dumps(record).replace("SHARED", f".mbackup-pool/{shared}")
        store.put(f"{POOL}/{PENDING}", body if isinstance(body, bytes) else body.encode())
    prune = StoreLock(stores.backup, f"{POOL}/{PRUNE_LOCK}", "the shared pool", command="prune")
    create = StoreLock(stores.backup, f"{ROOT}/c/lock", "backup 'c'", lease=1.0)  # waits at most its lease
    said: list[str] = []
    started = time.monotonic()
    if prune_running:
        prune.acquire()
    try:
        if waits:
            with pytest.raises(PruneRunning) as refused:
                wait_for_pending_deletes(stores, {f".mbackup-pool/{shared}"}, create, said.append)
            assert refused.value.exit_code == 3 and str(refused.value) == (
                "a prune is deleting 1 pool objects this backup shares, and still was after 1.0s: run the same create "
                "again once the prune is done (the backup is incomplete until then)")
            assert said == ["waiting for a prune that is deleting 1 pool objects this backup shares: they are copied "
                            "again once it is done"]
            assert time.monotonic() - started >= 1.0
        else:
            wait_for_pending_deletes(stores, {f".mbackup-pool/{shared}"}, create, said.append)
            assert said == []
    finally:
        if prune_running:
            prune.release()


def test_a_waiting_create_goes_on_once_the_prune_is_done(cfg, store, tmp_path):
    stores = open_stores(load_config(cfg, env={}, cwd=tmp_path))
    shared = f".mbackup-pool/{put_pool(store, 'binlogs/insert_log/1/2/3/3/100/100', b'shared')}"
    store.put(f"{POOL}/{PENDING}", json.dumps({"keys": [shared]}).encode())
    said: list[str] = []
    with StoreLock(stores.backup, f"{POOL}/{PRUNE_LOCK}", "the shared pool", command="prune"):
        done = threading.Timer(1.0, lambda: store.delete(f"{POOL}/{PENDING}"))  # the prune's batch is deleted
        done.start()
        wait_for_pending_deletes(stores, {shared}, StoreLock(stores.backup, f"{ROOT}/c/lock", "backup 'c'"), said.append)
        done.join()
    assert len(said) == 1


def test_forget_prune_deletes_the_pool_objects_only_the_forgotten_backups_held(env, cfg, store, pool_root):
    referenced, _, _ = pool_root
    incr_1 = {k for k in referenced if "/3/3/" in k}
    shared = sorted(incr_1)[0]
    write_backup(store, "incr_2", at(3), {shared: store.get(f"{POOL}/{shared}")})
    time.sleep(2.5)
    planned = mbackup(aged(env), cfg, "forget", "--keep-name", "full", "--keep-name", "incr_2", "--prune", "--dry-run")
    assert planned.stdout.splitlines()[-2:] == [
        "forget: would keep 2, would forget 1 of 4 backups; 1 left alone",
        "would delete 41 pool objects (3.0 KiB) that no backup references; keep 3 referenced, 0 written within "
        "the grace period (2.0s)"], planned.stderr
    r = mbackup(aged(env), cfg, "forget", "--keep-name", "full", "--keep-name", "incr_2", "--prune")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == [
        "forget: kept 2, forgot 1 of 4 backups; 1 left alone",
        "prune: deleted 41 pool objects (3.0 KiB) that no backup references; kept 3 referenced, 0 written within "
        "the grace period (2.0s)"]
    assert names_left(store) == {"full", "incr_2", "running"}
    assert pool_keys(store) == referenced - incr_1 | {shared}  # the running create's, and what incr_2 shares


# --- list: own and shared bytes -----------------------------------------------------------

def test_list_shows_what_each_backup_shares_and_holds_alone(env, cfg, store):
    full = Sample(store, "full")
    a, b, c = (put_pool(store, f"binlogs/insert_log/1/2/3/3/{f}/{f}", os.urandom(size))
               for f, size in ((100, 1000), (101, 3000), (102, 5000)))
    write_backup(store, "incr_1", at(2), {k: store.get(f"{POOL}/{k}") for k in (a, b)})
    write_backup(store, "incr_2", at(3), {k: store.get(f"{POOL}/{k}") for k in (b, c)})
    write_incomplete(store, "running", pool_refs=[c])

    r = mbackup(env, cfg, "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: (row["own_bytes"], row["shared_bytes"]) for row in json.loads(r.stdout)}
    assert rows == {"full": (sum(len(full.objects[k]) for k in full.binlogs), 0),  # a full backup shares nothing
                    "incr_1": (1000, 3000), "incr_2": (5000, 3000), "running": (None, None)}

    text = mbackup(env, cfg, "list").stdout.splitlines()
    assert text[1].split() == ["NAME", "TIME", "SIZE", "SHARED", "STATE", "MILVUS", "COLLECTIONS"]
    assert [line.split()[0] for line in text[2:]] == ["full", "incr_2", "incr_1", "running"]  # not the pool
    assert text[3].split()[:9] == ["incr_2", "2025-01-03", "02:00:00", "UTC", "7.8", "KiB", "2.9", "KiB", "complete"]
    assert max(len(line) for line in text) <= 100, text
