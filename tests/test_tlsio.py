"""The probes' TLS connection (``probes/tlsio.py``) against real loopback servers, hostile ones too.

Each outcome is the one asyncio's own TLS transport gave the probes: the handshake's
``ssl.SSLError`` with its verify code, ``ConnectionResetError`` when the server hangs up during the
handshake, a time limit that holds on a silent server, b"" at the end of the stream, the error
that broke it, and reading paused while a flood is not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme

from stspilot.probes.tls import TlsContexts, peer_cert, success
from stspilot.probes.tlsio import connect, start_tls

HOST = "mx.example.com"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


async def _asyncio_connect(
    ip: str, port: int, context: ssl.SSLContext, server_hostname: str
) -> object:
    """What the probes used before: asyncio's own TLS transport, for the same outcome."""
    _, writer = await asyncio.open_connection(
        ip, port, ssl=context, server_hostname=server_hostname
    )
    writer.transport.abort()
    return None


# Each hostile case is met by ours and by asyncio's: the same exception class from both.
CONNECTORS = pytest.mark.parametrize(
    "connector", [connect, _asyncio_connect], ids=["ours", "asyncio"]
)


@contextlib.asynccontextmanager
async def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the test is over (a task the server started: nobody awaits it)
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(run, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def test_handshake_sends_then_with_the_finished_and_reads_to_the_end(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def echo_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"got " + line)
        await writer.drain()
        writer.close()  # close_notify, then FIN

    async with serving(echo_request, server_context) as port:
        client = await connect("127.0.0.1", port, client_context, HOST, then=b"GET\r\n")
        try:
            assert client.ssl_object.getpeercert()["subjectAltName"] == (("DNS", HOST),)
            data = b""
            while chunk := await asyncio.wait_for(client.read(4), 5):
                assert len(chunk) <= 4
                data += chunk
            assert data == b"got GET\r\n"
            assert await client.read() == b""  # and again
        finally:
            client.abort()


@CONNECTORS
async def test_refused_certificate_raises_the_verify_error(
    connector: Callable[..., Awaitable[object]],
    server_context: ssl.SSLContext,
) -> None:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async with serving(idle, server_context) as port:
        untrusting = ssl.create_default_context()  # the lab CA is not in the system store
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await connector("127.0.0.1", port, untrusting, HOST)
        assert caught.value.verify_code in (2, 20, 21)


@CONNECTORS
async def test_wrong_name_is_a_host_mismatch(
    connector: Callable[..., Awaitable[object]],
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async with serving(idle, server_context) as port:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await connector("127.0.0.1", port, client_context, "other.example.com")
        assert caught.value.verify_code == 62


@CONNECTORS
async def test_garbage_instead_of_a_server_hello_is_an_ssl_error(
    connector: Callable[..., Awaitable[object]],
    client_context: ssl.SSLContext,
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\x00" * 4096)
        await writer.drain()
        await reader.read(1)

    async with serving(garbage) as port:
        with pytest.raises(ssl.SSLError):
            await asyncio.wait_for(connector("127.0.0.1", port, client_context, HOST), 5)


@CONNECTORS
async def test_hang_up_during_the_handshake_is_a_connection_reset(
    connector: Callable[..., Awaitable[object]],
    client_context: ssl.SSLContext,
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the whole ClientHello: a close with unread data is a reset
        writer.close()  # FIN, as asyncio's SSLProtocol names it: ConnectionResetError

    async with serving(hang_up) as port:
        with pytest.raises(ConnectionResetError) as caught:
            await asyncio.wait_for(connector("127.0.0.1", port, client_context, HOST), 5)
        assert caught.value.errno is None  # the end of the stream, not a reset (errno 104)


@CONNECTORS
async def test_reset_during_the_handshake_is_an_os_error(
    connector: Callable[..., Awaitable[object]],
    client_context: ssl.SSLContext,
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST

    async with serving(reset) as port:
        with pytest.raises(OSError):
            await asyncio.wait_for(connector("127.0.0.1", port, client_context, HOST), 5)


async def test_a_silent_server_is_held_to_the_callers_limit(
    client_context: ssl.SSLContext,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with serving(silent) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await connect("127.0.0.1", port, client_context, HOST)
        assert 0.25 < loop.time() - started < 2


async def test_start_tls_after_a_plain_greeting_and_its_own_handshake_limit(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        await writer.start_tls(server_context)
        writer.write(b"after " + await reader.readline())
        await writer.drain()
        await asyncio.sleep(30)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await asyncio.sleep(30)

    async with serving(starttls) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await reader.readline() == b"220 ready\r\n"
            client = await start_tls(writer.transport, client_context, HOST, then=b"QUIT\r\n")
            assert await asyncio.wait_for(client.read(), 5) == b"after QUIT\r\n"
        finally:
            writer.transport.abort()
    async with serving(silent) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            await reader.readline()
            with pytest.raises(ConnectionAbortedError, match=r"longer than 0\.2 seconds"):
                await start_tls(writer.transport, client_context, HOST, handshake_limit=0.2)
        finally:
            writer.transport.abort()


async def test_a_flood_pauses_reading_and_a_broken_record_raises(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(b"x" * 65536)
            await writer.drain()

    async with serving(flood, server_context) as port:
        client = await connect("127.0.0.1", port, client_context, HOST)
        try:
            for _ in range(100):  # let it flood
                await asyncio.sleep(0.01)
                if client._paused:
                    break
            assert client._paused
            held = len(client._buffer)
            await asyncio.sleep(0.1)
            assert len(client._buffer) == held  # nothing more was read while paused
            assert held < 4 * 64 * 1024
            while len(client._buffer) > 32 * 1024:
                await client.read(16 * 1024)
            assert not client._paused  # resumed once read below the limit
        finally:
            client.abort()

    # A record that does not decrypt: the error, as asyncio's transport raised it to readers.
    async def tamper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        fd = writer.transport.get_extra_info("socket").fileno()
        os.write(fd, b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # application data: undecryptable
        await asyncio.sleep(30)

    async with serving(tamper, server_context) as port:
        client = await connect("127.0.0.1", port, client_context, HOST, then=b"x")
        try:
            with pytest.raises(ssl.SSLError):
                while await asyncio.wait_for(client.read(), 5):
                    pass
        finally:
            client.abort()


async def test_a_certificate_met_again_is_decoded_once(ca: trustme.CA, tmp_path: Path) -> None:
    shared = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST, "other.example.com").configure_cert(shared)

    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = TlsContexts.create(tmp_path / "ca.pem")
    async with serving(idle, shared) as port:
        seen = []
        for name in (HOST, "other.example.com", HOST):
            client = await connect("127.0.0.1", port, tls.verified, name)
            try:
                result = success(client.ssl_object, tls=tls)
                assert result.cert == peer_cert(client.ssl_object)  # what a fresh decode says
                seen.append(result.cert)
            finally:
                client.abort()
    assert seen[0] is seen[1] is seen[2]
    assert seen[0] is not None and seen[0].dns_names == (HOST, "other.example.com")
