"""The monitor: re-check enrolled domains on a schedule, keep their history, alert on drift.

The database is the queue (style.md convention 10): ``run_once`` claims due domains with a
conditional UPDATE (``store.monitor.MonitorStore.claim``), checks them concurrently, stores
each check with ``store.checks.save_check``, turns the difference with the previous check into
alerts (``alerts.detect_changes``), delivers what the dedup table says is new
(``notify.deliver``) and sets the next run. A domain whose run fails is pushed forward with
exponential backoff, so it cannot crash-loop; a worker that dies loses its claims when the
lease runs out. The clock is a parameter; ``run_forever`` stops between rounds once ``stop``
is set (the CLI sets it on SIGTERM and SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stspilot.check.run import CheckOptions, Probes, check_domain, utc_now
from stspilot.errors import StoreError
from stspilot.monitor.notify import Notifier, deliver
from stspilot.monitor.repair import HealConfig, HealOutcome, heal_domain
from stspilot.store.heal import HealSettings, HealStore
from stspilot.store.monitor import Claim, MonitorStore, ScheduledDomain
from stspilot.store.retention import Retention
from stspilot.sts.names import domain_name, fold_name

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.monitor.alerts import Alert
    from stspilot.rollout.evidence import RolloutInputs
    from stspilot.store import Store
    from stspilot.tlsrpt.cadence import Cadence

Checker = Callable[[str], Awaitable["CheckResult"]]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """How often, how much at once, and whom to tell."""

    interval: timedelta = timedelta(hours=6)
    batch_size: int = 100
    concurrency: int = 20
    lease: timedelta = timedelta(minutes=15)  # longer than a batch can take (deadline 45 s)
    expiry_days: int = 14
    quiet: timedelta = timedelta(hours=24)  # a lasting alert is repeated at most this often
    retry_base: timedelta = timedelta(minutes=5)
    max_backoff: timedelta = timedelta(hours=24)
    report_days: int = 14  # the report window the rollout judgements read
    history_days: int = 60
    stuck_after_days: int = 30
    poll: float = 30.0  # seconds between looks at the queue when nothing is due
    enroll_hosted: bool = True
    worker: str = field(default_factory=default_worker_id)
    alerts: Notifier = field(default_factory=Notifier)
    # Old checks are thinned (store/retention.py) by ``run_forever`` once per ``thin_every``.
    retention: Retention = field(default_factory=Retention)
    thin_every: timedelta = timedelta(hours=24)
    # service.disk.low below this share of the store's disk, or these many bytes (the larger).
    disk_min_free_ratio: float = 0.10
    disk_min_free_bytes: int = 2 * 1024**3
    # Self-healing of opted-in domains (``stspilot monitor heal``); None: never repair.
    heal: HealConfig | None = field(default_factory=HealConfig)


@dataclass(frozen=True, slots=True)
class Tally:
    claimed: int = 0
    checked: int = 0
    failed: int = 0  # runs that raised (pushed forward with backoff)
    alerts: int = 0  # alerts detected
    sent: int = 0  # messages delivered (alerts, reminders and resolutions)
    delivery_errors: tuple[str, ...] = ()
    thinned: int = 0  # old checks dropped (store/retention.py)
    store_errors: tuple[str, ...] = ()  # thinning that failed (tried again next time)
    repaired: int = 0  # drifts self-healing repaired (monitor/repair.py)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.claimed + other.claimed,
            self.checked + other.checked,
            self.failed + other.failed,
            self.alerts + other.alerts,
            self.sent + other.sent,
            self.delivery_errors + other.delivery_errors,
            self.thinned + other.thinned,
            self.store_errors + other.store_errors,
            self.repaired + other.repaired,
        )


def backoff(failures: int, config: MonitorConfig) -> timedelta:
    """Delay after the ``failures``-th failure in a row: doubling from ``retry_base``."""
    step: timedelta = config.retry_base * (2 ** min(max(failures - 1, 0), 20))
    return min(step, config.max_backoff)


# --- the schedule ------------------------------------------------------------------------------


def add_domain(store: Store, domains: Sequence[str], *, now: datetime) -> list[str]:
    """Enrol ``domains`` (``ConfigError`` for a name that is not one); returns the new ones."""
    names = [domain_name(d) for d in domains]
    return MonitorStore(store).add(names, now=now)


def remove_domain(store: Store, domains: Sequence[str]) -> int:
    names = [fold_name(d) for d in domains]  # whatever was enrolled can be removed
    return MonitorStore(store).remove(names)


def list_domains(store: Store) -> list[ScheduledDomain]:
    return MonitorStore(store).scheduled()


def enroll_hosted(store: Store, *, now: datetime) -> list[str]:
    """Enrol every domain whose policy this installation hosts."""
    schedule = MonitorStore(store)
    return schedule.add(schedule.hosted_domains(), now=now)


# --- one round -----------------------------------------------------------------------------------


def _record(
    store: Store, result: CheckResult, config: MonitorConfig, now: datetime
) -> tuple[list[Alert], RolloutInputs]:
    """Save the check and compute its alerts (sync: runs in a thread); the rollout's inputs
    (live state and history) go on to self-healing."""
    from stspilot.monitor.alerts import detect_changes
    from stspilot.store.checks import rollout_inputs, save_check

    domain = result.domain
    previous = store.latest_check(domain)
    since = now - timedelta(days=config.history_days)
    inputs = rollout_inputs(
        store, domain, now, days=config.report_days, latest=result, history_since=since
    )
    assert inputs is not None  # given the check just run
    reporters = _reporter_cadence(store, domain, now)
    save_check(store, result)
    found = list(
        detect_changes(
            previous,
            result,
            now=now,
            expiry_days=config.expiry_days,
            history=inputs.history,
            reports=inputs.reports,
            stuck_after_days=config.stuck_after_days,
            reporters=reporters,
        )
    )
    return found, inputs


def _reporter_cadence(store: Store, domain: str, now: datetime) -> tuple[Cadence, ...]:
    """Each reporter's habit over the learning window (``tlsrpt.cadence``), from the store."""
    from stspilot.store.dashboard import DashboardReads
    from stspilot.tlsrpt.cadence import CADENCE_DAYS, learn_cadence

    seen = DashboardReads(store).reporter_days(
        domain, since=now - timedelta(days=CADENCE_DAYS), until=now
    )
    return learn_cadence(seen, today=now.date(), window_days=CADENCE_DAYS)


