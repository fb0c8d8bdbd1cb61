"""The monitor's hands: a confirmed drift (``monitor/heal.py``) repaired through publish's own
path (plan, journal, every step verified), with the journal's actor the monitor and its reason
the drift and when it was seen; alerts say what was repaired, or why not.

Per check of an opted-in domain: the drifts it shows are recorded as sightings in the store
(``store.heal``); one that is confirmed (two consecutive checks at least ``min_gap`` apart saw
the same thing) is repaired once, and its sighting forgotten, so a repair that failed is tried
again only after two more sightings. Before planning, the publisher reads the records, the
policy and the MX set again at the zone's primary; anything different from what was confirmed
stops the repair (a third look). A domain with an unfinished publish run (a person's, or an MX
migration waiting for its switch) is never touched: the run would be superseded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stspilot.errors import ConfigError, PublishError
from stspilot.findings import Severity
from stspilot.monitor.alerts import Alert, make_alert
from stspilot.monitor.heal import (
    DEFAULT_MIN_GAP,
    ID_NOT_BUMPED,
    MX_DRIFT,
    Drift,
    Repair,
    confirmed,
    observe,
    repair_for,
)
from stspilot.rollout.evidence import policy_text_digest
from stspilot.store.heal import HealSettings, HealStore, Sighting
from stspilot.store.journal import JournalRun, PublishJournal
from stspilot.sts.records import new_policy_id, record_id

if TYPE_CHECKING:
    from stspilot.check.run import CheckOptions
    from stspilot.publish.config import DomainConfig, ZoneConfig
    from stspilot.rollout.evidence import HistoryEntry, LiveState
    from stspilot.rollout.generate import Publication
    from stspilot.store import Store
    from stspilot.store.hosting import HostedDomain


def _from_publish_config(domain: str) -> DomainConfig:
    from stspilot.publish.config import load_config

    return load_config().for_domain(domain)


def _delegation_from_env() -> ZoneConfig | None:
    from stspilot.publish.hosted import delegation_from_env

    return delegation_from_env()


@dataclass(frozen=True, slots=True)
class HealConfig:
    """Self-healing settings of a monitor (the opt-in itself is per domain, in the store)."""

    min_gap: timedelta = DEFAULT_MIN_GAP  # the two sightings are at least this far apart
    # The domain's DNS provider and policy destination (default: the publish config file)
    configs: Callable[[str], DomainConfig] = field(default=_from_publish_config)
    clock: Callable[[], datetime] | None = None  # the journal's clock (default: real time)
    # The delegation zone's provider (``$STSPILOT_TXT_DELEGATION_ZONE`` in the publish config):
    # a domain hosted here is repaired there, through the hosted store (``publish/hosted.py``)
    delegation: Callable[[], ZoneConfig | None] = field(default=_delegation_from_env)


@dataclass(frozen=True, slots=True)
class HealOutcome:
    alerts: tuple[Alert, ...] = ()
    recheck_at: datetime | None = None  # look again then (a first sighting's confirmation)
    repaired: int = 0


def _policy_sha(text: str | None) -> str:
    return "" if text is None else policy_text_digest(text)


def _note(domain: str, code: str, severity: Severity, message: str, *parts: str) -> Alert:
    return make_alert(domain, code, severity, f"{domain}: {message}", *parts, lasting=False)


async def heal_domain(
    store: Store,
    settings: HealSettings,
    live: LiveState,
    history: Sequence[HistoryEntry],
    *,
    config: HealConfig,
    options: CheckOptions,
    now: datetime,
    actor: str,
    pending: bool = True,
) -> HealOutcome:
    """Record what this check saw; repair what is confirmed. Never raises for a domain's
    trouble: every refusal and failure becomes an alert. ``pending`` False (the round read
    that no sighting of the domain is counting) skips the write when nothing is seen."""
    domain = live.domain
    kinds = [k for k, on in ((ID_NOT_BUMPED, settings.id_bump), (MX_DRIFT, settings.mx_sync)) if on]
    drifts = observe(live, history, id_bump=settings.id_bump, mx_sync=settings.mx_sync)
    if not drifts and not pending:
        return HealOutcome()
    heal = HealStore(store)
    seen = [(d.kind, d.fingerprint, d.detail) for d in drifts]
    rows = await asyncio.to_thread(heal.record, domain, seen, kinds=kinds, now=now)
    alerts: list[Alert] = []
    recheck: list[datetime] = []
    repaired = 0
    for drift in drifts:
        row = rows[drift.kind]
        if not confirmed(row.first_seen_at, row.last_seen_at, row.checks, config.min_gap):
            due = row.first_seen_at + config.min_gap
            recheck.append(due)
            alerts.append(
                _note(
                    domain,
                    "heal.pending",
                    Severity.INFO,
                    f"{drift.detail}; first seen {row.first_seen_at:%Y-%m-%d %H:%M} UTC "
                    f"({row.checks} check(s)): repaired only if every check still sees it "
                    f"and one after {due:%Y-%m-%d %H:%M} UTC does too.",
                    drift.kind,
                    drift.fingerprint,
                )
            )
            continue
        alert, forget, ok = await _repair(store, drift, row, live, config, options, now, actor)
        if forget:  # written, failed, or changed again: two more sightings before another try
            await asyncio.to_thread(heal.forget, domain, drift.kind)
        alerts.append(alert)
        repaired += ok
    return HealOutcome(tuple(alerts), min(recheck, default=None), repaired)


async def _repair(
    store: Store,
    drift: Drift,
    row: Sighting,
    live: LiveState,
    config: HealConfig,
    options: CheckOptions,
    now: datetime,
    actor: str,
) -> tuple[Alert, bool, bool]:
    """(the alert, whether to forget the sighting, whether it was repaired). A refusal keeps
    the sighting: it is a condition, alerted while it lasts, and the next check tries again."""
    domain = live.domain
    what = "the id" if drift.kind == ID_NOT_BUMPED else "the policy's mx lines"

    def refused(why: str, *, forget: bool = False) -> tuple[Alert, bool, bool]:
        alert = make_alert(
            domain,
            "heal.refused",
            Severity.WARNING,
            f"{domain}: {what} not repaired ({drift.detail}): {why}",
            drift.kind,
            lasting=True,
        )
        return alert, forget, False

    journal = PublishJournal(store)
    open_run = await asyncio.to_thread(journal.open_run, domain)
    if open_run is not None:
        return refused(
            f"publish run {open_run.id} ({open_run.action} by {open_run.actor}) is "
            f"{open_run.state}; finish it (stspilot publish resume {domain}) first"
        )
    repair = repair_for(drift, live, now=now)
    if repair.refused:
        return refused(repair.refused)
    from stspilot.publish.session import utc_now

    reason = (
        f"self-heal ({drift.kind}): {drift.detail}; seen in {row.checks} consecutive checks "
        f"from {row.first_seen_at:%Y-%m-%d %H:%M} to {row.last_seen_at:%Y-%m-%d %H:%M} UTC"
    )
    try:
        hosted = await asyncio.to_thread(_hosted_here, store, domain, config)
        domain_config = None if hosted is not None else config.configs(domain)
    except ConfigError as exc:
        return refused(str(exc))
    clock = config.clock or utc_now
    try:
        if hosted is not None:
            outcome = await _repair_hosted(
                store, drift, repair, live, *hosted, options=options, clock=clock,
                actor=actor, reason=reason,
            )  # fmt: skip
        else:
            assert domain_config is not None
            outcome = await _repair_own(
                store, drift, repair, live, domain_config, options=options, clock=clock,
                now=now, actor=actor, reason=reason,
            )  # fmt: skip
    except (PublishError, ConfigError) as exc:
        alert = make_alert(
            domain,
            "heal.failed",
            Severity.ERROR,
            f"{domain}: repairing {what} failed ({drift.detail}): {exc}; tried again once two "
            "more checks confirm the drift",
            drift.kind,
            f"{now:%Y%m%d%H%M%S}",
            lasting=False,
        )
        return alert, True, False
    if isinstance(outcome, str):  # the third look saw a change, or nothing is left to do
        return refused(outcome, forget=outcome != NOTHING)
    done = outcome
    ids = [s.target.get("value") for s in done.steps if s.kind == "sts"]
    message = (
        f"repaired: {repair.summary}; publish run {done.id} ({done.state}), each step verified "
        f"at every authoritative server and the policy URL"
        + (f"; now {ids[-1]}" if ids else "")
        + f". {reason}."
    )
    return _note(domain, "heal.repaired", Severity.INFO, message, str(done.id)), True, True


NOTHING = "nothing to change: what is live is what the repair would publish"
CHANGED_AGAIN = (
    "the records or the policy changed again since the checks; the monitor looks again at the "
    "next checks"
)


async def _repair_own(
    store: Store,
    drift: Drift,
    repair: Repair,
    live: LiveState,
    domain_config: DomainConfig,
    *,
    options: CheckOptions,
    clock: Callable[[], datetime],
    now: datetime,
    actor: str,
    reason: str,
) -> JournalRun | str:
    """The repair through the domain's own zone and policy destination (the publish config);
    returns the run, or why not."""
    from stspilot.publish.migrate import mx_value
    from stspilot.publish.plan import plan_id_bump, plan_policy_change
    from stspilot.publish.session import open_publisher

    domain = live.domain
    async with open_publisher(
        store, domain_config, check=options, clock=clock, actor=actor
    ) as publisher:
        again = await publisher.read_live(domain)
        # The third look, at the primary and the policy URL: what was confirmed is still
        # what senders are shown, or nothing is written.
        if record_id(again.sts) != live.sts_id or _policy_sha(again.policy) != live.policy_sha256:
            return CHANGED_AGAIN
        if drift.kind == ID_NOT_BUMPED:
            fresh = new_policy_id(now, previous=live.sts_id or "")
            plan = plan_id_bump(again, policy_id=fresh, action="heal-id")
        else:
            mx = await publisher.read_mx(domain)
            if mx.hosts != repair.mx_hosts:
                return (
                    f"the zone's primary now serves MX {mx_value(mx.hosts) or '(none)'}, "
                    f"not the {mx_value(repair.mx_hosts)} the checks saw"
                )
            assert repair.publication is not None
            plan = plan_policy_change(again, repair.publication, action="heal-mx")
        if not plan.steps:
            return NOTHING
        run = publisher.start(plan, actor=actor, reason=reason)
        return await publisher.run(run)


def _hosted_here(
    store: Store, domain: str, config: HealConfig
) -> tuple[HostedDomain, ZoneConfig] | None:
    """The hosted domain and the delegation zone's provider, when ``domain`` is hosted here and
    its TXT record is the operator's (the delegation zone): then its repair changes the hosted
    store and publishes the id at ``<domain>.<zone>``, never ``_mta-sts.<domain>`` (a CNAME
    there). Blocking."""
    from stspilot.store.hosting import HostedPolicies

    hosted = HostedPolicies(store).get(domain)
    if hosted is None:
        return None
    zone = config.delegation()
    return None if zone is None else (hosted, zone)


async def _repair_hosted(
    store: Store,
    drift: Drift,
    repair: Repair,
    live: LiveState,
    hosted: HostedDomain,
    zone: ZoneConfig,
    *,
    options: CheckOptions,
    clock: Callable[[], datetime],
    actor: str,
    reason: str,
) -> JournalRun | str:
    """A hosted domain's repair through the hosted sync's own path (``publish/hosted.py``,
    as a policy change from the dashboard): one run journaled before anything changes (actor the
    monitor), whose policy step puts the repaired body in the hosted store and fetches it as a
    sender would, and whose id step publishes the store's new id at ``<domain>.<zone>``,
    verified at every server. The third look reads that record at the zone's primary, the policy
    as a sender fetches it and from the store, and the MX set again (through the check's
    resolver: the customer's zone is not the operator's). Returns the run, or why not."""
    from stspilot.facts import FetchOutcome
    from stspilot.publish.hosted import (
        hosted_text,
        open_hosted_publisher,
        record_name,
        start_sync,
    )
    from stspilot.publish.migrate import mx_value
    from stspilot.publish.providers import STS_PREFIX
    from stspilot.sts.names import fold_name

    domain = live.domain
    async with open_hosted_publisher(
        store, zone, check=options, clock=clock, actor=actor, write=True,
        reason=f"self-heal ({drift.kind}) by {actor}",
    ) as publisher:  # fmt: skip
        record = await publisher.provider.read_txt(record_name(domain, zone.zone))
        fetched = await publisher.fetcher.fetch_policy(domain)
        (value,) = record.values(STS_PREFIX)[:1] or (None,)
        body = fetched.body if fetched.outcome is FetchOutcome.OK and fetched.body else None
        served = _policy_sha(body.decode("ascii", "replace") if body is not None else None)
        stored = _policy_sha(hosted.policy_text)
        if record_id(value) != live.sts_id or served != live.policy_sha256:
            return CHANGED_AGAIN
        if stored != live.policy_sha256:
            return "the hosted policy changed since the checks; the monitor looks again"
        if drift.kind == ID_NOT_BUMPED:
            if value == hosted.sts_txt_value:
                return NOTHING
            text, age, action = None, None, "heal-id"
        else:
            lookup = await publisher.fetcher.resolver.lookup_mx(domain)
            hosts = tuple(sorted({fold_name(h.host) for h in lookup.hosts} - {""}))
            if hosts != repair.mx_hosts:
                return (
                    f"the domain's MX set is now {mx_value(hosts) or '(none)'}, not the "
                    f"{mx_value(repair.mx_hosts)} the checks saw"
                )
            pub: Publication | None = repair.publication
            assert pub is not None
            text, age = hosted_text(hosted, pub.mode, pub.mx_patterns, pub.max_age)
            if text == hosted.policy_text:
                return NOTHING
            action = "heal-mx"
        run = await asyncio.to_thread(
            lambda: start_sync(
                store, hosted, zone, actor=actor, now=clock(), reason=reason, action=action,
                text=text, max_age=age,
            )
        )  # fmt: skip
        return await publisher.run(run)
