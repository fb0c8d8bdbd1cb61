"""TLS for the probes over one TCP connection, with ``ssl.MemoryBIO``: the handshake and reads.

asyncio's TLS layer (``open_connection(ssl=...)``, ``StreamWriter.start_tls``) puts a general
transport over the socket's: a 256 KiB read buffer zeroed for every connection, a state machine
for renegotiation, shutdown and flow control, an application transport and protocol, and a
``getpeercert()`` decoded whether anyone reads it. A probe needs much less: one handshake, the
certificate, a request written with the client's Finished, the answer read, then an abort.
Measured (``bench/tls_bench.py --fetches 400 --rounds 5``: the same policy fetches through
either path, alternating rounds in one process, loopback): 1.45 ms of CPU a fetch through
asyncio's streams, 1.17 ms through ``TlsClient`` (medians, load 12.3; 1.32 against 1.17 in
another run at load 7.8); in the bulk check, with STARTTLS too, 0.5-0.9 ms a domain
(docs/check.md).
The standard library's ``ssl`` still does all of TLS: this is only the plumbing around it.

What the probes saw through asyncio is kept: a handshake failure raises the ``ssl.SSLError``
(its verify code intact), the end of the stream during the handshake ``ConnectionResetError``,
a connection lost with an error that error; after the handshake ``read`` returns b"" at the end
of the stream (TCP FIN or close_notify) and raises the error that broke the connection.
"""

from __future__ import annotations

import asyncio
import ssl

READ_CHUNK = 16 * 1024  # one TLS record's plaintext at most
DEFAULT_LIMIT = 64 * 1024  # reading pauses past twice this many unread bytes (as asyncio's)


class TlsClient(asyncio.Protocol):
    """The client side of one TLS connection; ``handshake`` completes (or fails) once.

    ``then``: bytes written as application data as soon as the handshake completes, in the same
    segment as the client's Finished (a request, or SMTP's QUIT: one send less).
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        *,
        then: bytes = b"",
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._then = then
        self._limit = limit
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.handshake: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._done = False  # the handshake completed
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._handshake()

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self._done:
            self._read()
        else:
            self._handshake()

    def eof_received(self) -> bool:
        if not self._done:
            self._fail(ConnectionResetError())  # as asyncio's SSLProtocol says it
        else:
            self._read()  # what the last records held
            self._eof = True
            self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            self._fail(exc or ConnectionResetError())
        elif exc is not None and self._error is None:
            self._error = exc
        self._eof = True
        self._wake()

    # --- the handshake ---------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._fail(exc)  # dropped without sending the alert, as asyncio's transport did
            return
        self._done = True
        if self._then:
            self.ssl_object.write(self._then)
        self._flush()
        if not self.handshake.done():
            self.handshake.set_result(None)
        self._read()  # records that came with the server's Finished (session tickets)

    def _fail(self, exc: BaseException) -> None:
        if self.handshake.done():
            return
        self.handshake.set_exception(exc)
        self.handshake.exception()  # retrieved here: a caller that gave up need not
        if self._transport is not None:
            self._transport.abort()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._transport is not None:
            self._transport.write(data)

    # --- application data ------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                chunk = self.ssl_object.read(READ_CHUNK)
                if not chunk:  # close_notify
                    self._eof = True
                    break
                self._buffer += chunk
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._error = exc
            self._eof = True
            if self._transport is not None:
                self._transport.abort()
        self._flush()  # a key update's answer
        if len(self._buffer) > 2 * self._limit and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()
        if self._buffer or self._eof:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of application data (all there is if ``n`` < 0); b"" at the end."""
        while not self._buffer and not self._eof and self._error is None:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._error is not None:
            raise self._error
        if n < 0 or n >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
        if self._paused and len(self._buffer) <= self._limit and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    def abort(self) -> None:
        """Drop the connection without close_notify (the probe has what it came for)."""
        if self._transport is not None:
            self._transport.abort()


async def connect(
    ip: str,
    port: int,
    context: ssl.SSLContext,
    server_hostname: str,
    *,
    then: bytes = b"",
) -> TlsClient:
    """Connect and complete the handshake; the connection is closed if either fails."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(
        lambda: TlsClient(context, server_hostname, then=then), ip, port
    )
    try:
        await client.handshake
    except BaseException:
        transport.abort()
        raise
    return client


async def start_tls(
    transport: asyncio.BaseTransport,
    context: ssl.SSLContext,
    server_hostname: str,
    *,
    then: bytes = b"",
    handshake_limit: float | None = None,
) -> TlsClient:
    """Upgrade a plain connection (SMTP after ``220`` to STARTTLS, RFC 3207) and complete the
    handshake. Bytes the server sent before the handshake are left unread, as asyncio's
    ``start_tls`` leaves them. ``handshake_limit``: asyncio's own limit on a handshake (60 s), which
    fails it with ``ConnectionAbortedError``; the probes' limits are shorter and come first."""
    assert isinstance(transport, asyncio.Transport)  # a socket's
    client = TlsClient(context, server_hostname, then=then)
    transport.set_protocol(client)
    client.connection_made(transport)
    transport.resume_reading()  # if the plain stream's reader had paused it
    if handshake_limit is None:
        await client.handshake
        return client
    loop = asyncio.get_running_loop()
    message = (
        f"SSL handshake is taking longer than {handshake_limit} seconds: aborting the connection"
    )
    timer = loop.call_later(handshake_limit, client._fail, ConnectionAbortedError(message))
    try:
        await client.handshake
    finally:
        timer.cancel()
    return client
