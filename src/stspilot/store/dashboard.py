"""Dashboard reads over the existing tables: an inventory page of hosted domains with their
latest checks and report windows, batched per page, and tenant-scoped report listings.

Every query here is answered from an index a page of 5,000 domains and millions of sessions
needs: ``hosted_domains`` (tenant_id; unique domain), ``checks`` (domain, observed_at),
``report_policies`` and ``failure_details`` (policy_domain, day), ``reports`` (day).
Work per page is bounded by the page size, never by the size of the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, case, func, select
from sqlalchemy.exc import SQLAlchemyError

from stspilot.rollout.evidence import DailyTotal, FailureCount, ReportWindow
from stspilot.store import queries
from stspilot.store.accounts import tenants
from stspilot.store.batch import CHUNK
from stspilot.store.hosting import hosted_domains
from stspilot.store.models import CheckRecord, ReportListing
from stspilot.store.queries import AUTHENTICATED, day_ceiling, day_floor, session_sum
from stspilot.store.reads import check_record, list_reports
from stspilot.store.schema import (
    checks,
    report_policies,
    reports,
)
from stspilot.store.url import store_error
from stspilot.store.windows import (
    day_totals_query,
    domain_periods,
    failures_query,
    host_key,
    hosting_period,
    mx_failures_query,
    parse_day,
    totals_query,
)
from stspilot.tlsrpt import summary
from stspilot.tlsrpt.cadence import ReporterDays, reporter_days

if TYPE_CHECKING:
    from stspilot.store.api import Store

MAX_PAGE = 500  # rows per page, whatever the caller asks


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One hosted domain as the inventory lists it (the served policy, not the live one)."""

    domain: str
    tenant: str
    mode: str
    policy_id: str
    version: int
    state: str
    latest_check_id: int | None
    hosted_since: datetime  # when its tenant began hosting it (the reports' hosting period)


@dataclass(frozen=True, slots=True)
class DomainReports:
    """One domain's report figures for its page (``DashboardReads.domain_reports``)."""

    daily: list[summary.DailyTotal]
    by_result_type: list[summary.FailureCount]
    by_mx: list[summary.FailureCount]
    by_organization: list[summary.FailureCount]
    senders: list[summary.SenderTotal]


@dataclass(frozen=True, slots=True)
class Headline:
    """The inventory's figures over all of a tenant's hosted domains (not just one page)."""

    domains: int
    by_stage: dict[str, int]  # the stage of each domain's last check; "unchecked": none
    failing: int  # domains whose last check found an error
    expiring: int  # domains with an open certificate alert (MX or policy host)
    open_alerts: dict[str, int]  # open monitor alerts by severity


STAGE_FILTERS = ("unchecked", "none", "reporting", "testing", "enforce", "winding-down")
SEVERITY_FILTERS = ("error", "warning", "info", "clean")
CERT_ALERTS = ("cert.mx", "cert.policy-host")  # monitor.alerts codes for expiring certificates


@dataclass(frozen=True, slots=True)
class InventoryPage:
    rows: tuple[InventoryRow, ...]
    total: int  # matching domains on all pages
    offset: int
    limit: int


# How a report reached the store, from the ``origin`` each intake writes (ingest/smtp_receiver,
# ingest/http, ingest/imap; files and mbox messages are stored under their path).
CHANNEL_PREFIXES = (("smtp:", "SMTP"), ("https:", "HTTPS"), ("imap://", "IMAP"))
FILE_CHANNEL = "file"
CHANNELS = (*(name for _, name in CHANNEL_PREFIXES), FILE_CHANNEL)


def channel(origin: str) -> str:
    """The intake channel of a stored report: SMTP, HTTPS, IMAP or file (never the path)."""
    for prefix, name in CHANNEL_PREFIXES:
        if origin.startswith(prefix):
            return name
    return FILE_CHANNEL


