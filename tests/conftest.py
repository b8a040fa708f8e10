"""Session fixtures that start a real local stack (see mbackup_dev.devstack), and the
session-end checks: the secrets scan, and in CI that nothing expected to run was skipped."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

import secretscan
from mbackup_dev.devstack import LocalStack, SeaweedFS, disk_shortfall

# The secrets the suite uses: distinctive, so the scan at the end of the session can prove
# none of them shows up in anything mbackup printed or wrote during the run.
S3_SECRET = "mbk-test-secret-5f3a9c71"
MILVUS_PASSWORD = "mbk-test-password-0d2e"
ENV_SECRET = "mbk-env-secret-a61b"
SET_SECRET = "mbk-set-secret-93c4"
SECRETS = (S3_SECRET, MILVUS_PASSWORD, ENV_SECRET, SET_SECRET)

# (command, stdout, stderr) of every mbackup run whose output a test read, in or out of process.
CAPTURED = secretscan.RUNS
# (what, bytes) of what mbackup sent or stored that a test read back: webhook bodies,
# restore journals. Files it wrote under the run's temporary folders are scanned as well.
WRITTEN: list[tuple[str, bytes]] = []
_STARTED: dict[int, str] = {}  # id(Popen) -> command, for mbackup processes not yet read
_BASETEMP: list[Path] = []
IN_CI = bool(os.environ.get("CI"))


def record_written(what: str, data: bytes) -> None:
    WRITTEN.append((what, bytes(data)))


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _is_mbackup(args) -> bool:
    argv = [str(a) for a in (args if isinstance(args, (list, tuple)) else [args])]
    return "milvus_backup" in argv or any(a.endswith("/mbackup") or a == "mbackup" for a in argv[:1])


@pytest.fixture(scope="session", autouse=True)
def record_subprocess_output(tmp_path_factory):
    """Keep what every mbackup process printed, for the secrets scan when the session ends.

    subprocess.run reads its output through Popen.communicate, so wrapping that one sees
    both; a process started but never read (output not piped) is reported as unscanned."""
    _BASETEMP.append(tmp_path_factory.getbasetemp())
    real_init, real_communicate = subprocess.Popen.__init__, subprocess.Popen.communicate

    def init(self, args, *rest, **kwargs):
        real_init(self, args, *rest, **kwargs)
        if _is_mbackup(args):
            _STARTED[id(self)] = str(args)
            secretscan.note_log_files(args if isinstance(args, (list, tuple)) else [args], kwargs.get("cwd"))

    def communicate(self, *args, **kwargs):
        out, err = real_communicate(self, *args, **kwargs)
        command = _STARTED.pop(id(self), None)
        if command is not None:
            if out is None and err is None:
                _STARTED[id(self)] = command  # printed to the terminal: nothing to scan
            else:
                CAPTURED.append((command, _text(out), _text(err)))
        return out, err

    subprocess.Popen.__init__, subprocess.Popen.communicate = init, communicate
    yield CAPTURED
    subprocess.Popen.__init__, subprocess.Popen.communicate = real_init, real_communicate


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The secrets scan, and in CI the check that nothing expected to run was skipped; either
    fails the run."""
    from secretscan import scan

    report = session.config.pluginmanager.get_plugin("terminalreporter")
    problems = []
    result = scan(SECRETS, CAPTURED, WRITTEN, _BASETEMP, _STARTED.values(), secretscan.LOG_FILES)
    if report:
        report.write_line(result.summary())
    problems += [f"secret in {leak}" for leak in result.leaks]
    problems += [f"mbackup output not scanned (not piped): {cmd[:200]}" for cmd in result.unscanned]
    if IN_CI:
        problems += [f"skipped in CI: {nodeid}: {reason}" for nodeid, reason in _SKIPPED_IN_CI]
    if problems:
        if report:
            for line in problems:
                report.write_line(f"FAILED (session check): {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Tests that skipped although CI must run them (see pytest_runtest_makereport).
_SKIPPED_IN_CI: list[tuple[str, str]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """In CI (the CI environment variable is set) a skip is a failure with its reason, unless
    the test is marked optional_in_ci: a missing prerequisite must not pass green."""
    outcome = yield
    rep = outcome.get_result()
    if not (IN_CI and rep.skipped) or hasattr(rep, "wasxfail") or item.get_closest_marker("optional_in_ci"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    _SKIPPED_IN_CI.append((item.nodeid, reason))
    rep.outcome = "failed"
    rep.longrepr = f"skipped in CI, where it must run: {reason}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "milvus: starts two real Milvus 2.3.5 servers (slow; deselect with -m 'not milvus')"
    )
    config.addinivalue_line(
        "markers", "optional_in_ci(reason): may skip in CI too (a check that needs what CI may lack)"
    )


# What a whole run writes at its peak (servers' data, trees, backups, the wheel's venvs): 3.5 GiB,
# measured on a fresh clone of 95d64f5 (free disk sampled every 30 s; its temp folder 3.5 GiB at
# most), with room to grow. Less than that free above SeaweedFS's floor and it would stop taking
# writes part-way, failing every later test with InternalError: refused at the start instead.
SUITE_DISK_ROOM = 5 << 30
_S3_DATA: list[Path] = []


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory):
    """One SeaweedFS (S3 on a free port, access key minioadmin, secret S3_SECRET) for the run."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), secret_key=S3_SECRET, disk_room=SUITE_DISK_ROOM) as s3:
        _S3_DATA.append(s3.workdir)
        yield s3
        _S3_DATA.remove(s3.workdir)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The disk filled during the run (by the run or anything else on the machine): stop in one
    line, naming the test it ended after, rather than fail every later test."""
    for data in _S3_DATA:
        if short := disk_shortfall(data, 0):
            pytest.exit(f"stopped after {item.nodeid}: {short}", returncode=1)


@pytest.fixture(scope="session")
def s3env(seaweedfs):
    """Environment for running the CLI: the test S3's credentials the way a user sets them,
    and every installed plugin loaded."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=seaweedfs.access_key, AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key)
    env.pop("MBACKUP_PLUGINS", None)
    return env


@pytest.fixture(scope="session")
def milvus_clusters(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory):
    """Source and target Milvus clusters on the shared SeaweedFS, started on first use.

    ``.source`` stores into bucket ``milvus-src``, ``.target`` into ``milvus-dst``; both are
    :class:`~mbackup_dev.devstack.MilvusCluster`.
    """
    with LocalStack(tmp_path_factory.mktemp("milvus"), clusters=2, s3=seaweedfs) as stack:
        yield stack


@pytest.fixture(scope="session")
def moto():
    """moto's S3 server, a second S3 implementation (emulators.Moto), for the run."""
    from emulators import Moto

    with Moto() as server:
        yield server


@pytest.fixture(scope="session")
def unconditional_s3():
    """An S3 server that ignores If-None-Match and If-Match on writes (emulators.UnconditionalS3)."""
    from emulators import UnconditionalS3

    with UnconditionalS3() as server:
        yield server


@pytest.fixture(scope="session")
def fake_gcs():
    """fake-gcs-server (GCS reads; writes through its JSON API), for the run."""
    from emulators import FakeGCS

    with FakeGCS() as server:
        yield server


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, request: pytest.FixtureRequest):
    """A fresh bucket named after the test, deleted with its objects afterwards.

    Deleting matters: every bucket holds SeaweedFS volumes until it is gone.
    """
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-") or "test"
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    seaweedfs.create_bucket(name)
    yield name
    seaweedfs.delete_bucket(name)


@contextlib.contextmanager
def tmpfs(mount: Path, options: str):
    """A tmpfs mounted at ``mount`` (made if missing) with ``options`` (``size=4m``, ``ro``...),
    unmounted afterwards; the test is skipped where mounting is not allowed."""
    mount.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)
