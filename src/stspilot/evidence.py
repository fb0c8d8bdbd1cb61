"""What the rollout decides from: the latest check, report counts of a window, check history.

Pure core: no I/O, no clock. Plain values, built by the CLI from a ``CheckResult`` and the store
(``live_state_from_check``, ``history_from_checks``), or by tests by hand; ``window_from_reports``
counts parsed TLS-RPT reports the same way the store's aggregates do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from stspilot.generate import normalize_host
from stspilot.reports import TlsReport


@dataclass(frozen=True, slots=True)
class MxState:
    """One live MX host as the latest check saw it."""

    host: str
    covered_by: str | None = None  # the policy pattern that covers it, None when uncovered
    tls_ok: bool | None = None  # None: not probed
    problem: str = ""  # why STARTTLS or the certificate failed, in the probe's words
    days_to_expiry: int | None = None


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the latest check saw, reduced to what the rollout needs."""

    domain: str
    observed_at: datetime
    sts_id: str | None = None  # the _mta-sts TXT id; None when no usable record
    mode: str | None = None  # the served policy's mode; None when no usable policy
    max_age: int | None = None
    mx_patterns: tuple[str, ...] = ()
    policy_sha256: str = ""
    policy_problem: str = ""  # "" when fetched with status 200 and a valid certificate
    tlsrpt_rua: tuple[str, ...] = ()  # empty: no valid _smtp._tls record
    mx: tuple[MxState, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier check from the store (oldest first when handed to ``assess_rollout``)."""

    observed_at: datetime
    mode: str | None
    policy_id: str | None
    policy_sha256: str = ""
    mx_hosts: tuple[str, ...] = ()
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """Sessions one organisation reported for one UTC day (RFC 8460 §4.1: daily reports)."""

    day: date
    organization: str
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed sessions of one result type to one MX ("" when the reporter left it out)."""

    day: date
    organization: str
    result_type: str
    receiving_mx: str
    sessions: int


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """The reports of a window, as counts (the store's aggregates or ``window_from_reports``)."""

    totals: tuple[DailyTotal, ...] = ()
    failures: tuple[FailureCount, ...] = ()

    def since(self, start: date) -> ReportWindow:
        return ReportWindow(
            tuple(t for t in self.totals if t.day >= start),
            tuple(f for f in self.failures if f.day >= start),
        )


@dataclass(frozen=True, slots=True)
class RolloutInputs:
    live: LiveState
    reports: ReportWindow = ReportWindow()
    history: tuple[HistoryEntry, ...] = ()
    planned_mx: tuple[str, ...] | None = None  # the MX set about to go live, if one is planned


def window_from_reports(reports: Iterable[TlsReport], domain: str) -> ReportWindow:
    """Counts for ``domain`` from parsed reports; a report's day is its start date (UTC)."""
    name = normalize_host(domain)
    totals: Counter[tuple[date, str]] = Counter()
    failed: Counter[tuple[date, str]] = Counter()
    details: Counter[tuple[date, str, str, str]] = Counter()
    for report in reports:
        day = report.start.date()
        org = report.organization_name
        for policy in report.policies:
            if policy.policy_domain and normalize_host(policy.policy_domain) != name:
                continue
            totals[day, org] += policy.successful_sessions
            failed[day, org] += policy.failed_sessions
            for d in policy.failure_details:
                mx = normalize_host(d.receiving_mx_hostname or "")
                details[day, org, d.result_type, mx] += d.failed_session_count
    return ReportWindow(
        totals=tuple(
            DailyTotal(day, org, totals[day, org], failed[day, org])
            for day, org in sorted(totals.keys() | failed.keys())
        ),
        failures=tuple(
            FailureCount(day, org, rtype, mx, n)
            for (day, org, rtype, mx), n in sorted(details.items())
        ),
    )
