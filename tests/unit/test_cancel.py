"""transfer/cancel.py's cancel_on: a job's event set stops engine work in that thread as Ctrl-C
does (the work is cancelled, the caller told it was interrupted); elsewhere the event means
nothing. The engine is stood in for by work that runs until it is cancelled. And
``uninterrupted``: real signals to this process, held until the block ends."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from milvus_backup.transfer.cancel import cancel_on, run_cancellable, uninterrupted


def engine_work():
    stopped = threading.Event()

    def work() -> str:
        assert stopped.wait(10), "never cancelled"
        return "partial"

    return work, stopped.set


def test_a_set_event_interrupts_the_work_in_its_block():
    event = threading.Event()
    work, cancel = engine_work()
    threading.Timer(0.3, event.set).start()
    with cancel_on(event):
        assert run_cancellable(work, cancel) == ("partial", True)


def test_an_event_set_before_the_work_cancels_it_before_it_starts():
    event = threading.Event()
    event.set()
    work, cancel = engine_work()
    with cancel_on(event):
        assert run_cancellable(work, cancel) == ("partial", True)


def test_outside_its_block_and_in_other_threads_the_event_means_nothing():
    event = threading.Event()
    event.set()
    with cancel_on(event):
        pass
    assert run_cancellable(lambda: "done", lambda: None) == ("done", False)
    out = []
    with cancel_on(event):
        other = threading.Thread(target=lambda: out.append(run_cancellable(lambda: "done", lambda: None)))
        other.start()
        other.join()
    assert out == [("done", False)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_an_uninterrupted_block_is_delivered_once_it_ends(sig):
    got: list[int] = []

    def stop(signum, _frame):
        got.append(signum)
        raise KeyboardInterrupt

    before = signal.signal(sig, stop)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt), uninterrupted():
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handler would have run by now
            done.append("recorded")
            assert got == []
        assert (done, got) == (["recorded"], [sig])
        assert signal.getsignal(sig) is stop  # put back
    finally:
        signal.signal(sig, before)


def test_an_uninterrupted_block_outside_the_main_thread_changes_nothing():
    seen = []

    def run():
        with uninterrupted():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
