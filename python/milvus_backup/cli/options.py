"""What commands in several modules of the CLI share: option types, and the stores and the
progress display a command opens. Modules with commands of their own (diff, exporting,
retention) import this, never commands.py, which registers their commands: nothing imports back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .. import logs
from ..transfer.progress import ConsoleReporter

if TYPE_CHECKING:
    from ..backup.catalog import Stores
    from .commands import Context

ConfigOption = Annotated[str | None, typer.Option(
    "--config", help="Config file (the Go tool's backup.yaml; default: backup.yaml, $MILVUSCONF, ./configs).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config key or the Go tool's variable for this run: --set milvus.grpc.port=19531, --set MILVUS_PORT=19531 (repeatable).")]
NameOption = Annotated[str, typer.Option("--name", "-n", help="Backup name.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Check everything the real run checks and say what it would do; change nothing.")]
FilterOption = Annotated[list[str] | None, typer.Option(
    "--filter", help="Collections: coll, db.coll, db.* (comma-separated, repeatable).")]


def _reporter(quiet: bool, as_json: bool) -> ConsoleReporter:
    """Warnings on stderr always; progress too, unless -q (the command's or mbackup -q) or --json."""
    return ConsoleReporter(progress=not quiet and not logs.quiet() and not as_json)


def _stores(state: Context) -> Stores:
    from ..backup.catalog import open_stores

    return open_stores(state.config())
