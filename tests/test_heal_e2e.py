"""Monitor self-healing end to end: ``run_once`` rounds with the live check against a BIND
primary, a Knot secondary and an HTTPS web root, the repair carried out through publish (the
journal's actor the monitor) while the 100 ms orphan watcher polls; one changed answer never
triggers a repair, two consecutive ones at least --heal-after apart do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mx_support import switch_mx
from publish_support import ZONE, Lab, Watcher, make_lab
from stspilot.check.run import Probes, check_domains
from stspilot.monitor.loop import MonitorConfig, Tally, add_domain, list_domains, run_once
from stspilot.monitor.repair import HealConfig
from stspilot.publish.config import DomainConfig
from stspilot.publish.plan import plan_publication
from stspilot.publish.session import open_publisher
from stspilot.rollout.generate import generate
from stspilot.store import Store
from stspilot.store.heal import HealStore
from stspilot.store.journal import PublishJournal
from stspilot.store.monitor import MonitorStore

pytestmark = pytest.mark.slow
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def lab(tmp_path: Path, store_url: str) -> AsyncIterator[Lab]:
    lines = ("mx2 A 127.0.0.10", "mx3 A 127.0.0.11")
    async for made in make_lab(tmp_path, store_url, zone_lines=lines):
        yield made


async def publish(lab: Lab, mode: str, max_age: int = 2, mx: tuple[str, ...] = ()) -> str:
    pub = lab.pub(mode, max_age)
    if mx:
        pub = generate(
            ZONE, mx_hosts=mx, mode=mode, now=lab.clock(), max_age=max_age, previous_id=lab.last_id
        )
        lab.last_id = pub.policy_id
    async with open_publisher(lab.store, lab.config, check=lab.check, clock=lab.clock) as p:
        run = await p.run(p.start(plan_publication(await p.read_live(ZONE), pub), actor="test"))
    assert run.state == "done"
    return pub.policy_text


def monitor(lab: Lab, publish: DomainConfig | None = None) -> MonitorConfig:
    chosen = publish or lab.config
    return MonitorConfig(
        enroll_hosted=False,
        heal=HealConfig(min_gap=10 * MINUTE, configs=lambda d: chosen, clock=lab.clock),
    )


async def round_at(
    lab: Lab,
    store: Store,
    when: datetime,
    *,
    publish: DomainConfig | None = None,
    nameserver: str = "",
) -> Tally:
    options = replace(lab.check, allow_private=True, nameserver=nameserver or lab.check.nameserver)
    config = monitor(lab, publish)
    return await run_once(store, options=options, now=when, config=config, only=[ZONE])


def monitor_runs(store: Store) -> list[object]:
    return [r for r in PublishJournal(store).runs(ZONE) if r.actor.startswith("monitor")]


def open_codes(store: Store) -> list[str]:
    return [a["code"] for a in MonitorStore(store).open_alerts(ZONE)]


async def test_one_changed_answer_never_repairs_two_consecutive_ones_do(
    lab: Lab, store_url: str
) -> None:
    body = await publish(lab, "enforce")
    policy_file = lab.webroot / ".well-known" / "mta-sts.txt"
    edited = body.replace("max_age: 2", "max_age: 5")
    assert edited != body
    add_domain(lab.store, [ZONE], now=lab.clock())
    HealStore(lab.store).opt_in(ZONE, now=lab.clock(), actor="test", id_bump=True)
    stop = asyncio.Event()
    t0 = lab.clock()
    async with (
        Probes(lab.check) as probes,
        open_publisher(lab.store, lab.config, check=lab.check) as publisher,
    ):
        watcher = Watcher(await publisher.servers(), probes.fetcher, ZONE)
        watching = asyncio.create_task(watcher.run(stop))
        try:
            assert (await round_at(lab, lab.store, t0)).checked == 1  # the id's first body
            # One changed answer: seen once, recorded, looked at again 10 minutes later.
            policy_file.write_text(edited)
            tally = await round_at(lab, lab.store, t0 + MINUTE)
            assert tally.repaired == 0 and monitor_runs(lab.store) == []
            assert "heal.pending" in open_codes(lab.store)
            (row,) = list_domains(lab.store)
            assert row.next_run_at == t0 + MINUTE + 10 * MINUTE  # not in 6 hours
            # Transient: the next check sees the old body again, and the sighting is gone.
            policy_file.write_text(body)
            assert (await round_at(lab, lab.store, t0 + 12 * MINUTE)).repaired == 0
            assert HealStore(lab.store).sightings(ZONE) == {}
            # Changed again: a first sighting once more, however long ago the last one was.
            policy_file.write_text(edited)
            assert (await round_at(lab, lab.store, t0 + 13 * MINUTE)).repaired == 0
            # A restarted monitor (a new store handle) counts on: seen twice, 2 minutes apart
            # only, so still nothing.
            with Store.open(store_url) as again:
                assert (await round_at(lab, again, t0 + 15 * MINUTE)).repaired == 0
                (seen,) = HealStore(again).sightings(ZONE).values()
                assert seen.checks == 2
            assert monitor_runs(lab.store) == []
            # Every check since 13 min saw it; this one is 11 minutes after the first: repair.
            tally = await round_at(lab, lab.store, t0 + 24 * MINUTE)
            assert tally.repaired == 1
            (run,) = monitor_runs(lab.store)
            assert run.state == "done" and run.action == "heal-id"
            assert run.reason.startswith("self-heal (id-not-bumped)")
            assert "seen in 3 consecutive checks" in run.reason
            assert [s.state for s in run.steps] == ["verified", "verified"]
            assert "heal.repaired" in open_codes(lab.store)
            (checked,) = await check_domains([ZONE], options=lab.check)
            assert checked.sts_record is not None
            assert checked.sts_record.id == run.steps[1].target["policy_id"]
            assert checked.policy_source == edited
            # The new id is announced with this body: nothing to repair any more.
            assert (await round_at(lab, lab.store, t0 + 40 * MINUTE)).repaired == 0
            assert HealStore(lab.store).sightings(ZONE) == {}
            assert len(monitor_runs(lab.store)) == 1
        finally:
            stop.set()
            await watching
    # The watcher looked throughout (every 100 ms; fewer looks on a loaded machine) and never
    # saw an orphan.
    assert watcher.polls >= 2 and watcher.violations == []


async def test_mx_sync_widens_then_narrows_and_the_gate_refuses_an_unprobed_host(
    lab: Lab,
) -> None:
    await publish(lab, "testing")
    add_domain(lab.store, [ZONE], now=lab.clock())
    HealStore(lab.store).opt_in(ZONE, now=lab.clock(), actor="test", mx_sync=True)
    t0 = lab.clock()
    await round_at(lab, lab.store, t0)
    # The operator adds mx2: after two checks 10 minutes apart the policy covers it.
    await switch_mx(lab, ["mx1.example.test", "mx2.example.test"])
    await asyncio.sleep(1)  # the secondary's transfer
    assert (await round_at(lab, lab.store, t0 + MINUTE)).repaired == 0
    assert (await round_at(lab, lab.store, t0 + 11 * MINUTE)).repaired == 1
    (checked,) = await check_domains([ZONE], options=lab.check)
    assert checked.policy is not None
    assert list(checked.policy.mx) == ["mx1.example.test", "mx2.example.test"]
    # mx1 leaves the MX set: only then its line goes.
    await switch_mx(lab, ["mx2.example.test"])
    await asyncio.sleep(1)
    assert (await round_at(lab, lab.store, t0 + 20 * MINUTE)).repaired == 0
    assert (await round_at(lab, lab.store, t0 + 31 * MINUTE)).repaired == 1
    (checked,) = await check_domains([ZONE], options=lab.check)
    assert checked.policy is not None and list(checked.policy.mx) == ["mx2.example.test"]
    runs = monitor_runs(lab.store)
    assert [r.action for r in runs] == ["heal-mx", "heal-mx"]
    assert all(r.state == "done" and "mx-drift" in r.reason for r in runs)
    # Under enforce a host the monitor has not seen pass STARTTLS is never added.
    await publish(lab, "enforce", mx=("mx2.example.test",))
    await switch_mx(lab, ["mx2.example.test", "mx3.example.test"])
    await asyncio.sleep(1)
    await round_at(lab, lab.store, t0 + 40 * MINUTE)
    assert (await round_at(lab, lab.store, t0 + 51 * MINUTE)).repaired == 0
    alerts = MonitorStore(lab.store).open_alerts(ZONE)
    (refused,) = [a for a in alerts if a["code"] == "heal.refused"]
    assert "gate refused" in refused["message"] and "mx3.example.test" in refused["message"]
    assert "mx2.example.test (" not in refused["message"]  # only the host to add is judged
    assert len(monitor_runs(lab.store)) == 2  # nothing new was written
    (checked,) = await check_domains([ZONE], options=lab.check)
    assert checked.policy is not None and list(checked.policy.mx) == ["mx2.example.test"]


async def test_an_open_publish_run_is_never_superseded_by_a_repair(lab: Lab) -> None:
    from stspilot.publish.migrate import plan_mx_migration

    await publish(lab, "testing")
    add_domain(lab.store, [ZONE], now=lab.clock())
    HealStore(lab.store).opt_in(ZONE, now=lab.clock(), actor="test", mx_sync=True)
    async with open_publisher(
        lab.store, lab.config, check=lab.check, clock=lab.clock, max_inline_wait=1
    ) as p:
        live, mx = await p.read_live(ZONE), await p.read_mx(ZONE)
        plan = plan_mx_migration(
            live,
            mx_now=mx.hosts,
            mx_ttl=mx.ttl,
            new_hosts=["mx2.example.test"],
            rua=[],
            now=lab.clock(),
        )
        run = await p.run(p.start(plan, actor="operator"))
    assert run.state == "waiting"  # the widened policy lists mx2, which no MX names yet
    t0 = lab.clock()
    await round_at(lab, lab.store, t0)
    await round_at(lab, lab.store, t0 + 11 * MINUTE)
    alerts = MonitorStore(lab.store).open_alerts(ZONE)
    (refused,) = [a for a in alerts if a["code"] == "heal.refused"]
    assert f"publish run {run.id} (mx-migration by operator) is waiting" in refused["message"]
    again = PublishJournal(lab.store).open_run(ZONE)
    assert again is not None and again.id == run.id and again.state == "waiting"


async def test_a_provider_failure_is_alerted_and_tried_again_after_two_more_checks(
    lab: Lab,
) -> None:
    body = await publish(lab, "enforce")
    policy_file = lab.webroot / ".well-known" / "mta-sts.txt"
    add_domain(lab.store, [ZONE], now=lab.clock())
    HealStore(lab.store).opt_in(ZONE, now=lab.clock(), actor="test", id_bump=True)
    zone = lab.config.zone
    impatient = replace(lab.config, zone=replace(zone, options={**zone.options, "timeout": 0.5}))
    assert lab.world.secondary is not None
    via_secondary = lab.world.secondary.address  # the checks still see the zone
    t0 = lab.clock()
    await round_at(lab, lab.store, t0, nameserver=via_secondary)
    policy_file.write_text(body.replace("max_age: 2", "max_age: 7"))
    await round_at(lab, lab.store, t0 + MINUTE, nameserver=via_secondary)
    lab.world.primary.pause()  # the provider hangs during the confirming round
    try:
        tally = await round_at(
            lab, lab.store, t0 + 12 * MINUTE, publish=impatient, nameserver=via_secondary
        )
    finally:
        lab.world.primary.resume()
    assert tally.checked == 1 and tally.repaired == 0
    (failed,) = [a for a in MonitorStore(lab.store).open_alerts(ZONE) if a["code"] == "heal.failed"]
    assert "repairing the id failed" in failed["message"]
    assert "no answer within 0.5s" in failed["message"]
    assert monitor_runs(lab.store) == [] and HealStore(lab.store).sightings(ZONE) == {}
    # Tried again only once two more checks, 10 minutes apart, confirm it.
    assert (await round_at(lab, lab.store, t0 + 13 * MINUTE)).repaired == 0
    assert (await round_at(lab, lab.store, t0 + 24 * MINUTE)).repaired == 1
    (run,) = monitor_runs(lab.store)
    assert run.state == "done"
