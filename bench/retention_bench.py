"""Thinning check history (``Store.thin_checks``, ``stspilot monitor prune``): how long it takes
and what it saves. Seeds DOMAINS domains x DAYS days x 4 checks a day (a monitor every 6 h) with
~3 kB results, a stage change now and then, straight through SQLAlchemy Core (not timed); then
thins with the default retention (all 30 days, then changes and one a day) and prints checks
looked at and dropped per second, the rows and the result bytes before and after, and peak RSS.

    .venv/bin/python bench/retention_bench.py                       # 1,000 domains x 120 days
    .venv/bin/python bench/retention_bench.py --domains 200 --days 60
    .venv/bin/python bench/retention_bench.py --url postgresql+psycopg://postgres@127.0.0.1/test

Prints figures only; it never fails on time.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Text, func, select

from stspilot.store import Store
from stspilot.store.schema import checks

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def seed(store: Store, domains: int, days: int, seed: int) -> int:
    rng = random.Random(seed)
    padding = "x" * 2800  # a check result of a domain with two MX hosts and a finding or two
    rows = []
    total = 0
    engine = store._engine  # the bench seeds in bulk; the store API saves one check at a time
    for d in range(domains):
        domain = f"customer{d:05d}.example"
        stage = "testing"
        for n in range(days * 4):
            at = NOW - timedelta(days=days) + n * timedelta(hours=6)
            if rng.random() < 0.01:  # a change about every 25 days
                stage = "fixing" if stage == "testing" else "testing"
            rows.append(
                {
                    "domain": domain,
                    "observed_at": at,
                    "stage": stage,
                    "mode": "testing",
                    "worst_severity": "error" if stage == "fixing" else None,
                    "findings_count": 1 if stage == "fixing" else 0,
                    "policy_id": "20260901000000",
                    "policy_sha256": "ab" * 32,
                    "mx_set": ["mx1." + domain, "mx2." + domain],
                    "result": {"stage": stage, "padding": padding},
                }
            )
        if len(rows) >= 20_000 or d == domains - 1:
            with engine.begin() as conn:
                conn.execute(checks.insert(), rows)
            total += len(rows)
            rows = []
    return total


def sizes(store: Store) -> tuple[int, int]:
    with store._engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(checks)).scalar_one()
        length = func.length(checks.c.result.cast(Text()))
        size = conn.execute(select(func.coalesce(func.sum(length), 0))).scalar_one()
    return int(count), int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stspilot-retention-") as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        with Store.open(url) as store:
            started = time.perf_counter()
            seeded = seed(store, args.domains, args.days, args.seed)
            print(
                f"seeded {seeded:,} checks ({args.domains} domains x {args.days} days x 4) "
                f"in {time.perf_counter() - started:.1f} s on {store.dialect}"
            )
            rows_before, bytes_before = sizes(store)
            started = time.perf_counter()
            cpu = time.process_time()
            seen, dropped = store.thin_checks(now=NOW)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            rows_after, bytes_after = sizes(store)
            if store.dialect == "postgresql":
                with store._engine.begin() as conn:
                    conn.execute(checks.delete())
        print(
            f"thin_checks: looked at {seen:,} checks older than 30 days, dropped {dropped:,} in "
            f"{elapsed:.2f} s ({seen / elapsed:,.0f} checks/s looked at; CPU {cpu:.2f} s)"
        )
        print(
            f"rows {rows_before:,} -> {rows_after:,}; result JSON "
            f"{bytes_before / 2**20:,.0f} MiB -> {bytes_after / 2**20:,.0f} MiB"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {peak:.0f} MiB")
        print(json.dumps({"seen": seen, "dropped": dropped, "seconds": round(elapsed, 3)}))


if __name__ == "__main__":
    main()
