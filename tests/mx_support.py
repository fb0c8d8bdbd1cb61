"""Helpers for the MX-migration and self-healing tests: the operator's MX switch (a TSIG-signed
DNS UPDATE, as a person's DNS console would make it) and a watcher that no sender holding a
cached policy could ever be refused by the live MX set."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.asyncquery
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

from publish_support import ZONE, Lab
from stspilot.facts import FetchOutcome
from stspilot.lab.authdns import KEY_NAME
from stspilot.probes.fetch import PolicyFetcher
from stspilot.publish.migrate import policy_fields
from stspilot.publish.verify import NameServer, ask_mx
from stspilot.sts.policy import mx_matches


async def switch_mx(lab: Lab, hosts: Sequence[str], *, ttl: int = 300) -> None:
    """Replace the zone apex's MX RRset with ``hosts`` in one signed UPDATE."""
    keyring = dns.tsigkeyring.from_text({KEY_NAME: lab.world.secret})
    update = dns.update.UpdateMessage(
        f"{ZONE}.", keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256
    )
    update.delete("@", "MX")
    for i, host in enumerate(hosts):
        update.add("@", ttl, "MX", f"{10 + i} {host}.")
    reply = await dns.asyncquery.tcp(
        update, lab.world.primary.address, port=lab.world.port, timeout=5
    )
    assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())


@dataclass
class CoverageWatcher:
    """Polls the policy URL and every server's MX set every 100 ms, on the test's clock.

    A policy body may sit in a sender's cache until its max_age after it was last served; an
    MX host may be handed to senders by resolvers until its TTL after the authority last
    named it. A violation: at some moment a host still handed out matches no pattern of a
    policy still cached, so that sender would refuse (under enforce) the live MX.
    """

    servers: tuple[NameServer, ...]
    fetcher: PolicyFetcher
    clock: Callable[[], dt.datetime]
    domain: str = ZONE
    bodies: dict[bytes, tuple[dt.datetime, int, tuple[str, ...]]] = field(default_factory=dict)
    hosts: dict[str, dt.datetime] = field(default_factory=dict)  # host -> handed out until
    violations: list[str] = field(default_factory=list)
    polls: int = 0

    async def poll(self) -> None:
        fetched = await self.fetcher.fetch_policy(self.domain)
        states = [await ask_mx(s, f"{self.domain}.") for s in self.servers]
        now = self.clock()
        if fetched.outcome is FetchOutcome.OK and fetched.body:
            _, age, patterns = policy_fields(fetched.body.decode())
            self.bodies[fetched.body] = (now, age or 0, patterns)
        for state in states:
            for host in state.hosts:
                until = now + dt.timedelta(seconds=state.ttl)
                self.hosts[host] = max(until, self.hosts.get(host, until))
        self.polls += 1
        live = [h for h, until in self.hosts.items() if until >= now]
        for seen, age, patterns in self.bodies.values():
            if seen + dt.timedelta(seconds=age) < now:
                continue  # no sender holds it any more
            for host in live:
                if not any(mx_matches(p, host) for p in patterns):
                    self.violations.append(
                        f"{now:%H:%M:%S}: MX {host} is live but a cached policy "
                        f"({' '.join(patterns)}, last served {seen:%H:%M:%S}) does not cover it"
                    )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
