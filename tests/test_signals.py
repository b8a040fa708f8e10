"""SIGTERM (how Kubernetes stops a pod) behaves like Ctrl-C: the run stops its work, aborts
its multipart uploads, releases its lock, says what finished and exits 143 by sys.exit
(not death by the signal, which a shell shows as 143 too but Popen as -15); Ctrl-C exits
130. Real signals to real ``mbackup`` processes, mid-copy, mid-create, mid-restore and in
the first moments of a run; each run is then done again, and finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_storage_safety import MULTIPART, four_mb_collection, uploads

MIB = 1 << 20
STOPS_WITHIN = 30  # seconds from the signal to the exit, on a loaded machine
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def start(env, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "milvus_backup", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_when(proc: subprocess.Popen, ready, what: str, sig: int = signal.SIGTERM,
                timeout: float = 120, stops_within: float = STOPS_WITHIN) -> tuple[int, str, str]:
    """Send ``sig`` once ``ready()``; (exit code, stdout, stderr). Fails if the run ended
    before, or does not stop within ``stops_within`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"never saw {what} (exit {proc.returncode}): {out}{err}")
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=stops_within)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running {stops_within} s after {signal.Signals(sig).name}: {' '.join(proc.args)}\n"
                    f"{out}{err}")
    return proc.returncode, out, err


def mbackup(env, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milvus_backup", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_copy_aborts_the_upload_and_a_rerun_finishes(seaweedfs, s3env, bucket, tmp_path, sig):
    folder = tmp_path / "src"
    folder.mkdir()
    big, small = os.urandom(24 * MIB), os.urandom(1000)
    (folder / "big.bin").write_bytes(big)
    (folder / "small.bin").write_bytes(small)
    dst = f"s3://{bucket}/dst?endpoint={seaweedfs.endpoint}"
    proc = start(s3env, "copy", str(folder), dst, *MULTIPART, "--max-bandwidth", "2MiB/s")
    code, out, err = signal_when(proc, lambda: uploads(seaweedfs, bucket, "dst/") != [], "its multipart upload start",
                                 sig)
    assert code == EXIT[sig], err
    assert "Traceback" not in err, err
    # What finished, in the summary line.
    assert out.startswith("interrupted: copied ") and ", not started " in out, out + err
    assert uploads(seaweedfs, bucket) == []  # aborted, not left for gc

    r = mbackup(s3env, "copy", str(folder), dst, *MULTIPART)
    assert r.returncode == 0, r.stderr
    s = seaweedfs.store(bucket)
    assert (s.get("dst/big.bin"), s.get("dst/small.bin")) == (big, small)
    assert uploads(seaweedfs, bucket) == []


def moto_uploads(moto, bucket: str) -> list[str]:
    import xml.etree.ElementTree as ET

    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    return [u.findtext(f"{ns}Key") for u in ET.fromstring(moto.request("GET", f"/{bucket}?uploads")).iter(f"{ns}Upload")]


# Each way the engine makes a multipart upload, with the server that takes that way.
# (source, destination, copier options); "proxied" is the destination behind the proxy.
MAKERS = {
    "from-a-file-crc32c-checked": ("folder", "seaweedfs", {}),
    "from-a-file-object_store": ("folder", "moto", {}),
    "between-stores-streamed": ("moto", "seaweedfs", {}),
    "server-side-part-copies": ("proxied", "seaweedfs", {"multipart_copy_threshold": 5 * MIB,
                                                         "copy_part_size": 5 * MIB}),
}


@pytest.mark.parametrize("how", MAKERS)
def test_a_cancel_while_the_server_makes_the_upload_leaves_no_upload(seaweedfs, moto, bucket, tmp_path, how):
    """A cancel (Ctrl-C, SIGTERM) that lands after the server made a multipart upload and
    before its reply (with the id to abort it) came back: the run waits for the reply and
    aborts the upload. Dropped at the cancel, the request left the upload for good (seen in
    CI: the SIGTERM test above found one). The proxy holds CreateMultipartUpload's reply."""
    from faultproxy import FaultProxy
    from milvus_backup import _engine

    source_kind, dest_kind, options = MAKERS[how]
    data = os.urandom(12 * MIB)
    moto.create_bucket(bucket)
    with FaultProxy(seaweedfs.endpoint if dest_kind == "seaweedfs" else moto.endpoint, max_lifetime=120) as proxy:
        dst = (seaweedfs.store(bucket, endpoint=proxy.endpoint) if dest_kind == "seaweedfs"
               else _engine.Store(f"s3://{bucket}", {"aws_endpoint": proxy.endpoint, "aws_access_key_id": "moto",
                                                     "aws_secret_access_key": "moto", "aws_allow_http": "true"}))
        if source_kind == "folder":
            (tmp_path / "big.bin").write_bytes(data)
            src = _engine.Store(f"file://{tmp_path}")
        else:
            src = moto.store(bucket) if source_kind == "moto" else dst
            src.put("src/big.bin", data)
        listed = (lambda: uploads(seaweedfs, bucket)) if dest_kind == "seaweedfs" else (lambda: moto_uploads(moto, bucket))
        proxy.stall(60, methods="POST", paths="?uploads", after_bytes=0, then="pass")
        copier = _engine.Copier(multipart_threshold=5 * MIB, part_size=5 * MIB, **options)
        results: list = []
        run = threading.Thread(target=lambda: results.extend(copier.run([(src, "big.bin" if source_kind == "folder"
                                                                          else "src/big.bin", dst, "dst/big.bin",
                                                                          len(data))])))
        run.start()
        deadline = time.monotonic() + 60
        while listed() != ["dst/big.bin"]:  # made at the server, its reply held
            assert run.is_alive() and time.monotonic() < deadline, (results, proxy.stats)
            time.sleep(0.05)
        copier.cancel()
        time.sleep(0.5)  # the run is cancelled and waits on the reply
        proxy.release()
        run.join(30)
        assert not run.is_alive()
    (result,) = results
    assert result["error_code"] == "cancelled", result
    assert listed() == []


@pytest.mark.parametrize("refusal", ["deny", "slowdown"])
def test_an_abort_the_server_refuses_once_is_sent_again(seaweedfs, bucket, tmp_path, refusal):
    """The first AbortMultipartUpload of a cancelled copy is answered 403 (or 503 SlowDown):
    the upload is still there (ListParts says so), so it is aborted again. A 403 was final
    before and left the upload for the bucket's lifecycle rules (a 503 was, and is, retried
    by the request itself); the 403 case fails on that code."""
    from faultproxy import FaultProxy
    from milvus_backup import _engine

    (tmp_path / "big.bin").write_bytes(os.urandom(12 * MIB))
    with FaultProxy(seaweedfs.endpoint, max_lifetime=120) as proxy:
        getattr(proxy, refusal)(count=1, methods="DELETE", paths="uploadId=")
        copier = _engine.Copier(multipart_threshold=5 * MIB, part_size=5 * MIB, max_bandwidth=2 * MIB)
        results: list = []
        run = threading.Thread(target=lambda: results.extend(copier.run([
            (_engine.Store(f"file://{tmp_path}"), "big.bin", seaweedfs.store(bucket, endpoint=proxy.endpoint),
             "dst/big.bin", 12 * MIB)])))
        run.start()
        deadline = time.monotonic() + 60
        while uploads(seaweedfs, bucket) != ["dst/big.bin"]:
            assert run.is_alive() and time.monotonic() < deadline, results
            time.sleep(0.05)
        copier.cancel()
        run.join(30)
        assert not run.is_alive()
        refused = proxy.stats["slowdown" if refusal == "slowdown" else "denied"]
    (result,) = results
    assert result["error_code"] == "cancelled", result
    assert refused == 1
    assert uploads(seaweedfs, bucket) == []


def sigterm_handled(pid: int) -> bool:
    """Has the process installed a handler for SIGTERM (SigCgt in /proc/PID/status)?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_sigterm_in_the_first_moments_exits_143_without_a_traceback(s3env, tmp_path, delay):
    """The handler is installed before the heavy imports: a SIGTERM ``delay`` seconds after it
    exists (while modules load, the config is read, or the copy starts) is an exit 143, not
    death by the signal and not a traceback from the middle of an import."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.bin").write_bytes(os.urandom(8 * MIB))
    proc = start(s3env, "copy", str(tmp_path / "src"), str(tmp_path / "dst"), "--max-bandwidth", "1MiB/s", "-q")
    deadline = time.monotonic() + 10
    while not sigterm_handled(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.001)
    time.sleep(delay)
    code, out, err = signal_when(proc, lambda: True, "the start")
    assert code == 143, (code, out, err)
    assert "Traceback" not in err, err
    assert (err.splitlines() or [""])[-1].startswith("interrupted") or out.startswith("interrupted: "), out + err


@pytest.mark.milvus
def test_sigterm_mid_create_and_mid_restore(milvus_clusters, seaweedfs, s3env, bucket, tmp_path):
    """A create stopped while a binlog is copied in parts (multipart copy threshold 1 MiB, two
    requests a second): exit 143, a line saying what was copied, no multipart upload and no
    lock left, and the same create run again finishes a backup that verifies. Then a restore
    into the other cluster stopped while it stages the binlogs into that cluster's bucket:
    exit 143, the journal kept, no upload left, and a re-run restores every row."""
    from pymilvus import MilvusClient

    from mbackup_dev.devstack import backup_config

    source, target = milvus_clusters.source, milvus_clusters.target
    client = MilvusClient(uri=source.uri)
    coll = four_mb_collection(client, "term", 11)
    name = "stopped_by_sigterm"
    slow = ["--set", "mbackup.maxRequestsPerSecond=2"]
    try:
        extra = "transfer:\n  multipartCopyThresholdMiB: 1\n"
        src_cfg, dst_cfg = tmp_path / "src.yaml", tmp_path / "dst.yaml"
        src_cfg.write_text(backup_config(source, backup_bucket=bucket, extra=extra))
        dst_cfg.write_text(backup_config(target, backup_bucket=bucket, extra=extra))
        backups = seaweedfs.store(bucket)

        proc = start(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", str(src_cfg), *slow)
        code, _out, err = signal_when(proc, lambda: uploads(seaweedfs, bucket, f"backup/{name}/") != [],
                                     "a multipart copy start", timeout=180)
        assert code == 143, err
        assert "Traceback" not in err, err
        last = err.splitlines()[-1]
        assert last.startswith("interrupted: copied ") and last.endswith("; run the same create again to finish the backup"), err
        assert uploads(seaweedfs, bucket) == []
        assert backups.head(f"backup/{name}/mbackup.lock") is None  # released: a re-run need not wait out the lease
        assert backups.head(f"backup/{name}/meta/backup_meta.json") is None  # not complete, nor looking it

        made = mbackup(s3env, "create", "-n", name, "--filter", coll, "-q", "--config", str(src_cfg))
        assert made.returncode == 0, made.stderr
        verified = mbackup(s3env, "verify", "-n", name, "--deep", "--config", str(src_cfg))
        assert verified.returncode == 0 and verified.stdout.endswith(": 0 problems\n"), verified.stdout + verified.stderr

        staged = seaweedfs.store(target.bucket)
        proc = start(s3env, "restore", "-n", name, "-q", "--config", str(dst_cfg), *slow)
        code, _out, err = signal_when(proc, lambda: uploads(seaweedfs, target.bucket, "mbackup-restore-") != [],
                                     "a staging copy start", timeout=180)
        assert code == 143, err
        assert "Traceback" not in err, err
        last = err.splitlines()[-1]
        assert last.startswith("interrupted: copied ") and last.endswith("; run the same restore again to finish it"), err
        assert uploads(seaweedfs, target.bucket) == []
        assert [k for k, _, _ in staged.list("mbackup-restore-journal/")]  # kept: the re-run resumes

        restored = mbackup(s3env, "restore", "-n", name, "-q", "--config", str(dst_cfg))
        assert restored.returncode == 0, restored.stderr
        assert f"restored default.{coll} as default.{coll}: 8,000 rows in backup, 8,000 imported" in restored.stdout
        assert not [k for k, _, _ in staged.list("mbackup-restore")]
    finally:
        client.drop_collection(coll)
        client.close()
        other = MilvusClient(uri=target.uri)
        other.drop_collection(coll)
        other.close()
