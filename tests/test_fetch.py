"""The policy fetch against the lab's real HTTPS hosts: every outcome a sender can meet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from stspilot.facts import DnsStatus, FetchOutcome, TlsFailure
from stspilot.lab.scenarios import BY_DOMAIN
from stspilot.lab.world import Lab
from stspilot.probes.addresses import is_public
from stspilot.probes.fetch import (
    MAX_POLICY_BYTES,
    FetchOptions,
    PolicyFetcher,
    ProtocolError,
    exchange,
)
from stspilot.probes.resolver import Resolver, ResolverConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

# domain -> (outcome, HTTP status, TLS failure)
CASES: dict[str, tuple[FetchOutcome, int | None, TlsFailure | None]] = {
    "enforce-ok.test": (FetchOutcome.OK, 200, None),
    "fetch-nxdomain.test": (FetchOutcome.DNS_FAILURE, None, None),
    "fetch-404.test": (FetchOutcome.HTTP_STATUS, 404, None),
    "fetch-redirect.test": (FetchOutcome.REDIRECT, 301, None),
    "fetch-html.test": (FetchOutcome.OK, 200, None),  # evaluation judges the content type
    "fetch-type.test": (FetchOutcome.OK, 200, None),
    "fetch-huge.test": (FetchOutcome.TOO_LARGE, 200, None),
    "fetch-gzip-bomb.test": (FetchOutcome.TOO_LARGE, 200, None),
    "fetch-endless.test": (FetchOutcome.TOO_LARGE, 200, None),
    "fetch-slow.test": (FetchOutcome.TIMEOUT, None, None),
    "fetch-hang.test": (FetchOutcome.TIMEOUT, None, None),
    "fetch-garbage.test": (FetchOutcome.PROTOCOL_ERROR, None, None),
    "fetch-bad-chunk.test": (FetchOutcome.PROTOCOL_ERROR, None, None),
    "fetch-gzip-chunked.test": (FetchOutcome.PROTOCOL_ERROR, None, None),
    "fetch-no-tls.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.HANDSHAKE),
    "fetch-expired.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.EXPIRED),
    "fetch-wrong-name.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.HOST_MISMATCH),
    "fetch-untrusted.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.UNTRUSTED),
    "fetch-not-yet-valid.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.NOT_YET_VALID),
    "fetch-unknown-ca.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.UNTRUSTED),
    "fetch-self-signed.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.SELF_SIGNED),
    "fetch-chain-incomplete.test": (FetchOutcome.TLS_FAILED, None, TlsFailure.CHAIN_INCOMPLETE),
    "chain-ok.test": (FetchOutcome.OK, 200, None),  # leaf + intermediate: validates
}
TOTAL = 1.5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab([BY_DOMAIN[d] for d in CASES]) as world:
        yield world


def _fetcher(lab: Lab, **kw: object) -> PolicyFetcher:
    info = lab.info
    resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port, timeout=1, lifetime=2))
    options = FetchOptions(
        port=info.https_port,
        ca_file=info.ca_file,
        connect_timeout=1,
        read_timeout=0.5,
        total_timeout=TOTAL,
        **kw,  # type: ignore[arg-type]
    )
    return PolicyFetcher(resolver, options)


@pytest.mark.parametrize("domain", list(CASES))
async def test_fetch_outcomes(lab: Lab, domain: str) -> None:
    outcome, status, failure = CASES[domain]
    started = time.perf_counter()
    async with _fetcher(lab) as fetcher:
        result = await fetcher.fetch_policy(domain)
    assert result.outcome is outcome, result.error
    assert result.status == status
    assert result.url == f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    assert time.perf_counter() - started < TOTAL + 2.5  # bounded, whatever the peer does
    if failure is None:
        assert result.tls is None or result.tls.ok
    else:
        assert result.tls is not None and result.tls.failure is failure
    if outcome is FetchOutcome.OK:
        assert result.tls is not None and result.tls.version.startswith("TLS")
        assert result.tls.cert is not None
        assert f"mta-sts.{domain}" in result.tls.cert.dns_names
    if result.body is not None:
        assert len(result.body) <= MAX_POLICY_BYTES


async def test_policy_body_and_headers(lab: Lab) -> None:
    async with _fetcher(lab) as fetcher:
        ok = await fetcher.fetch_policy("enforce-ok.test")
        html = await fetcher.fetch_policy("fetch-html.test")
        typed = await fetcher.fetch_policy("fetch-type.test")
        moved = await fetcher.fetch_policy("fetch-redirect.test")
    assert ok.body is not None and ok.body.startswith(b"version: STSv1\nmode: enforce\n")
    assert ok.content_type == "text/plain"
    assert html.content_type.startswith("text/html") and html.body and b"<html>" in html.body
    assert typed.content_type == "application/octet-stream"
    assert moved.location == "https://www.fetch-redirect.test/.well-known/mta-sts.txt"
    assert ok.address is not None and ok.address.status is DnsStatus.OK


async def test_request_is_what_a_sender_sends(lab: Lab) -> None:
    async with _fetcher(lab) as fetcher:
        await fetcher.fetch_policy("enforce-ok.test")
    host = next(h for h in lab.https_hosts if "mta-sts.enforce-ok.test" in h.policies)
    head = host.last_head.decode().lower()
    assert head.startswith("get /.well-known/mta-sts.txt http/1.1\r\n")
    assert "\r\nhost: mta-sts.enforce-ok.test\r\n" in head
    assert "\r\ncache-control: no-cache\r\n" in head  # RFC 8461 §3.3: no HTTP caching


async def test_refused_cert_is_still_described(lab: Lab) -> None:
    async with _fetcher(lab) as fetcher:
        result = await fetcher.fetch_policy("fetch-wrong-name.test")
    assert result.tls is not None and result.tls.cert is not None
    assert result.tls.cert.dns_names == ("wrong-name.lab.invalid",)
    assert not result.tls.cert.self_signed


async def test_a_missing_intermediate_is_told_from_an_unknown_ca(lab: Lab) -> None:
    async with _fetcher(lab) as fetcher:
        leaf_only = await fetcher.fetch_policy("fetch-chain-incomplete.test")
        unknown_ca = await fetcher.fetch_policy("fetch-untrusted.test")
    assert leaf_only.tls is not None and leaf_only.tls.cert is not None
    assert leaf_only.tls.cert.chain_length == 1 and leaf_only.tls.cert.issuer_sent is False
    assert "stspilot lab intermediate CA" in leaf_only.tls.cert.issuer
    assert leaf_only.tls.detail == "unable to get local issuer certificate"
    assert unknown_ca.tls is not None and unknown_ca.tls.cert is not None
    assert unknown_ca.tls.cert.chain_length == 2 and unknown_ca.tls.cert.issuer_sent is True
    assert leaf_only.tls.cert.ca_issuers  # the public-CA habit that tells the two apart


async def test_a_lone_leaf_from_an_unknown_ca_is_not_a_missing_intermediate(lab: Lab) -> None:
    """It was reported as chain-incomplete ("send the intermediate") though no intermediate
    exists: the leaf names no caIssuers, as private CAs' leaves do."""
    async with _fetcher(lab) as fetcher:
        lone = await fetcher.fetch_policy("fetch-unknown-ca.test")
    assert lone.tls is not None and lone.tls.cert is not None
    assert lone.tls.cert.issuer_sent is False and lone.tls.cert.ca_issuers == ()
    assert lone.tls.failure is TlsFailure.UNTRUSTED


