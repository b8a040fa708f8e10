"""The Go tool's REST API, ``/api/v1`` (its core/server/*.go), over mbackup's own flows.

Every answer but ``hello`` and ``check`` is the Go tool's envelope ``{requestId, code, msg,
data}`` with HTTP 200, its codes (0 success, omitted; 1 not supported; 3 failed; 400 bad
parameter; 404 not found), its JSON field names and integer enums. A body that is not the
message it should be gets HTTP 400 naming the field (the Go tool: 400 "Invalid request body").

Where mbackup answers differently, on purpose: jobs outlive the server (jobs.py), so
``get_backup`` and ``get_restore`` answer after a restart; ``get_backup`` by name reads the
storage whoever made the backup (state 2, progress 100 for a complete backup), and a name
with no backup and no job is code 404; a synchronous create answers with the backup (the Go
tool builds that answer, then drops it); ``restore_secondary`` runs backup/secondary.py as
a job that ``get_restore`` reports like a restore's; the restore fields mbackup cannot honour (``bucket_name``, ``maxShardNum``, ``skipParams``,
``truncateBinlogByTs``, ``ezkMapping``, plan overrides) are code 1 rather than ignored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backup.catalog import BackupNotFound, Stores, list_backups, meta_size, read_backup
from ..backup.create import CreateRequest, create_backup
from ..backup.delete import delete_backup
from ..backup.lock import LockedError
from ..backup.restore import RestoreRequest, plan_targets, restore_backup
from ..backup.secondary import SecondaryRequest, restore_secondary
from ..errors import MBackupError
from ..format import meta
from ..gocompat import create_strategy, legacy_filters
from ..milvus.adapters.base import MilvusAdapter
from ..transfer.copy import CopySettings
from . import requests
from .jobs import FAIL, SUCCESS, CollectionTask, Job, JobReporter, JobStore, Runner, backup_made_by, record_backup_id
from .metrics import Metrics

log = logging.getLogger(__name__)

HELLO = "Hello, This is backup service"

# ResponseCode (backup.proto)
SUCCESS_CODE, NOT_SUPPORT, FAIL_CODE, PARAMETER_ERROR, NOT_FOUND = 0, 1, 3, 400, 404

ASYNC_CREATE = "create backup is executing asynchronously"
ASYNC_RESTORE = "restore backup is executing asynchronously"


@dataclass
class Answer:
    """An envelope: ``data`` is a message, a list of messages, or None (JSON null); the
    delete answer (DeleteBackupResponse) has no ``data`` at all."""

    request_id: str
    code: int = SUCCESS_CODE
    msg: str = ""
    data: Any = None
    has_data: bool = True

    def body(self) -> bytes:
        parts = []
        if self.request_id:
            parts.append(b'"requestId":' + meta.dumps_compact(self.request_id))
        if self.code:
            parts.append(b'"code":' + str(self.code).encode())
        if self.msg:
            parts.append(b'"msg":' + meta.dumps_compact(self.msg))
        if not self.has_data:
            return b"{" + b",".join(parts) + b"}"
        if isinstance(self.data, list):
            data = b"[" + b",".join(meta.dumps_compact(d) for d in self.data) + b"]"
        else:
            data = b"null" if self.data is None else meta.dumps_compact(self.data)
        parts.append(b'"data":' + data)
        return b"{" + b",".join(parts) + b"}"


class Failed(Exception):
    """An answer other than success, raised from deep in a handler."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class Service:
    """What the handlers need: the stores, Milvus, the copy settings, the jobs."""

    stores: Stores
    milvus: Callable[[], MilvusAdapter]
    settings: CopySettings
    pause_gc: bool
    metrics: Metrics
    batch_imports: bool = False
    restore_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.stores)
        self.runner = Runner(self.jobs, {"create": self._run_create, "restore": self._run_restore,
                                         "restore_secondary": self._run_restore_secondary}, self.metrics)

    def stores_at(self, root: str) -> Stores:
        return self.stores if root == self.stores.backup_root else dataclasses.replace(self.stores, backup_root=root)

    # --- the flows, as jobs run them ------------------------------------------------------

    def _run_create(self, job: Job, reporter: JobReporter) -> None:
        stores = self.stores_at(job.root)
        if job.runs > 1 and backup_made_by(stores, job):
            return  # it had finished when its server stopped
        reporter.on_step = lambda name: record_backup_id(stores, job) if name == "metadata" else None
        result = create_backup(self.milvus, stores, CreateRequest(**job.request), self.settings, reporter=reporter,
                               announce=lambda line: log.info("create %s (job %s): %s", job.name, job.id, line))
        self.metrics.backup_succeeded((f"{c.db_name}.{c.collection_name}", c.size) for c in result.info.collection_backups)

    def _run_restore(self, job: Job, reporter: JobReporter) -> None:
        restore_backup(self.milvus, self.stores_at(job.root), RestoreRequest(**job.request), self.settings,
                       reporter=reporter)

    def _run_restore_secondary(self, job: Job, reporter: JobReporter) -> None:
        # Never resumed: a second run into the same secondary is refused by its checkpoint.
        restore_secondary(self.milvus, self.stores_at(job.root), SecondaryRequest(**job.request), self.settings,
                          reporter=reporter)

    # --- the routes --------------------------------------------------------------------------

    def create(self, body: bytes, request_id: str) -> Answer:
        req = requests.parse_body(body, requests.CREATE)
        answer = Answer(request_id or str(uuid.uuid4()))
        try:
            job = self.create_job(req, answer.request_id)
            thread = self._submit(job)
        except Failed as e:
            return dataclasses.replace(answer, code=e.code, msg=e.msg)
        if req.get("async"):
            return dataclasses.replace(answer, msg=ASYNC_CREATE)
        thread.join()
        if job.state_code != SUCCESS:
            return dataclasses.replace(answer, code=FAIL_CODE, msg=job.error)
        return dataclasses.replace(answer, msg="success", data=self._brief(job, self.stores_at(job.root)))

    def create_job(self, req: dict[str, Any], job_id: str) -> Job:
        """The create job a CreateBackupRequest's fields (parsed) ask for; Failed when they are wrong."""
        dbc = requests.db_collections(req["db_collections"], "db_collections") if "db_collections" in req else None
        try:
            name = meta.validate_backup_name(req.get("backup_name", ""))
            if "filter" in req:
                filters = requests.filter_items(req["filter"])
            elif dbc is not None:
                filters = legacy_filters(None, None, dbc)
            else:
                filters = legacy_filters(req.get("collection_names"), None, None)
            strategy = create_strategy(req.get("force", False), req.get("meta_only", False),
                                       req.get("with_index_extra", False), req.get("strategy", ""))
            create = CreateRequest(name=name, filters=filters, strategy=strategy, rbac=req.get("rbac", False),
                                   pause_gc=req.get("gc_pause_enable", False) or self.pause_gc,
                                   format=req.get("format") or "auto", incremental=req.get("incremental", False),
                                   base=req.get("base") or None)  # v2's fields: v1's request has none
            create.validate()
        except MBackupError as e:
            raise Failed(PARAMETER_ERROR, str(e)) from None
        if req.get("gc_pause_address"):
            log.warning("create %s: gc_pause_address is not used: mbackup pauses GC through milvus.management.endpoint",
                        job_id)
        root = req.get("backup_root_path") or self.stores.backup_root
        self.stores.backup.ensure_bucket()  # as the create itself would: the job is saved there first
        return Job(id=job_id, kind="create", name=name, request=dataclasses.asdict(create), root=root)

    def list(self, request_id: str, collection_name: str) -> Answer:
        answer = Answer(request_id)
        if collection_name:
            return dataclasses.replace(answer, code=PARAMETER_ERROR, msg="collection_name is deprecated")
        summaries = [meta.BackupSummary(id=e.info.id, name=e.name, size=e.info.size, milvus_version=e.info.milvus_version)
                     for e in list_backups(self.stores) if e.complete and e.info is not None]
        return dataclasses.replace(answer, data=summaries)

    def get_backup(self, request_id: str, name: str, backup_id: str, path: str) -> Answer:
        answer = Answer(request_id)
        if not name and not backup_id:
            return dataclasses.replace(answer, code=PARAMETER_ERROR,
                                       msg="empty backup name and backup id, please set a backup name or id")
        answer.request_id = request_id or str(uuid.uuid4())
        stores = self.stores_at(path or self.stores.backup_root)
        if backup_id:
            job = self.runner.load(backup_id)
            if job is None or job.kind != "create":
                return dataclasses.replace(answer, code=FAIL_CODE, msg=f"backup task {backup_id!r} not found")
        else:
            try:
                meta.validate_backup_name(name)
            except MBackupError as e:
                return dataclasses.replace(answer, code=PARAMETER_ERROR, msg=str(e))
            jobs = [self.runner.load(j.id) or j for j in self.jobs.all()
                    if j.kind == "create" and j.name == name and j.root == stores.backup_root]
            job = max(jobs, key=lambda j: j.start_time) if jobs else None
        try:
            brief = self._brief(job, stores, name, by_name=not backup_id)
        except BackupNotFound as e:
            return dataclasses.replace(answer, code=NOT_FOUND, msg=str(e))
        return dataclasses.replace(answer, msg="success", data=brief)

    def _brief(self, job: Job | None, stores: Stores, name: str = "", *, by_name: bool = False) -> meta.BackupInfoBrief:
        """The Go tool's BackupInfoBrief: the task's fields from the job, the backup's from
        storage once it is complete. Asked by name, storage is the truth: whoever made the
        backup, and a backup deleted since its job is not found."""
        name = job.name if job is not None else name
        info = None
        if job is None or job.state_code == SUCCESS:
            try:
                info = read_backup(stores, name)
            except BackupNotFound:
                if job is None or by_name:
                    raise
        brief = meta.backup_info_brief(info, meta_size(stores, name)) if info is not None else meta.BackupInfoBrief(name=name)
        if job is not None:
            brief.id, brief.state_code, brief.error_message = job.id, job.state_code, job.error
            brief.start_time, brief.end_time, brief.progress = job.start_time, job.end_time, job.progress()
        elif info is not None:
            brief.id, brief.state_code, brief.progress = info.id, SUCCESS, 100
        return brief

    def delete(self, request_id: str, name: str) -> Answer:
        answer = Answer(request_id or str(uuid.uuid4()), has_data=False)
        if not name:
            return dataclasses.replace(answer, code=PARAMETER_ERROR, msg="backup name is required")
        try:
            delete_backup(self.stores, name)
        except BackupNotFound as e:
            return dataclasses.replace(answer, code=FAIL_CODE, msg=str(e))
        return dataclasses.replace(answer, msg="success")

    def restore(self, body: bytes, request_id: str) -> Answer:
        req = requests.parse_body(body, requests.RESTORE)
        answer = Answer(request_id or req.get("requestId") or str(uuid.uuid4()))
        try:
            job = self.restore_job(req)
        except Failed as e:
            return dataclasses.replace(answer, code=e.code, msg=e.msg)
        return self._run_restore_job(job, answer, bool(req.get("async")))

    def _run_restore_job(self, job: Job, answer: Answer, run_async: bool) -> Answer:
        """Submit a restore (or restore secondary) job; answer at once when ``run_async``, else
        when it ends, with its task view."""
        try:
            thread = self._submit(job)
        except Failed as e:
            return dataclasses.replace(answer, code=e.code, msg=e.msg)
        if run_async:
            return dataclasses.replace(answer, msg=ASYNC_RESTORE, data=restore_view(job))
        thread.join()
        if job.state_code == FAIL:
            return dataclasses.replace(answer, code=FAIL_CODE, msg=job.error)
        return dataclasses.replace(answer, msg="success", data=restore_view(job))

    def restore_job(self, req: dict[str, Any]) -> Job:
        """The restore job a RestoreBackupRequest's fields (parsed) ask for; Failed when they are wrong."""
        for key in ("db_collections", "db_collections_after_rename"):
            if key in req:
                req[key] = requests.db_collections(req[key], key)
        try:
            restore, root = self._restore_request(req)
            stores = self.stores_at(root)
            try:
                info = read_backup(stores, restore.name)
            except BackupNotFound:
                raise Failed(PARAMETER_ERROR, f"backup {restore.name} not found") from None
            targets = plan_targets(info, restore)
        except MBackupError as e:
            raise Failed(PARAMETER_ERROR, str(e)) from None
        job_id = req.get("id") or "restore_" + dt.datetime.now(dt.timezone.utc).strftime("%Y_%m_%d_%H_%M_%S_") + str(
            time.time_ns() % 1_000_000_000)
        return Job(id=job_id, kind="restore", name=restore.name, request=dataclasses.asdict(restore), root=root,
                   collections=[CollectionTask(f"{job_id}_{i}", t.db, t.name, size=t.source.size)
                                for i, t in enumerate(targets)])

    def _restore_request(self, req: dict[str, Any]) -> tuple[RestoreRequest, str]:
        """The Go tool's RestoreBackupRequest as a RestoreRequest, checked as its validate() does."""
        name = req.get("backup_name", "")
        if not name:
            raise Failed(PARAMETER_ERROR, "backup name is required")
        plan = req.get("restorePlan")
        suffix, renames = req.get("collection_suffix", ""), dict(req.get("collection_renames", {}))
        if plan is not None and suffix:
            raise Failed(PARAMETER_ERROR, "restore plan and collection suffix cannot be set at the same time")
        if plan is not None and renames:
            raise Failed(PARAMETER_ERROR, "restore plan and collection renames cannot be set at the same time")
        if req.get("dropExistCollection") and req.get("skipCreateCollection"):
            raise Failed(PARAMETER_ERROR,
                         "drop_exist_collection and skip_create_collection cannot be true at the same time")
        unsupported = [f for f in ("bucket_name", "maxShardNum", "skipParams", "truncateBinlogByTs", "ezkMapping")
                       if req.get(f)]
        filters: list[str] = []
        if plan is not None:
            for m in plan.get("mapping", []):
                if not m.get("source") or not m.get("target"):
                    raise Failed(PARAMETER_ERROR, "restorePlan.mapping: source and target database names are required")
                if m.get("withProp"):
                    unsupported.append("restorePlan.mapping.withProp")
                for c in m.get("colls", []):
                    if any(c.get("override", {}).values()):
                        unsupported.append("restorePlan.mapping.colls.override")
                    renames[f"{m['source']}.{c.get('source', '')}"] = f"{m['target']}.{c.get('target', '')}"
                if not m.get("colls"):
                    renames[f"{m['source']}.*"] = f"{m['target']}.*"
            filters = requests.filter_items(plan.get("filter", {}))
        if unsupported:
            raise Failed(NOT_SUPPORT, f"not supported by mbackup: {', '.join(dict.fromkeys(unsupported))}")
        if "db_collections_after_rename" in req:
            filters = legacy_filters(None, None, req["db_collections_after_rename"])
        elif "db_collections" in req or "collection_names" in req:
            # They name collections of the backup; the filter names them as restored.
            source = legacy_filters(req.get("collection_names"), None, req.get("db_collections"))
            filters = [f if f.endswith((".*", ".")) else f + suffix for f in source]
        restore = RestoreRequest(
            name=name, filters=filters, suffix=suffix, renames=[f"{k}:{v}" for k, v in renames.items()],
            rebuild_index=req.get("restoreIndex", False), use_auto_index=req.get("useAutoIndex", False),
            drop_exist_collection=req.get("dropExistCollection", False),
            drop_exist_index=req.get("dropExistIndex", False),
            skip_create_collection=req.get("skipCreateCollection", False), meta_only=req.get("metaOnly", False),
            rbac=req.get("rbac", False), batch_imports=req.get("useV2Restore", False) or self.batch_imports,
            **self.restore_defaults)
        restore.validate()
        return restore, req.get("path") or self.stores.backup_root

    def get_restore(self, request_id: str, job_id: str) -> Answer:
        answer = Answer(request_id)
        if not job_id:
            return dataclasses.replace(answer, code=FAIL_CODE, msg="empty restore id")
        job = self.runner.load(job_id)
        if job is None or job.kind not in ("restore", "restore_secondary"):
            return dataclasses.replace(answer, code=FAIL_CODE, msg="task not found")
        return dataclasses.replace(answer, msg="success", data=restore_view(job))

    def restore_secondary(self, body: bytes, request_id: str) -> Answer:
        """The Go tool's handleRestoreSecondary: the backup restored into a CDC secondary
        (backup/secondary.py); the job answers get_restore like a restore's."""
        req = requests.parse_body(body, requests.RESTORE_SECONDARY)
        answer = Answer(req.get("requestId") or request_id or str(uuid.uuid4()))
        for key, what in (("backup_name", "backup name"), ("sourceClusterID", "source cluster id"),
                          ("targetClusterID", "target cluster id")):
            if not req.get(key):
                return dataclasses.replace(answer, code=PARAMETER_ERROR, msg=f"{what} is required")
        root = req.get("path") or self.stores.backup_root
        try:
            request = SecondaryRequest(req["backup_name"], req["sourceClusterID"], req["targetClusterID"],
                                       keep_temp_files=self.restore_defaults.get("keep_temp_files", False))
            request.validate()
            info = read_backup(self.stores_at(root), request.name)
        except BackupNotFound:
            return dataclasses.replace(answer, code=PARAMETER_ERROR, msg=f"backup {req['backup_name']} not found")
        except MBackupError as e:
            return dataclasses.replace(answer, code=PARAMETER_ERROR, msg=str(e))
        job = Job(id=answer.request_id, kind="restore_secondary", name=request.name,
                  request=dataclasses.asdict(request), root=root,
                  collections=[CollectionTask(f"{answer.request_id}_{i}", c.db_name, c.collection_name, size=c.size)
                               for i, c in enumerate(info.collection_backups)])
        return self._run_restore_job(job, answer, bool(req.get("async")))

    def _submit(self, job: Job) -> threading.Thread:
        if not meta.BACKUP_ID.pattern.fullmatch(job.id):
            raise Failed(PARAMETER_ERROR, f"invalid job id {job.id!r}: {meta.BACKUP_ID.what}")
        if self.jobs.load(job.id) is not None:
            raise Failed(PARAMETER_ERROR, f"a job with id {job.id!r} exists already: use another id")
        try:
            return self.runner.submit(job)
        except LockedError as e:
            raise Failed(FAIL_CODE, str(e)) from None


def restore_view(job: Job) -> meta.RestoreBackupTaskResponse:
    """A restore job as the Go tool's RestoreBackupTaskResponse."""
    return meta.RestoreBackupTaskResponse(
        id=job.id, state_code=job.state_code, error_message=job.error, start_time=job.start_time,
        end_time=job.end_time, progress=job.progress(), collection_restore_tasks=[
            meta.RestoreCollectionTaskResponse(
                id=c.id, state_code=c.state_code, error_message=c.error, start_time=c.start_time, end_time=c.end_time,
                progress=100 if c.state_code == SUCCESS else max(1, c.progress), target_db_name=c.target_db_name,
                target_collection_name=c.target_collection_name)
            for c in job.collections])
