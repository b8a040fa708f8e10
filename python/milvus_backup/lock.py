"""A lease held as one object in a store, so two runs never work on one backup at once.

The lock object is created with a conditional write (``If-None-Match: *`` on S3): of two
runs racing for it exactly one succeeds. The holder rewrites it every ``HEARTBEAT`` seconds;
a lock whose holder is a dead process on this host, or whose heartbeat is older than
``LEASE`` seconds, is stale and may be taken over (again by a conditional write).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from . import _engine
from .errors import MBackupError

HEARTBEAT = 30.0
LEASE = 120.0


class LockedError(MBackupError):
    """Another run holds the lock."""


class StoreLock:
    def __init__(self, store: Any, key: str, what: str) -> None:
        self.store, self.key, self.what = store, key, what
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                           "heartbeat": time.time()}).encode()

    def acquire(self) -> StoreLock:
        for _ in range(2):
            try:
                self.store.put(self.key, self._body(), if_absent=True)
                break
            except _engine.AlreadyExistsError:
                holder = self._holder()
                if holder is not None and not _stale(holder):
                    since = time.strftime("%H:%M:%S", time.localtime(holder.get("heartbeat", 0)))
                    raise LockedError(
                        f"another mbackup is working on {self.what} (pid {holder.get('pid')} on {holder.get('host')}, "
                        f"alive at {since}): wait for it; if it died, run again after {LEASE:.0f} s") from None
                self.store.delete(self.key)  # stale: take over (the next conditional write decides)
        else:
            raise LockedError(f"could not take the lock on {self.what}: another run took it first")
        self._thread = threading.Thread(target=self._beat, name="mbackup-lock", daemon=True)
        self._thread.start()
        return self

    def _holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get(self.key))
        except _engine.NotFoundError:
            return None
        except ValueError:
            return {}  # unreadable: treat as stale

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self.store.put(self.key, self._body())
            except _engine.EngineError:
                pass  # a missed beat only shortens the lease

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        holder = self._holder()
        if holder is not None and holder.get("token") == self.token:
            self.store.delete(self.key)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _stale(holder: dict[str, Any]) -> bool:
    if not holder:
        return True
    if time.time() - float(holder.get("heartbeat", 0)) > LEASE:
        return True
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", 0)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False


def is_held(store: Any, key: str) -> bool:
    """Does a live run hold the lock at ``key``? What ``mbackup gc`` asks before it touches
    anything under a backup: the same judgement as a takeover (a stale lock is not held)."""
    holder = StoreLock(store, key, key)._holder()
    return isinstance(holder, dict) and not _stale(holder)
