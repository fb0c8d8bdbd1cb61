"""The hosted service publishes its delegation zone: every hosted policy change bumps the TXT
record at ``<domain>.<zone>`` (Knot primary + secondary), only after the policy is served, and
a finished decommission removes the record before the policy goes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.query
import pytest

from publish_support import DnsWorld, dns_world
from stspilot.check.run import CheckOptions, Probes
from stspilot.publish.hosted import record_name, sync_delegation
from stspilot.publish.verify import VerifyOptions, authoritative_servers
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies

pytestmark = pytest.mark.db
ZONE = "hosted.test"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FAST = VerifyOptions(timeout=20, interval=0.05)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DnsWorld]:
    yield from dns_world(tmp_path, "knot", secondary=True, zone_name=ZONE)


def txt(world: DnsWorld, domain: str) -> list[bytes]:
    assert world.secondary is not None
    q = dns.message.make_query(record_name(domain, ZONE), "TXT")
    r = dns.query.udp(q, world.secondary.address, port=world.port, timeout=2)
    return [b"".join(rd.strings) for rs in r.answer for rd in rs]


async def test_sync_follows_the_store(world: DnsWorld, store: Store) -> None:
    hosting = HostedPolicies(store)
    tenant = Accounts(store).add_tenant("acme", now=NOW)
    for domain in ("a.example", "b.example", "c.example"):
        hosting.add(domain, tenant_id=tenant.id, mode="testing", mx=[f"mx.{domain}"], now=NOW)
    servers = await authoritative_servers(ZONE, primary=world.primary_ns, port=world.port)
    clock = [NOW + timedelta(minutes=1)]

    async def sync() -> tuple[str, ...]:
        done = await sync_delegation(
            store, world.provider(), servers, zone=ZONE, clock=lambda: clock[0], verify=FAST
        )
        return done.changed

    assert await sync() == ("a.example", "b.example", "c.example")
    b = hosting.require("b.example")
    assert txt(world, "b.example") == [f"v=STSv1; id={b.policy_id}".encode()]
    assert await sync() == ()  # nothing differs: nothing written
    changed = hosting.update("b.example", now=NOW + timedelta(hours=1), mode="enforce")
    assert changed.policy_id != b.policy_id
    assert await sync() == ("b.example",)
    assert txt(world, "b.example") == [changed.sts_txt_value.encode()]
    # Decommission: mode none with a new id, the record kept until the wait is over...
    gone = hosting.decommission("c.example", now=NOW + timedelta(hours=2))
    assert await sync() == ("c.example",)
    assert txt(world, "c.example") == [gone.sts_txt_value.encode()]
    assert gone.remove_after is not None
    clock[0] = gone.remove_after + timedelta(seconds=1)
    # ... then removed, while the policy is still hosted (TXT first, RFC 8461 §8.3).
    assert await sync() == ("c.example",)
    assert txt(world, "c.example") == []
    assert hosting.get("c.example") is not None


async def test_a_policy_not_served_is_never_announced(world: DnsWorld, store: Store) -> None:
    hosting = HostedPolicies(store)
    tenant = Accounts(store).add_tenant("acme", now=NOW)
    hosting.add("nowhere.example", tenant_id=tenant.id, mode="testing", mx=["mx.x.test"], now=NOW)
    servers = await authoritative_servers(ZONE, primary=world.primary_ns, port=world.port)
    # A sender's view in which mta-sts.nowhere.example does not resolve: the fetch fails.
    options = CheckOptions(nameserver=world.primary.address, dns_port=world.port, dns_timeout=1)
    async with Probes(options) as probes:
        done = await sync_delegation(
            store, world.provider(), servers, zone=ZONE, clock=lambda: NOW,
            fetcher=probes.fetcher, verify=FAST,
        )  # fmt: skip
    assert done.changed == () and done.bulk is None
    assert "mta-sts.nowhere.example" in done.skipped["nowhere.example"]
    assert txt(world, "nowhere.example") == []


def test_plan_hosted_policy_first_then_the_id_and_removal_after_decommission(
    store: Store,
) -> None:
    from stspilot.publish.hosted import plan_hosted
    from stspilot.publish.plan import StepKind, check_order

    hosting = HostedPolicies(store)
    tenant = Accounts(store).add_tenant("acme", now=NOW)
    first = hosting.add("a.example", tenant_id=tenant.id, mode="testing", mx=["mx.a"], now=NOW)
    plan = plan_hosted(first, ZONE, now=NOW, known_ids=["older"])
    assert [s.kind for s in plan.steps] == [StepKind.POLICY, StepKind.STS]
    check_order(plan.steps)  # the policy serving the id comes before it
    policy, sts = plan.steps
    assert policy.value == first.policy_text and sts.value == first.sts_txt_value
    assert sts.name == record_name("a.example", ZONE)
    # The record may hold nothing or an id this domain had; never someone else's value.
    assert set(sts.expect) == {None, first.sts_txt_value, "v=STSv1; id=older"}
    gone = hosting.decommission("a.example", now=NOW)
    assert gone.remove_after is not None
    during = plan_hosted(gone, ZONE, now=gone.remove_after - timedelta(seconds=1))
    assert [s.kind for s in during.steps] == [StepKind.POLICY, StepKind.STS]
    after = plan_hosted(gone, ZONE, now=gone.remove_after)
    assert [s.kind for s in after.steps] == [StepKind.REMOVE_STS]
    assert after.steps[0].value is None and gone.sts_txt_value in after.steps[0].expect