async def test_ssrf_guard_blocks_loopback_before_connecting(lab: Lab) -> None:
    host = next(h for h in lab.https_hosts if "mta-sts.enforce-ok.test" in h.policies)
    before = host.service.connections
    async with _fetcher(lab, allow_private=False) as fetcher:
        result = await fetcher.fetch_policy("enforce-ok.test")
    assert result.outcome is FetchOutcome.BLOCKED
    assert host.service.connections == before


async def test_nothing_listening_is_connect_failed(lab: Lab) -> None:
    info = lab.info
    resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port, timeout=1, lifetime=2))
    options = FetchOptions(port=1, ca_file=info.ca_file, connect_timeout=1, total_timeout=2)
    async with PolicyFetcher(resolver, options) as fetcher:
        result = await fetcher.fetch_policy("enforce-ok.test")
    assert result.outcome is FetchOutcome.CONNECT_FAILED


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("192.0.2.1", False),  # documentation range counts as reserved/private
        ("8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("169.254.1.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("2606:4700::1111", True),
        ("not-an-ip", False),
    ],
)
async def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


# --- HTTP/1.1 framing (RFC 9112), fed to a real StreamReader: no network needed --------------

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
_CHUNKED = _OK + b"Transfer-Encoding: chunked\r\n\r\n"

