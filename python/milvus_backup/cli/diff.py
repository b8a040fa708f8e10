"""``mbackup diff A B``: what changed between two backups."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .options import ConfigOption, SetOption, _stores


def diff_command(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="A", help="The earlier backup.")],
    b: Annotated[str, typer.Argument(metavar="B", help="The later backup.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report on stdout.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """What changed from backup A to backup B, per collection and partition: segments and rows
    added and removed, deletes added, bytes new in B and shared with A; then schema fields and
    indexes added, removed or changed. Reads the meta, the manifests and B's new delete logs.

    Example: mbackup diff nightly_1 nightly_2 --json
    """
    from ..backup.diff import diff_backups

    report = diff_backups(_stores(ctx.obj.with_command_options(config, set_)), a, b)
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    for line in report.lines():
        typer.echo(line)
