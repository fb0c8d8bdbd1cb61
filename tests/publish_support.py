"""Fixtures for the publish tests: real Knot/BIND on loopback, a zone served by a primary and a
secondary, and a TSIG-authorised provider for it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stspilot.check.run import CheckOptions
from stspilot.facts import FetchOutcome
from stspilot.lab.authdns import (
    KEY_NAME,
    AuthServer,
    LabZone,
    available,
    free_port,
    make_secret,
    start_bind,
    start_knot,
)
from stspilot.lab.certs import CertKind, LabPki
from stspilot.lab.https_host import HttpBehaviour, HttpsHost
from stspilot.probes.fetch import PolicyFetcher
from stspilot.publish.config import DomainConfig, ZoneConfig
from stspilot.publish.providers import STS_PREFIX, TxtChange
from stspilot.publish.rfc2136 import Rfc2136Config, Rfc2136Provider, TsigKey
from stspilot.publish.verify import NameServer, ask_authoritative
from stspilot.rollout.generate import Publication, generate
from stspilot.store import Store

ZONE = "example.test"
# Each test takes its own 127.x.y.z addresses so parallel helpers and tests never collide.
_SUBNET = itertools.count(int.from_bytes(os.urandom(1), "big") % 200 + 20)


@dataclass
class DnsWorld:
    zone: str
    secret: str
    port: int
    primary: AuthServer
    secondary: AuthServer | None

    def provider(self, *, secret: str | None = None, key_name: str = KEY_NAME) -> Rfc2136Provider:
        key = TsigKey(key_name, secret or self.secret)
        return Rfc2136Provider(Rfc2136Config(self.zone, self.primary.address, self.port, key))

    @property
    def primary_ns(self) -> NameServer:
        return NameServer("primary", self.primary.address, self.port)

    def stop(self) -> None:
        for server in (self.secondary, self.primary):
            if server is not None:
                server.resume()
                server.stop()


def need(kind: str) -> None:
    if not available(kind):
        pytest.skip(f"{kind} is not installed (scripts/setup.sh installs knot and bind9)")


def dns_world(
    tmp: Path,
    primary: str,
    *,
    secondary: bool = False,
    zone_lines: tuple[str, ...] = (),
    zone_name: str = ZONE,
) -> Iterator[DnsWorld]:
    """``primary`` is "knot" or "bind"; ``secondary`` adds a Knot secondary fed by NOTIFY/AXFR."""
    need(primary)
    if secondary:
        need("knot")
    net = next(_SUBNET)
    # BIND only listens on addresses configured on an interface (127.0.0.1 on lo).
    p_addr = "127.0.0.1" if primary == "bind" else f"127.0.{net}.1"
    s_addr = f"127.0.{net}.2"
    port = free_port(p_addr, s_addr)
    ns = (("ns1", p_addr),) + ((("ns2", s_addr),) if secondary else ())
    lines = ("@ MX 10 mx1", "mx1 A 127.0.0.9", *zone_lines)
    zone = LabZone(zone_name, ns, lines)
    secret = make_secret()
    if primary == "bind":
        notify = [(s_addr, port)] if secondary else None
        first = start_bind(tmp / "bind", p_addr, port, [zone], secret=secret, notify=notify)
    else:
        notify = [(s_addr, port)] if secondary else None
        first = start_knot(tmp / "knot1", p_addr, port, [zone], secret=secret, notify=notify)
    second = None
    try:
        if secondary:
            second = start_knot(
                tmp / "knot2", s_addr, port, [zone], secret=secret, primary=(p_addr, port)
            )
        world = DnsWorld(zone_name, secret, port, first, second)
        yield world
    finally:
        if second is not None:
            second.resume()
            second.stop()
        first.resume()
        first.stop()


# --- the policy host and a watcher ------------------------------------------------------------


class WebrootPolicies(dict[str, bytes]):
    """What the lab HTTPS host serves: the webroot's file, read at every request."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def get(self, key: str, default: bytes | None = None) -> bytes:  # type: ignore[override]
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return default or b""


