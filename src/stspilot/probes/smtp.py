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
from collections.abc import Sequence
from dataclasses import dataclass, replace

from stspilot.facts import (
    AddressLookup,
    AddressProbe,
    CertInfo,
    DnsStatus,
    MxProbe,
    SmtpOutcome,
    TlsResult,
)
from stspilot.probes.addresses import is_public
from stspilot.probes.resolver import Resolver, concurrently
from stspilot.probes.tls import (
    TlsContexts,
    failure,
    refine,
    sent_chain,
    success,
    unverified_cert,
)
from stspilot.probes.tlsio import start_tls

# RFC 5321 §4.2: Reply-code "-" [ textstring ] CRLF for every line but the last, which is
# Reply-code [ SP textstring ] CRLF: a bare "250" is a complete reply.
_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])(?:([ -])(.*?))?\r?\n$", re.DOTALL)
HANDSHAKE_LIMIT = 60.0  # asyncio's limit on a TLS handshake (``ssl_handshake_timeout``)
MAX_ADDRESSES = 8  # per MX host; every one is probed (at once), more are named in the error
# Worse outcomes rank higher. An address that cannot be reached ranks below one that passed:
# a sender tries the next address (RFC 5321 §5.1), and a checker without IPv6 would otherwise
# flag every dual-stacked host; it decides the host only when no address can be reached.
_RANK = {
    SmtpOutcome.BLOCKED: -4,
    SmtpOutcome.NO_ADDRESS: -3,
    SmtpOutcome.CONNECT_FAILED: -2,
    SmtpOutcome.OK: 0,
    SmtpOutcome.BANNER_TIMEOUT: 1,
    SmtpOutcome.TIMEOUT: 2,
    SmtpOutcome.PROTOCOL_ERROR: 3,
    SmtpOutcome.BANNER_REJECTED: 4,
    SmtpOutcome.STARTTLS_REJECTED: 5,
    SmtpOutcome.NO_STARTTLS: 6,
    SmtpOutcome.TLS_FAILED: 7,
}


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

    def __init__(self, outcome: SmtpOutcome, error: str, banner: str = "") -> None:
        super().__init__(error)
        self.outcome = outcome
        self.error = error
        self.banner = banner


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Session:
    banner: str
    ehlo_name: str
    tls: TlsResult
    chain: tuple[bytes, ...] = ()  # DANE: the certificates the server sent (RFC 7672 §3)


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

    async def probe_mx(self, host: str, address: AddressLookup | None = None) -> MxProbe:
        """Probe every address of ``host`` on port 25 (or the mapped port), all at once;
        never raises for network trouble. RFC 8461 §4.2: each connection a sender may make
        must validate, and senders connect to any address of the host. ``address``: the
        host's addresses when already looked up (DANE asks them with DNSSEC)."""
        started = time.perf_counter()
        address = address or await self.resolver.lookup_address(host)
        if address.status is not DnsStatus.OK:
            return MxProbe(host, SmtpOutcome.NO_ADDRESS, address=address, error=address.error)
        targets = [a for a in address.addresses if self.options.allow_private or is_public(a)]
        if not targets:
            # A tenant's MX pointed at our internal network must not make us connect there
            # and show them its banner and certificate.
            error = "every address of the MX host is private, loopback or link-local"
            return MxProbe(host, SmtpOutcome.BLOCKED, address=address, error=error)
        probes = await concurrently(
            *(self._probe_address(host, ip) for ip in targets[:MAX_ADDRESSES])
        )
        worst = worst_address(probes)
        result = MxProbe(host, SmtpOutcome.OK, address=address).at(worst)
        if len(targets) > MAX_ADDRESSES:
            skipped = f"{len(targets) - MAX_ADDRESSES} more addresses not probed"
            result = replace(
                result, error=f"{result.error}; {skipped}" if result.error else skipped
            )
        return replace(
            result, by_address=tuple(probes), elapsed=round(time.perf_counter() - started, 6)
        )

    async def _probe_address(self, host: str, ip: str) -> AddressProbe:
        started = time.perf_counter()
        base = AddressProbe(ip, SmtpOutcome.OK)
        try:
            async with asyncio.timeout(self.options.total_timeout):
                session = await self._session(host, ip, verify=True)
        except _Abort as abort:
            probe = replace(base, outcome=abort.outcome, error=abort.error, banner=abort.banner)
        except TimeoutError:
            probe = replace(base, outcome=SmtpOutcome.TIMEOUT, error="overall time limit")
        else:
            probe = replace(
                base,
                outcome=SmtpOutcome.OK if session.tls.ok else SmtpOutcome.TLS_FAILED,
                banner=session.banner,
                ehlo_name=session.ehlo_name,
                tls=session.tls,
                error=session.tls.detail,
                chain=session.chain,
            )
            if not session.tls.ok and session.tls.cert is None:
                cert, chain = await self._read_cert(host, ip)
                probe = replace(probe, tls=refine(session.tls, cert), chain=chain)
        return replace(probe, elapsed=round(time.perf_counter() - started, 6))

    async def _read_cert(self, host: str, ip: str) -> tuple[CertInfo | None, tuple[bytes, ...]]:
        try:
            async with asyncio.timeout(self.options.total_timeout):
                session = await self._session(host, ip, verify=False)
        except (_Abort, TimeoutError):
            return None, ()
        return session.tls.cert, session.chain

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
            # RFC 5321 §3.1: a 554 greeting refuses the session; its text says why (kept for
            # the finding), and the client sends QUIT (§4.1.1.10) rather than hang up.
            text = f"{banner.code} {' '.join(banner.lines)}".strip()[:300]
            await self._quit(writer)
            raise _Abort(SmtpOutcome.BANNER_REJECTED, text, banner=text)
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
        # asyncio's own limit on a handshake, kept for a command timeout that is longer
        limit = HANDSHAKE_LIMIT if self.options.command_timeout >= HANDSHAKE_LIMIT else None
        try:
            async with asyncio.timeout(self.options.command_timeout):
                # As StreamWriter.start_tls did: a connection lost since the 220 raises here
                await writer.drain()
                # QUIT goes with the client's Finished: polite, and we do not wait for the 221
                client = await start_tls(
                    writer.transport,
                    context,
                    host,
                    then=b"QUIT\r\n",
                    handshake_limit=limit,
                )
        except TimeoutError as exc:
            raise _Abort(SmtpOutcome.TIMEOUT, "TLS handshake timed out") from exc
        except (OSError, ValueError, EOFError) as exc:  # ssl.SSLError is an OSError
            return _Session(banner.lines[0], ehlo_name, failure(exc, None))
        ssl_object = client.ssl_object
        if verify:
            tls = success(ssl_object, tls=self.tls)
        else:
            tls = TlsResult(ok=False, cert=unverified_cert(ssl_object))
        chain = sent_chain(ssl_object)  # DANE matches the chain as sent, validated or not
        return _Session(banner.lines[0], ehlo_name, tls, chain)

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
                    lines.append((match[3] or b"").decode("ascii", "replace").strip())
                    if match[2] != b"-":  # " text" or nothing: the last line
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
            writer.write(b"QUIT\r\n")  # sent at once unless the socket's buffer is full
            if writer.transport.get_write_buffer_size():
                await asyncio.wait_for(writer.drain(), 1)
        except (OSError, TimeoutError):
            return


def worst_address(probes: Sequence[AddressProbe]) -> AddressProbe:
    """The address that decides a host's verdict: the worst outcome (``_RANK``), and among
    equal outcomes the certificate that expires first; ties keep lookup order."""

    def badness(indexed: tuple[int, AddressProbe]) -> tuple[int, float, int]:
        n, probe = indexed
        cert = probe.tls.cert if probe.tls else None
        expiry = -cert.not_after.timestamp() if cert else float("-inf")
        return (_RANK[probe.outcome], expiry, -n)

    return max(enumerate(probes), key=badness)[1]
