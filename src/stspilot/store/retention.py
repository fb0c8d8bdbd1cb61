"""How long stored checks are kept: all of them for a while, then the ones that tell the story.

A monitor re-checking 5,000 domains every 6 hours stores 20,000 check results a day (1.5-6 kB
each: 30-120 MB a day, tens of GB a year). What later questions need from old checks is less:

- "since when is this domain in its stage?" (``rollout.py``, ``evidence.py``): the first check
  of every run of equal checks, and the last one before it (the change happened in between);
- "what did it look like on day D?" (charts, audits): one check per domain and UTC day;
- "since when do we watch it?": the domain's first check.

So checks newer than ``keep_all_days`` are all kept; older ones are kept when they are the
domain's first or latest check, a change (their summary differs from the previous check's),
the last check before a change, or, while newer than ``keep_daily_days``, the last check of
their UTC day. Everything else is dropped. Pure: the store reads the summaries and deletes what this
returns (``Store.thin_checks``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

__all__ = ["CheckPoint", "Retention", "checks_to_drop"]


@dataclass(frozen=True, slots=True)
class Retention:
    keep_all_days: int = 30
    keep_daily_days: int = 400

    def __post_init__(self) -> None:
        if self.keep_all_days < 1:
            raise ValueError("keep_all_days must be at least 1")
        if self.keep_daily_days < self.keep_all_days:
            raise ValueError("keep_daily_days must be at least keep_all_days")

    def cutoffs(self, now: datetime) -> tuple[datetime, datetime]:
        """(older than this: thinned; older than this: changes only)."""
        return now - timedelta(days=self.keep_all_days), now - timedelta(days=self.keep_daily_days)


class CheckPoint(NamedTuple):
    """What thinning needs of one stored check (never its result document)."""

    id: int
    observed_at: datetime  # aware UTC
    summary: Hashable  # stage, mode, worst severity, findings, policy id and hash, MX set


def checks_to_drop(
    points: Sequence[CheckPoint], *, now: datetime, retention: Retention
) -> list[int]:
    """The ids to delete among one domain's checks, given oldest first from its first check
    (``points`` may stop at the ``keep_all_days`` cutoff: newer checks are never dropped)."""
    thin_before, daily_before = retention.cutoffs(now)
    # The newest given: the domain's latest check when no newer one exists (a domain no
    # longer monitored keeps what it last looked like, however old).
    keep: set[int] = {points[-1].id} if points else set()
    for n, point in enumerate(points):
        if n == 0:
            keep.add(point.id)
            continue
        if point.summary != points[n - 1].summary:
            keep.add(point.id)  # a change
            keep.add(points[n - 1].id)  # and the last check before it
    last_of_day: dict[object, int] = {}
    for point in points:
        if point.observed_at >= daily_before:
            last_of_day[point.observed_at.astimezone(UTC).date()] = point.id
    keep.update(last_of_day.values())
    return [p.id for p in points if p.observed_at < thin_before and p.id not in keep]
