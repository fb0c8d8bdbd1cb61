"""The one HTTPS client path: fetch an MTA-STS policy exactly as a sending MTA would.

RFC 8461 §3.2/§3.3: GET ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; no redirects
(the Location is recorded), status 200 only, the Content-Type recorded for evaluation, at most
64 KiB read, timeouts, no HTTP caching, WebPKI validation for the name ``mta-sts.<domain>`` with
SNI (§7.1). The host is resolved through our ``Resolver`` and the connection goes to that
address while SNI and Host stay the name; in service mode private targets are refused before
connecting (SSRF guard). Every outcome is a ``PolicyFetch`` value.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

# httpx imports its own command-line tool (click, pygments, rich.syntax) whenever those are
# installed; that is most of ``stspilot check``'s start-up and we never call it. A None entry
# makes that one optional import fail fast, and httpx falls back to a stub ``httpx.main``.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx

from stspilot.facts import AddressLookup, CertInfo, DnsStatus, FetchOutcome, PolicyFetch
from stspilot.resolver import Resolver
from stspilot.tls import TlsContexts, cert_info, failure, find_ssl_error, success

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3 suggests 64 KB
USER_AGENT = "stspilot (MTA-STS checker; +https://github.com/stspilot)"


@dataclass(frozen=True, slots=True)
class FetchOptions:
    port: int = 443  # the lab maps 443 to a high port
    ca_file: Path | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0  # RFC 8461 §3.3 allows up to a minute; checks want answers
    max_bytes: int = MAX_POLICY_BYTES
    allow_private: bool = True  # False in service mode (SSRF guard)


def policy_url(domain: str) -> str:
    return f"https://mta-sts.{domain}{POLICY_PATH}"


def is_public(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified targets."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
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
            raise httpx.DecodingError(f"bad {encoding} body: {exc}") from exc
        return out, len(out) > cap
    raise httpx.DecodingError(f"unsupported Content-Encoding {encoding!r}")


class PolicyFetcher:
    """Fetches policies for many domains over one shared httpx client; close with ``aclose``."""

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
        opts = self.options
        self._client = httpx.AsyncClient(
            verify=self.tls.verified,
            follow_redirects=False,  # RFC 8461 §3.3: never follow
            trust_env=False,  # no proxies or netrc from the environment
            timeout=httpx.Timeout(
                opts.read_timeout, connect=opts.connect_timeout, pool=opts.connect_timeout
            ),
            # Each fetch is a fresh connection: SNI decides the certificate, and a pooled
            # connection to the same address could carry another name's TLS session.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

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
        literal = f"[{ip}]" if ":" in ip else ip
        target = f"https://{literal}:{self.options.port}{POLICY_PATH}"
        headers = {
            "Host": host,
            "User-Agent": USER_AGENT,
            "Accept": "text/plain",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-cache",  # RFC 8461 §3.3: no HTTP caching, ever
            "Pragma": "no-cache",
        }
        request = self._client.build_request(
            "GET", target, headers=headers, extensions={"sni_hostname": host}
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            return PolicyFetch(url, FetchOutcome.TIMEOUT, address=address, error=_says(exc))
        except httpx.ConnectError as exc:
            if find_ssl_error(exc) is None:
                return PolicyFetch(
                    url, FetchOutcome.CONNECT_FAILED, address=address, error=_says(exc)
                )
            tls = failure(exc, await self._read_cert(ip, host))
            return PolicyFetch(
                url, FetchOutcome.TLS_FAILED, address=address, tls=tls, error=_says(exc)
            )
        except (httpx.HTTPError, OSError) as exc:
            return PolicyFetch(url, FetchOutcome.PROTOCOL_ERROR, address=address, error=_says(exc))
        try:
            return await self._read(url, response, address)
        finally:
            await response.aclose()

    async def _read(
        self, url: str, response: httpx.Response, address: AddressLookup
    ) -> PolicyFetch:
        stream = response.extensions.get("network_stream")
        tls = success(stream.get_extra_info("ssl_object")) if stream is not None else None
        base = PolicyFetch(
            url,
            FetchOutcome.OK,
            address=address,
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            location=response.headers.get("location", ""),
            tls=tls,
        )
        cap = self.options.max_bytes
        raw = bytearray()
        try:
            async for chunk in response.aiter_raw():
                raw += chunk
                if len(raw) > cap:
                    break  # stop reading: whatever follows is not a policy (§3.3)
            body, too_large = _decode(
                bytes(raw[: cap + 1]), response.headers.get("content-encoding", ""), cap
            )
        except httpx.TimeoutException as exc:
            return replace(base, outcome=FetchOutcome.TIMEOUT, error=_says(exc))
        except (httpx.HTTPError, OSError) as exc:
            return replace(base, outcome=FetchOutcome.PROTOCOL_ERROR, error=_says(exc))
        too_large = too_large or len(raw) > cap
        if too_large:
            body = body[:cap]
        if 300 <= response.status_code < 400:
            outcome = FetchOutcome.REDIRECT
        elif response.status_code != 200:
            outcome = FetchOutcome.HTTP_STATUS
        elif too_large:
            outcome = FetchOutcome.TOO_LARGE
        else:
            outcome = FetchOutcome.OK
        return replace(base, outcome=outcome, body=body)

    async def _read_cert(self, ip: str, host: str) -> CertInfo | None:
        """Handshake again without validation, only to show the certificate that was refused."""
        writer = None
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                _, writer = await asyncio.open_connection(
                    ip, self.options.port, ssl=self.tls.unverified, server_hostname=host
                )
                ssl_object = writer.get_extra_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        except (OSError, TimeoutError, ValueError):
            return None
        finally:
            if writer is not None:
                writer.transport.abort()
        return cert_info(der) if der else None


def _with_elapsed(fetch: PolicyFetch, elapsed: float) -> PolicyFetch:
    return replace(fetch, elapsed=round(elapsed, 6))


def _says(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = find_ssl_error(exc)
    if cause is not None and str(cause) not in text:
        text = f"{text} ({cause})"
    return text[:500]
