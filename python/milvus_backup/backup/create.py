"""Create a backup: what ``mbackup create`` does, in the Go tool's layout.

1. pick collections by filter; 2. read their metadata through the Milvus adapter;
3. hold Milvus' GC and flush per strategy; 4. find each segment's binlogs by listing storage
(two LISTs per collection, with the per-field file-count check), keeping exactly those the
server names where it can; 5. copy them with the engine, verifying every object; 6. write
mbackup's checksum manifest, then the Go tool's meta files, with ``backup_meta.json`` last:
until it exists the backup is incomplete and listed as such.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..config.params import FORMATS
from ..format import meta, untrusted
from ..milvus.adapters.base import (
    ALL_PARTITIONS,
    NEWER_STRATEGIES,
    BinlogDescribeFailed,
    FlushAllResult,
    MilvusAdapter,
    SegmentBinlogs,
    SegmentRef,
    StorageLayout,
)
from ..milvus.connection import MilvusError
from ..storage.location import BucketNotFound, NotFound, ObjectInfo, StorageError, in_parallel
from ..transfer.copy import CopyReport, CopySettings, Plan, checksums, run_plan
from ..transfer.progress import SILENT, Reporter
from .catalog import (
    IN_PROGRESS,
    LOCK,
    MANIFEST,
    BackupError,
    BackupIncomplete,
    Stores,
    backup_dir,
    backup_storage_errors,
    collection_segments,
    in_progress_marker,
    is_backup,
)
from .incremental import (
    Base,
    Increment,
    find_base,
    norm_etag,
    plan_increment,
    resumed_refs,
    store_increment,
)
from .lock import LockLostError, StoreLock
from .pool import POOL_REFS, parse_pool_key
from .snapshot import bundle_place, export_collections, remove_bundle, resolve_format

log = logging.getLogger(__name__)

# auto: bulk_flush where the server can flush all collections at once, else serial_flush.
STRATEGIES = ("auto", "serial_flush", "bulk_flush", "skip_flush", "meta_only")
GC_PAUSE_SECONDS = 3600


@dataclass
class CreateRequest:
    name: str | None = None
    filters: list[str] = field(default_factory=list)  # coll, db.coll, db.* (empty: everything)
    strategy: str = ""  # "" = auto
    rbac: bool = False  # also users, roles, grants and privilege groups
    pause_gc: bool = True  # backup.pauseGC: hold Milvus' garbage collection while copying
    format: str = "auto"  # auto | binlog | snapshot (config.params.FORMATS)
    incremental: bool = False  # copy only what the base does not hold, into the root's pool
    base: str | None = None  # the base of an incremental backup (None: the newest complete one)

    def validate(self) -> None:
        """Refuse bad flags before connecting to Milvus."""
        if self.name is not None:
            meta.validate_backup_name(self.name)
        if self.base is not None:
            if not self.incremental:
                raise BackupError(f"--base {self.base} names the base of an incremental backup: add --incremental")
            meta.validate_backup_name(self.base)
        if self.incremental and (self.format == meta.FORMAT_SNAPSHOT or self.strategy == "meta_only"):
            raise BackupError("--incremental shares binlogs between backups: it does not go with "
                              f"{'--format snapshot' if self.format == meta.FORMAT_SNAPSHOT else '--strategy meta_only'}")
        if self.format not in FORMATS:
            raise BackupError(f"unknown format {self.format!r}: use {', '.join(FORMATS)}")
        if (self.strategy or "auto") not in STRATEGIES:
            since = NEWER_STRATEGIES.get(self.strategy)
            raise BackupError(f"unknown strategy {self.strategy!r}: use {', '.join(STRATEGIES)}"
                              + (f" ({self.strategy} needs Milvus {since} or newer)" if since else ""))
        parse_filters(self.filters)

    def record(self) -> dict[str, Any]:
        """The request as the in-progress marker keeps it, so that only the same request
        resumes an incomplete backup: filters by database (sorted), and the strategy."""
        filters = parse_filters(self.filters)
        record: dict[str, Any] = {
            "filters": {db: None if colls is None else sorted(colls) for db, colls in sorted(filters.items())},
            "strategy": self.strategy or "auto"}
        if self.rbac:
            record["rbac"] = True
        if self.format != "auto":
            record["format"] = self.format
        if self.incremental:
            record["incremental"] = True
            if self.base is not None:
                record["base"] = self.base
        return record


def describe_request(record: dict[str, Any]) -> str:
    """``--filter default.a,db2.* --strategy serial_flush`` as a user would type it."""
    items = [f"{db}.*" if colls is None else ",".join(f"{db}.{c}" for c in colls) or f"{db}."
             for db, colls in record["filters"].items()]
    return ((f"--filter {','.join(items)}" if items else "no --filter") + f" --strategy {record['strategy']}"
            + (" --rbac" if record.get("rbac") else "") + (f" --format {record['format']}" if "format" in record else "")
            + (" --incremental" if record.get("incremental") else "") + (f" --base {record['base']}" if "base" in record else ""))


def default_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"backup_{now:%Y_%m_%d_%H_%M_%S}_{time.time_ns() % 1_000_000_000}"


def parse_filters(filters: list[str]) -> dict[str, list[str] | None]:
    """``["c1", "db1.c2", "db2.*", "db3."]`` -> {"default": ["c1"], "db1": ["c2"], "db2": None, "db3": []}
    (None = every collection of the database, [] = the database only)."""
    out: dict[str, list[str] | None] = {}
    for raw in filters:
        for item in filter(None, (x.strip() for x in raw.split(","))):
            db, _dot, coll = item.partition(".") if "." in item else ("default", ".", item)
            if not re.fullmatch(r"\w+", db) or not (coll in ("*", "") or re.fullmatch(r"\w+", coll)):
                raise BackupError(f"invalid filter {item!r}: use coll, db.coll, db.* or db.")
            if coll == "*":
                out[db] = None
            else:
                current = out.setdefault(db, [])
                if current is not None and coll and coll not in current:  # None: db.* has them all
                    current.append(coll)
    return out


def resolve_strategy(adapter: MilvusAdapter, asked: str) -> str:
    """The strategy to run: auto is bulk_flush where the server can flush every collection
    at once (FlushAll), else serial_flush; bulk_flush on a server that cannot is refused."""
    if asked in ("", "auto"):
        return "bulk_flush" if adapter.can_flush_all() else "serial_flush"
    if asked == "bulk_flush" and not adapter.can_flush_all():
        raise BackupError(f"--strategy bulk_flush needs a Milvus that flushes all collections at once, and Milvus "
                          f"{adapter.version} cannot: use serial_flush")
    return asked


def select_collections(adapter: MilvusAdapter, filters: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Databases and (db, collection) pairs a filter names; unknown names are errors."""
    return choose_collections(filters, adapter.list_databases(), adapter.list_collections)


