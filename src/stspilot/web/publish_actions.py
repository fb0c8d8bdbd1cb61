"""What the web's publish actions would do, and doing it once confirmed (``web/publish.py`` has
the routes). The same actions as the CLI: the next rollout stage (``rollout --apply``), the
rollback to testing (``--to testing``), decommission (``--to none``), resuming the open run
(``publish resume``) and, for a hosted domain, its TXT record in the delegation zone.

Two steps. ``plan_action`` makes the exact plan (steps, records, waits, the gate's verdict) as
of ``planned_at``, from the latest stored check and what is live in DNS now; its ``digest`` is
shown with it. ``confirm_action`` makes the plan again as of the same ``planned_at`` and refuses
(409) when the digest differs: something changed in between (DNS, the hosted policy, a new
check or report), and the user confirmed another plan than the one that would run. Planning
as of the same moment makes the fresh ids of both plans equal, so only real changes count.

A hosted domain whose TXT record the operator keeps (``STSPILOT_TXT_DELEGATION_ZONE`` with a
provider configured for it) is published through ``publish/hosted.py``: the hosted store is
the policy's place, ``<domain>.<zone>`` the record. Any other domain through the publish config
of its zone, exactly as ``stspilot rollout --apply`` (the hosted store as the policy's place
when the domain is hosted here and the config names none).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from stspilot.errors import ConfigError
from stspilot.publish.apply import Publisher
from stspilot.publish.plan import PublishPlan, Step, check_order
from stspilot.store.accounts import Conflict, User
from stspilot.store.hosting import HostedDomain
from stspilot.store.journal import JournalRun, PublishJournal
from stspilot.web.settings import WebContext

Action = Literal["next", "rollback", "decommission", "resume", "hosted-sync"]
ACTIONS: tuple[str, ...] = ("next", "rollback", "decommission", "resume", "hosted-sync")
TO = {"next": None, "rollback": "testing", "decommission": "none"}
CONFIRM_WITHIN = timedelta(minutes=15)  # a plan older than this is made again, not confirmed
WINDOW_DAYS, GATE_DAYS = 14, 7  # the rollout defaults of `stspilot rollout`
Opener = Callable[[], AbstractAsyncContextManager[Publisher]]


class StalePlan(Conflict):
    """The plan confirmed is not the plan that would run now."""

    code = "stale-plan"


class GateRefusedConflict(Conflict):
    """``enforce`` while the gate fails, without a reason to force it."""

    code = "gate-refused"


@dataclass(frozen=True, slots=True)
class Gate:
    stage: str
    ready: bool
    failing: tuple[str, ...]
    observed_at: datetime | None  # the stored check the verdict is made from


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """A plan as shown to the user, with what it takes to carry it out."""

    domain: str
    action: str
    planned_at: datetime
    plan: PublishPlan | None  # None: nothing to publish (``summary`` says why)
    summary: str
    reason: str  # what the journal records as the run's reason
    dns: str = ""
    destination: str = ""
    gate: Gate | None = None
    refused: str = ""  # why confirming is refused now (the enforce gate), '' when it is not
    force_reason: str = ""
    resume_run: int | None = None
    opener: Opener | None = field(default=None, compare=False, repr=False)

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.plan.steps if self.plan is not None else ()

    @property
    def digest(self) -> str:
        """SHA-256 of everything shown that decides what would happen."""
        shown = {
            "domain": self.domain,
            "action": self.action,
            "planned_at": self.planned_at.isoformat(),
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "summary": self.summary,
            "reason": self.reason,
            "dns": self.dns,
            "destination": self.destination,
            "gate": None
            if self.gate is None
            else [self.gate.stage, self.gate.ready, list(self.gate.failing)],
            "refused": self.refused,
            "resume_run": self.resume_run,
        }
        text = json.dumps(shown, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def may_act(user: User, hosted: HostedDomain | None) -> bool:
    """Admins act on any domain; a tenant admin on its tenant's hosted domains."""
    if user.is_admin:
        return True
    return hosted is not None and user.tenant_admin and hosted.tenant_id == user.tenant_id