def _latest(column: Any) -> Any:
    """``column`` of the newest stored check of the hosted domain in the outer query (the
    ``checks (domain, observed_at)`` index, one probe per domain); an alias of ``checks``,
    so an outer query may join ``checks`` itself."""
    newest = checks.alias("newest")
    return (
        select(newest.c[column.name])
        .where(newest.c.domain == hosted_domains.c.domain)
        .order_by(newest.c.observed_at.desc(), newest.c.id.desc())
        .limit(1)
        .correlate(hosted_domains)
        .scalar_subquery()
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class DashboardReads:
    """Read-only queries for the dashboard pages, on the ``Store``'s database."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise store_error("read", self._engine.url, exc) from exc

    # -- inventory ------------------------------------------------------------------------------

    def inventory(
        self,
        tenant_id: int | None,
        *,
        search: str = "",
        stage: str = "",
        severity: str = "",
        limit: int = 50,
        offset: int = 0,
    ) -> InventoryPage:
        """Hosted domains (of one tenant, or all for ``None``) sorted by name, one page, each
        with the id of its latest stored check (one index probe per row of the page).
        ``stage`` and ``severity`` keep the domains whose last check has that stage or worst
        severity (``STAGE_FILTERS``, ``SEVERITY_FILTERS``; "unchecked", "clean")."""
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)
        h = hosted_domains.c
        where: list[Any] = []
        if tenant_id is not None:
            where.append(h.tenant_id == tenant_id)
        needle = search.strip().lower()[:253]
        if needle:
            where.append(h.domain.like(f"%{_like_escape(needle)}%", escape="\\"))
        latest = _latest(checks.c.id)
        if stage == "unchecked":
            where.append(latest.is_(None))
        elif stage:
            where.append(_latest(checks.c.stage) == stage)
        if severity == "clean":
            where.append(latest.is_not(None))
            where.append(func.coalesce(_latest(checks.c.worst_severity), "info") == "info")
        elif severity:
            where.append(_latest(checks.c.worst_severity) == severity)
        # The page's names first, then their rows and latest checks: read in one query, the
        # latest check was probed for every domain before the sort and the OFFSET (~1 µs a
        # domain: 6.1 -> 2.5 ms for the last page of 5,000 on SQLite).
        names = select(h.domain).where(*where).order_by(h.domain).limit(limit).offset(offset)
        q = (
            select(
                h.domain,
                tenants.c.name,
                h.mode,
                h.policy_id,
                h.version,
                h.state,
                latest,
                h.created_at,
            )
            .join(tenants, tenants.c.id == h.tenant_id)
            .where(h.domain.in_(names.scalar_subquery()))
            .order_by(h.domain)
        )
        count = select(func.count()).select_from(hosted_domains).where(*where)
        with self._read() as conn:
            rows = tuple(InventoryRow(*row) for row in conn.execute(q))
            total = int(conn.execute(count).scalar_one())
        return InventoryPage(rows, total, offset, limit)

    def headline(self, tenant_id: int | None) -> Headline:
        """Counts over every hosted domain of the tenant (``None``: all): by the stage and
        worst severity of each one's last check (one index probe per domain), and the open
        monitor alerts of those domains."""
        from stspilot.store.monitor import monitor_alerts

        h, c, a = hosted_domains.c, checks.c, monitor_alerts.c
        mine: list[Any] = [] if tenant_id is None else [h.tenant_id == tenant_id]
        q = (
            select(c.stage, c.worst_severity, func.count())
            .select_from(hosted_domains.outerjoin(checks, c.id == _latest(c.id)))
            .where(*mine)
            .group_by(c.stage, c.worst_severity)
        )
        joined = monitor_alerts.join(hosted_domains, h.domain == a.domain)
        open_alerts = (
            select(a.severity, func.count())
            .select_from(joined)
            .where(a.resolved_at.is_(None), *mine)
            .group_by(a.severity)
        )
        expiring = (
            select(func.count(func.distinct(a.domain)))
            .select_from(joined)
            .where(a.resolved_at.is_(None), a.code.in_(CERT_ALERTS), *mine)
        )
        by_stage: dict[str, int] = {}
        domains = failing = 0
        with self._read() as conn:
            for stage, worst, n in conn.execute(q):
                key = stage or "unchecked"
                by_stage[key] = by_stage.get(key, 0) + int(n)
                domains += int(n)
                failing += int(n) if worst == "error" else 0
            alerts = {sev: int(n) for sev, n in conn.execute(open_alerts)}
            soon = int(conn.execute(expiring).scalar_one())
        return Headline(domains, by_stage, failing, soon, alerts)

    def checks_by_id(self, ids: Sequence[int]) -> dict[int, CheckRecord]:
        """Stored checks by id (the inventory's latest ones), with their full result."""
        out: dict[int, CheckRecord] = {}
        with self._read() as conn:
            for i in range(0, len(ids), CHUNK):
                q = select(checks).where(checks.c.id.in_(list(ids[i : i + CHUNK])))
                for row in conn.execute(q).mappings():
                    out[row["id"]] = check_record(row)
        return out

    def recent_checks(self, domain: str, *, limit: int = 200) -> list[CheckRecord]:
        """The newest ``limit`` checks of ``domain``, oldest first (rollout history)."""
        q = (
            select(checks)
            .where(checks.c.domain == host_key(domain, {}))
            .order_by(checks.c.observed_at.desc(), checks.c.id.desc())
            .limit(max(1, min(limit, 10_000)))
        )
        with self._read() as conn:
            rows = [check_record(row) for row in conn.execute(q).mappings()]
        return rows[::-1]

    def has_data(self, domain: str) -> bool:
        """Whether any check or report concerns ``domain`` (admins may open unhosted ones)."""
        name = host_key(domain, {})
        with self._read() as conn:
            if conn.execute(select(checks.c.id).where(checks.c.domain == name).limit(1)).first():
                return True
            q = select(report_policies.c.report_pk).where(report_policies.c.policy_domain == name)
            return conn.execute(q.limit(1)).first() is not None

    # -- report windows -------------------------------------------------------------------------

    def report_windows(
        self,
        domains: Sequence[str],
        *,
        since: date | datetime,
        until: date | datetime,
        received_since: datetime | Mapping[str, datetime] | None = None,
    ) -> dict[str, ReportWindow]:
        """The rollout's report counts for several domains at once, [since, until) in UTC
        days: what ``evidence.window_from_reports`` counts, read from the aggregates instead
        of rebuilding every report (RFC 8460 §4.1: a report's day is the day it covers).

        Each row carries its report's authenticity (``store.rows.authenticity``, stored at
        ingest), so the counts read ``report_policies`` and ``failure_details`` alone. A
        hosting period (``received_since``: one start for every domain, or one per domain; a
        domain missing from the mapping has none) keeps only reports received since it
        began; only then is each row's report read, for its arrival time."""
        memo: dict[str, str] = {}
        names, starts = domain_periods(domains, received_since, memo)
        first, last = day_floor(since), day_ceiling(until)
        totals: dict[str, list[DailyTotal]] = {d: [] for d in names}
        fails: dict[str, dict[tuple[date, str, str, str, bool], int]] = {d: {} for d in names}
        # Domains with a hosting period and those without are read apart: the first join
        # each row to its report (by primary key) for its arrival time, the others do not.
        days: dict[Any, date] = {}
        periods = [n for n in names if n in starts]
        plain = [n for n in names if n not in starts]
        with self._read() as conn:
            for group, dated in ((plain, False), (periods, True)):
                for i in range(0, len(group), CHUNK):
                    chunk = group[i : i + CHUNK]
                    for dom, raw, org, auth, ok, bad in conn.execute(
                        totals_query(chunk, first, last, starts if dated else None)
                    ):
                        day = parse_day(raw, days)
                        trusted = auth in AUTHENTICATED
                        totals[dom].append(DailyTotal(day, org, int(ok), int(bad), trusted))
                    for dom, raw, org, rtype, mx, auth, n in conn.execute(
                        failures_query(chunk, first, last, starts if dated else None)
                    ):
                        day = parse_day(raw, days)
                        key = (day, org, rtype, host_key(mx or "", memo), auth in AUTHENTICATED)
                        bucket = fails[dom]
                        bucket[key] = bucket.get(key, 0) + int(n or 0)
        return {
            d: ReportWindow(
                totals=tuple(totals[d]),
                failures=tuple(
                    FailureCount(day, org, rtype, mx, n, trusted)
                    for (day, org, rtype, mx, trusted), n in sorted(fails[d].items())
                ),
            )
            for d in names
        }

    def gate_windows(
        self,
        domains: Sequence[str],
        *,
        since: date | datetime,
        until: date | datetime,
        received_since: datetime | Mapping[str, datetime] | None = None,
    ) -> dict[str, ReportWindow]:
        """``report_windows`` read coarser, for lists of many domains (the inventory): the
        same rows and hosting periods, summed per UTC day and authenticated or not, and the
        failures per day and receiving MX; every ``organization`` and ``result_type`` is "".

        What the gate decides from these is what it decides from ``report_windows`` (its
        verdicts read the sessions per day, whether they were authenticated, and the failed
        sessions per MX, never who reported them or why they failed), and so are the
        sessions, failures and daily series; only the gate's evidence texts, which name
        reporters and result types, need ``report_windows``. A third of the rows (each day
        has a row per reporter there), and so of the page's work on them."""
        memo: dict[str, str] = {}
        names, starts = domain_periods(domains, received_since, memo)
        first, last = day_floor(since), day_ceiling(until)
        days: dict[Any, date] = {}
        sums: dict[str, dict[tuple[date, bool], list[int]]] = {d: {} for d in names}
        fails: dict[str, dict[tuple[date, str], int]] = {d: {} for d in names}
        with self._read() as conn:
            for dated in (False, True):
                group = [n for n in names if (n in starts) is dated]
                period = starts if dated else None
                for i in range(0, len(group), CHUNK):
                    chunk = group[i : i + CHUNK]
                    for dom, raw, auth, ok, bad in conn.execute(
                        day_totals_query(chunk, first, last, period)
                    ):
                        key = (parse_day(raw, days), auth in AUTHENTICATED)
                        found = sums[dom].get(key)
                        if found is None:
                            sums[dom][key] = [int(ok), int(bad)]
                        else:
                            found[0] += int(ok)
                            found[1] += int(bad)
                    for dom, raw, mx, n in conn.execute(
                        mx_failures_query(chunk, first, last, period)
                    ):
                        key2 = (parse_day(raw, days), host_key(mx or "", memo))
                        bucket = fails[dom]
                        bucket[key2] = bucket.get(key2, 0) + int(n or 0)
        return {
            d: ReportWindow(
                totals=tuple(
                    DailyTotal(day, "", ok, bad, trusted)
                    for (day, trusted), (ok, bad) in sorted(sums[d].items())
                ),
                failures=tuple(
                    FailureCount(day, "", "", mx, n, True)
                    for (day, mx), n in sorted(fails[d].items())
                ),
            )
            for d in names
        }

    def window_sums(
        self,
        domains: Sequence[str],
        *,
        since: date | datetime,
        until: date | datetime,
        received_since: Mapping[str, datetime] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """(sessions, failed) per domain over [since, until), as ``report_windows`` counts
        them (the same rows and hosting periods), summed in the database: one row a domain
        (an inventory sorted by sessions, failures or rate over thousands of domains)."""
        memo: dict[str, str] = {}
        names = sorted({host_key(d, memo) for d in domains})
        starts = {host_key(d, memo): t for d, t in (received_since or {}).items()}
        first, last = day_floor(since), day_ceiling(until)
        p = report_policies.c
        out: dict[str, tuple[int, int]] = {}
        with self._read() as conn:
            for dated in (False, True):
                group = [n for n in names if (n in starts) is dated]
                for i in range(0, len(group), CHUNK):
                    chunk = group[i : i + CHUNK]
                    q = select(
                        p.policy_domain,
                        session_sum(p.successful_sessions),
                        session_sum(p.failed_sessions),
                    ).where(p.policy_domain.in_(chunk), p.day >= first, p.day < last)
                    if dated:
                        period = {d: starts[d] for d in chunk}
                        q = q.where(*hosting_period(report_policies, period))
                    for dom, ok, bad in conn.execute(q.group_by(p.policy_domain)):
                        out[dom] = (int(ok) + int(bad), int(bad))
        return out

    def domain_reports(
        self,
        domain: str,
        *,
        since: date | datetime,
        until: date | datetime,
        received_since: datetime | None = None,
    ) -> DomainReports:
        """The domain page's report figures over [since, until), in one transaction: the
        queries ``Store.report_aggregates`` (the API's summary) runs, with the same hosting
        period (``received_since``), less the by-IP and DKIM breakdowns the page does not
        show."""
        name = host_key(domain, {})
        window: dict[str, Any] = {
            "domain": name,
            "since": since,
            "until": until,
            "received_since": received_since,
        }
        with self._read() as conn:
            return DomainReports(
                daily=queries.daily_totals(conn, **window),
                by_result_type=queries.failure_counts(conn, "result_type", **window),
                by_mx=queries.failure_counts(conn, "mx", **window),
                by_organization=queries.failure_counts(conn, "organization", **window),
                senders=queries.sender_totals(conn, **window),
            )

    # -- reporters ------------------------------------------------------------------------------

    def reporter_days(
        self,
        domain: str,
        *,
        since: date | datetime,
        until: date | datetime,
        received_since: datetime | None = None,
    ) -> list[ReporterDays]:
        """Per reporting organisation, the UTC days [since, until) its reports covered for
        ``domain`` and when its newest report arrived (``tlsrpt.cadence`` learns from them):
        the (policy_domain, day) index, then each report's row by primary key. With
        ``received_since`` (a tenant's hosting period) only reports received since then."""
        p, r = report_policies.c, reports.c
        q = (
            select(p.organization_name, p.day, func.max(r.received_at))
            .join(reports, r.id == p.report_pk)
            .where(
                p.policy_domain == host_key(domain, {}),
                p.day >= day_floor(since),
                p.day < day_ceiling(until),
                *([] if received_since is None else [r.received_at >= received_since]),
            )
            .group_by(p.organization_name, p.day)
        )
        pairs: list[tuple[str, date]] = []
        received: dict[str, datetime] = {}
        with self._read() as conn:
            for org, day, when in conn.execute(q):
                pairs.append((org, day))
                if when is not None and (org not in received or when > received[org]):
                    received[org] = when
        return reporter_days(pairs, received)

    # -- reports --------------------------------------------------------------------------------

    def list_reports(self, **listing: Any) -> list[ReportListing]:
        """``store.reads.list_reports`` (the listing behind ``Store.list_reports``, the CLI and
        the API), with all its options (``hosting_periods`` among them)."""
        with self._read() as conn:
            return list_reports(conn, **listing)

    def report_domains(self, pk: int) -> list[str]:
        """The policy domains one report names (for the tenant check on a report link)."""
        q = select(report_policies.c.policy_domain).where(report_policies.c.report_pk == pk)
        with self._read() as conn:
            return sorted({d for (d,) in conn.execute(q)})

    def hosted(self, names: Sequence[str], *, tenant_id: int | None = None) -> set[str]:
        """Which of ``names`` are hosted here (of the tenant, or of any tenant for ``None``)."""
        memo: dict[str, str] = {}
        wanted = sorted({host_key(n, memo) for n in names})
        out: set[str] = set()
        h = hosted_domains.c
        with self._read() as conn:
            for i in range(0, len(wanted), CHUNK):
                q = select(h.domain).where(h.domain.in_(wanted[i : i + CHUNK]))
                if tenant_id is not None:
                    q = q.where(h.tenant_id == tenant_id)
                out.update(d for (d,) in conn.execute(q))
        return out

    def owned(self, tenant_id: int, names: Sequence[str]) -> set[str]:
        """Which of ``names`` are the tenant's hosted domains (a report may name others')."""
        memo: dict[str, str] = {}
        wanted = sorted({host_key(n, memo) for n in names})
        out: set[str] = set()
        h = hosted_domains.c
        with self._read() as conn:
            for i in range(0, len(wanted), CHUNK):
                q = select(h.domain).where(
                    h.tenant_id == tenant_id, h.domain.in_(wanted[i : i + CHUNK])
                )
                out.update(d for (d,) in conn.execute(q))
        return out


def newest_report_id(store: Store) -> int:
    """The highest ``reports.id`` (0 for none): where intake counting starts."""
    with DashboardReads(store)._read() as conn:
        return int(conn.execute(select(func.coalesce(func.max(reports.c.id), 0))).scalar_one())


def reports_by_channel_since(store: Store, after_id: int) -> tuple[dict[str, int], int]:
    """Reports stored with an id above ``after_id``, by intake channel, and the new highest
    id: read on the primary key, so the work is what arrived since, not the whole table."""
    r = reports.c
    kind = case(
        *((r.origin.like(f"{prefix}%"), name) for prefix, name in CHANNEL_PREFIXES),
        else_=FILE_CHANNEL,
    )
    q = select(kind, func.count(), func.max(r.id)).where(r.id > after_id).group_by(kind)
    out: dict[str, int] = {}
    newest = after_id
    with DashboardReads(store)._read() as conn:
        for name, n, top in conn.execute(q):
            out[name] = int(n)
            newest = max(newest, int(top))
    return out, newest


def report_window(
    store: Store,
    domain: str,
    since: datetime,
    until: datetime,
    *,
    received_since: datetime | None = None,
) -> ReportWindow:
    """One domain's report counts over [since, until] for the rollout (CLI, API and pages)."""
    windows = DashboardReads(store).report_windows(
        [domain], since=since, until=until, received_since=received_since
    )
    return next(iter(windows.values()))
