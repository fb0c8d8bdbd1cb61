"""The JSON API (``/api``): hosted domains and their policies, MX sync, decommission, checks,
reports, summaries and rollout, with an OpenAPI description (tokens, tenants and users:
``web/api_accounts.py``).

Every route needs a user (``require_user``); a user sees only its tenant's domains, admins see
all. A domain of another tenant is answered exactly like an unknown one (404), so names do not
leak across tenants.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from stspilot.errors import ConfigError
from stspilot.store.accounts import Conflict, NotFound, User
from stspilot.store.checks import rollout_inputs, save_check
from stspilot.store.hosting import DECOMMISSIONING, HostedDomain, MxSync, PolicyVersion
from stspilot.store.models import CheckRecord
from stspilot.sts.names import domain_name, fold_name
from stspilot.tlsrpt.reports import Deviation, TlsReport, as_dict
from stspilot.web.api_models import (
    AlertOut,
    CheckDetail,
    CheckOut,
    DomainCreate,
    DomainOut,
    DomainPatch,
    Publish,
    ReportOut,
    SyncIn,
    SyncOut,
    UserOut,
    VersionOut,
)
from stspilot.web.auth import context, require_user
from stspilot.web.domain_view import hosting_start
from stspilot.web.hosting import delegation_record_pending, publish_info, sync_after_change

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult

CurrentUser = Annotated[User, Depends(require_user)]

# --- conversions -------------------------------------------------------------------------------


def _domain_out(request: Request, h: HostedDomain) -> DomainOut:
    info = publish_info(h, context(request).settings)
    return DomainOut(
        domain=h.domain,
        tenant=h.tenant,
        mode=h.mode,
        mx=list(h.mx),
        max_age=h.max_age,
        policy_id=h.policy_id,
        version=h.version,
        policy=h.policy_text,
        crlf=h.crlf,
        auto_sync_mx=h.auto_sync_mx,
        state=h.state,
        remove_after=h.remove_after,
        pending_mx=None if h.pending_mx is None else list(h.pending_mx),
        created_at=h.created_at,
        updated_at=h.updated_at,
        publish=Publish(**info),
    )


def _version_out(v: PolicyVersion) -> VersionOut:
    return VersionOut(
        version=v.version,
        policy_id=v.policy_id,
        mode=v.mode,
        mx=list(v.mx),
        max_age=v.max_age,
        policy=v.policy_text,
        reason=v.reason,
        actor=v.actor,
        created_at=v.created_at,
    )


def _check_out(c: CheckRecord) -> CheckOut:
    return CheckOut(
        id=c.id,
        domain=c.domain,
        observed_at=c.observed_at,
        stage=c.stage,
        mode=c.mode,
        worst_severity=c.worst_severity,
        findings_count=c.findings_count,
        policy_id=c.policy_id,
        mx_set=list(c.mx_set),
    )


def _visible(request: Request, user: User, domain: str) -> HostedDomain:
    hosted = context(request).hosting.get(domain)
    if hosted is None or not user.may_see(hosted.tenant_id):
        raise NotFound(f"{domain!r} is not a hosted domain")
    return hosted


def _readable_domain(request: Request, user: User, domain: str) -> str:
    """Reports and checks: admins read any domain, others only their tenant's hosted ones."""
    name = domain_name(domain)
    if not user.is_admin:
        _visible(request, user, name)
    return name


def _hosting_start(request: Request, user: User, domain: str) -> datetime | None:
    """When this tenant's hosting of ``domain`` began (``domain_view.hosting_start``)."""
    return hosting_start(user, context(request).hosting.get(domain))


def _changed(
    request: Request, hosted: HostedDomain | None = None, user: User | None = None
) -> None:
    """After a change: the policy cache forgets; a changed policy's TXT record in the
    delegation zone follows when a provider is configured for it (``web/hosting.py``)."""
    context(request).policy_cache.invalidate()
    if hosted is not None and user is not None:
        sync_after_change(request.app, hosted, actor=f"{user.name} (web)")


# --- routes ------------------------------------------------------------------------------------

router = APIRouter(prefix="/api", tags=["api"])


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return UserOut(
        name=user.name,
        tenant=user.tenant,
        is_admin=user.is_admin,
        disabled=user.disabled,
        created_at=user.created_at,
        tenant_admin=user.tenant_admin,
    )


@router.get("/domains", response_model=list[DomainOut])
def list_domains(request: Request, user: CurrentUser) -> list[DomainOut]:
    hosting = context(request).hosting
    hosted = hosting.list_domains(None if user.is_admin else user.tenant_id)
    return [_domain_out(request, h) for h in hosted]


