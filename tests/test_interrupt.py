"""Ctrl-C on every command that runs the engine for long: a real SIGINT to a real ``mbackup``
in the middle of its reads (a bandwidth cap keeps it there for a minute or more) stops it
within seconds, with exit code 130, the command's own last words and no traceback.

The reads go through a pass-through FaultProxy in front of SeaweedFS only so that the test
sees them start (``proxy.seen``) and interrupts the run in the middle of them.
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest

from faultproxy import FaultProxy
from sample_backup import ROOT, Sample, config_yaml
from test_copy import fill, tree
from test_signals import signal_when, start

KIB, MIB = 1024, 1024 * 1024
CAP = "256KiB/s"  # every run below would take a minute or more uninterrupted
STOPS_WITHIN = 20  # seconds from SIGINT to exit; in-flight reads stop at once


def interrupt_mid_read(env, args: list[str], proxy: FaultProxy, reading: str) -> tuple[int, str, str]:
    """Start ``mbackup <args>``, send SIGINT once a GET of a key under ``reading`` went
    through the proxy, and return (exit code, stdout, stderr); fail if it does not stop
    within STOPS_WITHIN seconds."""
    return signal_when(start(env, *args), lambda: any(k.startswith(f"GET {reading}") for k in list(proxy.seen)),
                       f"a read of {reading}", signal.SIGINT, timeout=60, stops_within=STOPS_WITHIN)


@pytest.fixture
def proxy(seaweedfs):
    with FaultProxy(seaweedfs.endpoint, max_lifetime=300) as p:
        yield p


@pytest.fixture
def objects(seaweedfs, bucket) -> dict[str, bytes]:
    """20 MiB under slow/ in the test's bucket: 80 s at the cap."""
    data = {f"slow/{i:03d}": os.urandom(512 * KIB) for i in range(40)}
    fill(seaweedfs.store(bucket), data)
    return data


def test_copy_mid_copy(s3env, bucket, proxy, objects, tmp_path):
    folder = tmp_path / "slow"
    code, out, err = interrupt_mid_read(
        s3env, ["copy", f"s3://{bucket}/slow?endpoint={proxy.endpoint}", str(folder), "--max-bandwidth",
                CAP, "--parallel", "4"], proxy, f"/{bucket}/slow/")
    assert code == 130, err
    assert out.startswith("interrupted: copied ") and "Traceback" not in err, out + err
    done = tree(folder)
    assert len(done) < len(objects)
    assert all(objects[f"slow/{k}"] == v for k, v in done.items())  # nothing half-written


def test_copy_verify_while_rechecking_what_the_destination_has(s3env, bucket, proxy, objects, tmp_path):
    """--verify reads both sides of every object the destination already has before copying
    anything: that is engine work too, and Ctrl-C stops it."""
    folder = tmp_path / "slow"
    folder.mkdir()
    for key, data in objects.items():
        (folder / key[len("slow/"):]).write_bytes(data)
    code, out, err = interrupt_mid_read(
        s3env, ["copy", f"s3://{bucket}/slow?endpoint={proxy.endpoint}", str(folder), "--verify",
                "--max-bandwidth", CAP], proxy, f"/{bucket}/slow/")
    assert (code, out, err.splitlines()[-1:]) == (130, "", ["interrupted"]), err
    assert "Traceback" not in err
    assert tree(folder) == {k[len("slow/"):]: v for k, v in objects.items()}  # nothing changed


def test_verify_deep_mid_read(s3env, seaweedfs, bucket, proxy, tmp_path):
    sample = Sample(seaweedfs.store(bucket), "nightly", binlog_bytes=2 * MIB)  # 16 MiB: 64 s at the cap
    behind_proxy = SimpleNamespace(host="127.0.0.1", s3_port=proxy.port, access_key=seaweedfs.access_key,
                                   secret_key=seaweedfs.secret_key)
    cfg = tmp_path / "backup.yaml"
    cfg.write_text(config_yaml(behind_proxy, bucket))
    code, out, err = interrupt_mid_read(
        s3env, ["verify", "-n", "nightly", "--deep", "--config", str(cfg), "--set", f"mbackup.maxBandwidth={CAP}"],
        proxy, f"/{bucket}/{ROOT}/nightly/binlogs/")
    assert (code, out, err.splitlines()[-1:]) == (130, "", ["interrupted"]), err
    assert "Traceback" not in err
    assert all(sample.store.get(f"{sample.bdir}/{rel}") == data for rel, data in sample.objects.items())
