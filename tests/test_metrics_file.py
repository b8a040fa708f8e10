"""``create --metrics-file`` and ``restore --metrics-file`` write how a CLI run (a CronJob's)
went in node_exporter's textfile format, success or not; a path it could not write is refused
before the run. ``--pushgateway`` pushes the same metrics to a Pushgateway (a recording fake:
tests/fake_pushgateway.py says why); a failed push is one warning and never changes the run's
outcome; a URL it could not use is refused before the run. With Milvus (a successful create):
tests/test_server_milvus.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from fake_pushgateway import FakePushgateway
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


@pytest.fixture
def gateway():
    g = FakePushgateway()
    yield g
    g.close()


@pytest.mark.parametrize("command", [["create", "-n", "nightly"], ["restore", "-n", "nightly"]])
def test_a_run_pushes_what_its_metrics_file_holds(config, tmp_path, gateway, command):
    prom = tmp_path / "mbackup.prom"
    without = run(config, *command)
    r = run(config, *command, "--metrics-file", str(prom), "--pushgateway", gateway.url)
    assert (r.returncode, r.stderr) == (without.returncode, without.stderr)  # the run's own outcome, nothing more
    [push] = gateway.pushes
    assert (push.method, push.path) == ("PUT", f"/metrics/job/mbackup/command/{command[0]}")
    assert push.content_type.startswith("text/plain; version=0.0.4")
    pushed = samples(push.body.decode())
    assert pushed == samples(prom.read_text())
    assert pushed[("mbackup_last_run_success", (("command", command[0]),))] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("answer", [500, "closed"])
def test_a_push_that_fails_is_a_warning_and_the_outcome_stands(config, tmp_path, answer):
    g = FakePushgateway(status=answer if isinstance(answer, int) else 200)
    url = g.url
    if answer == "closed":
        g.close()
        url = f"http://127.0.0.1:{_closed_port()}"
    try:
        without = run(config, "create", "-n", "nightly")
        r = run(config, "create", "-n", "nightly", "--pushgateway", url)
    finally:
        if answer != "closed":
            g.close()
    assert r.returncode == without.returncode == 3
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: --pushgateway {url}: the metrics were not pushed "
                        f"({'Internal Server Error' if answer == 500 else '[Errno 111] Connection refused'}); "
                        "the create itself is unaffected"], r.stderr
    assert r.stderr.replace(warnings[0] + "\n", "") == without.stderr


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://pg:9091", "--pushgateway ftp://pg:9091: expected the Pushgateway's address, such as "
                      "http://pushgateway:9091"),
    ("pg:port", "--pushgateway pg:port: expected the Pushgateway's address"),
    ("http://admin:s3cret@pg:9091", "--pushgateway http://***: a user or password in the URL is not sent"),
])
def test_a_gateway_url_it_cannot_use_is_refused_first(config, gateway, url, says):
    r = run(config, "create", "-n", "nightly", "--pushgateway", url)
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"error: {says}") and "s3cret" not in r.stderr, line
