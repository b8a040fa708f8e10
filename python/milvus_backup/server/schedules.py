"""Backups on a timetable: ``server.schedules`` in the config, run by ``mbackup server``.

Each schedule is a cron expression (five fields, or six with croniter's seconds field last,
read in ``timezone``, UTC by default: 02:00 in Europe/Paris follows the clock changes), the
collections (``filter``, as ``create --filter``) and a ``backupName`` template. A
slot's backup is a create job like any other (jobs.py): kept in the root, resumed by the next
server if this one stops, shown by get_backup. Its job id is the schedule's name and the
slot's time, so a slot is run at most once whoever fires it: two servers on one root, or a
server restarted. Each schedule's last slot fired is kept in the root too
(``.mbackup-jobs/schedules/<name>.state``), so a restarted server neither runs it again nor
forgets the slots that passed while no server was up.

With ``incremental: true`` each slot's create is ``create --incremental``: its base is the
newest complete backup of the same collections, as the CLI picks it (the first slot, with no
base, copies everything, and says so in the log). With a retention policy (``keepLast``,
``keepHourly``, ``keepDaily``, ``keepWeekly``, ``keepMonthly``, ``keepWithin``, ``keepName``:
``mbackup forget``'s flags, backup/retention.py's decision) each slot whose backup succeeded
then forgets the schedule's own backups (names its ``backupName`` template gives, never other
backups of the root) the policy does not keep, and with ``prune: true`` prunes the pool. A
retention failure is logged and counted in ``mbackup_schedule_retention_failures_total``; the
backup stands.

A missed slot is one that passed with no server to fire it on time (seen more than
``LATE`` seconds after it), or one a later slot overtook before it ran. Each is counted in
``mbackup_schedule_missed_total{schedule}`` and logged. Of the slots that are due at once,
the latest is run, once, however late; the earlier ones are not: a backup holds the data as
it is when it runs, not as it was at its slot, so running each missed slot would make that
many copies of one state at that many times the load, while running none would leave the
gap open until the next slot (a day, for a nightly schedule).

croniter (in the ``server`` extra): the cron parser of Airflow and Celery's ecosystems, kept
by the Pallets community; it reads the cron dialect operators write (ranges, steps, names,
``L``, ``#``), iterates slots in a time zone, and takes a seconds field, which a test needs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import itertools
import json
import logging
import re
import string
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backup.create import CreateRequest
from ..backup.lock import LockedError
from ..backup.retention import FORGET, KEEP, Policy, Within, backups_of, decide
from ..errors import ConfigError, MBackupError
from ..storage.location import NotFound, StorageError
from .jobs import SUCCESS, Job, JobExists, Runner

log = logging.getLogger(__name__)

LATE = 60.0  # seconds after its time a slot is fired late, and counted missed
TICK = 1.0  # seconds between looks at the clock
_MOST_DUE = 100_000  # slots counted at most in one look (a per-second schedule down for days)
_NAME_CHARS = "letters, digits, '_' and '-'"
# backupName placeholders: the slot's time (in the schedule's time zone) and the schedule's name.
PLACEHOLDERS = {"date": "%Y%m%d", "time": "%H%M%S", "datetime": "%Y%m%d_%H%M%S"}
PLACEHOLDER_PATTERNS = {"date": r"\d{8}", "time": r"\d{6}", "datetime": r"\d{8}_\d{6}"}
KEYS = ("name", "cron", "timezone", "filter", "backupName", "incremental", "prune")
# The retention policy: forget's --keep-* flags, by the Policy field each sets.
RETENTION_KEYS = {"keepLast": "last", "keepHourly": "hourly", "keepDaily": "daily", "keepWeekly": "weekly",
                  "keepMonthly": "monthly", "keepWithin": "within", "keepName": "names"}


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    filters: tuple[str, ...]
    backup_name: str  # the template
    timezone: str = "UTC"  # an IANA name
    incremental: bool = False
    policy: Policy | None = None  # retention: None keeps every backup
    prune: bool = False  # after forget, delete the pool objects no backup references

    def backup_for(self, slot: dt.datetime) -> str:
        times = {k: slot.strftime(fmt) for k, fmt in PLACEHOLDERS.items()}
        return self.backup_name.format(schedule=self.name, **times)

    def made(self, backup: str) -> bool:
        """Is ``backup`` a name this schedule's template gives (one of its backups)?"""
        parts = []
        for literal, field_name, _, _ in string.Formatter().parse(self.backup_name):
            parts.append(re.escape(literal))
            if field_name is not None:
                parts.append(re.escape(self.name) if field_name == "schedule" else PLACEHOLDER_PATTERNS[field_name])
        return re.fullmatch("".join(parts), backup) is not None

    def job_id(self, slot: dt.datetime) -> str:
        """In UTC: a slot's id is the same whatever the zone, and one per instant (the hour
        a clock change repeats holds two)."""
        return f"schedule_{self.name}_{slot.astimezone(dt.timezone.utc):%Y%m%d%H%M%S}"

    def slots(self, after: dt.datetime) -> Any:
        """An iterator of the slots after ``after`` (croniter), in the schedule's zone."""
        from croniter import croniter

        return croniter(self.cron, after.astimezone(zoneinfo.ZoneInfo(self.timezone)), ret_type=dt.datetime)


