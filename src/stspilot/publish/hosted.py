"""The hosted service publishes too: the TXT records of its delegation zone follow the hosted
policies, through the same path and in the same order as one domain's publication.

With ``STSPILOT_TXT_DELEGATION_ZONE`` set, each customer points ``_mta-sts.<domain>`` (CNAME,
RFC 8461 §8.2) at ``<domain>.<zone>``, where the operator keeps the TXT record
(``web/hosting.py`` shows the customer those records). ``sync_delegation`` makes that zone say
what the store serves: for every hosted domain whose record differs, the policy is first
fetched through its public URL as a sender would (when a fetcher is given; one not served yet
is skipped and named, never announced), then the records are bumped in batches, read back and
verified at every authoritative server (``bulk.py``). A domain being decommissioned loses its
record once its wait is over (``remove_after``), before the operator removes the policy:
the TXT record goes first (RFC 8461 §8.3; checklist G5.7). Records are never removed for
domains the store does not know: they are reported.

One domain at a time, journaled (the web's path after every hosted policy change, and its
rollout actions for hosted domains): ``plan_hosted`` makes the two steps (the policy served
and fetched as a sender would, then ``<domain>.<zone>`` TXT with its id) and
``open_hosted_publisher`` the ``Publisher`` that carries them out, with
``DelegatedDestination`` as the policy's place: the hosted store itself. Such runs carry the
destination label ``hosted-delegation``, so ``publish resume`` finds this path again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stspilot.errors import ConfigError, PublishError, StoreError
from stspilot.facts import FetchOutcome
from stspilot.probes.fetch import PolicyFetcher
from stspilot.publish.bulk import BulkResult, change_txt_many, read_all
from stspilot.publish.destinations import PolicyChange, Served
from stspilot.publish.plan import PublishPlan, Step, StepKind
from stspilot.publish.providers import STS_PREFIX, TxtChange
from stspilot.publish.rfc2136 import Rfc2136Provider
from stspilot.publish.verify import NameServer, VerifyOptions
from stspilot.rollout.generate import TXT_TTL
from stspilot.sts.records import StsRecord, format_sts_record, new_policy_id

if TYPE_CHECKING:
    from stspilot.check.run import CheckOptions
    from stspilot.publish.apply import Publisher
    from stspilot.publish.config import PublishConfig, ZoneConfig
    from stspilot.store import Store
    from stspilot.store.hosting import HostedDomain
    from stspilot.store.journal import JournalRun

DELEGATED = "hosted-delegation"  # the journal's destination label of this path
SYNC_ACTION = "hosted-sync"
WEB_REASON = "stspilot publish (web)"  # the hosting's history: a change the web carried out


@dataclass(frozen=True, slots=True)
class SyncResult:
    changed: tuple[str, ...]  # domains whose record was written (bumped or removed)
    skipped: dict[str, str] = field(default_factory=dict)  # domain -> why not (policy not served)
    bulk: BulkResult | None = None
    runs: dict[str, int] = field(default_factory=dict)  # domain -> its journal run


BULK_REASON = "publish hosted-sync: the delegation zone's record differs from the store"


def record_name(domain: str, zone: str) -> str:
    return f"{domain}.{zone.rstrip('.')}."


def wanted_value(hosted: HostedDomain, now: datetime) -> str | None:
    """The TXT value the delegation zone should hold for ``hosted`` now (None: no record)."""
    from stspilot.store.hosting import DECOMMISSIONING

    if hosted.state == DECOMMISSIONING and hosted.remove_after and now >= hosted.remove_after:
        return None
    return hosted.sts_txt_value


async def _served(fetcher: PolicyFetcher, hosted: HostedDomain) -> str:
    """'' when the public URL serves exactly the store's body, else why not."""
    got = await fetcher.fetch_policy(hosted.domain)
    if got.outcome is not FetchOutcome.OK:
        return f"{got.url}: {got.outcome.value} {got.error}".strip()
    if got.body != hosted.policy_text.encode():
        return f"{got.url} serves another policy than the store's"
    return ""


