"""One ``stspilot monitor`` round at scale: N enrolled domains of the lab (a separate process,
40 ms per TCP exchange, 20 ms per DNS answer, as in ``check_bench.py``), each with 60 days of
6-hourly check history already stored; ``run_once`` claims them all, checks them, stores each
check, reads its history and report window, and computes its alerts. Prints domains/s, the
round's wall time, CPU of the monitor and of the lab, the monitor's time in the store per
domain, and peak RSS. Prints figures only; it never fails on time.

    .venv/bin/python bench/monitor_bench.py                    # 1,000 domains, concurrency 50
    .venv/bin/python bench/monitor_bench.py --domains 200 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from check_bench import World, _options

from stspilot.store import Store
from stspilot.store.schema import checks

NOW = datetime.now(UTC).replace(microsecond=0)


def seed_history(store: Store, domains: list[str], days: int) -> int:
    """Each domain's stored check copied back over ``days`` days, every 6 hours: a history
    without changes, as a monitor that has run for two months leaves it (setup, not timed)."""
    engine = store._engine
    total = 0
    for start in range(0, len(domains), 100):
        rows = []
        for domain in domains[start : start + 100]:
            latest = store.latest_check(domain)
            assert latest is not None
            for k in range(1, days * 4):
                rows.append(
                    {
                        "domain": domain,
                        "observed_at": latest.observed_at - k * timedelta(hours=6),
                        "stage": latest.stage,
                        "mode": latest.mode,
                        "worst_severity": latest.worst_severity,
                        "findings_count": latest.findings_count,
                        "policy_id": latest.policy_id,
                        "policy_sha256": latest.policy_sha256,
                        "mx_set": list(latest.mx_set),
                        "result": latest.result,
                    }
                )
        with engine.begin() as conn:
            conn.execute(checks.insert(), rows)
        total += len(rows)
    return total


async def one_round(args: argparse.Namespace) -> None:
    from stspilot.lab.scenarios import healthy
    from stspilot.monitor.loop import MonitorConfig, add_domain, run_once

    world = World(args.domains, 1, args.latency_ms / 1000, args.dns_latency_ms / 1000)
    try:
        domains = [healthy(i, mx_count=1).domain for i in range(args.domains)]
        with tempfile.TemporaryDirectory(prefix="stspilot-monitor-") as tmp:
            store = Store.open(f"sqlite:///{Path(tmp) / 'monitor.sqlite3'}")
            try:
                add_domain(store, domains, now=NOW - timedelta(hours=1))
                options = _options(world.info, args.concurrency)
                config = MonitorConfig(
                    batch_size=args.domains, concurrency=args.concurrency, enroll_hosted=False
                )
                first = await run_once(store, options=options, now=NOW, config=config)  # type: ignore[arg-type]
                seeded = seed_history(store, domains, args.history_days)
                print(
                    f"{args.domains} domains enrolled; a first round checked {first.checked} "
                    f"(alerts {first.alerts}); then {seeded:,} checks of history copied back "
                    f"over {args.history_days} days; lab latency {args.latency_ms:.0f} ms TCP, "
                    f"{args.dns_latency_ms:.0f} ms DNS"
                )
                later = NOW + config.interval
                lab_cpu = world.cpu()
                own = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                tally = await run_once(store, options=options, now=later, config=config)  # type: ignore[arg-type]
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = after.ru_utime - own.ru_utime + after.ru_stime - own.ru_stime
                history = store.check_history(domains[0], limit=100_000)
                t = time.perf_counter()
                for domain in domains[:100]:
                    store.history_entries(domain, later - timedelta(days=60))
                per_history = (time.perf_counter() - t) / min(100, len(domains))
            finally:
                store.close()
        print(
            f"second round: claimed {tally.claimed}, checked {tally.checked}, "
            f"failed {tally.failed}, "
            f"alerts {tally.alerts} in {wall:.1f} s = {tally.checked / wall:,.0f} domains/s "
            f"(concurrency {args.concurrency})"
        )
        print(
            f"CPU: monitor {cpu:.1f} s ({cpu / max(1, tally.checked) * 1000:.1f} ms a domain), "
            f"lab {world.cpu() - lab_cpu:.1f} s; history read {per_history * 1000:.2f} ms a "
            f"domain ({len(history)} checks stored for the first)"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the monitor {peak:.0f} MiB")
    finally:
        world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--history-days", type=int, default=60)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--dns-latency-ms", type=float, default=20.0)
    asyncio.run(one_round(parser.parse_args()))


if __name__ == "__main__":
    main()
