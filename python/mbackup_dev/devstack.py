"""Start and stop a real local stack: SeaweedFS for S3 and embedded Milvus 2.3.5 clusters.

Used by the test suite's session fixtures, the demo and the benchmarks; on its own::

    python -m mbackup_dev.devstack            # S3 + source + target, until Ctrl-C

Standard library only; the Milvus part imports ``milvus`` and ``pymilvus`` lazily.

Every port a server opens is chosen here and passed to it explicitly, so several stacks
(other test runs, other engineers) can share one machine. Server processes run in their
own session, log to a file in their work directory and are stopped by pid: SIGTERM, a
grace period, then SIGKILL to the process group. On Linux the kernel also kills them if
the Python thread that started them dies, so start stacks from a long-lived thread
(pytest fixtures run in the main thread).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime
import fcntl
import hashlib
import hmac
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = [
    "LocalStack",
    "MilvusCluster",
    "MilvusTLS",
    "S3Error",
    "S3Response",
    "SeaweedFS",
    "StartupError",
    "disk_shortfall",
    "free_port",
    "s3_request",
    "scratch_folder",
]

LOCALHOST = "127.0.0.1"


class StartupError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


# --- disk -------------------------------------------------------------------------------

# SeaweedFS's volume server stops taking writes when its disk has under 1% free (its
# -minFreeSpace default; `weed mini` has no flag for it) and, in 4.48, does not take them again
# once space is back: every later write is InternalError. Seen on a 400 MiB tmpfs filled to
# 2 MiB free: writes refused within a minute, still refused 30 s after the space was freed.
SEAWEEDFS_FREE_FLOOR = 0.01


def disk_shortfall(path: Path, room: int) -> str | None:
    """None when the filesystem holding ``path`` has ``room`` bytes free above SeaweedFS's
    floor; otherwise the one line that says so and what to do."""
    usage = shutil.disk_usage(path)
    floor = int(usage.total * SEAWEEDFS_FREE_FLOOR)
    if usage.free >= floor + room:
        return None
    gib = 1 << 30
    return (f"{path} has {usage.free / gib:.1f} GiB free of {usage.total / gib:.0f} GiB: SeaweedFS stops "
            f"taking writes below {floor / gib:.1f} GiB free and this needs {room / gib:.1f} GiB above that; "
            f"free some space (old scratch folders under {tempfile.gettempdir()}?) and run again")


@contextlib.contextmanager
def scratch_folder(name: str, keep: bool = False, failed: Callable[[], bool] | None = None) -> Iterator[Path]:
    """A new folder under the system temp dir for a stack's data, removed when the block ends;
    after a failure (an exception, or ``failed()`` true at the end) only its logs (``*.log``)
    stay, and where they are is printed; a failure that left no log leaves nothing.

    Servers' data is GiBs at a benchmark's sizes: left behind run after run, it filled the disk
    until SeaweedFS refused every write (see SEAWEEDFS_FREE_FLOOR)."""
    path = Path(tempfile.mkdtemp(prefix=f"mbackup-{name}-"))

    def keep_only_logs() -> None:  # the servers' logs tell why; their data is only bulk
        for data in [p for p in path.rglob("*") if p.is_file() and p.suffix != ".log"]:
            data.unlink(missing_ok=True)
        if any(p.is_file() for p in path.rglob("*.log")):
            print(f"the run failed: its logs are kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)

    try:
        yield path
    except BaseException:
        if not keep:
            keep_only_logs()
        raise
    if keep:
        print(f"scratch folder kept: {path}", file=sys.stderr)
    elif failed is not None and failed():
        keep_only_logs()
    else:
        shutil.rmtree(path, ignore_errors=True)


# --- ports ------------------------------------------------------------------------------

_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(grpc_offset: int | None = None) -> int:
    """Return a TCP port that is free now; with ``grpc_offset``, ``port + grpc_offset`` is too.

    The kernel picks the port (bind to port 0). Since Linux 4.6 it gives bind() odd ports
    and prefers even ones for outgoing connections, so a port picked this way is unlikely
    to be taken by a client socket before the server binds it. The probe binds the
    wildcard address because Milvus listens on all interfaces. Ports handed out once are
    never handed out again by this process, so the ports given to SeaweedFS, to each
    Milvus and to its etcd cannot collide.
    """
    with _ports_lock:
        for _ in range(500):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("0.0.0.0", 0))
                port = sock.getsockname()[1]
            wanted = [port] if grpc_offset is None else [port, port + grpc_offset]
            if any(p > 65535 or p in _handed_out for p in wanted):
                continue
            if grpc_offset is not None and not _can_bind(port + grpc_offset):
                continue
            _handed_out.update(wanted)
            return port
    raise RuntimeError("found no free TCP port")


# --- server processes ---------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGKILL the child when our thread dies (else None).

    This is what keeps a 300 MB Milvus from outliving a pytest run that was itself killed
    (CI timeout, closed terminal), when no finalizer gets to run.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    sigkill = int(signal.SIGKILL)

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)

    return set_parent_death_signal


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class _Process:
    """One server child process: own session, output appended to a log file."""

    def __init__(self, name: str, args: list[str], log_path: Path, *, env=None, cwd=None):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            self._popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the servers
                preexec_fn=_die_with_parent(),
            )
        _live[self] = None
        log.debug("started %s (pid %d): %s", name, self.pid, " ".join(args))

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def stop(self, grace: float) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the whole process group."""
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                log.info("%s (pid %d) still running %.0f s after SIGTERM; killing it",
                         self.name, self.pid, grace)
                try:
                    # The child leads its own session, so its pid is the group id; it is not
                    # reaped yet, so that id cannot belong to anybody else.
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._popen.wait()
        _live.pop(self, None)

    def failure(self, what: str) -> StartupError:
        state = "still running" if self.running else f"exited with code {self.returncode}"
        return StartupError(
            f"{what} ({self.name} pid {self.pid} {state}); last lines of {self.log_path}:\n"
            f"{_tail(self.log_path)}"
        )


