"""Dashboard reads over the existing tables: an inventory page of hosted domains with their
latest checks and report windows, batched per page, and tenant-scoped report listings.

Every query here is answered from an index a page of 5,000 domains and millions of sessions
needs: ``hosted_domains`` (tenant_id; unique domain), ``checks`` (domain, observed_at),
``report_policies`` and ``failure_details`` (policy_domain, day), ``reports`` (day).
Work per page is bounded by the page size, never by the size of the database.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, func, select
from sqlalchemy.exc import SQLAlchemyError

from stspilot.errors import ConfigError, StoreError
from stspilot.rollout.evidence import DailyTotal, FailureCount, ReportWindow
from stspilot.rollout.generate import normalize_host
from stspilot.store.accounts import tenants
from stspilot.store.batch import CHUNK
from stspilot.store.hosting import hosted_domains
from stspilot.store.models import CheckRecord, ReportListing
from stspilot.store.queries import AUTHENTICATED, authenticity_of, day_ceiling, day_floor
from stspilot.store.reads import check_record
from stspilot.store.schema import checks, failure_details, report_policies, reports

if TYPE_CHECKING:
    from stspilot.store.api import Store

MAX_PAGE = 500  # rows per page, whatever the caller asks
# Up to this many hosted domains a tenant's report listing goes domain by domain; past it, it
# walks ``reports`` newest first (``list_reports``).
SMALL_TENANT = 100


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


@dataclass(frozen=True, slots=True)
class InventoryPage:
    rows: tuple[InventoryRow, ...]
    total: int  # matching domains on all pages
    offset: int
    limit: int


def _host(name: str, memo: dict[str, str]) -> str:
    """``normalize_host`` as the rollout compares names, but total: a reporter's malformed
    MX name (hostile input) is kept lower-cased instead of raising; memoised per query."""
    found = memo.get(name)
    if found is None:
        try:
            found = normalize_host(name)
        except ConfigError:
            found = name.strip().rstrip(".").lower()
        memo[name] = found
    return found


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
            raise StoreError(f"database read failed: {exc.__class__.__name__}: {exc}") from exc

    # -- inventory ------------------------------------------------------------------------------

    def inventory(
        self,
        tenant_id: int | None,
        *,
        search: str = "",
        limit: int = 50,
        offset: int = 0,
    ) -> InventoryPage:
        """Hosted domains (of one tenant, or all for ``None``) sorted by name, one page, each
        with the id of its latest stored check (one index probe per row of the page)."""
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)
        h = hosted_domains.c
        where: list[Any] = []
        if tenant_id is not None:
            where.append(h.tenant_id == tenant_id)
        needle = search.strip().lower()[:253]
        if needle:
            where.append(h.domain.like(f"%{_like_escape(needle)}%", escape="\\"))
        latest = (
            select(checks.c.id)
            .where(checks.c.domain == h.domain)
            .order_by(checks.c.observed_at.desc(), checks.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        q = (
            select(h.domain, tenants.c.name, h.mode, h.policy_id, h.version, h.state, latest)
            .join(tenants, tenants.c.id == h.tenant_id)
            .where(*where)
            .order_by(h.domain)
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(hosted_domains).where(*where)
        with self._read() as conn:
            rows = tuple(InventoryRow(*row) for row in conn.execute(q))
            total = int(conn.execute(count).scalar_one())
        return InventoryPage(rows, total, offset, limit)

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
            .where(checks.c.domain == _host(domain, {}))
            .order_by(checks.c.observed_at.desc(), checks.c.id.desc())
            .limit(max(1, min(limit, 10_000)))
        )
        with self._read() as conn:
            rows = [check_record(row) for row in conn.execute(q).mappings()]
        return rows[::-1]

    def has_data(self, domain: str) -> bool:
        """Whether any check or report concerns ``domain`` (admins may open unhosted ones)."""
        name = _host(domain, {})
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
        received_since: datetime | None = None,
    ) -> dict[str, ReportWindow]:
        """The rollout's report counts for several domains at once, [since, until) in UTC
        days: what ``evidence.window_from_reports`` counts, read from the aggregates instead
        of rebuilding every report (RFC 8460 §4.1: a report's day is the day it covers)."""
        memo: dict[str, str] = {}
        names = sorted({_host(d, memo) for d in domains})
        first, last = day_floor(since), day_ceiling(until)
        p, f = report_policies.c, failure_details.c
        totals: dict[str, list[DailyTotal]] = {d: [] for d in names}
        fails: dict[str, dict[tuple[date, str, str, str, bool], int]] = {d: {} for d in names}
        kind = authenticity_of(reports.c)
        # A tenant's hosting period: only reports received since it began.
        recent = [] if received_since is None else [reports.c.received_at >= received_since]
        with self._read() as conn:
            for i in range(0, len(names), CHUNK):
                chunk = names[i : i + CHUNK]
                tq = (
                    select(
                        p.policy_domain,
                        p.day,
                        p.organization_name,
                        kind,
                        func.coalesce(func.sum(p.successful_sessions), 0),
                        func.coalesce(func.sum(p.failed_sessions), 0),
                    )
                    .join(reports, reports.c.id == p.report_pk)
                    .where(p.policy_domain.in_(chunk), p.day >= first, p.day < last, *recent)
                    .group_by(p.policy_domain, p.day, p.organization_name, kind)
                    .order_by(p.policy_domain, p.day, p.organization_name, kind)
                )
                for dom, day, org, auth, ok, bad in conn.execute(tq):
                    trusted = auth in AUTHENTICATED
                    totals[dom].append(DailyTotal(day, org, int(ok), int(bad), trusted))
                fq = (
                    select(
                        f.policy_domain,
                        f.day,
                        f.organization_name,
                        f.result_type,
                        f.receiving_mx_hostname,
                        kind,
                        func.sum(f.failed_session_count),
                    )
                    .join(reports, reports.c.id == f.report_pk)
                    .where(f.policy_domain.in_(chunk), f.day >= first, f.day < last, *recent)
                    .group_by(
                        f.policy_domain,
                        f.day,
                        f.organization_name,
                        f.result_type,
                        f.receiving_mx_hostname,
                        kind,
                    )
                )
                for dom, day, org, rtype, mx, auth, n in conn.execute(fq):
                    key = (day, org, rtype, _host(mx or "", memo), auth in AUTHENTICATED)
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

    # -- reports --------------------------------------------------------------------------------

    def list_reports(
        self,
        *,
        tenant_id: int | None,
        domain: str | None = None,
        since: date | datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        walk_after: int = SMALL_TENANT,
    ) -> list[ReportListing]:
        """Reports newest day first, limited to those naming one of the tenant's hosted
        domains (``tenant_id=None``: every report), optionally one domain and a day window.
        Asks for ``limit`` rows; callers ask one more to know whether a next page exists.
        A tenant of more than ``walk_after`` hosted domains is listed by walking ``reports``."""
        r, p = reports.c, report_policies.c
        q: Select[Any] = select(
            r.id,
            r.organization_name,
            r.report_id,
            r.start_at,
            r.end_at,
            r.successful_sessions,
            r.failed_sessions,
            r.origin,
            r.received_at,
        )
        h = hosted_domains.c
        if domain is not None:
            # One domain: its report_policies rows through (policy_domain, day), then reports.
            mine = select(p.report_pk).where(p.policy_domain == _host(domain, {}))
            if tenant_id is not None:
                owned = select(h.domain).where(h.tenant_id == tenant_id)
                mine = mine.where(p.policy_domain.in_(owned))
            if since is not None:
                mine = mine.where(p.day >= day_floor(since))
            q = q.where(r.id.in_(mine))
        elif tenant_id is not None:
            # A whole tenant: walk ``reports`` newest first on its day index and keep a report
            # when one of its policies names a domain of the tenant (report_policies primary
            # key, then the unique hosted_domains.domain): the walk stops after one page
            # instead of collecting every report of thousands of domains first. A tenant of a
            # few domains in a large store would walk far for each page, so it keeps the
            # per-domain path.
            count = select(func.count()).select_from(hosted_domains).where(h.tenant_id == tenant_id)
            with self._read() as conn:
                small = int(conn.execute(count).scalar_one()) <= walk_after
            if small:
                mine = select(p.report_pk).where(
                    p.policy_domain.in_(select(h.domain).where(h.tenant_id == tenant_id))
                )
                if since is not None:
                    mine = mine.where(p.day >= day_floor(since))
                q = q.where(r.id.in_(mine))
            else:
                named = (
                    select(p.report_pk)
                    .join(hosted_domains, h.domain == p.policy_domain)
                    .where(p.report_pk == r.id, h.tenant_id == tenant_id)
                )
                q = q.where(named.exists())
        if since is not None:
            q = q.where(r.day >= day_floor(since))
        q = q.order_by(r.day.desc(), r.id.desc()).limit(max(1, min(limit, MAX_PAGE + 1)))
        q = q.offset(max(0, offset))
        with self._read() as conn:
            rows = conn.execute(q).all()
            domains: dict[int, list[str]] = {}
            pks = [row[0] for row in rows]
            for i in range(0, len(pks), CHUNK):
                dq = (
                    select(p.report_pk, p.policy_domain)
                    .where(p.report_pk.in_(pks[i : i + CHUNK]))
                    .order_by(p.report_pk, p.idx)
                )
                for pk, dom in conn.execute(dq):
                    if dom not in domains.setdefault(pk, []):
                        domains[pk].append(dom)
        return [
            ReportListing(
                pk, org, rid, start, end, tuple(domains.get(pk, ())), ok, bad, origin, received
            )
            for pk, org, rid, start, end, ok, bad, origin, received in rows
        ]

    def report_domains(self, pk: int) -> list[str]:
        """The policy domains one report names (for the tenant check on a report link)."""
        q = select(report_policies.c.policy_domain).where(report_policies.c.report_pk == pk)
        with self._read() as conn:
            return sorted({d for (d,) in conn.execute(q)})

    def owned(self, tenant_id: int, names: Sequence[str]) -> set[str]:
        """Which of ``names`` are the tenant's hosted domains (a report may name others')."""
        memo: dict[str, str] = {}
        wanted = sorted({_host(n, memo) for n in names})
        out: set[str] = set()
        h = hosted_domains.c
        with self._read() as conn:
            for i in range(0, len(wanted), CHUNK):
                q = select(h.domain).where(
                    h.tenant_id == tenant_id, h.domain.in_(wanted[i : i + CHUNK])
                )
                out.update(d for (d,) in conn.execute(q))
        return out


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
