"""``mbackup forget`` and ``mbackup prune``: retention of the backups under the backup root."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import MBackupError, PartialError
from ..format import untrusted
from ..units import format_duration, format_time, parse_duration
from .dry_run import show_plan
from .options import ConfigOption, DryRunOption, SetOption, _stores

if TYPE_CHECKING:
    from ..backup.catalog import Stores
    from ..backup.retention import Decision, Policy

# backup/retention.py (and the calendar module it needs) is imported by these commands when
# they run: every other command's start was paying ~8 ms CPU for it (issue #14).

_COUNTS = ("--keep-last", "--keep-hourly", "--keep-daily", "--keep-weekly", "--keep-monthly")
_POLICY_FLAGS = ", ".join((*_COUNTS, "--keep-within", "--keep-name"))


def _count(flag: str, what: str) -> Any:
    return typer.Option(flag, metavar="N", help=f"Keep {what}.", show_default=False)


def policy_from_flags(counts: dict[str, int], within: str | None, names: list[str]) -> Policy:
    """The policy the flags give; one line naming the flag for a value that makes no sense."""
    from ..backup.retention import Policy, Within

    for flag, n in counts.items():
        if n < 0:
            raise MBackupError(f"{flag}: expected a number of backups (0 or more), got {n}")
    try:
        span = Within.parse(within) if within is not None else None
    except ValueError as e:
        raise MBackupError(f"--keep-within: {e}") from None
    for glob in names:
        if not glob:
            raise MBackupError("--keep-name: an empty pattern matches no backup: give a glob, e.g. 'release_*'")
    policy = Policy(**{f.removeprefix("--keep-"): counts[f] for f in _COUNTS}, within=span, names=tuple(names))
    if policy.empty:
        raise MBackupError(f"forget needs a policy, or it would remove every backup: give one or more of {_POLICY_FLAGS}")
    return policy


def decision_line(d: Decision, dry_run: bool) -> str:
    from ..backup.retention import FORGET, KEEP, LEAVE

    b = d.backup
    verb = {KEEP: "keep", FORGET: "forget", LEAVE: "leave"}[d.action]
    when = format_time(b.time) if b.time is not None else "-"
    why = ", ".join(d.reasons)
    return f"{'would ' if dry_run else ''}{verb:<6}  {untrusted.shown(b.name)}  {when}" + (f"  {why}" if why else "")


def decision_record(d: Decision) -> dict[str, Any]:
    b = d.backup
    return {"name": b.name, "action": d.action, "reasons": d.reasons,
            "time": format_time(b.time) if b.time is not None else None}


def forget(
    ctx: typer.Context,
    keep_last: Annotated[int, _count("--keep-last", "the N newest backups")] = 0,
    keep_hourly: Annotated[int, _count("--keep-hourly", "the newest backup of each of the last N hours that have one")] = 0,
    keep_daily: Annotated[int, _count("--keep-daily", "the newest backup of each of the last N days that have one")] = 0,
    keep_weekly: Annotated[int, _count("--keep-weekly", "the newest backup of each of the last N weeks (ISO) that have one")] = 0,
    keep_monthly: Annotated[int, _count("--keep-monthly", "the newest backup of each of the last N months that have one")] = 0,
    keep_within: Annotated[str | None, typer.Option(
        "--keep-within", metavar="DURATION",
        help="Keep every backup taken within DURATION of the newest one: 2d12h, 36h, 1y6m (m is months).")] = None,
    keep_name: Annotated[list[str] | None, typer.Option(
        "--keep-name", metavar="GLOB", help="Keep every backup whose name matches GLOB (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Forget even when the policy keeps no backup at all.")] = False,
    prune_: Annotated[bool, typer.Option("--prune", help="Then delete the pool objects no backup references (mbackup prune).")] = False,
    grace: GraceOption = None,
    dry_run: DryRunOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable decisions and summary on stdout.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Forget (delete) the backups a retention policy does not keep, restic-style: each policy
    keeps some backups, and a backup any policy keeps is kept. Days, weeks and months are
    local time. A backup whose create did not finish is left alone. Objects of the shared pool
    stay until mbackup prune.

    Example: mbackup forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
    """
    from ..backup.catalog import BackupNotFound, list_backups
    from ..backup.delete import delete_backup, plan_delete
    from ..backup.retention import FORGET, KEEP, backups_of, decide

    counts = dict(zip(_COUNTS, (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly), strict=True))
    policy = policy_from_flags(counts, keep_within, list(keep_name or []))
    stores = _stores(ctx.obj.with_command_options(config, set_))
    grace_seconds = grace_of(stores, grace) if prune_ else 0.0
    decisions = decide(backups_of(list_backups(stores)), policy)
    kept = [d for d in decisions if d.action == KEEP]
    doomed = [d for d in decisions if d.action == FORGET]
    if doomed and not kept and not force:
        raise MBackupError(f"the policy keeps none of the {len(doomed)} backups, so forget would remove them all: "
                           "check the --keep flags (mbackup forget --dry-run shows each decision), or add --force")
    failed: list[str] = []
    records = []
    for d in decisions:
        record = decision_record(d)
        if d.action == FORGET:
            try:  # the dry run meets every refusal of the real one (a create or delete running on it)
                if dry_run:
                    record["objects_to_delete"] = len(plan_delete(stores, d.backup.name).keys)
                else:
                    record["objects_deleted"] = delete_backup(stores, d.backup.name)
            except BackupNotFound:
                record["objects_deleted"] = 0  # gone meanwhile: forgotten all the same
            except MBackupError as e:
                record["error"] = str(e)
                failed.append(f"{d.backup.name}: {e}")
        records.append(record)
        if not as_json:
            typer.echo(decision_line(d, dry_run) + (f"  (not deleted: {record['error']})" if "error" in record else ""))
    summary = {"dry_run": dry_run, "kept": len(kept), "forgotten": len(doomed) - len(failed), "failed": len(failed),
               "left_alone": len(decisions) - len(kept) - len(doomed)}
    if not as_json:
        left = f"; {summary['left_alone']} left alone" if summary["left_alone"] else ""
        typer.echo(f"forget: {'would keep' if dry_run else 'kept'} {len(kept)}, "
                   f"{'would forget' if dry_run else 'forgot'} {summary['forgotten']} of {len(decisions)} backups{left}")
    doomed_names = frozenset(d.backup.name for d in doomed)
    pruned = run_prune(stores, grace_seconds, dry_run, as_json, doomed_names) if prune_ else None
    if as_json:
        typer.echo(json.dumps({**summary, "backups": records} | ({"prune": pruned} if pruned else {})))
    if failed:
        raise PartialError(f"{len(failed)} backups could not be forgotten (first: {failed[0]}); run forget again")


