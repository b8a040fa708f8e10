"""``mbackup l0compact``: the Go tool's command that folds a backup's L0 deletes into its data
segments (the flow: backup/l0compact.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import MBackupError
from ..units import format_bytes, format_duration
from ..wiring import copy_settings
from .options import ConfigOption, NameOption, SetOption, _reporter, _stores

EXTRA = 'pip install "mbackup[l0compact]"'


def require() -> None:
    """Refuse, in one line, an l0compact without pyarrow (the ``l0compact`` extra), before the
    flow's modules, which import it, are loaded."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MBackupError(f"mbackup l0compact needs pyarrow to read and write Parquet: install it with {EXTRA}") from None


def l0compact(
    ctx: typer.Context,
    name: NameOption,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Name of the new backup (default: <name>_l0compacted).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Empty the destination backup first when it is not empty.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Write a copy of a backup whose L0 delete segments (Milvus 2.5+) are folded into its data
    segments' delete logs, so a Milvus without L0 import (2.3) restores it with its deletes.
    The source is left as it is; the copy takes as much room again. Needs pyarrow (the
    l0compact extra).

    Example: mbackup l0compact -n nightly_25 -o nightly_25_for_23
    """
    require()
    from ..backup import l0compact as flow

    state = ctx.obj.with_command_options(config, set_)
    stores, settings = _stores(state), copy_settings(state.config())
    result = flow.l0compact_backup(stores, name, output, settings, force=force, reporter=_reporter(quiet, as_json))
    if as_json:
        typer.echo(json.dumps(result.summary()))
        return
    fold = result.fold
    typer.echo(f"folded {fold.deletes:,} deletes of {fold.l0_segments:,} L0 segments into {len(fold.logs):,} delete "
               f"logs ({fold.folded:,} entries); {fold.unmatched:,} matched no row of the backup")
    typer.echo(f"l0compact done: {result.name} -> {result.output}: {result.objects:,} objects, "
               f"{format_bytes(result.bytes)} in {format_duration(result.seconds)}")
