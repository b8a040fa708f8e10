"""Create and restore jobs of the server, kept in the backup root rather than in memory.

The Go tool keeps its tasks in process memory: a restarted server forgets them (its #742).
Here each job is one JSON object, ``<root>/.mbackup-jobs/<id>.json`` (a name no backup can
have, so ``list`` and ``gc`` never take it for one), written when the job starts, every
``SAVE_EVERY`` seconds while it runs and when it ends. Whoever runs a job holds its lock
(``<id>.lock``, backup/lock.py), so of two servers on one root only one runs it; a server
that finds a job unfinished and its lock free (the server running it died) runs it again.
Running again is resuming: create and restore pick up where an interrupted run stopped when
given the same request, which the job records.

A cancelled job stops as Ctrl-C stops a command (its engine work at the next object, the flow
at its next step) and is left failed, ``cancelled`` and resumable; a server asks another one
to cancel a job it runs through ``<id>.cancel``, which that server reads as it saves the job.

Progress is computed as the Go tool computes it (internal/taskmgr), from the steps and
counters the flows report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..backup.catalog import IN_PROGRESS, JOBS_DIR, Stores, backup_dir
from ..backup.lock import LockedError, StoreLock
from ..errors import MBackupError
from ..format import meta
from ..storage.location import NotFound, StorageError
from ..transfer.cancel import Interrupted, cancel_on
from ..transfer.progress import Counters, Reporter
from .metrics import Metrics

log = logging.getLogger(__name__)

SAVE_EVERY = 2.0  # seconds between saves of a running job's progress

# The Go tool's state codes (BackupTaskStateCode and RestoreTaskStateCode share them).
INITIAL, EXECUTING, SUCCESS, FAIL, TIMEOUT = 0, 1, 2, 3, 4
UNFINISHED = (INITIAL, EXECUTING)
CANCELLED = "cancelled: stopped on request; the same request run again resumes it"
STATE_NAMES = {INITIAL: "initial", EXECUTING: "executing", SUCCESS: "success", FAIL: "fail", TIMEOUT: "timeout"}

# Each create step's collection progress (the Go tool's backupCollTask: DDL 5, DDL done 10,
# DML prepare 15, then 15-100 with the bytes copied, 100 when the data is done).
_CREATE_STEP = {"metadata": 5, "flush": 10, "export": 15, "discover": 15, "meta": 100}


@dataclass
class CollectionTask:
    """A restore's target collection, as get_restore shows it."""

    id: str
    target_db_name: str
    target_collection_name: str
    size: int = 0
    state_code: int = INITIAL
    progress: int = 0  # percent of its import jobs done, as reported
    start_time: int = 0
    end_time: int = 0
    error: str = ""

    @property
    def label(self) -> str:
        return f"{self.target_db_name}.{self.target_collection_name}"