def parse(raw: list[Any], where: str = "") -> list[Schedule]:
    """``server.schedules`` as written, checked: ConfigError with one line per problem."""
    problems: list[str] = []
    out: list[Schedule] = []
    note = f" ({where})" if where else ""
    for i, entry in enumerate(raw):
        at = f"server.schedules[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: expected a mapping such as {{name: nightly, cron: '0 2 * * *', "
                            f"backupName: 'nightly_{{date}}'}}, got {entry!r}{note}")
            continue
        given = {str(k).lower(): (str(k), v) for k, v in entry.items()}
        name = given.get("name", ("name", None))[1]
        if isinstance(name, str) and name:
            at += f" ({name})"
        schedule = _parse_one(at, given, problems, note)
        if schedule is not None:
            if any(s.name == schedule.name for s in out):
                problems.append(f"{at}.name: {schedule.name!r} names another schedule too: give each its own{note}")
            out.append(schedule)
    if problems:
        raise ConfigError("\n".join(problems), problems)
    return out


def _parse_one(at: str, given: dict[str, tuple[str, Any]], problems: list[str], note: str) -> Schedule | None:
    before = len(problems)
    meant: set[str] = set()  # keys a misspelling was taken for: not said missing as well

    def bad(key: str, why: str) -> None:
        if key not in meant or key in value:
            problems.append(f"{at}.{key}: {why}{note}")

    known = {k.lower(): k for k in (*KEYS, *RETENTION_KEYS)}
    value = {known[low]: v for low, (_, v) in given.items() if low in known}
    for low, (key, _) in given.items():
        if low not in known:
            close = difflib.get_close_matches(low, list(known), n=1, cutoff=0.75)
            meant.update(known[c] for c in close)
            bad(key, f"unknown key; {'did you mean ' + known[close[0]] + '?' if close else 'use ' + ', '.join(known.values())}")
    for key in ("incremental", "prune"):
        if not isinstance(value.get(key, False), bool):
            bad(key, f"expected true or false, got {value[key]!r}")
    policy = _policy(value, bad)
    name = value.get("name")
    if not isinstance(name, str) or not name or not all(c.isascii() and (c.isalnum() or c in "_-") for c in name):
        bad("name", f"expected a name of {_NAME_CHARS} (it names the schedule's metrics and jobs), got {name!r}")
    cron = value.get("cron")
    why = _cron_problem(cron)
    if why:
        bad("cron", f"{why}; write five fields, minute hour day month weekday, e.g. '0 2 * * *' for 02:00 every "
                    "day")
    zone = value.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        bad("timezone", f"unknown time zone {zone!r}: use an IANA name such as UTC or Europe/Paris (a system "
                        "without time zone data needs pip install tzdata)")
    raw_filter = value.get("filter", [])
    if isinstance(raw_filter, str):
        raw_filter = [raw_filter]
    if not isinstance(raw_filter, list) or not all(isinstance(f, str) for f in raw_filter):
        bad("filter", f"expected collections as create --filter takes them, e.g. [default.products, analytics.*], "
                      f"got {raw_filter!r}")
        raw_filter = []
    template = value.get("backupName")
    if not isinstance(template, str) or not template:
        bad("backupName", "required: the backups' name, with the slot's time in it, e.g. nightly_{date} "
                          f"(placeholders: {', '.join('{' + p + '}' for p in (*PLACEHOLDERS, 'schedule'))})")
    if len(problems) > before:
        return None
    assert isinstance(name, str) and isinstance(cron, str) and isinstance(template, str) and isinstance(zone, str)
    schedule = Schedule(name, cron, tuple(raw_filter), template, zone, value.get("incremental", False), policy,
                        value.get("prune", False))
    _check_template(schedule, lambda why: bad("backupName", why))
    if len(problems) == before:
        try:
            CreateRequest(name=schedule.backup_for(dt.datetime.now(dt.timezone.utc)), filters=list(raw_filter)).validate()
        except MBackupError as e:
            bad("filter" if "filter" in str(e) else "backupName", str(e))
    return schedule if len(problems) == before else None


