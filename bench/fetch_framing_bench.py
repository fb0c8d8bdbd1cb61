"""Print the CPU cost of the policy fetch's HTTP/1.1 framing (h11, ``probes.fetch.exchange``):
one request written and one typical policy response read, per response.

    .venv/bin/python bench/fetch_framing_bench.py [--n 5000]

Figures, never pass/fail. CPU time (``time.process_time``), best of three runs: the machine is
shared. The response comes from a StreamReader in memory, so no socket or TLS cost is in it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from stspilot.probes.fetch import exchange

POLICY = (
    b"version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: mx2.example.com\nmax_age: 604800\n"
)
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: nginx\r\n"
    b"Date: Sun, 06 Dec 2026 21:00:00 GMT\r\nConnection: close\r\n"
)
SHAPES = {
    "content-length": HEAD + b"Content-Length: %d\r\n\r\n" % len(POLICY) + POLICY,
    "chunked": HEAD
    + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(POLICY)
    + POLICY
    + b"\r\n0\r\n\r\n",
}


async def _run(raw: bytes, n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        await exchange(reader, None, "mta-sts.example.com", cap=65536, read_timeout=1)
    return (time.process_time() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    for name, raw in SHAPES.items():
        best = min(asyncio.run(_run(raw, args.n)) for _ in range(3))
        print(f"{name:15} {best * 1e6:7.1f} µs CPU per response ({args.n} responses)")


if __name__ == "__main__":
    main()
