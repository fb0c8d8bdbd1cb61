"""The one DNS path: TXT, MX and address lookups over dnspython's async stub resolver.

Every question stspilot asks goes through a ``Resolver``; the lab points it at its own
authoritative server through ``nameserver``/``port``. Failures come back as ``DnsStatus``
values, never exceptions, because MTA-STS treats "no record" and "could not ask" differently
(RFC 8461 §3.1 and §5.1: a failed lookup must not be read as "no policy").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from stspilot.facts import AddressLookup, DnsStatus, MxHost, MxLookup, TxtLookup

# CNAME chains longer than this are a loop or an attack, not a delegation (RFC 8461 §8.2).
MAX_CNAME_HOPS = 8


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """Where and how patiently to ask. No nameserver means the system's ``resolv.conf``."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout: float = 2.0  # per attempt at one server
    lifetime: float = 5.0  # whole question, retries included
    # Questions in flight at once. dnspython starts a question's clock before its socket is
    # even set up, so thousands at once all time out together; waiting here does not count.
    max_in_flight: int = 128


@dataclass(frozen=True, slots=True)
class _Answer:
    status: DnsStatus
    rdatas: tuple[object, ...] = ()
    chain: tuple[str, ...] = ()  # CNAME owners followed inside the answer
    target: str = ""  # the canonical name the answer ended at
    error: str = ""


def _text(name: dns.name.Name | str) -> str:
    return str(name).rstrip(".").lower()


class Resolver:
    """An async stub resolver with typed outcomes; share one per process."""

    def __init__(self, config: ResolverConfig | None = None) -> None:
        self.config = config or ResolverConfig()
        if self.config.nameservers:
            inner = dns.asyncresolver.Resolver(configure=False)
            inner.nameservers = list(self.config.nameservers)
        else:
            inner = dns.asyncresolver.Resolver()
        inner.port = self.config.port
        inner.timeout = self.config.timeout
        inner.lifetime = self.config.lifetime
        inner.cache = None  # every check sees the zone as it is now
        self._inner = inner
        self._slots = asyncio.Semaphore(self.config.max_in_flight)

    async def _ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Answer:
        try:
            answer = await self._inner.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as exc:
            return _Answer(DnsStatus.NXDOMAIN, error=str(exc))
        except dns.resolver.NoNameservers as exc:
            # Every server answered SERVFAIL (or REFUSED, which we cannot tell apart here).
            return _Answer(DnsStatus.SERVFAIL, error=str(exc))
        except dns.exception.Timeout as exc:
            return _Answer(DnsStatus.TIMEOUT, error=str(exc))
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return _Answer(DnsStatus.ERROR, error=f"{type(exc).__name__}: {exc}")
        chain = tuple(_text(rrset.name) for rrset in answer.chaining_result.cnames)
        target = _text(answer.canonical_name)
        if answer.rrset is None:
            return _Answer(DnsStatus.NODATA, chain=chain, target=target)
        return _Answer(DnsStatus.OK, tuple(answer.rrset), chain, target)

    async def _follow(self, name: str, rdtype: dns.rdatatype.RdataType) -> _Answer:
        """Ask, and keep asking at the CNAME target when a server stopped mid-chain."""
        chain: list[str] = []
        current = name
        for _ in range(MAX_CNAME_HOPS):
            answer = await self._ask(current, rdtype)
            chain.extend(answer.chain)
            target = answer.target or current
            if answer.status is DnsStatus.NODATA and answer.chain and target != current:
                # The server gave us the CNAME but not what it points to (another zone).
                current = target
                continue
            return _Answer(answer.status, answer.rdatas, tuple(chain), target, answer.error)
        return _Answer(DnsStatus.ERROR, chain=tuple(chain), error="CNAME chain too long")

    async def lookup_txt(self, name: str) -> TxtLookup:
        """TXT records at ``name``, each record's character-strings kept apart (RFC 8461 §3.1)."""
        name = _text(name)
        answer = await self._follow(name, dns.rdatatype.TXT)
        records = tuple(tuple(rdata.strings) for rdata in answer.rdatas)  # type: ignore[attr-defined]
        return TxtLookup(name, answer.status, records, answer.chain, answer.error)

    async def lookup_mx(self, name: str) -> MxLookup:
        """MX hosts sorted by preference then name; a null MX (RFC 7505) is ``MxHost(0, "")``."""
        name = _text(name)
        answer = await self._follow(name, dns.rdatatype.MX)
        hosts = sorted(
            {
                MxHost(int(rdata.preference), _text(rdata.exchange))  # type: ignore[attr-defined]
                for rdata in answer.rdatas
            },
            key=lambda mx: (mx.preference, mx.host),
        )
        return MxLookup(name, answer.status, tuple(hosts), answer.error)

    async def lookup_address(self, name: str) -> AddressLookup:
        """A and AAAA at once; OK when either has an address, else the more telling failure."""
        name = _text(name)
        v4, v6 = await asyncio.gather(
            self._follow(name, dns.rdatatype.A), self._follow(name, dns.rdatatype.AAAA)
        )
        addresses = tuple(
            str(rdata.address)  # type: ignore[attr-defined]
            for rdata in (*v4.rdatas, *v6.rdatas)
        )
        if addresses:
            return AddressLookup(name, DnsStatus.OK, addresses)
        # NXDOMAIN on either side means the name does not exist; otherwise report the failure
        # of the A question, or the AAAA one if A was merely empty.
        for status in (DnsStatus.NXDOMAIN, DnsStatus.SERVFAIL, DnsStatus.TIMEOUT, DnsStatus.ERROR):
            for answer in (v4, v6):
                if answer.status is status:
                    return AddressLookup(name, status, (), answer.error)
        return AddressLookup(name, DnsStatus.NODATA)
