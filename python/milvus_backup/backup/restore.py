"""Restore a backup: what ``mbackup restore`` does.

Plan every target name and check them all before changing anything (and that the target's
Milvus line can take what the backup holds: compat.py); then per collection:
create the database, collection (from the backed-up schema) and partitions, indexes when
asked, and import the binlogs with Milvus's bulk import in backup mode. Milvus imports only
from its own bucket, so a backup kept elsewhere is first staged into that bucket (by the
engine, server-side when it can) and the staged copies are removed afterwards. When the
imports of a partition complete, the rows Milvus wrote are compared with the backup's.

A journal in the Milvus bucket lets an interrupted restore resume; it is bound to the request
that made it and to the ids of the collections it restored into, and used for nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..config.params import BY_KEY, MAX_IMPORT_JOBS
from ..errors import IntegrityError, MBackupError, PartialError, UnreachableError
from ..format import meta, untrusted
from ..milvus.adapters.base import (
    CreateCollectionSpec,
    ImportJob,
    ImportState,
    ImportStatus,
    MilvusAdapter,
    data_segments,
)
from ..milvus.binlog import BinlogError, count_records
from ..storage.location import Location, NotFound, ObjectInfo
from ..transfer.cancel import uninterrupted
from ..transfer.copy import CopySettings, Plan, run_plan
from ..transfer.progress import SILENT, Reporter
from . import manifest as manifests
from . import snapshot
from .catalog import Stores, backup_dir, read_backup
from .compat import check_restorable
from .lock import LockedError, StoreLock, is_held
from .verify import check_before_restore


class RestoreError(MBackupError):
    """A restore was refused or failed."""


class RowsDiffer(RestoreError, IntegrityError):
    """An import wrote other rows than the backup holds; a re-run fails the same way."""


class RestoreFailed(RestoreError, PartialError):
    """A restore stopped part way (an import failed, staging copies failed): its journal is
    kept, so running it again finishes it."""


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
    skip_l0: bool = False  # leave out L0 delete segments a target cannot import (rows they deleted come back)
    keep_temp_files: bool = BY_KEY["restore.keepTempFiles"].default
    import_jobs: int = BY_KEY["restore.concurrency.importJobs"].default  # at once, at most MAX_IMPORT_JOBS
    import_timeout: float = 3600.0  # seconds without progress before giving up
    force: bool = False  # skip the quick check of the backup (mbackup verify)
    discard_journal: bool = False  # forget interrupted restores instead (the CLI runs discard_journals)
    batch_imports: bool = BY_KEY["mbackup.batchImports"].default  # many segments per import job (REST)
    max_segments_per_job: int = BY_KEY["restore.maxSegmentsPerImportJob"].default  # with batch_imports
    rbac: bool = False  # restore users, roles, grants and privilege groups too

    def validate(self) -> None:
        """Refuse bad flags before reading the backup or connecting to Milvus."""
        meta.validate_backup_name(self.name)
        if self.discard_journal and (self.filters or self.suffix or self.renames or self.force or self.rbac
                                     or any(self.shape().values())):
            raise RestoreError("--discard-journal takes no other flag than -n: it discards every journal of the "
                               "backup and restores nothing")
        if self.suffix and self.renames:
            raise RestoreError("--suffix and --rename cannot be used together")
        if self.suffix and not re.fullmatch(r"\w+", self.suffix):
            raise RestoreError(f"invalid --suffix {self.suffix!r}: use letters, digits and _")
        if self.skip_create_collection and self.drop_exist_collection:
            raise RestoreError("--skip-create-collection and --drop-exist-collection cannot be used together")
        parse_renames(self.renames)
        if self.filters:
            from .create import parse_filters

            parse_filters(self.filters)

    def shape(self) -> dict[str, bool]:
        """The flags that change what is created or imported (targets aside)."""
        return {k: getattr(self, k) for k in ("rebuild_index", "use_auto_index", "drop_exist_collection",
                                              "drop_exist_index", "skip_create_collection", "meta_only", "load",
                                              "restore_aliases", "skip_l0", "batch_imports")}

    def command(self) -> str:
        """The command line that makes this request (shown to say which restore a journal is of)."""
        words = ["mbackup restore -n", self.name]
        for f in self.filters:
            words += ["--filter", f]
        if self.suffix:
            words += ["--suffix", self.suffix]
        for r in self.renames:
            words += ["--rename", r]
        words += ["--" + k.replace("_", "-") for k, on in self.shape().items() if on]
        return " ".join(words)


@dataclass
class Target:
    source: meta.CollectionBackupInfo
    db: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def source_label(self) -> str:
        return f"{self.source.db_name or 'default'}.{self.source.collection_name}"


JOURNAL_DIR = "mbackup-restore-journal"
_STAGING = re.compile(r"mbackup-restore-[0-9a-f]{12}")
_JOB = re.compile(r"([a-z]+:)?[0-9]+(,[0-9]+)*")  # an adapter's job id, "rest:" or such before it
_SHOWN = re.compile(r"[\w .,:*-]{1,1000}")  # what a journal's command may look like when shown


class Journal:
    """What an interrupted restore finished, kept in the target Milvus's bucket so running the
    same restore again resumes it: collections it made are not refused as existing,
    import jobs already done are skipped, and imports still running are waited for
    instead of started twice (which would duplicate rows).

    A journal is bound to what it describes. Its key is the validated backup name and a
    digest of the request (backup id, source and target of every collection, the flags that
    change what is created or imported): another request never reads it. Each collection's
    record holds the id Milvus gave the collection restored into; a record is used only
    while the collection under that name still has that id.

    ``collections[label]`` = {"state": "creating"|"created"|"done", "collection_id": id|None,
    "staging": prefix|None, "snapshot_job": id|None, "partitions": {job key: {"job": id|None, "done": bool,
    "rows": rows imported|None, "mismatch": [fewest, most, inserted, delete records]|None}}},
    by the key of each import job (:class:`ImportJob`; a partition's name where one job imports it).
    A snapshot-format restore's records go "restoring" (its RestoreExternalSnapshot job in
    ``snapshot_job``), "restored", "done", with no partitions.
    """

    def __init__(self, stores: Stores, request: RestoreRequest, info: meta.BackupInfo, targets: list[Target],
                 warn: Callable[[str], None]) -> None:
        self.location = stores.milvus
        self.name = request.name
        self.request = {"backup_id": info.id, "targets": {t.source_label: t.label for t in targets}, **request.shape()}
        if request.batch_imports:  # which segments share a job, and so the jobs' keys, depend on it
            self.request["max_segments_per_job"] = request.max_segments_per_job
        digest = hashlib.sha256(json.dumps(self.request, sort_keys=True).encode()).hexdigest()[:16]
        self.key = f"{JOURNAL_DIR}/{request.name}/{digest}.json"
        self.url = f"{stores.milvus.url}/{self.key}"
        self.lock_key = f"{JOURNAL_DIR}/{request.name}/{digest}.lock"
        self.data: dict[str, Any] = {"backup": request.name, "backup_id": info.id, "request": self.request,
                                     "command": request.command(), "collections": {}}
        for key in journal_keys(self.location, request.name):
            found = read_journal(self.location, key)
            if key != self.key:
                warn(f"{describe_journal(found)} is kept at {stores.milvus.url}/{key}; it is not this restore's and "
                     "is not used: run that command again to resume it, or discard it with "
                     f"mbackup restore -n {request.name} --discard-journal")
            elif found is None or found["request"] != self.request:
                warn(f"the journal at {self.url} is unreadable: ignored, this restore starts afresh")
            else:
                self.data = found

    def lock(self, warn: Callable[[str], None]) -> StoreLock:
        return StoreLock(self.location, self.lock_key, f"the restore of backup {self.name!r} this command makes",
                         command=self.data["command"], on_loss="run the same restore again", warn=warn)

    @contextlib.contextmanager
    def held(self, warn: Callable[[str], None]) -> Iterator[None]:
        """This restore run alone, for the ``with`` block: two runs of one restore at once would
        both start its import jobs (every row twice). The journal is read again once held: the
        other run may have moved it on."""
        with self.lock(warn):
            found = read_journal(self.location, self.key)  # None when there is none
            if found is not None and found["request"] == self.request:
                self.data = found
            yield

    def record(self, t: Target) -> dict[str, Any] | None:
        return self.data["collections"].get(t.label)

    def collection(self, t: Target) -> dict[str, Any]:
        return self.data["collections"].setdefault(
            t.label, {"state": "", "collection_id": None, "staging": None, "partitions": {}})

    def owns(self, t: Target, collection_id: int | None) -> bool:
        """Is the collection now under ``t``'s name the one this journal restored into?"""
        record = self.record(t)
        return bool(record and collection_id and record.get("collection_id") == collection_id)

    def restart(self, t: Target) -> None:
        """Forget what was done for ``t`` (its collection is gone); keep the staged copies."""
        old = self.data["collections"].pop(t.label)
        self.collection(t)["staging"] = old.get("staging")

    def forget(self, t: Target) -> None:
        self.data["collections"].pop(t.label, None)

    @property
    def resuming(self) -> bool:
        return any(r.get("collection_id") or r.get("snapshot_job") for r in self.data["collections"].values())

    def save(self) -> None:
        self.location.write(self.key, json.dumps(self.data).encode())

    def remove(self) -> None:
        self.location.delete(self.key)

    @contextlib.contextmanager
    def kept_on_failure(self, warn: Callable[[str], None]) -> Iterator[None]:
        """Around a restore's work: removed when it all succeeds; after a failure kept if it
        holds anything to resume, and the error (or, on Ctrl-C, a warning) says so."""
        try:
            yield
        except MBackupError as e:
            kept = self.settle()
            if kept and isinstance(e, (UnreachableError, IntegrityError)):
                e.args = (f"{e}; {kept}",)  # the cause decides the exit code; the line says what is kept
                raise
            if kept:
                raise RestoreFailed(f"{e}; {kept}") from e
            raise
        except BaseException:
            kept = self.settle()
            if kept:
                warn(kept)
            raise
        self.remove()

    def settle(self) -> str:
        """After a failure: keep the journal if it holds anything to resume, else remove it.
        Returns the line that says it was kept ("" when it was removed)."""
        records = self.data["collections"]
        for label in [k for k, r in records.items()
                      if not (r.get("collection_id") or r.get("staging") or r.get("snapshot_job"))]:
            del records[label]  # nothing was made for it
        if not records:
            self.remove()
            return ""
        self.save()
        return (f"the journal of this restore was kept at {self.url}: run the same command again to resume it, "
                f"or discard it with mbackup restore -n {self.name} --discard-journal")


