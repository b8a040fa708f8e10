"""What adapters ask Milvus over HTTP beside gRPC: the REST API (segment describe, import
jobs) and the management port's GC pause, as the Go tool calls them
(internal/client/milvus/{restful,manage}.go).

:class:`GcHold` keeps Milvus' garbage collector from deleting binlogs a backup is reading:
one cluster-wide pause (Milvus 2.4 - 2.6.7) or one ticket per collection (2.6.8+), renewed
while the backup runs and always released, also when it fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from ...errors import UnreachableError
from ..connection import MilvusError

log = logging.getLogger(__name__)

PAUSE = "/management/datacoord/garbage_collection/pause"
RESUME = "/management/datacoord/garbage_collection/resume"


class HttpFailed(MilvusError):
    """An HTTP request to Milvus failed; ``status`` is 0 when nothing answered."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class HttpUnreachable(HttpFailed, UnreachableError):
    """Nothing answered, or the server failed (HTTP 5xx) or asked to slow down (HTTP 429)."""


def http_failure(message: str, status: int = 0) -> HttpFailed:
    """The error for a request that failed with ``status`` (0: nothing answered)."""
    retry_later = status == 0 or status == 429 or status >= 500
    return (HttpUnreachable if retry_later else HttpFailed)(message, status)


class HttpApi:
    """JSON over HTTP to one Milvus endpoint. ``token`` (the REST API's ``user:password``)
    goes in a bearer header and never into a message."""

    def __init__(self, base: str, what: str, *, token: str = "", timeout: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.what = what
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HttpApi({self.base!r}, {self.what!r})"

    def request(self, verb: str, path: str, *, query: dict[str, str] | None = None, body: Any = None,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, method=verb, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            with e:
                detail = _message(e.read())
            raise http_failure(f"{self.what} at {self.base} answered {verb} {path} with HTTP {e.code}"
                               + (f": {detail}" if detail else ""), e.code) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise http_failure(f"cannot reach {self.what} at {self.base} ({reason})") from None
        try:
            answer = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise HttpFailed(f"{self.what} at {self.base} answered {verb} {path} with something that is not "
                             f"JSON: {raw[:80]!r}") from None
        return answer if isinstance(answer, dict) else {"data": answer}


def _message(raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:200]
    if isinstance(answer, dict):
        return str(answer.get("msg") or answer.get("message") or "")[:200]
    return ""


class GcHold:
    """Milvus' GC paused for a backup: cluster-wide, or one ticket per collection when
    ``tickets`` (2.6.8+, where a resume without its ticket is refused). Renewed every half
    lease while held; :meth:`release` ends it and is safe to call any number of times."""

    def __init__(self, api: HttpApi | None, *, tickets: bool) -> None:
        self.api = api
        self.tickets = tickets
        self.problem = ""  # why the last pause did not hold everything asked for
        self._held: dict[int, str] = {}  # collection id (0: the cluster) -> ticket ("" without tickets)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        with self._lock:
            return bool(self._held)

    def pause(self, seconds: int, collection_ids: Iterable[int] = ()) -> bool:
        """Hold GC for ``seconds`` (renewed until released): the whole cluster, or each of
        ``collection_ids`` with tickets. False when the server has no such control or
        refused some of it (``problem`` says why); what was held stays held until
        :meth:`release`. Interrupted, it releases what it held before raising."""
        if self.api is None:
            self.problem = "no management endpoint is set (milvus.management.endpoint)"
            return False
        wanted = sorted(set(collection_ids)) if self.tickets else [0]
        complete = True
        try:
            for collection_id in wanted:
                try:
                    self._pause_one(seconds, collection_id)
                except HttpFailed as e:
                    self.problem = str(e)
                    complete = False
        except BaseException:
            with contextlib.suppress(MilvusError):
                self.release()
            raise
        if self.held and self._renewer is None:
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew, args=(seconds,), name="mbackup-gc-renew", daemon=True)
            self._renewer.start()
        return complete and self.held

    def _pause_one(self, seconds: int, collection_id: int) -> None:
        api = self._endpoint()
        answer = api.request("GET", PAUSE, query={"pause_seconds": str(int(seconds)),
                                                       "collection_id": str(collection_id)})
        ticket = str(answer.get("ticket") or "")
        if self.tickets and not ticket:
            raise HttpFailed(f"{api.what} at {api.base} paused GC without a ticket to resume it with")
        with self._lock:
            old = self._held.get(collection_id)
            self._held[collection_id] = ticket
        if old:  # a renewal: the new ticket holds the collection, the old one can go
            self._resume_one(old)

    def _endpoint(self) -> HttpApi:
        # pause() returns before any request when there is no endpoint, so nothing is held.
        assert self.api is not None, "GC hold used without a management endpoint"
        return self.api

    def _resume_one(self, ticket: str) -> None:
        self._endpoint().request("GET", RESUME, query={"ticket": ticket} if ticket else None)

    def _renew(self, seconds: int) -> None:
        while not self._stop.wait(max(seconds / 2, 0.05)):
            with self._lock:
                held = list(self._held)
            for collection_id in held:
                if self._stop.is_set():
                    return
                try:
                    self._pause_one(seconds, collection_id)
                except MilvusError as e:  # the lease may still run; release() reports
                    log.warning("renew the GC pause: failed (%s); retrying in %.1fs", e, max(seconds / 2, 0.05))

    def release(self) -> None:
        """Resume GC: every ticket, or the cluster-wide pause. Raises :class:`MilvusError`
        naming what could not be released (it then lapses when its lease ends)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
            self._renewer = None
        with self._lock:
            held, self._held = self._held, {}
        failed = []
        for collection_id, ticket in held.items():
            try:
                self._resume_one(ticket)
            except HttpFailed as e:
                failed.append((collection_id, str(e)))
        if failed:
            what = "the cluster-wide pause" if failed[0][0] == 0 else f"{len(failed)} of {len(held)} collection pauses"
            raise MilvusError(f"could not resume Milvus garbage collection ({what}: {failed[0][1]}); it resumes by "
                              "itself when the pause lapses")
