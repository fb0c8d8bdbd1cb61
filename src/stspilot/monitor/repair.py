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
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stspilot.errors import ConfigError, ParseError, PublishError
from stspilot.findings import Severity
from stspilot.monitor.alerts import Alert, make_alert
from stspilot.monitor.heal import (
    DEFAULT_MIN_GAP,
    ID_NOT_BUMPED,
    MX_DRIFT,
    Drift,
    confirmed,
    observe,
    repair_for,
)
from stspilot.store.heal import HealSettings, HealStore, Sighting
from stspilot.store.journal import PublishJournal
from stspilot.sts.policy import format_policy, parse_policy
from stspilot.sts.records import new_policy_id

if TYPE_CHECKING:
    from stspilot.check.run import CheckOptions
    from stspilot.publish.config import DomainConfig
    from stspilot.rollout.evidence import HistoryEntry, LiveState
    from stspilot.store import Store


def _from_publish_config(domain: str) -> DomainConfig:
    from stspilot.publish.config import load_config

    return load_config().for_domain(domain)


@dataclass(frozen=True, slots=True)
class HealConfig:
    """Self-healing settings of a monitor (the opt-in itself is per domain, in the store)."""

    min_gap: timedelta = DEFAULT_MIN_GAP  # the two sightings are at least this far apart
    # The domain's DNS provider and policy destination (default: the publish config file)
    configs: Callable[[str], DomainConfig] = field(default=_from_publish_config)
    clock: Callable[[], datetime] | None = None  # the journal's clock (default: real time)


@dataclass(frozen=True, slots=True)
class HealOutcome:
    alerts: tuple[Alert, ...] = ()
    recheck_at: datetime | None = None  # look again then (a first sighting's confirmation)
    repaired: int = 0


def _policy_sha(text: str | None) -> str:
    """The digest ``rollout.evidence.policy_digest`` gives the same body."""
    if text is None:
        return ""
    try:
        canonical = format_policy(parse_policy(text))
    except ParseError:
        canonical = text
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _id(sts: str | None) -> str:
    return (sts or "").rpartition("id=")[2].strip().rstrip(";").strip()


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
    try:
        domain_config = config.configs(domain)
    except ConfigError as exc:
        return refused(str(exc))
    from stspilot.publish.migrate import mx_value
    from stspilot.publish.plan import plan_id_bump, plan_policy_change
    from stspilot.publish.session import open_publisher, utc_now

    reason = (
        f"self-heal ({drift.kind}): {drift.detail}; seen in {row.checks} consecutive checks "
        f"from {row.first_seen_at:%Y-%m-%d %H:%M} to {row.last_seen_at:%Y-%m-%d %H:%M} UTC"
    )
    try:
        async with open_publisher(
            store, domain_config, check=options, clock=config.clock or utc_now, actor=actor
        ) as publisher:
            again = await publisher.read_live(domain)
            # The third look, at the primary and the policy URL: what was confirmed is still
            # what senders are shown, or nothing is written.
            if _id(again.sts) != live.sts_id or _policy_sha(again.policy) != live.policy_sha256:
                return refused(
                    "the records or the policy changed again since the checks; the monitor "
                    "looks again at the next checks",
                    forget=True,
                )
            if drift.kind == ID_NOT_BUMPED:
                fresh = new_policy_id(now, previous=live.sts_id or "")
                plan = plan_id_bump(again, policy_id=fresh, action="heal-id")
            else:
                mx = await publisher.read_mx(domain)
                if mx.hosts != repair.mx_hosts:
                    return refused(
                        f"the zone's primary now serves MX {mx_value(mx.hosts) or '(none)'}, "
                        f"not the {mx_value(repair.mx_hosts)} the checks saw",
                        forget=True,
                    )
                assert repair.publication is not None
                plan = plan_policy_change(again, repair.publication, action="heal-mx")
            if not plan.steps:
                return refused("nothing to change: what is live is what the repair would publish")
            run = publisher.start(plan, actor=actor, reason=reason)
            done = await publisher.run(run)
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
    ids = [s.target.get("value") for s in done.steps if s.kind == "sts"]
    message = (
        f"repaired: {repair.summary}; publish run {done.id} ({done.state}), each step verified "
        f"at every authoritative server and the policy URL"
        + (f"; now {ids[-1]}" if ids else "")
        + f". {reason}."
    )
    return _note(domain, "heal.repaired", Severity.INFO, message, str(done.id)), True, True