def _plans(
    store: Store, hosted: Sequence[HostedDomain], zone: str, now: datetime
) -> list[PublishPlan]:
    """Each domain's ``plan_hosted`` (with the ids it was ever served with). Blocking."""
    from stspilot.store.hosting import HostedPolicies

    hosting = HostedPolicies(store)
    return [
        plan_hosted(
            h, zone, now=now, known_ids=[v.policy_id for v in hosting.history(h.domain)[:50]]
        )
        for h in hosted
    ]


async def sync_delegation(
    store: Store,
    provider: Rfc2136Provider,
    servers: tuple[NameServer, ...],
    *,
    zone: str,
    clock: Callable[[], datetime],
    fetcher: PolicyFetcher | None = None,
    verify: VerifyOptions = VerifyOptions(),
    batch: int = 100,
    concurrency: int = 32,
    dry_run: bool = False,
    actor: str = "publish hosted-sync",
    after_phase: Callable[[str], None] | None = None,
) -> SyncResult:
    """Bring the delegation zone in line with the store (see the module docstring);
    ``dry_run`` only says which domains would change.

    Journaled as every other publication: each domain to change gets its own ``hosted-sync``
    run (``plan_hosted``: the policy verified, then its id; or the record's removal), written
    before anything changes, with its policy step verified by the fetch. Then the records are
    written in batches and verified together, the journal following each phase for every run
    at once (intended, done, verified). A crash or a failure leaves the runs where they
    stopped, and ``publish resume DOMAIN`` finishes each through the one-domain path. A record
    holding a value this domain was never served with is someone else's: skipped and named,
    never overwritten. ``after_phase`` is called after each journal phase (crash injection in
    the tests)."""
    from stspilot.store.hosting import HostedPolicies
    from stspilot.store.journal import PublishJournal

    hosting = HostedPolicies(store)
    hosted = await asyncio.to_thread(hosting.list_domains)
    now = clock()
    names = [record_name(h.domain, zone) for h in hosted]
    current = await read_all(provider, names, concurrency)
    pending = [
        (h, cur)
        for h, cur in zip(hosted, current, strict=True)
        if not cur.holds(STS_PREFIX, wanted_value(h, now))
    ]
    plans = await asyncio.to_thread(_plans, store, [h for h, _ in pending], zone, now)
    skipped: dict[str, str] = {}
    for (h, cur), plan in zip(pending, plans, strict=True):
        last = plan.steps[-1]
        allowed = {(() if v is None else (v,)) for v in last.expect}
        if cur.cname is not None:
            skipped[h.domain] = f"{last.name} is a CNAME to {cur.cname}: left alone"
        elif cur.values(STS_PREFIX) not in allowed:
            shown = " | ".join(cur.values(STS_PREFIX))
            skipped[h.domain] = (
                f"{last.name} holds {shown}, an id this domain was never served with: "
                "someone else's record, left alone"
            )
    if fetcher is not None:
        gate = asyncio.Semaphore(concurrency)

        async def check(h: HostedDomain) -> tuple[str, str]:
            async with gate:
                return h.domain, await _served(fetcher, h)

        bumps = [h for h, _ in pending if wanted_value(h, now) is not None]
        bumps = [h for h in bumps if h.domain not in skipped]
        for domain, why in await asyncio.gather(*(check(h) for h in bumps)):
            if why:
                skipped[domain] = why
    todo = [
        (h, cur, plan)
        for (h, cur), plan in zip(pending, plans, strict=True)
        if h.domain not in skipped
    ]
    if not todo or dry_run:
        return SyncResult(tuple(h.domain for h, _, _ in todo), skipped)
    journal = PublishJournal(store)

    def phase(name: str) -> None:
        if after_phase is not None:
            after_phase(name)

    runs = [
        {
            "domain": h.domain, "action": SYNC_ACTION, "steps": [s.to_dict() for s in p.steps],
            "actor": actor, "reason": BULK_REASON, "dns": provider.label,
            "destination": DELEGATED,
        }
        for h, _, p in todo
    ]  # fmt: skip
    ids = await asyncio.to_thread(journal.start_many, runs, now=clock())
    policy = [(i, h) for i, (h, _, p) in zip(ids, todo, strict=True) if len(p.steps) == 2]
    if policy:
        # Fetched as a sender would above (``fetcher``); without it, put in place only.
        outcomes = [
            {"text": h.policy_text, "policy_id": h.policy_id}
            | ({} if fetcher is not None else {"verify": "skipped (--no-verify-policy)"})
            for _, h in policy
        ]
        await asyncio.to_thread(
            journal.mark_steps, [(i, 0) for i, _ in policy],
            "verified" if fetcher is not None else "done", now=clock(), outcomes=outcomes,
        )  # fmt: skip
    phase("journaled")
    sts = [(i, len(p.steps) - 1) for i, (_, _, p) in zip(ids, todo, strict=True)]
    await asyncio.to_thread(journal.mark_steps, sts, "intended", now=clock())
    phase("intended")
    befores = [{"before": list(cur.values(STS_PREFIX))} for _, cur, _ in todo]

    def written() -> None:
        journal.mark_steps(sts, "done", now=clock(), outcomes=befores)
        phase("done")

    changes = [
        TxtChange(p.steps[-1].name, STS_PREFIX, p.steps[-1].value, TXT_TTL) for _, _, p in todo
    ]
    expected = {p.steps[-1].name: (*p.steps[-1].expect, p.steps[-1].value) for _, _, p in todo}
    try:
        result = await change_txt_many(
            provider, servers, changes, expected=expected, batch=batch,
            concurrency=concurrency, verify=verify, on_written=written,
        )  # fmt: skip
    except (PublishError, ConfigError) as exc:
        resume = "stspilot publish resume DOMAIN"
        message = f"hosted-sync failed: {exc}; resume: {resume}"
        await asyncio.to_thread(journal.mark_steps, sts, "failed", now=clock(), error=str(exc))
        await asyncio.to_thread(journal.finish_many, ids, "failed", now=clock(), error=message)
        failed_step = exc.step if isinstance(exc, PublishError) else "hosted-sync"
        answer = exc.answer if isinstance(exc, PublishError) else "configuration"
        raise PublishError(
            f"{exc}; the journal holds a run for each of the {len(ids)} domain(s) "
            f"({', '.join(h.domain for h, _, _ in todo[:5])}{', ...' if len(todo) > 5 else ''}): "
            f"{resume} finishes it",
            step=failed_step,
            answer=answer,
        ) from None
    waited = {"verify_seconds": round(result.verify_seconds, 3)}
    await asyncio.to_thread(
        journal.mark_steps, sts, "verified", now=clock(),
        outcomes=[b | waited for b in befores],
    )  # fmt: skip
    phase("verified")
    await asyncio.to_thread(journal.finish_many, ids, "done", now=clock())
    domains = tuple(h.domain for h, _, _ in todo)
    return SyncResult(domains, skipped, result, dict(zip(domains, ids, strict=True)))


