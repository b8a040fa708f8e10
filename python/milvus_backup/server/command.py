"""The ``mbackup server`` command (registered in cli/commands.py). It imports nothing of the
server extra until it runs, so the other commands start as fast without it."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..errors import MBackupError

DEFAULT_PORT = 8080  # the Go tool's, when SERVER_PORT is not set either


def _port(text: str | None) -> int:
    raw = text if text is not None else os.environ.get("SERVER_PORT") or str(DEFAULT_PORT)
    source = "-p/--port" if text is not None else "SERVER_PORT"
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise MBackupError(f"{source}: expected a port number between 1 and 65535, got {raw!r}")
    return int(raw)


def server(
    ctx: typer.Context,
    port: Annotated[str | None, typer.Option("--port", "-p", metavar="PORT", help=(
        f"Port to listen on (default: $SERVER_PORT, else {DEFAULT_PORT}).")),] = None,
    rescan: Annotated[float, typer.Option("--rescan", metavar="SECONDS", help=(
        "How often to look for jobs a stopped server left unfinished, and resume them.")),] = 30.0,
    config: Annotated[str | None, typer.Option("--config", help="Config file (as for every command).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key (repeatable).")] = None,
) -> None:
    """Serve the Go tool's REST API (/api/v1), with jobs kept in the backup root, an optional
    bearer token (server.token, $MBACKUP_SERVER_TOKEN), Prometheus /metrics and the backups
    of server.schedules. Needs the server extra: pip install "mbackup[server]".

    Example: mbackup server -p 8080 --config backup.yaml
    """
    from . import require, schedules

    require()
    from ..backup.catalog import open_stores
    from ..wiring import copy_settings, open_milvus
    from .app import serve
    from .metrics import Metrics
    from .v1 import Service

    number = _port(port)
    state = ctx.obj.with_command_options(config, set_)
    cfg = state.config()
    timetable = schedules.parse(cfg.server.schedules, f"file {cfg.path}" if cfg.path else "")
    service = Service(
        stores=open_stores(cfg), milvus=lambda: open_milvus(cfg), settings=copy_settings(cfg),
        pause_gc=cfg.backup.pause_gc, metrics=Metrics(), batch_imports=cfg.mbackup.batch_imports,
        restore_defaults={"keep_temp_files": cfg.restore.keep_temp_files,
                          "import_jobs": cfg.restore.concurrency.import_jobs,
                          "max_segments_per_job": cfg.restore.max_segments_per_import_job})
    cli_args = [*(["--config", state.path] if state.path else []), *(w for o in state.overrides for w in ("--set", o))]
    scheduler = schedules.Scheduler(timetable, service.runner, service.metrics.registry, pause_gc=cfg.backup.pause_gc)
    scheduler.start()
    try:
        serve(service, number, token=cfg.server.token, cli_args=cli_args, rescan=rescan)
    finally:
        scheduler.stop()