def choose_collections(filters: list[str], databases: list[str], collections_of: Callable[[str], list[str]]
                       ) -> tuple[list[str], list[tuple[str, str]]]:
    """What ``select_collections`` picks among the ``databases`` a server has, with
    ``collections_of(db)`` listing a database's collections."""
    wanted = parse_filters(filters)
    if not wanted:
        wanted = {db: None for db in databases}
    pairs: list[tuple[str, str]] = []
    for db, colls in wanted.items():
        if db not in databases:
            raise BackupError(f"database {db!r} does not exist (databases: {', '.join(sorted(databases))})")
        existing = collections_of(db)
        for coll in (sorted(existing) if colls is None else colls):
            if coll not in existing:
                raise BackupError(f"collection {coll!r} does not exist in database {db!r}"
                                  f" (collections: {', '.join(sorted(existing)) or 'none'})")
            pairs.append((db, coll))
    return list(wanted), pairs


@dataclass
class CreateResult:
    info: meta.BackupInfo
    copy: CopyReport | None
    seconds: float
    phases: dict[str, float]
    increment: Increment | None = None
    overlapped: float = 0.0  # seconds of the metadata and flush phases that ran alongside other work

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.info.name,
            "id": self.info.id,
            "collections": [f"{c.db_name}.{c.collection_name}" for c in self.info.collection_backups],
            "segments": sum(1 for c in self.info.collection_backups for _ in collection_segments(c)),
            "objects": len(self.copy.results) + len(self.copy.skipped) if self.copy else 0,
            "objects_copied": len(self.copy.copied) if self.copy else 0,
            "size": self.info.size,
            "milvus_version": self.info.milvus_version,
            "seconds": round(self.seconds, 3),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
        } | ({"increment": self.increment.summary()} if self.increment else {})


@dataclass
class CreatePlan:
    """What a create would do, found by reading only: every refusal of the real run has
    happened by the time one exists (``mbackup create --dry-run`` prints it)."""

    adapter: MilvusAdapter
    name: str
    bdir: str
    strategy: str
    format: str
    databases: list[str]
    pairs: list[tuple[str, str]]
    resumes: str | None  # the id of the incomplete backup a named request resumes
    new_bucket: bool
    base: Base | None = None  # an incremental create's base
    increment: Increment | None = None  # filled for a dry run (preview_increment)

    def summary(self) -> dict[str, Any]:
        return {"dry_run": True, "name": self.name, "resumes": self.resumes, "strategy": self.strategy,
                "format": self.format or "binlog", "collections": [f"{db}.{c}" for db, c in self.pairs],
                "bucket_to_create": self.new_bucket} | (
                    {"increment": self.increment.summary()} if self.increment else {})

    def lines(self) -> list[str]:
        what = f"resume the incomplete backup {self.name!r}" if self.resumes else f"create backup {self.name!r}"
        return (["would create the backup bucket"] if self.new_bucket else []) + [
            f"would {what} (strategy {self.strategy}, format {self.format or 'binlog'})",
            *(f"would back up {db}.{c}" for db, c in self.pairs)] + (
                [f"would make an {self.increment.line()} (segments not flushed yet are not counted)"]
                if self.increment else [])


