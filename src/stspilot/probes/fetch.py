"""The one HTTPS client path: fetch an MTA-STS policy exactly as a sending MTA would.

RFC 8461 §3.2/§3.3: GET ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; no redirects
(the Location is recorded), status 200 only, the Content-Type recorded for evaluation, at most
64 KiB read, timeouts, no HTTP caching, WebPKI validation for the name ``mta-sts.<domain>`` with
SNI (§7.1). The host is resolved through our ``Resolver`` and the connection goes to that
address while SNI and Host stay the name; in service mode private targets are refused before
connecting (SSRF guard). Every outcome is a ``PolicyFetch`` value.

One GET on one fresh connection is all a policy fetch is, so the connection is our own
(``probes/tlsio.py``: the pre-resolved address, SNI, the SSRF guard, the certificate in hand,
the request sent with the handshake's last flight) and only the HTTP/1.1 framing is delegated,
to h11 (RFC 9112, sans-IO; the parser under httpx's stack): status line, header fields,
Content-Length / chunked / close-delimited bodies, with h11's strictness (a chunk size is hex
digits only; conflicting lengths and transfer codings other than ``chunked`` are refused).
2-3 ms less CPU per fetch than httpx and ~0.1 s less start-up (``docs/check.md``). Every
read is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import h11

from stspilot.facts import AddressLookup, CertInfo, DnsStatus, FetchOutcome, PolicyFetch
from stspilot.probes.addresses import is_public
from stspilot.probes.resolver import Resolver
from stspilot.probes.tls import TlsContexts, failure, success, unverified_cert
from stspilot.probes.tlsio import TlsClient, connect
from stspilot.sts.names import policy_url

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3 suggests 64 KB
USER_AGENT = "stspilot (MTA-STS checker; +https://github.com/stspilot)"
MAX_HEAD_BYTES = 16 * 1024  # status line and header fields (h11 refuses past this + READ_SIZE)
READ_SIZE = 8 * 1024
MAX_INTERIM = 5  # 1xx responses tolerated before the real one


@dataclass(frozen=True, slots=True)
class FetchOptions:
    port: int = 443  # the lab maps 443 to a high port
    ca_file: Path | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # each read
    # RFC 8461 §3.3 suggests senders allow up to a minute; a checker of many domains cannot,
    # and a host that needs more is at the mercy of each sender's shorter limit (docs/check.md).
    total_timeout: float = 20.0
    max_bytes: int = MAX_POLICY_BYTES
    allow_private: bool = True  # False in service mode (SSRF guard)


class ProtocolError(Exception):
    """The peer does not speak HTTP/1.1 as RFC 9112 says (or asks for what we did not)."""


@dataclass(frozen=True, slots=True)
class Response:
    """What one HTTP/1.1 exchange returned: at most ``cap`` + 1 body bytes, as received."""

    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes


def _request(host: str) -> h11.Request:
    return h11.Request(
        method="GET",
        target=POLICY_PATH,
        headers=[
            ("Host", host),
            ("User-Agent", USER_AGENT),
            ("Accept", "text/plain"),
            ("Accept-Encoding", "identity"),  # never ask for compression: nothing to inflate
            ("Cache-Control", "no-cache"),  # RFC 8461 §3.3: no HTTP caching, ever
            ("Pragma", "no-cache"),
            ("Connection", "close"),  # one request per connection: SNI decides the certificate
        ],
    )


def _decode(raw: bytes, encoding: str, cap: int) -> tuple[bytes, bool]:
    """Undo a Content-Encoding without ever holding more than ``cap`` + 1 bytes (gzip bombs)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw, False
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header
            out = inflater.decompress(raw, cap + 1)
        except zlib.error as exc:
            raise ProtocolError(f"bad {encoding} body: {exc}") from exc
        return out, len(out) > cap
    raise ProtocolError(f"unsupported Content-Encoding {encoding!r}")


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


