"""Many TXT changes in one zone at once: the hosted service's ``id`` bumps in its delegation
zone. Reads, writes in batches of one UPDATE each (all or nothing per batch, each record with
its own compare-and-swap prerequisite), reads every record back, and verifies them all at
every authoritative server. Updates under one TSIG key stay one at a time (the provider's lock;
RFC 8945 §5.2.3, checklist G4.10): batching, not parallel messages, is what makes a thousand
bumps fast.

Reading a thousand names one question at a time costs more than the updates, so reads and
verification take the whole zone by transfer (AXFR, RFC 5936) from each server where the server
allows it (still straight from the server, no cache), and fall back to one question per name
where it refuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.query
import dns.rdatatype

from stspilot.publish.providers import TxtChange, TxtSet, check_after, check_before
from stspilot.publish.rfc2136 import Rfc2136Provider
from stspilot.publish.verify import NameServer, VerifyOptions, soa_serial, verify_txt_many


@dataclass(frozen=True, slots=True)
class BulkResult:
    written: int
    unchanged: int
    write_seconds: float
    verify_seconds: float


def _axfr(address: str, port: int, zone: str, limit: float) -> dict[str, TxtSet]:
    """Every TXT RRset of ``zone`` as ``address`` serves it, by one zone transfer."""
    out: dict[str, TxtSet] = {}
    for message in dns.query.xfr(
        address, zone, port=port, timeout=limit, lifetime=limit * 3, relativize=False
    ):
        for rrset in message.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                name = rrset.name.to_text()
                records = tuple(tuple(rd.strings) for rd in rrset)
                out[name] = TxtSet(name, records, ttl=rrset.ttl)
            elif rrset.rdtype == dns.rdatatype.CNAME:
                out[rrset.name.to_text()] = TxtSet(rrset.name.to_text(), cname="?")
    return out


async def read_zone(
    server: NameServer, zone: str, names: Sequence[str], *, limit: float = 10.0
) -> list[TxtSet] | None:
    """The TXT RRsets at ``names`` by zone transfer; None where the server refuses one."""
    try:
        whole = await asyncio.to_thread(_axfr, server.address, server.port, zone, limit)
    except (dns.exception.DNSException, OSError, EOFError):
        return None
    return [whole.get(n, TxtSet(n)) for n in names]


async def read_all(
    provider: Rfc2136Provider, names: Sequence[str], concurrency: int
) -> list[TxtSet]:
    cfg = provider.config
    primary = NameServer("primary", cfg.server, cfg.port)
    whole = await read_zone(primary, cfg.zone, names, limit=cfg.timeout)
    if whole is not None:
        return whole
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> TxtSet:
        async with gate:
            return await provider.read_txt(name)

    return list(await asyncio.gather(*(one(n) for n in names)))


async def change_txt_many(
    provider: Rfc2136Provider,
    servers: Sequence[NameServer],
    changes: Sequence[TxtChange],
    *,
    expected: Mapping[str, Sequence[str | None]] | None = None,
    batch: int = 100,
    concurrency: int = 32,
    verify: VerifyOptions = VerifyOptions(),
    on_written: Callable[[], None] | None = None,
) -> BulkResult:
    """Carry out ``changes`` (distinct names) like ``change_txt`` each, in batches;
    ``on_written`` is called once every change is written and read back, before verification
    (the journal marks the steps done there)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    before = await read_all(provider, [c.name for c in changes], concurrency)
    todo = [
        (c, b)
        for c, b in zip(changes, before, strict=True)
        if not check_before(c, b, (expected or {}).get(c.name, ()))
    ]
    for i in range(0, len(todo), batch):
        await provider.write_many(todo[i : i + batch])
    after = await read_all(provider, [c.name for c, _ in todo], concurrency)
    for (change, _), now in zip(todo, after, strict=True):
        check_after(change, now, provider.label)
    written = loop.time()
    if on_written is not None:
        on_written()
    cfg = provider.config
    serial = await soa_serial(NameServer("primary", cfg.server, cfg.port), cfg.zone, cfg.timeout)
    waited = await verify_txt_many(
        servers, [c for c, _ in todo], options=verify, zone=cfg.zone, serial=serial
    )
    return BulkResult(len(todo), len(changes) - len(todo), written - started, waited)
