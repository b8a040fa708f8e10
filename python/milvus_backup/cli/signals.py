"""SIGTERM (how Kubernetes, systemd and ``kill`` stop a process) handled like Ctrl-C.

The handler raises KeyboardInterrupt in the main thread, so every path that stops work on
Ctrl-C (``transfer/cancel.py`` cancels the engine and aborts multipart uploads, locks are
released and Milvus' GC resumed in ``finally`` blocks) runs for SIGTERM too; the CLI then
prints what finished and exits 128 + the signal's number (143) rather than dying by the
signal. Installed first thing, before the heavy imports, so a signal in the first moments of
a run is handled the same way.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130

received: int | None = None  # the stopping signal, once one arrived


def _stop(signum: int, frame: FrameType | None) -> None:
    global received
    if received is not None:
        return  # a repeat while the first one's clean-up runs: let it finish
    received = signum
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt in the main thread (see the module docstring)."""
    signal.signal(signal.SIGTERM, _stop)


def interrupted_exit_code() -> int:
    """130 for Ctrl-C, 128 + N for a signal N turned into an interrupt (143 for SIGTERM)."""
    return 128 + received if received is not None else EXIT_INTERRUPTED
