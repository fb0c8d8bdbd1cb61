"""The report windows' queries, shared by the dashboard's reads (``store.dashboard``): a
report child table (``report_policies``, ``failure_details``) summed per domain and day over
[first, last) for a chunk of domains, within each domain's hosting period when one applies,
answered from the (policy_domain, day) covering indexes (migration 0011).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import String, case, literal, select, type_coerce

from stspilot.store.queries import session_sum
from stspilot.store.schema import UtcDateTime, failure_details, report_policies, reports
from stspilot.sts.names import fold_name


def host_key(name: str, memo: dict[str, str]) -> str:
    """``sts.names.fold_name`` (never raises: a reporter's MX name is hostile input), memoised
    per query."""
    found = memo.get(name)
    if found is None:
        found = memo[name] = fold_name(name)
    return found


def hosting_period(table: Any, starts: Mapping[str, datetime] | None) -> list[Any]:
    """The ``WHERE`` terms that keep a child row of ``table`` only when its report was
    received since its domain's hosting period began (``starts``; None: no period)."""
    if starts is None:
        return []
    when = set(starts.values())
    # One start for all, or a CASE on the row's domain (the chunk's domains only).
    begin: Any = (
        next(iter(when))
        if len(when) == 1
        else case(
            {d: literal(t, UtcDateTime()) for d, t in starts.items()},
            value=table.c.policy_domain,
        )
    )
    return [reports.c.id == table.c.report_pk, reports.c.received_at >= begin]


def raw_day(column: Any) -> Any:
    """A day column as the driver gives it (SQLite: ISO text, parsed by ``parse_day``): SQLAlchemy's
    SQLite ``Date`` parses every row's text with a regular expression, ~1 µs a row of the
    inventory's few thousand, and a page has only ~15 distinct days."""
    return type_coerce(column, String())


def parse_day(value: Any, memo: dict[Any, date]) -> date:
    found = memo.get(value)
    if found is None:
        found = memo[value] = value if isinstance(value, date) else date.fromisoformat(value)
    return found


def window_query(
    table: Any,
    columns: Sequence[Any],
    group: Sequence[Any],
    chunk: list[str],
    first: date,
    last: date,
    starts: Mapping[str, datetime] | None,
) -> Any:
    """``columns`` of ``table`` (a report child keyed by policy_domain and day) for the
    ``chunk`` of domains over [first, last), within each one's hosting period, grouped."""
    c = table.c
    q = select(*columns).where(c.policy_domain.in_(chunk), c.day >= first, c.day < last)
    if starts is not None:
        q = q.where(*hosting_period(table, {d: starts[d] for d in chunk}))
    return q.group_by(*group)


def totals_query(
    chunk: list[str], first: date, last: date, starts: Mapping[str, datetime] | None
) -> Any:
    p = report_policies.c
    group = (p.policy_domain, p.day, p.organization_name, p.authenticity)
    columns = (
        p.policy_domain,
        raw_day(p.day),
        p.organization_name,
        p.authenticity,
        session_sum(p.successful_sessions),
        session_sum(p.failed_sessions),
    )
    q = window_query(report_policies, columns, group, chunk, first, last, starts)
    return q.order_by(*group)


def failures_query(
    chunk: list[str], first: date, last: date, starts: Mapping[str, datetime] | None
) -> Any:
    f = failure_details.c
    group = (
        f.policy_domain,
        f.day,
        f.organization_name,
        f.result_type,
        f.receiving_mx_hostname,
        f.authenticity,
    )
    columns = (*group[:1], raw_day(f.day), *group[2:], session_sum(f.failed_session_count))
    return window_query(failure_details, columns, group, chunk, first, last, starts)


def day_totals_query(
    chunk: list[str], first: date, last: date, starts: Mapping[str, datetime] | None
) -> Any:
    """``totals_query`` without the organisations: per (domain, day, authenticity)."""
    p = report_policies.c
    columns = (
        p.policy_domain,
        raw_day(p.day),
        p.authenticity,
        session_sum(p.successful_sessions),
        session_sum(p.failed_sessions),
    )
    group = (p.policy_domain, p.day, p.authenticity)
    return window_query(report_policies, columns, group, chunk, first, last, starts)


def mx_failures_query(
    chunk: list[str], first: date, last: date, starts: Mapping[str, datetime] | None
) -> Any:
    """``failures_query`` without organisations, result types and authenticity: per
    (domain, day, receiving MX)."""
    f = failure_details.c
    columns = (
        f.policy_domain,
        raw_day(f.day),
        f.receiving_mx_hostname,
        session_sum(f.failed_session_count),
    )
    group = (f.policy_domain, f.day, f.receiving_mx_hostname)
    return window_query(failure_details, columns, group, chunk, first, last, starts)


def domain_periods(
    domains: Sequence[str],
    received_since: datetime | Mapping[str, datetime] | None,
    memo: dict[str, str],
) -> tuple[list[str], dict[str, datetime]]:
    """The folded names asked for, sorted, and each one's hosting period start (if any)."""
    names = sorted({host_key(d, memo) for d in domains})
    starts: dict[str, datetime] = {}
    if isinstance(received_since, datetime):
        starts = dict.fromkeys(names, received_since)
    elif received_since is not None:
        starts = {host_key(d, memo): when for d, when in received_since.items()}
    return names, starts
