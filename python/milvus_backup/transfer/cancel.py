"""Long engine work that Ctrl-C (or a lost lock) can stop.

An engine call blocks the thread that makes it, and Python runs its Ctrl-C handler only in
the main thread between bytecodes: made there, the call would hold Ctrl-C until all its
work is done. So the work runs in a worker thread and the main thread waits where
KeyboardInterrupt reaches it, then cancels the work through the engine (which stops reads
and writes in flight and aborts multipart uploads) and waits for what it finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, cli/signals.py) stopped engine work; ``finished`` says what was done
    by then, for the line the CLI prints."""

    def __init__(self, finished: str = "") -> None:
        super().__init__(finished)
        self.finished = finished


def run_cancellable(work: Callable[[], T], cancel: Callable[[], None], stop: threading.Event | None = None,
                    *, name: str = "mbackup-engine") -> tuple[T, bool]:
    """``(work(), interrupted)``, with ``work`` run in a worker thread. Ctrl-C calls ``cancel``
    and waits for ``work`` to return; ``interrupted`` is then True and the caller decides
    whether what finished counts. ``stop`` set (a lost lock, say) cancels the same way
    without counting as interrupted: the caller says why. An exception from ``work`` is
    raised here."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as e:  # surfaced in the calling thread
            outcome["error"] = e
        finally:
            finished.set()

    stopped = stop is not None and stop.is_set()
    if stopped:
        cancel()  # before the work starts: it must not begin writing for a run that lost its lock
    threading.Thread(target=run, name=name, daemon=True).start()
    interrupted = False
    while True:
        try:
            # Wait on an event, not on join(): on Python 3.11 a Ctrl-C that interrupts
            # Thread.join(timeout) marks the thread as stopped while it still runs.
            while not finished.wait(0.2):
                if stop is not None and stop.is_set() and not stopped:
                    stopped = True
                    cancel()
            break
        except KeyboardInterrupt:  # wherever it lands in the loop: keep waiting for the work
            interrupted = True
            cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], interrupted