# --- one domain, journaled ----------------------------------------------------------------


def delegation_zone(config: PublishConfig, zone: str | None) -> ZoneConfig | None:
    """The provider configured for the delegation zone (rfc2136), None when there is none:
    then the customer is shown the record to publish, as before."""
    name = (zone or "").rstrip(".").lower()
    found = config.zones.get(name) if name else None
    return found if found is not None and found.provider == "rfc2136" else None


def policy_url(domain: str) -> str:
    return f"https://mta-sts.{domain}/.well-known/mta-sts.txt"


def plan_hosted(
    hosted: HostedDomain,
    zone: str,
    *,
    now: datetime,
    known_ids: Sequence[str] = (),
    text: str | None = None,
    max_age: int | None = None,
    action: str = SYNC_ACTION,
    remove: bool = False,
) -> PublishPlan:
    """The policy (``text``, default: what the store serves now) served and fetched as a sender
    would, then ``<domain>.<zone>`` TXT naming its id (RFC 8461 §8.1; checklist G5.1).

    The record may hold nothing or any id this domain was ever served with (``known_ids``):
    anything else was written by someone else and is never overwritten. A changed text gets
    the id the store will give it (``now``); the store's own one is published in the end.
    ``remove`` (``host remove --force`` before the wait is over): the record's removal, as
    after a decommission's wait."""
    expect: list[str | None] = [None]
    for known in dict.fromkeys([hosted.policy_id, *known_ids]):
        expect.append(format_sts_record(StsRecord(known)))
    name = record_name(hosted.domain, zone)
    if text is None and (remove or wanted_value(hosted, now) is None):
        # Decommissioned and its wait is over: the record goes, the policy stays for now.
        note = "decommission: every cached policy has expired; the TXT record goes first (G5.7)"
        if wanted_value(hosted, now) is not None:
            note = "removed before its wait is over (--force); the TXT record goes first (G5.7)"
        step = Step(StepKind.REMOVE_STS, name, None, expect=tuple(expect), note=note)
        return PublishPlan(hosted.domain, action, (step,))
    body = hosted.policy_text if text is None else text
    changes = body != hosted.policy_text
    policy_id = new_policy_id(now, previous=hosted.policy_id) if changes else hosted.policy_id
    steps = (
        Step(
            StepKind.POLICY,
            policy_url(hosted.domain),
            body,
            policy_id=policy_id,
            max_age=hosted.max_age if max_age is None else max_age,
            note="served here and fetched as a sender would, before its id is published",
        ),
        Step(
            StepKind.STS,
            name,
            format_sts_record(StsRecord(policy_id)),
            expect=tuple(expect),
            policy_id=policy_id,
            note=f"the delegation zone: _mta-sts.{hosted.domain} is a CNAME to this name",
        ),
    )
    return PublishPlan(hosted.domain, action, steps)


