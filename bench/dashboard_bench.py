"""Dashboard latency at MSP scale: 5,000 hosted domains of one tenant, a stored check each, and
a week of TLS-RPT reports from four reporters per domain and day (140,000 reports, hundreds of
millions of sessions); then the inventory, domain and reports pages are requested in-process
(httpx over ASGI, bearer token of the tenant's user) and p50/p95 latencies printed.

    .venv/bin/python bench/dashboard_bench.py                  # SQLite file in a temp dir
    .venv/bin/python bench/dashboard_bench.py --domains 1000 --days 3 --requests 20
    .venv/bin/python bench/dashboard_bench.py --url postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/dashboard_bench.py --keep /tmp/dash.sqlite3   # seed once, reuse

Seeding uses the store's fast path (``Store.add_reports`` with models built in memory, as
``store_bench.py`` does); only the page requests are timed.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from store_bench import to_model

from stspilot.lab.sample_reports import generate_reports, to_json_bytes
from stspilot.store import NewReport, Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.web import pages as web_pages
from stspilot.web.app import create_app, freeze_startup_heap
from stspilot.web.settings import WebSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PROVIDERS = 4  # generate_reports cycles google, microsoft, mailru, stalwart per day


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_result(domain: str, observed_at: datetime, mx: list[str]) -> dict[str, Any]:
    """A stored check (``stspilot.check/1`` domain entry) of a domain in testing."""
    return {
        "domain": domain,
        "observed_at": observed_at.isoformat(),
        "stage": "testing",
        "worst": None,
        "deadline_hit": False,
        "effective": {"usable": True, "mode": "testing", "reason_code": None, "reason": ""},
        "sts_record": {"id": "20261101T000000", "extensions": {}},
        "policy": {
            "version": "STSv1",
            "mode": "testing",
            "max_age": 86400,
            "mx": mx,
            "extensions": {},
        },
        "policy_source": f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
        "tlsrpt": {"state": "valid", "rua": [f"mailto:tlsrpt@{domain}"], "extensions": {}},
        "mx": [
            {
                "host": h,
                "preference": 10,
                "covered_by": h,
                "probe_outcome": "ok",
                "tls_ok": True,
                "tls_version": "TLSv1.3",
                "cert_not_after": (observed_at + timedelta(days=20 + i)).isoformat(),
                "days_to_expiry": 20 + i,
                "findings": [],
            }
            for i, h in enumerate(mx)
        ],
        "findings": [],
    }


def seed_domains(store: Store, n: int) -> tuple[list[str], str]:
    accounts = Accounts(store)
    hosting = HostedPolicies(store)
    tenant = accounts.add_tenant("msp", now=NOW)
    user = accounts.add_user("ops", "bench password 1", tenant="msp", now=NOW, password_n=2**10)
    token, _ = accounts.create_token(user.id, "bench", now=NOW)
    names = [f"d{i:05d}.example" for i in range(n)]
    for name in names:
        # The generator's MX names for a policy domain are mx1.<domain>, mx2.<domain>, ...
        mx = [f"mx1.{name}", f"mx2.{name}"]
        hosting.add(name, tenant_id=tenant.id, mode="testing", mx=mx, now=NOW)
        store.save_check(
            domain=name, observed_at=NOW - timedelta(hours=1), stage="testing", mode="testing",
            worst_severity=None, findings_count=0, policy_id="20261101T000000",
            policy_sha256="", mx_set=mx, result=check_result(name, NOW - timedelta(hours=1), mx),
        )  # fmt: skip
    return names, token


def reuse(store: Store) -> tuple[list[str], str]:
    """The domains and a fresh token of a database seeded by an earlier run (``--keep``)."""
    accounts = Accounts(store)
    user = accounts.get_user_by_name("ops")
    if user is None:
        raise SystemExit("--keep: the database was not seeded by this bench")
    token, _ = accounts.create_token(user.id, "bench", now=NOW)
    names = sorted(d.domain for d in HostedPolicies(store).list_domains(user.tenant_id))
    return names, token


def report_batch(names: list[str], days: int, first_id: int) -> list[NewReport]:
    """Four reporters' daily reports for ``names`` over ``days`` days before NOW."""
    dicts = generate_reports(
        len(names) * PROVIDERS * days,
        seed=first_id,
        domains=names,
        start=NOW - timedelta(days=days),
    )
    items = []
    for j, d in enumerate(dicts):
        d["report-id"] = f"{d['report-id']}-{first_id + j}"
        items.append(NewReport(to_model(d), to_json_bytes(d), f"bench:{first_id + j}", NOW))
    return items