def read_journal(location: Location, key: str) -> dict[str, Any] | None:
    """A journal as stored, or None when it is unreadable or not shaped like one. Nothing in it
    is used unchecked: staging prefixes (which get deleted) and job ids must look like ours,
    and a record missing a field gets its empty value, as a fresh record has."""
    try:
        data = untrusted.load_json(location.read(key), 16 << 20)  # size and nesting capped
        records = data["collections"]
        ok = isinstance(data["request"], dict) and isinstance(records, dict) and all(
            isinstance(r, dict) and isinstance(r.get("partitions"), dict)
            and r.get("state", "") in ("", "creating", "created", "done", "restoring", "restored")
            and (r.get("snapshot_job") is None or type(r["snapshot_job"]) is int)
            and (r.get("staging") is None or _STAGING.fullmatch(str(r["staging"])))
            and (r.get("collection_id") is None or type(r["collection_id"]) is int)
            and all(isinstance(p, dict) and (not p.get("job") or _JOB.fullmatch(str(p["job"])))
                    and isinstance(p.get("done", False), bool)
                    and (p.get("rows") is None or type(p["rows"]) is int)
                    and (p.get("mismatch") is None or (isinstance(p["mismatch"], list) and len(p["mismatch"]) == 4
                                                       and all(type(n) is int for n in p["mismatch"])))
                    for p in r["partitions"].values())
            for r in records.values())
    except (NotFound, ValueError, TypeError, KeyError):
        return None
    if not ok:
        return None
    for r in records.values():
        for name, empty in (("state", ""), ("collection_id", None), ("staging", None), ("snapshot_job", None)):
            r.setdefault(name, empty)
        for p in r["partitions"].values():
            for name, unset in (("job", None), ("done", False), ("rows", None), ("mismatch", None)):
                p.setdefault(name, unset)
    return data