def _connection(host: str) -> tuple[h11.Connection, bytes]:
    """A client connection to read the answer with, and the request it sent (its bytes)."""
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    return conn, conn.send(_request(host)) + conn.send(h11.EndOfMessage())


async def exchange(
    reader: _Reader,
    writer: asyncio.StreamWriter | None,
    host: str,
    *,
    cap: int,
    read_timeout: float,
) -> Response:
    """Send the policy GET on an open connection and read the answer (h11 frames both).

    Raises ``ProtocolError`` for anything that is not HTTP/1.1 as RFC 9112 frames it, and
    ``TimeoutError`` when one read takes longer than ``read_timeout``. With ``writer`` None the
    request is not sent (tests feed a response to ``reader``).
    """
    conn, outgoing = _connection(host)
    if writer is not None:
        writer.write(outgoing)
    return await _response(conn, reader, cap=cap, read_timeout=read_timeout)


async def _response(
    conn: h11.Connection, reader: _Reader, *, cap: int, read_timeout: float
) -> Response:
    """The answer to the request ``conn`` sent, as ``exchange`` reads it."""
    try:
        for _ in range(MAX_INTERIM + 1):
            event = await _next_event(conn, reader, read_timeout)
            if isinstance(event, h11.Response):
                break
            if not isinstance(event, h11.InformationalResponse):  # pragma: no cover (h11)
                raise ProtocolError(f"unexpected {type(event).__name__} before the response")
        else:
            raise ProtocolError("too many interim (1xx) responses")
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body = bytearray()
        while len(body) <= cap:  # what follows the cap is not a policy (§3.3): stop reading
            part = await _next_event(conn, reader, read_timeout)
            if isinstance(part, h11.Data):
                body += part.data
            elif isinstance(part, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as exc:
        raise ProtocolError(_framing_error(str(exc))) from None
    return Response(event.status_code, headers, bytes(body[: cap + 1]))


async def _next_event(conn: h11.Connection, reader: _Reader, read_timeout: float) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        async with asyncio.timeout(read_timeout):
            data = await reader.read(READ_SIZE)
        conn.receive_data(data)  # b"": the peer closed (ends a close-delimited body)


def _framing_error(text: str) -> str:
    if "Transfer-Encoding" in text:
        # RFC 9112 §7, RFC 9110 §10.1.4: only chunked may be applied to a response for a
        # client that sent no TE field (we send none); gzip or anything else is unasked for,
        # and senders' HTTP clients (h11, Go's net/http) refuse it as we do.
        return (
            "the server applied a Transfer-Encoding other than chunked, which the request "
            "did not accept (RFC 9112 §7, RFC 9110 §10.1.4): senders cannot read the policy"
        )
    return f"not HTTP/1.1 as RFC 9112 frames it: {text}"


class PolicyFetcher:
    """Fetches policies for many domains, one fresh TLS connection each; close with ``aclose``."""

    def __init__(
        self,
        resolver: Resolver,
        options: FetchOptions | None = None,
        *,
        tls: TlsContexts | None = None,
    ) -> None:
        self.resolver = resolver
        self.options = options or FetchOptions()
        self.tls = tls or TlsContexts.create(self.options.ca_file)

    async def aclose(self) -> None:
        """Nothing is pooled (each fetch is its own connection); kept for ``async with``."""

    async def __aenter__(self) -> PolicyFetcher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def fetch_policy(self, domain: str) -> PolicyFetch:
        """GET the policy of ``domain``; never raises for anything the network does."""
        started = time.perf_counter()
        url = policy_url(domain)
        host = f"mta-sts.{domain}"
        address = await self.resolver.lookup_address(host)
        if address.status is not DnsStatus.OK:
            failed = PolicyFetch(
                url, FetchOutcome.DNS_FAILURE, address=address, error=address.error
            )
            return _with_elapsed(failed, time.perf_counter() - started)
        targets = [a for a in address.addresses if self.options.allow_private or is_public(a)]
        if not targets:
            blocked = PolicyFetch(
                url,
                FetchOutcome.BLOCKED,
                address=address,
                error="every address of the policy host is private, loopback or link-local",
            )
            return _with_elapsed(blocked, time.perf_counter() - started)
        result = PolicyFetch(url, FetchOutcome.CONNECT_FAILED, address=address)
        try:
            async with asyncio.timeout(self.options.total_timeout):
                for ip in targets[:4]:  # like a sender: the next address if connecting failed
                    result = await self._get(url, host, ip, address)
                    if result.outcome is not FetchOutcome.CONNECT_FAILED:
                        break
        except TimeoutError:
            result = PolicyFetch(
                url, FetchOutcome.TIMEOUT, address=address, error="overall time limit"
            )
        return _with_elapsed(result, time.perf_counter() - started)

    async def _get(self, url: str, host: str, ip: str, address: AddressLookup) -> PolicyFetch:
        opts = self.options
        conn, request = _connection(host)
        try:
            async with asyncio.timeout(opts.connect_timeout):  # connect and handshake
                # SNI and the name validated (RFC 8461 §7.1); the GET goes with the Finished.
                client = await connect(ip, opts.port, self.tls.verified, host, then=request)
        except TimeoutError:
            error = f"connect or TLS handshake timed out after {opts.connect_timeout:g} s"
            return PolicyFetch(url, FetchOutcome.TIMEOUT, address=address, error=error)
        except ssl.SSLError as exc:
            tls = failure(exc, await self._read_cert(ip, host))
            return PolicyFetch(
                url, FetchOutcome.TLS_FAILED, address=address, tls=tls, error=_says(exc)
            )
        except (OSError, ValueError) as exc:
            return PolicyFetch(url, FetchOutcome.CONNECT_FAILED, address=address, error=_says(exc))
        try:
            base = PolicyFetch(
                url, FetchOutcome.OK, address=address, tls=success(client.ssl_object, tls=self.tls)
            )
            return await self._exchange(base, conn, client)
        finally:
            client.abort()  # one request per connection; no close_notify wait

    async def _exchange(
        self, base: PolicyFetch, conn: h11.Connection, client: TlsClient
    ) -> PolicyFetch:
        cap = self.options.max_bytes
        try:
            response = await _response(
                conn, client, cap=cap, read_timeout=self.options.read_timeout
            )
        except TimeoutError:
            return replace(base, outcome=FetchOutcome.TIMEOUT, error="no complete response in time")
        except (ProtocolError, OSError) as exc:
            return replace(base, outcome=FetchOutcome.PROTOCOL_ERROR, error=_says(exc))
        head = response.headers
        base = replace(
            base,
            status=response.status,
            content_type=head.get("content-type", ""),
            location=head.get("location", ""),
        )
        raw = response.body
        try:
            body, too_large = _decode(raw[: cap + 1], head.get("content-encoding", ""), cap)
        except ProtocolError as exc:
            return replace(base, outcome=FetchOutcome.PROTOCOL_ERROR, error=_says(exc))
        too_large = too_large or len(raw) > cap
        if too_large:
            body = body[:cap]
        if 300 <= response.status < 400:
            outcome = FetchOutcome.REDIRECT
        elif response.status != 200:
            outcome = FetchOutcome.HTTP_STATUS
        elif too_large:
            outcome = FetchOutcome.TOO_LARGE
        else:
            outcome = FetchOutcome.OK
        return replace(base, outcome=outcome, body=body)

    async def _read_cert(self, ip: str, host: str) -> CertInfo | None:
        """Handshake again without validation, only to read the refused certificate and chain."""
        client = None
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                client = await connect(ip, self.options.port, self.tls.unverified, host)
                return unverified_cert(client.ssl_object)
        except (OSError, TimeoutError, ValueError):
            return None
        finally:
            if client is not None:
                client.abort()


def _with_elapsed(fetch: PolicyFetch, elapsed: float) -> PolicyFetch:
    return replace(fetch, elapsed=round(elapsed, 6))


def _says(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None):
        text = f"{text} ({exc.reason})" if str(exc.reason) not in text else text
    return text[:500]
