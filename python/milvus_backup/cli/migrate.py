"""``mbackup migrate``: the Go tool's command that hands a backup to a Zilliz Cloud cluster
(the flow: backup/migrate.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..errors import MBackupError
from ..units import format_bytes, format_duration
from ..wiring import copy_settings
from .options import ConfigOption, NameOption, SetOption, _reporter, _stores


def migrate(
    ctx: typer.Context,
    name: NameOption,
    cluster_id: Annotated[str, typer.Option("--cluster_id", "-c", "--cluster-id", help="The Zilliz Cloud cluster to migrate into.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Migrate a backup to a Zilliz Cloud cluster: copy it into a staging volume Zilliz Cloud
    lends (zillizCloud.endpoint, zillizCloud.apiKey), check the copy, start the migration job
    and print its id.

    Example: mbackup migrate -n nightly -c in01-0123456789abcdef
    """
    from ..backup.migrate import ZillizCloud, migrate_backup

    if not cluster_id:  # before the config's keys are looked at, as the Go tool checks it
        raise MBackupError("migrate needs -c/--cluster_id: the id of the Zilliz Cloud cluster to migrate into")
    state = ctx.obj.with_command_options(config, set_)
    cfg = state.config()
    cloud = ZillizCloud(cfg.get("zillizCloud.endpoint"), cfg.get("zillizCloud.apiKey"))
    result = migrate_backup(_stores(state), name, cluster_id, cloud, copy_settings(cfg),
                            reporter=_reporter(quiet, as_json))
    if as_json:
        typer.echo(json.dumps(result.summary()))
        return
    typer.echo(f"Successfully triggered migration with backup name: {name} target cluster: {cluster_id}")
    typer.echo(f"copied {result.objects:,} objects ({format_bytes(result.bytes)}) to the staging volume "
               f"{result.volume} in {format_duration(result.seconds)}")
    typer.echo(f"migration job id: {result.job_id}. You can check the progress of the migration job in Zilliz "
               "Cloud console.")