_live: dict[_Process, None] = {}  # insertion-ordered set of processes still to stop


@atexit.register
def _stop_leftovers() -> None:
    # Safety net for scripts that forget stop(): newest first, as a stack would.
    for proc in reversed(list(_live)):
        proc.stop(grace=5)


def _wait_until(ready: Callable[[], bool], proc: _Process, what: str, deadline: float) -> None:
    """Poll ``ready`` until it returns True; fail fast if the process dies."""
    while True:
        if not proc.running:
            raise proc.failure(f"{what}: the process died during startup")
        try:
            if ready():
                return
        except (OSError, http.client.HTTPException):  # refused, reset, timed out: not up yet
            pass
        if time.monotonic() > deadline:
            raise proc.failure(f"{what}: not ready in time")
        time.sleep(0.2)


def _lost_port_race(exc: StartupError) -> bool:
    # Another process may grab a port between free_port() and the server's bind().
    # Go says "address already in use"; `weed mini` checks its ports first and says
    # "Port allocation failed: port N for S3 (specified by flag s3.port) is not available".
    return any(text in str(exc) for text in ("address already in use", "Port allocation failed"))


# Loopback only: never send these requests through an HTTP proxy from the environment.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _http.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


# --- S3 requests ------------------------------------------------------------------------

@dataclass(frozen=True)
class S3Response:
    """One S3 response, whatever its status."""

    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def error_code(self) -> str | None:
        """The ``<Code>`` of an S3 error body, e.g. ``SignatureDoesNotMatch``."""
        if self.status < 300 or not self.body:
            return None
        try:
            return ET.fromstring(self.body).findtext("Code")
        except ET.ParseError:
            return None


def _uri_encode(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text, safe="-_.~" + safe)