class HostedStorePolicies(dict[str, bytes]):
    """What the lab HTTPS host serves for the hosted destination: the store's served policy,
    read at every request as ``stspilot serve`` reads it."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        from stspilot.store.hosting import HostedPolicies

        self.hosted = HostedPolicies(store)

    def get(self, key: str, default: bytes | None = None) -> bytes:  # type: ignore[override]
        served = self.hosted.served_policy(key)
        return served.text.encode() if served is not None else (default or b"")


@dataclass
class Watcher:
    """Polls every server and the policy URL every 100 ms; records every orphan it sees.

    An orphan: a TXT ``id`` visible while no policy is served, or while the policy served is
    older than the one that id names (its id was published before its policy).
    """

    servers: tuple[NameServer, ...]
    fetcher: PolicyFetcher
    domain: str
    order_of_id: dict[str, int] = field(default_factory=dict)
    order_of_body: dict[bytes, set[int]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    polls: int = 0

    def expect(self, policy_id: str, body: str) -> None:
        index = len(self.order_of_id)
        self.order_of_id[policy_id] = index
        self.order_of_body.setdefault(body.encode(), set()).add(index)

    async def poll(self) -> None:
        change = TxtChange(f"_mta-sts.{self.domain}.", STS_PREFIX, None)
        states = [await ask_authoritative(s, change.name) for s in self.servers]
        fetched = await self.fetcher.fetch_policy(self.domain)
        body = fetched.body if fetched.outcome is FetchOutcome.OK else None
        self.polls += 1
        for server, state in zip(self.servers, states, strict=True):
            for value in state.values(STS_PREFIX):
                policy_id = value.rpartition("id=")[2]
                if body is None:
                    self.violations.append(f"{server.label}: id {policy_id} but no policy served")
                    continue
                wanted = self.order_of_id.get(policy_id)
                served = self.order_of_body.get(body, set())
                if wanted is not None and not any(i >= wanted for i in served):
                    self.violations.append(
                        f"{server.label}: id {policy_id} while an older policy is served"
                    )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)


# --- the whole lab: DNS pair, HTTPS policy host on a web root, store -------------------------

MX = ["mx1.example.test"]


@dataclass
class Lab:
    world: DnsWorld
    store: Store
    config: DomainConfig
    check: CheckOptions
    webroot: Path
    host: HttpsHost
    offset: list[float] = field(default_factory=lambda: [0.0])
    last_id: str = ""

    def clock(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset[0])

    def pub(self, mode: str, max_age: int) -> Publication:
        pub = generate(
            ZONE,
            mx_hosts=MX,
            mode=mode,
            now=self.clock(),
            max_age=max_age,
            previous_id=self.last_id,
            patterns=() if mode == "none" else None,
        )
        self.last_id = pub.policy_id
        return pub


async def make_lab(
    tmp_path: Path, store_url: str, *, zone_lines: tuple[str, ...] = ()
) -> AsyncIterator[Lab]:
    worlds: Iterator[DnsWorld] = dns_world(
        tmp_path, "bind", secondary=True, zone_lines=("mta-sts A 127.0.0.1", *zone_lines)
    )
    world = next(worlds)
    pki = LabPki(tmp_path)
    webroot = tmp_path / "www"
    host = HttpsHost(
        "127.0.0.1",
        0,
        context=pki.sni_context(CertKind.GOOD, [f"mta-sts.{ZONE}"]),
        behaviour=HttpBehaviour.OK,
        policies=WebrootPolicies(webroot / ".well-known" / "mta-sts.txt"),
    )
    https_port = await host.service.start()
    zone = ZoneConfig(
        ZONE,
        "rfc2136",
        {
            "server": world.primary.address,
            "port": world.port,
            "key_name": KEY_NAME,
            "key_secret": world.secret,
        },
    )
    store = Store.open(store_url)
    try:
        yield Lab(
            world,
            store,
            DomainConfig(ZONE, zone, f"webroot:{webroot}", verify_timeout=20),
            CheckOptions(
                nameserver=world.primary.address,
                dns_port=world.port,
                ca_file=pki.ca_file,
                port_map={443: https_port},
                probe_mx=False,
            ),
            webroot,
            host,
        )
    finally:
        store.close()
        await host.service.stop()
        worlds.close()
