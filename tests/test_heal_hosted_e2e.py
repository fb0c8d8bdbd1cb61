"""The monitor's MX sync of a policy hosted here, whose TXT record the operator keeps in the
delegation zone (Knot primary + secondary serving the customer's zone and ``deleg.test``, the
HTTPS policy host serving the hosted store): the repair changes the hosted policy and publishes
its new id at ``<domain>.deleg.test`` in one journaled run (actor the monitor), policy first,
each step verified, through the hosted sync's own path (``publish/hosted.py``). Before, the id
went to ``_mta-sts.<domain>`` (a CNAME) and failed there, after the policy had changed: senders
kept the old policy under the old id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pubweb_support import DELEGATION, PubWorld, pub_world
from stspilot.monitor.loop import MonitorConfig, add_domain, run_once
from stspilot.monitor.repair import HealConfig
from stspilot.publish.config import DomainConfig, ZoneConfig, load_config
from stspilot.publish.hosted import carry_out, delegation_zone, start_sync
from stspilot.store import Store
from stspilot.store.heal import HealStore
from stspilot.store.hosting import HostedPolicies
from stspilot.store.journal import PublishJournal
from stspilot.store.monitor import MonitorStore

pytestmark = [pytest.mark.slow, pytest.mark.db]
DOMAIN = "example.com"  # hosted with mx1 and mx2; its zone's MX names mx1 only
MINUTE = timedelta(minutes=1)


@pytest.fixture
def pw(tmp_path: Path, store: Store) -> Iterator[PubWorld]:
    yield from pub_world(tmp_path, store)


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_hosted_mx_sync_publishes_its_id_in_the_delegation_zone(
    pw: PubWorld, store: Store
) -> None:
    zone = delegation_zone(load_config(pw.config), DELEGATION)
    assert zone is not None
    hosting = HostedPolicies(store)
    before = hosting.require(DOMAIN)
    assert list(before.mx) == ["mx1.example.com", "mx2.example.com"]
    # The record names the policy served (the hosted sync after the domain was added).
    first = await asyncio.to_thread(
        lambda: start_sync(store, before, zone, actor="test", now=now())
    )
    synced = await carry_out(
        store, zone, first, check=pw.check, clock=now, actor="test", reason="test"
    )
    assert synced.state == "done" and pw.txt(DOMAIN) == [before.sts_txt_value]
    # An operator who configured the customer's own zone too, with the hosted store as the
    # policy's place: the repair must still publish the id where senders read it.
    own = DomainConfig(DOMAIN, ZoneConfig(DOMAIN, "rfc2136", dict(zone.options)), "hosted", 20)
    heal = HealConfig(min_gap=10 * MINUTE, configs=lambda d: own, delegation=lambda: zone)
    config = MonitorConfig(enroll_hosted=False, heal=heal)
    options = replace(pw.check, allow_private=True)
    add_domain(store, [DOMAIN], now=now())
    HealStore(store).opt_in(DOMAIN, now=now(), actor="test", mx_sync=True)
    t0 = now()
    tally = await run_once(store, options=options, now=t0, config=config, only=[DOMAIN])
    assert tally.checked == 1 and tally.repaired == 0  # seen once: not yet
    assert hosting.require(DOMAIN).policy_id == before.policy_id
    tally = await run_once(store, options=options, now=t0 + 11 * MINUTE, config=config)
    codes = {a["code"]: a["message"] for a in MonitorStore(store).open_alerts(DOMAIN)}
    assert tally.repaired == 1, codes
    after = hosting.require(DOMAIN)
    assert list(after.mx) == ["mx1.example.com"] and after.policy_id != before.policy_id
    # The new id is published where the customer's _mta-sts CNAME points, verified there.
    assert pw.txt(DOMAIN) == [after.sts_txt_value]
    (run,) = [r for r in PublishJournal(store).runs(DOMAIN) if r.actor.startswith("monitor")]
    assert run.state == "done" and run.action == "heal-mx", run
    assert run.destination == "hosted-delegation"
    assert run.reason.startswith("self-heal (mx-drift)")
    policy, sts = run.steps
    assert (policy.kind, policy.state, sts.kind, sts.state) == (
        "policy",
        "verified",
        "sts",
        "verified",
    )
    assert policy.verified_at is not None and sts.intended_at is not None
    assert policy.verified_at <= sts.intended_at  # never an id before its policy is served
    assert sts.target["name"] == f"{DOMAIN}.{DELEGATION}."
    assert sts.target["value"] == after.sts_txt_value
    changed = hosting.history(DOMAIN)[0]
    assert changed.policy_id == after.policy_id and changed.actor == run.actor
    assert "heal.repaired" in codes
    # Nothing left to repair: the next checks see the policy and its id in line.
    tally = await run_once(store, options=options, now=t0 + 30 * MINUTE, config=config)
    assert tally.repaired == 0 and HealStore(store).sightings(DOMAIN) == {}
