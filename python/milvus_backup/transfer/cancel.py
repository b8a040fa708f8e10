"""Long engine work that Ctrl-C (or a lost lock) can stop.

An engine call blocks the thread that makes it, and Python runs its Ctrl-C handler only in
the main thread between bytecodes: made there, the call would hold Ctrl-C until all its
work is done. So the work runs in a worker thread and the main thread waits where
KeyboardInterrupt reaches it, then cancels the work through the engine (which stops reads
and writes in flight and aborts multipart uploads) and waits for what it finished.

A server runs each job in a thread of its own, where Ctrl-C never lands: :func:`cancel_on`
gives that thread an event which, once set, stops its engine work the way Ctrl-C would.

A request that makes something (a collection, an import job) and the line that records what
it made run :func:`uninterrupted`: Ctrl-C landing as the request returns would otherwise lose
the record, and a rerun would make it again (an import twice is every row twice).
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

# Set for the thread running a server's job: the job's cancel request (cancel_on).
_cancel_requested: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "mbackup_cancel_requested", default=None)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, cli/signals.py) stopped engine work; ``finished`` says what was done
    by then, for the line the CLI prints."""

    def __init__(self, finished: str = "") -> None:
        super().__init__(finished)
        self.finished = finished


@contextlib.contextmanager
def cancel_on(event: threading.Event) -> Iterator[None]:
    """In this block, ``event`` set interrupts engine work run here as Ctrl-C does."""
    token = _cancel_requested.set(event)
    try:
        yield
    finally:
        _cancel_requested.reset(token)


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

    requested = _cancel_requested.get()
    stopped = stop is not None and stop.is_set()
    interrupted = requested is not None and requested.is_set()
    if stopped or interrupted:
        cancel()  # before the work starts: it must not begin writing for a run that is over
    threading.Thread(target=run, name=name, daemon=True).start()
    while True:
        try:
            # Wait on an event, not on join(): on Python 3.11 a Ctrl-C that interrupts
            # Thread.join(timeout) marks the thread as stopped while it still runs.
            while not finished.wait(0.2):
                if stop is not None and stop.is_set() and not stopped:
                    stopped = True
                    cancel()
                if requested is not None and requested.is_set() and not interrupted:
                    interrupted = True  # a cancelled job: as Ctrl-C
                    cancel()
            break
        except KeyboardInterrupt:  # wherever it lands in the loop: keep waiting for the work
            interrupted = True
            cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], interrupted


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Ctrl-C or SIGTERM arriving in this block is delivered once it ends (raised by the
    handler that was there). Keep it to a request and its record: the user waits for it.
    Signals reach only the main thread; elsewhere this changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    handled = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    before = {s: signal.signal(s, lambda signum, _frame: arrived.append(signum)) for s in handled}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if arrived:
            signal.raise_signal(arrived[0])