def _policy(value: dict[str, Any], bad: Callable[[str, str], None]) -> Policy | None:
    """The retention policy the keep* keys give (None: no key given), as forget's flags give
    one; refused when it keeps no backup (each run would forget all the schedule's backups)."""
    given = [k for k in RETENTION_KEYS if k in value]
    if not given:
        if value.get("prune") is True:
            bad("prune", "prune: true deletes what forget leaves unreferenced: give a retention policy too "
                         f"({', '.join(RETENTION_KEYS)}), or prune from mbackup prune")
        return None
    fields: dict[str, Any] = {}
    for key in given:
        raw = value[key]
        if key == "keepWithin":
            try:
                fields["within"] = Within.parse(raw if isinstance(raw, str) else str(raw))
            except ValueError as e:
                bad(key, str(e))
        elif key == "keepName":
            globs = [raw] if isinstance(raw, str) else raw
            if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g for g in globs):
                bad(key, f"expected backup name globs, e.g. [nightly_*01_*], got {raw!r}")
            else:
                fields["names"] = tuple(globs)
        elif isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            bad(key, f"expected a number of backups (0 or more), got {raw!r}")
        else:
            fields[RETENTION_KEYS[key]] = raw
    policy = Policy(**fields)
    if policy.empty and len(fields) == len(given):
        bad(given[0], f"the retention policy ({', '.join(f'{k}: {value[k]!r}' for k in given)}) keeps no backup, so "
                      "each run would forget every backup of the schedule: keep 1 or more, or leave the keep* keys "
                      "out")
    return policy


def _cron_problem(cron: Any) -> str:
    """What is wrong with a cron expression ("" when nothing is): croniter's reason, or that
    it names no time that exists (30 February)."""
    from croniter import CroniterError, croniter

    if not isinstance(cron, str):
        return f"expected a cron expression, got {cron!r}"
    try:
        croniter(cron, dt.datetime.now(dt.timezone.utc)).get_next()
    except CroniterError as e:
        reason = str(e).replace(f"[{cron}] ", "")
        return f"{cron!r} is not a cron expression that fires ({reason.rstrip('.')})"
    return ""