def describe_journal(data: dict[str, Any] | None) -> str:
    """Which restore a journal is of, in words; nothing unchecked from it is shown."""
    if data is None:
        return "an unreadable restore journal"
    command = data.get("command")
    shown = command if isinstance(command, str) and _SHOWN.fullmatch(command) else "an unknown command"
    made = ", ".join(sorted(label for label in data["collections"] if _SHOWN.fullmatch(str(label)))) or "nothing yet"
    return f"the journal of `{shown}` (restored into: {made})"


def journal_keys(location: Location, name: str) -> list[str]:
    """The journals of restores of backup ``name`` (not their locks)."""
    return [o.key for o in location.list(f"{JOURNAL_DIR}/{name}/") if o.key.endswith(".json")]


def discard_journals(stores: Stores, name: str, *, dry_run: bool = False) -> list[str]:
    """Forget every interrupted restore of backup ``name`` into this Milvus: delete its
    journals and the staged copies they name. Collections they made are left as they are.
    A journal a running restore holds is refused. Returns one line per journal discarded
    (with ``dry_run``: would be, and nothing is)."""
    meta.validate_backup_name(name)
    milvus, lines = stores.milvus, []
    for key in journal_keys(milvus, name):
        if is_held(milvus, key.removesuffix(".json") + ".lock"):
            raise LockedError(f"a restore of backup {name!r} is running with the journal {milvus.url}/{key}: wait "
                              "for it to end (or stop it), then discard again")
    for key in journal_keys(milvus, name):
        data = read_journal(milvus, key)
        if dry_run:
            lines.append(f"would discard {describe_journal(data)} and the staged copies it names")
            continue
        for record in (data or {"collections": {}})["collections"].values():
            left = remove_staged(stores, record.get("staging"), keep=False)
            if left:  # the journal is what finds them again
                raise RestoreError(f"{left}: the journal {stores.milvus.url}/{key} is kept; run the discard again")
        milvus.delete(key)
        left = "; the collections it restored into are left as they are" if data and data["collections"] else ""
        lines.append(f"discarded {describe_journal(data)}{left}")
    return lines


def _split(name: str) -> tuple[str, str]:
    db, dot, coll = name.partition(".")
    return (db, coll) if dot else ("default", name)


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
        from .create import parse_filters

        wanted = parse_filters(request.filters)
        # A database not in wanted wants nothing; None (db.*) wants every collection.
        targets = [t for t in targets if (names := wanted.get(t.db, [])) is None or t.name in names]
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
                  journal: Journal | None = None, warn: Callable[[str], None] = lambda m: None) -> None:
    """Every refusal happens here, before anything is created or dropped. A collection an
    interrupted run of this same restore restored into is not refused: it is resumed, if it
    is still that collection (same id). A journal record whose collection is gone is
    restarted; one whose name now holds another collection is never used."""
    if request.skip_create_collection and request.drop_exist_collection:
        raise RestoreError("--skip-create-collection and --drop-exist-collection cannot be used together")
    if request.rbac and not adapter.can_restore_rbac():
        raise RestoreError(f"--rbac: Milvus {adapter.version} cannot restore users and roles: restore without --rbac")
    databases = set(adapter.list_databases())
    gone = []
    for t in targets:
        exists = t.db in databases and adapter.has_collection(t.db, t.name)
        ours = journal is not None and exists and journal.owns(t, adapter.collection_id(t.db, t.name))
        if journal is not None and journal.record(t) is not None and not ours:
            if exists and request.skip_create_collection:
                raise RestoreError(f"collection {t.label} is not the collection an interrupted run of this restore "
                                   "imported into (it was dropped or made again since): discard that run's journal "
                                   f"with mbackup restore -n {request.name} --discard-journal, then restore again")
            gone.append(t)
        if exists and not ours and not request.drop_exist_collection and not request.skip_create_collection:
            raise RestoreError(f"collection {t.label} already exists: restore with --suffix, --rename, "
                               "or --drop-exist-collection to replace it")
        if not exists and request.skip_create_collection:
            raise RestoreError(f"collection {t.label} does not exist, and --skip-create-collection needs it to")
    for t in gone:
        warn(f"{t.label} is no longer the collection an interrupted run of this restore restored into: "
             "it is restored afresh")
        assert journal is not None  # only a journal's records are ever gone
        journal.restart(t)


