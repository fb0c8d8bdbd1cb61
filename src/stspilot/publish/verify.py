"""Verification that a change is visible where senders look, before the next step starts.

DNS: the zone's NS set, then each server's addresses, then each address asked directly with
recursion off (no cache anywhere), until every one serves the new TXT RRset authoritatively on
two consecutive polls (one anycast address can hide a lagging instance), bounded in time; a
server that never catches up is named (checklist G6.1-G6.3).

Policy: fetched through its public URL exactly as a sender fetches it, through the check's own
fetch path (``probes/fetch.py``: exact URL, no redirects, 200, ``text/plain``, WebPKI), until the
body equals the intended one byte for byte (RFC 8461 §8.1; G5.1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.serial

from stspilot.errors import PublishError
from stspilot.facts import DnsStatus, FetchOutcome
from stspilot.probes.fetch import PolicyFetcher
from stspilot.probes.resolver import Resolver
from stspilot.publish.providers import TxtChange, TxtSet
from stspilot.publish.rfc2136 import txt_from_reply

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class NameServer:
    """One address of one server in the zone's NS set."""

    name: str  # the NS host name, for messages
    address: str
    port: int = 53

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})"


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    timeout: float = 300.0  # the whole wait (G6.3: then report, not wait longer)
    interval: float = 0.2  # between polls
    query_timeout: float = 2.0  # one question to one server
    polls: int = 2  # consecutive agreeing polls (G6.2)


async def _ask(server: NameServer, name: str, rdtype: str, limit: float) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD  # ask the authority itself, never a cache (G6.1)
    reply, _ = await dns.asyncquery.udp_with_fallback(
        query, server.address, port=server.port, timeout=limit
    )
    return reply


async def authoritative_servers(
    zone: str,
    *,
    primary: NameServer,
    resolver: Resolver | None = None,
    port: int = 53,
    limit: float = 5.0,
) -> tuple[NameServer, ...]:
    """Every address of every server in ``zone``'s NS set, as the zone (on its primary) lists it.

    In-zone server names are resolved at the primary too (their glue); others through
    ``resolver``. ``PublishError`` when the NS set cannot be read or a server has no address.
    """
    origin = dns.name.from_text(zone)
    step = f"verify: NS set of {origin}"
    try:
        reply = await _ask(primary, origin.to_text(), "NS", limit)
    except (dns.exception.DNSException, OSError) as exc:
        raise PublishError(f"{primary.label}: NS of {origin}: {exc}", step=step) from None
    names = sorted(
        rd.target.to_text()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.NS and rrset.name == origin
        for rd in rrset
    )
    if not names:
        raise PublishError(
            f"{primary.label} lists no NS records for {origin}",
            step=step,
            answer=dns.rcode.to_text(reply.rcode()),
        )
    servers: list[NameServer] = []
    for ns in names:
        addresses: list[str] = []
        if dns.name.from_text(ns).is_subdomain(origin):
            for rdtype in ("A", "AAAA"):
                try:
                    got = await _ask(primary, ns, rdtype, limit)
                except (dns.exception.DNSException, OSError):
                    continue
                addresses += [rd.to_text() for rs in got.answer if rs.rdtype != 5 for rd in rs]
        elif resolver is not None:
            lookup = await resolver.lookup_address(ns.rstrip("."))
            if lookup.status is DnsStatus.OK:
                addresses += list(lookup.addresses)
        if not addresses:
            raise PublishError(f"name server {ns} of {origin} has no address", step=step)
        servers += [NameServer(ns, a, port) for a in sorted(set(addresses))]
    return tuple(servers)


async def ask_authoritative(
    server: NameServer, name: str, *, label: str = "", limit: float = 5.0
) -> TxtSet:
    """The TXT RRset at ``name`` as ``server`` serves it (authoritative answers only)."""
    try:
        reply = await _ask(server, name, "TXT", limit)
    except (dns.exception.DNSException, OSError) as exc:
        raise PublishError(
            f"{label or server.label}: no answer for {name} TXT ({exc.__class__.__name__})",
            step=f"read {name} TXT",
            answer="no answer",
        ) from None
    return txt_from_reply(
        reply, dns.name.from_text(name), label=label or server.label, step=f"read {name} TXT"
    )


async def _state(server: NameServer, change: TxtChange, limit: float) -> TxtSet | str:
    """What ``server`` serves at the name, or why it could not say."""
    try:
        reply = await _ask(server, change.name, "TXT", limit)
        return txt_from_reply(
            reply, dns.name.from_text(change.name), label=server.label, step="verify"
        )
    except PublishError as exc:
        return exc.answer or str(exc)
    except (dns.exception.DNSException, OSError) as exc:
        return f"no answer ({exc.__class__.__name__})"


