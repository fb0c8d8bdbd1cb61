"""The STARTTLS probe of one MX host, as a sending MTA meets it (RFC 8461 §4.2, RFC 3207).

connect → 220 greeting → EHLO → STARTTLS offered? → STARTTLS → 220 → TLS handshake with SNI =
the MX name (RFC 8461 §7.1), validated against the system trust store plus any extra CA, names
from SAN dNSName only → QUIT. Every step has a timeout, lines and replies have size limits (a
server that sends garbage forever costs a few KiB), and every outcome is an ``MxProbe`` value.
When validation fails the handshake is repeated without validation, only to read the
certificate that was refused and the chain it came in (a missing intermediate is named).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, replace

from stspilot.facts import AddressLookup, CertInfo, DnsStatus, MxProbe, SmtpOutcome, TlsResult
from stspilot.probes.addresses import is_public
from stspilot.probes.resolver import Resolver
from stspilot.probes.tls import TlsContexts, failure, refine, success, unverified_cert

_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*?)\r?\n$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    port: int = 25  # the lab maps 25 to a high port
    connect_timeout: float = 5.0
    command_timeout: float = 10.0  # RFC 5321 §4.5.3.2 allows minutes; a probe needs answers
    total_timeout: float = 30.0
    ehlo_name: str = "probe.stspilot.invalid"
    max_line: int = 2048  # RFC 5321 §4.5.3.1.5: reply lines are at most 512 octets
    max_reply_lines: int = 64
    allow_private: bool = True  # False in service mode: the SSRF guard, as for the policy fetch


class _Abort(Exception):
    """Ends a session early with an outcome."""

    def __init__(self, outcome: SmtpOutcome, error: str) -> None:
        super().__init__(error)
        self.outcome = outcome
        self.error = error


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Session:
    banner: str
    ehlo_name: str
    tls: TlsResult


class MxProber:
    """Probes MX hosts; share one per process (it holds the TLS contexts)."""

    def __init__(
        self,
        resolver: Resolver,
        options: SmtpOptions | None = None,
        *,
        tls: TlsContexts | None = None,
    ) -> None:
        self.resolver = resolver
        self.options = options or SmtpOptions()
        self.tls = tls or TlsContexts.create()

    async def probe_mx(self, host: str) -> MxProbe:
        """Probe ``host`` on port 25 (or the mapped port); never raises for network trouble."""
        started = time.perf_counter()
        address = await self.resolver.lookup_address(host)
        if address.status is not DnsStatus.OK:
            return MxProbe(host, SmtpOutcome.NO_ADDRESS, address=address, error=address.error)
        targets = [a for a in address.addresses if self.options.allow_private or is_public(a)]
        if not targets:
            # A tenant's MX pointed at our internal network must not make us connect there
            # and show them its banner and certificate.
            error = "every address of the MX host is private, loopback or link-local"
            return MxProbe(host, SmtpOutcome.BLOCKED, address=address, error=error)
        result = MxProbe(host, SmtpOutcome.CONNECT_FAILED, address=address)
        for ip in targets[:2]:  # the next address only when connecting failed
            result = await self._probe_address(host, ip, address)
            if result.outcome is not SmtpOutcome.CONNECT_FAILED:
                break
        return replace(result, elapsed=round(time.perf_counter() - started, 6))

    async def _probe_address(self, host: str, ip: str, address: AddressLookup) -> MxProbe:
        base = MxProbe(host, SmtpOutcome.OK, address=address, ip=ip)
        try:
            async with asyncio.timeout(self.options.total_timeout):
                session = await self._session(host, ip, verify=True)
        except _Abort as abort:
            return replace(base, outcome=abort.outcome, error=abort.error)
        except TimeoutError:
            return replace(base, outcome=SmtpOutcome.TIMEOUT, error="overall time limit")
        outcome = SmtpOutcome.OK if session.tls.ok else SmtpOutcome.TLS_FAILED
        probe = replace(
            base,
            outcome=outcome,
            banner=session.banner,
            ehlo_name=session.ehlo_name,
            tls=session.tls,
            error=session.tls.detail,
        )
        if not session.tls.ok and session.tls.cert is None:
            cert = await self._read_cert(host, ip)
            probe = replace(probe, tls=refine(session.tls, cert))
        return probe

    async def _read_cert(self, host: str, ip: str) -> CertInfo | None:
        try:
            async with asyncio.timeout(self.options.total_timeout):
                session = await self._session(host, ip, verify=False)
        except (_Abort, TimeoutError):
            return None
        return session.tls.cert

    async def _session(self, host: str, ip: str, *, verify: bool) -> _Session:
        opts = self.options
        try:
            async with asyncio.timeout(opts.connect_timeout):
                reader, writer = await asyncio.open_connection(ip, opts.port, limit=opts.max_line)
        except TimeoutError as exc:
            raise _Abort(SmtpOutcome.CONNECT_FAILED, "connect timed out") from exc
        except OSError as exc:
            raise _Abort(SmtpOutcome.CONNECT_FAILED, str(exc) or type(exc).__name__) from exc
        try:
            return await self._dialogue(host, reader, writer, verify=verify)
        finally:
            writer.transport.abort()

    async def _dialogue(
        self,
        host: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        verify: bool,
    ) -> _Session:
        banner = await self._reply(reader, SmtpOutcome.BANNER_TIMEOUT)
        if banner.code != 220:
            raise _Abort(SmtpOutcome.BANNER_REJECTED, " ".join(banner.lines)[:300])
        ehlo = await self._command(writer, reader, f"EHLO {self.options.ehlo_name}")
        ehlo_name = ehlo.lines[0].split(" ")[0] if ehlo.lines else ""
        keywords = {line.split(" ")[0].upper() for line in ehlo.lines[1:]}
        if ehlo.code != 250 or "STARTTLS" not in keywords:
            await self._quit(writer)
            raise _Abort(SmtpOutcome.NO_STARTTLS, "EHLO does not offer STARTTLS")
        answer = await self._command(writer, reader, "STARTTLS")
        if answer.code != 220:
            await self._quit(writer)
            reply = f"{answer.code} {' '.join(answer.lines)}"[:300]
            raise _Abort(SmtpOutcome.STARTTLS_REJECTED, reply)
        context = self.tls.verified if verify else self.tls.unverified
        try:
            async with asyncio.timeout(self.options.command_timeout):
                await writer.start_tls(context, server_hostname=host)
        except TimeoutError as exc:
            raise _Abort(SmtpOutcome.TIMEOUT, "TLS handshake timed out") from exc
        except (OSError, ValueError, EOFError) as exc:  # ssl.SSLError is an OSError
            return _Session(banner.lines[0], ehlo_name, failure(exc, None))
        ssl_object = writer.get_extra_info("ssl_object")
        tls = (
            success(ssl_object) if verify else TlsResult(ok=False, cert=unverified_cert(ssl_object))
        )
        await self._quit(writer)
        return _Session(banner.lines[0], ehlo_name, tls)

    async def _command(
        self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, line: str
    ) -> _Reply:
        try:
            writer.write(line.encode("ascii") + b"\r\n")
            await writer.drain()
        except OSError as exc:
            raise _Abort(SmtpOutcome.PROTOCOL_ERROR, f"connection lost: {exc}") from exc
        return await self._reply(reader, SmtpOutcome.TIMEOUT)

    async def _reply(self, reader: asyncio.StreamReader, on_timeout: SmtpOutcome) -> _Reply:
        """One (multi-line) reply, RFC 5321 §4.2.1: ``250-...`` lines then ``250 ...``."""
        lines: list[str] = []
        code = 0
        try:
            async with asyncio.timeout(self.options.command_timeout):
                for _ in range(self.options.max_reply_lines):
                    raw = await reader.readline()  # bounded by the stream limit
                    match = _REPLY_LINE.match(raw)
                    if match is None:
                        what = "connection closed" if not raw else f"not SMTP: {raw[:60]!r}"
                        raise _Abort(SmtpOutcome.PROTOCOL_ERROR, what)
                    if code and int(match[1]) != code:
                        raise _Abort(SmtpOutcome.PROTOCOL_ERROR, "reply code changed mid-reply")
                    code = int(match[1])
                    lines.append(match[3].decode("ascii", "replace").strip())
                    if match[2] == b" ":
                        return _Reply(code, tuple(lines))
        except TimeoutError as exc:
            raise _Abort(on_timeout, "no reply in time") from exc
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise _Abort(SmtpOutcome.PROTOCOL_ERROR, "reply line too long") from exc
        except OSError as exc:
            raise _Abort(SmtpOutcome.PROTOCOL_ERROR, f"connection lost: {exc}") from exc
        raise _Abort(SmtpOutcome.PROTOCOL_ERROR, "reply has too many lines")

    async def _quit(self, writer: asyncio.StreamWriter) -> None:
        # Polite, but we do not wait for the 221: the probe has what it came for.
        try:
            writer.write(b"QUIT\r\n")
            await asyncio.wait_for(writer.drain(), 1)
        except (OSError, TimeoutError):
            return
