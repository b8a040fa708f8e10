"""The ``mbackup`` command line: thin commands that parse, delegate and render."""

from __future__ import annotations

from typing import Any

from .signals import stop_on_sigterm

__all__ = ["app", "main"]


def main() -> None:
    """The ``mbackup`` process: SIGTERM is handled from before the heavy imports on."""
    stop_on_sigterm()
    from .commands import main as run

    run()


def __getattr__(name: str) -> Any:
    # ``app`` is imported on first use, so that main() installs the handler first.
    if name == "app":
        from .commands import app

        return app
    raise AttributeError(name)
