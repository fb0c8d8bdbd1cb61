"""Publishing from the web: the journal, the plan of an action and its confirmation, in the JSON
API (``/api/domains/{domain}/journal``, ``.../publish/plan``, ``.../publish/runs``) and on the
dashboard (``/domains/{domain}/publish``: the plan with its confirm form; ``.../runs/{id}``:
a run's progress, read from the journal).

Who may do what: anyone who sees a domain sees its journal and plans; carrying one out takes an
administrator, or a tenant administrator of the domain's tenant (``may_act``), and never a
``read`` token (``auth.current_user`` refuses its POSTs). Another tenant's domain is answered
exactly like an unknown one (404). What the actions do: ``web/publish_actions.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.responses import RedirectResponse, Response

from stspilot.errors import StspilotError
from stspilot.publish.plan import Step
from stspilot.publish.render import run_to_json
from stspilot.store.accounts import Conflict, NotFound, User
from stspilot.store.hosting import HostedDomain
from stspilot.store.journal import JournalRun, PublishJournal
from stspilot.web.api import CurrentUser, _readable_domain
from stspilot.web.api_models import (
    GateOut,
    PlanStepOut,
    PublishAction,
    PublishConfirm,
    PublishPlanOut,
    PublishRunOut,
    PublishStarted,
)
from stspilot.web.auth import context, require_page_user
from stspilot.web.publish_actions import (
    ActionPlan,
    StalePlan,
    confirm_action,
    may_act,
    plan_action,
)

router = APIRouter(tags=["publish"])
PageUser = Annotated[User, Depends(require_page_user)]


def step_title(target: Any) -> str:
    """A journal step in words (``set _mta-sts.example.com. TXT "v=STSv1; id=..."``)."""
    return Step.from_dict(target).title


def run_out(run: JournalRun) -> PublishRunOut:
    """The journal run as ``publish status --json`` shows it, each step with its title."""
    shown = run_to_json(run)
    for step, entry in zip(shown["steps"], run.steps, strict=True):
        step["title"] = step_title(entry.target)
    return PublishRunOut.model_validate(shown)


def plan_out(shown: ActionPlan, action: str) -> PublishPlanOut:
    gate = shown.gate
    return PublishPlanOut(
        domain=shown.domain,
        action=action,  # type: ignore[arg-type]  # checked by plan_action
        run_action=shown.action,
        planned_at=shown.planned_at,
        summary=shown.summary,
        steps=[
            PlanStepOut(
                kind=s.kind.value,
                title=s.title,
                name=s.name,
                value=s.value,
                seconds=s.seconds,
                until=s.until,
                note=s.note,
            )
            for s in shown.steps
        ],
        notes=list(shown.plan.notes) if shown.plan is not None else [],
        gate=None
        if gate is None
        else GateOut(
            stage=gate.stage,
            ready=gate.ready,
            failing=list(gate.failing),
            observed_at=gate.observed_at,
        ),
        refused=shown.refused or None,
        reason=shown.reason,
        dns=shown.dns,
        destination=shown.destination,
        resume_run=shown.resume_run,
        force_reason=shown.force_reason,
        digest=shown.digest,
    )


def _hosted(request: Request, name: str) -> HostedDomain | None:
    return context(request).hosting.get(name)


def _acting(request: Request, user: User, domain: str) -> tuple[str, HostedDomain | None]:
    """The domain, when ``user`` may carry out its plans: 404 when it may not even see it
    (another tenant's is unknown to it), 403 when it sees it but may not act."""
    name = _readable_domain(request, user, domain)
    hosted = _hosted(request, name)
    if not may_act(user, hosted):
        raise HTTPException(
            403, "publishing takes an administrator or a tenant administrator of the domain"
        )
    return name, hosted


# --- the JSON API ------------------------------------------------------------------------------


@router.get("/api/domains/{domain}/journal", response_model=list[PublishRunOut])
def publish_journal(
    request: Request,
    user: CurrentUser,
    domain: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[PublishRunOut]:
    """The domain's publish runs (``stspilot publish status``), newest first."""
    name = _readable_domain(request, user, domain)
    return [run_out(r) for r in PublishJournal(context(request).store).runs(name, limit=limit)]


@router.get("/api/domains/{domain}/journal/{run_id}", response_model=PublishRunOut)
def publish_run(request: Request, user: CurrentUser, domain: str, run_id: int) -> PublishRunOut:
    """One run with its steps: the progress of a run started from here."""
    name = _readable_domain(request, user, domain)
    return run_out(_run_of(request, name, run_id))


def _run_of(request: Request, name: str, run_id: int) -> JournalRun:
    found = None
    if 0 < run_id < 2**63:
        try:
            found = PublishJournal(context(request).store).get(run_id)
        except StspilotError:
            found = None
    if found is None or found.domain != name:
        raise NotFound(f"no publish run {run_id} of {name}")
    return found


@router.get("/api/domains/{domain}/publish/plan", response_model=PublishPlanOut)
async def publish_plan(
    request: Request,
    user: CurrentUser,
    domain: str,
    action: PublishAction = "next",
    force_reason: Annotated[str, Query(max_length=500)] = "",
) -> PublishPlanOut:
    """What ``action`` would do now, step by step (nothing is changed): made from the latest
    stored check and what is live in DNS. Confirm it with ``POST .../publish/runs``."""
    import asyncio

    ctx = context(request)
    name = await asyncio.to_thread(_readable_domain, request, user, domain)
    hosted = await asyncio.to_thread(_hosted, request, name)
    shown = await plan_action(
        ctx, name, hosted, action, user=user, planned_at=ctx.clock(), force_reason=force_reason
    )
    return plan_out(shown, action)


@router.post(
    "/api/domains/{domain}/publish/runs",
    response_model=PublishStarted,
    status_code=202,
    responses={
        403: {"description": "not an administrator of the domain, or a read token"},
        409: {
            "description": "the plan changed since it was shown (code stale-plan), the "
            "enforce gate fails without a reason to force (gate-refused), or nothing to do"
        },
    },
)
async def publish_confirm(
    request: Request, user: CurrentUser, domain: str, body: PublishConfirm
) -> PublishStarted:
    """Carry out the plan shown by ``.../publish/plan``: it is made again and must have the
    same digest. The run is journaled before this returns and carried out in the background;
    its progress is the journal (``.../journal/{run_id}``)."""
    import asyncio

    ctx = context(request)
    name, hosted = await asyncio.to_thread(_acting, request, user, domain)
    run = await confirm_action(
        ctx, request.app, name, hosted, body.action, user=user,
        planned_at=body.planned_at, digest=body.digest, force_reason=body.force_reason,
    )  # fmt: skip
    return PublishStarted(run=run_out(run), progress=f"/api/domains/{name}/journal/{run.id}")


# --- the dashboard -----------------------------------------------------------------------------


def _page_domain(request: Request, user: User, domain: str) -> tuple[str, HostedDomain | None]:
    """As the domain page decides it (``pages._visible_domain``); NotFound otherwise."""
    from stspilot.web.pages import _name, _visible_domain

    name = _name(domain)
    allowed, hosted = _visible_domain(request, user, name)
    if not allowed:
        raise NotFound(f"{name} is not one of your domains.")
    return name, hosted


def _not_found(request: Request, user: User, exc: Exception, status: int = 404) -> Response:
    from stspilot.web.pages import _message

    title = "Not found" if status == 404 else "Not allowed"
    return _message(request, user, status, title, str(exc))


def _render(
    request: Request, user: User, name: str, values: dict[str, Any], status: int = 200
) -> Response:
    from stspilot.web.pages import _render as render_page

    return render_page(request, user, name, {"step_title": step_title, **values}, status)


async def _plan_page(
    request: Request,
    user: User,
    name: str,
    hosted: HostedDomain | None,
    action: str,
    force_reason: str,
    *,
    status: int = 200,
    message: str = "",
) -> Response:
    ctx = context(request)
    error = ""
    shown = None
    try:
        shown = await plan_action(
            ctx, name, hosted, action, user=user, planned_at=ctx.clock(),
            force_reason=force_reason,
        )  # fmt: skip
    except StspilotError as exc:
        error, status = str(exc), 409 if isinstance(exc, Conflict) else 422
    return _render(
        request,
        user,
        "_publish_plan.html",
        {
            "domain": name, "hosted": hosted, "action": action,
            "plan": plan_out(shown, action) if shown is not None else None,
            "error": error, "message": message, "may_act": may_act(user, hosted),
            "force_reason": force_reason,
        },
        status,
    )  # fmt: skip


@router.get("/domains/{domain}/publish", name="publish_plan_page", include_in_schema=False)
async def plan_page(
    request: Request,
    user: PageUser,
    domain: str,
    action: Annotated[str, Query(max_length=20)] = "next",
    force_reason: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    try:
        name, hosted = _page_domain(request, user, domain)
    except NotFound as exc:
        return _not_found(request, user, exc)
    return await _plan_page(request, user, name, hosted, action, force_reason)


@router.post("/domains/{domain}/publish", include_in_schema=False)
async def confirm_page(request: Request, user: PageUser, domain: str) -> Response:
    """The confirm form (``require_page_user`` has checked its CSRF token)."""
    import asyncio

    form = await request.form(max_files=0, max_fields=10)
    values = {k: form.get(k, "") for k in ("action", "planned_at", "digest", "force_reason")}
    text = {k: v[:500] if isinstance(v, str) else "" for k, v in values.items()}
    try:
        name, hosted = await asyncio.to_thread(_page_domain, request, user, domain)
    except NotFound as exc:
        return _not_found(request, user, exc)
    if not may_act(user, hosted):
        return _not_found(
            request, user, Exception("Publishing takes an administrator of the domain."), 403
        )
    try:
        planned_at = datetime.fromisoformat(text["planned_at"])
        if planned_at.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        return await _plan_page(
            request, user, name, hosted, text["action"] or "next", text["force_reason"],
            status=400, message="The form was incomplete; here is the plan again.",
        )  # fmt: skip
    try:
        run = await confirm_action(
            context(request), request.app, name, hosted, text["action"], user=user,
            planned_at=planned_at, digest=text["digest"], force_reason=text["force_reason"],
        )  # fmt: skip
    except StalePlan as exc:
        return await _plan_page(
            request, user, name, hosted, text["action"], text["force_reason"],
            status=409, message=f"Not carried out: {exc}. This is the plan now.",
        )  # fmt: skip
    except StspilotError as exc:
        return await _plan_page(
            request, user, name, hosted, text["action"], text["force_reason"],
            status=409, message=f"Not carried out: {exc}",
        )  # fmt: skip
    target = request.url_for("publish_run_page", domain=name, run_id=str(run.id))
    return RedirectResponse(target.path, 303)


@router.get(
    "/domains/{domain}/publish/runs/{run_id}", name="publish_run_page", include_in_schema=False
)
def run_page(request: Request, user: PageUser, domain: str, run_id: int) -> Response:
    """A run's progress from the journal; ``publish.js`` reloads it while it runs."""
    try:
        name, hosted = _page_domain(request, user, domain)
        run = _run_of(request, name, run_id)
    except NotFound as exc:
        return _not_found(request, user, exc)
    return _render(
        request,
        user,
        "_publish_run.html",
        {"domain": name, "hosted": hosted, "run": run,
         "may_act": may_act(user, hosted)},
    )  # fmt: skip
