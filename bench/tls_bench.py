"""The probes' TLS path against asyncio's own, one policy fetch at a time many at once; prints CPU.

The same policy fetches from the lab's HTTPS hosts (a world process, as ``check_bench.py``
starts it), in rounds that alternate the two paths in one process:

- ``asyncio``: ``asyncio.open_connection(ssl=...)``, the GET written once the handshake is over,
  the answer read from the ``StreamReader`` (what ``probes/fetch.py`` did before);
- ``tlsio``: ``probes/tlsio.py``'s ``TlsClient`` over ``ssl.MemoryBIO``, the GET sent with the
  client's Finished (what it does now).

Both validate, read the certificate (``success``) and frame the answer with h11; the figure is
the checker's CPU (user + sys) a fetch, the median of the rounds, with the load average.

    .venv/bin/python bench/tls_bench.py --fetches 400 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_bench import World

from stspilot.lab.scenarios import healthy
from stspilot.probes.fetch import MAX_POLICY_BYTES, _connection, _response, exchange
from stspilot.probes.resolver import Resolver, ResolverConfig
from stspilot.probes.tls import TlsContexts, success
from stspilot.probes.tlsio import connect

Fetch = Callable[[str, str], Awaitable[int]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(args: argparse.Namespace) -> None:
    world = World(args.hosts, 1, 0.0, 0.0)
    try:
        info = world.info
        port = int(info["https_port"])  # type: ignore[call-overload]
        tls = TlsContexts(str(info["ca_file"]))
        tls.warm()
        resolver = Resolver(ResolverConfig((str(info["nameserver"]),), int(info["dns_port"])))  # type: ignore[call-overload]
        hosts = [f"mta-sts.{healthy(i, mx_count=1).domain}" for i in range(args.hosts)]
        ips = [(await resolver.lookup_address(h)).addresses[0] for h in hosts]
        await resolver.aclose()

        async def through_asyncio(ip: str, host: str) -> int:
            reader, writer = await asyncio.open_connection(
                ip, port, ssl=tls.verified, server_hostname=host, ssl_handshake_timeout=5
            )
            try:
                assert success(
                    writer.get_extra_info("ssl_object"), writer.get_extra_info("peercert")
                ).ok
                response = await exchange(
                    reader, writer, host, cap=MAX_POLICY_BYTES, read_timeout=5
                )
                return response.status
            finally:
                writer.transport.abort()

        async def through_tlsio(ip: str, host: str) -> int:
            conn, request = _connection(host)
            client = await connect(ip, port, tls.verified, host, then=request)
            try:
                assert success(client.ssl_object).ok
                response = await _response(conn, client, cap=MAX_POLICY_BYTES, read_timeout=5)
                return response.status
            finally:
                client.abort()

        async def round_of(fetch: Fetch, count: int) -> float:
            slots = asyncio.Semaphore(args.concurrency)

            async def one(i: int) -> int:
                async with slots:
                    return await fetch(ips[i % len(ips)], hosts[i % len(hosts)])

            started = _cpu()
            statuses = await asyncio.gather(*(one(i) for i in range(count)))
            assert set(statuses) == {200}, set(statuses)
            return (_cpu() - started) / count * 1000

        paths: dict[str, Fetch] = {"asyncio": through_asyncio, "tlsio": through_tlsio}
        for fetch in paths.values():
            await round_of(fetch, 20)  # warm-up
        figures: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, fetch in paths.items():
                figures[name].append(await round_of(fetch, args.fetches))
        load = os.getloadavg()[0]
        for name, values in figures.items():
            spread = " ".join(f"{v:.3f}" for v in sorted(values))
            print(
                f"{name:8} {statistics.median(values):6.3f} ms of CPU a policy fetch "
                f"(median of {args.rounds} rounds of {args.fetches}; {spread}); load {load:.1f}"
            )
    finally:
        world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetches", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=200)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
