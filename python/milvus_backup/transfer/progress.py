"""What the flows report while they run, and how the command line shows it.

The flows (create, restore, verify, copy) never print: like restic's archiver they report
to a ``Reporter``, and the command picks the one that shows it. Every Reporter logs (logs.py):
each step with its duration, warnings, the engine's failures and retries. ``Reporter`` itself
shows nothing (library callers, benches); ``ConsoleReporter`` writes warnings to stderr and,
unless the command runs with --quiet or --json, live progress. How anything looks is decided
here, and only here.

On a terminal one live line (rich) shows the innermost step under way: its name, objects,
bytes, the rate over the last ``WINDOW`` seconds and the ETA from it, or restore's import
jobs, or the time spent; it fits the terminal's width and is cleared when the command ends.
In a log (not a TTY) a timestamped line is written every ``log_every`` seconds instead.

Bytes count what the engine has moved: the bytes of finished objects and the partial bytes of
those in flight. So objects are shown as done plus in flight (``19+41/60 objects``): the bytes
shown never belong to objects the line does not count.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from .. import logs
from ..units import format_bytes, format_duration

Counters = Callable[[], dict[str, int]]
Clock = Callable[[], float]

log = logging.getLogger(__name__)
WINDOW = 10.0  # seconds the rate is measured over
TICK = 0.5  # seconds between samples (and redraws on a terminal)


class Reporter:
    """What a flow tells the user while it runs. This one shows nothing; it logs."""

    shows_warnings = False

    def warning(self, message: str) -> None:
        """Something the user should know; the run goes on."""
        log.warning(message, extra={"shown": self.shows_warnings})

    @contextlib.contextmanager
    def step(self, name: str, counters: Counters | None = None, **context: str | None) -> Iterator[None]:
        """A phase of a flow, for the ``with`` block: logged with its duration (and the engine's
        counters, when given, at its end). ``context`` (backup, collection) goes into every
        record logged inside it."""
        with logs.context(phase=name, **context), self._showing(name, counters, context.get("collection")):
            started = time.monotonic()
            log.debug("%s: started", name)
            try:
                yield
            except BaseException as e:
                logs.forward_engine_events()  # the retries before the failure, in this step
                _log_failure(name, time.monotonic() - started, e)
                raise
            logs.forward_engine_events()
            seconds = time.monotonic() - started
            done = f"{name}: done in {seconds:.3f}s"
            if counters is not None:
                done += f": {counted(counters())}"
            log.info(done, extra={"seconds": round(seconds, 3)})

    def phase(self, label: str, counters: Counters) -> contextlib.AbstractContextManager[object]:
        """Engine work under way for the ``with`` block. ``counters()`` (objects_total,
        objects_done, objects_skipped, bytes_total, bytes_done, failures, retries, in_flight)
        may be polled from another thread meanwhile."""
        return self.step(label, counters)

    def imports(self, label: str, done: int, total: int, percent: float) -> None:
        """Restore's import jobs into collection ``label``: ``done`` of ``total`` complete,
        ``percent`` of the whole; called on every poll of Milvus."""
        log.debug("import %s: %d/%d import jobs done, %.0f%%", label, done, total, percent)

    def _showing(self, name: str, counters: Counters | None, collection: str | None
                 ) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


SILENT = Reporter()
_last_failure: list[BaseException] = []


def _log_failure(name: str, seconds: float, e: BaseException) -> None:
    """Said once with its cause, by the innermost step; the steps around it only time it."""
    took = f"{name}: {'interrupted' if isinstance(e, KeyboardInterrupt) else 'failed'} after {seconds:.3f}s"
    if _last_failure and _last_failure[0] is e:
        log.info(took, extra={"seconds": round(seconds, 3)})
        return
    _last_failure[:] = [e]
    log.error("%s: %s", took, str(e) or type(e).__name__, extra={"seconds": round(seconds, 3)})


def counted(p: dict[str, int]) -> str:
    """The engine's counters at the end of a phase, for the log."""
    text = (f"{p.get('objects_done', 0) + p.get('objects_skipped', 0):,}/{p.get('objects_total', 0):,} objects, "
            f"{format_bytes(p.get('bytes_done', 0))}")
    for key, what in (("failures", "failed"), ("retries", "retries")):
        if p.get(key):
            text += f", {p[key]:,} {what}"
    return text