@router.post(
    "/domains",
    response_model=DomainOut,
    status_code=201,
    responses={202: {"description": "proof of control required: publish the record shown"}},
)
async def add_domain(
    request: Request, user: CurrentUser, body: DomainCreate
) -> DomainOut | JSONResponse:
    """Host a domain's policy. A tenant user's name is served only once its DNS proves
    control (``web/proof.py``): until then the answer is 202 with the TXT record to publish,
    whether the name is free or hosted by another tenant; POST again once it is published."""
    from stspilot.store.hosting import check_domain_name
    from stspilot.web.proof import challenge, hosting_proof_missing

    ctx = context(request)
    tenant_id = user.tenant_id
    if body.tenant is not None and body.tenant != user.tenant:
        if not user.is_admin:
            raise NotFound(f"no tenant {body.tenant!r}")
        tenant_id = (await asyncio.to_thread(ctx.accounts.tenant, body.tenant)).id
    name = check_domain_name(body.domain)
    if await hosting_proof_missing(ctx, user, name, tenant_id):
        return _proof_required(name, challenge(ctx.settings, tenant_id, name))
    hosted = await asyncio.to_thread(
        lambda: ctx.hosting.add(
            name,
            tenant_id=tenant_id,
            mode=body.mode,
            mx=body.mx,
            max_age=body.max_age,
            crlf=body.crlf,
            auto_sync_mx=body.auto_sync_mx,
            now=ctx.clock(),
            actor=user.name,
        )
    )
    await asyncio.to_thread(_changed, request, hosted, user)
    return _domain_out(request, hosted)


def _proof_required(name: str, wanted: Any) -> JSONResponse:
    return JSONResponse(
        {
            "status": "proof-required",
            "domain": name,
            "detail": (
                f"publish this TXT record to prove you control {name}, then send the same "
                "request again; nothing is served for the name until then"
            ),
            "record": wanted.to_dict(),
        },
        status_code=202,
    )


@router.get("/domains/{domain}", response_model=DomainOut)
def get_domain(request: Request, user: CurrentUser, domain: str) -> DomainOut:
    return _domain_out(request, _visible(request, user, domain))


@router.patch("/domains/{domain}", response_model=DomainOut)
def edit_domain(request: Request, user: CurrentUser, domain: str, body: DomainPatch) -> DomainOut:
    ctx = context(request)
    hosted = _visible(request, user, domain)
    updated = ctx.hosting.update(
        hosted.domain,
        now=ctx.clock(),
        mode=body.mode,
        mx=body.mx,
        max_age=body.max_age,
        crlf=body.crlf,
        auto_sync_mx=body.auto_sync_mx,
        actor=user.name,
    )
    _changed(request, updated if updated.policy_id != hosted.policy_id else None, user)
    return _domain_out(request, updated)


@router.get("/domains/{domain}/history", response_model=list[VersionOut])
def domain_history(request: Request, user: CurrentUser, domain: str) -> list[VersionOut]:
    hosted = _visible(request, user, domain)
    return [_version_out(v) for v in context(request).hosting.history(hosted.domain)]


@router.get("/domains/{domain}/publish", response_model=Publish)
def domain_publish(request: Request, user: CurrentUser, domain: str) -> Publish:
    hosted = _visible(request, user, domain)
    return Publish(**publish_info(hosted, context(request).settings))


def _sync_out(request: Request, sync: MxSync) -> SyncOut:
    steps: list[str] = []
    if sync.changed and sync.applied:
        h = sync.hosted
        # RFC 8461 §8.1-8.2: policy first (done: it is served), then the new TXT id.
        steps = [
            f"1. The policy with {', '.join(sync.proposed)} is served now (id {h.policy_id}).",
            f'2. Publish _mta-sts.{h.domain} TXT "{h.sts_txt_value}".',
        ]
    elif sync.changed:
        steps = [f"Review and apply: POST /api/domains/{sync.domain}/sync-mx/apply"]
    return SyncOut(
        domain=sync.domain,
        live_mx=list(sync.live_mx),
        current=list(sync.current),
        proposed=list(sync.proposed),
        added=list(sync.added),
        removed=list(sync.removed),
        changed=sync.changed,
        applied=sync.applied,
        steps=steps,
        hosted=_domain_out(request, sync.hosted),
    )


@router.post("/domains/{domain}/sync-mx", response_model=SyncOut)
def sync_mx(request: Request, user: CurrentUser, domain: str, body: SyncIn) -> SyncOut:
    ctx = context(request)
    hosted = _visible(request, user, domain)
    live = body.live_mx
    if live is None:
        latest = ctx.store.latest_check(hosted.domain)
        if latest is None or not latest.mx_set:
            raise Conflict(f"no stored check of {hosted.domain} with MX hosts: give live_mx")
        live = list(latest.mx_set)
    result = ctx.hosting.sync_mx(
        hosted.domain, live, now=ctx.clock(), apply=body.apply, actor=user.name
    )
    if result.applied:
        _changed(request, result.hosted if result.changed else None, user)
    return _sync_out(request, result)


