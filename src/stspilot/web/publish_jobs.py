"""Publish runs started from the web, carried out off the request: one background thread with
its own event loop per app, so a run that verifies for minutes never holds a request, and its
blocking journal writes never stall the server's loop. The journal is the progress: the run is
written (planned) before the request returns, and every step's state is read back from there.

A run cut short here (the server stops, the process dies) stays ``running`` in the journal and
is continued by ``stspilot publish resume`` or the page's "resume" action, like one of the CLI.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

STATE_KEY = "publish_jobs"


class PublishJobs:
    """Submit coroutines to the background loop; ``wait`` for the tests, ``close`` on shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: dict[int, concurrent.futures.Future[Any]] = {}

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        tasks = asyncio.all_tasks(loop)
                        for task in tasks:
                            task.cancel()
                        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                        loop.run_until_complete(loop.shutdown_asyncgens())
                        loop.close()

                self._thread = threading.Thread(target=run, name="stspilot-publish", daemon=True)
                self._thread.start()
                ready.wait(10)
                self._loop = loop
            return self._loop

    def submit(self, key: int, job: Callable[[], Awaitable[Any]]) -> None:
        """Run ``job()`` in the background; ``key`` (the journal run id) names it."""

        async def guarded() -> Any:
            try:
                return await job()
            except Exception as exc:  # the journal holds the failure; the log says it too
                log.warning("publish run %s: %s", key, exc)
                return None

        future = asyncio.run_coroutine_threadsafe(guarded(), self._start())
        with self._lock:
            self._running[key] = future
        future.add_done_callback(lambda _: self._forget(key, future))

    def _forget(self, key: int, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            if self._running.get(key) is future:
                del self._running[key]

    def busy(self) -> list[int]:
        with self._lock:
            return sorted(self._running)

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait until no job runs (tests); False when some still run after ``timeout``."""
        with self._lock:
            pending = list(self._running.values())
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done

    def close(self, timeout: float = 5.0) -> None:
        """Give running jobs ``timeout`` seconds, cancel the rest (their runs stay open in the
        journal, to be resumed), stop the loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
            pending = list(self._running.values())
        if loop is None:
            return
        concurrent.futures.wait(pending, timeout=timeout)
        for future in pending:
            future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)


def publish_jobs(app: Any) -> PublishJobs:
    """The app's runner, made on first use (``dict.setdefault`` is atomic: one per app)."""
    found: PublishJobs = app.state._state.setdefault(STATE_KEY, PublishJobs())
    return found


def close_jobs(app: Any) -> None:
    found = app.state._state.get(STATE_KEY)
    if isinstance(found, PublishJobs):
        found.close()
