"""``mbackup export``: a self-contained copy of a backup in the Go tool's layout."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..units import format_bytes, format_duration
from ..wiring import copy_settings
from .dry_run import show_plan
from .options import ConfigOption, NameOption, SetOption, _reporter, _stores


def export(
    ctx: typer.Context,
    name: NameOption,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Name of the exported backup (default: the same name, under --to-root).")] = None,
    to_root: Annotated[str | None, typer.Option(
        "--to-root", help="Root path in the backup bucket to export to (default: backup.storage.rootPath).")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", metavar="URL", help="Export to <URL>/<name> instead: any destination mbackup copy takes "
        "(s3://bucket/prefix, a local path, @profile/prefix).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be copied; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Write a self-contained copy of a backup in the Go tool's layout (every binlog under its
    own dir, manifest version 1): what an incremental backup needs before the Go tool, or
    anything but mbackup, can restore it. Every copy is verified against the recorded checksums.

    Example: mbackup export -n nightly_7 --to-root exported
    Example: mbackup export -n nightly_7 --to s3://offsite/milvus-backups
    """
    from ..backup.export import export_backup, plan_export

    state = ctx.obj.with_command_options(config, set_)
    stores, settings = _stores(state), copy_settings(state.config())
    plan = plan_export(stores, name, output, to_root, settings, to=None if to is None else state.location(to))
    if dry_run:
        show_plan(plan, as_json)
        return
    result = export_backup(stores, plan, settings, reporter=_reporter(quiet, as_json))
    if as_json:
        typer.echo(json.dumps(result.summary()))
    else:
        typer.echo(f"export backup success: {name} -> {result.url}: {result.objects:,} objects, "
                   f"{format_bytes(result.bytes)} in {format_duration(result.seconds)}")
