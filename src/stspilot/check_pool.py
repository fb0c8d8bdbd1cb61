"""Bulk checks sharded across worker processes, each with its own event loop and probes.

One asyncio process tops out at one core, and most of a check's CPU is TLS handshakes and
DNS parsing that cannot be made much cheaper in Python (``docs/check.md``). So a bulk run
(``check_domains(..., workers=N)``) starts N processes, hands each of them domains as its queue
runs low (a slow shard does not hold up the others), and gets their ``CheckResult`` values back
in batches. The parent only routes: it calls ``on_result`` as results arrive and returns them
in input order.

Workers are ``python -m stspilot.check_pool`` subprocesses talking pickled messages over their
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
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stspilot.check import CheckOptions, Clock
    from stspilot.evaluate import CheckResult

# Below this many domains per worker, starting processes (~0.3 s each) costs more than it saves.
BULK_FROM = 200
BATCH = 32  # domains per message to a worker


def default_workers(count: int) -> int:
    """How many processes a run of ``count`` domains gets when the caller does not say."""
    cpus = os.cpu_count() or 1
    return max(1, min(cpus, count // (BULK_FROM // 2))) if count >= BULK_FROM else 1


def worker_main() -> None:
    """A worker process: check what the parent sends until it sends an empty list."""
    inbound, outbound = Connection(os.dup(0)), Connection(os.dup(1))
    sys.stdout = sys.stderr  # stdout carries results: nothing else may write there
    options, now = inbound.recv()
    asyncio.run(_serve(inbound, outbound, options, now))
    outbound.close()


async def _serve(conn: Connection, out: Connection, options: CheckOptions, now: Clock) -> None:
    from stspilot.check import Probes, check_one

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
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.to_worker = Connection(os.dup(process.stdin.fileno()))
        self.conn = Connection(os.dup(process.stdout.fileno()))
        process.stdin.close()
        process.stdout.close()
        self.outstanding: set[int] = set()
        self.sending = True  # it may be given more domains
        self.alive = True  # results may still come from it


async def check_sharded(
    todo: Sequence[str],
    *,
    workers: int,
    options: CheckOptions,
    now: Clock,
    on_result: Callable[[CheckResult], None] | None,
) -> list[CheckResult]:
    """``check_domains`` over ``workers`` processes; results in input order."""
    from dataclasses import replace

    from stspilot.check import broken_result

    per_worker = max(1, -(-options.concurrency // workers))
    worker_options = replace(options, concurrency=per_worker)
    results: list[CheckResult | None] = [None] * len(todo)
    pending = deque(range(len(todo)))
    loop = asyncio.get_running_loop()
    all_done = loop.create_future()
    shards: list[_Shard] = []

    def feed(shard: _Shard) -> None:
        # Keep twice the worker's concurrency queued there: it never waits for the parent.
        room = 2 * per_worker - len(shard.outstanding)
        while shard.sending and pending and room > 0:
            batch = [pending.popleft() for _ in range(min(BATCH, room, len(pending)))]
            shard.outstanding.update(batch)
            room -= len(batch)
            shard.to_worker.send([(i, todo[i]) for i in batch])
        if shard.sending and not pending:
            shard.to_worker.send([])
            shard.sending = False

    def settle(index: int, result: CheckResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    def give_up(indexes: list[int], why: str) -> None:
        for index in indexes:
            settle(index, broken_result(todo[index], RuntimeError(why), now()))

    def ended(shard: _Shard) -> None:
        loop.remove_reader(shard.conn.fileno())
        shard.alive = shard.sending = False
        give_up(sorted(shard.outstanding), "the worker process checking it ended unexpectedly")
        shard.outstanding.clear()
        takers = [other for other in shards if other.sending]
        if pending and not takers:
            give_up(list(pending), "every worker process ended unexpectedly")
            pending.clear()
        for other in takers:  # what the ended worker would have had goes to the others
            feed(other)
        if not any(other.alive for other in shards) and not all_done.done():
            all_done.set_result(None)

    def readable(shard: _Shard) -> None:
        try:
            message: list[tuple[int, CheckResult]] = shard.conn.recv()
        except (EOFError, OSError):
            message = []
        for index, result in message:
            shard.outstanding.discard(index)
            settle(index, result)
        if message:
            feed(shard)
        else:
            ended(shard)

    try:
        for _ in range(workers):
            shard = _Shard(_spawn())
            shards.append(shard)
            shard.to_worker.send((worker_options, now))
            loop.add_reader(shard.conn.fileno(), readable, shard)
        for shard in shards:
            feed(shard)
        await all_done
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
    for index, result in enumerate(results):  # a worker that vanished without EOF
        if result is None:
            error = RuntimeError("no result came back from the worker process")
            results[index] = broken_result(todo[index], error, now())
    return [r for r in results if r is not None]


def _spawn() -> subprocess.Popen[bytes]:
    import stspilot

    env = dict(os.environ)
    # The worker imports the same stspilot as this process, installed or not.
    root = os.path.dirname(os.path.dirname(os.path.abspath(stspilot.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "stspilot.check_pool"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )


if __name__ == "__main__":
    worker_main()