def plan_create(adapter: MilvusAdapter | Callable[[], MilvusAdapter], stores: Stores,
                request: CreateRequest, reporter: Reporter = SILENT, *, newest_base: bool = True) -> CreatePlan:
    """``adapter`` may be a function that connects, called once the request and the name
    have been checked, so a taken name is refused without touching Milvus. ``newest_base``
    False: an incremental create without ``--base`` leaves ``base`` None, for
    :func:`find_plan_base` (a named base is always checked here: it is the user's input)."""
    request.validate()
    name = request.name or default_name()
    bdir = backup_dir(stores, name)
    resumes = None
    new_bucket = not stores.backup.has_bucket()
    if request.name:
        # Refused before touching Milvus (a taken name, a damaged marker, another request, a
        # run holding the name); checked again under the lock, where it counts.
        with backup_storage_errors(stores):
            resumes = prepare(stores, bdir, name, request.record())
            if not new_bucket:
                create_lock(stores, bdir, name, reporter=SILENT).check_free()
    if not isinstance(adapter, MilvusAdapter):
        with reporter.step("connect"):
            adapter = adapter()
    strategy = resolve_strategy(adapter, request.strategy)
    form = resolve_format(adapter, request.format, strategy)
    if form == meta.FORMAT_SNAPSHOT:
        bundle_place(stores, bdir)  # refuses, before anything is written, a store Milvus cannot reach
    databases, pairs = select_collections(adapter, request.filters)
    plan = CreatePlan(adapter, name, bdir, strategy, form, databases, pairs, resumes, new_bucket)
    if request.incremental and (newest_base or request.base is not None):
        find_plan_base(plan, stores, request)
    return plan


def find_plan_base(plan: CreatePlan, stores: Stores, request: CreateRequest) -> None:
    """The base of an incremental create: the one named, else the newest complete backup of
    the collections (every backup's meta is read to find it)."""
    with backup_storage_errors(stores):
        plan.base = find_base(stores, plan.name, request.base, plan.pairs) if not plan.new_bucket else Base(None)


def create_lock(stores: Stores, bdir: str, name: str, reporter: Reporter) -> StoreLock:
    return StoreLock(stores.backup, f"{bdir}/{LOCK}", f"backup {name!r}", command="create",
                     on_loss="stopped before marking the backup complete: run the same create again",
                     warn=reporter.warning)


def create_backup(adapter: MilvusAdapter | Callable[[], MilvusAdapter], stores: Stores, request: CreateRequest,
                  settings: CopySettings, *, reporter: Reporter = SILENT,
                  announce: Callable[[str], None] = lambda line: None) -> CreateResult:
    """``adapter`` may be a function that connects (see :func:`plan_create`). Warnings and
    progress go to ``reporter``; ``announce`` gets what an incremental create will copy, before it does."""
    plan = plan_create(adapter, stores, request, reporter, newest_base=False)
    with reporter.step("create", backup=plan.name):
        return _create(plan, stores, request, settings, reporter, announce)


@dataclass
class _MilvusSide:
    """What a create learns from Milvus before it looks for segments."""

    databases: list[meta.DatabaseBackupInfo]
    collections: list[meta.CollectionBackupInfo]
    rbac: Any
    flushed: FlushAllResult | None  # bulk_flush's answer
    phases: dict[str, float]


@contextlib.contextmanager
def _asking_milvus(plan: CreatePlan, request: CreateRequest, reporter: Reporter) -> Iterator[Future[_MilvusSide]]:
    """Describe the collections, hold Milvus's GC and flush, in a thread started once the
    create holds its lock and every refusal has happened: the flush's wait (half of a small
    increment's time) then runs while the create finds its base and writes its marker, which
    ask only the backup store. The create waits for it before it looks for segments; leaving
    on an error, this waits for it too (a flush never runs on behind the create); either way
    it resumes the GC."""
    future: Future[_MilvusSide] = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(_ask_milvus, plan, request, reporter))
        except BaseException as e:  # raised where the create waits for it
            future.set_exception(e)

    # A daemon: an interrupted create (Ctrl-C) exits without waiting for Milvus's answer.
    thread = threading.Thread(target=run, name="mbackup-milvus", daemon=True)
    thread.start()
    try:
        yield future
    except Exception:
        thread.join()  # the flush ends before the create does; its own error, if any, is not the one to show
        raise
    finally:
        try:
            plan.adapter.resume_gc()
        except MilvusError as e:  # never in place of the error at hand, nor of a backup made
            reporter.warning(str(e))


def _ask_milvus(plan: CreatePlan, request: CreateRequest, reporter: Reporter) -> _MilvusSide:
    adapter, phases = plan.adapter, {}
    t = time.monotonic()
    with reporter.step("metadata"):
        databases = [adapter.describe_database(db) for db in plan.databases]
        collections = describe_collections(adapter, plan.pairs, reporter, named={
            (db, c) for db, colls in parse_filters(request.filters).items() for c in colls or ()})
        rbac = adapter.backup_rbac() if request.rbac else None
    phases["metadata"] = time.monotonic() - t
    # Held from before the flush until the meta is written, resumed by _asking_milvus.
    with_data = plan.strategy != "meta_only" and plan.format != meta.FORMAT_SNAPSHOT
    if with_data and not request.pause_gc:
        reporter.warning("backup.pauseGC is false: Milvus garbage collection is not paused; segments "
                         "compacted during the backup may be missing from it")
    elif with_data and not adapter.pause_gc(GC_PAUSE_SECONDS, [c.collection_id for c in collections]):
        reporter.warning(f"Milvus {adapter.version} cannot pause garbage collection; segments "
                         "compacted during the backup may be missing from it (back up while writes are quiet)")
    flushed = None
    t = time.monotonic()
    if plan.strategy == "serial_flush":
        with reporter.step("flush"):
            for coll in collections:
                adapter.flush(coll.db_name, coll.collection_name)
        phases["flush"] = time.monotonic() - t
    elif plan.strategy == "bulk_flush":
        with reporter.step("flush"):
            flushed = adapter.flush_all()
        phases["flush"] = time.monotonic() - t
    return _MilvusSide(databases, collections, rbac, flushed, phases)