@router.post("/domains/{domain}/sync-mx/apply", response_model=DomainOut)
def apply_sync(request: Request, user: CurrentUser, domain: str) -> DomainOut:
    ctx = context(request)
    hosted = _visible(request, user, domain)
    updated = ctx.hosting.apply_pending_mx(hosted.domain, now=ctx.clock(), actor=user.name)
    _changed(request, updated if updated.policy_id != hosted.policy_id else None, user)
    return _domain_out(request, updated)


@router.post("/domains/{domain}/decommission", response_model=DomainOut)
def decommission(request: Request, user: CurrentUser, domain: str) -> DomainOut:
    ctx = context(request)
    hosted = _visible(request, user, domain)
    updated = ctx.hosting.decommission(hosted.domain, now=ctx.clock(), actor=user.name)
    _changed(request, updated if updated.policy_id != hosted.policy_id else None, user)
    return _domain_out(request, updated)


@router.delete("/domains/{domain}", status_code=204)
def remove_domain(request: Request, user: CurrentUser, domain: str) -> None:
    ctx = context(request)
    hosted = _visible(request, user, domain)
    now = ctx.clock()
    if hosted.state == DECOMMISSIONING and hosted.remove_after and now >= hosted.remove_after:
        # The delegation zone's TXT record goes before the policy (never an orphan).
        run = delegation_record_pending(request.app, hosted, actor=f"{user.name} (web)")
        if run is not None:
            raise Conflict(
                f"the TXT record of {hosted.domain} in the delegation zone is removed first "
                f"(journal run {run}); delete again once that run is done"
            )
    ctx.hosting.remove(hosted.domain, now=now)
    _changed(request)


# --- checks, reports, summaries, rollout -------------------------------------------------------


@router.get("/domains/{domain}/checks", response_model=list[CheckOut])
def list_checks(
    request: Request,
    user: CurrentUser,
    domain: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CheckOut]:
    name = _readable_domain(request, user, domain)
    history = context(request).store.check_history(name, limit=limit)
    return [_check_out(c) for c in reversed(history)]


@router.post("/domains/{domain}/check", response_model=CheckDetail)
async def check_now(request: Request, user: CurrentUser, domain: str) -> CheckDetail:
    """Run a live check of the domain now and store it (what the monitor does on schedule)."""
    import asyncio

    from stspilot.check.run import CheckOptions, check_domains

    ctx = context(request)
    name = domain_name(domain)
    if not user.is_admin:
        await asyncio.to_thread(_visible, request, user, name)
    options = ctx.settings.check_options or CheckOptions(allow_private=False)
    async with request.app.state.check_slots:
        (result,) = await check_domains([name], options=options)
    pk = await asyncio.to_thread(_save_check, request, result)
    stored = await asyncio.to_thread(ctx.store.latest_check, name)
    if stored is None or stored.id != pk:  # a concurrent check landed in between: show ours
        stored = await asyncio.to_thread(ctx.store.get_check, pk)
        if stored is None:  # thinned or deleted in the meantime: not ours to show any more
            raise NotFound(f"check {pk} of {name} is gone")
    return CheckDetail(**_check_out(stored).model_dump(), result=dict(stored.result))


def _save_check(request: Request, result: CheckResult) -> int:
    return save_check(context(request).store, result)


@router.get("/domains/{domain}/alerts", response_model=list[AlertOut])
def list_alerts(request: Request, user: CurrentUser, domain: str) -> list[AlertOut]:
    """The monitor's open alerts of ``domain``: errors first, newest first."""
    from stspilot.store.monitor import MonitorStore

    name = _readable_domain(request, user, domain)
    rows = MonitorStore(context(request).store).open_alerts(name)
    return [AlertOut.model_validate(row) for row in rows]


@router.get("/domains/{domain}/checks/latest", response_model=CheckDetail)
def latest_check(request: Request, user: CurrentUser, domain: str) -> CheckDetail:
    name = _readable_domain(request, user, domain)
    latest = context(request).store.latest_check(name)
    if latest is None:
        raise NotFound(f"no stored check of {name}")
    return CheckDetail(**_check_out(latest).model_dump(), result=dict(latest.result))


