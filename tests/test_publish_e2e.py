"""End to end: none -> reporting -> testing -> enforce -> rollback -> decommission against a BIND
primary, a Knot secondary (NOTIFY/AXFR) and an HTTPS policy host serving a web root, with
``stspilot check`` (the library's check) after each step and a watcher polling every 100 ms
that must never see an orphan; SIGKILL after each step in turn, then resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from publish_support import MX, ZONE, HostedStorePolicies, Lab, Watcher, make_lab
from stspilot.check.evaluate import CheckResult
from stspilot.check.run import Probes, check_domains
from stspilot.errors import PublishError
from stspilot.publish.apply import Publisher
from stspilot.publish.plan import (
    PublishPlan,
    StepKind,
    Target,
    plan_decommission,
    plan_publication,
    plan_reporting,
)
from stspilot.publish.session import open_publisher
from stspilot.store.journal import PublishJournal

pytestmark = pytest.mark.slow
CHILD = Path(__file__).with_name("publish_child.py")


@pytest.fixture
async def lab(tmp_path: Path, store_url: str) -> AsyncIterator[Lab]:
    async for made in make_lab(tmp_path, store_url):
        yield made


async def check(lab: Lab) -> CheckResult:
    (result,) = await check_domains([ZONE], options=lab.check)
    return result


async def carry_out(publisher: Publisher, plan: PublishPlan) -> None:
    run = publisher.start(plan, actor="test")
    done = await publisher.run(run)
    assert done.state == "done", done


async def test_the_whole_journey_never_shows_an_orphan(lab: Lab) -> None:
    stop = asyncio.Event()
    async with (
        open_publisher(lab.store, lab.config, check=lab.check, clock=lab.clock) as publisher,
        Probes(lab.check) as probes,
    ):
        servers = await publisher.servers()
        assert len(servers) == 2  # the primary and the secondary, from the NS set
        watcher = Watcher(servers, probes.fetcher, ZONE)
        watching = asyncio.create_task(watcher.run(stop))
        try:
            # none -> reporting: the TLS-RPT record only.
            first = lab.pub("testing", 2)
            await carry_out(publisher, plan_reporting(await publisher.read_live(ZONE), first))
            seen = await check(lab)
            assert seen.tlsrpt.record is not None and seen.sts_record is None

            # reporting -> testing -> enforce -> rollback: policy first, then the id.
            for mode, age in (("testing", 2), ("enforce", 3), ("testing", 2)):
                pub = lab.pub(mode, age)
                watcher.expect(pub.policy_id, pub.policy_text)
                plan = plan_publication(await publisher.read_live(ZONE), pub, action=mode)
                assert [s.kind for s in plan.steps] == [StepKind.POLICY, StepKind.STS]
                await carry_out(publisher, plan)
                seen = await check(lab)
                assert seen.sts_record is not None and seen.sts_record.id == pub.policy_id
                assert seen.policy is not None and seen.policy.mode == mode
                assert seen.policy_source == pub.policy_text

            # decommission: none served with a new id, kept for the longest max_age (3 s, from
            # the journal), TXT removed, its TTL waited out, then the policy.
            none = lab.pub("none", 1)
            watcher.expect(none.policy_id, none.policy_text)
            live = await publisher.read_live(ZONE)
            assert live.served_max_age == 3
            plan = plan_decommission(live, none, now=lab.clock())
            run = await publisher.run(publisher.start(plan, actor="test"))
            assert run.state == "waiting"  # the TXT TTL (3600 s) is past the inline limit
            seen = await check(lab)
            assert seen.sts_record is None and seen.policy is not None  # policy kept for now
            lab.offset[0] += 3601  # an hour later
            done = await publisher.resume(ZONE)
            assert done.state == "done"
            seen = await check(lab)
            assert seen.sts_record is None and seen.policy is None
        finally:
            stop.set()
            await watching
    assert watcher.polls > 20
    assert watcher.violations == []
    runs = PublishJournal(lab.store).runs(ZONE)
    assert [r.action for r in reversed(runs)] == [
        "reporting",
        "testing",
        "enforce",
        "testing",
        "decommission",
    ]
    assert all(s.state == "verified" for r in runs for s in r.steps)


async def test_a_provider_outage_stops_at_the_step_and_resume_finishes(lab: Lab) -> None:
    impatient = replace(
        lab.config,
        zone=replace(lab.config.zone, options={**lab.config.zone.options, "timeout": 0.5}),
    )
    pub = lab.pub("testing", 2)
    async with open_publisher(lab.store, impatient, check=lab.check, clock=lab.clock) as p:
        plan = plan_publication(await p.read_live(ZONE), pub)
        run = p.start(plan, actor="test")
        lab.world.primary.pause()  # the primary hangs: the TLS-RPT step cannot be written
        try:
            with pytest.raises(PublishError) as caught:
                await p.run(run)
        finally:
            lab.world.primary.resume()
        assert "step 1 (set _smtp._tls.example.test." in str(caught.value)
        assert "no answer within 0.5s" in str(caught.value)
        assert "resume: stspilot publish resume example.test" in str(caught.value)
        failed = PublishJournal(lab.store).get(run.id)
        assert failed.state == "failed" and failed.steps[0].state == "failed"
        assert failed.steps[1].state == "planned"
        assert not (lab.webroot / ".well-known" / "mta-sts.txt").exists()  # nothing further
        done = await p.resume(ZONE)
        assert done.state == "done"
    seen = await check(lab)
    assert seen.sts_record is not None and seen.sts_record.id == pub.policy_id


async def test_hosted_policy_gets_its_id_from_the_store(lab: Lab) -> None:
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies

    hosted = HostedPolicies(lab.store)
    tenant = Accounts(lab.store).add_tenant("acme", now=lab.clock())
    hosted.add(ZONE, tenant_id=tenant.id, mode="testing", mx=MX, now=lab.clock(), max_age=2)
    lab.host.policies = HostedStorePolicies(lab.store)
    config = replace(lab.config, policy="hosted")
    async with open_publisher(lab.store, config, check=lab.check, clock=lab.clock) as p:
        for mode in ("testing", "enforce"):
            pub = lab.pub(mode, 2)
            await carry_out(p, plan_publication(await p.read_live(ZONE), pub, action=mode))
            now = hosted.require(ZONE)
            (seen,) = await check_domains([ZONE], options=lab.check)
            assert now.mode == mode
            assert seen.sts_record is not None and seen.sts_record.id == now.policy_id
            assert seen.policy_source == now.policy_text
        again = await p.plan_for(Target("enforce", pub), now=lab.clock())
        # The store serves LF line ends, the publication CRLF: planned as a change, but the
        # store keeps the same body and id, so the TXT step writes nothing.
        assert [s.kind for s in again.steps] == [StepKind.POLICY, StepKind.STS]
        run = await p.run(p.start(again, actor="test"))
        assert run.state == "done" and hosted.require(ZONE).policy_id == now.policy_id
        assert run.steps[1].outcome is not None and run.steps[1].outcome["written"] is False


async def test_a_name_outside_the_zone_fails_the_step_not_the_process(lab: Lab) -> None:
    from stspilot.publish.plan import Step

    async with open_publisher(lab.store, lab.config, check=lab.check, clock=lab.clock) as p:
        stray = Step(StepKind.TLSRPT, "_smtp._tls.other.test.", "v=TLSRPTv1; rua=mailto:a@b.c")
        run = p.start(PublishPlan("other.test", "reporting", (stray,)), actor="test")
        with pytest.raises(PublishError, match=r"not in the configured zone example\.test"):
            await p.run(run)
    failed = PublishJournal(lab.store).get(run.id)
    assert failed.state == "failed" and failed.steps[0].state == "failed"
    assert failed.error is not None and "stspilot publish resume other.test" in failed.error


async def test_a_superseded_run_stops_before_writing(lab: Lab) -> None:
    async with open_publisher(lab.store, lab.config, check=lab.check, clock=lab.clock) as p:
        live = await p.read_live(ZONE)
        first = p.start(plan_publication(live, lab.pub("testing", 2)), actor="one")
        second = p.start(plan_publication(live, lab.pub("enforce", 2)), actor="two")
        with pytest.raises(PublishError, match=f"run {first.id} .* superseded"):
            await p.run(first)
        assert not (lab.webroot / ".well-known" / "mta-sts.txt").exists()
        done = await p.run(second)
        assert done.state == "done"
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "enforce"


def _child_env(lab: Lab, plan: PublishPlan, crash: tuple[int, str] | None) -> dict[str, str]:
    spec = {
        "db": str(lab.store.engine.url.render_as_string(hide_password=False)),
        "zone": dict(lab.config.zone.options),
        "policy": lab.config.policy,
        "check": {
            "nameserver": lab.check.nameserver,
            "dns_port": lab.check.dns_port,
            "ca_file": str(lab.check.ca_file),
            "https_port": lab.check.port_map[443],
        },
        "plan": plan.to_dict(),
        "crash": list(crash) if crash else None,
    }
    return {**os.environ, "PUBLISH_CHILD_SPEC": json.dumps(spec)}


@pytest.mark.parametrize("state", ["done", "verified"])
async def test_sigkill_after_each_step_then_resume(lab: Lab, state: str) -> None:
    stop = asyncio.Event()
    async with (
        open_publisher(lab.store, lab.config, check=lab.check, clock=lab.clock) as publisher,
        Probes(lab.check) as probes,
    ):
        watcher = Watcher(await publisher.servers(), probes.fetcher, ZONE)
        watching = asyncio.create_task(watcher.run(stop))
        try:
            for mode in ("testing", "enforce"):
                pub = lab.pub(mode, 2)
                watcher.expect(pub.policy_id, pub.policy_text)
                plan = plan_publication(await publisher.read_live(ZONE), pub)
                for seq in range(len(plan.steps)):
                    env = _child_env(lab, plan, (seq, state) if seq == 0 else None)
                    if seq > 0:  # later crashes resume the same run
                        env = _child_env(lab, PublishPlan(ZONE, "resume", ()), (seq, state))
                    child = await asyncio.create_subprocess_exec(
                        sys.executable, str(CHILD), env=env
                    )
                    assert await child.wait() == -signal.SIGKILL
                    open_run = PublishJournal(lab.store).open_run(ZONE)
                    assert open_run is not None and open_run.state == "running"
                    assert open_run.steps[seq].state == state
                done = await publisher.resume(ZONE)
                assert done.state == "done"
                seen = await check(lab)
                assert seen.sts_record is not None and seen.sts_record.id == pub.policy_id
                assert seen.policy_source == pub.policy_text
        finally:
            stop.set()
            await watching
    assert watcher.violations == []
