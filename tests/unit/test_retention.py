"""The retention policy of ``mbackup forget`` (backup/retention.py) as properties: every reason
given for keeping a backup holds, every backup forgotten is kept by no policy, --keep-last N
keeps exactly the N newest, the input order changes nothing, a name kept is never forgotten."""

from __future__ import annotations

import datetime as dt
import fnmatch
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milvus_backup.backup.retention import FORGET, KEEP, LEAVE, Backup, Policy, Within, decide

TZ = dt.timezone(dt.timedelta(hours=-5))  # not UTC: periods are counted on the local calendar
START = dt.datetime(2024, 12, 20, tzinfo=TZ).timestamp()
PERIODS = {
    "hourly": lambda d: d.strftime("%Y-%m-%d %Hh"), "daily": lambda d: d.strftime("%Y-%m-%d"),
    "weekly": lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2]), "monthly": lambda d: d.strftime("%Y-%m"),
}

names = st.text("abcdef_0123", min_size=1, max_size=6)
times = st.floats(min_value=START, max_value=START + 120 * 86400).map(lambda t: float(int(t)))
backups = st.lists(st.builds(Backup, names, st.one_of(times, times, times, st.none()), st.booleans() | st.just(True)),
                   max_size=30, unique_by=lambda b: b.name)
counts = st.integers(0, 6)
policies = st.builds(
    Policy, counts, counts, counts, counts, counts,
    st.none() | st.sampled_from(["36h", "2d12h", "1m", "7d", "1y"]).map(Within.parse),
    st.lists(st.sampled_from(["a*", "*_1", "b?", "zzz"]), max_size=2).map(tuple))


def _key(b: Backup) -> tuple[float, str]:
    assert b.time is not None
    return (b.time, b.name)


def _why_kept(b: Backup, counted: list[Backup], policy: Policy) -> set[str]:
    """Every reason to keep ``b``, found from the definitions, independently of decide()."""
    newer = [o for o in counted if _key(o) > _key(b)]
    local = dt.datetime.fromtimestamp(b.time or 0, TZ)
    reasons = {f"name matches {g!r}" for g in policy.names if fnmatch.fnmatchcase(b.name, g)}
    if policy.within and b.time is not None and b.time >= policy.within.before(_key(counted[0])[0], TZ):
        reasons.add(f"within {policy.within.text} of the newest")
    if len(newer) < policy.last:
        reasons.add(f"last {len(newer) + 1}/{policy.last}")
    for kind, period_of in PERIODS.items():
        period = period_of(local)
        newer_periods = {period_of(dt.datetime.fromtimestamp(o.time or 0, TZ)) for o in newer}
        if period not in newer_periods and len(newer_periods) < getattr(policy, kind):
            reasons.add(f"{kind} {period}")
        every = {period_of(dt.datetime.fromtimestamp(o.time or 0, TZ)) for o in counted}
        if b is counted[-1] and len(every) < getattr(policy, kind) and f"{kind} {period}" not in reasons:
            reasons.add(f"oldest {kind}")
    return reasons


@settings(max_examples=300, deadline=None)
@given(backups, policies, st.randoms(use_true_random=False))
def test_every_decision_follows_from_the_policy(items: list[Backup], policy: Policy, rnd: random.Random) -> None:
    decisions = decide(items, policy, TZ)
    assert sorted(d.backup.name for d in decisions) == sorted(b.name for b in items)
    counted = sorted((b for b in items if b.complete and b.time is not None), key=_key, reverse=True)
    for d in decisions:
        b = d.backup
        if not (b.complete and b.time is not None):
            assert d.action == LEAVE  # never counted as kept, never forgotten
            continue
        expected = _why_kept(b, counted, policy)
        assert set(d.reasons) == expected, b
        assert d.action == (KEEP if expected else FORGET)
        if any(fnmatch.fnmatchcase(b.name, g) for g in policy.names):
            assert d.action == KEEP
    shuffled = list(items)
    rnd.shuffle(shuffled)
    again = decide(shuffled, policy, TZ)
    assert [(d.backup, d.action, d.reasons) for d in again] == [(d.backup, d.action, d.reasons) for d in decisions]


@settings(max_examples=200, deadline=None)
@given(backups, st.integers(1, 40))
def test_keep_last_keeps_exactly_the_newest(items: list[Backup], n: int) -> None:
    kept = {d.backup.name for d in decide(items, Policy(last=n), TZ) if d.action == KEEP}
    counted = sorted((b for b in items if b.complete and b.time is not None), key=_key, reverse=True)
    assert kept == {b.name for b in counted[:n]}


def test_daily_counts_days_on_the_local_calendar() -> None:
    # 12:00, 23:30 and 00:30 UTC: two days in UTC, one day (Jan 1) five hours west of it.
    noon, late, early = (dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp(),
                         dt.datetime(2025, 1, 1, 23, 30, tzinfo=dt.UTC).timestamp(),
                         dt.datetime(2025, 1, 2, 0, 30, tzinfo=dt.UTC).timestamp())
    items = [Backup("c", noon), Backup("a", late), Backup("b", early)]
    assert [(d.backup.name, d.action, d.reasons) for d in decide(items, Policy(daily=2), dt.UTC)] == [
        ("b", KEEP, ["daily 2025-01-02"]), ("a", KEEP, ["daily 2025-01-01"]), ("c", FORGET, [])]
    # One day only: its newest backup, and (one period short of two) the oldest backup.
    assert [(d.backup.name, d.action, d.reasons) for d in decide(items, Policy(daily=2), TZ)] == [
        ("b", KEEP, ["daily 2025-01-01"]), ("a", FORGET, []), ("c", KEEP, ["oldest daily"])]


@pytest.mark.parametrize("text", ["", "5", "2x", "h", "-1d", "1d-2h", "12h2d", "1.5d", "9999999d", " m "])
def test_nonsense_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Within.parse(text)


def test_within_counts_months_on_the_calendar() -> None:
    newest = dt.datetime(2025, 3, 31, 12, tzinfo=dt.UTC).timestamp()
    assert Within.parse("1m").before(newest, dt.UTC) == dt.datetime(2025, 2, 28, 12, tzinfo=dt.UTC).timestamp()
    assert Within.parse("2d12h").before(newest, dt.UTC) == newest - 2.5 * 86400