def _create(plan: CreatePlan, stores: Stores, request: CreateRequest, settings: CopySettings,
            reporter: Reporter, announce: Callable[[str], None]) -> CreateResult:
    adapter, name, bdir, strategy, form = plan.adapter, plan.name, plan.bdir, plan.strategy, plan.format
    if plan.new_bucket:  # as plan_create found it; one another run made meanwhile is taken as made
        stores.backup.make_bucket()
    # Local backups hold the collection's data: readable by their owner only.
    old_umask = os.umask(0o077) if stores.backup.scheme == "file" else None
    try:
        # One run per backup name: the lock is a conditional write, so of two racing
        # creates (or a create and a delete) exactly one gets past this line.
        with create_lock(stores, bdir, name, reporter) as lock:
            with backup_storage_errors(stores):
                resumed = prepare(stores, bdir, name, request.record())
            with _asking_milvus(plan, request, reporter) as milvus:
                if request.incremental and plan.base is None:
                    find_plan_base(plan, stores, request)  # the newest base: read while Milvus flushes
                run = _CreateRun(adapter, stores, name, bdir, strategy, settings, reporter, lock, format=form,
                                 base=plan.base, announce=announce)
                return run.execute(milvus, resumed, request.record())
    finally:
        if old_umask is not None:
            os.umask(old_umask)


# What the in-progress marker holds: the backup it belongs to and the request that started it.
_MARKER = untrusted.Obj({
    "id": meta.BACKUP_ID, "name": str,
}, {"pid": untrusted.Count, "host": str, "started": str,
    "request": untrusted.Obj({"filters": untrusted.Map(untrusted.Optional([untrusted.Text(r"\w+", "a collection name")]),
                                                       untrusted.Text(r"\w+", "a database name")),
                              "strategy": untrusted.OneOf(*STRATEGIES)},
                             {"rbac": bool, "format": untrusted.OneOf(*FORMATS), "incremental": bool,
                              "base": untrusted.Text(r"\w+", "a backup name")}),
    POOL_REFS: [str]})


def prepare(stores: Stores, bdir: str, name: str, request: dict[str, Any]) -> str | None:
    """Refuse an existing name, a damaged in-progress marker or a marker of another request;
    return the id of the incomplete backup this request resumes, or None for a new one."""
    backup, where = stores.backup, stores.backup_url(name)
    if backup.exists(f"{bdir}/meta/{meta.BACKUP_META}"):
        raise BackupError(f"backup {name!r} already exists at {where}: choose another name "
                          f"or delete it with mbackup delete -n {name}")
    if backup.exists(f"{bdir}/{IN_PROGRESS}"):
        try:
            marker = untrusted.parse(backup.read(f"{bdir}/{IN_PROGRESS}"), _MARKER, 1 << 20)
            if marker["name"] != name:
                raise ValueError(f"it belongs to backup {marker['name']!r}")
        except ValueError as e:
            raise BackupError(f"{where}/{IN_PROGRESS} is damaged ({e}): delete the incomplete backup with "
                              f"mbackup delete -n {name}") from None
        if "request" not in marker:
            raise BackupError(f"backup {name!r} is an incomplete create started by an older mbackup, which did not "
                              f"record its options: delete it with mbackup delete -n {name} and create it again")
        if marker["request"] != request:
            raise BackupError(f"backup {name!r} is an incomplete create of {describe_request(marker['request'])}, "
                              f"not {describe_request(request)}: run it again with the same options to finish it, "
                              f"or delete it with mbackup delete -n {name}")
        return marker["id"]
    try:
        keys = [o.key for o in backup.list(bdir) if o.key.startswith(bdir + "/") and o.key != f"{bdir}/{LOCK}"]
    except NotFound:
        keys = []  # no bucket yet: nothing to resume
    if keys:
        advice = f"delete it with mbackup delete -n {name}, or " if is_backup(bdir, keys) else ""
        raise BackupError(f"{where} holds objects but is not a backup mbackup can resume: {advice}choose another name")
    return None


