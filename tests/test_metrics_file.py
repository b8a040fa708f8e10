"""``create --metrics-file`` and ``restore --metrics-file`` write how a CLI run (a CronJob's)
went in node_exporter's textfile format, success or not; a path it could not write is refused
before the run. With Milvus: tests/test_server_milvus.py."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from sample_backup import config_yaml
from server_client import metric_samples as samples


def run(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def config(seaweedfs, bucket, tmp_path):
    path = tmp_path / "backup.yaml"
    path.write_text(config_yaml(seaweedfs, bucket))  # Milvus at port 1: nothing answers
    return path


@pytest.mark.parametrize("command", [["create", "-n", "nightly"], ["restore", "-n", "nightly"]])
def test_a_failed_run_writes_success_0(config, tmp_path, command):
    out = tmp_path / "textfile"
    out.mkdir()
    r = run(config, *command, "--metrics-file", str(out / "mbackup.prom"))
    assert r.returncode in (2, 3) and r.stderr.startswith("error: ")
    got = samples((out / "mbackup.prom").read_text())
    run_label = (("command", command[0]),)
    assert got[("mbackup_last_run_success", run_label)] == 0
    # Every digit of the time: node_exporter alerts on its age.
    assert abs(got[("mbackup_last_run_timestamp_seconds", run_label)] - time.time()) < 120
    assert sorted(p.name for p in out.iterdir()) == ["mbackup.prom"]  # no temporary file left


@pytest.mark.parametrize(("path", "says"), [
    ("missing/m.prom", "no folder"),
    ("m.txt", "node_exporter reads only files named *.prom"),
])
def test_a_metrics_file_it_cannot_write_is_refused_first(config, tmp_path, path, says):
    r = run(config, "create", "-n", "nightly", "--metrics-file", str(tmp_path / path))
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: --metrics-file {tmp_path / path}: ") and says in line
    assert not (tmp_path / path).exists()