def hosted_text(
    hosted: HostedDomain, mode: str, patterns: Sequence[str], max_age: int
) -> tuple[str, int]:
    """(the body, its max_age) the hosted store serves for these values: its own rendering
    (line ends, pattern and max_age rules), so a run's policy step names the exact bytes."""
    from stspilot.store.hosting import check_mx_patterns, render_policy
    from stspilot.sts.policy import check_max_age

    age = check_max_age(max_age)
    text = render_policy(mode, check_mx_patterns(mode, patterns), age, crlf=hosted.crlf)
    return text, age


def delegation_from_env(config: Path | None = None) -> ZoneConfig | None:
    """The delegation zone (``$STSPILOT_TXT_DELEGATION_ZONE``) and its provider in the publish
    config (``config``, else the default one), None when either is missing."""
    import os

    from stspilot.publish.config import load_config

    zone = os.environ.get("STSPILOT_TXT_DELEGATION_ZONE", "")
    return delegation_zone(load_config(config), zone) if zone else None


def zone_label(zone: ZoneConfig) -> str:
    """The provider as the journal names it (no secrets)."""
    return Rfc2136Provider(zone.rfc2136()).label


CHANGED = "the hosted policy changed"
REMOVING = "the hosted domain is removed: its TXT record goes first (G5.7)"


def start_sync(
    store: Store,
    hosted: HostedDomain,
    zone: ZoneConfig,
    *,
    actor: str,
    now: datetime,
    reason: str = CHANGED,
    action: str = SYNC_ACTION,
    text: str | None = None,
    max_age: int | None = None,
    remove: bool = False,
) -> JournalRun:
    """Journal the run that carries ``hosted``'s policy to ``<domain>.<zone>`` (``plan_hosted``:
    the policy first, then its id; or the record's removal once a decommission's wait is over),
    every step planned, before anything changes. The one home of this rule: the web after every
    hosted policy change, ``host remove``, the monitor's repairs of a hosted domain and the
    bulk ``publish hosted-sync`` all start their runs here. ``text`` (a rollout action or a
    repair) is the body the run's policy step puts in the store; carry it out with
    ``carry_out(..., write=True)`` then."""
    from stspilot.publish.plan import check_order
    from stspilot.store.hosting import HostedPolicies
    from stspilot.store.journal import PublishJournal

    known = [v.policy_id for v in HostedPolicies(store).history(hosted.domain)[:50]]
    plan = plan_hosted(
        hosted, zone.zone, now=now, known_ids=known, text=text, max_age=max_age, action=action,
        remove=remove,
    )  # fmt: skip
    check_order(plan.steps)
    return PublishJournal(store).start(
        hosted.domain, action=plan.action, steps=[s.to_dict() for s in plan.steps], actor=actor,
        reason=reason, dns=zone_label(zone), destination=DELEGATED, now=now,
    )  # fmt: skip


