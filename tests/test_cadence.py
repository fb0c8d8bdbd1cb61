"""tlsrpt.cadence: pure; which reporters are regular, how often, and which went quiet."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from stspilot.monitor.alerts import quiet_reporter_alerts
from stspilot.tlsrpt.cadence import MIN_DAYS, ReporterDays, learn_cadence, quiet

TODAY = date(2026, 12, 6)


def days_back(first: int, last: int, step: int = 1) -> tuple[date, ...]:
    """Days ``TODAY - first`` .. ``TODAY - last`` every ``step`` days."""
    return tuple(TODAY - timedelta(days=n) for n in range(first, last - 1, -step))


def one(seen: ReporterDays, today: date = TODAY):  # type: ignore[no-untyped-def]
    (cadence,) = learn_cadence([seen], today=today)
    return cadence


def test_a_daily_reporter_that_keeps_reporting_is_regular_and_on_time() -> None:
    c = one(ReporterDays("Google Inc.", days_back(30, 1)))
    assert (c.regular, c.overdue, c.gap_days, c.habit) == (True, False, 1, "daily")
    assert c.days_seen == 30 and c.silent_days == 1


def test_a_daily_reporter_silent_for_three_days_is_overdue() -> None:
    # One a day for a month, then nothing: the newest report covers four days ago.
    c = one(ReporterDays("Google Inc.", days_back(34, 4)))
    assert c.regular and c.overdue and c.silent_days == 4
    assert c.expected_by == TODAY - timedelta(days=1)


@pytest.mark.parametrize(("silent", "overdue"), [(1, False), (2, False), (3, False), (4, True)])
def test_a_daily_reporter_has_a_grace_of_a_day(silent: int, overdue: bool) -> None:
    assert one(ReporterDays("Google Inc.", days_back(30, silent))).overdue is overdue


def test_a_weekly_reporter_is_judged_by_its_own_cadence() -> None:
    weekly = ReporterDays("Weekly Org", days_back(43, 8, step=7))  # 43, 36, ..., 8
    c = one(weekly)
    assert (c.regular, c.gap_days, c.habit, c.overdue) == (True, 7, "every 7 days", False)
    later = one(weekly, today=TODAY + timedelta(days=8))
    assert later.overdue  # 16 days without a report: two missed weeks


def test_a_sender_that_reported_now_and_then_never_alerts() -> None:
    rare = ReporterDays("Small MTA", days_back(40, 30, step=5))  # three reports, long ago
    c = one(rare)
    assert c.days_seen < MIN_DAYS and not c.regular and not c.overdue
    assert c.habit == "irregular" and quiet([c]) == ()


def test_a_reporter_with_long_gaps_is_not_regular() -> None:
    c = one(ReporterDays("Monthly", days_back(44, 4, step=10)))
    assert c.days_seen == 5 and c.gap_days == 10 and not c.regular and not c.overdue


def test_a_single_missed_day_inside_the_habit_changes_nothing() -> None:
    days = tuple(d for d in days_back(30, 1) if d != TODAY - timedelta(days=10))
    assert not one(ReporterDays("Google Inc.", days)).overdue


def test_order_is_overdue_first_then_regular_then_the_rest() -> None:
    found = learn_cadence(
        [
            ReporterDays("rare", days_back(20, 10, step=5)),
            ReporterDays("ok", days_back(30, 1)),
            ReporterDays("quiet", days_back(30, 6)),
            ReporterDays("outside", (TODAY - timedelta(days=200),)),  # outside the window
        ],
        today=TODAY,
    )
    assert [c.organization for c in found] == ["quiet", "ok", "rare"]


def test_alert_names_the_reporter_and_its_habit_and_is_stable() -> None:
    received = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    cadences = learn_cadence(
        [
            ReporterDays("Google Inc.", days_back(34, 4), received),
            ReporterDays("Microsoft", days_back(30, 1)),
            ReporterDays("rare", days_back(40, 30, step=5)),
        ],
        today=TODAY,
    )
    (alert,) = quiet_reporter_alerts("example.com", cadences)
    assert alert.code == "tlsrpt.reporter-quiet" and alert.lasting
    assert alert.key == "example.com|tlsrpt.reporter-quiet|Google Inc."
    assert "Google Inc. sent TLS-RPT reports daily" in alert.message
    assert "2026-12-02 07:00 UTC" in alert.message and "RFC 8460" in alert.message
    again = quiet_reporter_alerts("example.com", cadences)
    assert again == [alert]
