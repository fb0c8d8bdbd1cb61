"""The lab's HTTPS policy hosts: good ones and every way a policy host goes wrong.

Served with asyncio streams (no web framework): the point is to misbehave on purpose, below
HTTP when needed (silence, garbage, endless bodies, broken TLS). The policy served depends on
the ``Host`` header, so one address can host many domains' policies.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import ssl
from enum import StrEnum

from stspilot.lab.service import TcpService, drain_until_eof

POLICY_PATH = b"/.well-known/mta-sts.txt"
HUGE_SIZE = 1024 * 1024
ENDLESS_CHUNKS = 100_000  # "endless" bodies stop after ~800 MiB, so a lab cannot spin forever
BOMB_SIZE = 16 * 1024 * 1024


class HttpBehaviour(StrEnum):
    OK = "ok"  # 200 text/plain with the policy
    NOT_FOUND = "not-found"  # 404
    REDIRECT = "redirect"  # 301 to another URL
    HTML = "html"  # 200 with an HTML page (a CMS catch-all)
    WRONG_TYPE = "wrong-type"  # 200 with the policy as application/octet-stream
    CHARSET = "charset"  # 200 text/plain; charset=iso-8859-1
    HUGE = "huge"  # 200 text/plain, 1 MiB
    GZIP_BOMB = "gzip-bomb"  # 200 text/plain, gzip of 16 MiB of zeros
    ENDLESS = "endless"  # 200, chunked body that never ends
    SLOW = "slow"  # answers one byte per second
    HANG = "hang"  # TLS works, then silence
    GARBAGE = "garbage"  # TLS works, then bytes that are not HTTP
    NO_TLS = "no-tls"  # not TLS at all: the handshake fails
    BAD_CHUNK = "bad-chunk"  # 200, chunked, the chunk size written "0x.." (not RFC 9112 hex)
    GZIP_CHUNKED = "gzip-chunked"  # 200, Transfer-Encoding: gzip, chunked (never asked for)


def _response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(head).encode() + body


def _host_name(head: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            return value.strip().decode("ascii", "replace").split(":")[0].lower()
    return ""


class HttpsHost:
    """One policy host address; ``policies`` maps ``mta-sts.<domain>`` to the file it serves."""

    def __init__(
        self,
        address: str,
        port: int,
        *,
        context: ssl.SSLContext,
        behaviour: HttpBehaviour,
        policies: dict[str, bytes],
        latency: float = 0.0,
    ) -> None:
        self.context = context
        self.behaviour = behaviour
        self.policies = policies
        self.requests = 0
        self.last_head = b""  # the last request head, for tests of what clients send
        if behaviour is HttpBehaviour.GZIP_BOMB:
            _gzip_bomb()  # made once, before serving, so no client waits for the compression
        tls = None if behaviour is HttpBehaviour.NO_TLS else context
        self.service = TcpService(address, port, self._handle, latency=latency, tls=tls)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        latency = self.service.latency
        if self.behaviour is HttpBehaviour.NO_TLS:
            writer.write(b"SSH-2.0-OpenSSH_9.6 not a web server\r\n")
            await writer.drain()
            await drain_until_eof(reader)
            return
        head = await reader.readuntil(b"\r\n\r\n")  # bounded by the stream limit (16 KiB)
        self.requests += 1
        self.last_head = head
        if latency > 0:
            await asyncio.sleep(latency)
        await self._answer(head, reader, writer)

    async def _answer(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        behaviour = self.behaviour
        host = _host_name(head)
        policy = self.policies.get(host, b"")
        plain = {"Content-Type": "text/plain"}
        if behaviour is HttpBehaviour.HANG:
            await drain_until_eof(reader)
            return
        if behaviour is HttpBehaviour.GARBAGE:
            for _ in range(ENDLESS_CHUNKS):
                if writer.is_closing():
                    return
                writer.write(b"\x00\xffnot http at all " * 256)
                await writer.drain()
                await asyncio.sleep(0.01)
        if behaviour is HttpBehaviour.ENDLESS:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
            writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 8192
            for _ in range(ENDLESS_CHUNKS):
                if writer.is_closing():
                    return
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                await asyncio.sleep(0)
        if behaviour is HttpBehaviour.SLOW:
            for byte in _response("200 OK", plain, policy):
                if writer.is_closing():
                    return
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
            return
        if not head.startswith(b"GET " + POLICY_PATH + b" ") or not policy:
            writer.write(_response("404 Not Found", plain, b"not found\n"))
        elif behaviour is HttpBehaviour.OK:
            writer.write(_response("200 OK", plain, policy))
        elif behaviour is HttpBehaviour.NOT_FOUND:
            writer.write(_response("404 Not Found", {"Content-Type": "text/html"}, b"<h1>404</h1>"))
        elif behaviour is HttpBehaviour.REDIRECT:
            location = f"https://www.{host.removeprefix('mta-sts.')}/.well-known/mta-sts.txt"
            writer.write(_response("301 Moved Permanently", {"Location": location}, b""))
        elif behaviour is HttpBehaviour.HTML:
            page = b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>\n"
            writer.write(_response("200 OK", {"Content-Type": "text/html; charset=utf-8"}, page))
        elif behaviour is HttpBehaviour.WRONG_TYPE:
            writer.write(_response("200 OK", {"Content-Type": "application/octet-stream"}, policy))
        elif behaviour is HttpBehaviour.CHARSET:
            ctype = {"Content-Type": "text/plain; charset=iso-8859-1"}
            writer.write(_response("200 OK", ctype, policy))
        elif behaviour is HttpBehaviour.HUGE:
            writer.write(_response("200 OK", plain, policy + b"#" * HUGE_SIZE))
        elif behaviour in (HttpBehaviour.BAD_CHUNK, HttpBehaviour.GZIP_CHUNKED):
            writer.write(_chunked(policy, behaviour))
        elif behaviour is HttpBehaviour.GZIP_BOMB:
            bomb = _gzip_bomb()
            headers = {**plain, "Content-Encoding": "gzip"}
            writer.write(_response("200 OK", headers, bomb))
        await writer.drain()


def _chunked(policy: bytes, behaviour: HttpBehaviour) -> bytes:
    """The policy in one chunk, framed the wrong way ``behaviour`` names."""
    codings = "chunked"
    size = b"0x%x" % len(policy)
    if behaviour is HttpBehaviour.GZIP_CHUNKED:
        policy, codings = gzip.compress(policy), "gzip, chunked"
        size = b"%x" % len(policy)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: {codings}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + size + b"\r\n" + policy + b"\r\n0\r\n\r\n"


@functools.cache
def _gzip_bomb() -> bytes:
    """16 MiB of zeros in about 16 KiB: whoever decompresses without a cap pays."""
    return gzip.compress(b"\0" * BOMB_SIZE, compresslevel=9)
