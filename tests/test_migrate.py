"""``mbackup migrate``, the Go tool's command that hands a backup to a Zilliz Cloud cluster.

No Zilliz Cloud runs here and no local server can be one, so Zilliz Cloud's API is a FAKE: a
small HTTP server answering the two requests the Go tool makes (core/migrate/task.go,
internal/client/cloud/api.go) as the Go tool expects them, lending the local SeaweedFS as the
staging volume. Everything else is real: the backup is read from SeaweedFS and copied into the
"volume" on SeaweedFS, and the copy is compared byte for byte.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import ENV_SECRET
from sample_backup import Sample, config_yaml
from test_engine_errors import closed_port

CLUSTER = "in01-0123456789abcdef"
CLOSED = closed_port()  # where no Zilliz Cloud answers


class FakeZillizCloud:
    """POST /v2/volumes/apply and /v2/migrations/startByRemote, with the bearer API key;
    ``fail`` = (HTTP status, body) answers the volume request with that instead, and
    ``fail`` = a dict changes those fields of the volume it lends; ``fail_start`` answers the
    migration request with (HTTP status, body) instead."""

    def __init__(self, seaweedfs, staging_bucket: str, api_key: str) -> None:
        self.seaweedfs, self.bucket, self.api_key = seaweedfs, staging_bucket, api_key
        self.requests: list[tuple[str, dict, str]] = []  # (path, body, Authorization header)
        self.fail: tuple[int, dict] | dict | None = None
        self.fail_start: tuple[int, dict] | None = None
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                fake.requests.append((self.path, body, self.headers.get("Authorization", "")))
                status, answer = fake.answer(self.path, body, self.headers.get("Authorization", ""))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body: dict, auth: str) -> tuple[int, dict]:
        if auth != f"Bearer {self.api_key}":
            return 401, {"code": 80001, "message": "invalid token"}
        if path == "/v2/volumes/apply":
            if isinstance(self.fail, tuple):
                return self.fail
            return 200, {"code": 0, "data": {
                "volumeName": "vol-staging-1", "cloud": "aws", "endpoint": self.seaweedfs.endpoint, "region": "us-east-1",
                "bucketName": self.bucket, "uploadPath": f"volumes/vol-staging-1/{body['path']}/",
                "condition": {"maxContentLength": 0},
                "credentials": {"tmpAK": self.seaweedfs.access_key, "tmpSK": self.seaweedfs.secret_key,
                                "sessionToken": "", "expireTime": "2099-01-01T00:00:00Z"}, **(self.fail or {})}}
        if path == "/v2/migrations/startByRemote":
            if self.fail_start:
                return self.fail_start
            return 200, {"code": 0, "data": {"jobId": "job-0042"}}
        return 404, {"code": 404, "message": "no such API"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cloud(seaweedfs, bucket):
    staging = f"{bucket}-staging"[:63]
    seaweedfs.create_bucket(staging)
    fake = FakeZillizCloud(seaweedfs, staging, ENV_SECRET)
    yield fake
    fake.close()
    seaweedfs.delete_bucket(staging)


@pytest.fixture
def setup(seaweedfs, bucket, cloud, tmp_path):
    s = seaweedfs.store(bucket)
    backup = Sample(s, "nightly")
    (tmp_path / "backup.yaml").write_text(config_yaml(seaweedfs, bucket)
                                          + f"zillizCloud:\n  endpoint: {cloud.endpoint}\n")
    return backup, tmp_path


def run(tmp_path, *args: str, api_key: str = ENV_SECRET, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, ZILLIZ_CLOUD_API_KEY=api_key, **env)
    full.pop("MBACKUP_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=full, timeout=120)


def test_migrate_copies_the_backup_into_the_staging_volume_and_starts_the_job(seaweedfs, s3env, setup, cloud):
    backup, tmp_path = setup
    # pymilvus is leaving the runtime: migrate talks to no Milvus, so it must run without it.
    (tmp_path / "no-pymilvus" / "pymilvus").mkdir(parents=True)
    (tmp_path / "no-pymilvus" / "pymilvus" / "__init__.py").write_text("raise ImportError('pymilvus imported')\n")
    r = run(tmp_path, "-v", "--set", "log.file.path=migrate.log", "migrate", "-n", "nightly", "-c", CLUSTER,
            AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key,
            PYTHONPATH=os.pathsep.join([str(tmp_path / "no-pymilvus"), os.environ.get("PYTHONPATH", "")]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"Successfully triggered migration with backup name: nightly target cluster: {CLUSTER}"
    assert "migration job id: job-0042." in r.stdout

    (apply_path, apply, auth), (start_path, start, _) = cloud.requests
    assert (apply_path, start_path, auth) == ("/v2/volumes/apply", "/v2/migrations/startByRemote", f"Bearer {ENV_SECRET}")
    assert apply["clusterId"] == CLUSTER and apply["path"]
    assert start == {"source": {"stageName": "vol-staging-1", "dataPath": apply["path"]},
                     "destination": {"clusterId": CLUSTER}}
    # Every object of the backup, byte for byte, under the volume's upload path, and nothing else.
    staged = seaweedfs.store(cloud.bucket)
    prefix = f"volumes/vol-staging-1/{apply['path']}/"
    assert {k: staged.get(k) for k, _, _ in staged.list("")} == {prefix + k: v for k, v in backup.objects.items()}
    assert len(backup.objects) > 10
    # The key is sent only as the bearer token: never shown nor logged.
    logged = (tmp_path / "migrate.log").read_text()
    assert "apply volume: done" in logged and "start migration: done" in logged
    for text in (r.stdout, r.stderr, logged):
        assert ENV_SECRET not in text and seaweedfs.secret_key not in text
    # --json: the summary a script reads, alone on stdout (a new migration: a new upload path).
    r = run(tmp_path, "migrate", "-n", "nightly", "-c", CLUSTER, "--json",
            AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {k: v for k, v in summary.items() if k != "seconds"} == {
        "job_id": "job-0042", "objects": len(backup.objects), "bytes": sum(map(len, backup.objects.values())),
        "volume": "vol-staging-1"}


@pytest.mark.parametrize(("case", "args", "api_key", "fail", "code", "line"), [
    ("no cluster id", ["migrate", "-n", "nightly"], "", None, 2,  # said first, as the Go tool does
     "error: migrate needs -c/--cluster_id: the id of the Zilliz Cloud cluster to migrate into"),
    ("no api key", ["migrate", "-n", "nightly", "-c", CLUSTER], "", None, 2,
     "error: zillizCloud.apiKey is not set: set it in the config, or ZILLIZ_CLOUD_API_KEY (v1 files: cloud.apikey)"),
    ("no zillizCloud endpoint", ["--set", "zillizCloud.endpoint=", "migrate", "-n", "nightly", "-c", CLUSTER],
     ENV_SECRET, None, 2, "error: zillizCloud.endpoint is empty: set it to Zilliz Cloud's API, "
                          "e.g. https://api.cloud.zilliz.com (v1 files: cloud.address)"),
    ("wrong api key", ["migrate", "-n", "nightly", "-c", CLUSTER], "not-the-key", None, 2,
     "error: cannot get a staging volume for cluster in01-0123456789abcdef: Zilliz Cloud at {endpoint} answered "
     "POST /v2/volumes/apply with HTTP 401: invalid token"),
    ("cloud failing", ["migrate", "-n", "nightly", "-c", CLUSTER], ENV_SECRET,
     (503, {"code": 503, "message": "busy"}), 3,
     "error: cannot get a staging volume for cluster in01-0123456789abcdef: Zilliz Cloud at {endpoint} answered "
     "POST /v2/volumes/apply with HTTP 503: busy"),
    ("cloud refusing", ["migrate", "-n", "nightly", "-c", CLUSTER], ENV_SECRET,
     (200, {"code": 90011, "message": "cluster not found"}), 2,
     "error: cannot get a staging volume for cluster in01-0123456789abcdef: Zilliz Cloud at {endpoint} answered "
     "code 90011: cluster not found"),
    ("cloud unreachable", ["--set", f"zillizCloud.endpoint=http://127.0.0.1:{CLOSED}", "migrate", "-n", "nightly",
                           "-c", CLUSTER], ENV_SECRET, None, 3,
     f"error: cannot get a staging volume for cluster in01-0123456789abcdef: cannot reach Zilliz Cloud at "
     f"http://127.0.0.1:{CLOSED} ("),
    ("volume without credentials", ["migrate", "-n", "nightly", "-c", CLUSTER], ENV_SECRET, {"credentials": {}}, 2,
     "error: Zilliz Cloud answered /v2/volumes/apply without a usable staging volume (missing or empty: "
     "access_key_id, secret_access_key)"),
    ("volume on gcp", ["migrate", "-n", "nightly", "-c", CLUSTER], ENV_SECRET, {"cloud": "gcp"}, 2,
     "error: the staging volume is on 'gcp': mbackup migrate writes only to S3 (aws) staging volumes so far; "
     "use the Go tool for this cluster"),
    ("unknown backup", ["migrate", "-n", "nothere", "-c", CLUSTER], ENV_SECRET, None, 2, "error: no backup named 'nothere'"),
], ids=lambda x: x if isinstance(x, str) and " " in x else "")
def test_bad_migrate_input_is_one_line_the_right_exit_and_nothing_staged(seaweedfs, setup, cloud, case, args, api_key,
                                                                        fail, code, line):
    _, tmp_path = setup
    cloud.fail = fail
    r = run(tmp_path, *args, api_key=api_key, AWS_ACCESS_KEY_ID=seaweedfs.access_key,
            AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key)
    assert r.returncode == code, r.stderr
    errors = [x for x in r.stderr.splitlines() if not x.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith(line.format(endpoint=cloud.endpoint)), r.stderr
    assert r.stdout == "" and seaweedfs.store(cloud.bucket).list("") == []
    assert all(path == "/v2/volumes/apply" for path, _, _ in cloud.requests)  # no migration started
    assert ENV_SECRET not in r.stderr


@pytest.mark.parametrize(("answer", "line"), [
    ((200, {"code": 90020, "message": "cluster is not running"}),
     "error: cannot start the migration into cluster in01-0123456789abcdef: Zilliz Cloud at {endpoint} answered "
     "code 90020: cluster is not running"),
    ((200, {"code": 0, "data": {}}), "error: Zilliz Cloud answered /v2/migrations/startByRemote without a job id"),
], ids=["refused", "no job id"])
def test_a_migration_that_does_not_start_is_one_line_and_claims_no_job(seaweedfs, setup, cloud, answer, line):
    """The copy is done, then Zilliz Cloud does not start the job: the user is told so in one
    line, and nothing says the migration was triggered."""
    _, tmp_path = setup
    cloud.fail_start = answer
    r = run(tmp_path, "migrate", "-n", "nightly", "-c", CLUSTER, AWS_ACCESS_KEY_ID=seaweedfs.access_key,
            AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    errors = [x for x in r.stderr.splitlines() if not x.startswith("warning:")]
    assert errors == [line.format(endpoint=cloud.endpoint)], r.stderr
    assert [path for path, _, _ in cloud.requests] == ["/v2/volumes/apply", "/v2/migrations/startByRemote"]
