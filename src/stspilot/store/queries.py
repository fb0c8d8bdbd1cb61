"""Aggregations over stored reports for summaries and dashboards: daily totals and failure
breakdowns by result type, receiving MX, sending organisation and sending IP.

Windows are whole UTC days, [since, until), because reports cover whole UTC days
(RFC 8460 §4.1); each query reads one indexed table, no joins.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    case,
    func,
    literal,
    select,
    union,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from stspilot.store import rows
from stspilot.store.schema import checks, failure_details, report_policies, reports
from stspilot.tlsrpt.summary import (
    AuthenticityCount,
    DailyTotal,
    FailureCount,
    ReportAggregates,
    SenderTotal,
)

Dimension = Literal["result_type", "mx", "organization", "sending_ip", "receiving_ip"]

_DIMENSION_COLUMNS = {
    "result_type": failure_details.c.result_type,
    "mx": failure_details.c.receiving_mx_hostname,
    "organization": failure_details.c.organization_name,
    "sending_ip": failure_details.c.sending_mta_ip,
    "receiving_ip": failure_details.c.receiving_ip,
}


class session_sum(GenericFunction[int]):
    """The sum of a session-count column that cannot overflow, 0 over no rows.

    ``SUM`` of a BIGINT column fails with "integer overflow" on SQLite once the total passes
    2**63 - 1. PostgreSQL's ``sum(bigint)`` is ``numeric`` (exact, unbounded); SQLite's
    ``total()`` is a float that never overflows and is exact up to 2**53 (9 * 10**15 sessions
    in one group, millions of the largest reports ``Limits.max_sessions`` allows). Callers
    read the value with ``int()``.
    """

    type = BigInteger()
    name = "session_sum"
    inherit_cache = True


@compiles(session_sum, "sqlite")
def _session_sum_sqlite(element: session_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"total({compiler.process(element.clauses, **kw)})"


@compiles(session_sum)
def _session_sum(element: session_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"coalesce(sum({compiler.process(element.clauses, **kw)}), 0)"


def day_floor(value: date | datetime) -> date:
    """The UTC day a window starts on."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    return value


def day_ceiling(value: date | datetime) -> date:
    """The first UTC day after a window that ends at ``value`` (exclusive): a datetime inside a
    day keeps that day in the window, so ``until=now`` includes today's reports."""
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        midnight = utc.replace(hour=0, minute=0, second=0, microsecond=0)
        return utc.date() if utc == midnight else utc.date() + timedelta(days=1)
    return value


def _window(
    query: Select[Any],
    table: Any,
    domain: str | None,
    since: date | datetime | None,
    until: date | datetime | None,
    received_since: datetime | None = None,
) -> Select[Any]:
    if received_since is not None:  # a tenant's hosting period: reports received since then
        # Each row's report by primary key (correlated): an IN over every report received
        # since then had no index to use and read the whole reports table (~300 ms of CPU
        # for the domain page at 140,000 reports).
        query = query.where(
            select(reports.c.id)
            .where(reports.c.id == table.c.report_pk, reports.c.received_at >= received_since)
            .exists()
        )
    if since is not None:
        query = query.where(table.c.day >= day_floor(since))
    if until is not None:
        query = query.where(table.c.day < day_ceiling(until))
    if domain is not None:  # the (policy_domain, day) index
        return query.where(table.c.policy_domain == domain)
    if since is not None or until is not None:
        # Every domain: the window's reports on their day index, then their rows by primary
        # key (the children keep no day-only index; a report's rows share its day).
        in_window = select(reports.c.id)
        if since is not None:
            in_window = in_window.where(reports.c.day >= day_floor(since))
        if until is not None:
            in_window = in_window.where(reports.c.day < day_ceiling(until))
        query = query.where(table.c.report_pk.in_(in_window))
    return query


def daily_totals(
    conn: Connection,
    *,
    domain: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    received_since: datetime | None = None,
) -> list[DailyTotal]:
    p = report_policies.c
    query = select(
        p.policy_domain,
        p.day,
        func.count(func.distinct(p.report_pk)),
        session_sum(p.successful_sessions),
        session_sum(p.failed_sessions),
    ).group_by(p.policy_domain, p.day)
    query = _window(query, report_policies, domain, since, until, received_since).order_by(
        p.policy_domain, p.day
    )
    return [
        DailyTotal(dom, day, int(n), int(ok), int(bad))
        for dom, day, n, ok, bad in conn.execute(query)
    ]


