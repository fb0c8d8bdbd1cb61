"""The dashboard's pages: inventory ``/``, a domain ``/domains/{domain}``, ``/domains/new``,
``/reports`` and ``/quarantine``; server-rendered, behind login, scoped to the user's tenant.

Mounted by ``create_app`` through ``router``. Each page reads one bounded page of data
(``store.dashboard``); rollout verdicts come from the pure core (``assess_rollout``) over the
latest stored check and the report aggregates, never from a live probe.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import RedirectResponse, Response

from stspilot.errors import StspilotError
from stspilot.store.accounts import Conflict, User
from stspilot.store.dashboard import DashboardReads, Headline, channel
from stspilot.store.hosting import HostedDomain
from stspilot.sts.names import fold_name
from stspilot.web import charts
from stspilot.web import inventory as inv
from stspilot.web.auth import context, require_page_user
from stspilot.web.domain_view import (
    WINDOW_DAYS,
    domain_values,
    hosting_start,
)
from stspilot.web.hosting import sync_after_change
from stspilot.web.proof import hosting_proof_missing

PageUser = Annotated[User, Depends(require_page_user)]
PER_PAGE = 50

router = APIRouter(include_in_schema=False)


# --- helpers -----------------------------------------------------------------------------------


def _render(
    request: Request, user: User, name: str, values: dict[str, Any], status: int = 200
) -> Response:
    templates = request.app.state.templates
    response: Response = templates.TemplateResponse(
        request, name, {"user": user, **values}, status_code=status
    )
    return response


def _message(request: Request, user: User, status: int, title: str, text: str) -> Response:
    return _render(request, user, "message.html", {"title": title, "text": text}, status)


def _reads(request: Request) -> DashboardReads:
    return DashboardReads(context(request).store)


def _name(text: str) -> str:
    """A domain from a URL, normalised; a malformed one stays as typed (then found nowhere)."""
    return fold_name(text)[:253]


def _tenant_scope(user: User) -> int | None:
    return None if user.is_admin else user.tenant_id


def _pages(total: int, page: int, per: int) -> dict[str, int]:
    last = max(1, -(-total // per))
    return {"page": min(page, last), "last": last, "total": total, "per": per}


# --- inventory ---------------------------------------------------------------------------------
@router.get("/", name="inventory")
def inventory(
    request: Request,
    user: PageUser,
    q: Annotated[str, Query(max_length=253)] = "",
    stage: Annotated[str, Query(max_length=20)] = "",
    severity: Annotated[str, Query(max_length=20)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per: Annotated[int, Query(ge=10, le=200)] = PER_PAGE,
    sort: Annotated[str, Query(max_length=20)] = "domain",
    order: Annotated[str, Query(max_length=4)] = "asc",
) -> Response:
    from stspilot.store.dashboard import SEVERITY_FILTERS, STAGE_FILTERS
    from stspilot.store.monitor import MonitorStore

    ctx = context(request)
    reads = _reads(request)
    now = ctx.clock()
    f = inv.filters(q, stage, severity, sort, order)
    if f.sort == "domain" and not f.descending:  # the store's order: read one page
        listing = reads.inventory(
            _tenant_scope(user), search=f.q, stage=f.stage, severity=f.severity,
            limit=per, offset=(page - 1) * per,
        )  # fmt: skip
        lines = inv.make_lines(request, user, listing.rows, now)
        alerts = MonitorStore(ctx.store).open_alert_counts([r.domain for r in listing.rows])
        total = listing.total
    else:  # the whole filtered inventory in that order, then the page
        lines, alerts, total = inv.sorted_page(request, user, f, now, page, per)
    headline = _headline(request, reads, _tenant_scope(user), now)
    filters = {"q": f.q, "stage": f.stage, "severity": f.severity, "per": str(per)}
    query = urlencode({k: v for k, v in filters.items() if v})
    ordered = f"sort={f.sort}&order={'desc' if f.descending else 'asc'}"
    return _render(
        request,
        user,
        "inventory.html",
        {
            "lines": lines,
            "alerts": alerts,
            "q": f.q,
            "stage": f.stage,
            "severity": f.severity,
            "sort": f.sort,
            "descending": f.descending,
            "stage_filters": STAGE_FILTERS,
            "severity_filters": SEVERITY_FILTERS,
            "query": query,
            "sorted_query": f"{query}&{ordered}" if query else ordered,
            "headline": headline,
            "stages": sorted(headline.by_stage.items(), key=lambda kv: inv.stage_rank(kv[0])),
            "pager": _pages(total, page, per),
            "window_days": WINDOW_DAYS,
            "now": now,
        },
    )


@router.get("/domains.csv", name="inventory_csv")
def inventory_csv(
    request: Request,
    user: PageUser,
    q: Annotated[str, Query(max_length=253)] = "",
    stage: Annotated[str, Query(max_length=20)] = "",
    severity: Annotated[str, Query(max_length=20)] = "",
    sort: Annotated[str, Query(max_length=20)] = "domain",
    order: Annotated[str, Query(max_length=4)] = "asc",
) -> Response:
    """The whole filtered inventory as CSV, in the order asked for (not just one page)."""
    import csv
    import io

    f = inv.filters(q, stage, severity, sort, order)
    lines, alerts = inv.sorted_inventory(request, user, f, context(request).clock())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(inv.CSV_COLUMNS)
    for line in lines:
        writer.writerow([inv.csv_field(v) for v in inv.csv_row(line, alerts)])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="stspilot-domains.csv"'},
    )


HEADLINE_TTL = timedelta(seconds=30)


def _headline(
    request: Request, reads: DashboardReads, tenant: int | None, now: datetime
) -> Headline:
    """The inventory's headline figures, at most ``HEADLINE_TTL`` old: they count over every
    domain of the tenant (~8 ms for 5,000 on SQLite), which paging through the inventory
    need not pay on every page. Kept per app (replica) and tenant."""
    cache: dict[int | None, tuple[datetime, Headline]] | None = getattr(
        request.app.state, "inventory_headlines", None
    )
    if cache is None:
        cache = request.app.state.inventory_headlines = {}
    hit = cache.get(tenant)
    if hit is not None and timedelta(0) <= now - hit[0] < HEADLINE_TTL:
        return hit[1]
    figures = reads.headline(tenant)
    cache[tenant] = (now, figures)
    return figures


# --- adding a domain ---------------------------------------------------------------------------


def _form_values(form: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("domain", "mode", "mx", "max_age", "tenant"):
        value = form.get(name, "")
        out[name] = value[:4096] if isinstance(value, str) else ""
    return out


@router.get("/domains/new", name="domain_new")
def domain_new(request: Request, user: PageUser) -> Response:
    return _render(request, user, "domain_new.html", {"form": {"mode": "testing"}, "error": ""})


@router.post("/domains/new")
async def domain_create(request: Request, user: PageUser) -> Response:
    """Host a new domain's policy; ``require_page_user`` has checked the CSRF token."""
    ctx = context(request)
    form = await request.form(max_files=0, max_fields=10)
    values = _form_values(form)
    mx = [m for m in values["mx"].replace(",", " ").split() if m]
    try:
        max_age = int(values["max_age"]) if values["max_age"].strip() else None
    except ValueError:
        return _render(
            request, user, "domain_new.html",
            {"form": values, "error": "max_age must be a number of seconds"}, 400,
        )  # fmt: skip
    tenant_id = user.tenant_id
    try:
        if values["tenant"].strip() and values["tenant"].strip() != user.tenant:
            if not user.is_admin:
                raise Conflict("only administrators add domains for another tenant")
            tenant = await asyncio.to_thread(ctx.accounts.tenant, values["tenant"].strip())
            tenant_id = tenant.id
        if missing := await hosting_proof_missing(ctx, user, values["domain"], tenant_id):
            return _render(
                request, user, "domain_new.html", {"form": values, "error": missing}, 202
            )
        hosted = await asyncio.to_thread(
            lambda: ctx.hosting.add(
                values["domain"],
                tenant_id=tenant_id,
                mode=values["mode"] or "testing",
                mx=mx,
                max_age=max_age,
                now=ctx.clock(),
                actor=user.name,
            )
        )
    except StspilotError as exc:
        status = 409 if isinstance(exc, Conflict) else 400
        return _render(
            request, user, "domain_new.html", {"form": values, "error": str(exc)}, status
        )
    ctx.policy_cache.invalidate()
    await asyncio.to_thread(sync_after_change, request.app, hosted, actor=f"{user.name} (web)")
    request.app.state.inventory_headlines = {}  # a new domain counts at once
    return RedirectResponse(request.url_for("domain", domain=hosted.domain).path, 303)


