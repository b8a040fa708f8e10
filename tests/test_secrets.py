"""Secrets never appear in anything mbackup prints or writes (issue #4 §6).

The scan itself runs when the pytest session finishes (tests/conftest.py, tests/secretscan.py):
over the output of every mbackup process the run started, the bodies tests read back (webhook
posts, restore journals) and the files under the run's temporary folders. This module drives
the commands most likely to leak a secret (config show, errors from refused credentials and
unreachable servers, JSON output, a copy with a manifest) and checks that each did what it
should, so a run that failed early cannot pass the scan by printing nothing; and it checks
the scanner on planted secrets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import CAPTURED, ENV_SECRET, MILVUS_PASSWORD, S3_SECRET, SECRETS, SET_SECRET
from sample_backup import ROOT, Sample
from secretscan import LOG_FILES, note_log_files, scan


def mbackup(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_secrets_never_printed(seaweedfs, bucket, tmp_path):
    s = seaweedfs.store(bucket)
    s.put("p/a", b"first object")
    s.put("p/b/c", b"second object")
    Sample(s, "sample")
    config = tmp_path / "backup.yaml"
    config.write_text(f"""configVersion: v2
milvus:
  user: root
  password: {MILVUS_PASSWORD}
  grpc: {{address: 127.0.0.1, port: 9}}
  storage:
    address: 127.0.0.1
    port: {seaweedfs.s3_port}
    bucketName: {bucket}
    auth: {{accessKeyID: {seaweedfs.access_key}, secretAccessKey: {S3_SECRET}}}
backup:
  storage:
    rootPath: {ROOT}
log:
  level: debug
  file: {{path: logs/mbackup.log}}
mbackup:
  profiles:
    test: {{url: "s3://{bucket}/p", endpoint: "{seaweedfs.endpoint}", access_key_id: {seaweedfs.access_key},
            secret_access_key: {S3_SECRET}}}
""")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=ENV_SECRET,
               MILVUS_PASSWORD=MILVUS_PASSWORD)
    env.pop("MBACKUP_PLUGINS", None)
    manifest = tmp_path / "copy-manifest.json"
    # (args, exit code, stream, a piece of what it must print)
    runs = [
        (["config", "show"], 0, "stdout", "milvus.password"),
        (["config", "show", "--json"], 0, "stdout", '"key": "milvus.storage.auth.secretAccessKey"'),
        (["--set", f"milvus.storage.auth.secretAccessKey={SET_SECRET}", "config", "show"], 0, "stdout",
         "milvus.storage.auth.secretAccessKey"),
        (["create", "-n", "x"], 3, "stderr", "error: cannot reach Milvus at 127.0.0.1:9"),
        (["list"], 0, "stdout", "sample"),
        (["get", "-n", "sample", "--json"], 0, "stdout", '"name": "sample"'),
        (["copy", "@test", str(tmp_path / "out"), "--json", "--records", "--manifest", str(manifest)], 0, "stdout",
         '"objects_copied": 2'),
        (["-vv", "--log-format", "json", "copy", "@test", str(tmp_path / "out2")], 0, "stderr", '"level": "debug"'),
        (["copy", f"s3://{bucket}/{ROOT}/sample?endpoint={seaweedfs.endpoint}", str(tmp_path / "o2")], 2, "stderr",
         "the server rejected the credentials"),  # the env secret is wrong
        (["copy", f"s3://{bucket}/p?endpoint=http://127.0.0.1:9", str(tmp_path / "o3")], 3, "stderr",
         "cannot reach the endpoint"),
    ]
    before = len(CAPTURED)
    for args, code, stream, piece in runs:
        r = mbackup(args, env, tmp_path)
        assert r.returncode == code, (args, r.stdout[-500:], r.stderr[-500:])
        assert piece in getattr(r, stream), (args, r.stdout[-500:], r.stderr[-500:])
    # Every run above was recorded for the scan, once each, with what it printed.
    mine = CAPTURED[before:]
    assert [c for c, _, _ in mine] == [str([sys.executable, "-m", "milvus_backup", *a]) for a, *_ in runs]
    shown = [out for cmd, out, _ in mine if "'config', 'show'" in cmd]
    assert len(shown) == 3 and all("****" in out for out in shown), "config show masks secrets"
    assert json.loads(manifest.read_text())["objects"], "the copy wrote its manifest (scanned as a file)"
    assert (tmp_path / "out" / "b" / "c").read_bytes() == b"second object"
    # Every run logged into the config's log file at debug level: scanned as a log file.
    logged = (tmp_path / "logs" / "mbackup.log").read_text()
    assert "DEBUG copy: started" in logged and '"level": "debug"' in logged and "error" in logged.lower(), logged
    result = scan(SECRETS, mine, [], [tmp_path], logs=[tmp_path / "logs" / "mbackup.log"])
    assert result.log_files == 1 and result.log_bytes == len(logged)
    assert result.runs == len(runs) and result.run_bytes > 10_000
    assert result.files >= 3  # the manifest and the two copied objects (the config is input)
    assert not result.leaks, result.leaks


def test_the_scanner_finds_a_planted_secret():
    # Outside the run's temporary folders, or the session's own scan would find the plant.
    with tempfile.TemporaryDirectory() as folder:
        _planted(Path(folder))


def test_the_scanner_reads_log_files_wherever_a_run_wrote_them():
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cwd:
        (Path(folder) / "backup.yaml").write_text("log:\n  file:\n    filename: ../elsewhere/backup.log\n")
        (Path(cwd) / "elsewhere").mkdir()
        (Path(cwd) / "sub").mkdir()
        note_log_files(["mbackup", "--set", f"log.file.path={folder}/run.log", "copy", "a", "b"], cwd)
        note_log_files(["mbackup", "--config", f"{folder}/backup.yaml", "list"], f"{cwd}/sub")
        assert {Path(f"{folder}/run.log"), Path(f"{cwd}/sub/../elsewhere/backup.log")} <= LOG_FILES
        (Path(folder) / "run.log.1").write_text(f"rotated: {S3_SECRET}")  # a rotated copy
        (Path(cwd) / "elsewhere" / "backup.log").write_text(f"{MILVUS_PASSWORD}")
        result = scan(SECRETS, [], [], [], logs=LOG_FILES)
        assert sorted(result.leaks) == sorted([f"log file {folder}/run.log.1: {S3_SECRET!r}",
                                               f"log file {cwd}/sub/../elsewhere/backup.log: {MILVUS_PASSWORD!r}"])


def _planted(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text(f'{{"key": "{S3_SECRET}"}}')
    (tmp_path / "backup.yaml").write_text(f"secretAccessKey: {S3_SECRET}\n")  # an input: not mbackup's
    (tmp_path / "seaweedfs" / "data").mkdir(parents=True)
    (tmp_path / "seaweedfs" / "data" / "s3.json").write_text(S3_SECRET)  # a server's: not mbackup's
    runs = [("mbackup copy a b", "copied", ""), ("mbackup config show", "", f"error: {MILVUS_PASSWORD}")]
    result = scan(SECRETS, runs, [("webhook body", f"token={SET_SECRET}".encode())], [tmp_path], ["mbackup list"])
    assert result.leaks == [
        f"output of mbackup config show: {MILVUS_PASSWORD!r}",
        f"webhook body: {SET_SECRET!r}",
        f"{tmp_path / 'out' / 'manifest.json'}: {S3_SECRET!r}",
    ]
    assert (result.runs, result.written, result.files) == (2, 1, 1)
    assert result.unscanned == ["mbackup list"]
    assert result.summary().startswith("secrets scan: 2 mbackup runs (")