@dataclass
class RestoreResult:
    backup: str
    collections: list[dict[str, Any]]
    seconds: float
    rbac: dict[str, Any] | None = None  # with --rbac: what was created

    def summary(self) -> dict[str, Any]:
        rbac = {} if self.rbac is None else {"rbac": self.rbac}
        return {"backup": self.backup, "collections": self.collections, "seconds": round(self.seconds, 3), **rbac}


def restore_rbac(adapter: MilvusAdapter, info: meta.BackupInfo, warn: Callable[[str], None]) -> dict[str, Any]:
    """The backup's users, roles, grants and privilege groups the target lacks (--rbac). A user
    the target has already is left as it is, its password unchanged, and named in a warning."""
    if not info.rbac_meta:
        warn(f"backup {info.name!r} holds no users or roles (it was made without --rbac): none restored")
        return {"users": [], "roles": [], "grants": 0, "privilege_groups": [], "existing_users": []}
    done = adapter.restore_rbac(info.rbac_meta)
    if done.unsupported_groups:
        warn(f"privilege groups not restored, Milvus {adapter.version} has none (2.5 and newer do): "
             f"{', '.join(done.unsupported_groups)}; nor the {done.unsupported_grants} grants of them")
    if done.existing_users:
        warn(f"users already on Milvus are left as they are, their passwords unchanged: {', '.join(done.existing_users)}")
    return {"users": done.users, "roles": done.roles, "grants": done.grants, "privilege_groups": done.privilege_groups,
            "existing_users": done.existing_users}


def create_databases(adapter: MilvusAdapter, info: meta.BackupInfo, targets: list[Target],
                     warn: Callable[[str], None]) -> None:
    """Create the target databases that do not exist yet and whose source database has
    backed-up properties, with those properties (the first source's, where several go to one
    target). Every other database is created as its first collection is."""
    backed_up = {d.db_name or "default": d.properties for d in info.database_backups if d.properties}
    wanted: dict[str, list[meta.KeyValuePair]] = {}
    for t in targets:
        if (t.source.db_name or "default") in backed_up:
            wanted.setdefault(t.db, backed_up[t.source.db_name or "default"])
    if not wanted:
        return
    existing = set(adapter.list_databases())
    for db, properties in wanted.items():
        if db in existing:
            continue
        if adapter.can_restore_database_properties():
            adapter.create_database(db, properties)  # type: ignore[call-arg]
        else:
            warn(f"database {db} is created without its backed-up properties "
                 f"({', '.join(kv.key for kv in properties)}): Milvus {adapter.version} keeps none")
            adapter.create_database(db)


@dataclass
class RestorePlan:
    """What a restore would do, found by reading only: every refusal of the real run has
    happened once :meth:`check` has run (``mbackup restore --dry-run`` prints it)."""

    adapter: MilvusAdapter
    request: RestoreRequest
    info: meta.BackupInfo
    targets: list[Target]
    journal: Journal

    @property
    def snapshot(self) -> bool:
        return self.info.format == meta.FORMAT_SNAPSHOT

    def check(self, warn: Callable[[str], None]) -> None:
        """The refusals about the targets (:func:`check_targets`, with what the journal of an
        interrupted run holds)."""
        if self.snapshot:
            _adopt_snapshot_jobs(self.adapter, self.journal, self.targets)
        check_targets(self.adapter, self.targets, self.request, self.journal, warn)

    @functools.cached_property
    def existing(self) -> set[str]:
        """Labels of the targets that exist now: asked only to print the plan, not by a real run."""
        databases = set(self.adapter.list_databases())
        return {t.label for t in self.targets if t.db in databases and self.adapter.has_collection(t.db, t.name)}

    def summary(self) -> dict[str, Any]:
        return {"dry_run": True, "backup": self.request.name, "collections": [
            {"source": t.source_label, "target": t.label, "rows_in_backup": rows_in_backup(t.source), "action": self._action(t)}
            for t in self.targets]}

    def _action(self, t: Target) -> str:
        record = self.journal.record(t)
        if record and record.get("state") == "done" and t.label in self.existing:
            return "already restored"
        if t.label in self.existing:
            if self.journal.owns(t, self.adapter.collection_id(t.db, t.name)):
                return "resume"
            if self.request.drop_exist_collection:
                return "drop and create"
            return "import into existing"  # --skip-create-collection: check_targets refused the rest
        return "create"

    def lines(self) -> list[str]:
        return [f"would restore {t.source_label} as {t.label} ({self._action(t)}{self._data(t)})" for t in self.targets]

    def _data(self, t: Target) -> str:
        if self.snapshot:
            return " from its snapshot bundle"  # Milvus restores it: rows are not counted
        return "" if self.request.meta_only else f" and import {rows_in_backup(t.source):,} rows"


