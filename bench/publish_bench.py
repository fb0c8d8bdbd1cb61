"""Benchmark of publishing against real servers on loopback; prints figures.

    .venv/bin/python bench/publish_bench.py                  # both parts
    .venv/bin/python bench/publish_bench.py --domains 1000 --batch 100 --skip apply

1. One domain's apply (none -> testing: TLS-RPT record, policy, TXT id) against a BIND primary,
   a Knot secondary (NOTIFY/AXFR) and an HTTPS policy host on a web root, journaled in SQLite:
   the wall time against the sum of the verification waits (target <= 1.5x).
2. N hosted domains' ``id`` bumps through RFC 2136 to Knot (a primary and a Knot secondary),
   each record compare-and-swapped, read back and verified at both servers: domains/s (target
   >= 200/s) and peak RSS.
3. Self-healing's bookkeeping in a monitor round (``--skip heal`` to leave out): per opted-in
   domain, the drift judgement and the sighting's write (SQLite); a domain not opted in costs
   nothing beyond the one opt-in query a round, timed too.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stspilot.lab.authdns import (  # noqa: E402
    KEY_NAME,
    LabZone,
    free_port,
    make_secret,
    start_bind,
    start_knot,
)
from stspilot.publish.rfc2136 import Rfc2136Config, Rfc2136Provider, TsigKey  # noqa: E402
from stspilot.publish.verify import NameServer, VerifyOptions  # noqa: E402

ZONE = "example.test"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_apply(tmp: Path, interval: float) -> None:
    from stspilot.check.run import CheckOptions
    from stspilot.lab.certs import CertKind, LabPki
    from stspilot.lab.https_host import HttpBehaviour, HttpsHost
    from stspilot.publish.config import DomainConfig, ZoneConfig
    from stspilot.publish.plan import plan_publication
    from stspilot.publish.session import open_publisher
    from stspilot.rollout.generate import generate
    from stspilot.store import Store

    secret = make_secret()
    port = free_port("127.0.0.1", "127.0.77.2")
    zone = LabZone(
        ZONE,
        (("ns1", "127.0.0.1"), ("ns2", "127.0.77.2")),
        ("@ MX 10 mx1", "mx1 A 127.0.0.9", "mta-sts A 127.0.0.1"),
    )
    bind = start_bind(
        tmp / "bind", "127.0.0.1", port, [zone], secret=secret, notify=[("127.0.77.2", port)]
    )
    knot = start_knot(
        tmp / "knot", "127.0.77.2", port, [zone], secret=secret, primary=("127.0.0.1", port)
    )
    pki = LabPki(tmp)
    webroot = tmp / "www"
    target = webroot / ".well-known" / "mta-sts.txt"

    class Files(dict[str, bytes]):
        def get(self, key: str, default: bytes | None = None) -> bytes:  # type: ignore[override]
            return target.read_bytes() if target.exists() else b""

    host = HttpsHost(
        "127.0.0.1",
        0,
        context=pki.sni_context(CertKind.GOOD, [f"mta-sts.{ZONE}"]),
        behaviour=HttpBehaviour.OK,
        policies=Files(),
    )
    https = await host.service.start()
    options = {"server": "127.0.0.1", "port": port, "key_name": KEY_NAME, "key_secret": secret}
    config = DomainConfig(ZONE, ZoneConfig(ZONE, "rfc2136", options), f"webroot:{webroot}")
    check = CheckOptions(
        nameserver="127.0.0.1",
        dns_port=port,
        ca_file=pki.ca_file,
        port_map={443: https},
        probe_mx=False,
    )
    try:
        with Store.open(f"sqlite:///{tmp / 'bench.sqlite3'}") as store:
            async with open_publisher(store, config, check=check) as publisher:
                publisher.verify = VerifyOptions(timeout=30, interval=interval)
                await publisher.servers()
                pub = generate(ZONE, mx_hosts=["mx1.example.test"], mode="testing", now=_now())
                started = time.perf_counter()
                plan = plan_publication(await publisher.read_live(ZONE), pub)
                run = await publisher.run(publisher.start(plan, actor="bench"))
                wall = time.perf_counter() - started
        waits = sum(float((s.outcome or {}).get("verify_seconds", 0)) for s in run.steps)
        print(f"apply none -> testing: {len(run.steps)} steps, state {run.state}")
        print(f"  wall {wall:.3f} s, verification waits {waits:.3f} s, ratio {wall / waits:.2f}x")
        for s in run.steps:
            print(f"    {s.kind:7} verify {float((s.outcome or {})['verify_seconds']):.3f} s")
    finally:
        await host.service.stop()
        knot.stop()
        bind.stop()


def _now() -> object:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


async def bench_bulk(tmp: Path, count: int, batch: int, interval: float) -> None:
    from stspilot.publish.bulk import change_txt_many
    from stspilot.publish.providers import STS_PREFIX, TxtChange

    secret = make_secret()
    port = free_port("127.0.78.1", "127.0.78.2")
    hosted = "hosted.test"
    lines = tuple(f'_mta-sts.d{i} TXT "v=STSv1; id=1"' for i in range(count))
    zone = LabZone(hosted, (("ns1", "127.0.78.1"), ("ns2", "127.0.78.2")), lines)
    primary = start_knot(
        tmp / "k1", "127.0.78.1", port, [zone], secret=secret, notify=[("127.0.78.2", port)]
    )
    secondary = start_knot(
        tmp / "k2", "127.0.78.2", port, [zone], secret=secret, primary=("127.0.78.1", port)
    )
    try:
        provider = Rfc2136Provider(
            Rfc2136Config(hosted, "127.0.78.1", port, TsigKey(KEY_NAME, secret))
        )
        servers = (NameServer("ns1", "127.0.78.1", port), NameServer("ns2", "127.0.78.2", port))
        names = [f"_mta-sts.d{i}.{hosted}." for i in range(count)]
        changes = [TxtChange(n, STS_PREFIX, "v=STSv1; id=2", ttl=300) for n in names]
        expected = {n: ("v=STSv1; id=1",) for n in names}
        started = time.perf_counter()
        result = await change_txt_many(
            provider,
            servers,
            changes,
            expected=expected,
            batch=batch,
            verify=VerifyOptions(timeout=60, interval=interval),
        )
        wall = time.perf_counter() - started
        print(
            f"bulk id bumps: {result.written} domains via RFC 2136 to Knot, batch {batch}, "
            f"verified at 2 servers"
        )
        print(
            f"  {wall:.2f} s = {result.written / wall:.0f} domains/s "
            f"(read+write+read-back {result.write_seconds:.2f} s, verify "
            f"{result.verify_seconds:.2f} s); peak RSS {peak_rss_mib():.0f} MiB"
        )
    finally:
        secondary.stop()
        primary.stop()


def bench_heal(tmp: Path, domains: int, rounds: int = 6) -> None:
    """What self-healing adds to a monitor round, per domain: ``observe`` and
    ``HealStore.record`` for an opted-in domain (a sighting written, extended, then cleared, as
    checks come and go) against the one ``all_settings`` query a round pays for the rest."""
    import os
    from datetime import UTC, datetime, timedelta

    from stspilot.monitor.heal import KINDS, observe
    from stspilot.rollout.evidence import HistoryEntry, LiveState, MxState
    from stspilot.store import Store
    from stspilot.store.heal import HealStore

    tmp.mkdir(parents=True, exist_ok=True)
    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    names = [f"d{i}.example" for i in range(domains)]
    with Store.open(str(tmp / "heal.db")) as store:
        heal = HealStore(store)
        for name in names:
            heal.opt_in(name, now=t0, actor="bench", id_bump=True, mx_sync=True)

        def live(name: str, sha: str) -> LiveState:
            mx = (MxState("mx1.example", covered_by="mx1.example", tls_ok=True),)
            return LiveState(name, t0, "1", "enforce", 86400, ("mx1.example",), sha, "", (), mx)

        history = [HistoryEntry(t0 - timedelta(hours=6), "enforce", "1", "a" * 64)]
        per_domain: list[float] = []
        per_round: list[float] = []
        for r in range(rounds):
            # rounds: the drift seen, then gone (its sighting cleared), then nothing at all
            sha = "b" * 64 if r % 3 == 0 else "a" * 64
            cpu = time.process_time()
            pending = heal.pending_domains()
            for name in names:
                found = observe(live(name, sha), history, id_bump=True, mx_sync=True)
                if not found and name not in pending:
                    continue  # what monitor/repair.py skips
                seen = [(d.kind, d.fingerprint, d.detail) for d in found]
                heal.record(name, seen, kinds=KINDS, now=t0 + timedelta(minutes=r))
            per_domain.append((time.process_time() - cpu) / domains * 1000)
            cpu = time.process_time()
            heal.all_settings()  # what a round pays whoever is opted in
            per_round.append((time.process_time() - cpu) * 1000)
        load = os.getloadavg()
        shown = ", ".join(f"{v:.3f}" for v in per_domain)
        print(f"self-healing: CPU {shown} ms per opted-in domain and check ({domains} domains)")
        shown = ", ".join(f"{v:.1f}" for v in per_round)
        print(f"  the round's one opt-in query ({domains} rows): CPU {shown} ms")
        print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between polls")
    parser.add_argument("--skip", default="", help="apply,bulk,heal")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as folder:
        tmp = Path(folder)
        if "apply" not in skip:
            asyncio.run(bench_apply(tmp / "apply", args.interval))
        if "bulk" not in skip:
            asyncio.run(bench_bulk(tmp / "bulk", args.domains, args.batch, args.interval))
        if "heal" not in skip:
            bench_heal(tmp / "heal", args.domains)


if __name__ == "__main__":
    main()
