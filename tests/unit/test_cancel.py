"""transfer/cancel.py's cancel_on: a job's event set stops engine work in that thread as Ctrl-C
does (the work is cancelled, the caller told it was interrupted); elsewhere the event means
nothing. The engine is stood in for by work that runs until it is cancelled."""

from __future__ import annotations

import threading

from milvus_backup.transfer.cancel import cancel_on, run_cancellable


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