def seed_reports(store: Store, names: list[str], days: int) -> tuple[int, int, int]:
    reports = policies = sessions = 0
    step = 250  # domains per generated (and committed) batch: bounded memory
    for i in range(0, len(names), step):
        batch = report_batch(names[i : i + step], days, first_id=reports)
        store.add_reports(batch, dedup_raw=False)
        reports += len(batch)
        for item in batch:
            for p in item.report.policies:
                policies += 1
                sessions += p.successful_sessions + p.failed_sessions
    return reports, policies, sessions


def has(name: str) -> bool:
    """Whether the dashboard code measured has ``name`` (this script also measures older
    trees, for before/after figures): in web/pages.py or, since, web/inventory.py."""
    try:
        from stspilot.web import inventory
    except ImportError:
        return hasattr(web_pages, name)
    return hasattr(web_pages, name) or hasattr(inventory, name)


Timing = tuple[list[float], list[float]]  # wall ms, process CPU ms per request


async def timed(client: httpx.AsyncClient, urls: list[str], token: str) -> Timing:
    wall, cpu = [], []
    headers = {"authorization": f"Bearer {token}"}
    for url in urls:
        t, c = time.perf_counter(), time.process_time()
        response = await client.get(url, headers=headers)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return wall, cpu


def line(label: str, timing: Timing) -> str:
    """Wall p50/p95/max and CPU p50/p95: CPU time is the steadier figure on a busy machine."""
    ms, cpu = timing

    def p95(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]

    return (
        f"  {label:<34} n={len(ms):>3}  p50 {statistics.median(ms):7.1f} ms  "
        f"p95 {p95(ms):7.1f} ms  max {max(ms):7.1f} ms  |  CPU p50 "
        f"{statistics.median(cpu):7.1f} ms  p95 {p95(cpu):7.1f} ms"
    )


async def measure(
    store: Store, names: list[str], token: str, requests: int, only: tuple[str, ...] = ()
) -> None:
    settings = WebSettings(secret_key=b"bench-secret-key-0123456789", secure_cookies=False)
    app = create_app(settings, store, clock=lambda: NOW)
    # As `stspilot serve` does: the start-up heap leaves the collector's passes, so a full
    # collection (every few requests of a page that renders 50 rows) does not walk it.
    freeze_startup_heap()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.bench") as client:
        await timed(client, ["/", f"/domains/{names[0]}"], token)  # warm up (imports, caches)
        await _pages(client, names, token, requests, only)


