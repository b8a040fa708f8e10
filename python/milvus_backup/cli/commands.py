"""The ``mbackup`` command line. Results go to stdout, progress and errors to stderr.

Exit codes (EXIT_CODES, shown by ``mbackup --help``; errors.py maps causes onto them):
0 done, 1 partly failed (retry may help), 2 usage or config error (nothing was changed),
3 Milvus or the store not reachable or throttled, or a lock held (retry later), 4 integrity problem,
130 interrupted by Ctrl-C, 143 stopped by SIGTERM (what finished is still printed).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable
from copy import copy as shallow_copy
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

from .. import _engine, logs
from ..config.params import BY_FLAG, BY_KEY, flag_help, one_of
from ..config.secrets import display_url
from ..config.settings import Config, load_config
from ..errors import EXIT_FAILED, EXIT_UNREACHABLE, ConfigError, MBackupError, UnreachableError, engine_exit_code
from ..gocompat import create_strategy, deprecated, legacy_filters, version_line
from ..storage.location import Location, shown_key, skipped_links
from ..transfer.copy import CAUSES, CopyReport, manifest, plan_copy, recheck_skipped, run_plan, write_json
from ..units import format_bytes, format_duration, format_time, parse_duration
from ..wiring import copy_settings, open_milvus
from .dry_run import show_plan
from .options import ConfigOption, DryRunOption, FilterOption, NameOption, SetOption, _reporter, _stores
from .signals import interrupted_exit_code, raise_on_sigterm

if TYPE_CHECKING:
    import pluggy

    from ..milvus.adapters.base import MilvusAdapter
    from ..storage.leftovers import Leftover


class _Interrupted(Exception):
    """Ctrl-C inside a command, on its way to main()."""


def _readable_metavars(command: Any, ctx: Any) -> Any:
    """Help that reads like the usage line: SRC rather than {src}, TEXT rather than
    <list[str]>, and nothing after a flag that takes no value (typer shows <bool>)."""
    for p in [*command.params, command.get_help_option(ctx)]:
        if p is None or (p.metavar is not None and p.param_type_name != "argument"):
            continue
        if p.param_type_name == "argument":  # typer's own spellings, set on the instance
            p.metavar = p.metavar or p.name.upper()
            p._usage_display_name = lambda p=p: p.metavar if p.required else f"[{p.metavar}]"
            p.display_type_rich = lambda ctx: None
        else:
            p.metavar = "" if getattr(p, "is_flag", False) or getattr(p, "count", False) else "TEXT"
    return command


def _never(value: Any) -> bool:
    return False


class _AsParsed:
    """typer 0.2x checks every parameter's value with a pydantic TypeAdapter it builds on first
    use: importing pydantic and building them was ~0.1 CPU s and 12 MiB of every run (issue #14),
    for values click has already parsed. A str, a list of str or a count's int is kept as click
    parsed it; any other value still goes through typer's own check."""

    _KEPT: ClassVar[dict[Any, Callable[[Any], bool]]] = {
        str: lambda v: isinstance(v, str),
        int: lambda v: type(v) is int,
        list[str]: lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) for x in v),
    }

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        info = descriptor.parameter_info
        bounded = getattr(info, "min", None) is not None or getattr(info, "max", None) is not None
        # A number with bounds is checked against them by typer, whatever its type.
        self.kept: Callable[[Any], bool] = _never if bounded else self._KEPT.get(descriptor.annotation, _never)

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:  # as typer has it
            return () if param.multiple or param.nargs == -1 else None
        if self.kept(value):
            return list(value) if isinstance(value, tuple) else value
        from typer._coercion import build_runtime_param

        return build_runtime_param(self.descriptor).coerce(value, param=param, ctx=ctx)

    @classmethod
    def keep(cls, params: list[Any]) -> list[Any]:
        for p in params:
            # Only where typer has this lazy check (older typer converts with click's types).
            descriptor = getattr(p, "type_descriptor", None)
            if descriptor is not None and getattr(p, "_runtime_param", False) is None \
                    and descriptor.parameter_info.parser is None and descriptor.file_annotation is None:
                p._runtime_param = cls(descriptor)
        return params

    @classmethod
    def install(cls, command: Any, ctx: Any) -> Any:
        cls.keep(command.get_params(ctx))
        return command