# (case id, response bytes, expected body or None for ProtocolError, text the error contains)
FRAMES: list[tuple[str, bytes, bytes | None, str]] = [
    ("length", _OK + b"Content-Length: 3\r\n\r\nabc", b"abc", ""),
    ("chunked", _CHUNKED + b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: y\r\n\r\n",
     b"abcde", ""),
    ("close-delimited", b"HTTP/1.0 200 OK\r\n\r\nabc", b"abc", ""),
    ("interim-then-200", b"HTTP/1.1 100 Continue\r\n\r\n" + _OK + b"Content-Length: 1\r\n\r\nz",
     b"z", ""),
    ("same-length-twice", _OK + b"Content-Length: 3, 3\r\n\r\nabc", b"abc", ""),
    ("chunk-0x", _CHUNKED + b"0x3\r\nabc\r\n0\r\n\r\n", None, "chunk"),
    ("chunk-underscore", _CHUNKED + b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", None, "chunk"),
    ("chunk-plus", _CHUNKED + b"+3\r\nabc\r\n0\r\n\r\n", None, "chunk"),
    ("chunk-negative", _CHUNKED + b"-1\r\nabc\r\n0\r\n\r\n", None, "chunk"),
    ("chunk-too-long", _CHUNKED + b"3\r\nabcdef\r\n0\r\n\r\n", None, "chunk"),
    ("chunk-size-21-digits", _CHUNKED + b"1" * 21 + b"\r\n", None, "chunk"),
    ("gzip-chunked", _OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     None, "Transfer-Encoding other than chunked"),
    ("length-conflict", _OK + b"Content-Length: 3, 4\r\n\r\nabc", None, "Content-Length"),
    ("length-plus", _OK + b"Content-Length: +3\r\n\r\nabc", None, "Content-Length"),
    ("length-truncated", _OK + b"Content-Length: 9\r\n\r\nabc", None, "RFC 9112"),
    ("chunked-truncated", _CHUNKED + b"9\r\nabc", None, "RFC 9112"),
    ("interim-forever", b"HTTP/1.1 100 Continue\r\n\r\n" * 7, None, "interim"),
    ("head-too-large", _OK + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n", None, "RFC 9112"),
    ("not-http", b"\x00\xffSSH-2.0-OpenSSH\r\n\r\n", None, "RFC 9112"),
    ("empty", b"", None, "RFC 9112"),
]  # fmt: skip


async def _exchange(raw: bytes, cap: int = MAX_POLICY_BYTES) -> bytes:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    response = await exchange(reader, None, "mta-sts.example", cap=cap, read_timeout=1)
    return response.body


@pytest.mark.parametrize(("case", "raw", "body", "says"), FRAMES, ids=[f[0] for f in FRAMES])
async def test_framing_is_rfc9112_strict(
    case: str, raw: bytes, body: bytes | None, says: str
) -> None:
    """The hand-written reader took ``0x3``, ``1_0`` and ``+3`` as chunk sizes, raised an
    uncaught ValueError on ``-1``, and read ``gzip, chunked`` bodies without gunzipping them."""
    if body is not None:
        assert await _exchange(raw) == body
        return
    with pytest.raises(ProtocolError) as info:
        await _exchange(raw)
    assert says in str(info.value)


async def test_a_huge_chunk_is_read_only_to_the_cap() -> None:
    raw = _CHUNKED + b"f" * 20 + b"\r\n" + b"x" * 100
    assert await _exchange(raw, cap=10) == b"x" * 11


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200), st.sampled_from([_CHUNKED, _OK + b"Content-Length: 5\r\n\r\n", b""])
)
async def test_any_bytes_are_a_response_or_a_protocol_error(tail: bytes, head: bytes) -> None:
    try:
        body = await _exchange(head + tail, cap=64)
    except ProtocolError:
        return
    assert len(body) <= 65
