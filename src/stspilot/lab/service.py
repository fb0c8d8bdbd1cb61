"""A TCP listener on one lab address that tracks its connection tasks so it can stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TcpService:
    """``start`` binds ``address:port`` (0 picks one); ``stop`` closes it and cancels sessions."""

    def __init__(
        self,
        address: str,
        port: int,
        handler: Handler,
        *,
        latency: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls  # TLS from the first byte (HTTPS); None for plain TCP (SMTP, broken HTTPS)
        self.address = address
        self.port = port
        self.latency = latency
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve,
            self.address,
            self.port,
            limit=16384,
            backlog=1024,
            ssl=self.tls,
            ssl_handshake_timeout=10 if self.tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The session runs in its own task so ``stop`` can cancel it while this callback task
        # ends normally (asyncio's stream callback treats a cancelled callback as an error).
        session = asyncio.ensure_future(self._session(reader, writer))
        self._tasks.add(session)
        self.connections += 1
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await session
        finally:
            self._tasks.discard(session)
            writer.transport.abort()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The client going away or sending garbage is its right in the lab: end quietly.
        quiet = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
        with contextlib.suppress(*quiet):
            if self.latency > 0:
                # The TCP handshake's round trip, and the TLS 1.3 handshake's when TLS is on.
                await asyncio.sleep(self.latency * (2 if self.tls else 1))
            await self._handler(reader, writer)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


async def drain_until_eof(reader: asyncio.StreamReader) -> None:
    """Read and discard until the peer closes: a server that never answers."""
    while await reader.read(4096):
        pass