def failure_counts(
    conn: Connection,
    dimension: Dimension,
    *,
    domain: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    received_since: datetime | None = None,
) -> list[FailureCount]:
    """Failed sessions per (policy domain, dimension value, result type), largest first.

    Sums ``failed-session-count`` of the failure details; one session may count under several
    result types (RFC 8460 §4.3, checklist B4.14), so these need not add up to the daily totals.
    """
    f = failure_details.c
    key = _DIMENSION_COLUMNS[dimension]
    total = session_sum(f.failed_session_count)
    query = select(f.policy_domain, key, f.result_type, total).group_by(
        f.policy_domain, key, f.result_type
    )
    query = _window(query, failure_details, domain, since, until, received_since).order_by(
        total.desc(), f.policy_domain, key, f.result_type
    )
    return [FailureCount(row[0], row[1] or "", row[2], int(row[3])) for row in conn.execute(query)]


def sender_totals(
    conn: Connection,
    *,
    domain: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    received_since: datetime | None = None,
) -> list[SenderTotal]:
    p = report_policies.c
    failed = session_sum(p.failed_sessions)
    query = select(
        p.policy_domain,
        p.organization_name,
        func.count(func.distinct(p.report_pk)),
        session_sum(p.successful_sessions),
        failed,
    ).group_by(p.policy_domain, p.organization_name)
    query = _window(query, report_policies, domain, since, until, received_since).order_by(
        failed.desc(), p.policy_domain, p.organization_name
    )
    return [
        SenderTotal(dom, org, int(n), int(ok), int(bad))
        for dom, org, n, ok, bad in conn.execute(query)
    ]


def report_aggregates(
    conn: Connection,
    *,
    domain: str | None,
    since: date | datetime,
    until: date | datetime,
    received_since: datetime | None = None,
) -> ReportAggregates:
    """Everything ``stspilot.tlsrpt.summary.summarize`` needs, read in one transaction
    (``received_since``: only reports received since then, a tenant's hosting period)."""
    window: dict[str, Any] = {
        "domain": domain,
        "since": since,
        "until": until,
        "received_since": received_since,
    }
    return ReportAggregates(
        domain=domain,
        since=day_floor(since),
        until=day_ceiling(until),
        daily=tuple(daily_totals(conn, **window)),
        by_result_type=tuple(failure_counts(conn, "result_type", **window)),
        by_mx=tuple(failure_counts(conn, "mx", **window)),
        by_organization=tuple(failure_counts(conn, "organization", **window)),
        by_sending_ip=tuple(failure_counts(conn, "sending_ip", **window)),
        senders=tuple(sender_totals(conn, **window)),
        authenticity=authenticity_counts(conn, **window),
    )


# Each report's authenticity class (issue 15) is stored with its rows at ingest, by the one rule
# in ``store.rows.authenticity``; these names stay importable from here.
AUTHENTICITY = rows.AUTHENTICITY
AUTHENTICATED = rows.AUTHENTICATED


def authenticity_counts(
    conn: Connection,
    *,
    domain: str | None,
    since: date | datetime,
    until: date | datetime,
    received_since: datetime | None = None,
) -> tuple[AuthenticityCount, ...]:
    """The window's reports by sending organisation and how they came: mailed ones by DKIM
    outcome, read from the envelopes by JSON path (``dkim.result``; "unchecked" when stored
    without verification), then "https" (POSTed) and "file" (imported by an operator); one
    grouped query."""
    r = reports.c
    result = case(
        (r.envelope.is_not(None), func.coalesce(r.envelope["dkim"]["result"].as_string(), "")),
        (r.origin.like("https:%"), literal("https")),
        else_=literal("file"),
    )
    q = (
        select(r.organization_name, result, func.count())
        .where(r.day >= day_floor(since), r.day < day_ceiling(until))
        .group_by(r.organization_name, result)
    )
    if received_since is not None:
        q = q.where(r.received_at >= received_since)
    if domain is not None:
        q = q.where(
            r.id.in_(
                select(report_policies.c.report_pk).where(report_policies.c.policy_domain == domain)
            )
        )
    counts: dict[tuple[str, str], int] = {}
    for org, outcome, n in conn.execute(q):
        key = (org, outcome or "unchecked")
        counts[key] = counts.get(key, 0) + int(n)
    return tuple(AuthenticityCount(org, res, n) for (org, res), n in sorted(counts.items()))


def list_domains(conn: Connection) -> list[str]:
    """Policy domains seen in reports or checks, sorted."""
    query = union(
        select(report_policies.c.policy_domain.label("d")).distinct(),
        select(checks.c.domain.label("d")).distinct(),
    )
    return sorted({d for (d,) in conn.execute(query) if d})
