"""Store write throughput: bulk-insert N realistic reports (built in memory) into SQLite and
PostgreSQL in batches of one transaction each; print reports/s and RSS as N grows.

    .venv/bin/python bench/store_bench.py                 # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/store_bench.py --sizes 1000 10000 --batch 500 --pg URL

Only ``Store.add_reports`` is timed: generating and parsing the reports happens per batch
outside the clock (streamed, so RSS reflects the store, not the input).
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from stspilot.lab.sample_reports import generate_reports, to_json_bytes
from stspilot.reports import parse_report
from stspilot.store import NewReport, Store

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def batches(n: int, size: int, seed: int) -> Iterator[list[NewReport]]:
    """Yield lists of NewReport; report ids get a run-unique suffix so nothing dedupes."""
    run = uuid.uuid4().hex[:8]
    received = datetime.now(UTC)
    done = 0
    while done < n:
        k = min(size, n - done)
        dicts = generate_reports(k, seed=seed + done, domains=("example.com", "example.org"))
        items = []
        for j, d in enumerate(dicts):
            d["report-id"] = f"{d['report-id']}-{run}-{done + j}"
            raw = to_json_bytes(d)
            items.append(NewReport(parse_report(raw), raw, f"bench:{done + j}", received))
        yield items
        done += k


def run(url: str, sizes: list[int], batch: int) -> None:
    for n in sizes:
        with Store.open(url) as store:
            start_count = store.count_reports()
            spent = 0.0
            per_batch: list[float] = []
            rows = 0
            for items in batches(n, batch, seed=n):
                rows += sum(len(r.report.policies) for r in items)
                t = time.perf_counter()
                store.add_reports(items)
                dt = time.perf_counter() - t
                spent += dt
                per_batch.append(dt * 1000)
            stored = store.count_reports() - start_count
            assert stored == n, (stored, n)
            p50 = statistics.median(per_batch)
            p95 = sorted(per_batch)[min(len(per_batch) - 1, int(len(per_batch) * 0.95))]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"  N={n:>6}: {n / spent:>8,.0f} reports/s ({rows / spent:>8,.0f} policies/s), "
                f"batch of {batch}: p50 {p50:.1f} ms p95 {p95:.1f} ms; "
                f"RSS now {rss_mib():.0f} MiB, peak {peak:.0f} MiB"
            )
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL URL ('' to skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite3"
        print(f"SQLite ({db.name}, WAL, synchronous=NORMAL), cumulative file:")
        run(f"sqlite:///{db}", args.sizes, args.batch)
        print(f"  file size {db.stat().st_size / 2**20:.0f} MiB")
    if args.pg:
        import psycopg

        conninfo = args.pg.replace("+psycopg", "")
        try:
            admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            print(f"PostgreSQL not reachable ({exc}); skipped")
            return
        schema = f"bench_{hashlib.sha256(uuid.uuid4().bytes).hexdigest()[:10]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            print(f"PostgreSQL ({schema}):")
            run(f"{args.pg}?options=-csearch_path%3D{schema}", args.sizes, args.batch)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            admin.close()


if __name__ == "__main__":
    main()