def _check_template(schedule: Schedule, bad: Callable[[str], None]) -> None:
    """Refuse a template that is not one, and one that names two slots alike (the second
    create would find the name taken), looking at the next slots."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(schedule.backup_name) if f is not None}
    except ValueError as e:
        bad(f"{schedule.backup_name!r} is not a name template ({e}): write placeholders as {{date}}")
        return
    unknown = fields - {*PLACEHOLDERS, "schedule"}
    if unknown:
        bad(f"unknown placeholder {{{sorted(unknown)[0]}}}: use {', '.join('{' + p + '}' for p in PLACEHOLDERS)} "
            "or {schedule}")
        return
    it = schedule.slots(dt.datetime.now(dt.timezone.utc))
    slots = [it.get_next() for _ in range(50)]
    for a, b in itertools.pairwise(slots):
        if schedule.backup_for(a) == schedule.backup_for(b):
            bad(f"{schedule.backup_name!r} names the runs of {a:%Y-%m-%d %H:%M:%S} and {b:%H:%M:%S} {b:%Z} alike, and "
                "the second would find the name taken: add {time} (or use {datetime})")
            return


class ScheduleState:
    """Each schedule's last slot fired, as an object in the root:
    ``.mbackup-jobs/schedules/<name>.state``, JSON (not ``.json``: the jobs' listing skips it)."""

    def __init__(self, runner: Runner) -> None:
        self.location = runner.store.stores.backup
        self.prefix = f"{runner.store.prefix}/schedules"

    def load(self, name: str) -> dt.datetime | None:
        try:
            data = json.loads(self.location.read(f"{self.prefix}/{name}.state"))
            return dt.datetime.fromtimestamp(float(data["last_slot"]), dt.timezone.utc)
        except NotFound:
            return None
        except (ValueError, TypeError, KeyError) as e:
            log.warning("schedule %s: its state %s/%s.state is damaged (%s): counting from now", name, self.prefix,
                        name, e)
            return None

    def save(self, name: str, slot: dt.datetime, job: str) -> None:
        body = {"schedule": name, "last_slot": slot.timestamp(), "job": job}
        self.location.write(f"{self.prefix}/{name}.state", json.dumps(body).encode())


class Scheduler:
    """Fires each schedule's slots as create jobs of ``runner``, from a thread of its own."""

    def __init__(self, schedules: list[Schedule], runner: Runner, registry: Any, *, pause_gc: bool,
                 clock: Callable[[], float] = time.time) -> None:
        from prometheus_client import Counter, Gauge

        self.schedules, self.runner, self.pause_gc, self.clock = schedules, runner, pause_gc, clock
        self.state = ScheduleState(runner)
        self.missed = Counter("mbackup_schedule_missed", "Slots of a schedule that passed without a run on time",
                              ["schedule"], registry=registry)
        self.fired = Counter("mbackup_schedule_runs", "Slots of a schedule this server started a backup for",
                             ["schedule"], registry=registry)
        self.next_slot = Gauge("mbackup_schedule_next_timestamp_seconds", "When a schedule's next slot is",
                               ["schedule"], registry=registry)
        self.retention_failures = Counter("mbackup_schedule_retention_failures",
                                          "Forgets and prunes after a schedule's backup that failed",
                                          ["schedule"], registry=registry)
        self._retaining: list[threading.Thread] = []
        self._last: dict[str, dt.datetime] = {}
        self._stop = threading.Event()

    def start(self) -> None:
        now = self._now()
        if self.schedules:
            self.runner.store.stores.backup.ensure_bucket()  # the state goes there; a create would make it
        for s in self.schedules:
            self.missed.labels(s.name)
            self.fired.labels(s.name)
            self.retention_failures.labels(s.name)
            last = self.state.load(s.name)
            if last is None:  # a new schedule: its first slot is the next one, nothing before
                self.state.save(s.name, now, "")
                last = now
            self._last[s.name] = last
            self.next_slot.labels(s.name).set(s.slots(last).get_next().timestamp())
        if self.schedules:
            log.info("schedules: %s", ", ".join(f"{s.name} ({s.cron})" for s in self.schedules))
            threading.Thread(target=self._loop, name="mbackup-schedules", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def settle(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds each) for the backups fired and the retention after them."""
        for thread in list(self._retaining):
            thread.join(timeout)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)

    def _loop(self) -> None:
        while True:
            for s in self.schedules:
                try:
                    self.tick(s)
                except (MBackupError, StorageError) as e:  # the store may come back: look again next tick
                    log.warning("schedule %s: %s", s.name, e)
            if self._stop.wait(TICK):
                return

    def tick(self, s: Schedule) -> None:
        """Fire ``s``'s slot if one is due: the latest due, once; report the missed ones."""
        now = self._now()
        if s.slots(self._last[s.name]).get_next() > now:
            return
        last = max(self._last[s.name], self.state.load(s.name) or self._last[s.name])  # another server's, maybe
        due: list[dt.datetime] = []
        it = s.slots(last)
        while len(due) < _MOST_DUE:
            slot = it.get_next()
            if slot > now:
                break
            due.append(slot)
        if not due:
            self._last[s.name] = last
            return
        latest = due[-1]
        job = s.job_id(latest)
        if self._fire(s, latest, job):
            missed = due[:-1] + ([latest] if (now - latest).total_seconds() > LATE else [])
            if missed:
                self.missed.labels(s.name).inc(len(missed))
                log.warning("schedule %s: %d slot(s) missed (from %s to %s: no server ran them on time); "
                            "the latest is run now, once", s.name, len(missed), f"{missed[0]:%Y-%m-%d %H:%M:%S}",
                            f"{missed[-1]:%Y-%m-%d %H:%M:%S %Z}")
        self.state.save(s.name, latest, job)
        self._last[s.name] = latest
        self.next_slot.labels(s.name).set(s.slots(latest).get_next().timestamp())

    def _fire(self, s: Schedule, slot: dt.datetime, job_id: str) -> bool:
        """Start the slot's backup; False when another server (or an earlier run of this one)
        started it already."""
        name = s.backup_for(slot)
        create = CreateRequest(name=name, filters=list(s.filters), pause_gc=self.pause_gc, incremental=s.incremental)
        stores = self.runner.store.stores
        job = Job(id=job_id, kind="create", name=name, request=dataclasses.asdict(create), root=stores.backup_root)
        stores.backup.ensure_bucket()
        try:
            running = self.runner.submit(job)
        except (JobExists, LockedError):
            log.info("schedule %s: the slot of %s was fired already (job %s)", s.name, f"{slot:%Y-%m-%d %H:%M:%S %Z}",
                     job_id)
            return False
        self.fired.labels(s.name).inc()
        log.info("schedule %s: slot of %s: backup %s started (job %s)", s.name, f"{slot:%Y-%m-%d %H:%M:%S %Z}",
                 name, job_id)
        # Retention waits for the backup (it may be the one that should be kept); a backup a
        # restarted server resumes is retained after the schedule's next one.
        follower = threading.Thread(target=self._after, args=(s, job, running), name=f"mbackup-retention-{s.name}",
                                    daemon=True)
        self._retaining = [t for t in self._retaining if t.is_alive()] + [follower]
        follower.start()
        return True

    def _after(self, s: Schedule, job: Job, running: threading.Thread) -> None:
        running.join()
        if job.state_code != SUCCESS or s.policy is None:
            return
        try:
            self.retain(s)
        except Exception as e:  # the backup stands whatever happens here
            self.retention_failures.labels(s.name).inc()
            if isinstance(e, (MBackupError, StorageError)):
                log.error("schedule %s: retention after backup %s failed (the backup stands): %s", s.name, job.name, e)
            else:
                log.exception("schedule %s: retention after backup %s failed (the backup stands)", s.name, job.name)

    def retain(self, s: Schedule) -> None:
        """Forget the schedule's backups (only its own) its policy does not keep, as ``mbackup
        forget`` decides, counted in the schedule's time zone; then prune when asked."""
        from ..backup.catalog import BackupNotFound, list_backups
        from ..backup.delete import delete_backup
        from ..backup.prune import min_grace, prune

        assert s.policy is not None
        stores = self.runner.store.stores
        own = [e for e in list_backups(stores) if s.made(e.name)]
        decisions = decide(backups_of(own), s.policy, zoneinfo.ZoneInfo(s.timezone))
        kept = [d.backup.name for d in decisions if d.action == KEEP]
        doomed = [d.backup.name for d in decisions if d.action == FORGET]
        if doomed and not kept:
            raise MBackupError(f"the policy keeps none of the schedule's {len(doomed)} backups: none forgotten "
                               "(mbackup forget --dry-run with the same keep flags shows why)")
        failed = []
        for name in doomed:
            try:
                delete_backup(stores, name)
            except BackupNotFound:
                pass  # gone meanwhile: forgotten all the same
            except MBackupError as e:
                failed.append(f"{name}: {e}")
        log.info("schedule %s: forget kept %d (%s), forgot %d of %d backups", s.name, len(kept), ", ".join(kept),
                 len(doomed) - len(failed), len(decisions))
        if s.prune:
            log.info("schedule %s: %s", s.name, prune(stores, min_grace(stores)).line())
        if failed:
            raise MBackupError(f"{len(failed)} backups could not be forgotten (first: {failed[0]}); the next slot "
                               "tries again")
