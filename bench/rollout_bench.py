"""Rollout speed: the pure assessment, and reading a domain's report window from the store.

    .venv/bin/python bench/rollout_bench.py
    .venv/bin/python bench/rollout_bench.py --orgs 50 --days 14 --db sqlite:////tmp/r.sqlite3

Prints assessments/s of ``assess_rollout`` on a busy window (ORGS senders x DAYS days, failures
on every third day), then the latency of ``report_window`` (grouped aggregate queries over the
window from SQLite) over repeated runs, and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stspilot.rollout.assess import HistoryEntry, LiveState, MxState, RolloutInputs, assess_rollout
from stspilot.rollout.evidence import window_from_reports
from stspilot.store import NewReport, Store
from stspilot.store.dashboard import report_window
from stspilot.tlsrpt.reports import FailureDetail, PolicyResult, TlsReport

DOMAIN = "bench.example"
HOSTS = ("mx1.bench.example", "mx2.bench.example", "mx3.bench.example")


def reports(orgs: int, days: int, now: datetime) -> list[TlsReport]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for back in range(1, days + 1):
        start = today - timedelta(days=back)
        for o in range(orgs):
            details: tuple[FailureDetail, ...] = ()
            if back % 3 == 0:
                details = (
                    FailureDetail("certificate-expired", 3, "192.0.2.1", HOSTS[o % 3]),
                    FailureDetail("validation-failure", 1, "192.0.2.2", ""),
                )
            failed = sum(d.failed_session_count for d in details)
            policy = PolicyResult("sts", DOMAIN, (), HOSTS, 1000 + o, failed, details)
            out.append(
                TlsReport(
                    f"org{o}", f"org{o}-{back}", start, start + timedelta(days=1), None, (policy,)
                )
            )
    return out


def live(now: datetime) -> LiveState:
    return LiveState(
        DOMAIN,
        now,
        "20260101000000",
        "testing",
        86400,
        HOSTS,
        "a" * 64,
        "",
        ("mailto:tlsrpt@bench.example",),
        tuple(MxState(h, h, True, "", 60) for h in HOSTS),
    )


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orgs", type=int, default=50)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--db", default=None, help="store URL (default: a temporary SQLite)")
    args = parser.parse_args()
    now = datetime.now(UTC)
    items = reports(args.orgs, args.days, now)
    window = window_from_reports(items, DOMAIN)
    history = tuple(
        HistoryEntry(now - timedelta(days=d), "testing", "20260101000000", "a" * 64, HOSTS, 86400)
        for d in range(60, 0, -1)
    )
    inputs = RolloutInputs(live(now), window, history)

    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        assess_rollout(inputs, now=now)
        n += 1
    elapsed = time.perf_counter() - start
    print(
        f"assess_rollout: {n / elapsed:,.0f} assessments/s "
        f"({len(items)} reports -> {len(window.totals)} daily rows, "
        f"{len(window.failures)} failure rows, {len(history)} history entries)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'rollout-bench.sqlite3'}"
        with Store.open(url) as store:
            store.add_reports(
                [
                    NewReport(
                        r, f"{r.organization_name}/{r.report_id}/{now}".encode(), "bench", now
                    )
                    for r in items
                ]
            )
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                got = report_window(store, DOMAIN, now - timedelta(days=args.days + 1), now)
                times.append(time.perf_counter() - t0)
            assert got == window, "the store's window differs from the in-memory one"
    times.sort()
    print(
        f"report_window from {url.split(':')[0]}: {len(items)} reports, "
        f"p50 {statistics.median(times) * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms "
        f"({len(items) / statistics.median(times):,.0f} reports/s)"
    )
    print(f"peak RSS: {rss_peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