# --- one domain --------------------------------------------------------------------------------


def _visible_domain(request: Request, user: User, name: str) -> tuple[bool, HostedDomain | None]:
    """(may see, hosted): a tenant's own hosted domain, or for admins any domain with data."""
    hosted = context(request).hosting.get(name)  # not a name: nobody hosts it
    if hosted is not None and user.may_see(hosted.tenant_id):
        return True, hosted
    if user.is_admin:
        return _reads(request).has_data(name), hosted
    return False, None


@router.get("/domains/{domain}", name="domain")
def domain_page(
    request: Request,
    user: PageUser,
    domain: str,
    days: Annotated[int, Query(ge=1, le=charts.MAX_DAYS)] = 30,
) -> Response:
    ctx = context(request)
    name = _name(domain)
    allowed, hosted = _visible_domain(request, user, name)
    if not allowed:  # another tenant's domain is answered like an unknown one
        return _message(request, user, 404, "Not found", f"{name} is not one of your domains.")
    values = domain_values(
        ctx, _reads(request), name, hosted, days=days, received_since=hosting_start(user, hosted)
    )
    return _render(request, user, "domain.html", values)


# --- the API's description ---------------------------------------------------------------------


@router.get("/docs", name="docs")
def docs_page(request: Request, user: PageUser) -> Response:
    """Swagger UI over ``/api/openapi.json``, from the app's own assets (``web/docs.py``)."""
    return _render(request, user, "docs.html", {"openapi_version": request.app.openapi_version})