def start_unconfigured(
    store: Store, domain: str, error: str, *, actor: str, now: datetime, reason: str = CHANGED
) -> JournalRun:
    """A run that cannot start (the publish config is broken), journaled as failed: that the
    record cannot follow shows where the journal shows."""
    from stspilot.store.journal import PublishJournal

    journal = PublishJournal(store)
    run = journal.start(
        domain, action=SYNC_ACTION, steps=[], actor=actor, reason=reason,
        dns="(not configured)", destination=DELEGATED, now=now,
    )  # fmt: skip
    journal.mark_run(run.id, "failed", now=now, error=f"publish config: {error}")
    return journal.get(run.id)


@dataclass(frozen=True, slots=True)
class Removal:
    """What stands between a decommissioned hosted domain and its removal: the journal run that
    removes its delegation TXT record (``started``: journaled just now, to be carried out)."""

    run: JournalRun
    started: bool


def removal_pending(
    store: Store,
    hosted: HostedDomain,
    zone: ZoneConfig,
    *,
    actor: str,
    now: datetime,
    force: bool = False,
) -> Removal | None:
    """Before a decommissioned hosted domain is removed, its TXT record in the delegation zone
    goes (checklist G5.7: the TXT record first, then the policy; else the record is an orphan
    naming a policy nobody serves). None when nothing stands in the way any more: a ``hosted-sync``
    run since the decommission wait ended removed the record and is done. Otherwise that run
    when it is unfinished (running, waiting or failed: finish it), or one journaled now.
    An abandoned run (superseded) removed nothing for sure and does not count. ``force``
    (``host remove --force``, the wait not over): the record goes all the same."""
    from stspilot.publish.plan import StepKind
    from stspilot.store.journal import PublishJournal

    since = hosted.remove_after or hosted.created_at
    for run in PublishJournal(store).runs(hosted.domain, limit=20):
        if run.action != SYNC_ACTION or run.created_at < since or run.state == "abandoned":
            continue
        if any(s.kind == StepKind.REMOVE_STS.value for s in run.steps):
            return None if run.state == "done" else Removal(run, False)
    run = start_sync(store, hosted, zone, actor=actor, now=now, remove=force, reason=REMOVING)
    return Removal(run, True)


async def carry_out(
    store: Store,
    zone: ZoneConfig,
    run: JournalRun,
    *,
    check: CheckOptions,
    clock: Callable[[], datetime],
    actor: str,
    reason: str,
    write: bool = False,
) -> JournalRun:
    """Carry out a run ``start_sync`` journaled (``Publisher.run``: each step intended, done,
    verified; raises ``PublishError`` after journaling a failure)."""
    async with open_hosted_publisher(
        store, zone, check=check, clock=clock, actor=actor, write=write, reason=reason
    ) as publisher:
        return await publisher.run(run)


def zone_of_run(run: JournalRun) -> str:
    """The delegation zone a ``hosted-delegation`` run writes to (from its TXT step's name)."""
    prefix = f"{run.domain}."
    for step in run.steps:
        name = str(step.target.get("name", ""))
        dns = step.kind in (StepKind.STS.value, StepKind.REMOVE_STS.value)
        if dns and name.startswith(prefix):
            return name[len(prefix) :].rstrip(".")
    raise PublishError(f"run {run.id} of {run.domain} names no delegation record", step="resume")


