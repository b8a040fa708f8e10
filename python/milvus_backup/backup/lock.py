"""A lease held as one object in a store, so two runs never change one backup at once.

Every write of the lock object is conditional, so of two runs racing exactly one wins:

- acquire creates it only if absent (``If-None-Match: *`` on S3), or takes over a stale
  lock by overwriting only the version it read (``If-Match: <etag>``), never by deleting
  it first;
- renew, every ``heartbeat`` seconds, overwrites only the version this run last wrote. A
  refused renewal means another run took the lock over (this one had gone quiet for
  longer than the lease: paused, cut off): the lock is lost, ``lost`` is set and the
  callbacks registered with ``on_lost`` run (a create cancels its copies);
- release deletes the object only while it still holds this run's token and version.

A lock is stale when its heartbeat is older than ``lease`` seconds, when its holder is a
dead process on this host, or when the object is damaged (not a lock mbackup wrote).
Lease and heartbeat come from the parameters, else from the environment
(``MBACKUP_LOCK_LEASE``, ``MBACKUP_LOCK_HEARTBEAT``, in seconds), else the defaults.
Conditional writes on a version need a store that honours them (S3, GCS, Azure, memory,
a folder). A store that ignores them (some S3-compatible servers, older MinIO and Ceph among
them) is found by a probe the first time a process takes a lock on it, and the lock falls
back, with a warning, to a weaker mode: write unconditionally, wait ``settle`` seconds
(``MBACKUP_LOCK_SETTLE``), read back and hold only if the object still carries this run's
token. Two runs both pass that only if one stalls longer than ``settle`` between finding the
lock free and writing it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..errors import EXIT_UNREACHABLE, ConfigError, MBackupError
from ..format import untrusted
from ..storage.location import AlreadyExists, Location, NotFound, StorageError, VersionChanged

log = logging.getLogger(__name__)

HEARTBEAT = 30.0
LEASE = 120.0
SETTLE = 2.0
_MAX_BYTES = 4096  # a lock mbackup writes is ~150 bytes: anything far bigger is not one
_ATTEMPTS = 3

_SHAPE = untrusted.Obj({"token": untrusted.Text(r"[0-9a-f]{32}", "a token"), "pid": untrusted.Count,
                        "host": str, "heartbeat": untrusted.Number}, {"command": str})


class LockedError(MBackupError):
    """Another run holds the lock: nothing is wrong with the command, so retry later (exit 3)."""

    exit_code: ClassVar[int] = EXIT_UNREACHABLE


class LockLostError(MBackupError):
    """Another run took the lock over from this one: run again once it is done (exit 3)."""

    exit_code: ClassVar[int] = EXIT_UNREACHABLE


@dataclass
class Holder:
    """What a lock object says about the run holding it."""

    token: str
    pid: int
    host: str
    heartbeat: float
    command: str = ""


def parse_holder(data: bytes) -> Holder:
    """The holder a lock object names; ValueError saying what is wrong with a damaged one."""
    tree = untrusted.parse(data, _SHAPE, _MAX_BYTES)
    return Holder(tree["token"], tree["pid"], tree["host"], float(tree["heartbeat"]), tree.get("command", ""))


# Per store (its bucket and server) and process: does it honour conditional writes?
_CONDITIONAL: dict[str, bool] = {}
_CONDITIONAL_MUTEX = threading.Lock()


def honours_conditional_writes(location: Location, near: str, warn: Callable[[str], None], settle: float) -> bool:
    """Probe, once per store and process, whether a write with ``if_absent`` over an existing
    object and one with ``if_match`` on a version that is not there are refused, as a lock
    needs; warn (once) when they are not. The probe object sits beside ``near`` and is
    deleted at once."""
    store = location.bucket_id or location.url
    with _CONDITIONAL_MUTEX:
        if store not in _CONDITIONAL:
            _CONDITIONAL[store] = _probe(location, f"{near}.probe-{uuid.uuid4().hex}")
            if not _CONDITIONAL[store]:
                warn(f"{location.url} does not honour conditional writes (If-None-Match, If-Match): locks on it "
                     f"fall back to write, wait {settle:g} s, read back (weaker: see README, Locks)")
        return _CONDITIONAL[store]


def _probe(location: Location, key: str) -> bool:
    try:
        version = location.write(key, b"1", if_absent=True)
        try:
            location.write(key, b"2", if_absent=True)
            return False  # written over: the condition was ignored
        except AlreadyExists:
            pass
        try:
            location.write(key, b"3", if_match=f'"{uuid.uuid4().hex}"' if version is None else f"{version}x")
            return False
        except VersionChanged:
            return True
    finally:
        location.delete(key)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:
        raise ConfigError(f"{name}: expected seconds between 0 and 86400, got {raw!r}")
    return value


class StoreLock:
    """``with StoreLock(location, key, "backup 'x'", command="create"):`` holds the lock at
    ``key`` (relative to the location)."""

    def __init__(self, location: Location, key: str, what: str, *, command: str = "", lease: float | None = None,
                 heartbeat: float | None = None, on_loss: str = "run it again",
                 warn: Callable[[str], None] = lambda m: print(f"warning: {m}", file=sys.stderr)) -> None:
        self.location, self.key, self.what, self.command = location, key, what, command
        self.on_loss, self.warn = on_loss, warn
        self.lease = lease if lease is not None else _seconds("MBACKUP_LOCK_LEASE", LEASE)
        default_beat = min(HEARTBEAT, self.lease / 4)
        self.heartbeat = heartbeat if heartbeat is not None else _seconds("MBACKUP_LOCK_HEARTBEAT", default_beat)
        self.settle = _seconds("MBACKUP_LOCK_SETTLE", SETTLE)
        self.conditional = True  # until the store is found to ignore conditional writes
        if self.heartbeat >= self.lease:
            raise ConfigError(f"the lock heartbeat ({self.heartbeat:g} s) must be shorter than its lease "
                              f"({self.lease:g} s): check MBACKUP_LOCK_HEARTBEAT and MBACKUP_LOCK_LEASE")
        self.token = uuid.uuid4().hex
        self.etag: str | None = None  # the version this run last wrote
        self.lost = threading.Event()
        self._lost_reason = ""
        self._renewed = 0.0  # monotonic time of the last write that proved we hold it
        self._callbacks: list[Callable[[], None]] = []
        self._mutex = threading.Lock()  # one conditional write at a time: both would carry one etag
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                           "heartbeat": time.time(), "command": self.command}).encode()

    # --- taking and giving back ---------------------------------------------------------

    def acquire(self) -> StoreLock:
        self.conditional = honours_conditional_writes(self.location, self.key, self.warn, self.settle)
        try:
            if self.conditional:
                self._acquire()
            else:
                self._acquire_by_reading_back()
        except BaseException:
            # Ctrl-C (or SIGTERM) lands as a call returns: after our write, before we knew we
            # held the lock. Left there, it would turn the rerun away for a lease.
            with contextlib.suppress(Exception):
                self._delete_if_ours()
            raise
        self._thread = threading.Thread(target=self._beat, name="mbackup-lock", daemon=True)
        self._thread.start()
        return self

    def _acquire(self) -> None:
        for _ in range(_ATTEMPTS):
            started = time.monotonic()
            try:
                self._hold(self.location.write(self.key, self._body(), if_absent=True), started)
                break
            except AlreadyExists:
                pass
            current = self._read()
            if current is None:
                continue  # released meanwhile: create it again
            etag, holder, problem = current
            if holder is not None and not self._stale(holder):
                raise self._held(holder)
            started = time.monotonic()
            try:
                # Over the very version judged stale: if another run took it over since, this fails.
                self._hold(self.location.write(self.key, self._body(), if_match=etag), started)
            except VersionChanged:
                continue  # another run changed it first: judge again what is there now
            if problem:
                self.warn(f"took over the lock on {self.what}: its object {self.key} was damaged ({problem})")
            break
        else:
            raise LockedError(f"could not take the lock on {self.what}: other runs kept changing it; run again")

    def _acquire_by_reading_back(self) -> None:
        """The weaker mode: of runs writing the lock within ``settle`` seconds of each other,
        the last write wins and every other run reads its token back and gives way."""
        current = self._read()
        if holder := self._live_holder(current):
            raise self._held(holder)
        damaged = current[2] if current is not None else ""
        started = time.monotonic()
        self.location.write(self.key, self._body())
        time.sleep(self.settle)
        current = self._read()
        if current is None or current[1] is None or current[1].token != self.token:
            if holder := self._live_holder(current):
                raise self._held(holder)
            raise LockedError(f"could not take the lock on {self.what}: another run wrote it at the same time; "
                              f"run again")
        if current[0] is not None:
            self.etag = current[0]
        self._renewed = started
        if damaged:
            self.warn(f"took over the lock on {self.what}: its object {self.key} was damaged ({damaged})")

    def check_free(self) -> None:
        """Raise what :meth:`acquire` would raise now for a live holder, by reading only
        (a dry run's check)."""
        current = self._read()
        if holder := self._live_holder(current):
            raise self._held(holder)

    def _live_holder(self, current: tuple[str | None, Holder | None, str] | None) -> Holder | None:
        """The run that holds the lock read as ``current``, or None if it is free, stale or damaged."""
        if current is None or current[1] is None or self._stale(current[1]):
            return None
        return current[1]

    def _held(self, holder: Holder) -> LockedError:
        since = time.strftime("%H:%M:%S", time.localtime(holder.heartbeat))
        doing = f" running {holder.command}" if holder.command else ""
        return LockedError(f"another mbackup is working on {self.what} (pid {holder.pid} on {holder.host}{doing}, "
                           f"alive at {since}): wait for it; if it died, run again after {self.lease:.0f} s")

    def _hold(self, etag: str | None, started: float) -> None:
        if etag is None:  # a store that does not answer a put with its version
            found = self.location.head(self.key)
            etag = found[1] if found else None
        self.etag, self._renewed = etag, started

    def _read(self) -> tuple[str | None, Holder | None, str] | None:
        """(version, holder or None when damaged, what is damaged), or None when there is none.
        The version is read before the content: a conditional write on it then fails if the
        content changed in between, so a decision is never made on content newer than it."""
        try:
            found = self.location.head(self.key)
            if found is None:
                return None
            size, etag = found
            if size > _MAX_BYTES:
                return etag, None, f"{size:,} bytes, not a lock"
            data = self.location.read(self.key)
        except NotFound:
            return None
        try:
            return etag, parse_holder(data), ""
        except ValueError as e:
            return etag, None, str(e)

    def _stale(self, holder: Holder) -> bool:
        age = time.time() - holder.heartbeat
        if age > self.lease or -age > self.lease:  # silent too long, or a heartbeat from the future
            return True
        if holder.host == socket.gethostname():
            try:
                os.kill(holder.pid, 0)
            except ProcessLookupError:
                return True
            except (PermissionError, OverflowError, ValueError):
                return False
        return False

    def release(self) -> None:
        """Stop renewing; delete the lock if it is still ours (token and version)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.lost.is_set():
            return
        self._delete_if_ours()

    def _delete_if_ours(self) -> None:
        """Delete the lock if it carries our token (and the version we last wrote, once known)."""
        with self._mutex:
            current = self._read()
            if (current is not None and current[1] and current[1].token == self.token
                    and (self.etag is None or current[0] == self.etag)):
                self.location.delete(self.key)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self.release()
        except StorageError:
            if exc_type is None:
                raise
            # The error already in flight is the one to show; the lock goes stale by itself.

    # --- holding ------------------------------------------------------------------------

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (from the heartbeat thread) when the lock is lost."""
        self._callbacks.append(callback)
        if self.lost.is_set():
            callback()

    def check(self) -> None:
        """Raise LockLostError if another run took the lock over."""
        if self.lost.is_set():
            raise LockLostError(f"lost the lock on {self.what}: {self._lost_reason}; {self.on_loss}")

    def renew(self) -> None:
        """Prove, now, that this run still holds the lock (one conditional write); raise
        LockLostError if it does not."""
        self.check()
        self._renew()
        self.check()

    def _renew(self) -> None:
        with self._mutex:
            if self.lost.is_set():
                return
            started = time.monotonic()
            quiet = started - self._renewed
            try:
                if not self.conditional:
                    current = self._read()
                    if current is None or current[1] is None or current[1].token != self.token:
                        raise VersionChanged(self.key)
                self.etag = self.location.write(self.key, self._body(), if_match=self._own_version()) or self.etag
                self._renewed = started
            except VersionChanged:
                current = self._read()
                if current is not None and current[1] is not None and current[1].token == self.token:
                    # Our own write landed but its answer was lost: that version is ours.
                    self.etag, self._renewed = current[0], started
                    return
                self._lose(f"another run took it over after this one went {quiet:.0f} s without renewing it "
                           f"(the lease is {self.lease:.0f} s)")
            except StorageError as e:
                if quiet <= self.lease:
                    raise  # a missed beat only shortens the lease
                self._lose(f"it could not be renewed for {quiet:.0f} s ({e})")

    def _own_version(self) -> str | None:
        """The condition of a renewal: this run's version, where the store honours it."""
        return self.etag if self.conditional else None

    def _lose(self, reason: str) -> None:
        self._lost_reason = reason
        self.lost.set()
        for callback in self._callbacks:
            callback()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self._renew()
            except StorageError as e:  # tried again at the next beat; lost once the lease has gone by
                log.warning("renew the lock on %s: failed (%s); retrying in %.1fs", self.what, e, self.heartbeat)
            if self.lost.is_set():
                return


def is_held(location: Location, key: str) -> bool:
    """Does a live run hold the lock at ``key``? What ``mbackup gc`` asks before it touches
    anything under a backup: the same judgement as a takeover (a stale or damaged lock is
    not held)."""
    try:
        StoreLock(location, key, key).check_free()
    except LockedError:
        return True
    return False