def actor_of(user: User) -> str:
    return f"{user.name} (web)"


def _check_options(ctx: WebContext) -> Any:
    from stspilot.check.run import CheckOptions

    return ctx.settings.check_options or CheckOptions(allow_private=False)


def _config(ctx: WebContext) -> Any:
    from stspilot.publish.config import load_config

    return load_config(ctx.settings.publish_config)


async def plan_action(
    ctx: WebContext,
    name: str,
    hosted: HostedDomain | None,
    action: str,
    *,
    user: User,
    planned_at: datetime,
    force_reason: str = "",
) -> ActionPlan:
    """The plan of ``action`` for ``name`` as of ``planned_at`` (see the module docstring)."""
    import asyncio

    from stspilot.publish.hosted import SYNC_ACTION, delegation_zone

    if action not in ACTIONS:
        raise ConfigError(f"action must be one of {', '.join(ACTIONS)}")
    config = await asyncio.to_thread(_config, ctx)
    zone = delegation_zone(config, ctx.settings.txt_delegation_zone) if hosted else None
    if action == "resume":
        return await _plan_resume(ctx, name, config, user=user, planned_at=planned_at)
    if action == SYNC_ACTION:
        if hosted is None or zone is None:
            raise Conflict(
                f"{name}: no provider is configured for the delegation zone "
                "(STSPILOT_TXT_DELEGATION_ZONE and its [zones] entry in the publish config)"
            )
        plan = await asyncio.to_thread(_hosted_plan, ctx, hosted, zone.zone, planned_at, None)
        return ActionPlan(
            name, action, planned_at, plan, f"the TXT record {plan.steps[-1].name} names the "
            "id of the policy served now", "publish the hosted TXT record",
            _zone_label(zone), "hosted-delegation",
            opener=_hosted_opener(ctx, zone, user, write=False),
        )  # fmt: skip
    return await _plan_rollout(
        ctx, name, hosted, action, config, zone,
        user=user, planned_at=planned_at, force_reason=force_reason,
    )  # fmt: skip


def _zone_label(zone: Any) -> str:
    from stspilot.publish.rfc2136 import Rfc2136Provider

    return Rfc2136Provider(zone.rfc2136()).label


def _hosted_plan(
    ctx: WebContext, hosted: HostedDomain, zone: str, now: datetime, change: Any
) -> PublishPlan:
    from stspilot.publish.hosted import SYNC_ACTION, plan_hosted

    known = [v.policy_id for v in ctx.hosting.history(hosted.domain)[:50]]
    if change is None:
        return plan_hosted(hosted, zone, now=now, known_ids=known, action=SYNC_ACTION)
    text, max_age, action = change
    return plan_hosted(
        hosted, zone, now=now, known_ids=known, text=text, max_age=max_age, action=action
    )


def _hosted_opener(ctx: WebContext, zone: Any, user: User, *, write: bool) -> Opener:
    from stspilot.publish.hosted import WEB_REASON, open_hosted_publisher

    def opener() -> AbstractAsyncContextManager[Publisher]:
        return open_hosted_publisher(
            ctx.store, zone, check=_check_options(ctx), clock=ctx.clock,
            actor=actor_of(user), write=write, reason=WEB_REASON,
        )  # fmt: skip

    return opener


def _config_opener(ctx: WebContext, domain_config: Any, user: User) -> Opener:
    from stspilot.publish.session import open_publisher

    def opener() -> AbstractAsyncContextManager[Publisher]:
        return open_publisher(
            ctx.store, domain_config, check=_check_options(ctx), clock=ctx.clock,
            actor=actor_of(user),
        )  # fmt: skip

    return opener