class DelegatedDestination:
    """The hosted store as the policy's place. ``write`` False (a sync after an edit): the store
    serves the body already, and a body changed since the plan means a newer edit whose own run
    follows, so this one stops rather than put the older body back. ``write`` True (a rollout
    action): the store is changed to the body (``mode: none`` decommissions)."""

    label = DELEGATED

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime],
        actor: str,
        write: bool,
        reason: str,
    ) -> None:
        from stspilot.store.hosting import HostedPolicies

        self.hosted = HostedPolicies(store)
        self.clock = clock
        self.actor = actor
        self.write = write
        self.reason = reason  # the hosting's history records why the policy changed

    async def put(self, change: PolicyChange) -> Served:
        return await asyncio.to_thread(self._put, change)

    def _put(self, change: PolicyChange) -> Served:
        try:
            current = self.hosted.get(change.domain)
            if current is None:
                raise PublishError(
                    f"{change.domain} is not hosted here any more",
                    step="policy hosted",
                    answer="not hosted",
                )
            if current.policy_text == change.text:
                return Served(current.policy_text, current.policy_id)
            if not self.write:
                raise PublishError(
                    f"the hosted policy of {change.domain} changed since this run was planned; "
                    "the run of that change publishes its id",
                    step="policy hosted",
                    answer="superseded",
                )
            now = self.clock()
            if change.mode == "none":
                done = self.hosted.decommission(change.domain, now=now, actor=self.actor)
            else:
                done = self.hosted.update(
                    change.domain, now=now, mode=change.mode, mx=list(change.mx),
                    max_age=change.max_age, reason=self.reason, actor=self.actor,
                )  # fmt: skip
        except (StoreError, ConfigError) as exc:
            raise PublishError(str(exc), step="policy hosted", answer="store") from None
        return Served(done.policy_text, done.policy_id)

    async def remove(self, domain: str) -> None:
        raise PublishError(
            f"{domain}: a hosted policy is removed by the hosting (decommission), not here",
            step="policy hosted",
            answer="refused",
        )


@asynccontextmanager
async def open_hosted_publisher(
    store: Store,
    zone: ZoneConfig,
    *,
    check: CheckOptions,
    clock: Callable[[], datetime],
    actor: str,
    write: bool,
    reason: str,
) -> AsyncIterator[Publisher]:
    """A ``Publisher`` for the delegation zone with the hosted store as the policy's place."""
    from stspilot.check.run import Probes
    from stspilot.publish.apply import Publisher
    from stspilot.store.journal import PublishJournal

    rfc = zone.rfc2136()
    provider = Rfc2136Provider(rfc)
    async with Probes(check) as probes:
        try:
            yield Publisher(
                journal=PublishJournal(store),
                provider=provider,
                destination=DelegatedDestination(
                    store, clock=clock, actor=actor, write=write, reason=reason
                ),
                fetcher=probes.fetcher,
                zone=zone.zone,
                primary=NameServer("primary", rfc.server, rfc.port),
                clock=clock,
                verify=VerifyOptions(timeout=float(zone.options.get("verify_timeout", 300))),
                nameserver_port=zone.nameserver_port,
            )
        finally:
            await provider.aclose()


def resume_delegated(
    store: Store,
    run: JournalRun,
    *,
    config: Path | None,
    check: CheckOptions,
    actor: str,
    clock: Callable[[], datetime] | None = None,
) -> JournalRun:
    """``publish resume`` of a ``hosted-delegation`` run: the provider of the zone its TXT
    step names; a sync after an edit only checks the policy, a rollout action writes it."""
    from stspilot.publish.config import load_config
    from stspilot.publish.session import utc_now

    zone_name = zone_of_run(run)
    zone = delegation_zone(load_config(config), zone_name)
    if zone is None:
        raise ConfigError(f'configure [zones."{zone_name}"] with provider = "rfc2136" first')

    async def main() -> JournalRun:
        async with open_hosted_publisher(
            store, zone, check=check, clock=clock or utc_now, actor=actor,
            write=run.action != SYNC_ACTION, reason=resume_reason(run),
        ) as publisher:  # fmt: skip
            return await publisher.resume(run.domain)

    return asyncio.run(main())


def resume_reason(run: JournalRun) -> str:
    """Why the hosting's history says the policy changed when ``publish resume`` carries out
    the rest of ``run``: the resume, the run and the run's own reason."""
    return f"stspilot publish resume of run {run.id} ({run.action}): {run.reason}"