class _Commands(TyperGroup):
    # typer turns a KeyboardInterrupt (Ctrl-C, or SIGTERM: signals.py) into a silent exit 130,
    # while parsing as while running: let main() say it, with the signal's own code, instead.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Interrupted from e

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context (typer._click), not public
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Interrupted from e

    def get_params(self, ctx: Any) -> Any:
        return _AsParsed.keep(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return None if command is None else _AsParsed.install(_readable_metavars(command, ctx), ctx)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        # A command with verbs of its own (restore secondary, as the Go tool's): the verb picks
        # its own command, anything else is the command's (mbackup restore -n X as ever).
        name, command, rest = super().resolve_command(ctx, args)
        verbs = getattr(command, "verbs", None)
        if verbs and rest and rest[0] in verbs:
            verb = verbs[rest[0]]()
            return f"{name} {rest[0]}", _AsParsed.install(_readable_metavars(verb, ctx), ctx), rest[1:]
        return name, command, rest

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _readable_metavars(self, ctx)
        super().format_help(ctx, formatter)


class _WithVerbs(TyperCommand):
    """A command that also has verbs (``mbackup restore secondary``): ``verbs`` maps each to
    a function returning its command; ``commands`` is the same, made, for whoever walks the
    command tree; the command's help names them."""

    verbs: ClassVar[dict[str, Callable[[], Any]]] = {}

    @property
    def commands(self) -> dict[str, Any]:
        return {name: make() for name, make in self.verbs.items()}


# What a script or a CronJob can tell from the exit status alone (README: Exit codes).
EXIT_CODES = "\n".join((
    "Exit codes:",
    "  0  done",
    "  1  partly failed: running it again may finish it",
    "  2  usage or config error: fix it",
    "  3  Milvus or the object store not reachable, throttled, timed out, or another run holds the lock: retry later",
    "  4  integrity problem: a damaged backup, a checksum mismatch",
    "  130, 143  interrupted by Ctrl-C, stopped by SIGTERM: what finished is printed",
))

app = typer.Typer(
    cls=_Commands,
    name="mbackup",
    help="Back up and restore Milvus collections; copy object-store prefixes fast and verifiably.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Context:
    """What every command shares: the config, loaded once when first needed."""

    def __init__(self, path: str | None = None, overrides: list[str] | None = None) -> None:
        self.path = path
        self.overrides = list(overrides or [])
        self._config: Config | None = None

    def with_command_options(self, path: str | None, overrides: list[str] | None) -> Context:
        # The flags may come before or after the command name, like the Go tool's.
        if path is not None:
            self.path = path
        self.overrides += list(overrides or [])
        return self

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.path, overrides=self.overrides)
            logs.use_config(self._config)
            for warning in self._config.warnings:
                typer.echo(f"warning: {warning}", err=True)
        return self._config

    def location(self, url: str) -> Location:
        """A location from a URL, or from a profile of the config file: ``@name/sub/prefix``."""
        from ..plugins.manager import storage_backends

        if not url.startswith("@"):
            return storage_backends().open(url)
        name, _, sub = url[1:].partition("/")
        profiles = self.config().mbackup.profiles
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            raise MBackupError(f"unknown profile {name!r} in {display_url(url)!r} (profiles: {known}); "
                               "define it under mbackup.profiles")
        options = dict(profiles[name])
        base = options.pop("url", "")
        if not base:
            raise MBackupError(f"mbackup.profiles.{name}: no url, e.g. url: s3://bucket/prefix")
        base, mark, query = base.partition("?")  # the sub-prefix goes on the path, before any query
        return storage_backends().open((f"{base.rstrip('/')}/{sub}" if sub else base) + mark + query, options)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option(
    "--version", is_eager=True, callback=_print_version, help="Print the version on stdout and exit.")]


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOption = None,
    set_: SetOption = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, metavar="", help=(
        "Log lines on stderr, and the log file's level: -v info, -vv debug.")),] = 0,
    log_level: Annotated[str | None, typer.Option("--log-level", metavar="LEVEL", help=(
        "Log level for stderr and the log file (log.file.path): debug, info, warn, error.")),] = None,
    log_format: Annotated[str, typer.Option("--log-format", metavar="FORMAT", help=(
        "Log lines as text, or json: one object per line.")),] = "text",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=(
        "Only warnings, errors and the result on the terminal: no progress, no phase lines.")),] = False,
    version: VersionOption = False,
) -> None:
    if quiet and verbose:
        raise MBackupError("-q/--quiet and -v/--verbose contradict each other: give one of them")
    try:
        logs.setup(verbose, log_level, log_format, quiet)
    except ValueError as e:
        raise MBackupError(f"{'--log-level' if log_level and 'level' in str(e) else '--log-format'}: {e}") from None
    ctx.obj = Context(config, set_)


@app.command()
def version() -> None:
    """Print the version on stdout (the Go tool prints its banner on stderr)."""
    typer.echo(version_line())


def _number(flag: str, text: str) -> int | float:
    """A numeric flag's value, checked against its setting's range (config/params.py)."""
    try:
        return BY_FLAG[flag].parse(text)
    except ValueError as e:
        raise MBackupError(f"{flag}: {e}") from None