async def _pages(
    client: httpx.AsyncClient, names: list[str], token: str, requests: int, only: tuple[str, ...]
) -> None:
    """Each page kind's figures (``only``: the kinds whose label contains one of these)."""

    async def show(label: str, urls: list[str]) -> None:
        if not only or any(word in label for word in only):
            print(line(label, await timed(client, urls, token)))

    pages = max(1, len(names) // 50)
    step = max(1, pages // requests)
    inventory = [f"/?page={1 + (i * step) % pages}" for i in range(requests)]
    await show("inventory (50 rows, gate per row)", inventory)
    search = [f"/?q=d{i % 100:02d}" for i in range(requests)]
    await show("inventory filtered by name", search)
    if has("window_series"):  # the stage/severity filters exist (issue 13)
        kinds = ["stage=testing", "severity=clean", "stage=unchecked", "severity=error"]
        filtered = [f"/?{kinds[i % 4]}&page={1 + i % 3}" for i in range(requests)]
        await show("inventory by stage or severity", filtered)
    if has("SORT_KEYS"):  # sorting and export cover the whole inventory
        few = max(2, requests // 8)  # each reads every domain's row
        by = ["sessions", "rate", "cert", "findings"]
        ordered = [f"/?sort={by[i % 4]}&order=desc" for i in range(few)]
        await show("inventory sorted by figures (all)", ordered)
        # Stage and gate orders and the export make every domain's gate.
        gated = [f"/?sort={('gate', 'stage')[i % 2]}&order=desc" for i in range(few)]
        await show("inventory sorted by gate/stage (all)", gated)
        exports = [f"/domains.csv?sort={('sessions', 'gate')[i % 2]}" for i in range(few)]
        await show("inventory CSV export (all)", exports)
    spread = max(1, len(names) // requests)
    domain = [f"/domains/{names[(i * spread) % len(names)]}" for i in range(requests)]
    await show("domain page (30 days, charts)", domain)
    year = [f"/domains/{names[(i * spread) % len(names)]}?days=365" for i in range(requests)]
    await show("domain page (365 days)", year)
    reports = [f"/reports?days=30&page={1 + i}" for i in range(requests)]
    await show("reports, whole tenant (50/page)", reports)
    one = [f"/reports?domain={names[(i * spread) % len(names)]}" for i in range(requests)]
    await show("reports of one domain", one)
    await show("GET /metrics (all tenants)", ["/metrics"] * requests)


def chart_figures(rounds: int = 5) -> None:
    """The 365-day sessions chart with a full year of data (the bench's reports cover only
    ``--days``, and pygal skips empty bars): daily bars against weekly ones."""
    from stspilot.tlsrpt.summary import DailyTotal
    from stspilot.web import charts

    last = NOW.date()
    first = last - timedelta(days=364)
    rows = [
        DailyTotal("d.example", first + timedelta(days=i), "org", 1000 + i, i % 7)
        for i in range(365)
    ]
    series = charts.daily_series(rows, first=first, last=last)
    for label, weekly in (("daily bars (730)", False), ("weekly bars (106)", True)):
        ms = []
        for _ in range(rounds):
            t = time.process_time()
            charts.sessions_chart(series, per_week=weekly)
            ms.append((time.process_time() - t) * 1000)
        print(f"  365-day chart, {label:<18} CPU p50 {statistics.median(ms):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--domains", type=int, default=5000)
    parser.add_argument("--days", type=int, default=7, help="days of reports per domain")
    parser.add_argument("--requests", type=int, default=40, help="requests per page kind")
    parser.add_argument("--url", default="", help="database URL (default: a temp SQLite file)")
    parser.add_argument(
        "--keep", type=Path, default=None, metavar="DB",
        help="SQLite file kept between runs: seeded when missing, reused (not re-seeded) after",
    )  # fmt: skip
    parser.add_argument(
        "--only", nargs="+", default=(), metavar="WORD",
        help="measure only the page kinds whose label contains one of these words",
    )  # fmt: skip
    parser.add_argument("--no-charts", action="store_true", help="skip the 365-day chart figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "dashboard.sqlite3"
        url = args.url or f"sqlite:///{path}"
        seeded = args.keep is not None and args.keep.exists()
        with Store.open(url) as store:
            if seeded:
                names, token = reuse(store)
                print(f"reusing {args.keep}: {len(names):,} hosted domains")
            else:
                t = time.perf_counter()
                names, token = seed_domains(store, args.domains)
                print(
                    f"{len(names):,} hosted domains with a check each: "
                    f"{time.perf_counter() - t:.1f} s"
                )
                t = time.perf_counter()
                reports, policies, sessions = seed_reports(store, names, args.days)
                print(
                    f"{reports:,} reports ({policies:,} policy rows, {sessions:,} sessions) "
                    f"in {time.perf_counter() - t:.1f} s"
                )
            if not args.url:
                size = (
                    sum(
                        f.stat().st_size
                        for f in path.parent.iterdir()
                        if f.name.startswith(path.name)
                    )
                    / 2**20
                )
                print(f"SQLite files (with the WAL) {size:,.0f} MiB")
            cpu = time.process_time()
            print(f"page latency ({store.dialect}, in-process, one client at a time):")
            asyncio.run(measure(store, names, token, args.requests, tuple(args.only)))
            print(f"CPU time of the page requests {time.process_time() - cpu:.1f} s")
            if not args.no_charts:
                chart_figures()
            print(f"peak RSS {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
