"""Store write throughput: bulk-insert N realistic reports (built in memory) into SQLite and
PostgreSQL in batches of one transaction each; print reports/s and RSS as N grows.

    .venv/bin/python bench/store_bench.py                 # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/store_bench.py --sizes 1000 10000 --batch 500 --pg URL

Only ``Store.add_reports`` is timed (wall clock, and this process's CPU time, which shows the
cost when other work shares the machine): generating and parsing the reports happens per batch
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
from typing import Any

from stspilot.lab.sample_reports import generate_reports, to_json_bytes
from stspilot.store import NewReport, Store
from stspilot.tlsrpt.reports import FailureDetail, PolicyResult, TlsReport

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def to_model(d: dict[str, Any]) -> TlsReport:
    """The generator's wire dict as the model (no parser: this measures the store only)."""
    policies = []
    for p in d["policies"]:
        pol, summ = p["policy"], p["summary"]
        mx = pol.get("mx-host", ())
        details = tuple(
            FailureDetail(
                result_type=f["result-type"],
                failed_session_count=f["failed-session-count"],
                sending_mta_ip=f.get("sending-mta-ip"),
                receiving_mx_hostname=f.get("receiving-mx-hostname"),
                receiving_mx_helo=f.get("receiving-mx-helo"),
                receiving_ip=f.get("receiving-ip"),
                additional_information=f.get("additional-information"),
                failure_reason_code=f.get("failure-reason-code"),
            )
            for f in p.get("failure-details", ())
        )
        policies.append(
            PolicyResult(
                policy_type=pol["policy-type"],
                policy_domain=pol.get("policy-domain", ""),
                policy_string=tuple(pol.get("policy-string", ())),
                mx_host=(mx,) if isinstance(mx, str) else tuple(mx),
                successful_sessions=summ["total-successful-session-count"],
                failed_sessions=summ["total-failure-session-count"],
                failure_details=details,
            )
        )
    return TlsReport(
        organization_name=d["organization-name"],
        report_id=d["report-id"],
        start=_when(d["date-range"]["start-datetime"]),
        end=_when(d["date-range"]["end-datetime"]),
        contact_info=d.get("contact-info"),
        policies=tuple(policies),
    )


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
            items.append(NewReport(to_model(d), raw, f"bench:{done + j}", received))
        yield items
        done += k


def run(url: str, sizes: list[int], batch: int) -> None:
    for n in sizes:
        with Store.open(url) as store:
            start_count = store.count_reports()
            spent = cpu = 0.0
            per_batch: list[float] = []
            rows = 0
            for items in batches(n, batch, seed=n):
                rows += sum(len(r.report.policies) for r in items)
                t, c = time.perf_counter(), time.process_time()
                store.add_reports(items)
                dt = time.perf_counter() - t
                cpu += time.process_time() - c
                spent += dt
                per_batch.append(dt * 1000)
            stored = store.count_reports() - start_count
            assert stored == n, (stored, n)
            p50 = statistics.median(per_batch)
            p95 = sorted(per_batch)[min(len(per_batch) - 1, int(len(per_batch) * 0.95))]
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"  N={n:>6}: {n / spent:>8,.0f} reports/s wall, {n / cpu:>8,.0f}/s CPU "
                f"({rows / spent:>8,.0f} policies/s wall), "
                f"batch of {batch}: p50 {p50:.1f} ms p95 {p95:.1f} ms; "
                f"RSS now {rss_mib():.0f} MiB, peak {peak:.0f} MiB"
            )
            sys.stdout.flush()


def query_latency(url: str) -> None:
    """How long the summary's aggregates take over everything stored (median of 5 runs)."""
    since, until = datetime(2024, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    with Store.open(url) as store:
        for label, domain in (("example.com", "example.com"), ("all domains", None)):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                agg = store.report_aggregates(domain, since=since, until=until)
                times.append((time.perf_counter() - t) * 1000)
            sessions = sum(d.successful + d.failed for d in agg.daily)
            print(
                f"  summary aggregates, {label}: {statistics.median(times):.0f} ms "
                f"over {store.count_reports():,} reports, {sessions:,} sessions"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL URL ('' to skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite3"
        print(f"SQLite ({db.name}, WAL, synchronous=NORMAL), cumulative file:")
        run(f"sqlite:///{db}", args.sizes, args.batch)
        query_latency(f"sqlite:///{db}")
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
            pg_url = f"{args.pg}?options=-csearch_path%3D{schema}"
            run(pg_url, args.sizes, args.batch)
            query_latency(pg_url)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            admin.close()


if __name__ == "__main__":
    main()
