"""A TCP listener on one lab address that tracks its connection tasks so it can stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TcpService:
    """``start`` binds ``address:port`` (0 picks one); ``stop`` closes it and cancels sessions."""

    def __init__(self, address: str, port: int, handler: Handler, *, latency: float = 0.0):
        self.address = address
        self.port = port
        self.latency = latency
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._serve, self.address, self.port, limit=16384, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        # The client going away or sending garbage is its right in the lab: end quietly.
        quiet = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
        try:
            with contextlib.suppress(*quiet):
                if self.latency > 0:
                    await asyncio.sleep(self.latency)  # the TCP handshake's round trip
                await self._handler(reader, writer)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

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
