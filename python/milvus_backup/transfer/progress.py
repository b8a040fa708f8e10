"""Live progress on stderr while the engine copies: objects, bytes, rate, ETA.

On a terminal the line redraws in place twice a second; in a log (not a TTY) one line is
written every ``log_every`` seconds so CI output stays readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from ..units import format_bytes, format_duration


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
