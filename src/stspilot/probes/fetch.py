"""The one HTTPS client path: fetch an MTA-STS policy exactly as a sending MTA would.

RFC 8461 §3.2/§3.3: GET ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; no redirects
(the Location is recorded), status 200 only, the Content-Type recorded for evaluation, at most
64 KiB read, timeouts, no HTTP caching, WebPKI validation for the name ``mta-sts.<domain>`` with
SNI (§7.1). The host is resolved through our ``Resolver`` and the connection goes to that
address while SNI and Host stay the name; in service mode private targets are refused before
connecting (SSRF guard). Every outcome is a ``PolicyFetch`` value.

One GET on one fresh connection is all a policy fetch is, so this speaks HTTP/1.1 over asyncio
streams itself (RFC 9112: status line, header fields, Content-Length / chunked / close framing)
instead of going through httpx: 2-3 ms less CPU per fetch and ~0.1 s less start-up
(``docs/check.md``). Every read is bounded in size and time.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from stspilot.facts import AddressLookup, CertInfo, DnsStatus, FetchOutcome, PolicyFetch
from stspilot.probes.addresses import is_public
from stspilot.probes.resolver import Resolver
from stspilot.probes.tls import TlsContexts, failure, success, unverified_cert

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3 suggests 64 KB
USER_AGENT = "stspilot (MTA-STS checker; +https://github.com/stspilot)"
MAX_HEAD_LINE = 8 * 1024  # one status or header line; also the stream's buffer limit
MAX_HEADERS = 100
MAX_INTERIM = 5  # 1xx responses tolerated before the real one


@dataclass(frozen=True, slots=True)
class FetchOptions:
    port: int = 443  # the lab maps 443 to a high port
    ca_file: Path | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # each read
    total_timeout: float = 20.0  # RFC 8461 §3.3 allows up to a minute; checks want answers
    max_bytes: int = MAX_POLICY_BYTES
    allow_private: bool = True  # False in service mode (SSRF guard)


class ProtocolError(Exception):
    """The peer does not speak HTTP/1.1 as RFC 9112 says (or asks for what we did not)."""


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "


def policy_url(domain: str) -> str:
    return f"https://mta-sts.{domain}{POLICY_PATH}"


def _request(host: str) -> bytes:
    lines = [
        f"GET {POLICY_PATH} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {USER_AGENT}",
        "Accept: text/plain",
        "Accept-Encoding: identity",  # never ask for compression: nothing to inflate
        "Cache-Control: no-cache",  # RFC 8461 §3.3: no HTTP caching, ever
        "Pragma: no-cache",
        "Connection: close",  # one request per connection: SNI decides the certificate
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


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


class _Reader:
    """Reads one HTTP/1.1 response; every read has the per-read timeout."""

    def __init__(self, reader: asyncio.StreamReader, read_timeout: float) -> None:
        self.reader = reader
        self.read_timeout = read_timeout

    async def line(self) -> bytes:
        async with asyncio.timeout(self.read_timeout):
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                raise ProtocolError("a line longer than 8 KiB: not HTTP") from exc
            except asyncio.IncompleteReadError as exc:
                raise ProtocolError("connection closed before the response ended") from exc
        return raw.rstrip(b"\r\n")

    async def head(self) -> _Head:
        for _ in range(MAX_INTERIM + 1):
            status_line = await self.line()
            version, _, rest = status_line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.1 status line: {status_line[:60]!r}")
            headers: dict[str, str] = {}
            last = ""
            for _ in range(MAX_HEADERS + 1):
                line = await self.line()
                if not line:
                    break
                if line[:1] in (b" ", b"\t") and last:  # obsolete line folding (RFC 9112 §5.2)
                    headers[last] += " " + line.strip().decode("latin-1")
                    continue
                name, colon, value = line.partition(b":")
                if not colon or not name or name != name.strip():
                    raise ProtocolError(f"malformed header line: {line[:60]!r}")
                last = name.decode("latin-1").lower()
                text = value.strip().decode("latin-1")
                headers[last] = f"{headers[last]}, {text}" if last in headers else text
            else:
                raise ProtocolError("too many header fields")
            status = int(code)
            if not 100 <= status < 200:
                return _Head(status, headers)
        raise ProtocolError("too many interim (1xx) responses")

    async def chunk(self, size: int) -> bytes:
        async with asyncio.timeout(self.read_timeout):
            return await self.reader.read(size)

    async def exactly(self, size: int) -> bytes:
        async with asyncio.timeout(self.read_timeout):
            try:
                return await self.reader.readexactly(size)
            except asyncio.IncompleteReadError as exc:
                raise ProtocolError("connection closed before the body ended") from exc

    async def body(self, head: _Head, cap: int) -> bytes:
        """At most ``cap`` + 1 bytes of the body: what follows is not a policy (§3.3)."""
        if head.status in (204, 304):
            return b""
        codings = head.headers.get("transfer-encoding", "")
        if codings:
            if codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
                raise ProtocolError(f"unsupported Transfer-Encoding {codings!r}")
            return await self._chunked(cap)
        length_text = head.headers.get("content-length")
        if length_text is not None:
            values = {v.strip() for v in length_text.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProtocolError(f"bad Content-Length {length_text!r}")
            return await self.exactly(min(int(next(iter(values))), cap + 1))
        out = bytearray()  # delimited by the end of the connection
        while len(out) <= cap:
            data = await self.chunk(cap + 1 - len(out))
            if not data:
                break
            out += data
        return bytes(out)

    async def _chunked(self, cap: int) -> bytes:
        out = bytearray()
        while len(out) <= cap:
            size_line = (await self.line()).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from exc
            if size == 0:
                break  # trailers are not read: the connection is closed next
            out += await self.exactly(min(size, cap + 1 - len(out)))
            if len(out) > cap:
                break
            if await self.line():
                raise ProtocolError("chunk longer than its size")
        return bytes(out)


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
        try:
            async with asyncio.timeout(opts.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    ip,
                    opts.port,
                    ssl=self.tls.verified,
                    server_hostname=host,  # SNI and the name validated (RFC 8461 §7.1)
                    ssl_handshake_timeout=opts.connect_timeout,
                    limit=MAX_HEAD_LINE,
                )
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
                url,
                FetchOutcome.OK,
                address=address,
                tls=success(writer.get_extra_info("ssl_object")),
            )
            return await self._exchange(base, host, reader, writer)
        finally:
            writer.transport.abort()  # one request per connection; no close_notify wait

    async def _exchange(
        self,
        base: PolicyFetch,
        host: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> PolicyFetch:
        cap = self.options.max_bytes
        response = _Reader(reader, self.options.read_timeout)
        try:
            writer.write(_request(host))
            head = await response.head()
        except TimeoutError:
            return replace(base, outcome=FetchOutcome.TIMEOUT, error="no response in time")
        except (ProtocolError, OSError) as exc:
            return replace(base, outcome=FetchOutcome.PROTOCOL_ERROR, error=_says(exc))
        base = replace(
            base,
            status=head.status,
            content_type=head.headers.get("content-type", ""),
            location=head.headers.get("location", ""),
        )
        try:
            raw = await response.body(head, cap)
            body, too_large = _decode(raw[: cap + 1], head.headers.get("content-encoding", ""), cap)
        except TimeoutError:
            return replace(base, outcome=FetchOutcome.TIMEOUT, error="body too slow")
        except (ProtocolError, OSError) as exc:
            return replace(base, outcome=FetchOutcome.PROTOCOL_ERROR, error=_says(exc))
        too_large = too_large or len(raw) > cap
        if too_large:
            body = body[:cap]
        if 300 <= head.status < 400:
            outcome = FetchOutcome.REDIRECT
        elif head.status != 200:
            outcome = FetchOutcome.HTTP_STATUS
        elif too_large:
            outcome = FetchOutcome.TOO_LARGE
        else:
            outcome = FetchOutcome.OK
        return replace(base, outcome=outcome, body=body)

    async def _read_cert(self, ip: str, host: str) -> CertInfo | None:
        """Handshake again without validation, only to read the refused certificate and chain."""
        writer = None
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                _, writer = await asyncio.open_connection(
                    ip, self.options.port, ssl=self.tls.unverified, server_hostname=host
                )
                return unverified_cert(writer.get_extra_info("ssl_object"))
        except (OSError, TimeoutError, ValueError):
            return None
        finally:
            if writer is not None:
                writer.transport.abort()


def _with_elapsed(fetch: PolicyFetch, elapsed: float) -> PolicyFetch:
    return replace(fetch, elapsed=round(elapsed, 6))


def _says(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None):
        text = f"{text} ({exc.reason})" if str(exc.reason) not in text else text
    return text[:500]
