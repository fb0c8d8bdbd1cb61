"""Load test of the open report intake (issue 15): does the store stop growing at the daily
budgets while good reports for monitored domains are still accepted?

``stspilot serve`` runs on loopback with a fresh SQLite store and small budgets. For a bounded
time (and at most ``--max-requests`` attack POSTs), attackers POST at once:

- reports for a domain nobody hosts here (expected: 403, nothing stored);
- large reports (many failure details, gzip) for one hosted "victim" domain (stored up to the
  domain's budget, then 429);
- unreadable bodies (kept as 256 KiB prefixes up to the quarantine's budget, then not kept);

while one good sender POSTs small reports for a monitored domain once a second. The store's
size on disk (database file + WAL) is sampled every second. Prints figures; never fails.

    .venv/bin/python bench/intake_load.py                      # 20 s, 8 attackers
    .venv/bin/python bench/intake_load.py --duration 40 --attackers 16
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

MIB = 1024 * 1024


def report(org: str, rid: str, domain: str, failures: int) -> bytes:
    details = [
        {
            "result-type": "certificate-expired",
            "sending-mta-ip": f"198.51.100.{i % 250 + 1}",
            "receiving-mx-hostname": f"mx{i}.{domain}",
            "additional-information": "x" * 200,
            "failed-session-count": i + 1,
        }
        for i in range(failures)
    ]
    body = {
        "organization-name": org,
        "date-range": {
            "start-datetime": "2026-12-05T00:00:00Z",
            "end-datetime": "2026-12-05T23:59:59Z",
        },
        "contact-info": f"tlsrpt@{org}",
        "report-id": rid,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing", f"mx: mx.{domain}"],
                    "policy-domain": domain,
                    "mx-host": [f"mx.{domain}"],
                },
                "summary": {
                    "total-successful-session-count": 1000,
                    "total-failure-session-count": sum(range(1, failures + 1)),
                },
                "failure-details": details,
            }
        ],
    }
    return gzip.compress(json.dumps(body).encode())


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.exists())


def stored_counts(db: Path) -> tuple[int, int, int]:
    """(victim.test reports, good.test reports, quarantine entries), read-only."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        per = dict(
            conn.execute(
                "SELECT policy_domain, count(DISTINCT report_pk) FROM report_policies "
                "GROUP BY policy_domain"
            ).fetchall()
        )
        (quarantined,) = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    return per.get("victim.test", 0), per.get("good.test", 0), quarantined


def seed(url: str) -> None:
    from stspilot.store import Store
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies
    from stspilot.store.monitor import MonitorStore

    now = datetime.now(UTC)
    with Store.open(url) as store:
        tenant = Accounts(store).add_tenant("victims", now=now)
        HostedPolicies(store).add(
            "victim.test", tenant_id=tenant.id, mode="testing", mx=["mx.victim.test"], now=now
        )
        MonitorStore(store).add(["good.test"], now=now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--attackers", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--domain-mib", type=int, default=8)
    parser.add_argument("--tenant-mib", type=int, default=16)
    parser.add_argument("--quarantine-mib", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the store for a look")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="intake-load-"))
    db = root / "stspilot.sqlite3"
    url = f"sqlite:///{db}"
    seed(url)
    env = {
        **os.environ,
        "STSPILOT_SECRET_KEY": "intake-load-bench-secret-0123456789",
        "STSPILOT_REPORT_RATE": "1000000",  # one loopback address plays every attacker
        "STSPILOT_REPORT_BURST": "1000000",
        "STSPILOT_INTAKE_DOMAIN_BYTES": str(args.domain_mib * MIB),
        "STSPILOT_INTAKE_TENANT_BYTES": str(args.tenant_mib * MIB),
        "STSPILOT_INTAKE_QUARANTINE_BYTES": str(args.quarantine_mib * MIB),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "stspilot", "serve", "--listen", "127.0.0.1:0", "--db", url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    base = server.stdout.readline().split()[-1]
    target = f"{base}/tlsrpt"
    start_size = store_bytes(db)

    stop = threading.Event()
    budget = threading.Semaphore(args.max_requests)
    attack: Counter[tuple[str, int]] = Counter()
    good: Counter[int] = Counter()
    sizes: list[tuple[float, int]] = []
    counts: list[tuple[float, tuple[int, int, int]]] = []
    lock = threading.Lock()
    began = time.monotonic()

    def attacker(n: int) -> None:
        rng = random.Random(n)
        kinds = ("stranger", "victim", "junk")
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set() and budget.acquire(blocking=False):
                i += 1
                kind = kinds[i % 3]
                if kind == "stranger":
                    body = report("attacker.example", f"s-{n}-{i}", "stranger.example", 400)
                elif kind == "victim":  # a fresh id each time: never a duplicate
                    body = report("attacker.example", f"v-{n}-{i}", "victim.test", 400)
                else:
                    body = rng.randbytes(1 * MIB)
                try:
                    status = http.post(target, content=body).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    attack[kind, status] += 1

    def good_sender() -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                i += 1
                body = report("good-sender.example", f"g-{i}", "good.test", 2)
                try:
                    status = http.post(target, content=body).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    good[status] += 1
                stop.wait(1.0)

    def sampler() -> None:
        while not stop.is_set():
            sizes.append((time.monotonic() - began, store_bytes(db)))
            counts.append((time.monotonic() - began, stored_counts(db)))
            stop.wait(1.0)

    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(args.attackers)]
    threads += [threading.Thread(target=good_sender), threading.Thread(target=sampler)]
    for t in threads:
        t.start()
    stop.wait(args.duration)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
    end_size = store_bytes(db)

    from stspilot.store import Store

    with Store.open(url) as store:
        stored = store.count_reports()
        quarantined = len(store.list_quarantine(limit=100_000))
    sent = sum(attack.values())
    print(f"intake load: {elapsed:.1f} s, {args.attackers} attackers, {sent} attack POSTs")
    caps = f"domain {args.domain_mib} MiB, tenant {args.tenant_mib} MiB, "
    print(f"  budgets: {caps}quarantine {args.quarantine_mib} MiB per UTC day")
    for (kind, status), count in sorted(attack.items()):
        print(f"  attack {kind:8} -> {status}: {count}")
    print(f"  good sender (good.test, 1/s): {dict(sorted(good.items()))}")
    print(f"  stored reports: {stored}; quarantine entries: {quarantined}")
    print(f"  store on disk: {start_size / MIB:.1f} MiB -> {end_size / MIB:.1f} MiB")
    half = [s for t, s in sizes if t >= elapsed / 2]
    if half:
        growth = (half[-1] - half[0]) / MIB
        print(f"  file growth over the second half (database + WAL): {growth:.2f} MiB")
    later = [c for t, c in counts if t >= elapsed / 2]
    if later:
        (v0, g0, q0), (v1, g1, q1) = later[0], later[-1]
        print(
            f"  stored over the second half: victim.test {v0} -> {v1} reports, good.test "
            f"{g0} -> {g1}, quarantine {q0} -> {q1}"
        )
    for line in metrics.splitlines():
        if line.startswith("stspilot_intake_refused_total{"):
            print(f"  {line}")
    if args.keep:
        print(f"  (store in {root})")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
