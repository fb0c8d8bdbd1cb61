"""The MX-migration runbook carried out against a BIND primary, a Knot secondary and an HTTPS
web root: widen the policy, wait its max_age, the operator switches MX (a signed UPDATE) and
stspilot verifies it at both servers, wait the old MX TTL, narrow. Two watchers poll every
100 ms: no ``id`` without its policy, and no live MX outside a policy a sender may still cache.
SIGKILL after each step in turn, then resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mx_support import CoverageWatcher, switch_mx
from publish_support import ZONE, Lab, Watcher, make_lab
from stspilot.check.run import Probes, check_domains
from stspilot.cli import main
from stspilot.publish.apply import Publisher
from stspilot.publish.migrate import plan_mx_migration
from stspilot.publish.plan import PublishPlan, StepKind, plan_publication
from stspilot.publish.session import open_publisher
from stspilot.store.journal import PublishJournal

pytestmark = pytest.mark.slow
CHILD = Path(__file__).with_name("publish_child.py")
OLD, NEW = "mx1.example.test", "mx2.example.test"
KINDS = [
    StepKind.POLICY,
    StepKind.STS,
    StepKind.WAIT,
    StepKind.MX,
    StepKind.WAIT,
    StepKind.POLICY,
    StepKind.STS,
]


@pytest.fixture
async def lab(tmp_path: Path, store_url: str) -> AsyncIterator[Lab]:
    async for made in make_lab(tmp_path, store_url, zone_lines=("mx2 A 127.0.0.10",)):
        yield made


async def start_enforcing(lab: Lab, publisher: Publisher) -> None:
    pub = lab.pub("enforce", 2)
    run = await publisher.run(
        publisher.start(plan_publication(await publisher.read_live(ZONE), pub), actor="test")
    )
    assert run.state == "done"


async def migration(lab: Lab, publisher: Publisher) -> PublishPlan:
    live = await publisher.read_live(ZONE)
    mx = await publisher.read_mx(ZONE)
    assert mx.hosts == (OLD,) and mx.ttl == 300
    return plan_mx_migration(
        live, mx_now=mx.hosts, mx_ttl=mx.ttl, new_hosts=[NEW], rua=[], now=lab.clock()
    )


def wait_seconds(plan: PublishPlan, seq: int) -> int:
    assert plan.steps[seq].kind is StepKind.WAIT
    return plan.steps[seq].seconds


async def test_mx_migration_never_leaves_the_live_mx_outside_a_cached_policy(lab: Lab) -> None:
    stop = asyncio.Event()
    async with (
        open_publisher(
            lab.store, lab.config, check=lab.check, clock=lab.clock, max_inline_wait=3
        ) as publisher,
        Probes(lab.check) as probes,
    ):
        await start_enforcing(lab, publisher)
        servers = await publisher.servers()
        orphans = Watcher(servers, probes.fetcher, ZONE)
        cover = CoverageWatcher(servers, probes.fetcher, lab.clock)
        tasks = [asyncio.create_task(w.run(stop)) for w in (orphans, cover)]
        try:
            plan = await migration(lab, publisher)
            assert [s.kind for s in plan.steps] == KINDS
            for step in plan.steps:
                if step.kind is StepKind.POLICY:
                    assert step.value is not None
                    orphans.expect(step.policy_id, step.value)
            # 1-2: the widened policy and its id; 3: the max_age wait pauses the run.
            run = await publisher.run(publisher.start(plan, actor="test"))
            assert run.state == "waiting" and run.steps[2].state == "intended"
            seen = (await check_domains([ZONE], options=lab.check))[0]
            assert seen.policy is not None and set(seen.policy.mx) == {OLD, NEW}
            lab.offset[0] += wait_seconds(plan, 2) + 1
            # 4: nobody switched the MX records yet: the run pauses and says what to do.
            run = await publisher.resume(ZONE)
            assert run.state == "waiting" and run.steps[3].state == "intended"
            assert run.error is not None and f"to name {NEW}: switch them" in run.error
            await switch_mx(lab, [NEW])
            # 4 verified at both servers; 5: the old MX TTL (300 s) pauses again.
            run = await publisher.resume(ZONE)
            assert run.steps[3].state == "verified" and run.steps[4].state == "intended"
            assert run.state == "waiting"
            lab.offset[0] += 301
            # 6-7: the narrowed policy and its id.
            run = await publisher.resume(ZONE)
            assert run.state == "done", run
            await asyncio.sleep(0.5)  # a few more polls of the final state
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert orphans.violations == [] and cover.violations == []
        assert orphans.polls > 20 and cover.polls > 20
        (seen,) = await check_domains([ZONE], options=lab.check)
        assert seen.policy is not None and seen.policy.mode == "enforce"
        assert list(seen.policy.mx) == [NEW]
        assert seen.sts_record is not None and seen.sts_record.id == plan.steps[6].policy_id
        assert [m.host for m in seen.mx] == [NEW] and seen.mx[0].covered_by == NEW
        # The coverage watcher does see a switch made outside the runbook.
        await switch_mx(lab, ["mx.elsewhere.test"])
        await asyncio.sleep(1.0)
        await cover.poll()
        assert cover.violations and "mx.elsewhere.test" in cover.violations[-1]


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
        "offset": lab.offset[0],
        "max_inline_wait": 2.0,
    }
    return {**os.environ, "PUBLISH_CHILD_SPEC": json.dumps(spec)}


async def test_sigkill_after_each_migration_step_then_resume(lab: Lab) -> None:
    """Each step in turn: the child is killed right after the journal records the step's
    write (``done``; ``intended`` for a wait or the MX switch) and again after its
    verification; the next child resumes from the journal. Pauses (a wait, the switch not yet
    made) end the child normally: the test moves its clock on or switches the MX records."""
    stop = asyncio.Event()
    async with (
        open_publisher(lab.store, lab.config, check=lab.check, clock=lab.clock) as publisher,
        Probes(lab.check) as probes,
    ):
        await start_enforcing(lab, publisher)
        servers = await publisher.servers()
        orphans = Watcher(servers, probes.fetcher, ZONE)
        cover = CoverageWatcher(servers, probes.fetcher, lab.clock)
        tasks = [asyncio.create_task(w.run(stop)) for w in (orphans, cover)]
        plan = await migration(lab, publisher)
        for step in plan.steps:
            if step.kind is StepKind.POLICY and step.value is not None:
                orphans.expect(step.policy_id, step.value)
        journal = PublishJournal(lab.store)
        first = True
        kills = 0
        try:
            for seq, step in enumerate(plan.steps):
                written = "done" if step.kind in (StepKind.POLICY, StepKind.STS) else "intended"
                for state in (written, "verified"):
                    while True:
                        given = plan if first else PublishPlan(ZONE, "resume", ())
                        child = await asyncio.create_subprocess_exec(
                            sys.executable, str(CHILD), env=_child_env(lab, given, (seq, state))
                        )
                        code = await child.wait()
                        first = False
                        run = journal.open_run(ZONE)
                        assert run is not None
                        if code == -signal.SIGKILL:
                            assert run.state == "running" and run.steps[seq].state == state
                            kills += 1
                            break
                        assert code == 0 and run.state == "waiting", (code, run)
                        paused = run.steps[seq]
                        if step.kind is StepKind.MX:
                            await switch_mx(lab, [NEW])  # the operator does the switch
                        else:
                            assert step.kind is StepKind.WAIT and paused.state == "intended"
                            lab.offset[0] += step.seconds + 1
            done = await publisher.resume(ZONE)
            assert done.state == "done"
            await asyncio.sleep(0.3)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    assert kills == 2 * len(plan.steps)
    assert orphans.violations == [] and cover.violations == []
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and list(seen.policy.mx) == [NEW]
    assert seen.sts_record is not None and seen.sts_record.id == plan.steps[6].policy_id


async def test_cli_dry_run_shows_the_plan_and_its_waits(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_publish_cli import net_args, write_config

    async with open_publisher(lab.store, lab.config, check=lab.check) as publisher:
        await start_enforcing(lab, publisher)
    config = write_config(lab, tmp_path)
    db = lab.store.engine.url.render_as_string(hide_password=False)
    argv = ["publish", "mx-migrate", ZONE, "--to", NEW, "--dry-run", "--config", str(config)]
    code = await asyncio.to_thread(main, [*argv, "--db", db, *net_args(lab)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MX migration for example.test" in out
    assert f"the MX records of example.test switch to {NEW}" in out
    assert "wait 1h (3600s)" in out  # the _mta-sts TTL bounds the first wait here
    assert "wait 5m (300s)" in out  # the old MX records' TTL
    assert PublishJournal(lab.store).open_run(ZONE) is None  # nothing planned in the journal


async def test_rollout_apply_new_mx_starts_it_and_status_resume_carry_on(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_publish_cli import net_args, write_config

    async with open_publisher(lab.store, lab.config, check=lab.check) as publisher:
        await start_enforcing(lab, publisher)
    config = write_config(lab, tmp_path)
    db = lab.store.engine.url.render_as_string(hide_password=False)
    common = ["--config", str(config), "--db", db, *net_args(lab)]
    argv = ["rollout", ZONE, "--apply", "--new-mx", NEW, "--yes", *common]
    assert await asyncio.to_thread(main, argv) == 0
    run = PublishJournal(lab.store).open_run(ZONE)
    # Widened and verified; the max_age wait (the _mta-sts TTL, 1 h) pauses the run.
    assert run is not None and run.action == "mx-migration" and run.state == "waiting"
    assert [s.state for s in run.steps[:3]] == ["verified", "verified", "intended"]
    capsys.readouterr()
    status = ["publish", "status", ZONE, "--json", "--db", db]
    assert await asyncio.to_thread(main, status) == 0
    (shown, *_) = json.loads(capsys.readouterr().out)
    assert shown["state"] == "waiting" and shown["steps"][3]["kind"] == "mx"
    # Resumed too early: still waiting, nothing else done.
    resume = ["publish", "resume", ZONE, *common]
    assert await asyncio.to_thread(main, resume) == 0
    again = PublishJournal(lab.store).open_run(ZONE)
    assert again is not None and again.id == run.id and again.steps[3].state == "planned"
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and set(seen.policy.mx) == {OLD, NEW}