async def _plan_resume(
    ctx: WebContext, name: str, config: Any, *, user: User, planned_at: datetime
) -> ActionPlan:
    import asyncio

    from stspilot.publish.hosted import DELEGATED, SYNC_ACTION, zone_of_run

    run = await asyncio.to_thread(PublishJournal(ctx.store).open_run, name)
    if run is None:
        raise Conflict(f"{name} has no unfinished publish run to resume")
    steps = tuple(Step.from_dict(s.target) for s in run.steps if s.state != "verified")
    plan = PublishPlan(name, run.action, steps)
    first = len(run.steps) - len(steps) + 1
    summary = f"continue run {run.id} ({run.action}, {run.state}) from step {first}"
    if run.destination == DELEGATED:
        zone = config.zones.get(zone_of_run(run))
        if zone is None:
            raise Conflict(f"no provider is configured for the zone of run {run.id}")
        opener = _hosted_opener(ctx, zone, user, write=run.action != SYNC_ACTION)
    else:
        opener = _config_opener(ctx, config.for_domain(name, policy=run.destination), user)
    return ActionPlan(
        name, "resume", planned_at, plan, summary, run.reason, run.dns, run.destination,
        resume_run=run.id, opener=opener,
    )  # fmt: skip


async def _plan_rollout(
    ctx: WebContext,
    name: str,
    hosted: HostedDomain | None,
    action: str,
    config: Any,
    zone: Any,
    *,
    user: User,
    planned_at: datetime,
    force_reason: str,
) -> ActionPlan:
    """``rollout --apply`` [``--to``] as of ``planned_at``, from the latest stored check."""
    import asyncio

    from stspilot.publish.plan import GateRefused, choose_target
    from stspilot.rollout.assess import assess_rollout
    from stspilot.store.checks import rollout_inputs

    inputs = await asyncio.to_thread(rollout_inputs, ctx.store, name, planned_at, days=WINDOW_DAYS)
    if inputs is None:
        raise Conflict(f"no stored check of {name}: run a check first (the plan starts from it)")
    assessment = assess_rollout(
        inputs, now=planned_at, window_days=WINDOW_DAYS, gate_days=GATE_DAYS
    )
    gate = Gate(
        assessment.stage.value,
        assessment.ready,
        tuple(c.title for c in assessment.gate if not c.passed),
        inputs.live.observed_at,
    )
    to = TO[action]
    refused = ""
    try:
        target = choose_target(
            assessment, inputs.live, to, now=planned_at, force_reason=force_reason
        )
    except GateRefused as exc:
        refused = f"{exc}".replace("--force REASON", "give a reason to force it")
        target = choose_target(assessment, inputs.live, to, now=planned_at, force_reason="-")
    forced = f"forced past the enforce gate: {force_reason}"
    reason = forced if force_reason and not assessment.ready else target.summary
    pub = target.publication
    base = ActionPlan(
        name, target.action, planned_at, None, target.summary or "nothing to publish", reason,
        gate=gate, refused=refused, force_reason=force_reason,
    )  # fmt: skip
    if pub is None:
        return base
    if zone is not None and hosted is not None:
        if target.reporting_only:
            raise Conflict(
                f"{name}: the TLS-RPT record {pub.tlsrpt_txt.name} lives in the domain's own "
                f'zone: publish "{pub.tlsrpt_txt.value}" there'
            )
        change = await asyncio.to_thread(_hosted_change, hosted, pub, target.decommission)
        plan = await asyncio.to_thread(_hosted_plan, ctx, hosted, zone.zone, planned_at, change)
        notes: tuple[str, ...] = ()
        if target.decommission:
            notes = (
                "The hosting serves mode none until every cached policy has expired; then "
                "`stspilot publish hosted-sync` removes the TXT record, and the domain can be "
                "removed.",
            )
        plan = PublishPlan(plan.domain, target.action, plan.steps, notes)
        return _with(base, plan, _zone_label(zone), "hosted-delegation",
                     _hosted_opener(ctx, zone, user, write=True))  # fmt: skip
    own = config.domains.get(name, {})
    policy = None if own.get("policy") else ("hosted" if hosted is not None else None)
    domain_config = config.for_domain(name, policy=policy)
    opener = _config_opener(ctx, domain_config, user)
    none_since = assessment.since if assessment.stage.value == "winding-down" else None
    books = assessment.runbooks.decommission
    start = none_since or assessment.assessed_at
    longest = int((books.wait_until - start).total_seconds()) if books.wait_until else 0
    async with opener() as publisher:
        plan = await publisher.plan_for(
            target, now=planned_at, none_since=none_since, history_max_age=max(longest, 0)
        )
        dns, destination = publisher.provider.label, publisher.destination.label
    return _with(base, plan, dns, destination, opener)


