"""RFC 2136 + TSIG against real Knot and BIND on loopback: compare-and-swap replacement in one
UPDATE, read-back, refusals with the server's answer, verification at every authoritative
server (a Knot secondary fed by NOTIFY/AXFR from a BIND primary)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from publish_support import ZONE, DnsWorld, dns_world
from stspilot.errors import ConfigError, PublishError
from stspilot.lab.authdns import make_secret
from stspilot.publish.providers import (
    STS_PREFIX,
    TLSRPT_PREFIX,
    TxtChange,
    TxtSet,
    change_txt,
    owned_by,
    split_txt,
)
from stspilot.publish.rfc2136 import Rfc2136Config, Rfc2136Provider, TsigKey
from stspilot.publish.verify import VerifyOptions, authoritative_servers, verify_txt

STS = f"_mta-sts.{ZONE}."
TLS = f"_smtp._tls.{ZONE}."


@pytest.fixture(params=["knot", "bind"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DnsWorld]:
    yield from dns_world(tmp_path, request.param, zone_lines=('_mta-sts TXT "google-site=abc"',))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[DnsWorld]:
    """BIND primary, Knot secondary (NOTIFY + AXFR/IXFR)."""
    yield from dns_world(tmp_path, "bind", secondary=True)


def raw_txt(world: DnsWorld, name: str) -> list[bytes]:
    q = dns.message.make_query(name, "TXT")
    r = dns.query.tcp(q, world.primary.address, port=world.port, timeout=2)
    return sorted(b"".join(rd.strings) for rs in r.answer for rd in rs)


def test_split_and_ownership_follow_the_rfcs() -> None:
    assert split_txt("a" * 300) == (b"a" * 255, b"a" * 45)
    assert owned_by((b"v=STSv1; id=1",), STS_PREFIX)
    assert owned_by((b"v=STS", b"v1; id=1"), STS_PREFIX)  # strings are joined (RFC 8461 §3.1)
    assert not owned_by((b"v=STSv10; id=1",), STS_PREFIX)
    assert not owned_by((b"google-site=abc",), STS_PREFIX)


async def test_create_then_replace_atomically_keeping_other_records(world: DnsWorld) -> None:
    provider = world.provider()
    first = await change_txt(provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"), expected=[None])
    assert first.written and first.after.values(STS_PREFIX) == ("v=STSv1; id=1",)
    second = await change_txt(
        provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=2"), expected=["v=STSv1; id=1"]
    )
    assert second.written
    # One v=STSv1 record, and the unrelated TXT record at the name untouched (G1.8).
    assert raw_txt(world, STS) == [b"google-site=abc", b"v=STSv1; id=2"]
    again = await change_txt(
        provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=2"), expected=["v=STSv1; id=1"]
    )
    assert not again.written  # a resumed step writes nothing


async def test_long_record_is_split_and_replaced_by_its_exact_strings(world: DnsWorld) -> None:
    provider = world.provider()
    rua = "v=TLSRPTv1; rua=" + ",".join(f"mailto:r{i}@{'x' * 40}.example" for i in range(6))
    await change_txt(provider, TxtChange(TLS, TLSRPT_PREFIX, rua))
    current = await provider.read_txt(TLS)
    assert len(current.records[0]) == 2 and current.values(TLSRPT_PREFIX) == (rua,)
    await change_txt(provider, TxtChange(TLS, TLSRPT_PREFIX, "v=TLSRPTv1; rua=mailto:a@b.test"))
    assert raw_txt(world, TLS) == [b"v=TLSRPTv1; rua=mailto:a@b.test"]


async def test_compare_and_swap_refuses_a_record_changed_since_it_was_read(
    world: DnsWorld,
) -> None:
    provider = world.provider()
    await change_txt(provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"))
    stale = await provider.read_txt(STS)
    # Someone else changes the record between our read and our write.
    await change_txt(provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=theirs"))
    with pytest.raises(PublishError) as caught:
        await provider.write_txt(TxtChange(STS, STS_PREFIX, "v=STSv1; id=ours"), stale)
    assert caught.value.answer == "NXRRSET"
    assert raw_txt(world, STS) == [b"google-site=abc", b"v=STSv1; id=theirs"]
    # And change_txt refuses to overwrite a value it did not expect (G1.9).
    with pytest.raises(PublishError, match="changed since the plan"):
        await change_txt(
            provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=3"), expected=["v=STSv1; id=1"]
        )
    assert raw_txt(world, STS) == [b"google-site=abc", b"v=STSv1; id=theirs"]


async def test_first_publication_never_overwrites_a_record_written_meanwhile(
    world: DnsWorld,
) -> None:
    provider = world.provider()
    await change_txt(provider, TxtChange(TLS, TLSRPT_PREFIX, "v=TLSRPTv1; rua=mailto:x@y.test"))
    with pytest.raises(PublishError) as caught:
        await provider.write_txt(
            TxtChange(TLS, TLSRPT_PREFIX, "v=TLSRPTv1; rua=mailto:me@y.test"), TxtSet(TLS)
        )
    assert caught.value.answer == "YXRRSET"
    assert raw_txt(world, TLS) == [b"v=TLSRPTv1; rua=mailto:x@y.test"]


@pytest.mark.parametrize(
    ("key_name", "secret", "answer"),
    [("stspilot-lab", "wrong", "NOTAUTH TSIG BADSIG"), ("nobody", "", "NOTAUTH TSIG BADKEY")],
)
async def test_bad_tsig_is_refused_with_the_servers_answer(
    world: DnsWorld, key_name: str, secret: str, answer: str
) -> None:
    provider = world.provider(key_name=key_name, secret=make_secret() if secret else None)
    with pytest.raises(PublishError) as caught:
        await change_txt(provider, TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"))
    assert caught.value.answer == answer
    assert raw_txt(world, STS) == [b"google-site=abc"]


async def test_unserved_zone_and_refused_updates(world: DnsWorld) -> None:
    key = TsigKey("stspilot-lab", world.secret)
    other = Rfc2136Provider(Rfc2136Config("other.test", world.primary.address, world.port, key))
    with pytest.raises(PublishError) as caught:
        await other.write_txt(
            TxtChange("_mta-sts.other.test.", STS_PREFIX, "v=STSv1; id=1"),
            TxtSet("_mta-sts.other.test."),
        )
    # Knot answers unsigned (not believed, G4.9), BIND signed; both say NOTAUTH.
    assert caught.value.answer.startswith(("NOTAUTH", "REFUSED"))
    unsigned = Rfc2136Provider(Rfc2136Config(ZONE, world.primary.address, world.port, None))
    with pytest.raises(PublishError) as caught:
        await unsigned.write_txt(TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"), TxtSet(STS))
    assert caught.value.answer in {"NOTAUTH", "REFUSED"}
    assert raw_txt(world, STS) == [b"google-site=abc"]


async def test_a_cname_at_the_name_is_reported_not_silently_skipped(tmp_path: Path) -> None:
    for world in dns_world(
        tmp_path, "knot", zone_lines=("_mta-sts CNAME _mta-sts.provider.test.",)
    ):
        with pytest.raises(PublishError, match=r"CNAME to _mta-sts\.provider\.test"):
            await change_txt(world.provider(), TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"))


async def test_unreachable_server_and_timeouts_are_one_line(world: DnsWorld) -> None:
    key = TsigKey("stspilot-lab", world.secret)
    closed = Rfc2136Provider(Rfc2136Config(ZONE, "127.0.0.1", 9, key, timeout=1))
    with pytest.raises(PublishError) as caught:  # updates go over TCP: refused at once
        await closed.write_txt(TxtChange(STS, STS_PREFIX, "v=STSv1; id=1"), TxtSet(STS))
    assert caught.value.answer == "unreachable"
    assert "ConnectionRefusedError" in str(caught.value)
    world.primary.pause()
    try:
        slow = Rfc2136Provider(Rfc2136Config(ZONE, world.primary.address, world.port, key, 0.5))
        with pytest.raises(PublishError) as caught:
            await slow.read_txt(STS)
        assert caught.value.answer == "timeout"
    finally:
        world.primary.resume()


def test_config_refuses_md5_and_non_base64_secrets() -> None:
    with pytest.raises(ConfigError, match="MD5"):
        TsigKey("k", make_secret(), "hmac-md5")
    with pytest.raises(ConfigError, match="base64"):
        TsigKey("k", "not base64!")
    assert "secret" not in repr(TsigKey("k", make_secret()))


# --- primary + secondary ----------------------------------------------------------------------


async def test_verification_waits_for_the_secondary(pair: DnsWorld) -> None:
    assert pair.secondary is not None
    servers = await authoritative_servers(ZONE, primary=pair.primary_ns, port=pair.port)
    assert {(s.name, s.address) for s in servers} == {
        (f"ns1.{ZONE}.", pair.primary.address),
        (f"ns2.{ZONE}.", pair.secondary.address),
    }
    # Freeze the secondary: it keeps serving the old zone and postpones transfers.
    pair.secondary.knotc("zone-freeze", ZONE)
    change = TxtChange(STS, STS_PREFIX, "v=STSv1; id=7")
    await change_txt(pair.provider(), change)

    seen: list[str] = []
    thawed: list[float] = []

    async def thaw_later() -> None:
        await asyncio.sleep(1.0)
        assert pair.secondary is not None
        thawed.append(time.monotonic())
        await asyncio.to_thread(pair.secondary.knotc, "zone-thaw", ZONE)

    thaw = asyncio.create_task(thaw_later())
    await verify_txt(
        servers, change, options=VerifyOptions(timeout=20, interval=0.1), progress=seen.append
    )
    done = time.monotonic()
    await thaw
    # Polls before the thaw saw only the primary; the wait ended after the secondary caught up.
    assert seen[0] == f"1/2 servers show {change.label}"
    assert thawed and done >= thawed[0]
    assert seen[-2:] == [f"2/2 servers show {change.label}"] * 2


async def test_a_secondary_that_never_catches_up_is_named(pair: DnsWorld) -> None:
    assert pair.secondary is not None
    servers = await authoritative_servers(ZONE, primary=pair.primary_ns, port=pair.port)
    pair.secondary.knotc("zone-freeze", ZONE)
    change = TxtChange(STS, STS_PREFIX, "v=STSv1; id=8")
    await change_txt(pair.provider(), change)
    with pytest.raises(PublishError) as caught:
        await verify_txt(servers, change, options=VerifyOptions(timeout=1.0, interval=0.1))
    message = str(caught.value)
    assert f"ns2.{ZONE}. ({pair.secondary.address}) serves no record" in message
    assert "ns1." not in message


async def test_a_stopped_secondary_is_named(pair: DnsWorld) -> None:
    assert pair.secondary is not None
    servers = await authoritative_servers(ZONE, primary=pair.primary_ns, port=pair.port)
    pair.secondary.pause()
    change = TxtChange(STS, STS_PREFIX, "v=STSv1; id=9")
    await change_txt(pair.provider(), change)
    with pytest.raises(PublishError, match=r"ns2\.example\.test\. .* no answer"):
        await verify_txt(
            servers, change, options=VerifyOptions(timeout=1.0, interval=0.1, query_timeout=0.3)
        )


# --- bulk id bumps (the hosted service's delegation zone) ------------------------------------


@pytest.fixture
def knot_pair(tmp_path: Path) -> Iterator[DnsWorld]:
    lines = tuple(f'_mta-sts.d{i} TXT "v=STSv1; id=1"' for i in range(60))
    yield from dns_world(tmp_path, "knot", secondary=True, zone_lines=lines)


async def test_bulk_bumps_in_batches_verified_at_every_server(knot_pair: DnsWorld) -> None:
    from stspilot.publish.bulk import change_txt_many

    servers = await authoritative_servers(ZONE, primary=knot_pair.primary_ns, port=knot_pair.port)
    names = [f"_mta-sts.d{i}.{ZONE}." for i in range(60)]
    changes = [TxtChange(n, STS_PREFIX, "v=STSv1; id=2", ttl=300) for n in names]
    expected = {n: ("v=STSv1; id=1",) for n in names}
    result = await change_txt_many(
        knot_pair.provider(), servers, changes, expected=expected, batch=25,
        verify=VerifyOptions(timeout=20, interval=0.05),
    )  # fmt: skip
    assert (result.written, result.unchanged) == (60, 0)
    assert knot_pair.secondary is not None
    for address in (knot_pair.primary.address, knot_pair.secondary.address):
        q = dns.message.make_query(names[59], "TXT")
        r = dns.query.udp(q, address, port=knot_pair.port, timeout=2)
        assert [b"".join(rd.strings) for rs in r.answer for rd in rs] == [b"v=STSv1; id=2"]
    # Again: nothing to write. A record changed elsewhere: nothing is written at all.
    again = await change_txt_many(knot_pair.provider(), servers, changes, expected=expected)
    assert (again.written, again.unchanged) == (0, 60)
    await change_txt(knot_pair.provider(), TxtChange(names[7], STS_PREFIX, "v=STSv1; id=x"))
    bump = [TxtChange(n, STS_PREFIX, "v=STSv1; id=3") for n in names]
    with pytest.raises(PublishError, match="changed since the plan"):
        await change_txt_many(
            knot_pair.provider(), servers, bump, expected={n: ("v=STSv1; id=2",) for n in names}
        )
    assert raw_txt(knot_pair, names[0]) == [b"v=STSv1; id=2"]
