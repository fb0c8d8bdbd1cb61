"""The STARTTLS probe against the lab's real SMTP hosts: every outcome of RFC 8461 §4.2."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from stspilot.facts import (
    AddressProbe,
    CertInfo,
    DnsStatus,
    MxProbe,
    SmtpOutcome,
    TlsFailure,
    TlsResult,
)
from stspilot.lab.scenarios import BY_DOMAIN
from stspilot.lab.world import Lab
from stspilot.probes.resolver import Resolver, ResolverConfig
from stspilot.probes.smtp import MxProber, SmtpOptions, worst_address
from stspilot.probes.tls import TlsContexts

pytestmark = pytest.mark.asyncio(loop_scope="module")

# scenario domain (its mx1 is probed) -> (outcome, TLS failure)
CASES: dict[str, tuple[SmtpOutcome, TlsFailure | None]] = {
    "enforce-ok.test": (SmtpOutcome.OK, None),
    "mx-expiring.test": (SmtpOutcome.OK, None),
    "mx-no-starttls.test": (SmtpOutcome.NO_STARTTLS, None),
    "mx-starttls-refused.test": (SmtpOutcome.STARTTLS_REJECTED, None),
    "mx-tls-broken.test": (SmtpOutcome.TLS_FAILED, TlsFailure.HANDSHAKE),
    "mx-no-banner.test": (SmtpOutcome.BANNER_TIMEOUT, None),
    "mx-banner-554.test": (SmtpOutcome.BANNER_REJECTED, None),
    "mx-garbage.test": (SmtpOutcome.PROTOCOL_ERROR, None),
    "mx-expired.test": (SmtpOutcome.TLS_FAILED, TlsFailure.EXPIRED),
    "mx-self-signed.test": (SmtpOutcome.TLS_FAILED, TlsFailure.SELF_SIGNED),
    "mx-wrong-name.test": (SmtpOutcome.TLS_FAILED, TlsFailure.HOST_MISMATCH),
    "mx-untrusted.test": (SmtpOutcome.TLS_FAILED, TlsFailure.UNTRUSTED),
    "mx-not-yet-valid.test": (SmtpOutcome.TLS_FAILED, TlsFailure.NOT_YET_VALID),
    "mx-unknown-ca.test": (SmtpOutcome.TLS_FAILED, TlsFailure.UNTRUSTED),
    "mx-chain-incomplete.test": (SmtpOutcome.TLS_FAILED, TlsFailure.CHAIN_INCOMPLETE),
    "chain-ok.test": (SmtpOutcome.OK, None),  # leaf + intermediate: validates
    "mx-no-address.test": (SmtpOutcome.NO_ADDRESS, None),
    "mx-second-address-expired.test": (SmtpOutcome.TLS_FAILED, TlsFailure.EXPIRED),
}
TOTAL = 2.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab([BY_DOMAIN[d] for d in CASES]) as world:
        yield world


def _prober(lab: Lab, port: int | None = None) -> MxProber:
    info = lab.info
    resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port, timeout=1, lifetime=2))
    options = SmtpOptions(
        port=port or info.smtp_port, connect_timeout=1, command_timeout=0.5, total_timeout=TOTAL
    )
    return MxProber(resolver, options, tls=TlsContexts.create(info.ca_file))


@pytest.mark.parametrize("domain", list(CASES))
async def test_probe_outcomes(lab: Lab, domain: str) -> None:
    outcome, failure = CASES[domain]
    host = f"mx1.{domain}"
    started = time.perf_counter()
    result = await _prober(lab).probe_mx(host)
    assert time.perf_counter() - started < TOTAL + 1.5
    assert result.outcome is outcome, result.error
    assert result.host == host
    if outcome is SmtpOutcome.NO_ADDRESS:
        assert result.address is not None and result.address.status is DnsStatus.NXDOMAIN
        return
    if failure is None:
        assert result.tls is None or result.tls.ok
    else:
        assert result.tls is not None and result.tls.failure is failure
        assert result.error  # the verifier's words, for the explanation
    if result.tls is not None and result.tls.cert is not None:
        assert result.tls.cert.not_after > result.tls.cert.not_before


async def test_good_mx_details(lab: Lab) -> None:
    result = await _prober(lab).probe_mx("mx1.enforce-ok.test")
    assert result.banner.startswith("mx1.enforce-ok.test ESMTP")
    assert result.ehlo_name == "mx1.enforce-ok.test"
    assert result.tls is not None and result.tls.version in ("TLSv1.2", "TLSv1.3")
    assert result.tls.cert is not None and result.tls.cert.dns_names == ("mx1.enforce-ok.test",)
    assert result.ip.startswith("127.")


async def test_refused_certificates_are_read(lab: Lab) -> None:
    prober = _prober(lab)
    self_signed = await prober.probe_mx("mx1.mx-self-signed.test")
    wrong = await prober.probe_mx("mx1.mx-wrong-name.test")
    assert self_signed.tls and self_signed.tls.cert and self_signed.tls.cert.self_signed
    assert wrong.tls and wrong.tls.cert and wrong.tls.cert.dns_names == ("wrong-name.lab.invalid",)


async def test_the_chain_sent_with_a_refused_certificate_is_read(lab: Lab) -> None:
    prober = _prober(lab)
    leaf_only = await prober.probe_mx("mx1.mx-chain-incomplete.test")
    unknown_ca = await prober.probe_mx("mx1.mx-untrusted.test")
    self_signed = await prober.probe_mx("mx1.mx-self-signed.test")
    assert leaf_only.tls and leaf_only.tls.cert
    assert leaf_only.tls.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert leaf_only.tls.cert.chain_length == 1 and leaf_only.tls.cert.issuer_sent is False
    assert "stspilot lab intermediate CA" in leaf_only.tls.cert.issuer
    # An unknown CA that sends its full chain is untrusted, not incomplete.
    assert unknown_ca.tls and unknown_ca.tls.cert
    assert unknown_ca.tls.cert.chain_length == 2 and unknown_ca.tls.cert.issuer_sent is True
    assert self_signed.tls and self_signed.tls.failure is TlsFailure.SELF_SIGNED


async def test_nothing_listening_is_connect_failed(lab: Lab) -> None:
    result = await _prober(lab, port=1).probe_mx("mx1.enforce-ok.test")
    assert result.outcome is SmtpOutcome.CONNECT_FAILED


@pytest.mark.parametrize(
    ("script", "outcome"),
    [
        (b"220-first\r\n220-second\r\n", SmtpOutcome.BANNER_TIMEOUT),  # never finishes
        (b"220 ok\r\n" + b"250-x\r\n" * 200, SmtpOutcome.PROTOCOL_ERROR),  # too many lines
        (b"220 ok\r\n250-x\r\n251 changed\r\n", SmtpOutcome.PROTOCOL_ERROR),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", SmtpOutcome.PROTOCOL_ERROR),
        (b"220 " + b"a" * 100_000 + b"\r\n", SmtpOutcome.PROTOCOL_ERROR),  # line too long
        (b"220 ok\r\n250 x\r\n", SmtpOutcome.NO_STARTTLS),
        (b"220 ok\r\n250-x\r\n250 STARTTLS\r\n530 no\r\n", SmtpOutcome.STARTTLS_REJECTED),
        # RFC 5321 §4.2: the last line of a reply may be the code alone.
        (b"220\r\n250\r\n", SmtpOutcome.NO_STARTTLS),
        (b"220 ok\r\n250-x\r\n250-STARTTLS\r\n250\r\n530\r\n", SmtpOutcome.STARTTLS_REJECTED),
    ],
)
async def test_scripted_servers(script: bytes, outcome: SmtpOutcome) -> None:
    """Raw servers that answer with a fixed script, whatever the client says."""
    result, _ = await _scripted(script)
    assert result.outcome is outcome, result.error


async def test_a_554_greeting_is_kept_and_answered_with_quit() -> None:
    """RFC 5321 §3.1: the 554 text says why the session is refused; the client then sends
    QUIT (§4.1.1.10). The finding showed an empty greeting and the probe just hung up."""
    greeting = b"554 5.7.1 mx.script.test no SMTP service for 198.51.100.7\r\n"
    result, heard = await _scripted(greeting)
    assert result.outcome is SmtpOutcome.BANNER_REJECTED
    assert "no SMTP service for 198.51.100.7" in result.banner
    assert result.by_address[0].banner == result.banner
    assert heard == b"QUIT\r\n"


async def _scripted(script: bytes) -> tuple[MxProbe, bytes]:
    """Probe a raw server that answers ``script`` whatever it is told; what it heard."""
    writers: list[asyncio.StreamWriter] = []
    heard = bytearray()
    hung_up = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(OSError):
            writer.write(script)
            await writer.drain()
            while data := await reader.read(65536):  # until the probe hangs up
                heard.extend(data)
        writer.transport.abort()
        hung_up.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    from stspilot.lab.dns_server import DnsData, DnsServer, Record

    dns = DnsServer(DnsData([Record("mx.script.test", "A", "127.0.0.1")]), host="127.0.0.1")
    await dns.start()
    try:
        resolver = Resolver(ResolverConfig(("127.0.0.1",), dns.port, timeout=1, lifetime=2))
        options = SmtpOptions(port=port, connect_timeout=1, command_timeout=0.5, total_timeout=2)
        result = await MxProber(resolver, options).probe_mx("mx.script.test")
        # what the probe sent before hanging up is read by the server after the probe returns
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hung_up.wait(), 2)
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
        await dns.stop()
    return result, bytes(heard)


async def test_every_address_of_a_host_is_probed(lab: Lab) -> None:
    """mx1 has two addresses; the second serves an expired certificate. Only the first was
    probed, so the host was reported as fine (RFC 8461 §4.2: each connection must validate)."""
    result = await _prober(lab).probe_mx("mx1.mx-second-address-expired.test")
    assert result.address is not None and len(result.address.addresses) == 2
    assert [a.ip for a in result.by_address] == list(result.address.addresses)
    outcomes = sorted(str(a.outcome) for a in result.by_address)
    assert outcomes == ["ok", "tls-failed"]
    bad = next(a for a in result.by_address if a.outcome is SmtpOutcome.TLS_FAILED)
    assert result.outcome is SmtpOutcome.TLS_FAILED and result.ip == bad.ip
    assert result.tls is not None and result.tls.failure is TlsFailure.EXPIRED


async def test_an_unreachable_address_does_not_decide_the_host() -> None:
    """A sender moves on to the next address (RFC 5321 §5.1), and a checker without IPv6
    cannot reach any AAAA: the host's verdict is its worst reached address."""
    ok = AddressProbe("192.0.2.1", SmtpOutcome.OK)
    down = AddressProbe("2001:db8::1", SmtpOutcome.CONNECT_FAILED, error="unreachable")
    assert worst_address([down, ok]) is ok
    assert worst_address([down]) is down
    expiring = [_with_expiry("192.0.2.1", 90), _with_expiry("192.0.2.2", 3)]
    assert worst_address(expiring).ip == "192.0.2.2"  # the certificate that expires first


async def test_ssrf_guard_blocks_private_mx_before_connecting(lab: Lab) -> None:
    """Service mode (``allow_private=False``): an MX on a loopback address is not probed, as
    the policy fetch is not; the lab's servers see no connection."""
    info = lab.info
    before = sum(h.service.connections for h in lab.smtp_hosts)
    resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port, timeout=1, lifetime=2))
    options = SmtpOptions(port=info.smtp_port, connect_timeout=1, allow_private=False)
    result = await MxProber(resolver, options).probe_mx("mx1.enforce-ok.test")
    assert result.outcome is SmtpOutcome.BLOCKED
    assert not result.ip and "private, loopback or link-local" in (result.error or "")
    assert sum(h.service.connections for h in lab.smtp_hosts) == before


def _with_expiry(ip: str, days: int) -> AddressProbe:
    now = datetime.now(UTC)
    cert = CertInfo("CN=mx", "CN=ca", ("mx.example",), now, now + timedelta(days=days), False)
    return AddressProbe(ip, SmtpOutcome.OK, tls=TlsResult(ok=True, cert=cert))
