"""Bulk checks sharded across worker processes, each with its own event loop and probes.

One asyncio process tops out at one core, and most of a check's CPU is TLS handshakes and
DNS parsing that cannot be made much cheaper in Python (``docs/check.md``). So a bulk run
(``check_domains(..., workers=N)``) starts N processes, hands each of them domains as its queue
runs low (a slow shard does not hold up the others), and gets their ``CheckResult`` values back
in batches. The parent only routes: it calls ``on_result`` as results arrive and yields them
in input order, handing out a domain only within a window of the oldest one not yet yielded
(a bounded reorder buffer, so memory does not grow with the number of domains).

Workers are ``python -m stspilot.check.pool`` subprocesses talking pickled messages over their
stdin/stdout (``multiprocessing.connection.Connection`` framing): unlike multiprocessing's
``spawn`` they never re-import the caller's ``__main__``, and unlike ``fork`` they do not
inherit a running event loop. Messages, parent → worker: first ``(options, now)``, then lists
of ``(index, domain)``; an empty list means "no more". Worker → parent: lists of
``(index, CheckResult)``; an empty list means "finished".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from stspilot.check.evaluate import CheckResult
    from stspilot.check.run import CheckOptions, Clock

# Below this many domains per worker, starting processes (~0.3 s each) costs more than it saves.
BULK_FROM = 200
BATCH = 32  # domains per message to a worker


def default_workers(count: int) -> int:
    """How many processes a run of ``count`` domains gets when the caller does not say."""
    cpus = os.cpu_count() or 1
    return max(1, min(cpus, count // (BULK_FROM // 2))) if count >= BULK_FROM else 1


def worker_main() -> None:
    """A worker process: check what the parent sends until it sends an empty list."""
    from multiprocessing.connection import Connection

    inbound, outbound = Connection(os.dup(0)), Connection(os.dup(1))
    sys.stdout = sys.stderr  # stdout carries results: nothing else may write there
    options, now = inbound.recv()
    asyncio.run(_serve(inbound, outbound, options, now))
    outbound.close()


async def _serve(conn: Connection, out: Connection, options: CheckOptions, now: Clock) -> None:
    from stspilot.check.run import bulk_gc

    with bulk_gc():
        await _serve_tuned(conn, out, options, now)


async def _serve_tuned(
    conn: Connection, out: Connection, options: CheckOptions, now: Clock
) -> None:
    from stspilot.check.run import Probes, check_one

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[list[tuple[int, str]]] = asyncio.Queue()
    outbox: list[tuple[int, CheckResult]] = []
    flush_pending = False

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the parent is gone: stop after what is in flight
            loop.remove_reader(conn.fileno())
            inbox.put_nowait([])

    def flush() -> None:
        nonlocal flush_pending
        flush_pending = False
        if outbox:
            out.send(list(outbox))  # one message for every result of this loop turn
            outbox.clear()

    def finished(index: int, result: CheckResult) -> None:
        nonlocal flush_pending
        outbox.append((index, result))
        if not flush_pending:
            flush_pending = True
            loop.call_soon(flush)

    loop.add_reader(conn.fileno(), readable)
    slots = asyncio.Semaphore(options.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    async with Probes(options) as probes:

        async def one(index: int, domain: str) -> None:
            try:
                finished(index, await check_one(domain, probes, options, now))
            finally:
                slots.release()

        while batch := await inbox.get():
            for index, domain in batch:
                await slots.acquire()
                task = asyncio.ensure_future(one(index, domain))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    loop.remove_reader(conn.fileno())
    flush()
    out.send([])


class _Shard:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        # Imported here: a run that needs no worker never loads multiprocessing.
        from multiprocessing.connection import Connection

        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.to_worker = Connection(os.dup(process.stdin.fileno()))
        self.conn = Connection(os.dup(process.stdout.fileno()))
        process.stdin.close()
        process.stdout.close()
        self.outstanding: dict[int, str] = {}  # sent, no result yet: index -> domain
        self.sending = True  # it may be given more domains
        self.alive = True  # results may still come from it


async def check_sharded_iter(
    domains: Iterable[str],
    *,
    workers: int,
    options: CheckOptions,
    now: Clock,
    on_result: Callable[[CheckResult], None] | None,
    window: int,
) -> AsyncGenerator[tuple[int, CheckResult], None]:
    """``check_domains_iter`` over ``workers`` processes: ``(index, result)`` in input order.

    A domain is handed out only while it is fewer than ``window`` places past the next one to
    yield, so the results held here stay bounded however long the input is.
    """
    from dataclasses import replace

    from stspilot.check.run import broken_result

    per_worker = max(1, -(-options.concurrency // workers))
    worker_options = replace(options, concurrency=per_worker)
    source = enumerate(domains)
    exhausted = False
    head = taken = 0  # next index to yield; domains handed out
    waiting: dict[int, CheckResult] = {}  # finished, behind a slower one
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[_Shard, list[tuple[int, CheckResult]]]] = asyncio.Queue()
    shards: list[_Shard] = []

    def take(count: int) -> list[tuple[int, str]]:
        nonlocal exhausted, taken
        batch: list[tuple[int, str]] = []
        while len(batch) < count and not exhausted:
            item = next(source, None)
            if item is None:
                exhausted = True
            else:
                batch.append(item)
        taken += len(batch)
        return batch

    def feed(shard: _Shard) -> None:
        # Keep twice the worker's concurrency queued there (it never waits for the parent),
        # within the window.
        room = min(2 * per_worker - len(shard.outstanding), head + window - taken)
        while shard.sending and room > 0 and not exhausted:
            batch = take(min(BATCH, room))
            if batch:
                shard.outstanding.update(batch)
                shard.to_worker.send(batch)
                room -= len(batch)
        if shard.sending and exhausted:
            shard.to_worker.send([])
            shard.sending = False

    def settle(index: int, result: CheckResult) -> None:
        waiting[index] = result
        if on_result is not None:
            on_result(result)

    def broken(domain: str, why: str) -> CheckResult:
        return broken_result(domain, RuntimeError(why), now())

    def readable(shard: _Shard) -> None:
        try:
            message: list[tuple[int, CheckResult]] = shard.conn.recv()
        except (EOFError, OSError):
            message = []
        if not message:
            loop.remove_reader(shard.conn.fileno())
        inbox.put_nowait((shard, message))

    def ready() -> list[tuple[int, CheckResult]]:
        nonlocal head
        out = []
        while head in waiting:
            out.append((head, waiting.pop(head)))
            head += 1
        return out

    try:
        for _ in range(workers):
            shard = _Shard(_spawn())
            shards.append(shard)
            shard.to_worker.send((worker_options, now))
            loop.add_reader(shard.conn.fileno(), readable, shard)
        for shard in shards:
            feed(shard)
        while any(shard.alive for shard in shards):
            shard, message = await inbox.get()
            for index, result in message:
                shard.outstanding.pop(index, None)
                settle(index, result)
            if not message:  # finished, or gone: what it still had becomes a broken result
                shard.alive = shard.sending = False
                why = "the worker process checking it ended unexpectedly"
                for index, domain in sorted(shard.outstanding.items()):
                    settle(index, broken(domain, why))
                shard.outstanding.clear()
            done = ready()
            for other in shards:  # before yielding: workers keep busy while the caller writes
                feed(other)
            for item in done:
                yield item
    finally:
        for shard in shards:
            if shard.alive:
                shard.process.terminate()
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(shard.conn.fileno())
            shard.conn.close()
            shard.to_worker.close()
        for shard in shards:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await loop.run_in_executor(None, shard.process.wait, 10)
            if shard.process.returncode is None:
                shard.process.kill()
                await loop.run_in_executor(None, shard.process.wait)
    # Every worker is gone and what each had is settled; if they ended before the input did,
    # the rest is reported as broken rather than silently dropped.
    for index, domain in source:
        settle(index, broken(domain, "every worker process ended unexpectedly"))
        for item in ready():
            yield item


def _spawn() -> subprocess.Popen[bytes]:
    import stspilot

    env = dict(os.environ)
    # The worker imports the same stspilot as this process, installed or not.
    root = os.path.dirname(os.path.dirname(os.path.abspath(stspilot.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "stspilot.check.pool"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )


if __name__ == "__main__":
    worker_main()
