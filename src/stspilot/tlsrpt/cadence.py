"""Which organisations report on a domain regularly, how often, and which of them went quiet.

Pure core: no I/O, no clock (``today`` is a parameter). The store gives, per reporting
organisation, the UTC days its reports covered (``store.dashboard.DashboardReads.reporter_days``);
``learn_cadence`` learns from those days alone what is usual for that reporter and whether its
silence is now unusual.

RFC 8460 §4.1 asks for one report per 24-hour UTC day, sent after the day ends, so a daily
reporter's newest report normally covers yesterday (or the day before, when it sends late).
A reporter is *regular* when it covered at least ``MIN_DAYS`` days of the learning window with
a typical (median) gap of at most ``MAX_GAP`` days between them; it is *overdue* when no report
covered a day for longer than that gap plus the report delay plus a grace of one gap (at least
one day). Google sending one a day for a month and then nothing for three days is overdue; a
sender that reported twice in a month was never regular and is never overdue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from statistics import median

__all__ = [
    "CADENCE_DAYS",
    "MAX_GAP",
    "MIN_DAYS",
    "Cadence",
    "ReporterDays",
    "learn_cadence",
    "quiet",
    "reporter_days",
]

CADENCE_DAYS = 45  # the learning window: long enough for weekly reporters to show a habit
MIN_DAYS = 5  # covered days in the learning window before a reporter counts as regular
MAX_GAP = 7  # a typical gap longer than a week is not a cadence anyone can miss
REPORT_DELAY = 1  # a day's report is sent after that UTC day ends (RFC 8460 §4.1)


@dataclass(frozen=True, slots=True)
class ReporterDays:
    """What the store knows of one reporting organisation for one policy domain."""

    organization: str
    days: tuple[date, ...]  # UTC days its reports covered (any order, repeats allowed)
    last_received: datetime | None = None  # when its newest report arrived


@dataclass(frozen=True, slots=True)
class Cadence:
    """One reporter's learned habit and where it stands on ``today``."""

    organization: str
    days_seen: int  # distinct covered days in the window
    first_day: date
    last_day: date  # the newest day a report covered
    last_received: datetime | None
    gap_days: int  # typical (median) days between covered days; 0: a single day
    regular: bool
    silent_days: int  # days from the newest covered day to today
    overdue: bool
    expected_by: date | None  # by when the next report should have been seen (regular only)

    @property
    def habit(self) -> str:
        """In words: "daily", "every 3 days", or "irregular"."""
        if not self.regular:
            return "irregular"
        return "daily" if self.gap_days == 1 else f"every {self.gap_days} days"


def _cadence(seen: ReporterDays, *, today: date, first: date) -> Cadence | None:
    days = sorted({d for d in seen.days if first <= d <= today})
    if not days:
        return None
    gaps = [(b - a).days for a, b in pairwise(days)]
    gap = max(1, round(median(gaps))) if gaps else 0
    regular = len(days) >= MIN_DAYS and 0 < gap <= MAX_GAP
    silent = (today - days[-1]).days
    expected_by = None
    overdue = False
    if regular:
        # The next covered day is due ``gap`` days after the last, its report a day later;
        # allow one more gap (at least a day) for senders that batch or send late.
        expected_by = days[-1] + timedelta(days=gap + REPORT_DELAY + max(1, gap))
        overdue = today > expected_by
    return Cadence(
        organization=seen.organization,
        days_seen=len(days),
        first_day=days[0],
        last_day=days[-1],
        last_received=seen.last_received,
        gap_days=gap,
        regular=regular,
        silent_days=silent,
        overdue=overdue,
        expected_by=expected_by,
    )


def learn_cadence(
    reporters: Iterable[ReporterDays], *, today: date, window_days: int = CADENCE_DAYS
) -> tuple[Cadence, ...]:
    """Each reporter's cadence over the ``window_days`` days up to ``today``: the overdue
    first, then regular ones, then the rest; each group by newest report first."""
    first = today - timedelta(days=max(1, window_days) - 1)
    out = [c for r in reporters if (c := _cadence(r, today=today, first=first)) is not None]
    out.sort(key=lambda c: (not c.overdue, not c.regular, -c.last_day.toordinal(), c.organization))
    return tuple(out)


def quiet(cadences: Iterable[Cadence]) -> tuple[Cadence, ...]:
    """The regular reporters that are overdue now (the ones worth an alert)."""
    return tuple(c for c in cadences if c.regular and c.overdue)


def reporter_days(
    rows: Iterable[tuple[str, date]], received: Mapping[str, datetime]
) -> list[ReporterDays]:
    """``ReporterDays`` from (organisation, covered day) pairs and each one's newest arrival."""
    days: dict[str, list[date]] = {}
    for org, day in rows:
        days.setdefault(org, []).append(day)
    return [ReporterDays(org, tuple(d), received.get(org)) for org, d in sorted(days.items())]
