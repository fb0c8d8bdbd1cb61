"""The resolver against the lab's real authoritative DNS server on loopback (no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stspilot.facts import DnsStatus, MxHost
from stspilot.lab.dns_server import DnsData, DnsFault, DnsServer, Record
from stspilot.lab.world import txt_value
from stspilot.probes.resolver import Resolver, ResolverConfig

LONG = "x" * 250
RECORDS = [
    Record("_mta-sts.ok.test", "TXT", txt_value(["v=STSv1; id=1"])),
    Record("_mta-sts.split.test", "TXT", txt_value(["v=STSv1; ", "id=2"])),
    Record("_mta-sts.two.test", "TXT", txt_value(["v=STSv1; id=1"])),
    Record("_mta-sts.two.test", "TXT", txt_value(["v=spf1 -all"])),
    Record("_mta-sts.chain.test", "CNAME", "_mta-sts.hop.test."),
    Record("_mta-sts.hop.test", "CNAME", "_mta-sts.provider.test."),
    Record("_mta-sts.provider.test", "TXT", txt_value(["v=STSv1; id=3"])),
    Record("_mta-sts.dangling.test", "CNAME", "_mta-sts.nowhere.test."),
    Record("_mta-sts.loop1.test", "CNAME", "_mta-sts.loop2.test."),
    Record("_mta-sts.loop2.test", "CNAME", "_mta-sts.loop1.test."),
    *(Record("_mta-sts.big.test", "TXT", txt_value([LONG, f"{n}"])) for n in range(12)),
    Record("ok.test", "MX", "20 b.ok.test."),
    Record("ok.test", "MX", "10 A.ok.test."),
    Record("ok.test", "MX", "10 a2.ok.test."),
    Record("null.test", "MX", "0 ."),
    Record("a.ok.test", "A", "192.0.2.1"),
    Record("a.ok.test", "AAAA", "2001:db8::1"),
    Record("v6.ok.test", "AAAA", "2001:db8::2"),
    Record("sub.empty.test", "A", "192.0.2.3"),  # makes empty.test an empty non-terminal
]
FAULTS = {
    "_mta-sts.broken.test": DnsFault.SERVFAIL,
    "_mta-sts.silent.test": DnsFault.TIMEOUT,
    "refused.test": DnsFault.REFUSED,
}


@pytest.fixture
async def resolver() -> AsyncIterator[Resolver]:
    server = DnsServer(DnsData(RECORDS, FAULTS), host="127.0.0.1")
    await server.start()
    try:
        yield Resolver(ResolverConfig(("127.0.0.1",), server.port, timeout=0.3, lifetime=0.6))
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("name", "status", "records", "chain"),
    [
        ("_mta-sts.ok.test", DnsStatus.OK, ((b"v=STSv1; id=1",),), ()),
        ("_MTA-STS.OK.TEST.", DnsStatus.OK, ((b"v=STSv1; id=1",),), ()),
        ("_mta-sts.split.test", DnsStatus.OK, ((b"v=STSv1; ", b"id=2"),), ()),
        (
            "_mta-sts.chain.test",
            DnsStatus.OK,
            ((b"v=STSv1; id=3",),),
            ("_mta-sts.chain.test", "_mta-sts.hop.test"),
        ),
        ("_mta-sts.dangling.test", DnsStatus.NXDOMAIN, (), None),
        ("_mta-sts.nothing.test", DnsStatus.NXDOMAIN, (), ()),
        ("empty.test", DnsStatus.NODATA, (), ()),
        ("a.ok.test", DnsStatus.NODATA, (), ()),
        ("_mta-sts.broken.test", DnsStatus.SERVFAIL, (), ()),
        ("_mta-sts.silent.test", DnsStatus.TIMEOUT, (), ()),
    ],
)
async def test_lookup_txt(
    resolver: Resolver,
    name: str,
    status: DnsStatus,
    records: tuple[tuple[bytes, ...], ...],
    chain: tuple[str, ...] | None,
) -> None:
    result = await resolver.lookup_txt(name)
    assert result.status is status, result.error
    assert result.records == records
    if chain is not None:
        assert result.cname_chain == chain
    assert result.name == name.lower().rstrip(".")
    assert (status in (DnsStatus.OK, DnsStatus.NODATA)) == (result.error == "")


async def test_txt_keeps_every_record(resolver: Resolver) -> None:
    result = await resolver.lookup_txt("_mta-sts.two.test")
    assert sorted(result.records) == [(b"v=STSv1; id=1",), (b"v=spf1 -all",)]


async def test_txt_over_tcp_when_udp_truncates(resolver: Resolver) -> None:
    result = await resolver.lookup_txt("_mta-sts.big.test")
    assert result.status is DnsStatus.OK
    assert len(result.records) == 12  # ~3 KiB: more than a UDP answer carries here
    assert all(strings[0] == LONG.encode() for strings in result.records)


async def test_cname_loop_is_an_error_not_a_hang(resolver: Resolver) -> None:
    result = await resolver.lookup_txt("_mta-sts.loop1.test")
    assert result.status in (DnsStatus.SERVFAIL, DnsStatus.ERROR)


@pytest.mark.parametrize(
    ("name", "status", "hosts"),
    [
        (
            "ok.test",
            DnsStatus.OK,
            (MxHost(10, "a.ok.test"), MxHost(10, "a2.ok.test"), MxHost(20, "b.ok.test")),
        ),
        ("null.test", DnsStatus.OK, (MxHost(0, ""),)),
        ("a.ok.test", DnsStatus.NODATA, ()),
        ("missing.test", DnsStatus.NXDOMAIN, ()),
        ("refused.test", DnsStatus.SERVFAIL, ()),
    ],
)
async def test_lookup_mx(
    resolver: Resolver, name: str, status: DnsStatus, hosts: tuple[MxHost, ...]
) -> None:
    result = await resolver.lookup_mx(name)
    assert (result.status, result.hosts) == (status, hosts)


@pytest.mark.parametrize(
    ("name", "status", "addresses"),
    [
        ("a.ok.test", DnsStatus.OK, ("192.0.2.1", "2001:db8::1")),
        ("v6.ok.test", DnsStatus.OK, ("2001:db8::2",)),
        ("ok.test", DnsStatus.NODATA, ()),
        ("nope.ok.test", DnsStatus.NXDOMAIN, ()),
        ("refused.test", DnsStatus.SERVFAIL, ()),
    ],
)
async def test_lookup_address(
    resolver: Resolver, name: str, status: DnsStatus, addresses: tuple[str, ...]
) -> None:
    result = await resolver.lookup_address(name)
    assert (result.status, result.addresses) == (status, addresses)


async def test_unreachable_server_is_a_timeout() -> None:
    # Nothing listens on this port: the answer is a value, in bounded time.
    resolver = Resolver(ResolverConfig(("127.0.0.1",), 9, timeout=0.2, lifetime=0.4))
    result = await resolver.lookup_txt("_mta-sts.ok.test")
    assert result.status in (DnsStatus.TIMEOUT, DnsStatus.SERVFAIL, DnsStatus.ERROR)


def test_system_nameservers_are_read_from_resolv_conf_as_dnspython_reads_them(
    tmp_path: Path,
) -> None:
    """resolv.conf is read without importing dns.resolver: the nameserver lines, in order,
    comments skipped; no file or no nameserver is an OSError that says why."""
    import dns.resolver

    from stspilot.probes.resolver import _system_nameservers

    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# a comment\n; another\nsearch example.com\noptions ndots:2 timeout:1\n"
        "nameserver 192.0.2.53\n  nameserver   2001:db8::53  \n#nameserver 192.0.2.99\n"
        "nameserver 192.0.2.53\nnameserver 198.51.100.7 # trailing words\n"
    )
    ours = _system_nameservers(str(conf))
    theirs = dns.resolver.Resolver(filename=str(conf)).nameservers
    assert ours == ("192.0.2.53", "2001:db8::53", "198.51.100.7")
    assert list(dict.fromkeys(str(s) for s in theirs)) == list(ours)
    conf.write_text("search example.com\n")
    with pytest.raises(OSError, match="no nameservers"):
        _system_nameservers(str(conf))
    with pytest.raises(OSError, match="cannot open"):
        _system_nameservers(str(tmp_path / "missing.conf"))


async def test_each_question_times_out_at_its_own_limit() -> None:
    """A server that never answers: questions asked at different moments each fail at their
    own per-attempt limit (they share one loop timer, oldest first); the lifetime ends the
    retries. A resolver closed and asked again still times out."""
    import asyncio
    import socket
    import time

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    resolver = Resolver(ResolverConfig(("127.0.0.1",), port, timeout=0.3, lifetime=0.3))

    async def timed(delay: float) -> tuple[DnsStatus, float]:
        await asyncio.sleep(delay)
        started = time.monotonic()
        result = await resolver.lookup_txt(f"q{delay}.silent.test")
        return result.status, time.monotonic() - started

    try:
        results = await asyncio.gather(timed(0.0), timed(0.1), timed(0.2))
        await resolver.aclose()
        results.append(await timed(0.0))
    finally:
        silent.close()
    for status, elapsed in results:
        assert status is DnsStatus.TIMEOUT
        assert 0.29 <= elapsed < 2.0  # never early; late only by the machine's load