# --- reports and quarantine --------------------------------------------------------------------


@router.get("/reports", name="reports")
def reports_page(
    request: Request,
    user: PageUser,
    domain: Annotated[str, Query(max_length=253)] = "",
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
    page: Annotated[int, Query(ge=1, le=20_000)] = 1,
) -> Response:
    ctx = context(request)
    reads = _reads(request)
    name = _name(domain) if domain.strip() else None
    start = None
    if name is not None:
        allowed, hosted_domain = _visible_domain(request, user, name)
        if not allowed:
            return _message(request, user, 404, "Not found", f"{name} is not one of your domains.")
        start = hosting_start(user, hosted_domain)
    since = ctx.clock() - timedelta(days=days)
    tenant = _tenant_scope(user)
    rows = reads.list_reports(
        tenant_id=tenant,
        domain=name,
        since=since,
        limit=PER_PAGE + 1,
        offset=(page - 1) * PER_PAGE,
        # A tenant sees only its own policies' sessions of a report that also covers other
        # tenants' domains (the API does the same).
        scoped=tenant is not None,
        # Only the reports of the tenant's hosting period of each domain (the API's rule).
        received_since=start,
        hosting_periods=tenant is not None,
    )
    more = len(rows) > PER_PAGE
    rows = rows[:PER_PAGE]
    named = [d for r in rows for d in r.policy_domains]
    hosted = reads.hosted(named, tenant_id=_tenant_scope(user))
    if not user.is_admin:  # a consolidated report may also name other tenants' domains
        shown = {r.pk: [d for d in r.policy_domains if d in hosted] for r in rows}
    else:  # every domain, linked only when hosted here (no link to a "not hosted" page)
        shown = {r.pk: list(r.policy_domains) for r in rows}
    return _render(
        request,
        user,
        "reports.html",
        {
            "rows": rows,
            "shown": shown,
            "hosted": hosted,
            "channels": {r.pk: channel(r.origin) for r in rows},
            "domain": name or "",
            "days": days,
            "page": page,
            "more": more,
        },
    )


@router.get("/quarantine", name="quarantine")
def quarantine_page(
    request: Request,
    user: PageUser,
    page: Annotated[int, Query(ge=1, le=20_000)] = 1,
    resolved: bool = False,
) -> Response:
    # Quarantined bytes could not be read, so nobody knows whose domain they concern: they
    # are the operator's (admins') to look at, never another tenant's to read.
    if not user.is_admin:
        return _message(
            request, user, 403, "Administrators only",
            "The quarantine holds unreadable reports of every tenant; ask your operator.",
        )  # fmt: skip
    items = context(request).store.list_quarantine(
        include_resolved=resolved, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE
    )
    return _render(
        request,
        user,
        "quarantine.html",
        {
            "items": items[:PER_PAGE],
            "more": len(items) > PER_PAGE,
            "page": page,
            "resolved": resolved,
        },
    )
