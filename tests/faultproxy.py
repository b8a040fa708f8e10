"""A TCP proxy on 127.0.0.1 that puts faults between mbackup and an S3 server.

Standard library only. Each client connection gets its own upstream connection; the proxy
reads the HTTP/1.1 requests going up (heads and Content-Length bodies) so it can act on a
request boundary, and counts the response bytes coming down so it can cut or freeze a
response in the middle of its body. Clients do not pipeline, so when a new request head
arrives the previous response has been read in full.

The mode is switched at run time, for the requests that start after the switch::

    with FaultProxy(seaweedfs.endpoint, seed=7) as proxy:
        proxy.slowdown(fraction=0.2)                       # 20% of requests: 503 SlowDown
        proxy.drop(fraction=0.1, after_bytes=(512, 4096))  # cut responses mid-body
        proxy.stall(8, fraction=0.1)                       # hold silent 8 s, then close
        proxy.release()                                    # end the stalls held now, at once
        proxy.slowdown(count=5, methods="PUT")             # the next 5 PUTs: 503
        proxy.slowdown(count=1, paths="uploadId=")         # the next request naming an upload: 503
        proxy.corrupt(count=1, at_byte=8192, paths="/obj")  # flip one byte of a response
        proxy.corrupt_request(count=1, at_byte=5000, paths="/obj")  # ... of a request body
        proxy.passthrough()
        proxy.stats                                        # what was injected so far
        proxy.seen["GET /bucket/key"]                      # requests by method and path
        proxy.heads                                        # (method, path, headers) of each

A fault applies to a ``fraction`` of requests (decided by an RNG seeded with ``seed``) or
to the next ``count`` requests, optionally only to some HTTP ``methods`` and to request
paths containing ``paths``. Bounded: every
thread is a daemon, ``stop()`` closes the listener and every connection, and the proxy
stops itself after ``max_lifetime`` seconds.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["FaultProxy"]

_HEAD_LIMIT = 64 * 1024
# Rules answered by the proxy itself: (stats counter, status line, S3 code, message).
_ERRORS = {
    "slowdown": ("slowdown", "503 Slow Down", "SlowDown", "Please reduce your request rate."),
    "deny": ("denied", "403 Forbidden", "AccessDenied", "Access Denied"),
}
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class _Rule:
    kind: str  # "pass", "slowdown", "deny", "drop", "stall", "corrupt", "corrupt_request"
    fraction: float = 1.0
    count: int | None = None  # None: every request, with probability fraction
    after_bytes: tuple[int, int] | None = None  # drop/stall once the response reached this many bytes
    seconds: float = 0.0  # stall length
    then: str = "close"  # after a stall: "close" the connection or "pass" the bytes on
    methods: frozenset[str] | None = None  # only requests with these HTTP methods (None: all)
    paths: str | None = None  # only requests whose path contains this (None: all)


def _methods(methods) -> frozenset[str] | None:
    return frozenset(m.upper() for m in ([methods] if isinstance(methods, str) else methods)) if methods else None


def _byte_range(value: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _Conn:
    """One client connection and its upstream twin."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.lock = threading.Lock()
        self.closed = False
        # Set when a request is forwarded with a response fault: (bytes allowed, action, rule).
        self.budget: tuple[int, str, _Rule] | None = None
        self.sent_down = 0  # response bytes passed to the client since the last request

    def shutdown(self) -> None:
        """End the connection from any thread: both pumps wake up and return. The sockets are
        closed by the thread that owns them, once both pumps are done, so a descriptor is
        never reused under a pump still holding it."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv()
            except OSError:
                pass


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``upstream`` (``http://host:port``), injecting faults."""

    def __init__(self, upstream: str, *, seed: int = 0, max_lifetime: float = 300.0, port: int = 0) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.max_lifetime = max_lifetime
        self._requested_port = port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rule = _Rule("pass")
        self._remaining: int | None = None
        self._stopped = threading.Event()
        self._wake = threading.Event()  # set (and replaced) by release() and stop(): ends the stalls held
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self.stats: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()  # "METHOD /path" (no query) -> requests started
        self.heads: list[tuple[str, str, dict[str, str]]] = []  # each request's method, path, headers
        self.errors: list[str] = []  # unexpected exceptions in proxy threads, for debugging
        self.port: int | None = None

    # --- life cycle ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(256)
        listener.settimeout(0.2)  # the accept loop notices stop() within this
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        self._thread("faultproxy-accept", self._accept_loop)
        return self

    def stop(self) -> None:
        """Close the listener and every connection; idempotent, callable from any thread."""
        self._stopped.set()
        self._wake.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            conn.shutdown()

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- modes --------------------------------------------------------------------------

    def _set(self, rule: _Rule) -> None:
        if rule.count is None and not 0.0 <= rule.fraction <= 1.0:
            raise ValueError(f"fraction must be within 0..1, not {rule.fraction}")
        with self._lock:
            self._rule, self._remaining = rule, rule.count

    def passthrough(self) -> None:
        """Forward everything untouched."""
        self._set(_Rule("pass"))

    def slowdown(self, *, fraction: float = 1.0, count: int | None = None, methods=None,
                 paths: str | None = None) -> None:
        """Answer ``503 SlowDown`` (S3's throttling error, with ``Connection: close``)."""
        self._set(_Rule("slowdown", fraction, count, methods=_methods(methods), paths=paths))

    def deny(self, *, count: int | None = None, methods=None, paths: str | None = None) -> None:
        """Answer ``403 AccessDenied``, as a bucket policy refusing that request would."""
        self._set(_Rule("deny", 1.0, count, methods=_methods(methods), paths=paths))

    def drop(self, *, fraction: float = 1.0, count: int | None = None,
             after_bytes: int | tuple[int, int] | None = 0, methods=None) -> None:
        """Close the connection once the response has passed ``after_bytes`` bytes (a
        ``(lo, hi)`` pair picks a length at random per request; 0 drops before any answer)."""
        self._set(_Rule("drop", fraction, count, _byte_range(after_bytes), methods=_methods(methods)))

    def stall(self, seconds: float, *, fraction: float = 1.0, count: int | None = None,
              after_bytes: int | tuple[int, int] | None = None, then: str = "close", methods=None,
              paths: str | None = None) -> None:
        """Hold the connection silent for ``seconds``: before the request goes up, or once
        the response has passed ``after_bytes`` bytes. Then ``close`` it or ``pass`` on."""
        if then not in ("close", "pass"):
            raise ValueError("then must be 'close' or 'pass'")
        self._set(_Rule("stall", fraction, count, _byte_range(after_bytes), seconds, then, _methods(methods), paths))

    def corrupt(self, *, at_byte: int, fraction: float = 1.0, count: int | None = None, methods="GET",
                paths: str | None = None) -> None:
        """Flip the bits of one response byte, ``at_byte`` from the start of the response (the
        status line and headers count: pick an offset past them, a few hundred bytes), and
        pass the rest on: damage in transit that no length check can see."""
        self._set(_Rule("corrupt", fraction, count, _byte_range(at_byte), methods=_methods(methods), paths=paths))

    def corrupt_request(self, *, at_byte: int, fraction: float = 1.0, count: int | None = None, methods="PUT",
                        paths: str | None = None) -> None:
        """Flip the bits of one byte of a request's body, ``at_byte`` from its start, and pass
        the rest on: an upload damaged on its way to the server, same length."""
        self._set(_Rule("corrupt_request", fraction, count, _byte_range(at_byte), methods=_methods(methods),
                        paths=paths))

    def release(self) -> None:
        """End every stall held now, each as its rule says (``then``); stalls that start later
        are held as before."""
        with self._lock:
            held, self._wake = self._wake, threading.Event()
        held.set()

    def _hold(self, seconds: float) -> None:
        self._wake.wait(seconds)

    def _decide(self, method: str, path: str) -> _Rule:
        """The rule for the request starting now: the current one, or pass-through."""
        with self._lock:
            self.stats["requests"] += 1
            self.seen[f"{method} {path.split('?', 1)[0]}"] += 1
            rule = self._rule
            if (rule.kind == "pass" or (rule.methods is not None and method not in rule.methods)
                    or (rule.paths is not None and rule.paths not in path)):
                return _Rule("pass")
            if self._remaining is not None:
                if self._remaining <= 0:
                    return _Rule("pass")
                self._remaining -= 1
            elif self._rng.random() >= rule.fraction:
                return _Rule("pass")
            return rule

    def _pick(self, span: tuple[int, int]) -> int:
        with self._lock:
            return self._rng.randint(*span)

    # --- plumbing -----------------------------------------------------------------------

    def _thread(self, name: str, target, *args) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except OSError:
                pass  # a reset or a socket closed under us: the connection is over
            except Exception as e:  # never let a proxy thread raise into pytest
                if self.running:
                    self.errors.append(f"{name}: {type(e).__name__}: {e}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        listener = self._listener
        try:
            while self.running:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
                self._thread("faultproxy-conn", self._serve, client)
        finally:
            listener.close()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            with self._lock:
                self.stats["upstream_unreachable"] += 1
            client.close()  # the server is down: the client sees the connection close
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(client, upstream)
        with self._lock:
            running = self.running
            if running:
                self._conns.add(conn)
                self.stats["connections"] += 1
        if not running:
            client.close()
            upstream.close()
            return
        down = None
        try:
            down = self._thread("faultproxy-down", self._pump_down, conn)
            self._pump_up(conn)
        finally:
            conn.shutdown()
            if down is not None:
                down.join()  # prompt: it is woken by the shutdown, or by stop() when stalled
            client.close()
            upstream.close()
            with self._lock:
                self._conns.discard(conn)

    def _pump_up(self, conn: _Conn) -> None:
        """Client -> upstream, one request at a time."""
        buf = b""
        while self.running and not conn.closed:
            while b"\r\n\r\n" not in buf:
                if len(buf) > _HEAD_LIMIT:
                    return
                data = conn.client.recv(_CHUNK)
                if not data:
                    return
                buf += data
            end = buf.index(b"\r\n\r\n") + 4
            head, buf = buf[:end], buf[end:]
            method, path, headers = _parse_head(head)
            with self._lock:
                self.heads.append((method, path, headers))
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._forward_opaque(conn, head + buf)  # no framing to follow: pass the rest on
                return
            length = int(headers.get("content-length", "0") or 0)
            rule = self._decide(method, path)
            if rule.kind in ("slowdown", "deny"):
                self._discard_body(conn, buf, length)
                self._answer_error(conn, method, path, *_ERRORS[rule.kind])
                return
            if rule.kind == "drop" and rule.after_bytes == (0, 0):
                self._count("dropped")
                return  # closed before any answer
            if rule.kind == "stall" and rule.after_bytes is None:
                self._count("stalled")
                self._hold(rule.seconds)
                if rule.then == "close" or not self.running:
                    return
            with conn.lock:
                conn.sent_down = 0
                conn.budget = None
                if rule.kind in ("drop", "stall", "corrupt") and rule.after_bytes is not None:
                    conn.budget = (self._pick(rule.after_bytes), rule.kind, rule)
            conn.upstream.sendall(head)
            # The body, as it arrives; whatever follows it is the next request.
            flip = self._pick(rule.after_bytes) if rule.kind == "corrupt_request" and rule.after_bytes else None
            body, buf = buf[:length], buf[length:]
            sent = 0
            while True:
                if flip is not None and sent <= flip < sent + len(body):
                    at = flip - sent
                    body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]
                    self._count("corrupted_requests")
                if body:
                    conn.upstream.sendall(body)
                sent += len(body)
                if sent >= length:
                    break
                body = conn.client.recv(min(_CHUNK, length - sent))
                if not body:
                    return

    def _pump_down(self, conn: _Conn) -> None:
        """Upstream -> client, cutting, freezing or damaging a response when its budget runs out."""
        try:
            while self.running and not conn.closed:
                data = conn.upstream.recv(_CHUNK)
                if not data:
                    return
                with conn.lock:
                    budget = conn.budget
                    sent = conn.sent_down
                    # A byte to corrupt must be inside this chunk; a cut may fall on its end.
                    reached = budget is not None and sent + len(data) > budget[0] - (budget[1] != "corrupt")
                    if reached:
                        conn.budget = None
                    conn.sent_down = sent + len(data)
                if not reached:
                    conn.client.sendall(data)
                    continue
                allowed, action, rule = budget
                if action == "corrupt":
                    i = allowed - sent
                    self._count("corrupted")
                    conn.client.sendall(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
                    continue
                conn.client.sendall(data[:max(0, allowed - sent)])
                if action == "drop":
                    self._count("dropped")
                    return
                self._count("stalled")
                self._hold(rule.seconds)
                if rule.then == "close" or not self.running:
                    return
                conn.client.sendall(data[max(0, allowed - sent):])
        finally:
            conn.shutdown()

    def _forward_opaque(self, conn: _Conn, pending: bytes) -> None:
        self._count("opaque")  # the requests that follow on this connection are not seen
        conn.upstream.sendall(pending)
        while self.running and not conn.closed:
            data = conn.client.recv(_CHUNK)
            if not data:
                return
            conn.upstream.sendall(data)

    def _discard_body(self, conn: _Conn, buf: bytes, length: int) -> None:
        left = length - len(buf[:length])
        while left > 0:
            data = conn.client.recv(min(_CHUNK, left))
            if not data:
                return
            left -= len(data)

    def _answer_error(self, conn: _Conn, method: str, path: str, counted: str, status: str, code: str,
                      message: str) -> None:
        self._count(counted)
        request_id = uuid.uuid4().hex[:16].upper()
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<Resource>{_xml_escape(path.split('?', 1)[0])}</Resource><RequestId>{request_id}</RequestId></Error>"
                ).encode()
        head = (f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nx-amz-request-id: {request_id}\r\n"
                f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
                "Server: faultproxy\r\nConnection: close\r\n\r\n").encode()
        conn.client.sendall(head if method == "HEAD" else head + body)

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.rpartition(" ")[0] or rest
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
