"""The ``mbackup`` command line: thin commands that parse, delegate and render."""

from __future__ import annotations

import sys
from typing import Any

from .signals import interrupted_exit_code, stop_on_sigterm

__all__ = ["app", "main"]


def main() -> None:
    """The ``mbackup`` process: SIGTERM is handled before anything else is imported."""
    stop_on_sigterm()
    try:
        from .commands import main as run
    except KeyboardInterrupt:  # stopped while starting: nothing was done
        print("interrupted before anything was done", file=sys.stderr)
        sys.exit(interrupted_exit_code())
    run()


def __getattr__(name: str) -> Any:
    # ``app`` is imported on first use, so that main() installs its handler first.
    if name == "app":
        from .commands import app

        return app
    raise AttributeError(name)
