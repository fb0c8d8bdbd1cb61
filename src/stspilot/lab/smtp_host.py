"""The lab's SMTP MX hosts: a small ESMTP server with STARTTLS, and its faulty variants.

Only what a STARTTLS probe meets is implemented (RFC 5321 greeting, EHLO/HELO, STARTTLS per
RFC 3207, NOOP, RSET, QUIT); mail transactions are refused. Transcript of a good host::

    S: 220 mx1.example.test ESMTP lab
    C: EHLO probe.stspilot.invalid
    S: 250-mx1.example.test
    S: 250-PIPELINING
    S: 250-STARTTLS
    S: 250 8BITMIME
    C: STARTTLS
    S: 220 2.0.0 Ready to start TLS
"""

from __future__ import annotations

import asyncio
import ssl
from enum import StrEnum

from stspilot.lab.service import TcpService, drain_until_eof

MAX_COMMANDS = 50


class SmtpBehaviour(StrEnum):
    OK = "ok"
    NO_STARTTLS = "no-starttls"  # EHLO does not offer STARTTLS
    STARTTLS_REFUSED = "starttls-refused"  # offered, then answered 454
    NO_BANNER = "no-banner"  # accepts the connection, never greets
    BANNER_554 = "banner-554"  # "554 no service"
    GARBAGE = "garbage"  # endless bytes without a line end
    TLS_BROKEN = "tls-broken"  # 220 to STARTTLS, then not TLS
    TLS10_ONLY = "tls10-only"  # handshake capped at TLS 1.0 (OpenSSL may refuse it)


class SmtpHost:
    """One MX address; the greeting names ``name`` (the first MX name served here)."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        name: str,
        context: ssl.SSLContext,
        behaviour: SmtpBehaviour,
        latency: float = 0.0,
    ) -> None:
        self.name = name
        self.context = context
        self.behaviour = behaviour
        self.sessions = 0
        self.service = TcpService(address, port, self._handle, latency=latency)
        if behaviour is SmtpBehaviour.TLS10_ONLY:
            context.maximum_version = ssl.TLSVersion.TLSv1

    async def _say(self, writer: asyncio.StreamWriter, *lines: str, drain: bool = True) -> None:
        if self.service.latency > 0:
            await asyncio.sleep(self.service.latency)
        if not drain:
            # Before "220 Ready to start TLS": stop reading, so the client's ClientHello stays
            # in the socket for the TLS layer instead of landing in the plain-text reader.
            writer.transport.pause_reading()  # type: ignore[attr-defined]
        writer.write("".join(line + "\r\n" for line in lines).encode())
        if drain:
            await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        behaviour = self.behaviour
        if behaviour is SmtpBehaviour.NO_BANNER:
            await drain_until_eof(reader)
            return
        if behaviour is SmtpBehaviour.GARBAGE:
            for _ in range(100_000):  # bounded, so a forgotten session cannot spin forever
                if writer.is_closing():
                    return
                writer.write(b"\x07garbage-without-end " * 512)
                await writer.drain()
                await asyncio.sleep(0.01)
        if behaviour is SmtpBehaviour.BANNER_554:
            await self._say(writer, f"554 {self.name} no SMTP service here")
            await drain_until_eof(reader)
            return
        await self._say(writer, f"220 {self.name} ESMTP lab")
        tls = False
        for _ in range(MAX_COMMANDS):
            line = await reader.readline()
            if not line:
                return
            verb = line.strip().split(b" ")[0].upper()
            if verb == b"EHLO":
                offer = not tls and behaviour is not SmtpBehaviour.NO_STARTTLS
                middle = ["250-PIPELINING", "250-SIZE 10240000"]
                middle += ["250-STARTTLS"] if offer else []
                await self._say(writer, f"250-{self.name}", *middle, "250 8BITMIME")
            elif verb == b"HELO":
                await self._say(writer, f"250 {self.name}")
            elif verb == b"STARTTLS" and not tls:
                if behaviour in (SmtpBehaviour.NO_STARTTLS, SmtpBehaviour.STARTTLS_REFUSED):
                    await self._say(writer, "454 4.7.0 TLS not available due to local problem")
                    continue
                await self._say(writer, "220 2.0.0 Ready to start TLS", drain=False)
                if behaviour is SmtpBehaviour.TLS_BROKEN:
                    writer.transport.resume_reading()  # type: ignore[attr-defined]
                    await reader.read(1)  # the ClientHello has arrived; answer it wrongly
                    writer.write(b"this is not a TLS ServerHello\r\n")
                    await drain_until_eof(reader)
                    return
                if self.service.latency > 0:
                    await asyncio.sleep(self.service.latency)  # the TLS handshake's round trip
                await writer.start_tls(self.context, ssl_handshake_timeout=10)
                tls = True
            elif verb in (b"NOOP", b"RSET"):
                await self._say(writer, "250 2.0.0 OK")
            elif verb == b"QUIT":
                await self._say(writer, "221 2.0.0 Bye")
                return
            else:
                await self._say(writer, "502 5.5.2 Not implemented in the lab")