def _shown(state: TxtSet | str, prefix: str) -> str:
    if isinstance(state, str):
        return state
    return " | ".join(state.values(prefix)) or "no record"


async def verify_txt(
    servers: Sequence[NameServer],
    change: TxtChange,
    *,
    options: VerifyOptions = VerifyOptions(),
    progress: Progress | None = None,
) -> float:
    """Wait until every server serves exactly ``change``; returns the seconds waited."""
    started = time.monotonic()
    agreeing = 0
    while True:
        states = await asyncio.gather(*(_state(s, change, options.query_timeout) for s in servers))
        behind = [
            (s, st)
            for s, st in zip(servers, states, strict=True)
            if isinstance(st, str) or not st.holds(change.prefix, change.value)
        ]
        agreeing = 0 if behind else agreeing + 1
        if progress is not None:
            progress(f"{len(servers) - len(behind)}/{len(servers)} servers show {change.label}")
        if agreeing >= options.polls:
            return time.monotonic() - started
        if time.monotonic() - started > options.timeout:
            lagging = "; ".join(f"{s.label} serves {_shown(st, change.prefix)}" for s, st in behind)
            raise PublishError(
                f"not every authoritative server shows {change.label} after "
                f"{options.timeout:g}s: {lagging}",
                step=f"verify {change.label}",
                answer="not propagated",
            )
        await asyncio.sleep(options.interval)


async def verify_policy(
    fetcher: PolicyFetcher,
    domain: str,
    text: str | None,
    *,
    options: VerifyOptions = VerifyOptions(),
    progress: Progress | None = None,
) -> float:
    """Wait until the policy fetched as a sender fetches it is ``text`` byte for byte (or, for
    ``None``, until no policy is served any more); returns the seconds waited."""
    started = time.monotonic()
    want = None if text is None else text.encode()
    agreeing = 0
    while True:
        got = await fetcher.fetch_policy(domain)
        served = got.body if got.outcome is FetchOutcome.OK else None
        agreeing = agreeing + 1 if served == want else 0
        if progress is not None:
            progress(f"{got.url}: {got.outcome.value}")
        if agreeing >= options.polls:
            return time.monotonic() - started
        if time.monotonic() - started > options.timeout:
            seen = (
                "a different policy"
                if served is not None
                else f"{got.outcome.value} {got.status or ''} {got.error}".strip()
            )
            wanted = "the new policy" if text is not None else "no policy"
            raise PublishError(
                f"{got.url} still shows {seen} after {options.timeout:g}s (wanted {wanted})",
                step=f"verify policy {got.url}",
                answer=got.outcome.value,
            )
        await asyncio.sleep(options.interval)


async def soa_serial(server: NameServer, zone: str, limit: float) -> int | None:
    """The SOA serial ``server`` serves for ``zone`` (authoritatively), None if it cannot say."""
    try:
        reply = await _ask(server, zone, "SOA", limit)
    except (dns.exception.DNSException, OSError):
        return None
    if not reply.flags & dns.flags.AA:
        return None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


async def wait_for_serial(
    servers: Sequence[NameServer], zone: str, serial: int, *, options: VerifyOptions
) -> None:
    """Until every server's serial is at least ``serial`` (RFC 1982: it wraps), or name the
    servers still behind (checklist G3.3, G6.3)."""
    want = dns.serial.Serial(serial)
    started = time.monotonic()
    while True:
        got = await asyncio.gather(*(soa_serial(s, zone, options.query_timeout) for s in servers))
        behind = [
            (s, g)
            for s, g in zip(servers, got, strict=True)
            if g is None or dns.serial.Serial(g) < want
        ]
        if not behind:
            return
        if time.monotonic() - started > options.timeout:
            named = "; ".join(f"{s.label} at serial {g}" for s, g in behind)
            raise PublishError(
                f"not every server reached serial {serial} of {zone} after {options.timeout:g}s: "
                f"{named}",
                step=f"verify {zone} serial",
                answer="not propagated",
            )
        await asyncio.sleep(options.interval)