class RateWindow:
    """Bytes per second over the last ``window`` seconds (a sliding window, not the average
    since the start, which lags for minutes after the speed changes)."""

    def __init__(self, window: float = WINDOW, clock: Clock = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, total: int) -> None:
        now = self.clock()
        self.samples.append((now, total))
        # Keep one sample at or before the window's start, so the window is covered whole.
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()

    def rate(self) -> float | None:
        """None until two samples are apart in time."""
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


@dataclass
class Status:
    """One step under way, as the display shows it."""

    name: str
    counters: Counters | None = None
    collection: str | None = None
    started: float = field(default_factory=time.monotonic)
    meter: RateWindow = field(default_factory=RateWindow)
    imports: tuple[int, int, float] | None = None  # restore's import jobs: done, total, percent
    last: dict[str, int] = field(default_factory=dict)

    def sample(self) -> None:
        if self.counters is not None:
            self.last = self.counters()
            self.meter.add(self.last.get("bytes_done", 0))

    def fields(self, now: float) -> list[tuple[str, int]]:
        """(text, priority) in display order; the lowest priority is left out first when the
        line does not fit."""
        label = self.name if not self.collection or self.collection in self.name else f"{self.name} {self.collection}"
        out = [(label, 9)]
        if self.counters is not None and self.last:
            out += counter_fields(self.last, self.meter.rate())
        elif self.imports is not None:
            done, total, percent = self.imports
            out += [(f"{done}/{total} import jobs", 8), (f"{percent:.0f}%", 7)]
        out.append((format_duration(now - self.started), 1))
        return out


def counter_fields(p: dict[str, int], rate: float | None) -> list[tuple[str, int]]:
    """The engine's counters as fields: objects (done plus in flight, so the bytes shown are
    bytes of objects shown), bytes, rate and ETA, failures and retries."""
    done = p.get("objects_done", 0) + p.get("objects_skipped", 0)
    flying = p.get("in_flight", 0)
    objects = f"{done:,}+{flying:,}" if flying else f"{done:,}"
    left = max(p.get("bytes_total", 0) - p.get("bytes_done", 0), 0)
    eta = format_duration(left / rate) if rate and left else "-"
    out = [(f"{objects}/{p.get('objects_total', 0):,} objects", 8),
           (f"{format_bytes(p.get('bytes_done', 0))}/{format_bytes(p.get('bytes_total', 0))}", 6),
           (f"{format_bytes(rate)}/s" if rate is not None else "-/s", 4), (f"ETA {eta}", 5)]
    if p.get("failures"):
        out.append((f"{p['failures']:,} failed", 7))
    if p.get("retries"):
        out.append((f"{p['retries']:,} retries", 3))
    return out


