"""``mbackup migrate``: hand a backup to a Zilliz Cloud cluster, as the Go tool's ``migrate``
does (its core/migrate/task.go and internal/client/cloud/api.go):

1. ``POST {zillizCloud.endpoint}/v2/volumes/apply`` ``{"clusterId", "path": <task id>}``, the
   API key as a bearer token: Zilliz Cloud lends a staging volume (cloud, endpoint, region,
   bucket, upload path, temporary credentials);
2. every object of the backup is copied under the volume's upload path, keys as they are
   under the backup's directory (the engine's verified copies);
3. the copy is checked with one listing, every key with its size (the volume grants listing,
   not reading);
4. ``POST /v2/migrations/startByRemote`` ``{"source": {"stageName": <volume>, "dataPath": <task
   id>}, "destination": {"clusterId"}}`` starts the migration and answers its job id.

The API key and the volume's credentials go in headers and store options only, never into a
message or the log.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, IntegrityError, MBackupError, PartialError
from ..milvus.adapters.http_api import HttpApi, HttpFailed
from ..storage.location import Location
from ..transfer.copy import CopySettings, plan_copy, run_plan
from ..transfer.progress import SILENT, Reporter
from .catalog import Stores, backup_dir, backup_storage_errors, read_backup

APPLY_VOLUME = "/v2/volumes/apply"
START_MIGRATION = "/v2/migrations/startByRemote"


class MigrateError(MBackupError):
    """Zilliz Cloud refused a step, or the staging volume is not one mbackup can write."""


class MigrateIncomplete(PartialError):
    """Some objects of the backup did not reach the staging volume: running migrate again may."""


@dataclass
class Volume:
    """The staging volume Zilliz Cloud lends for one migration."""

    name: str
    cloud: str
    endpoint: str
    region: str
    bucket: str
    upload_path: str
    access_key_id: str
    secret_access_key: str
    session_token: str

    @classmethod
    def from_answer(cls, data: Any) -> Volume:
        data = data if isinstance(data, dict) else {}
        creds = data.get("credentials") if isinstance(data.get("credentials"), dict) else {}
        fields = {"name": data.get("volumeName"), "cloud": data.get("cloud"), "endpoint": data.get("endpoint"),
                  "region": data.get("region") or "", "bucket": data.get("bucketName"),
                  "upload_path": data.get("uploadPath"), "access_key_id": creds.get("tmpAK"),
                  "secret_access_key": creds.get("tmpSK"), "session_token": creds.get("sessionToken") or ""}
        missing = [k for k, v in fields.items() if not isinstance(v, str) or (not v and k not in ("region", "session_token"))]
        if missing:
            raise MigrateError(f"Zilliz Cloud answered {APPLY_VOLUME} without a usable staging volume "
                               f"(missing or empty: {', '.join(missing)})")
        return cls(**fields)

    def location(self) -> Location:
        """The volume as a store: its endpoint over HTTPS (as the Go tool reaches it), unless
        the answer names a scheme itself."""
        from ..plugins.manager import storage_backends

        if self.cloud.lower() != "aws":
            raise MigrateError(f"the staging volume is on {self.cloud!r}: mbackup migrate writes only to "
                               "S3 (aws) staging volumes so far; use the Go tool for this cluster")
        endpoint = self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"
        options = {"aws_endpoint": endpoint, "aws_access_key_id": self.access_key_id,
                   "aws_secret_access_key": self.secret_access_key}
        if self.region:
            options["aws_region"] = self.region
        if self.session_token:
            options["aws_session_token"] = self.session_token
        return storage_backends().open(f"s3://{self.bucket}/{self.upload_path.strip('/')}", options)


@dataclass
class MigrateResult:
    job_id: str
    objects: int
    bytes: int
    seconds: float
    volume: str

    def summary(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "objects": self.objects, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "volume": self.volume}


class ZillizCloud:
    """The two calls of Zilliz Cloud's API that migrate makes."""

    def __init__(self, endpoint: str, api_key: str, timeout: float = 60.0) -> None:
        if not endpoint:
            raise ConfigError("zillizCloud.endpoint is empty: set it to Zilliz Cloud's API, "
                              "e.g. https://api.cloud.zilliz.com (v1 files: cloud.address)")
        if not api_key:
            raise ConfigError("zillizCloud.apiKey is not set: set it in the config, or ZILLIZ_CLOUD_API_KEY "
                              "(v1 files: cloud.apikey)")
        self.api = HttpApi(endpoint, "Zilliz Cloud", token=api_key, timeout=timeout)

    def _post(self, path: str, body: dict[str, Any], what: str) -> Any:
        try:
            answer = self.api.request("POST", path, body=body)
        except HttpFailed as e:
            raise _as_cloud_error(e, what) from None
        if answer.get("code"):
            raise MigrateError(f"cannot {what}: Zilliz Cloud at {self.api.base} answered code {answer['code']}: "
                               f"{answer.get('message') or 'no reason given'}")
        return answer.get("data")

    def apply_volume(self, cluster_id: str, path: str) -> Volume:
        return Volume.from_answer(self._post(APPLY_VOLUME, {"clusterId": cluster_id, "path": path},
                                             f"get a staging volume for cluster {cluster_id}"))

    def start_migration(self, volume: Volume, path: str, cluster_id: str) -> str:
        data = self._post(START_MIGRATION, {"source": {"stageName": volume.name, "dataPath": path},
                                            "destination": {"clusterId": cluster_id}},
                          f"start the migration into cluster {cluster_id}")
        job = data.get("jobId") if isinstance(data, dict) else None
        if not isinstance(job, str) or not job:
            raise MigrateError(f"Zilliz Cloud answered {START_MIGRATION} without a job id")
        return job


def _as_cloud_error(e: HttpFailed, what: str) -> MBackupError:
    """The HTTP failure, in its own class (exit 3 for nothing answering or a 5xx, else 2)."""
    return type(e)(f"cannot {what}: {e}", e.status)


def migrate_backup(stores: Stores, name: str, cluster_id: str, cloud: ZillizCloud, settings: CopySettings, *,
                   reporter: Reporter = SILENT) -> MigrateResult:
    started = time.monotonic()
    read_backup(stores, name)  # a backup that is not there or is damaged is refused before any request
    bdir = backup_dir(stores, name)
    source = Location(stores.backup.store, bdir, f"{stores.backup.url}/{bdir}")
    task = str(uuid.uuid4())  # the Go tool's volume path: one task id per migration
    with reporter.step("apply volume", backup=name):
        volume = cloud.apply_volume(cluster_id, task)
    target = volume.location()
    with backup_storage_errors(stores):
        plan = plan_copy(source, target, skip_existing=False)
    report = run_plan(plan, source, target, settings, reporter=reporter, label="copy to staging volume")
    report.raise_for_failures(MigrateIncomplete, f"copying backup {name!r} to the staging volume",
                             "run migrate again")
    with reporter.step("verify staging volume"):
        _verify(plan.jobs, target)
    with reporter.step("start migration"):
        job = cloud.start_migration(volume, task, cluster_id)
    return MigrateResult(job, len(plan.jobs), plan.bytes, time.monotonic() - started, volume.name)


def _verify(jobs: list[tuple[Any, str]], target: Location) -> None:
    """One listing of the volume holds every key copied, each with its size."""
    listed = {o.key: o.size for o in target.list()}
    wrong = [key for obj, key in jobs if listed.get(key) != obj.size]
    if wrong:
        raise IntegrityError(f"the staging volume {target.url} lacks {len(wrong):,} of the {len(jobs):,} objects "
                             f"copied, or holds them with another size (e.g. {wrong[0]}): run migrate again")
