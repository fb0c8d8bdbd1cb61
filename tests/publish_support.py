"""Fixtures for the publish tests: real Knot/BIND on loopback, a zone served by a primary and a
secondary, and a TSIG-authorised provider for it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
from stspilot.publish.rfc2136 import Rfc2136Config, Rfc2136Provider, TsigKey
from stspilot.publish.verify import NameServer

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
    tmp: Path, primary: str, *, secondary: bool = False, zone_lines: tuple[str, ...] = ()
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
    lines = ("@ MX 10 mx1", "mx1 A 127.0.0.9", "mta-sts A 127.0.0.9", *zone_lines)
    zone = LabZone(ZONE, ns, lines)
    secret = make_secret()
    if primary == "bind":
        notify = [(s_addr, port)] if secondary else None
        first = start_bind(tmp / "bind", p_addr, port, [zone], secret=secret, notify=notify)
    else:
        first = start_knot(tmp / "knot1", p_addr, port, [zone], secret=secret)
    second = None
    try:
        if secondary:
            second = start_knot(
                tmp / "knot2", s_addr, port, [zone], secret=secret, primary=(p_addr, port)
            )
        world = DnsWorld(ZONE, secret, port, first, second)
        yield world
    finally:
        if second is not None:
            second.resume()
            second.stop()
        first.resume()
        first.stop()