async def _run_domain(
    store: Store,
    schedule: MonitorStore,
    claim: Claim,
    domain: str,
    *,
    checker: Checker,
    config: MonitorConfig,
    now: datetime,
    options: CheckOptions,
    heal: HealSettings | None = None,
    pending: bool = True,
) -> Tally:
    from stspilot.monitor.alerts import Alert

    healed = HealOutcome()
    try:
        result = await checker(domain)
        found, inputs = await asyncio.to_thread(_record, store, result, config, now)
        alerts = [a for a in found if isinstance(a, Alert)]
        if heal is not None and config.heal is not None:
            healed = await heal_domain(
                store,
                heal,
                inputs.live,
                inputs.history,
                config=config.heal,
                options=options,
                now=now,
                actor=f"monitor ({config.worker})",
                pending=pending,
            )
            alerts += healed.alerts
        planned = await asyncio.to_thread(
            schedule.plan_alerts, domain, alerts, now=now, quiet=config.quiet
        )
        delivery = await deliver(planned, config.alerts)
        await asyncio.to_thread(
            schedule.record_alerts, domain, alerts, now=now, sent=delivery.delivered
        )
    except Exception as exc:  # one broken domain must not stop the round
        failures = await asyncio.to_thread(schedule.failures, domain) + 1
        error = f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(
            schedule.finish,
            claim,
            domain,
            now=now,
            next_run_at=now + backoff(failures, config),
            error=error,
        )
        return Tally(failed=1, delivery_errors=())
    # A first sighting of a drift is looked at again once the confirmation gap has passed.
    next_run = min(now + config.interval, healed.recheck_at or now + config.interval)
    await asyncio.to_thread(schedule.finish, claim, domain, now=now, next_run_at=next_run)
    return Tally(
        checked=1,
        repaired=healed.repaired,
        alerts=len(alerts),
        sent=len(delivery.delivered),
        delivery_errors=delivery.errors,
    )


async def _service_round(
    store: Store, schedule: MonitorStore, *, config: MonitorConfig, now: datetime
) -> Tally:
    """Alerts about the service itself (today: the store's disk filling up), delivered and
    remembered like a domain's, under the pseudo-domain ``alerts.SERVICE``."""
    from stspilot.monitor.alerts import SERVICE, disk_alerts
    from stspilot.store.stats import disk_space

    try:
        disk = await asyncio.to_thread(disk_space, store)
        alerts = (
            []
            if disk is None
            else disk_alerts(
                disk.free,
                disk.total,
                min_ratio=config.disk_min_free_ratio,
                min_bytes=config.disk_min_free_bytes,
            )
        )
        planned = await asyncio.to_thread(
            schedule.plan_alerts, SERVICE, alerts, now=now, quiet=config.quiet
        )
        delivery = await deliver(planned, config.alerts)
        await asyncio.to_thread(
            schedule.record_alerts, SERVICE, alerts, now=now, sent=delivery.delivered
        )
    except StoreError as exc:
        return Tally(store_errors=(f"service alerts: {exc}",))
    return Tally(alerts=len(alerts), sent=len(delivery.delivered), delivery_errors=delivery.errors)