def s3_request(
    endpoint: str,
    method: str,
    bucket: str = "",
    key: str = "",
    *,
    access_key: str | None,
    secret_key: str | None,
    body: bytes = b"",
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    region: str = "us-east-1",
    timeout: float = 30.0,
) -> S3Response:
    """Send one path-style S3 request signed with AWS Signature V4 and return the response.

    Any HTTP status is returned, not raised; connection errors raise OSError. With
    ``access_key=None`` the request is sent anonymously (unsigned).
    """
    url = urllib.parse.urlsplit(endpoint)
    path = _uri_encode("/" + bucket + ("/" + key if key else ""), safe="/")
    query_string = "&".join(
        f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted((query or {}).items())
    )
    send = {k.lower(): v for k, v in (headers or {}).items()}
    if body and "content-type" not in send:
        # urllib would add application/x-www-form-urlencoded and store it with the object.
        send["content-type"] = "application/octet-stream"
    if access_key is not None:
        now = datetime.datetime.now(datetime.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        payload_hash = hashlib.sha256(body).hexdigest()
        send.update({"host": url.netloc, "x-amz-date": amz_date,
                     "x-amz-content-sha256": payload_hash})
        names = sorted(send)
        signed_headers = ";".join(names)
        canonical_request = "\n".join([
            method, path, query_string,
            "".join(f"{n}:{str(send[n]).strip()}\n" for n in names),
            signed_headers, payload_hash,
        ])
        scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256", amz_date, scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ])
        signing_key = ("AWS4" + (secret_key or "")).encode()
        for part in (amz_date[:8], region, "s3", "aws4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        send["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
    request = urllib.request.Request(
        f"{url.scheme}://{url.netloc}{path}" + (f"?{query_string}" if query_string else ""),
        data=body if (body or method in ("PUT", "POST")) else None,
        headers=send,
        method=method,
    )
    try:
        with _http.open(request, timeout=timeout) as resp:
            return S3Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                              resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return S3Response(err.code, {k.lower(): v for k, v in err.headers.items()},
                              err.read())


# --- SeaweedFS ----------------------------------------------------------------------------

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(RuntimeError):
    """An S3 request to the local SeaweedFS failed."""

    def __init__(self, what: str, resp: S3Response):
        super().__init__(f"{what}: HTTP {resp.status} {resp.error_code or ''}".rstrip())
        self.response = resp


class SeaweedFS:
    """One SeaweedFS server with an S3 gateway on free ports; the S3 keys are enforced.

    It runs ``weed mini`` rather than ``weed server -s3``. Measured here (2 cores, cargo
    building alongside): S3 answering in 0.7-0.8 s versus 3.1 s, and exit on SIGTERM in
    2.2 s versus 15 s (the filer's gRPC graceful stop waits out a 15 s timeout).
    """

    host = LOCALHOST
    # Each bucket takes 7 volumes at its first write; 1000 volumes is ~140 live buckets.
    # Volumes are sparse files, so the limit costs no disk until it is used.
    volume_max = 1000
    volume_size_limit_mb = 256

    def __init__(self, workdir: Path, access_key: str = "minioadmin",
                 secret_key: str = "minioadmin", *, tls: tuple[Path, Path] | None = None,
                 disk_room: int = 1 << 30, volume_size_limit_mb: int | None = None):
        self.workdir = Path(workdir)
        if volume_size_limit_mb is not None:
            # Larger volumes: fewer growths, each a pause of every write to its bucket.
            self.volume_size_limit_mb = volume_size_limit_mb
        # Bytes the caller expects to write: start() refuses (one line) without that much
        # free above the floor where SeaweedFS stops taking writes.
        self.disk_room = disk_room
        self.access_key = access_key
        self.secret_key = secret_key
        # (certificate file, private key file), PEM: S3 is then also served over HTTPS on
        # https_port; the plain HTTP port (endpoint) keeps working alongside.
        self.tls = (Path(tls[0]), Path(tls[1])) if tls else None
        self.s3_port: int | None = None
        self.https_port: int | None = None
        self.startup_seconds: float | None = None
        self._ports: dict[str, int] = {}
        self._proc: _Process | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"

    @property
    def https_endpoint(self) -> str:
        """The S3 endpoint over TLS (only with ``tls``); the certificate must name 127.0.0.1."""
        if self.tls is None:
            raise RuntimeError("this SeaweedFS was started without tls=(cert, key)")
        return f"https://{self.host}:{self.https_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def start(self, timeout: float = 90.0) -> SeaweedFS:
        """Start ``weed mini`` and wait until S3 accepts a signed request; return self."""
        if self._proc is not None:
            raise RuntimeError("SeaweedFS already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if short := disk_shortfall(self.workdir, self.disk_room):
            raise StartupError(f"SeaweedFS not started: {short}")
        identities = self.workdir / "s3-identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        # `weed mini` saves its flags there and reads them back at the next start.
        saved_flags = self.workdir / "data" / "mini.options"
        if saved_flags.is_file():
            saved_flags.unlink()
        started = time.monotonic()
        deadline = started + timeout
        for attempt in (1, 2):
            self._launch(identities)
            try:
                _wait_until(self._s3_ready, self._proc, "SeaweedFS S3 gateway", deadline)
            except BaseException as exc:  # Ctrl-C included: never leave a half-started server
                self.stop(grace=5)
                if attempt == 1 and isinstance(exc, StartupError) and _lost_port_race(exc):
                    log.warning("SeaweedFS lost a port race, retrying with new ports")
                    continue
                raise
            break
        self.startup_seconds = time.monotonic() - started
        log.info("SeaweedFS S3 at %s (pid %d), up in %.1f s",
                 self.endpoint, self._proc.pid, self.startup_seconds)
        return self

    def restart(self, timeout: float = 90.0) -> SeaweedFS:
        """Start again on the same ports and data directory (stopping first if running),
        as a server that crashed and came back looks to its clients; return self."""
        if not self._ports:
            raise RuntimeError("restart() needs a SeaweedFS that was started before")
        self.stop()
        (self.workdir / "data" / "mini.options").unlink(missing_ok=True)
        started = time.monotonic()
        self._launch(self.workdir / "s3-identities.json", ports=self._ports)
        try:
            _wait_until(self._s3_ready, self._proc, "SeaweedFS S3 gateway", started + timeout)
        except BaseException:
            self.stop(grace=5)
            raise
        log.info("SeaweedFS S3 at %s (pid %d) restarted in %.1f s",
                 self.endpoint, self._proc.pid, time.monotonic() - started)
        return self

    def _launch(self, identities: Path, ports: dict[str, int] | None = None) -> None:
        # weed opens a gRPC port next to each HTTP port. Some parts of `weed mini` assume
        # it is HTTP + 10000 (the admin worker dials admin.port + 10000 whatever
        # -admin.port.grpc says), so every port is picked with its +10000 partner free and
        # both are passed explicitly. The admin server listens even with -admin.ui=false.
        self._ports = dict(ports) if ports else {name: free_port(grpc_offset=10000)
                                                 for name in ("master", "volume", "filer", "s3", "admin")}
        self.s3_port = self._ports["s3"]
        args = ["weed", "-logtostderr=true", "mini",
                f"-dir={self.workdir / 'data'}", f"-ip={self.host}", f"-ip.bind={self.host}"]
        for name, port in self._ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
        args += [
            f"-s3.config={identities}",
            "-s3.autoCreateBucket=false",  # a write to a missing bucket is a bug to see
            "-s3.allowDeleteBucketNotEmpty=true",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed default ports otherwise
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            f"-volume.max={self.volume_max}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
        ]
        for name in ("filer", "s3"):  # unix sockets default to /tmp; keep them with the data
            sock = self.workdir / f"{name}.sock"
            if len(str(sock)) < 100:  # sun_path limit
                args.append(f"-{name}.localSocket={sock}")
        if self.tls is not None:
            if ports is None or self.https_port is None:  # restart() keeps the old port
                self.https_port = free_port()
            args += [f"-s3.cert.file={self.tls[0]}", f"-s3.key.file={self.tls[1]}",
                     f"-s3.port.https={self.https_port}"]
        # `weed mini` turns AWS_* keys found in its environment into an extra identity.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._proc = _Process("weed", args, self.log_path, env=env, cwd=self.workdir)

    def _s3_ready(self) -> bool:
        # A signed ListBuckets answering 200 means the gateway is up, talks to the filer and
        # has loaded the identities (an unsigned GET / answers 403 a little earlier).
        if self.request("GET", timeout=2).status != 200:
            return False
        if self.tls is not None:  # and the HTTPS listener accepts connections
            socket.create_connection((self.host, self.https_port), timeout=2).close()
        return True

    def stop(self, grace: float = 20.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace`` seconds). Idempotent."""
        if self._proc is None:
            return
        self._proc.stop(grace)
        self._proc = None
        # weed leaves its gRPC unix sockets in /tmp, named after our ports.
        for port in self._ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port + 10000}.sock"):
                sock.unlink(missing_ok=True)
        log.info("SeaweedFS on port %s stopped", self.s3_port)

    def __enter__(self) -> SeaweedFS:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # S3 helpers, signed with this server's keys.

    def request(self, method: str, bucket: str = "", key: str = "", **kwargs) -> S3Response:
        """One signed S3 request to this server (see :func:`s3_request`)."""
        return s3_request(self.endpoint, method, bucket, key, access_key=self.access_key,
                          secret_key=self.secret_key, **kwargs)

    def store(self, bucket: str, endpoint: str | None = None):
        """An engine store on ``bucket`` of this server (``endpoint`` to go through a proxy)."""
        from milvus_backup import _engine

        return _engine.Store(f"s3://{bucket}", {
            "aws_endpoint": endpoint or self.endpoint, "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key, "aws_allow_http": "true"})

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` with a signed CreateBucket; no error if it exists."""
        resp = self.request("PUT", name)
        if resp.status != 200 and resp.error_code != "BucketAlreadyOwnedByYou":
            raise S3Error(f"CreateBucket {name}", resp)

    def delete_bucket(self, name: str) -> None:
        """Delete bucket ``name`` and its objects (frees its volumes); no error if missing."""
        resp = self.request("DELETE", name)
        if resp.status not in (200, 204) and resp.error_code != "NoSuchBucket":
            raise S3Error(f"DeleteBucket {name}", resp)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """All object keys in ``bucket`` under ``prefix`` (ListObjectsV2, every page)."""
        keys: list[str] = []
        query = {"list-type": "2", "prefix": prefix}
        while True:
            resp = self.request("GET", bucket, query=query)
            if resp.status != 200:
                raise S3Error(f"ListObjectsV2 {bucket}/{prefix}", resp)
            root = ET.fromstring(resp.body)
            keys += [el.text or "" for el in root.iter(f"{_S3_NS}Key")]
            token = root.findtext(f"{_S3_NS}NextContinuationToken")
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return keys
            query = {**query, "continuation-token": token}


# --- Milvus -------------------------------------------------------------------------------

def _milvus_bin_dir() -> Path:
    """Unpack the ``milvus`` wheel's binaries once per machine and return their directory.

    The embedded server otherwise unpacks 250 MB into every data directory (3.5 s each).
    Override the location with MBACKUP_CACHE_DIR.
    """
    import milvus

    cache = Path(os.environ.get("MBACKUP_CACHE_DIR")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mbackup")
    root = cache / f"milvus-{milvus.__version__}"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs may unpack at the same time
        # Private helper, but the package is pinned (milvus==2.3.5); it skips files whose
        # checksum already matches.
        milvus._initialize_data_files(str(root))
    return root / "bin"


@dataclass(frozen=True)
class MilvusTLS:
    """PEM files for a Milvus proxy that serves gRPC over TLS.

    ``mode`` is ``"server"`` (one-way: clients check the server against ``ca``) or
    ``"mutual"`` (the proxy also asks clients for a certificate ``ca`` signed; the
    cluster's own readiness check presents ``client_cert``/``client_key``). The server
    certificate must name 127.0.0.1, or ``server_name``: then clients check it against that
    name (the readiness check, and ``serverName`` in backup_config).
    """

    mode: str
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("server", "mutual"):
            raise ValueError("MilvusTLS.mode is 'server' or 'mutual'")
        if self.mode == "mutual" and not (self.client_cert and self.client_key):
            raise ValueError("mutual TLS needs client_cert and client_key for the readiness check")


class MilvusCluster:
    """One embedded Milvus 2.3.5 standalone server storing its binlogs in a SeaweedFS bucket.

    With ``etcd_endpoint`` (``host:port``) it keeps its metadata in that external etcd
    under ``etcd_root``; otherwise it runs an embedded etcd, whose address is then
    ``etcd_endpoint`` once started, for a second cluster to share.

    With ``tls`` the proxy serves gRPC over TLS only; with ``authorization`` it asks for a
    user and password (``root``/``Milvus`` at first, see :attr:`password`).
    """

    host = LOCALHOST
    user = "root"

    def __init__(self, workdir: Path, s3: SeaweedFS, bucket: str, root_path: str = "files",
                 etcd_endpoint: str | None = None, etcd_root: str = "by-dev", *,
                 tls: MilvusTLS | None = None, authorization: bool = False):
        self.workdir = Path(workdir)
        self.s3 = s3
        self.bucket = bucket
        self.root_path = root_path
        self.etcd_endpoint = etcd_endpoint
        self.etcd_root = etcd_root
        self.tls = tls
        self.authorization = authorization
        # Milvus' initial root password; whoever changes it on the server sets it here too.
        self.password = "Milvus" if authorization else ""
        self.port: int | None = None  # gRPC (and REST) port of the proxy
        self.metrics_port: int | None = None  # metrics and /healthz
        self.version: str | None = None  # as the server reports it, e.g. "v2.3.5-lite"
        self.startup_seconds: float | None = None
        self._embedded_etcd = etcd_endpoint is None
        self._proc: _Process | None = None

    @property
    def uri(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``pymilvus.MilvusClient`` to reach this cluster as root."""
        kwargs = {"uri": self.uri}
        if self.authorization:
            kwargs["token"] = f"{self.user}:{self.password}"
        if self.tls is not None and self.tls.mode == "server":
            kwargs["server_pem_path"] = str(self.tls.ca)  # pymilvus' name for the CA
        elif self.tls is not None:
            kwargs.update(ca_pem_path=str(self.tls.ca), client_pem_path=str(self.tls.client_cert),
                          client_key_path=str(self.tls.client_key))
        if self.tls is not None and self.tls.server_name:
            kwargs["server_name"] = self.tls.server_name
        return kwargs

    @property
    def log_path(self) -> Path:
        return self.workdir / "milvus.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def start(self, timeout: float = 240.0) -> MilvusCluster:
        """Create the bucket, start the server and wait until it serves gRPC; return self."""
        if self._proc is not None:
            raise RuntimeError("Milvus cluster already started")
        if not self.s3.running:
            raise RuntimeError("start the SeaweedFS before the Milvus cluster that uses it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.s3.create_bucket(self.bucket)  # Milvus does not create it
        bin_dir = _milvus_bin_dir()
        started = time.monotonic()
        deadline = started + timeout
        for attempt in (1, 2):
            self._launch(bin_dir)
            try:
                _wait_until(self._healthy, self._proc, "Milvus health check", deadline)
                self.version = self._wait_for_version(deadline)
            except BaseException as exc:  # Ctrl-C included: never leave a half-started server
                self.stop(grace=5)
                if attempt == 1 and isinstance(exc, StartupError) and _lost_port_race(exc):
                    log.warning("Milvus lost a port race, retrying with new ports")
                    continue
                raise
            break
        self.startup_seconds = time.monotonic() - started
        log.info("Milvus %s at %s (pid %d, bucket %s, etcd %s/%s), up in %.1f s",
                 self.version, self.uri, self._proc.pid, self.bucket, self.etcd_endpoint,
                 self.etcd_root, self.startup_seconds)
        return self

    def _launch(self, bin_dir: Path) -> None:
        from milvus import MilvusServerConfig

        # The wrapper's config renderer picks ports next to the defaults (19530, 2379,
        # 9091...) when they are taken; give it every port instead so that nothing it
        # picks can meet a port picked here, and read the proxy's back from the config.
        config = MilvusServerConfig(data_dir=str(self.workdir))
        ports = {key: free_port() for key in config.configurable_items if key.endswith("_port")}
        config.update(**ports)  # applied by resolve() below
        if self._embedded_etcd:
            self.etcd_endpoint = f"{LOCALHOST}:{ports['etcd_port']}"
        settings = {
            "common.storageType": "minio",
            "minio.address": self.s3.host,
            "minio.port": self.s3.s3_port,
            "minio.accessKeyID": self.s3.access_key,
            "minio.secretAccessKey": self.s3.secret_key,
            "minio.useSSL": "false",
            "minio.bucketName": self.bucket,
            "minio.rootPath": self.root_path,
            "etcd.use.embed": "true" if self._embedded_etcd else "false",
            "etcd.endpoints": self.etcd_endpoint,
            "etcd.rootPath": self.etcd_root,
            # Components find each other through addresses published in etcd, by default
            # the machine's first non-loopback address; loopback keeps working when that
            # address changes or is unreachable.
            **{f"{role}.ip": LOCALHOST for role in (
                "rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord",
                "dataNode")},
            # Graceful stop can hang for good here (query node waiting on a stopped root
            # coord, seen > 10 min); the default allows 1800 s before forcing the exit.
            # This does not cover every stall, hence the SIGKILL in stop().
            "common.gracefulStopTimeout": 3,
            # No log file of its own: everything goes to stdout, i.e. to milvus.log.
            "log.file.rootPath": '""',
        }
        if self.tls is not None:
            settings.update({
                "tls_mode": 1 if self.tls.mode == "server" else 2,
                "server_pem_path": str(self.tls.server_cert),
                "server_key_path": str(self.tls.server_key),
                "ca_pem_path": str(self.tls.ca),
            })
        if self.authorization:
            settings["authorization_enabled"] = True
        for key, value in settings.items():
            config.set(key, value)
        config.resolve()  # writes <workdir>/configs/milvus.yaml
        self.port = int(config.get("proxy_port"))
        self.metrics_port = free_port()

        env = dict(os.environ)
        env.update({
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.metrics_port),  # also serves /healthz
            "MILVUS_RUN_DIR": str(self.workdir / "run"),
            "LD_LIBRARY_PATH": os.pathsep.join(
                p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH")) if p),
        })
        if self._embedded_etcd:
            # The embedded etcd ignores etcd.endpoints and listens on 2379 and peer port
            # 2380 unless given a config file: without it, a second embedded Milvus on the
            # machine (another test run) crashes at start.
            peer = f"http://{LOCALHOST}:{free_port()}"
            etcd_config = self.workdir / "configs" / "embed-etcd.yaml"
            etcd_config.write_text(
                f"name: default\n"
                f"listen-client-urls: http://{self.etcd_endpoint}\n"
                f"advertise-client-urls: http://{self.etcd_endpoint}\n"
                f"listen-peer-urls: {peer}\n"
                f"initial-advertise-peer-urls: {peer}\n"
                f"initial-cluster: default={peer}\n"
            )
            env["ETCD_CONFIG_PATH"] = str(etcd_config)
        # Milvus reads configs/milvus.yaml relative to its working directory.
        self._proc = _Process("milvus", [str(bin_dir / "milvus"), "run", "standalone"],
                              self.log_path, env=env, cwd=self.workdir)

    def _healthy(self) -> bool:
        status, body = _http_get(f"http://{LOCALHOST}:{self.metrics_port}/healthz")
        return status == 200 and b"OK" in body

    def _wait_for_version(self, deadline: float) -> str:
        # /healthz can answer OK a moment before the proxy takes gRPC requests.
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        while True:
            try:
                client = MilvusClient(timeout=10, **self.client_kwargs())
                try:
                    return client.get_server_version(timeout=10)
                finally:
                    client.close()
            except MilvusException as exc:
                if not self._proc.running or time.monotonic() > deadline:
                    raise self._proc.failure(f"Milvus gRPC at {self.uri}: {exc}") from exc
                time.sleep(0.5)

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace`` seconds). Idempotent.

        The grace is short because a graceful stop often stalls (10 s waiting on a job
        scheduler, or for good), and killing loses nothing: metadata is already in etcd
        and flushed data in the bucket. A cluster whose etcd others use (the source of a
        LocalStack) must stop last.
        """
        if self._proc is None:
            return
        self._proc.stop(grace)
        self._proc = None
        log.info("Milvus at %s stopped", self.uri)

    def __enter__(self) -> MilvusCluster:
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


# --- the whole stack ----------------------------------------------------------------------

class LocalStack:
    """SeaweedFS plus none, one (source) or two (source and target) Milvus clusters.

    The target keeps its metadata in the source's embedded etcd under its own root: two
    embedded etcds cannot share the machine's default ports, and this way the two
    clusters are still independent. Pass ``s3`` to use a SeaweedFS that is already
    running; the stack then leaves it running when it stops.
    """

    SOURCE_BUCKET = "milvus-src"
    TARGET_BUCKET = "milvus-dst"
    TARGET_ETCD_ROOT = "by-dev-2"

    def __init__(self, workdir: Path, *, clusters: int = 2, s3: SeaweedFS | None = None):
        if clusters not in (0, 1, 2):
            raise ValueError("clusters must be 0 (S3 only), 1 (source) or 2 (source, target)")
        self.workdir = Path(workdir)
        self.clusters = clusters
        self.s3 = s3
        self._owns_s3 = s3 is None
        self.source: MilvusCluster | None = None
        self.target: MilvusCluster | None = None

    def start(self) -> LocalStack:
        """Start what is missing, in order; on failure stop what was started and re-raise."""
        try:
            if self.s3 is None:
                self.s3 = SeaweedFS(self.workdir / "seaweedfs")
            if not self.s3.running:
                self.s3.start()
                self._owns_s3 = True  # who starts a server stops it, whoever made the object
            if self.clusters >= 1:
                self.source = MilvusCluster(self.workdir / "milvus-src", self.s3,
                                            self.SOURCE_BUCKET)
                self.source.start()
            if self.clusters == 2:
                self.target = MilvusCluster(
                    self.workdir / "milvus-dst", self.s3, self.TARGET_BUCKET,
                    etcd_endpoint=self.source.etcd_endpoint,
                    etcd_root=self.TARGET_ETCD_ROOT,
                )
                self.target.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order (target before its etcd)."""
        for cluster in (self.target, self.source):
            if cluster is not None:
                cluster.stop()
        if self._owns_s3 and self.s3 is not None:
            self.s3.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def describe(self) -> dict:
        """Connection details, as printed by ``python -m mbackup_dev.devstack``."""
        out: dict = {}
        if self.s3 is not None:
            out["s3"] = {"endpoint": self.s3.endpoint, "access_key": self.s3.access_key,
                         "secret_key": self.s3.secret_key}
        for role, cluster in (("source", self.source), ("target", self.target)):
            if cluster is not None:
                out[role] = {"uri": cluster.uri, "version": cluster.version,
                             "bucket": cluster.bucket, "root_path": cluster.root_path,
                             "etcd_endpoint": cluster.etcd_endpoint,
                             "etcd_root": cluster.etcd_root, "workdir": str(cluster.workdir)}
        return out


def main(argv: list[str] | None = None) -> int:
    """Run a local stack until Ctrl-C or SIGTERM; print its connection details as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m mbackup_dev.devstack",
        description="Start SeaweedFS (S3) and Milvus 2.3.5 clusters locally until Ctrl-C.",
        epilog="example: python -m mbackup_dev.devstack --clusters 2 > stack.json",
    )
    parser.add_argument("--clusters", type=int, choices=(0, 1, 2), default=2,
                        help="Milvus clusters to start: 0 = S3 only, 1 = source, "
                             "2 = source and target (default)")
    parser.add_argument("--workdir", type=Path,
                        help="where data and logs go (default: a temporary directory, "
                             "kept after exit)")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="also write a backup.yaml for mbackup against the source cluster "
                             "(backups in the bucket 'backups')")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mbackup-devstack-"))
    # SIGTERM unwinds like Ctrl-C so the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with LocalStack(workdir, clusters=args.clusters) as stack:
        if args.config is not None and stack.source is not None:
            args.config.write_text(backup_config(stack.source, backup_bucket="backups"))
        print(json.dumps(stack.describe(), indent=2), flush=True)
        log.info("stack up, data and logs in %s; Ctrl-C to stop", workdir)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            log.info("stopping")
    return 0


def backup_config(cluster: MilvusCluster, *, backup_bucket: str | None = None, backup_root: str = "backup",
                  extra: str = "") -> str:
    """A ``backup.yaml`` (the Go tool's v2 schema) for mbackup against ``cluster``.

    Backups go to ``backup_bucket`` (default: the cluster's own bucket, as the Go tool's
    shipped config does) under ``backup_root``. TLS and login follow the cluster's. ``extra`` is appended verbatim (more YAML).
    """
    s3 = cluster.s3
    grpc = ""
    if cluster.tls is not None:
        grpc += f"    tlsMode: {cluster.tls.mode}\n    caCertPath: {cluster.tls.ca}\n"
        if cluster.tls.server_name:
            grpc += f"    serverName: {cluster.tls.server_name}\n"
        if cluster.tls.mode == "mutual":
            grpc += f"    mtlsCertPath: {cluster.tls.client_cert}\n    mtlsKeyPath: {cluster.tls.client_key}\n"
    login = f"  user: {cluster.user}\n  password: {cluster.password}\n" if cluster.authorization else ""
    return f"""configVersion: v2
milvus:
{login}  grpc:
    address: {cluster.host}
    port: {cluster.port}
{grpc}  management:
    endpoint: http://{cluster.host}:{cluster.metrics_port}
  storage:
    provider: minio
    address: {s3.host}
    port: {s3.s3_port}
    bucketName: {cluster.bucket}
    rootPath: {cluster.root_path}
    auth:
      accessKeyID: {s3.access_key}
      secretAccessKey: {s3.secret_key}
backup:
  storage:
    bucketName: {backup_bucket or cluster.bucket}
    rootPath: {backup_root}
{extra}"""


# Last: main() uses what is defined above, backup_config included.
if __name__ == "__main__":
    sys.exit(main())