def plan_restore(adapter: MilvusAdapter | Callable[[], MilvusAdapter], stores: Stores, request: RestoreRequest,
                 reporter: Reporter = SILENT) -> RestorePlan:
    """``adapter`` may be a function that connects: it is called only once the backup has been
    read and checked, so a damaged backup or a bad flag is refused without touching Milvus.
    The targets are checked by :meth:`RestorePlan.check` (in a real run, under the journal's lock)."""
    warn = reporter.warning
    request.validate()
    if not request.force:
        check_before_restore(stores, request.name, meta_only=request.meta_only)
    info = read_backup(stores, request.name)
    if info.format == meta.FORMAT_SNAPSHOT:
        snapshot.refuse_flags(request.name, request.shape())
    targets = plan_targets(info, request)
    if not isinstance(adapter, MilvusAdapter):
        with reporter.step("connect"):
            adapter = adapter()
    if request.batch_imports and not adapter.can_batch_imports():
        # Batching only changes how many segments share an import job, never what is restored:
        # a script written for the Go tool's --use_v2_restore still runs against this line.
        warn(f"--use-v2-restore (--batch-imports, mbackup.batchImports): Milvus {adapter.version} takes no batched "
             "imports: importing without batching")
        request = dataclasses.replace(request, batch_imports=False)
    named = [(t.source_label if t.label == t.source_label else f"{t.source_label} (restored as {t.label})", t.source)
             for t in targets]  # --filter takes target names
    for line in check_restorable(info, named, adapter.capabilities, adapter.version, skip_l0=request.skip_l0,
                                 meta_only=request.meta_only):
        warn(line)
    if info.format == meta.FORMAT_SNAPSHOT:
        snapshot.bundle_place(stores, backup_dir(stores, request.name))  # a store Milvus cannot read: refused here
    return RestorePlan(adapter, request, info, targets, Journal(stores, request, info, targets, warn))


def restore_backup(adapter: MilvusAdapter | Callable[[], MilvusAdapter], stores: Stores, request: RestoreRequest,
                   settings: CopySettings, *, reporter: Reporter = SILENT) -> RestoreResult:
    """``adapter`` may be a function that connects (see :func:`plan_restore`). Warnings and
    progress go to ``reporter``."""
    with reporter.step("restore", backup=request.name):
        started = time.monotonic()
        plan = plan_restore(adapter, stores, request, reporter)
        with plan.journal.held(reporter.warning):
            plan.check(reporter.warning)
            if plan.snapshot:
                return RestoreResult(request.name, restore_snapshots(plan, stores, reporter), time.monotonic() - started)
            results, rbac = _restore_binlogs(plan, stores, settings, reporter)
            return RestoreResult(request.name, results, time.monotonic() - started, rbac)