@app.command()
def copy(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="Source: s3://bucket/prefix?endpoint=..., file:///dir, memory://name, ...")],
    dst: Annotated[str, typer.Argument(help="Destination, same forms as the source.")],
    parallel: Annotated[str | None, typer.Option("--parallel", "-p", metavar="N", help=flag_help("--parallel"))] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Copy only keys matching this glob (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Skip keys matching this glob (repeatable).")] = None,
    checksum: Annotated[str | None, typer.Option("--checksum", help=flag_help("--checksum"))] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Read every destination object back and compare checksums.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be copied; change nothing.")] = False,
    max_bandwidth: Annotated[str | None, typer.Option("--max-bandwidth", help=flag_help("--max-bandwidth"))] = None,
    max_requests: Annotated[str | None, typer.Option("--max-requests", metavar="N", help=flag_help("--max-requests"))] = None,
    part_size: Annotated[str | None, typer.Option("--part-size", help=flag_help("--part-size"))] = None,
    multipart_threshold: Annotated[str | None, typer.Option("--multipart-threshold", help=flag_help("--multipart-threshold"))] = None,
    multipart_copy_threshold: Annotated[str | None, typer.Option("--multipart-copy-threshold", help=flag_help("--multipart-copy-threshold"))] = None,
    copy_part_size: Annotated[str | None, typer.Option("--copy-part-size", help=flag_help("--copy-part-size"))] = None,
    force: Annotated[bool, typer.Option("--force", help="Copy even objects the destination already has.")] = False,
    manifest_file: Annotated[str | None, typer.Option("--manifest", help="Write every object's size and checksum to this JSON file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
    records: Annotated[bool, typer.Option("--records", help="With --json: one NDJSON record per object before the summary.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Copy every object under SRC to DST. SRC and DST are URLs, plain paths or @profile/prefix.

    Example: mbackup copy "s3://milvus/files?endpoint=http://127.0.0.1:9000" /backups/files --parallel 64 --verify
    """
    state = ctx.obj.with_command_options(config, set_)
    settings = copy_settings(state.config())
    if checksum is not None:
        choices = BY_FLAG["--checksum"].choices
        if checksum.lower() not in choices:
            raise MBackupError(f"--checksum: unknown algorithm {checksum!r}: use {one_of(choices)}")
        settings.checksum = checksum.lower()
    for flag, text in {"--parallel": parallel, "--max-bandwidth": max_bandwidth, "--max-requests": max_requests,
                       "--part-size": part_size, "--multipart-threshold": multipart_threshold,
                       "--multipart-copy-threshold": multipart_copy_threshold, "--copy-part-size": copy_part_size}.items():
        if text is not None:
            engine = BY_FLAG[flag].engine
            assert engine is not None, flag  # every copy flag sets an engine argument (params.py)
            setattr(settings, engine, _number(flag, text))
    settings.verify = verify
    source, target = state.location(src), state.location(dst)
    # A missing destination bucket is created by the real run (after the refusals below), so
    # the dry run predicts it instead of failing to list it.
    plan = plan_copy(source, target, include or [], exclude or [], skip_existing=not force)
    if force:  # the destination was not listed: one level of it says whether its bucket exists
        plan.new_bucket = not target.has_bucket()
    if not plan.listed:  # done, as rclone has it: a nightly copy of a prefix that is empty today
        typer.echo(f"note: nothing to copy: {source.url} has no objects (check the bucket and prefix)", err=True)
        if as_json:
            typer.echo(json.dumps(CopyReport([], [], 0.0).summary()))
        return
    if not plan.jobs and not plan.skipped:
        raise MBackupError(f"nothing to copy: none of the {plan.listed:,} objects under {source.url} match --include/--exclude")
    if plan.new_bucket and not dry_run:
        target.make_bucket()
        if not logs.quiet():
            typer.echo(f"created bucket for {target.url}", err=True)
    if verify and not dry_run:
        recheck_skipped(plan, source, target, settings)

    if dry_run:
        if as_json:
            if records:
                for obj, key in plan.jobs:
                    typer.echo(json.dumps({"action": "copy", "key": key, "size": obj.size}))
                for obj in plan.skipped:
                    typer.echo(json.dumps({"action": "skip", "key": obj.key, "size": obj.size}))
            typer.echo(json.dumps({"dry_run": True, "objects_to_copy": len(plan.jobs), "bytes_to_copy": plan.bytes,
                                   "objects_skipped": len(plan.skipped), "bucket_to_create": plan.new_bucket}))
        else:
            if plan.new_bucket:
                typer.echo(f"would create bucket for {target.url}")
            typer.echo(f"would copy {len(plan.jobs):,} objects ({format_bytes(plan.bytes)}), "
                       f"skip {len(plan.skipped):,} already at the destination")
        return

    report = run_plan(plan, source, target, settings, reporter=_reporter(quiet, as_json))
    if manifest_file:
        write_json(manifest_file, manifest(report, source, target, settings.checksum))
    summary = report.summary()
    if as_json:
        if records:
            for r in report.results:
                typer.echo(json.dumps(r))
        typer.echo(json.dumps(summary))
    else:
        _print_failures(report, target)
        line = (f"copied {summary['objects_copied']:,} objects ({format_bytes(summary['bytes_copied'])}) "
                f"in {format_duration(summary['seconds'])} ({format_bytes(summary['bytes_per_second'])}/s), "
                f"skipped {summary['objects_skipped']:,}, failed {summary['objects_failed']:,}")
        if report.repaired:
            line += f", repaired {report.repaired:,} that differed from the source"
        if report.cancelled:
            line = f"interrupted: {line}, not started {summary['objects_not_started']:,}"
        typer.echo(line)
    if report.cancelled:
        raise typer.Exit(interrupted_exit_code())
    if report.failed:
        raise typer.Exit(report.exit_code)


def _print_failures(report: CopyReport, target: Location) -> None:
    """Many objects failing for one cause (a full disk, a read-only folder, a bucket gone) fail
    with the same words: say the cause once, with a count and a few examples."""
    alone = []
    for cause, failed in report.failure_groups():
        if cause is None or len(failed) == 1:
            alone += failed
            continue
        what, hint = CAUSES[cause]
        examples = ", ".join(shown_key(r["src_key"]) for r in failed[:3]) + (", ..." if len(failed) > 3 else "")
        typer.echo(f"error: {target.url}: {what}: {len(failed):,} of {len(report.results):,} objects not copied "
                   f"(e.g. {examples}); {hint}", err=True)
    for r in alone[:20]:
        typer.echo(f"failed: {shown_key(r['src_key'])}: {r['error']}", err=True)
    if len(alone) > 20:
        typer.echo(f"failed: ... and {len(alone) - 20} more", err=True)


# --- Milvus backups ----------------------------------------------------------------------

MetricsFileOption = Annotated[str | None, typer.Option(
    "--metrics-file", metavar="PATH", help="Write how the run went to PATH (*.prom) for node_exporter's textfile "
                                           "collector, atomically, success or not.")]
PushgatewayOption = Annotated[str | None, typer.Option(
    "--pushgateway", metavar="URL", help="Push the same metrics to a Prometheus Pushgateway (job=mbackup), success "
                                         "or not; a failed push is a warning.")]


def _check_metrics(path: str | None, gateway: str | None = None) -> None:
    if path is not None:
        from ..server.metrics import check_textfile

        check_textfile(path)
    if gateway is not None:
        from ..server.pushgateway import check

        check(gateway)


def _write_metrics(path: str | None, command: str, summary: dict[str, Any], ok: bool,
                   gateway: str | None = None) -> None:
    if path is not None or gateway is not None:
        from ..server.metrics import textfile, write_textfile

        text = textfile(command, summary, ok)
        if path is not None:
            write_textfile(path, text)
        if gateway is not None:
            from ..server.pushgateway import push

            if warning := push(gateway, command, text):
                typer.echo(f"warning: {warning}", err=True)


def _milvus(state: Context) -> MilvusAdapter:
    return open_milvus(state.config())


def _hooks() -> pluggy.HookRelay:
    from ..plugins.manager import manager

    return manager().hook


@app.command()
def check(
    ctx: typer.Context,
    what: Annotated[str | None, typer.Argument(metavar="config", help="Deprecated: check config: use config show.")] = None,
    create_buckets: Annotated[bool, typer.Option(
        "--create-buckets", help="Create the Milvus or backup bucket if it is missing (else a missing one is an error).")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Check the configuration end to end: Milvus answers, both buckets are readable, and an
    object can be written, copied to the backup storage and deleted. Changes nothing (the test
    object is deleted again) unless --create-buckets is given.

    Example: mbackup check --config backup.yaml
    """
    from ..backup.catalog import missing_buckets

    if what is not None:
        if what != "config":
            raise MBackupError(f"check takes no argument {what!r} (check config is the old spelling of config show)")
        deprecated("check config", "use config show instead")
        ctx.invoke(config_show, ctx, as_json=False, config=config, set_=set_)
        return
    state = ctx.obj.with_command_options(config, set_)
    adapter = _milvus(state)
    stores = _stores(state)
    typer.echo(f"Milvus version: {adapter.version}")
    typer.echo(f"Milvus adapter: {adapter.served_by or type(adapter).__name__}; {adapter.tested}")
    for location, key in missing_buckets(stores):
        if not create_buckets:
            raise ConfigError(f"bucket {location.url} does not exist: check {key}, or create it with "
                              "mbackup check --create-buckets")
        location.ensure_bucket()
        typer.echo(f"created bucket {location.url}")
    dirs, objects = stores.milvus.list_dirs(stores.milvus_root)
    if not dirs and not objects:
        typer.echo(f"warning: nothing under {stores.milvus.url}/{stores.milvus_root}: check milvus.storage.bucketName "
                   "and rootPath (minio.bucketName, minio.rootPath) match what Milvus writes", err=True)
    probe = f"{stores.milvus_root}/mbackup_check_src_{os.getpid()}".lstrip("/")
    target = f"{stores.backup_root}/mbackup_check_dst_{os.getpid()}".lstrip("/")
    stores.milvus.write(probe, b"x")
    try:
        result = _engine.Copier(parallel=1, verify=True).run([(stores.milvus.store, probe, stores.backup.store, target, 1)])[0]
        if result["error"]:
            error = UnreachableError if engine_exit_code(result["error_code"]) == EXIT_UNREACHABLE else MBackupError
            raise error(f"copying a test object from the Milvus bucket to the backup storage failed: {result['error']}")
    finally:
        stores.milvus.delete(probe)
        stores.backup.delete(target)
    typer.echo("Success!")


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Backup name (default: backup_<UTC time>).")] = None,
    filter_: FilterOption = None,
    colls: Annotated[list[str] | None, typer.Option("--colls", "-c", help="Deprecated: Use --filter. Collection names.")] = None,
    databases: Annotated[list[str] | None, typer.Option("--databases", "-d", help="Deprecated: Use --filter. Databases.")] = None,
    database_collections: Annotated[str | None, typer.Option(
        "--database_collections", "-a", help='Deprecated: Use --filter. JSON: {"db1":["c1"],"db2":[]}.')] = None,
    force_: Annotated[bool, typer.Option("--force", "-f", help="Deprecated: Use --strategy skip_flush.")] = False,
    meta_only: Annotated[bool, typer.Option("--meta_only", "--meta-only", help="Deprecated: Use --strategy meta_only.")] = False,
    backup_index_extra: Annotated[bool, typer.Option(
        "--backup_index_extra", help="The Go tool reads extra index meta from etcd; mbackup reads no etcd: ignored, "
                                     "with a warning.")] = False,
    strategy: Annotated[str, typer.Option(
        "--strategy", help="auto (default: bulk_flush where Milvus has FlushAll, else serial_flush), serial_flush, "
                           "bulk_flush, skip_flush or meta_only.")] = "",
    rbac: Annotated[bool, typer.Option("--rbac", help="Also back up users, roles, grants and privilege groups "
                                                       "(Milvus 2.4.10 and later).")] = False,
    format_: Annotated[str, typer.Option(
        "--format", help="auto (default: snapshot on Milvus 3.0 and later, else binlog), binlog, or snapshot "
                         "(Milvus exports each collection into the backup itself).")] = "auto",
    metrics_file: MetricsFileOption = None,
    pushgateway: PushgatewayOption = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="Copy only the binlogs the base backup does not hold; keep each once in the root's "
                              "shared pool.")] = False,
    base: Annotated[str | None, typer.Option(
        "--base", help="The base of --incremental (default: the newest complete backup of the collections).")] = None,
    dry_run: DryRunOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Back up collections: copy their binlogs (verified) and write the meta files.

    Example: mbackup create -n nightly --filter default.products,analytics.*
    """
    from ..backup.create import CreateRequest, create_backup, plan_create, preview_increment

    state = ctx.obj.with_command_options(config, set_)
    strategy = create_strategy(force_, meta_only, backup_index_extra, strategy)
    filters = list(filter_ or []) + legacy_filters(colls, databases, database_collections)
    request = CreateRequest(name=name, filters=filters, strategy=strategy, rbac=rbac,
                            pause_gc=state.config().backup.pause_gc, format=format_, incremental=incremental, base=base)
    request.validate()
    _check_metrics(metrics_file, pushgateway)
    settings = copy_settings(state.config())
    stores = _stores(state)
    if dry_run:
        plan = plan_create(lambda: _milvus(state), stores, request)
        show_plan(preview_increment(plan, stores) if incremental else plan, as_json)
        return
    context = {"command": "create", "name": name, "filters": request.filters}
    _hooks().mbackup_before_create(context=context)
    try:
        result = create_backup(lambda: _milvus(state), stores, request, settings, reporter=_reporter(quiet, as_json),
                               announce=lambda line: typer.echo(line, err=True))
    except MBackupError as e:
        _hooks().mbackup_on_failure(context=context, error=str(e))
        _write_metrics(metrics_file, "create", {}, ok=False, gateway=pushgateway)
        raise
    summary = result.summary()
    _write_metrics(metrics_file, "create", summary, ok=True, gateway=pushgateway)
    _hooks().mbackup_after_create(context={**context, "name": result.info.name}, summary=summary)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"create backup success: {summary['name']}: {len(summary['collections'])} collections, "
                   f"{summary['segments']} segments, {format_bytes(summary['size'])} in {format_duration(result.seconds)}")


@app.command("list")
def list_(
    ctx: typer.Context,
    sort: Annotated[str, typer.Option("--sort", help="time (newest first, as ls -t), name, or size (largest first).")] = "time",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order: oldest or smallest first, names Z to A.")] = False,
    collection: Annotated[str | None, typer.Option("--collection", "-c", help="Deprecated: list shows each backup's collections.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output, times included.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """List backups as a table: name, time taken (UTC), size, state, Milvus version and
    collections; incomplete and damaged ones are marked.

    Example: mbackup list --sort size --json
    """
    from ..backup.catalog import list_backups
    from ..backup.sharing import footprints
    from . import listing

    if sort not in listing.SORTS:
        raise MBackupError(f"--sort: unknown order {sort!r}: use {one_of(listing.SORTS)}")
    stores = _stores(ctx.obj.with_command_options(config, set_))
    entries = list_backups(stores)
    sizes = footprints(stores, {e.name: e.info for e in entries if e.info is not None and not e.error})
    rows = [listing.record(e, sizes.get(e.name)) for e in entries]
    if collection is not None:
        deprecated("-c/--collection", "list shows every backup's collections")
        rows = [r for r in rows if collection in r["collections"] or f"default.{collection}" in r["collections"]]
    rows = listing.ordered(rows, sort, reverse)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    typer.echo(">> Backups:")
    for line in listing.table(rows):
        typer.echo(line)


@app.command()
def get(
    ctx: typer.Context,
    name: NameOption,
    as_json: Annotated[bool, typer.Option("--json", help="What the Go tool's get prints (BackupInfoBrief JSON).")] = False,
    detail: Annotated[bool, typer.Option("--detail", "-d", help="Deprecated: get always describes the whole backup.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Describe one backup.

    Example: mbackup get -n nightly --json
    """
    if detail:
        deprecated("-d/--detail", "get always describes the whole backup")
    from ..backup.catalog import backup_dir, meta_size, meta_written, read_backup, taken_at
    from ..format import meta

    stores = _stores(ctx.obj.with_command_options(config, set_))
    info = read_backup(stores, name)
    if as_json:
        typer.echo(meta.dumps_indent(meta.backup_info_brief(info, meta_size(stores, name))).decode())
        return
    recorded = taken_at(info)
    taken = recorded if recorded is not None else meta_written(stores, backup_dir(stores, name))
    typer.echo(f"backup {info.name} ({info.id}): {format_bytes(info.size)}, Milvus {info.milvus_version}"
               + (f", taken {format_time(taken)}" if taken else ""))
    for c in info.collection_backups:
        # An L0 segment's num_of_rows counts deletes: it holds no rows.
        data = [s for p in c.partition_backups for s in p.segment_backups if not s.is_l0]
        l0 = len(c.l0_segments) + sum(1 for p in c.partition_backups for s in p.segment_backups if s.is_l0)
        rows = sum(s.num_of_rows for s in data)
        typer.echo(f"  {c.db_name}.{c.collection_name}: {len(c.partition_backups)} partitions, {len(data)} segments, "
                   + (f"{l0} L0 delete segments, " if l0 else "")
                   + f"{rows:,} rows, {format_bytes(c.size)}, {len(c.index_infos)} indexes, {c.load_state or 'NotLoad'}")


@app.command()
def delete(
    ctx: typer.Context,
    name: NameOption,
    dry_run: DryRunOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary (or plan) on stdout.")] = False,
    if_exists: Annotated[bool, typer.Option("--if-exists", help="A backup that is not there is done: exit 0.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Delete a backup (every object under its directory, in parallel; re-runnable).

    Example: mbackup delete -n nightly --if-exists
    """
    from ..backup.catalog import BackupNotFound
    from ..backup.delete import delete_backup, plan_delete

    stores = _stores(ctx.obj.with_command_options(config, set_))
    try:
        if dry_run:
            show_plan(plan_delete(stores, name), as_json)
            return
        # backup_dir() refuses names that would reach outside the backup root.
        n = delete_backup(stores, name)
    except BackupNotFound as e:
        if not if_exists:
            raise
        typer.echo(f"note: {e}: nothing to delete", err=True)
        return
    if as_json:
        typer.echo(json.dumps({"name": name, "objects_deleted": n}))
        return
    typer.echo(f"delete backup done: {name} ({n:,} objects)")


@app.command()
def verify(
    ctx: typer.Context,
    name: NameOption,
    deep: Annotated[bool, typer.Option("--deep", help="Also read every object back and compare it with the checksum recorded at backup time.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Check that a backup is whole: every object present with the expected size and the meta
    readable (one LIST); with --deep every byte is read back and checksummed. Exit 4 when it
    is damaged.

    Example: mbackup verify -n nightly --deep
    """
    from ..backup.verify import verify_backup

    state = ctx.obj.with_command_options(config, set_)
    report = verify_backup(_stores(state), name, deep=deep, settings=copy_settings(state.config()),
                           reporter=_reporter(quiet, as_json))
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        for finding in report.problems + report.warnings:
            typer.echo(finding.line)
        typer.echo(report.summary_line())
    if report.problems:
        raise typer.Exit(report.exit_code)


_restore_verbs: typer.Typer = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


class _RestoreVerbs(_WithVerbs):
    verbs: ClassVar[dict[str, Callable[[], Any]]] = {"secondary": lambda: typer.main.get_command(_restore_verbs)}


@app.command(cls=_RestoreVerbs)
def restore(
    ctx: typer.Context,
    name: NameOption,
    filter_: FilterOption = None,
    collections: Annotated[list[str] | None, typer.Option(
        "--collections", "-c", help="Deprecated: Use --filter. Collections of the backup to restore.")] = None,
    databases: Annotated[list[str] | None, typer.Option(
        "--databases", "-d", help="Deprecated: Use --filter. Databases of the backup to restore.")] = None,
    database_collections: Annotated[str | None, typer.Option(
        "--database_collections", "-a", help='Deprecated: Use --filter. JSON: {"db1":["c1"],"db2":[]}.')] = None,
    restore_index: Annotated[bool, typer.Option("--restore_index", help="Deprecated: Use --rebuild-index.")] = False,
    suffix: Annotated[str, typer.Option("--suffix", "-s", help="Append to every collection name.")] = "",
    rename: Annotated[list[str] | None, typer.Option("--rename", "-r", help="old:new (coll, db.coll or db.*), comma-separated.")] = None,
    rebuild_index: Annotated[bool, typer.Option("--rebuild-index", "--rebuild_index", help="Create the backed-up indexes.")] = False,
    use_auto_index: Annotated[bool, typer.Option("--use-auto-index", "--use_auto_index", help="With --rebuild-index: AUTOINDEX for vectors.")] = False,
    drop_exist_collection: Annotated[bool, typer.Option("--drop-exist-collection", "--drop_exist_collection", help="Replace existing target collections.")] = False,
    drop_exist_index: Annotated[bool, typer.Option("--drop-exist-index", "--drop_exist_index", help="Drop indexes of the target first.")] = False,
    skip_create_collection: Annotated[bool, typer.Option("--skip-create-collection", "--skip_create_collection", help="Import into existing collections.")] = False,
    meta_only: Annotated[bool, typer.Option("--meta-only", "--meta_only", help="Create collections, no data.")] = False,
    load: Annotated[bool, typer.Option("--load", help="Load collections that were loaded when backed up.")] = False,
    restore_aliases: Annotated[bool, typer.Option("--restore-aliases", "--restore_aliases", help="Recreate aliases.")] = False,
    skip_l0: Annotated[bool, typer.Option("--skip-l0", "--skip_l0", help="Leave out L0 delete segments the target cannot import (the rows they deleted come back).")] = False,
    rbac: Annotated[bool, typer.Option("--rbac", help="Restore users, roles, grants and privilege groups too (Milvus 2.4.10+); users Milvus has already are left as they are.")] = False,
    batch_imports: Annotated[bool, typer.Option("--batch-imports", "--use-v2-restore", "--use_v2_restore", help="Import many segments per job (Milvus 2.4+, REST; on older lines a warning, and no batching); "
                                 f"default {'on' if BY_KEY['mbackup.batchImports'].default else 'off'} (config mbackup.batchImports).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Restore even if the backup fails the quick check (mbackup verify).")] = False,
    discard_journal: Annotated[bool, typer.Option("--discard-journal", help="Restore nothing: forget interrupted restores of the backup (journals, staged copies).")] = False,
    metrics_file: MetricsFileOption = None,
    pushgateway: PushgatewayOption = None,
    dry_run: DryRunOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Restore a backup into Milvus.

    Example: mbackup restore -n nightly --suffix _restored --rebuild-index --load

    Into a newly deployed CDC secondary (Milvus 2.6+): mbackup restore secondary (see its -h).
    """
    from ..backup.restore import RestoreRequest, discard_journals, plan_restore, restore_backup

    if restore_index:
        deprecated("--restore_index", "use --rebuild_index instead")
        rebuild_index = True
    filters = list(filter_ or []) + _restore_legacy_filters(collections, databases, database_collections, filter_,
                                                            suffix, rename)
    state = ctx.obj.with_command_options(config, set_)
    cfg = state.config()
    request = RestoreRequest(
        name=name, filters=filters, suffix=suffix, renames=list(rename or []), rebuild_index=rebuild_index,
        use_auto_index=use_auto_index, drop_exist_collection=drop_exist_collection, drop_exist_index=drop_exist_index,
        skip_create_collection=skip_create_collection, meta_only=meta_only, load=load, restore_aliases=restore_aliases,
        skip_l0=skip_l0, force=force, discard_journal=discard_journal,
        keep_temp_files=cfg.restore.keep_temp_files, import_jobs=cfg.restore.concurrency.import_jobs,
        rbac=rbac, batch_imports=batch_imports or cfg.mbackup.batch_imports,
        max_segments_per_job=cfg.restore.max_segments_per_import_job)
    request.validate()
    _check_metrics(metrics_file, pushgateway)
    stores = _stores(state)
    if discard_journal:
        lines = discard_journals(stores, name, dry_run=dry_run) or [f"no restore journal of backup {name!r} in {stores.milvus.url}"]
        typer.echo("\n".join(lines))
        return
    if dry_run:
        reporter = _reporter(quiet, as_json)
        plan = plan_restore(lambda: _milvus(state), stores, request, reporter)
        plan.journal.lock(reporter.warning).check_free()  # a restore running the same request: refused too
        plan.check(reporter.warning)
        show_plan(plan, as_json)
        return
    context = {"command": "restore", "name": name}
    _hooks().mbackup_before_restore(context=context)
    try:
        result = restore_backup(lambda: _milvus(state), stores, request, copy_settings(cfg),
                                reporter=_reporter(quiet, as_json))
    except MBackupError as e:
        _hooks().mbackup_on_failure(context=context, error=str(e))
        _write_metrics(metrics_file, "restore", {}, ok=False, gateway=pushgateway)
        raise
    summary = result.summary()
    _write_metrics(metrics_file, "restore", summary, ok=True, gateway=pushgateway)
    _hooks().mbackup_after_restore(context=context, summary=summary)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        for c in summary["collections"]:
            if "snapshot_job" in c:  # the snapshot format: Milvus restored it, rows uncounted
                typer.echo(f"restored {c['source']} as {c['target']} from its snapshot bundle (job "
                           f"{c['snapshot_job']}) in {format_duration(c['seconds'])}")
                continue
            typer.echo(f"restored {c['source']} as {c['target']}: {c['rows_in_backup']:,} rows in backup, "
                       f"{c['rows_imported']:,} imported, {c['import_jobs']} import jobs, "
                       f"{format_duration(c['seconds'])}")
        if result.rbac is not None:
            r = result.rbac
            typer.echo(f"restored users and roles: {len(r['users'])} users, {len(r['roles'])} roles, {r['grants']} "
                       f"grants, {len(r['privilege_groups'])} privilege groups")
        typer.echo(f"restore backup success: {name} in {format_duration(result.seconds)}")


@_restore_verbs.command("secondary")
def restore_secondary(
    ctx: typer.Context,
    name: NameOption,
    source_cluster_id: Annotated[str, typer.Option(
        "--source_cluster_id", "--source-cluster-id", help="The id of the CDC source cluster the secondary replicates from.")] = "",
    target_cluster_id: Annotated[str, typer.Option(
        "--target_cluster_id", "--target-cluster-id", help="The id of the secondary (the configured Milvus).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Restore a backup into a newly deployed CDC secondary (Milvus 2.6+): replay the source's
    DDL with its ids, import the binlogs, commit them, load, through the replicate stream. Runs
    once per secondary: a used one (or a restore that stopped) is refused; deploy a new one.

    Example: mbackup restore secondary -n nightly --source_cluster_id by-dev --target_cluster_id dr-1
    """
    from ..backup.secondary import SecondaryRequest
    from ..backup.secondary import restore_secondary as run

    state = (ctx.obj or Context()).with_command_options(config, set_)
    request = SecondaryRequest(name=name, source_cluster_id=source_cluster_id, target_cluster_id=target_cluster_id)
    request.validate()  # before the config: the Go tool's order
    cfg = state.config()
    request.keep_temp_files = cfg.restore.keep_temp_files
    stores = _stores(state)
    context = {"command": "restore secondary", "name": name}
    _hooks().mbackup_before_restore(context=context)
    try:
        result = run(lambda: _milvus(state), stores, request, copy_settings(cfg), reporter=_reporter(quiet, as_json))
    except MBackupError as e:
        _hooks().mbackup_on_failure(context=context, error=str(e))
        raise
    summary = result.summary()
    _hooks().mbackup_after_restore(context=context, summary=summary)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    if result.databases:
        typer.echo(f"created databases: {', '.join(result.databases)}")
    for c in summary["collections"]:
        typer.echo(f"restored {c['collection']} (id {c['collection_id']}): {c['partitions']} partitions, "
                   f"{c['indexes']} indexes, {c['import_jobs']} import jobs ({c['rows_in_backup']:,} rows in backup)"
                   f"{', loaded' if c['loaded'] else ''}, {format_duration(c['seconds'])}")
    r = result.rbac
    typer.echo(f"restored users and roles: {r['users']} users, {r['roles']} roles, {r['grants']} grants, "
               f"{r['privilege_groups']} privilege groups")
    typer.echo(f"restore secondary success: {name} into {target_cluster_id} as {source_cluster_id}, "
               f"{result.messages} messages sent and confirmed, in {format_duration(result.seconds)}")


def _restore_legacy_filters(collections: list[str] | None, databases: list[str] | None, database_collections: str | None,
                            filter_: list[str] | None, suffix: str, rename: list[str] | None) -> list[str]:
    """The Go tool's -c/-d/-a name collections of the backup; --filter names them as restored."""
    legacy = legacy_filters(collections, databases, database_collections, colls_flag="-c/--collections")
    if not legacy:
        return []
    if filter_:
        raise MBackupError("--filter and -c/-d/-a cannot be used together: use --filter")
    if rename:
        raise MBackupError("-c/-d/-a name collections before --rename, --filter after it: with --rename use --filter")
    return [f if f.endswith((".*", ".")) else f + suffix for f in legacy]


@app.command()
def gc(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Argument(help="A copy destination to clean instead of the configured storage.")] = None,
    grace: Annotated[str, typer.Option("--grace", help="Only what was last written longer ago than this, e.g. 90m, 2d.")] = "24h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; remove nothing.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Remove what interrupted runs left behind: incomplete multipart uploads and staging files
    under the backup root (or under URL), and in the Milvus bucket restore staging copies and
    restore journals no run is using. Only leftovers older than --grace; never anything under a
    backup whose lock a live run holds, never an object of a backup.

    Example: mbackup gc --dry-run --grace 48h
    """
    import time

    from ..storage.leftovers import find_restore, find_under, remove
    from ..storage.location import describe_error

    state = ctx.obj.with_command_options(config, set_)
    try:
        seconds = parse_duration(grace)
    except ValueError as e:
        raise MBackupError(f"--grace: {e}") from None
    now = time.time()
    places: list[tuple[Location, Callable[[], list[Leftover]]]]
    if url is not None:
        where = state.location(url)
        places = [(where, lambda: find_under(where.store, where.url.removesuffix(where.prefix).rstrip("/"),
                                             where.prefix, seconds, now))]
    else:
        stores = _stores(state)
        places = [(stores.backup, lambda: find_under(stores.backup.store, stores.backup.url, stores.backup_root, seconds, now)),
                  (stores.milvus, lambda: find_restore(stores.milvus.store, stores.milvus.url, seconds, now))]
    found = []
    for location, find in places:
        try:
            found += find()
        except _engine.EngineError as e:
            raise describe_error(location, e) from None
    removed = 0
    for item in found:
        if dry_run:
            typer.echo(f"would remove {item.describe()}")
            continue
        try:
            if remove(item):
                removed += 1
                typer.echo(f"removed {item.describe()}")
        except _engine.EngineError as e:
            typer.echo(f"failed: {item.describe()}: {e}", err=True)
    if dry_run:
        typer.echo(f"gc: would remove {len(found):,} leftovers older than {grace}")
    else:
        typer.echo(f"gc: removed {removed:,} leftovers older than {grace}")
    if removed < len(found) and not dry_run:
        raise typer.Exit(EXIT_FAILED)


config_app = typer.Typer(cls=_Commands, help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Every setting, its value (secrets masked) and where it came from.

    Example: mbackup config show --set transfer.concurrency=64
    """
    cfg = ctx.obj.with_command_options(config, set_).config()
    rows = list(cfg.rows())
    if as_json:
        typer.echo(json.dumps({"file": cfg.path, "schema": cfg.version,
                               "settings": [{**dict(zip(("key", "value", "source", "source_key"), r, strict=True)),
                                             "where": cfg.where(r[0])} for r in rows]},
                              indent=1))
        return
    typer.echo(f"config file: {cfg.path or '(none: defaults)'} (schema {cfg.version})")
    width = max(len(r[0]) for r in rows)
    for key, value, _, _ in rows:
        typer.echo(f"{key:<{width}}  {value:<30}  {cfg.where(key)}")


@config_app.command("migrate")
def config_migrate(
    ctx: typer.Context,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the v2 config here (default: stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail if the migrated config is not a valid v2 config.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Translate the v1 config named by --config into a complete v2 config file (the report
    goes to stderr).

    Example: mbackup config migrate --config backup.yaml -o backup-v2.yaml
    """
    from ..config import migrate

    to_stdout = output in (None, "-")
    text, report = migrate.migrate(ctx.obj.with_command_options(config, set_).config(), to_stdout=to_stdout)
    problems = migrate.problems(text)
    if problems and strict:
        lines = [f"migrated config is not valid v2 (--strict): {p}" for p in problems]
        raise ConfigError("\n".join(lines), lines)
    for line in report + [f"not valid v2: {p}" for p in problems]:
        typer.echo(f"config migrate: {line}", err=True)
    if to_stdout:
        typer.echo(text, nl=False)
        return
    assert output is not None
    migrate.write(text, output, overwrite=force)
    typer.echo(f"wrote v2 config to {output}", err=True)


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List loaded plugins, their versions and what each provides."""
    from ..plugins.manager import describe

    infos = describe()
    if as_json:
        typer.echo(json.dumps([info.__dict__ for info in infos], indent=1))
        return
    for info in infos:
        kind = "built-in" if info.builtin else "third-party"
        provides = f"schemes: {', '.join(info.schemes)}; " if info.schemes else ""
        provides += f"Milvus lines: {', '.join(info.milvus_lines)}; " if info.milvus_lines else ""
        typer.echo(f"{info.name} {info.version} ({kind}) {provides}hooks: {', '.join(info.hooks)}")


from ..server.command import server  # noqa: E402  (the REST server: its own subpackage)

app.command()(server)


def _command_name(info: Any) -> str:
    from typer.main import get_command_name

    return info.name or get_command_name(info.callback.__name__)


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the commands ``args`` names: typer builds every command's parameters
    from its signature before it runs one, ~0.06-0.1 CPU s of each run for twenty commands
    (issue #14). Any word of ``args`` that is a command's name keeps that command, so the one
    click picks is always there; no name (``mbackup --help``, a typo, whose error lists the
    others), help asked before the command, or shell completion: the whole app."""
    if os.environ.get("_MBACKUP_COMPLETE"):
        return app
    names = {_command_name(c) for c in app.registered_commands} | {g.name for g in app.registered_groups}
    first = next((i for i, word in enumerate(args) if word in names), None)
    if first is None or {"-h", "--help"} & set(args[:first]):
        return app
    narrowed = shallow_copy(app)
    narrowed.registered_commands = [c for c in app.registered_commands if _command_name(c) in args]
    narrowed.registered_groups = [g for g in app.registered_groups if g.name in args]
    return narrowed


def _run_app() -> Any:
    try:
        # Named mbackup in usage lines and completion also when run as python -m milvus_backup.
        return _app_for(sys.argv[1:])(prog_name="mbackup", standalone_mode=False)
    finally:
        # Said once, whatever happened: what the folders' listings left out and why.
        for line in skipped_links():
            typer.echo(f"warning: {line}", err=True)


def _check_set_words(argv: list[str]) -> None:
    """``--set KEY VALUE`` (a space for the ``=``) would make click take VALUE, perhaps a
    secret, for a command name and print it in "No such command": refuse the flag first."""
    from ..config.settings import parse_overrides

    for flag, value in itertools.pairwise(argv):
        if flag == "--set":
            parse_overrides([value])


def main() -> None:
    # gRPC's C core logs handshake failures to stderr on its own; mbackup says what went wrong
    # in one line instead. GRPC_VERBOSITY=debug (or any level) set by the user still wins.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        raise_on_sigterm()  # loaded: a SIGTERM stops the run from here on
        _check_set_words(sys.argv[1:])
        # Outside standalone mode click returns a typer.Exit's code instead of exiting.
        code = _run_app()
        sys.exit(code if isinstance(code, int) else 0)
    except ConfigError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        sys.exit(e.exit_code)
    except MBackupError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except _engine.EngineError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(engine_exit_code(e.code))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, _Interrupted) as e:
        finished = getattr(e.__cause__ if isinstance(e, _Interrupted) else e, "finished", "")
        typer.echo(f"interrupted: {finished}" if finished else "interrupted", err=True)
        sys.exit(interrupted_exit_code())
    except typer.Abort:
        sys.exit(interrupted_exit_code())
    except Exception as e:
        # Usage errors: typer ships its own click, so match the interface, not the class.
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise


from . import diff, exporting, l0compact, migrate, retention  # noqa: E402  (commands of their own modules)

app.command("diff")(diff.diff_command)
app.command("export")(exporting.export)
app.command("l0compact")(l0compact.l0compact)
app.command()(retention.forget)
app.command("prune")(retention.prune_command)
app.command()(migrate.migrate)
