"""Reading stored rows back into values: a report rebuilt into the model, a check record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, and_, func, select

from stspilot.store.batch import CHUNK
from stspilot.store.models import CheckRecord, ReportListing, StoredReport
from stspilot.store.queries import day_ceiling, day_floor, session_sum
from stspilot.store.schema import failure_details, report_policies, reports
from stspilot.sts.names import fold_name
from stspilot.tlsrpt.reports import Deviation, FailureDetail, PolicyResult, TlsReport


def load_report(conn: Connection, pk: int) -> StoredReport | None:
    """A stored report rebuilt into the model, with its audit metadata."""
    row = conn.execute(select(reports).where(reports.c.id == pk)).mappings().first()
    if row is None:
        return None
    pols = (
        conn.execute(
            select(report_policies)
            .where(report_policies.c.report_pk == pk)
            .order_by(report_policies.c.idx)
        )
        .mappings()
        .all()
    )
    dets = (
        conn.execute(
            select(failure_details)
            .where(failure_details.c.report_pk == pk)
            .order_by(failure_details.c.policy_idx, failure_details.c.idx)
        )
        .mappings()
        .all()
    )
    by_policy: dict[int, list[FailureDetail]] = {}
    for d in dets:
        by_policy.setdefault(d["policy_idx"], []).append(
            FailureDetail(
                result_type=d["result_type"],
                failed_session_count=d["failed_session_count"],
                sending_mta_ip=d["sending_mta_ip"],
                receiving_mx_hostname=d["receiving_mx_hostname"],
                receiving_mx_helo=d["receiving_mx_helo"],
                receiving_ip=d["receiving_ip"],
                additional_information=d["additional_information"],
                failure_reason_code=d["failure_reason_code"],
            )
        )
    policies = tuple(
        PolicyResult(
            policy_type=p["policy_type"],
            policy_domain=p["policy_domain"],
            policy_string=tuple(p["policy_string"]),
            mx_host=tuple(p["mx_host"]),
            successful_sessions=p["successful_sessions"],
            failed_sessions=p["failed_sessions"],
            failure_details=tuple(by_policy.get(p["idx"], ())),
        )
        for p in pols
    )
    deviations = tuple(Deviation(**d) for d in row["deviations"])
    report = TlsReport(
        organization_name=row["organization_name"],
        report_id=row["report_id"],
        start=row["start_at"],
        end=row["end_at"],
        contact_info=row["contact_info"],
        policies=policies,
    )
    return StoredReport(
        pk=pk,
        report=report,
        raw_sha256=row["raw_sha256"],
        origin=row["origin"],
        received_at=row["received_at"],
        stored_at=row["stored_at"],
        envelope=row["envelope"],
        deviations=deviations,
    )


# Up to this many hosted domains a tenant's report listing goes domain by domain; past it, it
# walks ``reports`` newest first (``list_reports``).
SMALL_TENANT = 100


def list_reports(
    conn: Connection,
    *,
    domain: str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    tenant_id: int | None = None,
    walk_after: int = SMALL_TENANT,
    scoped: bool = False,
    received_since: datetime | None = None,
    hosting_periods: bool = False,
) -> list[ReportListing]:
    """Reports newest day first: every report, or those naming one of a tenant's hosted
    domains (``tenant_id``), optionally one policy domain and a day window. The one listing
    behind the CLI, the API and the dashboard (``Store.list_reports``). A tenant of more than
    ``walk_after`` hosted domains is listed by walking ``reports``.

    ``scoped`` (with ``domain`` or ``tenant_id``): each listing names only that domain (or the
    tenant's hosted domains) and counts only their policies' sessions (a tenant's view of a
    report that covers other tenants' domains too);
    ``received_since``: only reports received from then on (a tenant's hosting period of
    ``domain``); ``hosting_periods`` (with ``tenant_id``): each of the tenant's domains has
    its own, so a report counts for a domain only when it was received since the tenant
    began hosting that domain (``hosted_domains.created_at``), in what is listed, named and
    (``scoped``) summed."""
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
        r.authenticity,  # stored at ingest (store.rows.authenticity)
    )
    # Here, not at import: the hosting tables bring the accounts and the MTA-STS policy
    # checks along (~0.1 s of CPU that ingest and the other report commands do not need).
    from stspilot.store.hosting import hosted_domains

    h = hosted_domains.c
    # The tenant's domains whose hosting period covers the listed report (outer ``r``).
    hosts = h.tenant_id == tenant_id
    if hosting_periods and tenant_id is not None:
        hosts = and_(hosts, h.created_at <= r.received_at)
    if domain is not None:
        # One domain: its report_policies rows through (policy_domain, day), then reports.
        mine = select(p.report_pk).where(p.policy_domain == fold_name(domain))
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
                .where(p.report_pk == r.id, hosts)
            )
            q = q.where(named.exists())
        if hosting_periods and small:
            # A report is the tenant's only if one of its domains was hosted when it came.
            named = (
                select(p.report_pk)
                .join(hosted_domains, h.domain == p.policy_domain)
                .where(p.report_pk == r.id, hosts)
            )
            q = q.where(named.exists())
    if received_since is not None:  # a tenant's hosting period (web/api.py)
        q = q.where(r.received_at >= received_since)
    if since is not None:
        q = q.where(r.day >= day_floor(since))
    if until is not None:
        q = q.where(r.day < day_ceiling(until))
    q = q.order_by(r.day.desc(), r.id.desc()).limit(max(1, limit)).offset(max(0, offset))
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
    own: dict[int, tuple[int, int]] = {}
    if scoped and (domain is not None or tenant_id is not None):
        # Only the caller's policies: one domain, or every domain the tenant hosts.
        if domain is not None:
            mine_q: Any = p.policy_domain == fold_name(domain)
        else:
            # The tenant's domains, each only for the reports of its hosting period.
            mine_q = (
                select(h.domain)
                .where(h.domain == p.policy_domain, hosts)
                .correlate(report_policies, reports)
                .exists()
            )
        named_own: dict[int, list[str]] = {}
        for i in range(0, len(pks), CHUNK):
            sq = (
                select(
                    p.report_pk,
                    p.policy_domain,
                    session_sum(p.successful_sessions),
                    session_sum(p.failed_sessions),
                )
                .join(reports, r.id == p.report_pk)
                .where(p.report_pk.in_(pks[i : i + CHUNK]), mine_q)
                .group_by(p.report_pk, p.policy_domain)
                .order_by(p.report_pk, p.policy_domain)
            )
            for pk, dom, ok, bad in conn.execute(sq):
                was = own.get(pk, (0, 0))
                own[pk] = (was[0] + int(ok or 0), was[1] + int(bad or 0))
                named_own.setdefault(pk, []).append(dom)
        domains = {pk: named_own.get(pk, []) for pk in pks}
    out = []
    for pk, org, rid, start, end, ok, bad, origin, received, auth in rows:
        ok, bad = own.get(pk, (ok, bad))
        names = tuple(domains.get(pk, ()))
        out.append(ReportListing(pk, org, rid, start, end, names, ok, bad, origin, received, auth))
    return out


def check_record(row: RowMapping | Mapping[str, Any]) -> CheckRecord:
    return CheckRecord(
        id=row["id"],
        domain=row["domain"],
        observed_at=row["observed_at"],
        stage=row["stage"],
        mode=row["mode"],
        worst_severity=row["worst_severity"],
        findings_count=row["findings_count"],
        policy_id=row["policy_id"],
        policy_sha256=row["policy_sha256"],
        mx_set=tuple(row["mx_set"]),
        result=row["result"],
    )
