"""DANE's cost in instructions (``valgrind --tool=callgrind``), which the load of a shared
machine does not change; prints figures. Each figure is the difference between two runs of
different sizes divided by the difference in domains, so imports and set-up cancel out.

Validator alone (no sockets): 120 zones signed like ``check_bench.py``'s DANE domains (an MX
host each, a TLSA rollover pair), their DO answers made by the lab's DNS logic and stored as
wire (outside valgrind); then per domain what a check validates (MX RRset, TLSA lookup, A
record, with the zone's DNSKEY), every answer read from the wire as the resolver reads it.
40 and 120 domains; the share spent in ``cryptography``'s library (OpenSSL's ECDSA) is shown:

    .venv/bin/python bench/dane_instructions.py

The checker end to end (``--checker``): ``check_domains`` over the signed lab domains of
``check_bench.py`` (its world in a child process, not traced), DANE off and on, 20 and 60
domains each, concurrency 10 and long timeouts (valgrind runs the checker ~50 times slower).
Several minutes:

    .venv/bin/python bench/dane_instructions.py --checker
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
ZONES = 120


def _sign(path: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    import check_bench

    path.write_bytes(pickle.dumps(check_bench.signed_wires(ZONES)))


def _validate(count: int, path: Path) -> None:
    from stspilot.facts import DnssecStatus, DnsStatus, MxLookup
    from stspilot.probes.dane import DnssecValidator
    from stspilot.probes.dnssec import TrustAnchors
    from stspilot.probes.dnswire_signed import parse_dnssec_message

    wires, anchors = pickle.loads(path.read_bytes())

    class Wire:
        async def query_dnssec(self, name: object, rdtype: int) -> object:
            wire = wires.get((str(name).lower(), rdtype))
            return (DnsStatus.SERVFAIL, "no") if wire is None else parse_dnssec_message(wire)

    async def run(first: int, last: int) -> None:
        validator = DnssecValidator(Wire(), TrustAnchors.from_text(anchors))  # type: ignore[arg-type]

        async def domain(index: int) -> None:
            name, host = f"d{index:05d}.bench.test", f"mx1.d{index:05d}.bench.test"
            mx = parse_dnssec_message(wires[(f"{name}.", 15)])
            replies = tuple(parse_dnssec_message(wires[(f"{host}.", t)]) for t in (1, 28))
            verdict = await validator.validate_mx(MxLookup(name, DnsStatus.OK), mx)
            lookup = await validator.judge_addresses(await validator.lookup_tlsa(host), replies)
            assert verdict.status is lookup.dnssec.status is DnssecStatus.SECURE
            assert lookup.address_dnssec and lookup.address_dnssec.status is DnssecStatus.SECURE

        await asyncio.gather(*(domain(i) for i in range(first, last)))

    asyncio.run(run(ZONES - 3, ZONES))  # imports, on zones the measured runs do not use
    asyncio.run(run(0, count))


def _check(count: int, dane: bool) -> None:
    import dataclasses

    sys.path.insert(0, str(HERE.parent))
    import check_bench

    from stspilot.check.run import check_domains

    async def main() -> None:
        world = check_bench.World(count + 5, 1, 0.0, 0.0, True, 0)
        try:
            options = dataclasses.replace(  # valgrind: ~50 times slower, never a timeout
                check_bench._options(world.info, 10, dane=dane),  # type: ignore[type-var]
                dns_timeout=600.0, connect_timeout=600.0, read_timeout=600.0,
                fetch_timeout=3000.0, smtp_timeout=3000.0, deadline=3600.0,
            )  # fmt: skip
            warm = [f"d{i:05d}.bench.test" for i in range(count, count + 5)]
            await check_domains(warm, options=options, workers=1)  # type: ignore[arg-type]
            domains = [f"d{i:05d}.bench.test" for i in range(count)]
            results = await check_domains(domains, options=options, workers=1)  # type: ignore[arg-type]
            assert not any(r.deadline_hit for r in results)
            timeouts = [c for r in results for c in r.codes() if "timeout" in c or "failed" in c]
            assert not timeouts, timeouts
            if dane:
                assert all("dane.match" in r.codes() for r in results)
        finally:
            world.close()

    asyncio.run(main())


def _instructions(argv: list[str], out: Path) -> tuple[int, int]:
    """Total instructions of ``argv`` under callgrind, and those in cryptography's library."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
    subprocess.run(command, check=True, capture_output=True)
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    total = crypto = 0
    for line in annotated.splitlines():
        found = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if not found:
            continue
        count = int(found.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = count
        elif "_rust.abi3.so" in found.group(2) or "libcrypto" in found.group(2):
            crypto += count
    return total, crypto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checker", action="store_true", help="the checker end to end")
    parser.add_argument("--validate", nargs=2, help=argparse.SUPPRESS)  # COUNT FILE
    parser.add_argument("--check", nargs=2, help=argparse.SUPPRESS)  # COUNT DANE(0|1)
    args = parser.parse_args()
    if args.validate:
        _validate(int(args.validate[0]), Path(args.validate[1]))
        return
    if args.check:
        _check(int(args.check[0]), args.check[1] == "1")
        return
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        if not args.checker:
            wires = tmp / "wires.pickle"
            _sign(wires)
            (small, small_crypto), (large, large_crypto) = (
                _instructions([sys.executable, str(HERE), "--validate", str(n), str(wires)],
                              tmp / f"v{n}.out")
                for n in (40, 120)
            )  # fmt: skip
            each, crypto = (large - small) / 80, (large_crypto - small_crypto) / 80
            print(
                f"dane validator alone, no sockets (callgrind, 120 - 40 domains): "
                f"{each / 1e6:.2f} M instructions a domain, {crypto / 1e6:.2f} M of them in "
                f"cryptography's library (ECDSA: DNSKEY, MX, TLSA, A), "
                f"{(each - crypto) / 1e6:.2f} M the rest (load {load:.1f})"
            )
            return
        figures = {}
        for dane in (0, 1):
            (small, _), (large, _) = (
                _instructions([sys.executable, str(HERE), "--check", str(n), str(dane)],
                              tmp / f"c{n}-{dane}.out")
                for n in (20, 60)
            )  # fmt: skip
            figures[dane] = (large - small) / 40
        off, on = figures[0], figures[1]
        print(
            f"checker end to end (callgrind, 60 - 20 signed domains, concurrency 10): "
            f"{off / 1e6:.2f} M instructions a domain with DANE off, {on / 1e6:.2f} M with "
            f"DANE on: +{(on - off) / 1e6:.2f} M ({on / off - 1:+.0%})"
        )


if __name__ == "__main__":
    main()