def _hosted_change(hosted: HostedDomain, pub: Any, decommission: bool) -> tuple[str, int, str]:
    """(text, max_age, action) the hosted store would serve for ``pub``: its own rendering
    (``publish.hosted.hosted_text``)."""
    from stspilot.publish.hosted import hosted_text
    from stspilot.sts.policy import DEFAULT_MAX_AGE

    if decommission:
        mode, patterns = "none", hosted.mx
        age = min(hosted.max_age, DEFAULT_MAX_AGE["none"])
    else:
        mode, patterns, age = pub.mode, pub.mx_patterns, pub.max_age
    text, age = hosted_text(hosted, mode, patterns, age)
    return text, age, "decommission" if decommission else pub.mode


def _with(
    base: ActionPlan, plan: PublishPlan, dns: str, destination: str, opener: Opener
) -> ActionPlan:
    from dataclasses import replace

    return replace(base, plan=plan, dns=dns, destination=destination, opener=opener)


# --- confirming -------------------------------------------------------------------------------


async def confirm_action(
    ctx: WebContext,
    app: Any,
    name: str,
    hosted: HostedDomain | None,
    action: str,
    *,
    user: User,
    planned_at: datetime,
    digest: str,
    force_reason: str = "",
) -> JournalRun:
    """Make the plan again as of ``planned_at``; carry it out in the background when it is the
    one confirmed (its digest), else 409. Returns the run as journaled before any change."""
    import asyncio

    from stspilot.web.publish_jobs import publish_jobs

    now = ctx.clock()
    if not now - CONFIRM_WITHIN <= planned_at <= now + timedelta(minutes=1):
        raise StalePlan(
            f"this plan was made at {planned_at.isoformat()}: plans are confirmed within "
            f"{int(CONFIRM_WITHIN.total_seconds() // 60)} minutes; look at it again"
        )
    shown = await plan_action(
        ctx, name, hosted, action, user=user, planned_at=planned_at, force_reason=force_reason
    )
    if shown.digest != digest:
        raise StalePlan(
            f"the plan for {name} changed since it was shown (DNS, the hosted policy, a check "
            "or the journal); look at the new plan and confirm that one"
        )
    if shown.refused:
        raise GateRefusedConflict(shown.refused)
    if not shown.steps or shown.opener is None:
        raise Conflict(f"{name}: nothing to publish ({shown.summary})")
    opener = shown.opener
    journal = PublishJournal(ctx.store)
    if shown.resume_run is not None:
        if shown.resume_run in publish_jobs(app).busy():
            # Two writers on one run would undo each other's steps.
            raise Conflict(f"run {shown.resume_run} of {name} is being carried out now")
        run = await asyncio.to_thread(journal.get, shown.resume_run)

        async def job() -> Any:
            async with opener() as publisher:
                return await publisher.resume(name)

    else:
        assert shown.plan is not None
        plan = shown.plan
        check_order(plan.steps)
        run = await asyncio.to_thread(
            lambda: journal.start(
                name, action=plan.action, steps=[s.to_dict() for s in plan.steps],
                actor=actor_of(user), reason=shown.reason, dns=shown.dns,
                destination=shown.destination, now=ctx.clock(),
            )
        )  # fmt: skip
        started = run

        async def job() -> Any:
            async with opener() as publisher:
                return await publisher.run(started)

    publish_jobs(app).submit(run.id, job)
    return run
