"""Report aggregates to a plain-English TLS health summary (and its JSON and CSV shapes).

Pure core: no I/O, no clock; the window and the aggregate rows are parameters. The store's
queries return the row types defined here, so the store and this module share one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """Sessions of one policy domain on one UTC day, from the reports' summaries (RFC 8460 §4.4)."""

    policy_domain: str
    day: date
    reports: int
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed sessions of one result type, grouped by one dimension (``key``).

    ``key`` is the receiving MX, the sending organisation, the sending IP or (for the
    by-result-type breakdown) the result type itself; "" where the reporter left it out.
    """

    policy_domain: str
    key: str
    result_type: str
    sessions: int


@dataclass(frozen=True, slots=True)
class SenderTotal:
    """Sessions reported by one sending organisation for one policy domain."""

    policy_domain: str
    organization_name: str
    reports: int
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class ReportAggregates:
    """Everything the summary reads, for the window [since, until) in whole UTC days."""

    domain: str | None
    since: date
    until: date
    daily: tuple[DailyTotal, ...]
    by_result_type: tuple[FailureCount, ...]
    by_mx: tuple[FailureCount, ...]
    by_organization: tuple[FailureCount, ...]
    by_sending_ip: tuple[FailureCount, ...]
    senders: tuple[SenderTotal, ...]
