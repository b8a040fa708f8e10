"""Which backups a retention policy keeps, and why: ``mbackup forget``'s decision, as restic
makes it (``restic forget``), from names and times alone (nothing here reads a store).

- Backups are taken newest first. ``--keep-last N`` keeps the N newest. ``--keep-hourly``,
  ``-daily``, ``-weekly`` (ISO weeks), ``-monthly N`` each keep the newest backup of each of
  the N newest calendar periods (local time) that have a backup. When there are fewer such
  periods than N, the oldest backup is kept as well (restic 0.17's "oldest" rule), so a new
  schedule never forgets the one backup reaching furthest back.
- ``--keep-within 2d12h`` keeps every backup taken at most that long before the newest one
  (not before now: a schedule that stopped never ages every backup out). As in restic,
  ``m`` is months: ``1y6m``, ``7d``, ``36h``.
- ``--keep-name GLOB`` keeps every backup whose name matches.
- The policies add up: a backup is kept when any of them keeps it, with every reason.
- A backup whose create did not finish (it may be running), one whose meta cannot be read,
  and one that records no time are left alone: neither counted as kept nor forgotten.
"""

from __future__ import annotations

import calendar
import datetime as dt
import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..format import untrusted

if TYPE_CHECKING:
    from .catalog import BackupEntry

KEEP, FORGET, LEAVE = "keep", "forget", "leave"

_WITHIN = re.compile(r"^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)d)?(?:(\d+)h)?$")


@dataclass(frozen=True)
class Within:
    """A calendar span as restic writes it: years, months, days, hours."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Within:
        m = _WITHIN.match(text.strip())
        if not text.strip() or not m or not any(m.groups()) or any(len(g) > 6 for g in m.groups() if g):
            raise ValueError(f"invalid duration {text!r}: use years, months, days and hours as restic does, "
                             "e.g. 2d12h, 36h or 1y6m (m is months)")
        y, mo, d, h = (int(g or 0) for g in m.groups())
        return cls(y, mo, d, h, text.strip())

    def before(self, t: float, tz: dt.tzinfo | None) -> float:
        """The time this span before ``t`` (seconds), counted on the calendar of ``tz``."""
        when = dt.datetime.fromtimestamp(t, tz)
        months = when.year * 12 + when.month - 1 - self.years * 12 - self.months
        year, month = max(divmod(months, 12)[0], 1), divmod(months, 12)[1] + 1
        day = min(when.day, calendar.monthrange(year, month)[1])
        shifted = when.replace(year=year, month=month, day=day) - dt.timedelta(days=self.days, hours=self.hours)
        return shifted.timestamp()


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    within: Within | None = None
    names: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.last or self.hourly or self.daily or self.weekly or self.monthly or self.within or self.names)


@dataclass(frozen=True)
class Backup:
    """What the policy sees of a backup: its name, when it was taken (seconds since the epoch,
    the time ``list`` shows; None when unknown) and whether it is complete and readable."""

    name: str
    time: float | None
    complete: bool = True
    problem: str = ""  # why it is left alone, when it is not complete


@dataclass
class Decision:
    backup: Backup
    action: str  # KEEP, FORGET or LEAVE
    reasons: list[str] = field(default_factory=list)


# Each calendar policy: its name and the period a local time falls in, as it is shown.
_PERIODS: tuple[tuple[str, Callable[[dt.datetime], str]], ...] = (
    ("hourly", lambda d: d.strftime("%Y-%m-%d %Hh")),
    ("daily", lambda d: d.strftime("%Y-%m-%d")),
    ("weekly", lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2])),
    ("monthly", lambda d: d.strftime("%Y-%m")),
)


def decide(backups: Iterable[Backup], policy: Policy, tz: dt.tzinfo | None = None) -> list[Decision]:
    """The decision for every backup, newest first (those left alone last, by name). ``tz``:
    the calendar periods are counted in (None: local time)."""
    backups = list(backups)
    counted = sorted((b for b in backups if b.complete and b.time is not None),
                     key=lambda b: (b.time, b.name), reverse=True)
    decisions = [Decision(b, FORGET) for b in counted]
    newest = counted[0].time if counted else None
    since = policy.within.before(newest, tz) if policy.within and newest is not None else None
    left: dict[str, int] = {"last": policy.last, **{kind: getattr(policy, kind) for kind, _ in _PERIODS}}
    seen: dict[str, str] = {}  # the period of the last backup each policy kept
    for rank, d in enumerate(decisions):
        assert d.backup.time is not None
        local = dt.datetime.fromtimestamp(d.backup.time, tz)
        d.reasons += [f"name matches {g!r}" for g in policy.names if fnmatch.fnmatchcase(d.backup.name, g)]
        if since is not None and policy.within and d.backup.time >= since:
            d.reasons.append(f"within {policy.within.text} of the newest")
        if left["last"] > 0:
            left["last"] -= 1
            d.reasons.append(f"last {rank + 1}/{policy.last}")
        for kind, period_of in _PERIODS:
            period = period_of(local)
            if left[kind] > 0 and seen.get(kind) != period:
                left[kind] -= 1
                seen[kind] = period
                d.reasons.append(f"{kind} {period}")
    if decisions:
        oldest = decisions[-1]
        # Fewer periods than asked for: the backup reaching furthest back is kept too.
        oldest.reasons += [f"oldest {kind}" for kind, _ in _PERIODS
                           if left[kind] > 0 and not any(r.startswith(f"{kind} ") for r in oldest.reasons)]
    for d in decisions:
        if d.reasons:
            d.action = KEEP
    left_alone = sorted((b for b in backups if not (b.complete and b.time is not None)), key=lambda b: b.name)
    return decisions + [Decision(b, LEAVE, [b.problem or "it records no time: it cannot be placed in a period"])
                        for b in left_alone]


def backups_of(entries: list[BackupEntry]) -> list[Backup]:
    """What the policy sees of the backups ``list`` shows, with the time it shows."""
    out = []
    for e in entries:
        problem = ("its meta cannot be read (mbackup list shows why)" if e.error else
                   "" if e.complete else f"incomplete: a create did not finish or is running "
                                         f"(mbackup delete -n {untrusted.shown(e.name)} removes it)")
        out.append(Backup(e.name, e.taken, complete=e.complete and not e.error and e.info is not None, problem=problem))
    return out