GraceOption = Annotated[str | None, typer.Option(
    "--grace", metavar="DURATION", help="Only pool objects last written longer ago than this, e.g. 30m, 2h "
                                        "(default and least: twice the lock lease, MBACKUP_LOCK_LEASE).")]


def grace_of(stores: Stores, text: str | None) -> float:
    from ..backup.prune import min_grace

    least = min_grace(stores)
    if text is None:
        return least
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise MBackupError(f"--grace: {e}") from None
    if seconds < least:
        raise MBackupError(f"--grace: {text} is shorter than twice the lock lease ({format_duration(least)}), "
                           "so a create that has not yet listed what it references could lose objects: "
                           f"give {format_duration(least)} or more")
    return seconds


def run_prune(stores: Stores, grace: float, dry_run: bool, as_json: bool,
              forgotten: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Prune (or plan it, as if the backups ``forgotten`` were gone), print its line unless
    ``as_json``; its JSON summary."""
    from ..backup.prune import plan_prune, prune, prune_lock

    if dry_run:
        prune_lock(stores).check_free()  # refused as the real run would be, while another prune runs
        plan = plan_prune(stores, grace, forgotten)
        if not as_json:
            show_plan(plan, as_json=False)
        return plan.summary()
    result = prune(stores, grace, progress=lambda done, total: typer.echo(
        f"prune: deleted {done:,} of {total:,}", err=True) if total > done else None)
    if not as_json:
        typer.echo(result.line())
    return result.summary()


def prune_command(
    ctx: typer.Context,
    grace: GraceOption = None,
    dry_run: DryRunOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary (or plan) on stdout.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Delete the objects of the shared pool (.mbackup-pool, where incremental backups keep
    their binlogs) that no backup and no running create references, and that were last
    written longer ago than --grace. One prune at a time per backup root; safe to run while
    creates run, and to run again after it was stopped.

    Example: mbackup prune --dry-run
    """
    stores = _stores(ctx.obj.with_command_options(config, set_))
    summary = run_prune(stores, grace_of(stores, grace), dry_run, as_json)
    if as_json:
        typer.echo(json.dumps(summary))
