"""Restore a backup: what ``mbackup restore`` does.

Plan every target name and check them all before changing anything; then per collection:
create the database, collection (from the backed-up schema) and partitions, indexes when
asked, and import the binlogs with Milvus's bulk import in backup mode. Milvus imports only
from its own bucket, so a backup kept elsewhere is first staged into that bucket (by the
engine, server-side when it can) and the staged copies are removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from . import _engine, meta, untrusted
from .adapters.base import CreateCollectionSpec, ImportState, MilvusAdapter
from .catalog import Stores, backup_dir, read_backup
from .copy import CopySettings, Plan, run_plan
from .errors import MBackupError
from .storage import ObjectInfo
from .verify import check_before_restore


class RestoreError(MBackupError):
    """A restore was refused or failed."""


@dataclass
class RestoreRequest:
    name: str
    filters: list[str] = field(default_factory=list)  # matched against target names
    suffix: str = ""
    renames: list[str] = field(default_factory=list)  # "old:new" with coll, db.coll or db.*
    rebuild_index: bool = False
    use_auto_index: bool = False
    drop_exist_collection: bool = False
    drop_exist_index: bool = False
    skip_create_collection: bool = False
    meta_only: bool = False
    load: bool = False
    restore_aliases: bool = False
    keep_temp_files: bool = False
    import_jobs: int = 16  # concurrent import jobs
    import_timeout: float = 3600.0  # seconds without progress before giving up
    force: bool = False  # skip the quick check of the backup (mbackup verify)


    def validate(self) -> None:
        """Refuse bad flags before reading the backup or connecting to Milvus."""
        meta.validate_backup_name(self.name)
        if self.suffix and self.renames:
            raise RestoreError("--suffix and --rename cannot be used together")
        if self.suffix and not re.fullmatch(r"\w+", self.suffix):
            raise RestoreError(f"invalid --suffix {self.suffix!r}: use letters, digits and _")
        if self.skip_create_collection and self.drop_exist_collection:
            raise RestoreError("--skip-create-collection and --drop-exist-collection cannot be used together")
        parse_renames(self.renames)
        if self.filters:
            from .backup import parse_filters

            parse_filters(self.filters)


@dataclass
class Target:
    source: meta.CollectionBackupInfo
    db: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.db}.{self.name}"


# The journal as Journal writes it. The staging prefix is deleted with everything under it,
# so only a prefix a restore makes is accepted.
_JOURNAL = untrusted.Obj({"collections": untrusted.Map(untrusted.Obj({
    "state": untrusted.OneOf("", "creating", "created", "done"),
    "staging": untrusted.Optional(untrusted.Text(r"mbackup-restore-[0-9a-f]{12}", "a staging prefix")),
    "partitions": untrusted.Map(untrusted.Obj({
        "job": untrusted.Optional(untrusted.Text(r"[0-9]{1,19}(?:,[0-9]{1,19})*", "import task ids")),
        "done": bool}))}))},
    {"backup": str, "backup_id": str})


class Journal:
    """What an interrupted restore finished, kept in the target Milvus's bucket so running the
    same restore again resumes it: collections already created are not refused as existing,
    partitions already imported are skipped, and imports still running are waited for
    instead of started twice (which would duplicate rows).

    ``collections[label]`` = {"state": "creating"|"created"|"done", "staging": prefix|None,
    "partitions": {name: {"job": id|None, "done": bool}}}.
    """

    def __init__(self, stores: Stores, backup: meta.BackupInfo, targets: list[Target]) -> None:
        names = ",".join(sorted(t.label for t in targets))
        digest = hashlib.sha1(f"{backup.id}|{names}".encode()).hexdigest()[:16]
        self.store = stores.milvus.store
        self.key = f"mbackup-restore-journal/{backup.name}-{digest}.json"
        try:
            self.data: dict[str, Any] = untrusted.parse(self.store.get(self.key), _JOURNAL)
        except _engine.NotFoundError:  # none yet: start afresh
            self.data = {"backup": backup.name, "backup_id": backup.id, "collections": {}}
        except ValueError as e:
            # Its staging prefix is deleted and its jobs are waited for: never guess at it.
            raise RestoreError(f"the restore journal {stores.milvus.url}/{self.key} is damaged ({e}): delete it to "
                               "restart this restore from the beginning") from None
        self.resuming = bool(self.data["collections"])

    def state(self, t: Target) -> str:
        return self.data["collections"].get(t.label, {}).get("state", "")

    def collection(self, t: Target) -> dict[str, Any]:
        return self.data["collections"].setdefault(t.label, {"state": "", "staging": None, "partitions": {}})

    def save(self) -> None:
        self.store.put(self.key, json.dumps(self.data).encode())

    def remove(self) -> None:
        self.store.delete(self.key)


def _split(name: str) -> tuple[str, str]:
    return tuple(name.split(".", 1)) if "." in name else ("default", name)  # type: ignore[return-value]


def parse_renames(items: list[str]) -> tuple[dict[tuple[str, str], tuple[str, str]], dict[str, str]]:
    """``old:new`` pairs: collection renames and whole-database moves (``db1.*:db2.*``)."""
    colls: dict[tuple[str, str], tuple[str, str]] = {}
    dbs: dict[str, str] = {}
    for raw in items:
        for item in filter(None, (x.strip() for x in raw.split(","))):
            old, sep, new = item.partition(":")
            if not sep or not old or not new:
                raise RestoreError(f"invalid --rename {item!r}: use old:new with coll, db.coll or db.*")
            (odb, ocoll), (ndb, ncoll) = _split(old), _split(new)
            if (ocoll == "*") != (ncoll == "*"):
                raise RestoreError(f"invalid --rename {item!r}: a db.* rename needs db.* on both sides")
            for part in (odb, ocoll, ndb, ncoll):
                if part != "*" and not re.fullmatch(r"\w+", part):
                    raise RestoreError(f"invalid --rename {item!r}: names are letters, digits and _")
            if ocoll == "*":
                dbs[odb] = ndb
            else:
                colls[(odb, ocoll)] = (ndb, ncoll)
    return colls, dbs


def plan_targets(info: meta.BackupInfo, request: RestoreRequest) -> list[Target]:
    if request.suffix and request.renames:
        raise RestoreError("--suffix and --rename cannot be used together")
    if request.suffix and not re.fullmatch(r"\w+", request.suffix):
        raise RestoreError(f"invalid --suffix {request.suffix!r}: use letters, digits and _")
    colls, dbs = parse_renames(request.renames)
    targets = []
    for c in info.collection_backups:
        db, name = c.db_name or "default", c.collection_name
        if (db, name) in colls:
            db, name = colls[(db, name)]
        elif db in dbs:
            db = dbs[db]
        name += request.suffix
        targets.append(Target(c, db, name))
    if request.filters:
        from .backup import parse_filters

        wanted = parse_filters(request.filters)
        targets = [t for t in targets if t.db in wanted and (wanted[t.db] is None or t.name in wanted[t.db])]
        if not targets:
            raise RestoreError(f"--filter {','.join(request.filters)} matches no collection of backup {info.name!r} "
                               "(the filter applies to target names, after --suffix/--rename)")
    seen: set[tuple[str, str]] = set()
    for t in targets:
        if (t.db, t.name) in seen:
            raise RestoreError(f"two collections would be restored as {t.label}: fix --rename")
        seen.add((t.db, t.name))
    return targets


def check_targets(adapter: MilvusAdapter, targets: list[Target], request: RestoreRequest,
                  journal: Journal | None = None) -> None:
    """Every refusal happens here, before anything is created or dropped. Collections an
    interrupted run of this same restore created are not refused: they are resumed."""
    if request.skip_create_collection and request.drop_exist_collection:
        raise RestoreError("--skip-create-collection and --drop-exist-collection cannot be used together")
    databases = set(adapter.list_databases())
    for t in targets:
        ours = journal is not None and journal.state(t) in ("creating", "created", "done")
        exists = t.db in databases and adapter.has_collection(t.db, t.name)
        if exists and not ours and not request.drop_exist_collection and not request.skip_create_collection:
            raise RestoreError(f"collection {t.label} already exists: restore with --suffix, --rename, "
                               "or --drop-exist-collection to replace it")
        if not exists and request.skip_create_collection:
            raise RestoreError(f"collection {t.label} does not exist, and --skip-create-collection needs it to")


@dataclass
class RestoreResult:
    backup: str
    collections: list[dict[str, Any]]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"backup": self.backup, "collections": self.collections, "seconds": round(self.seconds, 3)}


def restore_backup(adapter: MilvusAdapter | Callable[[], MilvusAdapter], stores: Stores, request: RestoreRequest,
                   settings: CopySettings, *, show_progress: bool = True,
                   warn=lambda m: print(f"warning: {m}", file=sys.stderr)) -> RestoreResult:
    """``adapter`` may be a function that connects: it is called only once the backup has been
    read and checked, so a damaged backup or a bad flag is refused without touching Milvus."""
    started = time.monotonic()
    request.validate()
    if not request.force:
        check_before_restore(stores, request.name, meta_only=request.meta_only)
    info = read_backup(stores, request.name)
    if info.format not in ("", meta.FORMAT_BINLOG):
        raise RestoreError(f"backup {request.name!r} has format {info.format!r}, which needs Milvus 3.0 to restore")
    targets = plan_targets(info, request)
    if not isinstance(adapter, MilvusAdapter):
        adapter = adapter()
    journal = Journal(stores, info, targets)
    check_targets(adapter, targets, request, journal)
    if journal.resuming:
        warn(f"resuming an interrupted restore of {request.name!r}: finished steps are skipped")
    bdir = backup_dir(stores, request.name)
    results = []
    for t in targets:
        results.append(restore_collection(adapter, stores, bdir, t, request, settings, show_progress, warn, journal))
    journal.remove()
    return RestoreResult(info.name, results, time.monotonic() - started)


def _spec(t: Target) -> CreateCollectionSpec:
    c = t.source
    schema = c.schema or meta.CollectionSchema()
    partition_key = any(f.is_partition_key for f in schema.fields)
    return CreateCollectionSpec(
        db_name=t.db, collection_name=t.name, schema=schema, shards_num=c.shards_num or 1,
        consistency_level=c.consistency_level, properties=list(c.properties),
        num_partitions=len(c.partition_backups) if partition_key else 0)


def restore_collection(adapter: MilvusAdapter, stores: Stores, bdir: str, t: Target, request: RestoreRequest,
                       settings: CopySettings, show_progress: bool, warn, journal: Journal) -> dict[str, Any]:
    c = t.source
    started = time.monotonic()
    state = journal.collection(t)
    rows = sum(s.num_of_rows for p in c.partition_backups for s in p.segment_backups)
    if state["state"] == "done":
        return {"source": f"{c.db_name or 'default'}.{c.collection_name}", "target": t.label,
                "rows_in_backup": rows, "import_jobs": 0, "seconds": 0.0, "resumed": "already restored"}
    created_now = state["state"] != "created" and not request.skip_create_collection
    if state["state"] != "created":
        _create_collection(adapter, t, request, state, journal)
    jobs = 0
    if not request.meta_only:
        try:
            jobs = import_data(adapter, stores, bdir, t, request, settings, show_progress, journal)
        except RestoreError:
            if created_now and not any(p.get("done") for p in state["partitions"].values()):
                # Nothing was imported into the collection this run made (Milvus found no
                # binlogs, say): drop it rather than leave an empty one that a fixed re-run
                # would refuse as existing. Nothing is lost: a re-run makes it again.
                with contextlib.suppress(Exception):  # the import error is the one to show
                    adapter.drop_collection(t.db, t.name)
                    journal.data["collections"].pop(t.label, None)
                    if journal.data["collections"]:
                        journal.save()
                    else:
                        journal.remove()
            raise
    if request.load and c.load_state == meta.LOAD_STATE_LOADED:
        adapter.load_collection(t.db, t.name)
    elif request.load and c.load_state != meta.LOAD_STATE_LOADED:
        warn(f"{t.label} was not loaded when backed up ({c.load_state or 'NotLoad'}): left unloaded")
    if request.restore_aliases:
        for alias in c.aliases:
            adapter.create_alias(t.db, t.name, alias)
    state["state"] = "done"
    journal.save()
    return {"source": f"{c.db_name or 'default'}.{c.collection_name}", "target": t.label, "rows_in_backup": rows,
            "import_jobs": jobs, "seconds": round(time.monotonic() - started, 3)}


def _create_collection(adapter: MilvusAdapter, t: Target, request: RestoreRequest, state: dict[str, Any],
                       journal: Journal) -> None:
    """Database, collection, partitions and indexes; recorded so a re-run does not redo them.
    A collection left half-made by an interrupted run ("creating") holds no data yet: it is
    dropped and made again."""
    c = t.source
    adapter.create_database(t.db)
    exists = adapter.has_collection(t.db, t.name)
    if exists and not request.skip_create_collection and (request.drop_exist_collection or state["state"] == "creating"):
        adapter.drop_collection(t.db, t.name)
    state["state"] = "creating"
    journal.save()
    if not request.skip_create_collection:
        adapter.create_collection(_spec(t))
    partition_key = any(f.is_partition_key for f in (c.schema.fields if c.schema else []))
    if not partition_key:
        for p in c.partition_backups:
            if p.partition_name != "_default":
                adapter.create_partition(t.db, t.name, p.partition_name)
    if request.drop_exist_index:
        adapter.drop_indexes(t.db, t.name)
    if request.rebuild_index:
        # The Go tool builds vector indexes first, then scalar ones.
        vector_types = {int(v) for v in meta.DataType if v.name.endswith("Vector")}
        types = {f.name: f.data_type for f in (c.schema.fields if c.schema else [])}
        ordered = sorted(c.index_infos, key=lambda i: types.get(i.field_name) not in vector_types)
        for index in ordered:
            if request.use_auto_index and types.get(index.field_name) in vector_types:
                metric = index.params.get("metric_type", "")
                index = meta.IndexInfo(field_name=index.field_name, index_name=index.index_name,
                                       index_type="AUTOINDEX", params={"index_type": "AUTOINDEX", "metric_type": metric})
            adapter.create_index(t.db, t.name, index)
    state["state"] = "created"
    journal.save()


def import_data(adapter: MilvusAdapter, stores: Stores, bdir: str, t: Target, request: RestoreRequest,
                settings: CopySettings, show_progress: bool, journal: Journal) -> int:
    c = t.source
    state = journal.collection(t)
    parts = [p for p in c.partition_backups if p.segment_backups
             and not state["partitions"].get(p.partition_name, {}).get("done")]
    if not parts:
        return 0
    staging = ""
    import_root = bdir
    try:
        if not stores.same_bucket:
            # Milvus reads import files only from its own bucket: stage the segments there.
            # At the bucket root like the Go tool's restore-temp dirs, outside Milvus's rootPath.
            # A resumed run reuses its staging prefix: copies already there are skipped.
            prefix = state["staging"] or f"mbackup-restore-{uuid.uuid4().hex[:12]}"
            state["staging"] = prefix
            journal.save()
            import_root = f"{prefix}/{bdir}"
            files = [(ObjectInfo(key, size), f"{prefix}/{key}")
                     for p in parts for s in p.segment_backups for _, key, size in meta.segment_files(bdir, s)]
            staging = prefix
            present = {k: size for k, size, _ in stores.milvus.store.list(prefix)}
            plan = Plan(jobs=[(o, k) for o, k in files if present.get(k) != o.size],
                        skipped=[o for o, k in files if present.get(k) == o.size])
            report = run_plan(plan, stores.backup, stores.milvus, settings,
                              show_progress=show_progress, label=f"stage {t.label}")
            report.raise_for_failures(RestoreError, f"staging {t.label} into the Milvus bucket failed")
        jobs = []
        for p in parts:
            has_delta = any(fb.binlogs for s in p.segment_backups for fb in s.deltalogs)
            dirs = meta.partition_import_dirs(import_root, c.collection_id, p.partition_id, with_delta=has_delta)
            rows = sum(s.num_of_rows for s in p.segment_backups)
            jobs.append((p.partition_name, [dirs.insert or "", dirs.delta or ""], rows))
        wait_imports(adapter, t, jobs, request, show_progress, journal)
        imported = len(jobs)
    except RestoreError:
        _remove_staged(stores, staging, request)
        raise
    # Success removes the staged copies; an interruption keeps them (imports in flight read
    # them, and the journal lets the next run reuse them).
    _remove_staged(stores, staging, request)
    return imported


def _remove_staged(stores: Stores, prefix: str, request: RestoreRequest) -> None:
    if prefix and not request.keep_temp_files:
        keys = [k for k, _, _ in stores.milvus.store.list(prefix)]
        stores.milvus.store.delete_many(keys, 32)


def wait_imports(adapter: MilvusAdapter, t: Target, jobs: list[tuple[str, list[str], int]], request: RestoreRequest,
                 show_progress: bool, journal: Journal) -> None:
    """Run import jobs, at most ``request.import_jobs`` at once, until all complete. Jobs an
    interrupted run started are waited for, not started again; a failed one is redone."""
    state = journal.collection(t)["partitions"]
    pending = []
    running: dict[str, tuple[str, float, int]] = {}  # job id -> (partition, last change, progress)
    expected: dict[str, int] = {}
    for partition, files, rows in jobs:
        job = state.get(partition, {}).get("job")
        if job and adapter.import_status(t.db, job).state != ImportState.FAILED:
            running[job] = (partition, time.monotonic(), -1)
            expected[job] = rows
        else:
            pending.append((partition, files, rows))
    done = 0
    shown, shown_at = "", 0.0
    while pending or running:
        while pending and len(running) < max(1, request.import_jobs):
            partition, files, rows = pending.pop(0)
            job = adapter.start_import(t.db, t.name, partition, files)
            state[partition] = {"job": job, "done": False}
            journal.save()
            running[job] = (partition, time.monotonic(), -1)
            expected[job] = rows
        time.sleep(1.0)
        total_progress = 0
        for job, (partition, changed, last) in list(running.items()):
            status = adapter.import_status(t.db, job)
            if status.state == ImportState.FAILED:
                raise RestoreError(f"import of {t.label} partition {partition!r} failed: {status.reason or 'no reason given'}")
            if status.state == ImportState.COMPLETED:
                # Milvus 2.3 reports an import of prefixes it found empty as completed.
                if status.rows == 0 and expected[job] > 0:
                    raise RestoreError(f"import of {t.label} partition {partition!r} completed without rows: Milvus "
                                       f"found no binlogs under {running_files(jobs, partition)}; check that "
                                       "milvus.storage.bucketName and rootPath name Milvus's own bucket")
                del running[job]
                state[partition]["done"] = True
                journal.save()
                done += 1
                continue
            if status.progress != last:
                running[job] = (partition, time.monotonic(), status.progress)
            elif time.monotonic() - changed > request.import_timeout:
                raise RestoreError(f"import of {t.label} partition {partition!r} made no progress for "
                                   f"{request.import_timeout:.0f}s (job {job}); check the Milvus logs")
            total_progress += max(status.progress, 0)
        line = f"restore {t.label}: {done}/{len(jobs)} import jobs done, {(100 * done + total_progress) / len(jobs):.0f}%"
        if show_progress and (line != shown or time.monotonic() - shown_at > 10):
            print(line, file=sys.stderr, flush=True)
            shown, shown_at = line, time.monotonic()


def running_files(jobs: list[tuple[str, list[str], int]], partition: str) -> str:
    return next((files[0] for p, files, _ in jobs if p == partition), "?")
