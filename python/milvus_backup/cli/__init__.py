"""The ``mbackup`` command line: thin commands that parse, delegate and render."""

from .commands import app, main

__all__ = ["app", "main"]
