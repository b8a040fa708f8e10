"""SIGTERM (how Kubernetes, systemd and ``kill`` stop a process) handled like Ctrl-C.

Once the command line is loaded, the handler raises KeyboardInterrupt in the main thread, so
every path that stops work on Ctrl-C (``transfer/cancel.py`` cancels the engine and aborts
multipart uploads, locks are released and Milvus' GC resumed in ``finally`` blocks) runs for
SIGTERM too; the CLI then prints what finished and exits 128 + the signal's number (143)
rather than dying by the signal. The handler is installed first thing and, while modules
load, only notes the signal: an exception raised in the middle of an import can be swallowed
(by a weakref callback, say) and lost. The note is acted on as soon as loading is done.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130

received: int | None = None  # the stopping signal, once one arrived
_raising = False  # False while modules load: see the module docstring


def _stop(signum: int, frame: FrameType | None) -> None:
    global received
    if received is not None:
        return  # a repeat while the first one's clean-up runs: let it finish
    received = signum
    if _raising:
        raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Install the handler; until :func:`raise_on_sigterm` it only notes the signal."""
    signal.signal(signal.SIGTERM, _stop)


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises KeyboardInterrupt; one that came while loading raises now."""
    global _raising
    _raising = True
    if received is not None:
        raise KeyboardInterrupt


def interrupted_exit_code() -> int:
    """130 for Ctrl-C, 128 + N for a signal N turned into an interrupt (143 for SIGTERM).

    Also clears CPython's note of an unhandled KeyboardInterrupt: one that went through code
    run by ``exec`` of a string (dataclasses and typing run such code while modules load) is
    noted, and at exit the interpreter would kill itself with SIGINT instead of exiting with
    this code. The next such ``exec`` clears the note."""
    exec("pass")  # a constant: see above
    return 128 + received if received is not None else EXIT_INTERRUPTED