def fit(fields: list[tuple[str, int]], width: int | None = None, sep: str = ", ") -> str:
    """The fields joined, leaving out the least important until the line fits ``width``;
    the first is cut with an ellipsis when it alone is too long. A redraw that wraps leaves
    a stale line behind on a terminal: this never does."""
    kept = list(fields)

    def joined() -> str:
        return kept[0][0] + (": " + sep.join(t for t, _ in kept[1:]) if len(kept) > 1 else "")

    if width is None:
        return joined()
    while len(kept) > 1 and len(joined()) > width:
        lowest = min(range(1, len(kept)), key=lambda i: (kept[i][1], -i))
        del kept[lowest]
    text = joined()
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def timestamp(now: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConsoleReporter(Reporter):
    """On stderr: warnings always; with ``progress`` the live display of the step under way
    (ProgressDisplay), one for the whole command however many steps it takes."""

    shows_warnings = True

    def __init__(self, progress: bool = True, stream: TextIO | None = None, log_every: float = 10.0) -> None:
        self.progress = progress
        self._stream = stream
        self.log_every = log_every
        self.steps: list[Status] = []
        self.display: ProgressDisplay | None = None
        self._lock = threading.Lock()
        self._imports: dict[str, tuple[tuple[int, int], float]] = {}  # collection -> (jobs shown, when)

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up when written: in-process runs swap sys.stderr

    def warning(self, message: str) -> None:
        super().warning(message)
        if self.display is not None:
            self.display.print(f"warning: {message}")
        else:
            print(f"warning: {message}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def _showing(self, name: str, counters: Counters | None, collection: str | None) -> Iterator[None]:
        if not self.progress:
            yield
            return
        status = Status(name, counters, collection)
        status.sample()  # the first line shows counters, and the rate is known from the next tick
        with self._lock:
            self.steps.append(status)
            first = self.display is None
            if first:
                self.display = ProgressDisplay(self.current, stream=self.stream, log_every=self.log_every)
        if first and self.display is not None:
            self.display.start()  # outside the lock: it draws, which reads current()
        try:
            yield
        finally:
            with self._lock:
                self.steps.remove(status)
                display, last = self.display, not self.steps
                if last:
                    self.display = None
            if last and display is not None:
                display.stop()

    def current(self) -> Status | None:
        with self._lock:
            return self.steps[-1] if self.steps else None

    def imports(self, label: str, done: int, total: int, percent: float) -> None:
        super().imports(label, done, total, percent)
        if not self.progress:
            return
        status, display = self.current(), self.display
        if status is not None:
            status.imports = (done, total, percent)  # drawn with the next redraw
            if display is not None and display.tty:
                return
        # In a log, a line whenever a job finishes, and every log_every seconds meanwhile.
        shown, at = self._imports.get(label, ((-1, -1), 0.0))
        if shown != (done, total) or time.monotonic() - at >= self.log_every:
            line = f"{timestamp()} import {label}: {done}/{total} import jobs done, {percent:.0f}%"
            if display is not None:
                display.print(line)
            else:
                print(line, file=self.stream, flush=True)
            self._imports[label] = ((done, total), time.monotonic())


def _may_be_terminal(stream: TextIO) -> bool:
    """Whether rich could take ``stream`` for a terminal: it is one, or the environment says
    what to take it for (TTY_COMPATIBLE, FORCE_COLOR: rich's Console.is_terminal decides)."""
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    return any(name in os.environ for name in ("TTY_COMPATIBLE", "FORCE_COLOR"))


class ProgressDisplay:
    """The live line: redrawn in place every TICK seconds on a terminal, written with a
    timestamp every ``log_every`` seconds otherwise."""

    def __init__(self, current: Callable[[], Status | None], stream: TextIO | None = None,
                 log_every: float = 10.0, console: Any = None) -> None:
        self.current = current
        self.stream = stream or sys.stderr
        self.console = console
        if console is None and _may_be_terminal(self.stream):
            # rich costs a tenth of a second to import: only where it may draw the live line.
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False, soft_wrap=False)
        if self.console is not None:
            self.stream = self.console.file
        self.tty = self.console is not None and self.console.is_terminal
        self.log_every = log_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._lock = threading.Lock()

    def line(self, width: int | None) -> str | None:
        status = self.current()
        return None if status is None else fit(status.fields(time.monotonic()), width)

    def render(self) -> Any:
        from rich.text import Text

        return Text(self.line(self.console.width) or "", no_wrap=True, overflow="ellipsis")

    def start(self) -> None:
        if self.tty:
            from rich.live import Live

            self._live = Live(self.render(), console=self.console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=True)
            self._live.start()
        self._thread = threading.Thread(target=self._run, name="mbackup-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_line = time.monotonic()
        while not self._stop.wait(TICK):
            status = self.current()
            if status is not None:
                status.sample()
            if self.tty:
                with self._lock:
                    self._live.update(self.render(), refresh=True)
            elif time.monotonic() - last_line >= self.log_every:
                self._write_line()
                last_line = time.monotonic()

    def _write_line(self) -> None:
        text = self.line(None)
        if text:
            self.print(f"{timestamp()} {text}")

    def print(self, text: str) -> None:
        """A line above the live one (a warning), or in the log."""
        from rich.text import Text

        with self._lock:
            if self._live is not None:
                self._live.console.print(Text(text), soft_wrap=True)
            else:
                self.stream.write(text + "\n")
                self.stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None