def _restore_binlogs(plan: RestorePlan, stores: Stores, settings: CopySettings, reporter: Reporter
                     ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    adapter, request, info, targets, journal = plan.adapter, plan.request, plan.info, plan.targets, plan.journal
    warn = reporter.warning
    if journal.resuming:
        warn(f"resuming an interrupted restore of {request.name!r}: finished steps are skipped")
    bdir = backup_dir(stores, request.name)
    results = []
    rbac = restore_rbac(adapter, info, warn) if request.rbac else None
    with journal.kept_on_failure(warn):
        create_databases(adapter, info, targets, warn)
        for t in targets:
            results.append(restore_collection(adapter, stores, bdir, t, request, settings, reporter, journal))
    return results, rbac


def restore_snapshots(plan: RestorePlan, stores: Stores, reporter: Reporter) -> list[dict[str, Any]]:
    """A snapshot-format backup: Milvus restores each collection from its bundle. Every
    refusal comes first (:func:`plan_restore`, :meth:`RestorePlan.check`); a collection Milvus
    failed to restore is not left behind. The journal (as for the binlog format) records each
    collection's restore job, so running the same restore again after an interruption waits
    for a job still running, and does not restore again what a finished one made."""
    adapter, request, targets, journal = plan.adapter, plan.request, plan.targets, plan.journal
    warn = reporter.warning
    if journal.resuming:
        warn(f"resuming an interrupted restore of {request.name!r}: collections restored are not restored again")
    bdir = backup_dir(stores, request.name)
    existing = set(adapter.list_databases())
    for db in dict.fromkeys(t.db for t in targets if t.db not in existing):
        adapter.create_database(db)  # all of them first: a line that cannot refuses before any restore
    results = []
    with journal.kept_on_failure(warn):
        for t in targets:
            results.append(_restore_snapshot(adapter, stores, bdir, t, request, journal, reporter))
    return results


def _adopt_snapshot_jobs(adapter: MilvusAdapter, journal: Journal, targets: list[Target]) -> None:
    """The collection an interrupted run's restore job makes is this restore's while that job
    restores into its name and has not failed (a job names no collection id to compare).
    Otherwise the record is forgotten, and a collection left there is refused as existing."""
    for t in targets:
        record = journal.record(t)
        if not record or record.get("collection_id") or not record.get("snapshot_job"):
            continue
        try:
            job = adapter.restore_snapshot_state(record["snapshot_job"])
        except MBackupError:
            job = None
        if job is not None and (job.target[0] or "default", job.target[1]) == (t.db, t.name) \
                and job.state != ImportState.FAILED and adapter.has_collection(t.db, t.name):
            record["collection_id"] = adapter.collection_id(t.db, t.name)
        else:
            journal.forget(t)


def _restore_snapshot(adapter: MilvusAdapter, stores: Stores, bdir: str, t: Target, request: RestoreRequest,
                      journal: Journal, reporter: Reporter) -> dict[str, Any]:
    record = journal.collection(t)
    # What an interrupted run finished: reported as restored in no time.
    result = {"source": t.source_label, "target": t.label, "snapshot_job": record.get("snapshot_job"), "seconds": 0.0}
    if record["state"] == "done":
        return result
    if record["state"] != "restored":
        if not record.get("snapshot_job") and request.drop_exist_collection and adapter.has_collection(t.db, t.name):
            adapter.drop_collection(t.db, t.name)

        def started(job: int) -> None:
            record.update(state="restoring", snapshot_job=job)
            journal.save()

        try:
            with reporter.step("import", collection=t.label):
                result = snapshot.restore_collection(adapter, stores, bdir, t.db, t.name, t.source,
                                                     job_id=record.get("snapshot_job"), started=started)
        except MBackupError:
            journal.forget(t)  # the job failed, and what it made is dropped: nothing to resume
            raise
        record.update(state="restored", collection_id=adapter.collection_id(t.db, t.name))
        journal.save()
    if request.load and t.source.load_state == meta.LOAD_STATE_LOADED:
        with reporter.step("load", collection=t.label):
            adapter.load_collection(t.db, t.name)
    if request.restore_aliases:
        for alias in t.source.aliases:
            adapter.create_alias(t.db, t.name, alias)
    record["state"] = "done"
    journal.save()
    return result


def _spec(t: Target) -> CreateCollectionSpec:
    c = t.source
    schema = c.schema or meta.CollectionSchema()
    partition_key = any(f.is_partition_key for f in schema.fields)
    return CreateCollectionSpec(
        db_name=t.db, collection_name=t.name, schema=schema, shards_num=c.shards_num or 1,
        consistency_level=c.consistency_level, properties=list(c.properties),
        num_partitions=len(c.partition_backups) if partition_key else 0)


def restore_collection(adapter: MilvusAdapter, stores: Stores, bdir: str, t: Target, request: RestoreRequest,
                       settings: CopySettings, reporter: Reporter, journal: Journal) -> dict[str, Any]:
    c = t.source
    started = time.monotonic()
    state = journal.collection(t)
    rows = rows_in_backup(c)
    if state["state"] == "done":
        return {"source": t.source_label, "target": t.label, "rows_in_backup": rows,
                "rows_imported": _rows_imported(state), "import_jobs": 0, "seconds": 0.0,
                "resumed": "already restored"}
    jobs = 0
    try:
        if state["state"] != "created":
            with reporter.step("create collection", collection=t.label):
                _create_collection(adapter, t, request, state, journal, reporter)
        if not request.meta_only:
            with reporter.step("import", collection=t.label):
                jobs = import_data(adapter, stores, bdir, t, request, settings, reporter, journal)
    except MBackupError:
        if not _imported_any(state):
            # Nothing was imported into the collection (Milvus found no binlogs, say): undo
            # what this restore made rather than leave an empty collection that a fixed
            # re-run would refuse as existing. Nothing is lost: a re-run makes it again.
            with contextlib.suppress(Exception):  # the error at hand is the one to show
                if not request.skip_create_collection and journal.owns(t, adapter.collection_id(t.db, t.name)):
                    adapter.drop_collection(t.db, t.name)
                remove_staged(stores, state["staging"], request.keep_temp_files)
                journal.forget(t)
        raise
    if request.load and c.load_state == meta.LOAD_STATE_LOADED:
        with reporter.step("load", collection=t.label):
            adapter.load_collection(t.db, t.name)
    elif request.load and c.load_state != meta.LOAD_STATE_LOADED:
        reporter.warning(f"{t.label} was not loaded when backed up ({c.load_state or 'NotLoad'}): left unloaded")
    if request.restore_aliases:
        for alias in c.aliases:
            adapter.create_alias(t.db, t.name, alias)
    state["state"] = "done"
    journal.save()
    return {"source": t.source_label, "target": t.label, "rows_in_backup": rows,
            "rows_imported": _rows_imported(state), "import_jobs": jobs,
            "seconds": round(time.monotonic() - started, 3)}


def rows_in_backup(c: meta.CollectionBackupInfo) -> int:
    return sum(s.num_of_rows for p in c.partition_backups for s in data_segments(p))


def _rows_imported(state: dict[str, Any]) -> int:
    return sum(p.get("rows") or 0 for p in state["partitions"].values())


def _imported_any(state: dict[str, Any]) -> bool:
    """Did any import write rows into the collection, or may one still be writing?"""
    return any((p.get("rows") or 0) > 0 or (p.get("job") and p.get("rows") is None)
               for p in state["partitions"].values())


def _create_collection(adapter: MilvusAdapter, t: Target, request: RestoreRequest, state: dict[str, Any],
                       journal: Journal, reporter: Reporter) -> None:
    """Database, collection, partitions and indexes; recorded so a re-run does not redo them.
    The collection's id is recorded as soon as there is one: the journal's record holds for
    that collection only. A collection left half-made by an interrupted run ("creating",
    and still that collection: check_targets saw to it) holds no data yet: it is dropped and
    made again."""
    c = t.source
    adapter.create_database(t.db)
    if request.skip_create_collection:
        state["collection_id"] = adapter.collection_id(t.db, t.name)
        state["state"] = "creating"
        journal.save()
    else:
        exists = adapter.has_collection(t.db, t.name)
        if exists and (request.drop_exist_collection or state["state"] == "creating"):
            adapter.drop_collection(t.db, t.name)
        state["state"], state["collection_id"] = "creating", None
        journal.save()
        with uninterrupted():  # made and recorded as ours, or neither
            adapter.create_collection(_spec(t))
            state["collection_id"] = adapter.collection_id(t.db, t.name)
            journal.save()
    partition_key = any(f.is_partition_key for f in (c.schema.fields if c.schema else []))
    if not partition_key:
        for p in c.partition_backups:
            if p.partition_name != "_default":
                adapter.create_partition(t.db, t.name, p.partition_name)
    if request.drop_exist_index:
        adapter.drop_indexes(t.db, t.name)
    if request.rebuild_index:
        with reporter.step("index", collection=t.label):
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


@dataclass
class PlannedImport:
    """One import job of a collection and what the backup holds for it."""

    job: ImportJob
    inserted: int  # rows in its insert logs: the segments' num_of_rows
    delete_records: int  # records in the delta logs of its data segments

    @property
    def what(self) -> str:
        return self.job.what


def import_data(adapter: MilvusAdapter, stores: Stores, bdir: str, t: Target, request: RestoreRequest,
                settings: CopySettings, reporter: Reporter, journal: Journal) -> int:
    c = t.source
    state = journal.collection(t)
    batch = request.max_segments_per_job if request.batch_imports else 0
    jobs = [j for j in adapter.import_jobs(c, bdir, batch=batch) if not state["partitions"].get(j.key, {}).get("done")]
    if not jobs:
        return 0
    for job in jobs:
        # A job whose rows did not add up stays failed: a re-run must not import on top.
        earlier = state["partitions"].get(job.key, {})
        if earlier.get("mismatch"):
            # The four numbers check_rows records (read_journal checks them); mypy cannot know a list's length.
            raise RowsDiffer(rows_differ(t, job.what, *earlier["mismatch"], earlier["rows"], request.name))  # type: ignore[call-arg]
    # An incremental backup's binlogs are in the root's pool, not at their Go-layout keys.
    pooled = pool_sources(stores, request.name, bdir)
    if not stores.same_bucket or pooled:
        # Milvus reads import files only from its own bucket, in the Go layout: stage the
        # segments there (server-side within one bucket). At the bucket root like the Go
        # tool's restore-temp dirs, outside Milvus's rootPath. A resumed run reuses its
        # staging prefix: copies already there are skipped.
        prefix = state["staging"] or new_staging_prefix()
        state["staging"] = prefix
        journal.save()
        stage_segments(stores, bdir, [s for j in jobs for s in j.segments], prefix, pooled, settings, reporter,
                       t.label, resume="run the same restore again to finish it")
        jobs = [j.under(prefix) for j in jobs]
    deletes = count_deletes(stores, bdir, jobs, t, reporter.warning, pooled)
    planned = [PlannedImport(j, sum(s.num_of_rows for s in j.segments if not s.is_l0), deletes[j.key]) for j in jobs]
    wait_imports(adapter, t, planned, request, reporter, journal)
    # Success removes the staged copies; a failure with imports done or in flight keeps
    # them (those imports read them, and the journal lets the next run reuse them).
    left = remove_staged(stores, state["staging"], request.keep_temp_files)
    if left:
        reporter.warning(f"{left}; the restore is complete: delete them with any S3 tool")
    return len(jobs)


def new_staging_prefix() -> str:
    """Where a restore stages binlogs in the Milvus bucket: at its root, like the Go tool's
    restore-temp dirs, named so that ``mbackup gc`` knows it as a restore's leftover."""
    return f"mbackup-restore-{uuid.uuid4().hex[:12]}"


def stage_segments(stores: Stores, bdir: str, segments: list[meta.SegmentBackupInfo], prefix: str,
                   pooled: dict[str, str], settings: CopySettings, reporter: Reporter, label: str, *,
                   resume: str) -> None:
    """Copy every file of ``segments`` to ``prefix/<its backup key>`` in the Milvus bucket
    (server-side within one bucket); copies already there are skipped. Milvus imports only
    from its own bucket."""
    files = [(ObjectInfo(pooled.get(key, key), size), f"{prefix}/{key}")
             for s in segments for _, key, size in meta.segment_files(bdir, s)]
    present = {o.key: o.size for o in stores.milvus.list(prefix)}
    plan = Plan(jobs=[(o, k) for o, k in files if present.get(k) != o.size],
                skipped=[o for o, k in files if present.get(k) == o.size])
    report = run_plan(plan, stores.backup, stores.milvus, settings, reporter=reporter, label=f"stage {label}")
    report.raise_for_failures(RestoreFailed, f"staging {label} into the Milvus bucket failed", resume=resume)


def pool_sources(stores: Stores, name: str, bdir: str) -> dict[str, str]:
    """Where the binlogs of an incremental backup are (see manifest.located); {} for a full
    backup, and for a damaged manifest (the quick check said so; with --force, the Go layout)."""
    try:
        return manifests.located(stores, bdir, manifests.read(stores, name))
    except ValueError:
        return {}


def count_deletes(stores: Stores, bdir: str, jobs: list[ImportJob], t: Target,
                  warn: Callable[[str], None], pooled: dict[str, str] | None = None) -> dict[str, int]:
    """Delete records in the delta logs of each job's data segments, by job key, read from
    the backup. A delta log missing from it (restored with --force) deletes nothing, in Milvus
    either; one that cannot be read leaves its job checked against the most rows only. L0
    segments are not counted: their deletes write no rows."""
    logs = [(j.key, key) for j in jobs for s in j.segments if not s.is_l0
            for _, key, _ in meta.segment_files(bdir, s) if "/binlogs/delta_log/" in key]
    counts = {j.key: 0 for j in jobs}
    if not logs:
        return counts

    def count(key: str) -> int | str:
        try:
            return count_records(stores.backup.read((pooled or {}).get(key, key)))
        except BinlogError as e:
            return str(e)
        except NotFound:
            return 0

    with ThreadPoolExecutor(min(16, len(logs))) as pool:
        found = list(pool.map(count, [key for _, key in logs]))
    inserted = {j.key: sum(s.num_of_rows for s in j.segments if not s.is_l0) for j in jobs}
    what = {j.key: j.what for j in jobs}
    for (job, key), n in zip(logs, found, strict=True):
        if isinstance(n, str):
            warn(f"cannot count the deletes in {key} ({n}): the rows of {t.label} {what[job]} are "
                 "checked against the most the backup holds only")
            counts[job] = inserted[job]
        else:
            counts[job] += n
    return counts


def remove_staged(stores: Stores, prefix: str | None, keep: bool) -> str:
    """Delete the staged copies under ``prefix`` (only a prefix of ours); "" when all went,
    else what was left behind."""
    if not prefix or not _STAGING.fullmatch(prefix) or keep:
        return ""
    keys = [o.key for o in stores.milvus.list(prefix)]
    failed = stores.milvus.delete_many(keys, 32)
    if not failed:
        return ""
    return (f"could not delete {len(failed)} of the {len(keys)} staged copies under {stores.milvus.url}/{prefix}/ "
            f"(first: {failed[0][0]}: {failed[0][1]})")


def wait_imports(adapter: MilvusAdapter, t: Target, jobs: list[PlannedImport], request: RestoreRequest,
                 reporter: Reporter, journal: Journal) -> None:
    """Run import jobs, at most ``request.import_jobs`` at once and each only once the jobs it
    waits for (:meth:`ImportJob.waits_for`: L0 deletes after their data) have completed,
    until all complete; check the rows each wrote; their progress goes to ``reporter``. Jobs
    an interrupted run started into this same collection are waited for, not started again; a
    failed one is redone."""
    record = journal.collection(t)
    state = record["partitions"]
    pending = []
    running: dict[str, tuple[PlannedImport, float, int]] = {}  # job id -> (import, last change, progress)
    for job in jobs:
        earlier = state.get(job.job.key, {})
        started = earlier.get("job")
        # rows is recorded once a job completes: a completed job not marked done wrote nothing.
        if started and earlier.get("rows") is None and _still_ours(adapter.import_status(t.db, started), record,
                                                                   job.job.partition):
            running[started] = (job, time.monotonic(), -1)
        else:
            pending.append(job)
    done = 0
    while pending or running:
        while len(running) < min(max(1, request.import_jobs), MAX_IMPORT_JOBS):
            unfinished = [j.job for j in pending] + [j.job for j, _, _ in running.values()]
            ready = next((j for j in pending if not any(j.job.waits_for(o) for o in unfinished)), None)
            if ready is None:
                break
            pending.remove(ready)
            with uninterrupted():  # a job started and not recorded would be started again: rows twice
                job_id = adapter.start_import_job(t.db, t.name, ready.job)
                state[ready.job.key] = {"job": job_id, "done": False, "rows": None, "mismatch": None}
                journal.save()
            running[job_id] = (ready, time.monotonic(), -1)
        time.sleep(1.0)
        total_progress = 0
        for job_id, (job, changed, last) in list(running.items()):
            key = job.job.key
            status = adapter.import_status(t.db, job_id)
            if status.state == ImportState.FAILED:
                state[key]["rows"] = 0  # a failed import leaves no rows behind
                journal.save()
                raise RestoreFailed(f"import of {t.label} {job.what} failed: {status.reason or 'no reason given'}")
            if status.state == ImportState.COMPLETED:
                del running[job_id]
                state[key]["rows"] = status.rows
                mismatch = None if job.job.l0 else check_rows(adapter, t, job, status.rows)
                if mismatch:
                    # Recorded: a re-run must not report success on top of the missing rows.
                    state[key]["mismatch"] = mismatch
                    journal.save()
                    # As above: *mismatch is four numbers.
                    raise RowsDiffer(rows_differ(t, job.what, *mismatch, status.rows, request.name))  # type: ignore[call-arg, arg-type]
                state[key]["done"] = True
                journal.save()
                done += 1
                continue
            if status.progress != last:
                running[job_id] = (job, time.monotonic(), status.progress)
            elif time.monotonic() - changed > request.import_timeout:
                raise RestoreFailed(f"import of {t.label} {job.what} made no progress for "
                                   f"{request.import_timeout:.0f}s (job {job_id}); check the Milvus logs")
            total_progress += max(status.progress, 0)
        reporter.imports(t.label, done, len(jobs), (100 * done + total_progress) / len(jobs))


def _still_ours(status: ImportStatus, record: dict[str, Any], partition: str) -> bool:
    """Is a journaled job one to wait for: not failed, and importing into this collection's partition?"""
    return (status.state != ImportState.FAILED
            and (not status.collection_id or status.collection_id == record["collection_id"])
            and (not status.partition or status.partition == partition))


def check_rows(adapter: MilvusAdapter, t: Target, job: PlannedImport, rows: int) -> list[int] | None:
    """None when the rows an import wrote add up to what the backup holds for its segments;
    else what to record: [fewest, most, inserted, delete records]. An import that found no
    binlogs at all is refused with the likely cause."""
    low, high = adapter.import_rows_range(job.inserted, job.delete_records)
    if low <= rows <= high:
        return None
    if adapter.import_found_nothing(rows):
        raise RestoreError(f"import of {t.label} {job.what} completed without rows: Milvus "
                           f"found no binlogs under {job.job.files[0][0]}; check that "
                           "milvus.storage.bucketName and rootPath name Milvus's own bucket")
    return [low, high, job.inserted, job.delete_records]


def rows_differ(t: Target, what: str, low: int, high: int, inserted: int, delete_records: int, rows: int,
                name: str) -> str:
    """``what``: the import job in words (``partition 'p'``, :attr:`ImportJob.what`)."""
    expected = f"{high:,}" if low == high else f"{low:,} to {high:,} ({inserted:,} rows, {delete_records:,} deletes)"
    return (f"rows of {t.label} {what} differ from the backup: expected {expected}, Milvus "
            f"imported {rows:,}; {t.label} is incomplete: check the backup with mbackup verify -n {name}, then "
            "restore it again with --drop-exist-collection")