@dataclass
class Job:
    id: str
    kind: str  # create | restore | restore_secondary
    name: str  # the backup's
    request: dict[str, Any]  # the flow's request, as re-run on resume
    root: str  # the backup root it runs against
    state_code: int = INITIAL
    error: str = ""
    start_time: int = field(default_factory=lambda: int(time.time()))
    end_time: int = 0
    phase: str = ""  # the flow's step under way
    bytes_done: int = 0
    bytes_total: int = 0
    objects_done: int = 0
    backup_id: str = ""  # create: the id of the backup it makes, once known
    runs: int = 0  # how many times a server started it (2 and more: resumed)
    exit_code: int = 0  # failed: what its error means (errors.py); 0 for a bug
    cancelled: bool = False  # failed because it was asked to stop
    collections: list[CollectionTask] = field(default_factory=list)

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state_code]

    def progress(self) -> int:
        """The Go tool's progress (internal/taskmgr: BackupTask.Progress, RestoreTask.Progress)."""
        if self.kind in ("restore", "restore_secondary"):
            if self.state_code == SUCCESS:
                return 100
            total = sum(c.size for c in self.collections)
            done = sum(c.size * (100 if c.state_code == SUCCESS else c.progress) // 100 for c in self.collections)
            return max(1, int(done / total * 100)) if total else 1
        if self.state_code == SUCCESS:
            return 100
        if self.state_code == FAIL:
            return 0
        if self.state_code == INITIAL or not self.phase or self.phase == "connect":
            return 1 if self.state_code == INITIAL else 5
        if self.phase == "copy":
            coll = 15 + int(self.bytes_done / self.bytes_total * 100 * 0.85) if self.bytes_total else 15
        else:
            coll = _CREATE_STEP.get(self.phase, 5)
        return int(coll * 0.95) + 5

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "progress": self.progress()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        fields = {f.name for f in dataclasses.fields(cls)}
        job = cls(**{k: v for k, v in data.items() if k in fields and k != "collections"})
        job.collections = [CollectionTask(**c) for c in data.get("collections", [])]
        return job


class JobReporter(Reporter):
    """What a flow reports, kept on its job: the step under way, the bytes copied, each
    restore target's import progress."""

    def __init__(self, job: Job, metrics: Metrics, cancel: threading.Event | None = None) -> None:
        self.job, self.metrics, self.cancel = job, metrics, cancel
        self._counters: Counters | None = None
        self.on_step: Callable[[str], None] | None = None  # called as each step starts

    @contextlib.contextmanager
    def step(self, name: str, counters: Counters | None = None, **context: str | None) -> Iterator[None]:
        self.check_cancel()
        target = self._collection(context.get("collection"))
        if target is not None and target.state_code == INITIAL:
            target.state_code, target.start_time = EXECUTING, int(time.time())
        # The flow's steps, not the outer ones (the inner say more) nor the engine's copies
        # inside them (phase(): they come with counters).
        if name not in ("create", "restore", "restore secondary") and counters is None:
            self.job.phase = name
        if self.on_step is not None:
            self.on_step(name)
        started = time.monotonic()
        with super().step(name, counters, **context):
            yield
        self.metrics.phase_seconds(self.job.kind, name, time.monotonic() - started)

    def phase(self, label: str, counters: Counters) -> contextlib.AbstractContextManager[object]:
        self._counters = counters
        return super().phase(label, counters)

    def imports(self, label: str, done: int, total: int, percent: float) -> None:
        super().imports(label, done, total, percent)
        self.check_cancel()
        target = self._collection(label)
        if target is not None:
            target.progress = int(percent)

    def check_cancel(self) -> None:
        """Stop the flow here, as Ctrl-C would, once the job is asked to stop."""
        if self.cancel is not None and self.cancel.is_set():
            raise Interrupted(CANCELLED)

    def sample(self) -> None:
        """Read the engine's counters into the job (the saver thread calls it)."""
        if self._counters is None:
            return
        c = self._counters()
        self.job.bytes_done, self.job.bytes_total = c.get("bytes_done", 0), c.get("bytes_total", 0)
        self.job.objects_done = c.get("objects_done", 0)

    def _collection(self, label: str | None) -> CollectionTask | None:
        return next((c for c in self.job.collections if c.label == label), None) if label else None


class JobStore:
    """Jobs as objects under ``<backup root>/.mbackup-jobs/``."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.prefix = f"{stores.backup_root}/{JOBS_DIR}".lstrip("/")

    def key(self, job_id: str) -> str:
        return f"{self.prefix}/{job_id}.json"

    def save(self, job: Job) -> None:
        self.stores.backup.write(self.key(job.id), json.dumps(job.to_json()).encode())

    def exists(self, job_id: str) -> bool:
        return self.stores.backup.head(self.key(job_id)) is not None

    def load(self, job_id: str) -> Job | None:
        if not meta.BACKUP_ID.pattern.fullmatch(job_id):  # an id comes from a request: no path tricks
            return None
        try:
            data = self.stores.backup.read(self.key(job_id))
        except NotFound:
            return None
        try:
            return Job.from_json(json.loads(data))
        except (ValueError, TypeError, AttributeError) as e:  # not a job this server wrote: never run it
            log.warning("job %s: %s is damaged (%s): left alone", job_id, self.key(job_id), e)
            return None

    def all(self) -> list[Job]:
        out = []
        try:
            objects = self.stores.backup.list(self.prefix + "/")
        except NotFound:
            return []
        for obj in objects:
            if obj.key.endswith(".json"):
                job = self.load(obj.key.rsplit("/", 1)[-1].removesuffix(".json"))
                if job is not None:
                    out.append(job)
        return out

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}/{job_id}.cancel"

    def cancel_requested(self, job_id: str) -> bool:
        return self.stores.backup.exists(self.cancel_key(job_id))

    def lock(self, job_id: str) -> StoreLock:
        return StoreLock(self.stores.backup, f"{self.prefix}/{job_id}.lock", f"job {job_id!r}", command="server",
                         warn=lambda m: log.warning(m))


Flow = Callable[[Job, JobReporter], None]


class JobExists(MBackupError):
    """A job of that id was saved already (by this server or another)."""


class Runner:
    """Runs jobs, each in a thread of its own under its job lock, and saves them as they go."""

    def __init__(self, store: JobStore, flows: dict[str, Flow], metrics: Metrics) -> None:
        self.store, self.flows, self.metrics = store, flows, metrics
        self._running: dict[str, threading.Thread] = {}
        self._live: dict[str, tuple[Job, JobReporter]] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()

    def submit(self, job: Job) -> threading.Thread:
        """Save ``job`` and start it; the caller may join the thread (a synchronous request).
        JobExists when a job of that id is saved already, looked for under its lock: another
        server may have run it, and released the lock, since the caller last looked."""
        lock = self.store.lock(job.id).acquire()
        try:
            if self.store.exists(job.id):
                raise JobExists(f"a job with id {job.id!r} exists already: use another id")
        except BaseException:
            lock.release()
            raise
        self.store.save(job)
        return self._start(job, lock)

    def running_here(self, job_id: str) -> bool:
        with self._mutex:
            return job_id in self._running

    def load(self, job_id: str) -> Job | None:
        """A job as it is now: live when it runs here, else as last saved."""
        with self._mutex:
            live = self._live.get(job_id)
        if live is not None:
            live[1].sample()
            return live[0]
        return self.store.load(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop; the job as it is now (None: no such job; ended: nothing done). One
        this server runs stops at its next object or step; one another server runs, when that
        server next saves it; one no server runs (its server died) is cancelled here and now."""
        job = self.load(job_id)
        if job is None or job.state_code not in UNFINISHED:
            return job
        with self._mutex:
            here = self._cancels.get(job_id)
        if here is not None:
            here.set()
            return job
        self.store.stores.backup.write(self.store.cancel_key(job_id), b"")
        try:
            lock = self.store.lock(job_id).acquire()
        except LockedError:
            return job  # its server reads the request when it next saves the job
        try:
            fresh = self.store.load(job_id)
            if fresh is not None and fresh.state_code in UNFINISHED:
                fresh.state_code, fresh.cancelled, fresh.error, fresh.end_time = FAIL, True, CANCELLED, int(time.time())
                self.store.save(fresh)
            self.store.stores.backup.delete(self.store.cancel_key(job_id))
            return fresh
        finally:
            lock.release()

    def resume_orphans(self) -> list[str]:
        """Start every unfinished job no live server runs; return their ids."""
        started = []
        for job in self.store.all():
            if job.state_code not in UNFINISHED or self.running_here(job.id):
                continue
            try:
                lock = self.store.lock(job.id).acquire()
            except LockedError:
                continue  # another server runs it
            fresh = self.store.load(job.id)  # as it is now we hold its lock
            if fresh is None or fresh.state_code not in UNFINISHED:
                lock.release()
                continue
            log.warning("resuming %s job %s of backup %r (left unfinished by a server that stopped)",
                        fresh.kind, fresh.id, fresh.name)
            self._start(fresh, lock)
            started.append(fresh.id)
        return started

    def watch(self, every: float) -> None:
        """Look for orphaned jobs now and every ``every`` seconds, in the background."""
        def loop() -> None:
            while True:
                try:
                    self.resume_orphans()
                except (MBackupError, StorageError) as e:
                    log.warning("looking for unfinished jobs failed: %s", e)
                if self._stop.wait(every):
                    return
        threading.Thread(target=loop, name="mbackup-jobs", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _start(self, job: Job, lock: StoreLock) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(job, lock), name=f"mbackup-job-{job.id}", daemon=True)
        with self._mutex:
            self._running[job.id] = thread
            self._cancels[job.id] = threading.Event()
        thread.start()
        return thread

    def _run(self, job: Job, lock: StoreLock) -> None:
        with self._mutex:
            cancel = self._cancels[job.id]
        reporter = JobReporter(job, self.metrics, cancel)
        with self._mutex:
            self._live[job.id] = (job, reporter)
        done = threading.Event()

        def saver() -> None:
            while not done.wait(SAVE_EVERY):
                reporter.sample()
                with contextlib.suppress(StorageError):  # saved again at the next tick or at the end
                    self.store.save(job)
                    if self.store.cancel_requested(job.id):  # asked of another server
                        cancel.set()

        job.runs += 1
        job.state_code, job.error, job.end_time = EXECUTING, "", 0
        self.metrics.job_started(job.kind)
        try:
            self.store.save(job)
            threading.Thread(target=saver, name=f"mbackup-save-{job.id}", daemon=True).start()
            if self.store.cancel_requested(job.id):  # asked while no server ran it
                cancel.set()
            with cancel_on(cancel):
                self.flows[job.kind](job, reporter)
            reporter.sample()
            job.state_code = SUCCESS
        except (MBackupError, KeyboardInterrupt) as e:  # KeyboardInterrupt: only a cancel reaches this thread
            job.state_code, job.error, job.exit_code = FAIL, str(e), getattr(e, "exit_code", 0)
            if cancel.is_set():
                job.cancelled, job.error = True, CANCELLED
        except Exception as e:  # a bug: said in the job, with the traceback in the log only
            log.exception("%s job %s failed", job.kind, job.id)
            job.state_code, job.error = FAIL, f"internal error ({type(e).__name__}): see the server's log"
        finally:
            done.set()
            job.end_time = int(time.time())
            for c in job.collections:
                if c.state_code in UNFINISHED:
                    c.state_code = job.state_code if job.state_code == FAIL else SUCCESS
                    c.end_time = job.end_time
                    c.error = job.error if job.state_code == FAIL else ""
            self.metrics.job_finished(job)
            try:
                self.store.save(job)
            except StorageError as e:
                log.error("could not save job %s: %s", job.id, e)
            with contextlib.suppress(StorageError):
                if cancel.is_set():
                    self.store.stores.backup.delete(self.store.cancel_key(job.id))
                lock.release()
            with self._mutex:
                self._running.pop(job.id, None)
                self._live.pop(job.id, None)
                self._cancels.pop(job.id, None)


def new_id() -> str:
    return str(uuid.uuid4())


def backup_made_by(stores: Stores, job: Job) -> bool:
    """Did ``job`` (a create) finish its backup before it was cut off? The backup is complete
    and bears the id the job recorded from its in-progress marker."""
    if not job.backup_id:
        return False
    try:
        info = meta.loads(meta.BackupInfo, stores.backup.read(f"{backup_dir(stores, job.name)}/meta/{meta.BACKUP_META}"),
                          meta.BACKUP_META)
    except (NotFound, MBackupError):
        return False
    return bool(info.id == job.backup_id)


def record_backup_id(stores: Stores, job: Job) -> None:
    """Remember the id of the backup a create is making (its in-progress marker has it)."""
    with contextlib.suppress(NotFound, ValueError, StorageError):
        marker = json.loads(stores.backup.read(f"{backup_dir(stores, job.name)}/{IN_PROGRESS}"))
        job.backup_id = str(marker.get("id", ""))