@dataclass
class _CreateRun:
    adapter: MilvusAdapter
    stores: Stores
    name: str
    bdir: str
    strategy: str
    settings: CopySettings
    reporter: Reporter
    lock: StoreLock
    format: str = meta.FORMAT_BINLOG
    base: Base | None = None  # set: an incremental create on this base
    announce: Callable[[str], None] = lambda line: None
    increment: Increment | None = None
    overlapped: float = 0.0
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)

    def execute(self, milvus: Future[_MilvusSide], resumed: str | None, request: dict[str, Any]) -> CreateResult:
        # backup_timestamp: when this run started, in ms since the epoch, as the Go tool's
        # create wrote it (v0.2-v0.4); list and get show it.
        info = meta.BackupInfo(id=resumed or str(uuid.uuid4()), name=self.name, milvus_version=self.adapter.version,
                               format=self.format, backup_timestamp=time.time_ns() // 1_000_000)
        snapshot = self.format == meta.FORMAT_SNAPSHOT
        if resumed:
            self.reporter.warning(f"resuming the incomplete backup {self.name!r}: objects already copied are "
                                  "checked, not copied again")
        else:
            self.stores.backup.write(f"{self.bdir}/{IN_PROGRESS}", in_progress_marker(info.id, self.name, request=request))
        with_data = self.strategy != "meta_only" and not snapshot  # meta_only is never a snapshot
        copying = False
        try:
            t = time.monotonic()
            side = milvus.result()  # its errors are raised here, where a create without it would have met them
            self.overlapped = max(0.0, sum(side.phases.values()) - (time.monotonic() - t))
            self.phases |= side.phases
            self.lock.check()
            info.database_backups, collections, info.rbac_meta = side.databases, side.collections, side.rbac
            for coll in collections:
                coll.id = info.id
            if side.flushed is not None:
                info.flush_all_msgs_base64 = dict(side.flushed.messages_base64)
                info.control_channel_name = side.flushed.control_channel
                info.physical_channel_names = list(side.flushed.physical_channels)
            report, pooled = None, None
            etags: dict[str, str | None] = {}  # the version listed, which the copy is pinned to
            if snapshot:
                with self.phase("export"):  # Milvus copies the data itself; a snapshot pins it
                    export_collections(self.adapter, self.stores, self.bdir, self.name, collections, self.reporter)
            if with_data:
                with self.phase("discover"):
                    for coll in collections:
                        etags |= discover_collection(self.adapter, self.stores, coll, self.reporter)
                copying = True
                if self.base is not None:
                    report, pooled = self._copy_increment(collections, etags, resumed is not None)
                else:
                    with self.phase("copy"):
                        report = copy_segments(self.stores, self.bdir, collections, self.settings, self.reporter,
                                               self.lock, etags, fresh=resumed is None)
            info.collection_backups = collections
            info.size = sum(c.size for c in collections)
            with self.phase("meta"):
                write_meta(self.stores, self.bdir, info, report, self.settings, self.lock, pooled, etags=etags)
        except BaseException:
            if not self.lock.lost.is_set() and (snapshot or (not resumed and not copying)):
                # Refused before a single binlog was copied (a wrong bucket or root path, say),
                # or a snapshot export, which Milvus redoes whole: nothing to resume, so leave no
                # incomplete backup behind for list to show.
                with contextlib.suppress(Exception):  # the original error is the one to show
                    if snapshot:
                        remove_bundle(self.stores, self.bdir)
                    self.stores.backup.delete(f"{self.bdir}/{IN_PROGRESS}")
            raise
        return CreateResult(info, report, time.monotonic() - self.started, self.phases, self.increment,
                            self.overlapped)

    def _copy_increment(self, collections: list[meta.CollectionBackupInfo], etags: dict[str, str | None],
                        resumed: bool) -> tuple[CopyReport, dict[str, Any]]:
        """Copy what the base does not hold from Milvus into the pool; say what first."""
        assert self.base is not None
        algo = self.base.algo or (self.settings.checksum if self.settings.checksum != "none" else "crc32c")
        if self.base.algo and self.settings.checksum not in ("none", self.base.algo):
            self.reporter.warning(f"the base {self.base.name} holds {self.base.algo} checksums: this increment "
                                  f"uses {self.base.algo} too, not {self.settings.checksum}")
        refs = resumed_refs(self.stores, self.bdir) if resumed else []
        inc = self.increment = plan_increment(self.bdir, collections, etags, self.base, algo, refs)
        log.info("%s", inc.line())
        self.announce(inc.line())
        copied: list[CopyReport] = []

        def copy_new(keys: set[str]) -> CopyReport:
            copied.append(copy_segments(self.stores, self.bdir, collections,
                                        CopySettings(**{**self.settings.__dict__, "checksum": algo}),
                                        self.reporter, self.lock, etags, only=keys, fresh=not resumed))
            return copied[0]

        with self.phase("copy"):
            objects = store_increment(self.stores, self.bdir, inc, copy_new, self.settings, self.reporter, self.lock)
        return copied[0], {"objects": objects, "base": self.base.name}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.monotonic()
        with self.reporter.step(name):
            yield
        self.phases[name] = time.monotonic() - t
        self.lock.check()


def describe_collections(adapter: MilvusAdapter, pairs: list[tuple[str, str]], reporter: Reporter,
                         named: set[tuple[str, str]]) -> list[meta.CollectionBackupInfo]:
    """The collections to back up. An external collection (3.x: its data lives outside
    Milvus) is left out with a warning when a whole database was asked for, as the Go
    tool leaves it out; named on its own, it is refused."""
    from ..milvus.adapters.v2_4_plus import ExternalCollection

    out = []
    for db, coll in pairs:
        try:
            out.append(adapter.describe_collection(db, coll))
        except ExternalCollection as e:
            if (db, coll) in named:
                raise
            reporter.warning(f"{db}.{coll} is an external collection, its data in {e.source}: left out")
    return out


def discover_collection(adapter: MilvusAdapter, stores: Stores, coll: meta.CollectionBackupInfo,
                        reporter: Reporter) -> dict[str, str | None]:
    """Find the collection's flushed segments and their binlogs, attach them to ``coll``, and
    return each binlog's listed ETag (the version a copy is pinned to), by source key."""
    segments = adapter.list_segments(coll.db_name, coll.collection_name)
    named = named_binlogs(adapter, coll, segments, reporter)
    found = discover_binlogs(stores, adapter.layout, coll, segments, named)
    etags: dict[str, str | None] = {}
    for inserts, deltas in found.values():
        for obj in [*deltas, *(o for objs in inserts.values() for o in objs)]:
            etags[obj.key] = obj.etag
    attach_segments(coll, segments, found, adapter.layout, named)
    return etags


def named_binlogs(adapter: MilvusAdapter, coll: meta.CollectionBackupInfo, segments: list[SegmentRef],
                  reporter: Reporter) -> dict[int, SegmentBinlogs]:
    """The binlogs the server names for each segment; {} (listing decides) when it cannot."""
    try:
        return adapter.segment_binlogs(coll.db_name, coll.collection_id, segments)
    except BinlogDescribeFailed as e:
        reporter.warning(f"{e}: the binlogs of {coll.db_name}.{coll.collection_name} are found by listing "
                         "storage instead (check milvus.rest.endpoint)")
        return {}


def preview_increment(plan: CreatePlan, stores: Stores, reporter: Reporter = SILENT) -> CreatePlan:
    """What an incremental create would copy and share, found by reading only (no flush):
    for ``create --incremental --dry-run``."""
    assert plan.base is not None
    collections = describe_collections(plan.adapter, plan.pairs, reporter, named=set(plan.pairs))
    etags: dict[str, str | None] = {}
    for coll in collections:
        etags |= discover_collection(plan.adapter, stores, coll, reporter)
    algo = plan.base.algo or "crc32c"
    plan.increment = plan_increment(plan.bdir, collections, etags, plan.base, algo)
    return plan


def discover_binlogs(stores: Stores, layout: StorageLayout, coll: meta.CollectionBackupInfo, segments: list[SegmentRef],
                     named: dict[int, SegmentBinlogs] | None = None
                     ) -> dict[int, tuple[dict[int, list[ObjectInfo]], list[ObjectInfo]]]:
    """Each segment's insert logs by field and its delta logs, found by listing the Milvus
    bucket where ``layout`` keeps the collection's binlogs (two LISTs, whatever the number of
    segments). Of a segment in ``named`` (the binlogs the server names), exactly those are
    kept: what else is listed is an orphan of a compaction, and a named one not listed is an
    error."""
    named = named or {}
    root = stores.milvus_root.strip("/")
    base = f"{root}/" if root else ""
    found: dict[int, tuple[dict[int, list[ObjectInfo]], list[ObjectInfo]]] = defaultdict(lambda: (defaultdict(list), []))
    wanted = {s.segment_id for s in segments}
    expected = {seg: {(f, log) for f, logs in b.inserts.items() for log in logs} | {(None, log) for log in b.deltas}
                for seg, b in named.items()}
    prefixes = [f"{base}{prefix}" for prefix in layout.collection_prefixes(coll.collection_id)]
    try:
        listings = in_parallel(stores.milvus.list, prefixes)  # insert and delta logs at once
    except BucketNotFound:
        raise BackupError(f"the Milvus bucket {stores.milvus.url} does not exist: check milvus.storage.bucketName "
                          "(minio.bucketName in a v1 config) names the bucket Milvus itself writes to") from None
    for listed in listings:
        for obj in listed:
            binlog = layout.parse(obj.key[len(base):])
            if binlog is None or binlog.segment_id not in wanted:
                continue  # not a binlog, or a segment compacted away / not flushed yet
            if binlog.segment_id in expected:
                if (binlog.field_id, binlog.log_id) not in expected[binlog.segment_id]:
                    continue  # an orphan the server does not count as the segment's
                expected[binlog.segment_id].discard((binlog.field_id, binlog.log_id))
            if binlog.field_id is None:
                found[binlog.segment_id][1].append(obj)
            else:
                found[binlog.segment_id][0][binlog.field_id].append(obj)
    for ref in sorted(segments, key=lambda s: s.segment_id):
        missing = sorted(expected.get(ref.segment_id, ()), key=lambda m: (m[0] is None, m))
        if missing:
            field_id, log_id = missing[0]
            key = (layout.delta_prefix(coll.collection_id, ref.partition_id, ref.segment_id) if field_id is None else
                   layout.insert_prefix(coll.collection_id, ref.partition_id, ref.segment_id) + f"{field_id}/") + str(log_id)
            raise BackupError(f"segment {ref.segment_id} of {coll.db_name}.{coll.collection_name}: Milvus names "
                              f"{len(missing)} binlog(s) not in its bucket (first: {base}{key}): check that "
                              "milvus.storage.bucketName and rootPath (minio.bucketName, minio.rootPath) name the "
                              "bucket and root path Milvus itself writes to")
    return found


def attach_segments(coll: meta.CollectionBackupInfo, segments: list[SegmentRef],
                    logs: dict[int, tuple[dict[int, list[ObjectInfo]], list[ObjectInfo]]], layout: StorageLayout,
                    named: dict[int, SegmentBinlogs] | None = None) -> None:
    """Fill partitions with SegmentBackupInfo as the Go tool does; collection-level L0
    segments (partition -1) go to the collection's ``l0_segments``, with group 0."""
    named = named or {}
    parts = {p.partition_id: p for p in coll.partition_backups}
    for ref in sorted(segments, key=lambda s: s.segment_id):
        inserts, deltas = logs.get(ref.segment_id, ({}, []))
        if not inserts and not ref.is_l0:
            raise BackupError(
                f"segment {ref.segment_id} of {coll.db_name}.{coll.collection_name} has no insert logs under "
                f"{layout.insert_prefix(coll.collection_id, ref.partition_id, ref.segment_id)} in the Milvus bucket: "
                "check that milvus.storage.bucketName and rootPath (minio.bucketName, minio.rootPath) "
                "name the bucket and root path Milvus itself writes to")
        counts = {f: len(objs) for f, objs in inserts.items()}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"field {f}: {n}" for f, n in sorted(counts.items()))
            raise BackupError(f"segment {ref.segment_id} has a different number of binlogs per field ({detail}); "
                              "orphan binlogs from a compaction: run the backup again")
        binlogs = [meta.FieldBinlog(field_id=f, binlogs=[_binlog(o) for o in sorted(objs, key=lambda o: o.key)])
                   for f, objs in sorted(inserts.items())]
        deltalogs = [meta.FieldBinlog(binlogs=[_binlog(o) for o in sorted(deltas, key=lambda o: o.key)])]
        size = sum(o.size for objs in inserts.values() for o in objs) + sum(o.size for o in deltas)
        whole_collection = ref.is_l0 and ref.partition_id == ALL_PARTITIONS
        seg = meta.SegmentBackupInfo(
            segment_id=ref.segment_id, collection_id=ref.collection_id, partition_id=ref.partition_id,
            num_of_rows=ref.num_rows, binlogs=binlogs, deltalogs=deltalogs, size=size,
            group_id=0 if whole_collection else ref.segment_id, is_l0=ref.is_l0,
            v_channel=named[ref.segment_id].v_channel if ref.segment_id in named else "",
            storage_version=ref.storage_version)
        if whole_collection:
            coll.l0_segments.append(seg)
            continue
        part = parts.get(ref.partition_id)
        if part is None:
            continue  # the Go tool warns and skips segments of unknown partitions
        part.segment_backups.append(seg)
        part.size += size
    coll.size = sum(p.size for p in coll.partition_backups) + sum(s.size for s in coll.l0_segments)