async def verify_txt_many(
    servers: Sequence[NameServer],
    changes: Sequence[TxtChange],
    *,
    options: VerifyOptions = VerifyOptions(),
    concurrency: int = 64,
    zone: str = "",
    serial: int | None = None,
) -> float:
    """``verify_txt`` for many records at once (bulk ``id`` bumps): each record is done when
    every server shows it on ``options.polls`` consecutive rounds; returns the seconds waited.
    With ``zone``, each server is read by one zone transfer per round where it allows one; with
    ``serial`` (the primary's after the update), rounds start once every server's SOA serial
    has reached it (RFC 1982 arithmetic; checklist G3.3), which is one small question each."""
    from stspilot.publish.bulk import read_zone

    started = time.monotonic()
    if zone and serial is not None:
        await wait_for_serial(servers, zone, serial, options=options)
    gate = asyncio.Semaphore(concurrency)
    agreeing = dict.fromkeys(range(len(changes)), 0)

    async def state(server: NameServer, change: TxtChange) -> bool:
        async with gate:
            got = await _state(server, change, options.query_timeout)
        return not isinstance(got, str) and got.holds(change.prefix, change.value)

    async def at(server: NameServer, pending: list[int]) -> list[bool]:
        wanted = [changes[i] for i in pending]
        if zone:
            whole = await read_zone(server, zone, [c.name for c in wanted])
            if whole is not None:
                return [t.holds(c.prefix, c.value) for c, t in zip(wanted, whole, strict=True)]
        return list(await asyncio.gather(*(state(server, c) for c in wanted)))

    while agreeing:
        pending = sorted(agreeing)
        by_server = await asyncio.gather(*(at(s, pending) for s in servers))
        for n, i in enumerate(pending):
            if all(column[n] for column in by_server):
                agreeing[i] += 1
            else:
                agreeing[i] = 0
            if agreeing[i] >= options.polls:
                del agreeing[i]
        if not agreeing:
            break
        if time.monotonic() - started > options.timeout:
            names = ", ".join(changes[i].name for i in sorted(agreeing)[:5])
            raise PublishError(
                f"{len(agreeing)} records not shown by every authoritative server after "
                f"{options.timeout:g}s (e.g. {names})",
                step="verify bulk",
                answer="not propagated",
            )
        await asyncio.sleep(options.interval)
    return time.monotonic() - started


@dataclass(frozen=True, slots=True)
class MxSet:
    """The MX RRset at a name as one server serves it (authoritatively)."""

    hosts: tuple[str, ...]  # sorted target names, lower case, no trailing dot
    ttl: int = 0


async def ask_mx(server: NameServer, name: str, *, limit: float = 5.0) -> MxSet:
    """The MX hosts ``server`` serves at ``name``; ``PublishError`` when it cannot say."""
    step = f"read {name} MX"
    try:
        reply = await _ask(server, name, "MX", limit)
    except (dns.exception.DNSException, OSError) as exc:
        raise PublishError(
            f"{server.label}: no answer for {name} MX ({exc.__class__.__name__})",
            step=step,
            answer="no answer",
        ) from None
    rcode = reply.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not reply.flags & dns.flags.AA:
        shown = dns.rcode.to_text(rcode) if rcode != dns.rcode.NOERROR else "no AA bit"
        raise PublishError(
            f"{server.label} answered {shown} for {name} MX", step=step, answer=shown
        )
    owner = dns.name.from_text(name)
    for rrset in reply.answer:
        if rrset.name == owner and rrset.rdtype == dns.rdatatype.MX:
            hosts = sorted({rd.exchange.to_text().rstrip(".").lower() for rd in rrset})
            return MxSet(tuple(hosts), rrset.ttl)
    return MxSet(())


async def wait_for_mx(
    servers: Sequence[NameServer],
    name: str,
    hosts: Sequence[str],
    *,
    allowed: Sequence[str],
    options: VerifyOptions,
    patience: float,
    progress: Progress | None = None,
) -> float | None:
    """Until every server shows exactly ``hosts`` at ``name`` on ``options.polls`` consecutive
    polls (the seconds waited), or None after ``patience`` seconds without that. A server
    naming a host outside ``allowed`` (the old and the new set) is a ``PublishError`` at once:
    the policy served does not cover it."""
    want = tuple(sorted(hosts))
    started = time.monotonic()
    agreeing = 0
    while True:
        states = await asyncio.gather(
            *(ask_mx(s, name, limit=options.query_timeout) for s in servers)
        )
        stray = sorted({h for st in states for h in st.hosts} - set(allowed))
        if stray:
            raise PublishError(
                f"the MX records of {name} name {', '.join(stray)}, which neither the old nor "
                f"the new set holds (the policy does not cover it): set them to {' '.join(want)}",
                step=f"verify {name} MX",
                answer="unexpected MX",
            )
        moved = sum(st.hosts == want for st in states)
        agreeing = agreeing + 1 if moved == len(servers) else 0
        if progress is not None:
            progress(f"{moved}/{len(servers)} servers show MX {' '.join(want)}")
        if agreeing >= options.polls:
            return time.monotonic() - started
        if time.monotonic() - started > patience:
            return None
        await asyncio.sleep(max(options.interval, 1.0 if patience > 30 else options.interval))
