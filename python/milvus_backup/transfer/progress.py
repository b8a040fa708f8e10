"""What the flows report while they run, and how the command line shows it.

The flows (create, restore, verify, copy) never print: like restic's archiver they report
to a ``Reporter``, and the command picks the one that shows it. ``Reporter`` itself shows
nothing (library callers, benches); ``ConsoleReporter`` writes warnings to stderr and, unless
the command runs with --quiet or --json, live progress: engine counters (objects, bytes,
rate, ETA) and restore's import jobs. How anything looks is decided here, and only here.

On a terminal the counters' line redraws in place twice a second; in a log (not a TTY) one
line is written every ``log_every`` seconds so CI output stays readable.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..units import format_bytes, format_duration

Counters = Callable[[], dict[str, int]]


class Reporter:
    """What a flow tells the user while it runs. This one shows nothing."""

    def warning(self, message: str) -> None:
        """Something the user should know; the run goes on."""

    def phase(self, label: str, counters: Counters) -> contextlib.AbstractContextManager[object]:
        """Engine work under way for the ``with`` block. ``counters()`` (objects_total,
        objects_done, objects_skipped, bytes_total, bytes_done, failures, retries) may be
        polled from another thread meanwhile."""
        return contextlib.nullcontext()

    def imports(self, label: str, done: int, total: int, percent: float) -> None:
        """Restore's import jobs into collection ``label``: ``done`` of ``total`` complete,
        ``percent`` of the whole; called on every poll of Milvus."""


SILENT = Reporter()


class ConsoleReporter(Reporter):
    """On stderr: warnings always; with ``progress`` the engine's counters (ProgressDisplay)
    and a line per change of the import jobs, repeated every 10 s while nothing changes."""

    def __init__(self, progress: bool = True, stream: TextIO | None = None) -> None:
        self.progress = progress
        self._stream = stream
        self._imports: dict[str, tuple[str, float]] = {}  # collection -> (line shown, when)

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up when written: in-process runs swap sys.stderr

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=self.stream)

    def phase(self, label: str, counters: Counters) -> contextlib.AbstractContextManager[object]:
        return ProgressDisplay(counters, label=label, stream=self.stream, enabled=self.progress)

    def imports(self, label: str, done: int, total: int, percent: float) -> None:
        if not self.progress:
            return
        line = f"restore {label}: {done}/{total} import jobs done, {percent:.0f}%"
        shown, at = self._imports.get(label, ("", 0.0))
        if line != shown or time.monotonic() - at > 10:
            print(line, file=self.stream, flush=True)
            self._imports[label] = (line, time.monotonic())


class ProgressDisplay:
    def __init__(self, read: Callable[[], dict[str, int]], label: str = "copy", stream: TextIO | None = None,
                 enabled: bool = True, log_every: float = 10.0) -> None:
        self.read = read
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.interval = 0.5 if self.tty else log_every
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self, p: dict[str, Any]) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = p["bytes_done"] / elapsed
        left = max(p["bytes_total"] - p["bytes_done"], 0)
        eta = format_duration(left / rate) if rate > 0 and left else "-"
        extra = ""
        if p.get("failures"):
            extra += f", {p['failures']} failed"
        if p.get("retries"):
            extra += f", {p['retries']} retries"
        return (f"{self.label}: {p['objects_done'] + p.get('objects_skipped', 0):,}/{p['objects_total']:,} objects, "
                f"{format_bytes(p['bytes_done'])}/{format_bytes(p['bytes_total'])}, "
                f"{format_bytes(rate)}/s, ETA {eta}{extra}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def _draw(self) -> None:
        text = self.line(self.read())
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="mbackup-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            if self.tty:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