def _binlog(obj: ObjectInfo) -> meta.Binlog:
    return meta.Binlog(log_path=obj.key, log_size=obj.size, log_id=int(obj.key.rsplit("/", 1)[-1]))


def copy_segments(stores: Stores, bdir: str, collections: list[meta.CollectionBackupInfo],
                  settings: CopySettings, reporter: Reporter, lock: StoreLock,
                  etags: dict[str, str | None] | None = None, only: set[str] | None = None,
                  fresh: bool = False) -> CopyReport:
    """Copy every binlog (or those ``only`` names, by backup key), verifying each. Objects a
    previous, interrupted run already wrote (same size) are proven by checksumming both sides
    instead of copied again. ``etags`` (source key -> ETag listed at discovery) pins each copy
    to the version found. ``fresh``: a run that resumes nothing, whose dir ``prepare`` found
    empty under the lock: no earlier copy to look for."""
    etags = etags or {}
    present = {} if fresh else {o.key: o.size for o in stores.backup.list(f"{bdir}/binlogs")}
    plan = Plan(jobs=[], skipped=[])
    for coll in collections:
        for seg in collection_segments(coll):
            for src, dst, size in meta.segment_files(bdir, seg):
                if only is not None and dst not in only:
                    continue
                if present.get(dst) == size:
                    plan.skipped.append(ObjectInfo(src, size))
                else:
                    plan.jobs.append((ObjectInfo(src, size, etags.get(src)), dst))
    verified = CopySettings(**{**settings.__dict__, "verify": True})
    if plan.skipped:
        _recheck_resumed(plan, stores, bdir, collections, verified, lock)
    report = run_plan(plan, stores.milvus, stores.backup, verified, reporter=reporter, label="backup",
                      stop=lock.lost)
    if report.failed:
        with contextlib.suppress(StorageError):
            lock.renew()  # objects that failed because another run took the lock over: say that
    lock.check()  # a lost lock cancelled the copy: say so, not what was left undone
    report.raise_for_failures(BackupIncomplete, "the backup is incomplete, run the same create again to finish it",
                              resume="run the same create again to finish the backup")
    return report