async def run_once(
    store: Store,
    *,
    options: CheckOptions,
    now: datetime,
    alerts: Notifier | None = None,
    config: MonitorConfig | None = None,
    checker: Checker | None = None,
    only: Sequence[str] | None = None,
) -> Tally:
    """Claim the due domains (at most ``config.batch_size``), check them, alert; one round.

    ``checker`` replaces the live check (``check_domain`` with shared probes), e.g. to run a
    fixed set of results; ``alerts`` overrides ``config.alerts``; ``only`` checks these
    enrolled domains now, due or not (``stspilot monitor check``).
    """
    config = config or MonitorConfig()
    if alerts is not None:
        config = replace(config, alerts=alerts)
    schedule = MonitorStore(store)
    if config.enroll_hosted and not only:
        await asyncio.to_thread(enroll_hosted, store, now=now)
    service = await _service_round(store, schedule, config=config, now=now)
    claim = await asyncio.to_thread(
        schedule.claim,
        now=now,
        worker=config.worker,
        limit=len(only) if only else config.batch_size,
        lease=config.lease,
        only=only,
    )
    if not claim.domains:
        return service
    probes: Probes | None = None
    if checker is None:
        # The stored check's "expiring" findings and the alerts use one threshold.
        options = replace(options, expiry_warning_days=config.expiry_days)
        probes = Probes(options)
        shared = probes

        async def live(domain: str) -> CheckResult:
            return await check_domain(domain, probes=shared, options=options, now=lambda: now)

        checker = live
    gate = asyncio.Semaphore(max(1, config.concurrency))
    chosen = checker
    opted: dict[str, HealSettings] = {}
    pending: set[str] = set()
    if config.heal is not None:
        healing = HealStore(store)
        opted = {h.domain: h for h in await asyncio.to_thread(healing.all_settings)}
        if opted:
            pending = await asyncio.to_thread(healing.pending_domains)

    async def one(domain: str) -> Tally:
        async with gate:
            return await _run_domain(
                store,
                schedule,
                claim,
                domain,
                checker=chosen,
                config=config,
                now=now,
                options=options,
                heal=opted.get(domain),
                pending=domain in pending,
            )

    try:
        tallies = await asyncio.gather(*(one(d) for d in claim.domains))
    finally:
        if probes is not None:
            await probes.aclose()
    total = Tally(claimed=len(claim.domains)) + service
    for t in tallies:
        total += t
    return total


async def run_forever(
    store: Store,
    *,
    options: CheckOptions,
    config: MonitorConfig,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = utc_now,
    on_round: Callable[[Tally], None] | None = None,
) -> Tally:
    """Rounds until ``stop`` is set; a full batch is followed at once by the next round.
    Old checks are thinned at the start and then once per ``config.thin_every``, beside the
    rounds (a first thinning of a large history takes a while: the checks do not wait for
    it); its outcome is counted in the round during which it ends."""
    total = Tally()
    thinned_at: datetime | None = None
    thinning: asyncio.Task[tuple[int, int]] | None = None
    cancel = threading.Event()  # ends a thinning between two domains when we stop

    def thinned() -> Tally:
        nonlocal thinning
        if thinning is None or not thinning.done():
            return Tally()
        task, thinning = thinning, None
        try:
            return Tally(thinned=task.result()[1])
        except StoreError as exc:  # e.g. the database busy: tried again next time
            return Tally(store_errors=(f"thinning old checks failed: {exc}",))

    try:
        while not stop.is_set():
            now = clock()
            if thinning is None and (thinned_at is None or now - thinned_at >= config.thin_every):
                thinned_at = now
                thinning = asyncio.create_task(
                    asyncio.to_thread(
                        store.thin_checks, now=now, retention=config.retention, cancel=cancel
                    )
                )
            tally = await run_once(store, options=options, now=clock(), config=config)
            tally += thinned()
            total += tally
            if on_round is not None and (tally.claimed or tally.thinned or tally.store_errors):
                on_round(tally)
            if tally.claimed >= config.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=config.poll)
    finally:
        if thinning is not None:  # a thread cannot be cancelled: it stops after its domain
            cancel.set()
            await asyncio.wait([thinning])
            late = thinned()
            total += late
            if on_round is not None and (late.thinned or late.store_errors):
                on_round(late)
    return total