def _window(days: int, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(days=days), now


@router.get("/domains/{domain}/reports", response_model=list[ReportOut])
def list_reports(
    request: Request,
    user: CurrentUser,
    domain: str,
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ReportOut]:
    ctx = context(request)
    name = _readable_domain(request, user, domain)
    since, until = _window(days, ctx.clock())
    rows = ctx.store.list_reports(
        name,
        since,
        until,
        limit=limit,
        offset=offset,
        scoped=not user.is_admin,
        received_since=_hosting_start(request, user, name),
    )
    return [
        ReportOut(
            id=r.pk,
            organization_name=r.organization_name,
            report_id=r.report_id,
            start=r.start,
            end=r.end,
            policy_domains=list(r.policy_domains),
            successful_sessions=r.successful_sessions,
            failed_sessions=r.failed_sessions,
            origin=r.origin,
            received_at=r.received_at,
            authenticity=r.authenticity,
        )
        for r in rows
    ]


@router.get("/reports/{report_id}", response_model=dict[str, Any])
def get_report(request: Request, user: CurrentUser, report_id: int) -> dict[str, Any]:
    ctx = context(request)
    stored = ctx.store.get_report(report_id) if 0 < report_id < 2**63 else None
    if stored is None:
        raise NotFound(f"no report {report_id}")
    domains = {fold_name(p.policy_domain) for p in stored.report.policies}
    report, deviations = stored.report, stored.deviations
    if not user.is_admin:
        # Only reports received while this tenant hosted the domain: neither an earlier
        # tenant's nor those posted before anyone hosted it.
        mine = {
            h.domain
            for h in ctx.hosting.list_domains(user.tenant_id)
            if stored.received_at >= h.created_at
        }
        if not domains & mine:
            raise NotFound(f"no report {report_id}")
        # A report covering several tenants' domains: only this tenant's policies' parts
        # (another's MX hosts, addresses and notes are not theirs to read).
        report, deviations = own_parts(report, deviations, mine)
    encoded: dict[str, Any] = jsonable_encoder(
        {
            "id": stored.pk,
            "origin": stored.origin,
            "received_at": stored.received_at,
            "report": as_dict(report),
            "deviations": as_dict(deviations),
        }
    )
    return encoded


def own_parts(
    report: TlsReport, deviations: tuple[Deviation, ...], mine: set[str]
) -> tuple[TlsReport, tuple[Deviation, ...]]:
    """The report with only the policies of ``mine``, and the deviations not about another's
    policy (paths ``/policies/<i>/...`` of a policy left out)."""
    kept = [i for i, p in enumerate(report.policies) if fold_name(p.policy_domain) in mine]
    if len(kept) == len(report.policies):
        return report, deviations
    dropped = {f"/policies/{i}" for i in range(len(report.policies)) if i not in kept}
    return (
        msgspec.structs.replace(report, policies=tuple(report.policies[i] for i in kept)),
        tuple(
            d
            for d in deviations
            if not any(d.path == x or d.path.startswith(x + "/") for x in dropped)
        ),
    )


@router.get("/domains/{domain}/summary", response_model=dict[str, Any])
def summary(
    request: Request,
    user: CurrentUser,
    domain: str,
    days: Annotated[int, Query(ge=1, le=3660)] = 14,
) -> dict[str, Any]:
    from stspilot.tlsrpt.export import summary_to_json
    from stspilot.tlsrpt.summary import summarize

    ctx = context(request)
    name = _readable_domain(request, user, domain)
    since, until = _window(days, ctx.clock())
    aggregates = ctx.store.report_aggregates(
        name, since=since, until=until, received_since=_hosting_start(request, user, name)
    )
    return summary_to_json(summarize(aggregates))


@router.get("/domains/{domain}/rollout", response_model=dict[str, Any])
def rollout(
    request: Request,
    user: CurrentUser,
    domain: str,
    days: Annotated[int, Query(ge=1, le=366)] = 14,
    gate_days: Annotated[int, Query(ge=1, le=366)] = 7,
) -> dict[str, Any]:
    """The rollout assessment from the latest stored check (no live probe) and the reports."""
    from stspilot.rollout.assess import assess_rollout
    from stspilot.rollout.render import rollout_to_json

    if gate_days > days:
        raise ConfigError("gate_days cannot be longer than days")
    ctx = context(request)
    name = _readable_domain(request, user, domain)
    now = ctx.clock()
    inputs = rollout_inputs(
        ctx.store, name, now, days=days, received_since=_hosting_start(request, user, name)
    )
    if inputs is None:
        raise NotFound(f"no stored check of {name}: run `stspilot check` or the monitor first")
    assessment = assess_rollout(inputs, now=now, window_days=days, gate_days=gate_days)
    return rollout_to_json(assessment)