def _recheck_resumed(plan: Plan, stores: Stores, bdir: str, collections: list[meta.CollectionBackupInfo],
                     settings: CopySettings, lock: StoreLock) -> None:
    dst_of = {src: dst for coll in collections for seg in collection_segments(coll)
              for src, dst, _ in meta.segment_files(bdir, seg)}  # only those skipped are looked up
    algo = settings.checksum if settings.checksum != "none" else "crc32c"
    items = ([(stores.milvus.store, o.key) for o in plan.skipped]
             + [(stores.backup.store, dst_of[o.key]) for o in plan.skipped])
    sums = checksums(settings, items, algo, stop=lock.lost)
    n, kept = len(plan.skipped), []
    for i, obj in enumerate(plan.skipped):
        (a, _, _), (b, _, _) = sums[i], sums[n + i]
        if a is not None and a == b:
            kept.append(obj)
            plan.checksums[dst_of[obj.key]] = a
        else:
            plan.jobs.append((obj, dst_of[obj.key]))
    plan.skipped = kept


def write_meta(stores: Stores, bdir: str, info: meta.BackupInfo, report: CopyReport | None,
               settings: CopySettings, lock: StoreLock, pooled: dict[str, Any] | None = None,
               meta_files: dict[str, bytes] | None = None, etags: dict[str, str | None] | None = None) -> None:
    """Write the manifest and the meta files, and mark the backup complete (backup_meta.json)
    only once every object is there and this run still holds the lock. ``pooled``: an
    incremental backup's objects (in the pool, checked there) and base; ``meta_files``: the
    meta files to write as they are (an export keeping its source's bytes); ``etags``: the ETag
    Milvus's store listed for each source key, recorded so an increment on this backup knows
    the object again without reading it."""
    manifest: dict[str, Any] = {"version": 1, "backup": info.name, "id": info.id, "checksum_algo":
                                settings.checksum if settings.checksum != "none" else "crc32c", "objects": {}}
    if pooled is not None:
        algos = {parse_pool_key(e["pool"])[2] for e in pooled["objects"].values()}
        manifest |= {"version": 2, "incremental": True, "base": pooled["base"], "objects": pooled["objects"],
                     "checksum_algo": algos.pop() if algos else manifest["checksum_algo"]}
    elif report:
        # Driven by the meta: every object the backup holds, with the checksum proven
        # while copying it or, on a resumed run, by comparing it with its source.
        proven = {r["dst_key"]: r["checksum"] for r in report.copied} | report.skipped_checksums
        for coll in info.collection_backups:
            for seg in collection_segments(coll):
                for src, dst, size in meta.segment_files(bdir, seg):
                    entry = manifest["objects"][dst[len(bdir) + 1:]] = {"size": size, "checksum": proven[dst]}
                    if etags and etags.get(src):
                        entry["etag"] = norm_etag(etags[src])
    backup = stores.backup
    written = {f"{meta.META_DIR}/{MANIFEST}": json.dumps(manifest, indent=0, sort_keys=True).encode()}
    files = meta_files or meta.write_meta_files(info)
    written |= {f"{meta.META_DIR}/{n}": data for n, data in files.items() if n != meta.BACKUP_META}
    lock.renew()  # a run that took the lock over (a delete) owns the backup now: write nothing into it
    backup.write_many({f"{bdir}/{rel}": data for rel, data in written.items()})
    expected = {rel: obj["size"] for rel, obj in manifest["objects"].items() if "pool" not in obj} | {
        k: len(v) for k, v in written.items()}
    try:
        _check_present(stores, bdir, info.name, expected)
    finally:
        lock.renew()  # objects gone because another run took the lock over: that is what to say
    # backup_meta.json marks a backup as existing for both tools: it goes last.
    key = meta.meta_key(bdir, meta.BACKUP_META)
    version = backup.write(key, files[meta.BACKUP_META])
    try:
        lock.renew()  # a run that took the lock over meanwhile (a delete) may have emptied the backup
    except LockLostError:
        with contextlib.suppress(StorageError):
            if backup.head(key) == (len(files[meta.BACKUP_META]), version):
                backup.delete(key)  # ours, and not to be left looking complete
        raise
    backup.delete(f"{bdir}/{IN_PROGRESS}")


def _check_present(stores: Stores, bdir: str, name: str, expected: dict[str, int]) -> None:
    """Every object the backup should hold is listed with its size (one LIST of the backup)."""
    listed = {o.key[len(bdir) + 1:]: o.size for o in stores.backup.list(bdir)}
    wrong = [(rel, size) for rel, size in sorted(expected.items()) if listed.get(rel) != size]
    if wrong:
        rel, size = wrong[0]
        found = "missing" if rel not in listed else f"{listed[rel]:,} bytes"
        raise BackupError(f"backup {name!r} is not complete: {len(wrong)} of its {len(expected)} objects are missing "
                          f"or changed after they were written (first: {rel}: expected {size:,} bytes, {found}); "
                          "something deleted them during the create: run the same create again")
