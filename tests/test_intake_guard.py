"""The open report intake against an outsider (issue 15, High): reports only for domains hosted
or monitored here, daily byte budgets per domain, tenant and quarantine, a bounded quarantine
prefix with the whole input's size and hash, and the refusals and the disk on /metrics.

Against ``stspilot serve`` itself (tests/serve_process.py)."""

from __future__ import annotations

import gzip
import hashlib
import os
from datetime import UTC, datetime

import httpx
import pytest

from intake_samples import report_json
from serve_process import serving
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.batch import QUARANTINE_KEEP_BYTES
from stspilot.store.hosting import HostedPolicies
from stspilot.store.monitor import MonitorStore

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
GZIP = {"content-type": "application/tlsrpt+gzip"}
OPEN = {"STSPILOT_REPORT_RATE": "100000", "STSPILOT_REPORT_BURST": "100000"}


def seed(store: Store) -> None:
    """acme hosts acme.test and acme2.test; monitored.test is monitored (no tenant)."""
    tenant = Accounts(store).add_tenant("acme", now=NOW)
    hosting = HostedPolicies(store)
    for domain in ("acme.test", "acme2.test"):
        hosting.add(domain, tenant_id=tenant.id, mode="testing", mx=[f"mx.{domain}"], now=NOW)
    MonitorStore(store).add(["monitored.test"], now=NOW)


def post(base: str, body: bytes, headers: dict[str, str] = GZIP) -> httpx.Response:
    return httpx.post(f"{base}/tlsrpt", content=body, headers=headers, timeout=30)


def report(rid: str, domain: str, failures: int = 0) -> bytes:
    return gzip.compress(report_json("sender.example", rid, domain=domain, failures=failures))


def test_reports_only_for_hosted_or_monitored_domains(store_url: str, store: Store) -> None:
    seed(store)
    # The disk is the SQLite file's, or STSPILOT_DISK_PATH's (PostgreSQL: its data directory).
    with serving(store_url, {**OPEN, "STSPILOT_DISK_PATH": "/"}) as served:
        stranger = post(served.base, report("r-stranger", "nobody-here.test"))
        hosted = post(served.base, report("r-hosted", "ACME.test."))
        monitored = post(served.base, report("r-monitored", "monitored.test"))
        metrics = httpx.get(f"{served.base}/metrics", timeout=10).text
    assert stranger.status_code == 403, stranger.text
    assert "hosted or monitored here" in stranger.text
    assert hosted.status_code == 201 and monitored.status_code == 201
    assert store.count_reports() == 2
    assert 'stspilot_intake_refused_total{reason="unknown-domain"} 1' in metrics
    assert "stspilot_disk_free_bytes " in metrics


def test_daily_budgets_per_domain_and_tenant(store_url: str, store: Store) -> None:
    """The store stops growing for a domain (and a tenant) at its budget, with 429 and a
    Retry-After until the next UTC day, while other domains are still accepted."""
    seed(store)
    from stspilot.ingest.admission import unit_cost
    from stspilot.ingest.pipeline import prepare_unit
    from stspilot.tlsrpt.schema import DEFAULT_LIMITS

    sample = report("r-0000", "acme.test", failures=20)
    one = unit_cost(prepare_unit(sample, origin="x", received_at=NOW, limits=DEFAULT_LIMITS))
    env = {
        **OPEN,
        "STSPILOT_INTAKE_DOMAIN_BYTES": str(one * 5 + one // 2),
        "STSPILOT_INTAKE_TENANT_BYTES": str(one * 8 + one // 2),
    }
    statuses: dict[str, list[int]] = {"acme.test": [], "acme2.test": [], "monitored.test": []}
    with serving(store_url, env) as served:
        for i in range(8):
            r = post(served.base, report(f"a-{i:04}", "acme.test", failures=20))
            statuses["acme.test"].append(r.status_code)
            if r.status_code == 429:
                assert 0 < int(r.headers["retry-after"]) <= 86400
        for i in range(6):
            r = post(served.base, report(f"b-{i:04}", "acme2.test", failures=20))
            statuses["acme2.test"].append(r.status_code)
        for i in range(3):
            r = post(served.base, report(f"m-{i:04}", "monitored.test", failures=20))
            statuses["monitored.test"].append(r.status_code)
        metrics = httpx.get(f"{served.base}/metrics", timeout=10).text
    assert statuses["acme.test"] == [201] * 5 + [429] * 3
    # The tenant's budget (8) is shared: 5 for acme.test leaves 3 for acme2.test.
    assert statuses["acme2.test"] == [201] * 3 + [429] * 3
    assert statuses["monitored.test"] == [201] * 3  # another domain is still accepted
    assert store.count_reports() == 11
    assert 'stspilot_intake_refused_total{reason="domain-cap"} 3' in metrics
    assert 'stspilot_intake_refused_total{reason="tenant-cap"} 3' in metrics


def test_quarantine_keeps_a_bounded_prefix_and_a_daily_budget(store_url: str, store: Store) -> None:
    seed(store)
    junk = [os.urandom(1024 * 1024), os.urandom(1024 * 1024)]
    env = {**OPEN, "STSPILOT_INTAKE_QUARANTINE_BYTES": str(QUARANTINE_KEEP_BYTES + 1000)}
    with serving(store_url, env) as served:
        first = post(served.base, junk[0])
        second = post(served.base, junk[1])
        metrics = httpx.get(f"{served.base}/metrics", timeout=10).text
    assert first.status_code == 400 and second.status_code == 400
    assert "not kept" in second.text
    [item] = store.list_quarantine()
    assert item.size == len(junk[0]) and item.kept == QUARANTINE_KEEP_BYTES and item.truncated
    assert item.sha256 == hashlib.sha256(junk[0]).hexdigest()
    assert store.quarantine_raw(item.id) == junk[0][:QUARANTINE_KEEP_BYTES]
    assert f"kept the first {QUARANTINE_KEEP_BYTES} of {len(junk[0])} bytes" in item.reason
    assert 'stspilot_intake_refused_total{reason="quarantine-cap"} 1' in metrics


@pytest.mark.parametrize("size", [10, QUARANTINE_KEEP_BYTES, QUARANTINE_KEEP_BYTES * 3])
def test_every_quarantine_path_is_bounded(store: Store, size: int) -> None:
    """The store bounds what any intake path (file, mail, IMAP, SMTP, HTTP) quarantines."""
    raw = os.urandom(size)
    result = store.quarantine(raw, origin="file:x", code="c", reason="r", received_at=NOW)
    item = store.get_quarantine(result.id)
    assert item is not None
    assert item.size == size and item.sha256 == hashlib.sha256(raw).hexdigest()
    assert item.kept == min(size, QUARANTINE_KEEP_BYTES)
    assert item.truncated == (size > QUARANTINE_KEEP_BYTES)
    assert ("kept the first" in item.reason) == item.truncated


@pytest.mark.parametrize(
    ("free", "total", "expected"),
    [
        (50 * 2**30, 100 * 2**30, None),  # half free
        (9 * 2**30, 100 * 2**30, "warning"),  # under 10 %
        (2 * 2**30, 100 * 2**30, "error"),  # under a quarter of the floor
        (1 * 2**30, 4 * 2**30, "warning"),  # small disk: under 2 GiB (at most half of it)
        (0, 0, None),  # unknown size: no alert
    ],
)
def test_disk_alert_before_the_disk_fills(free: int, total: int, expected: str | None) -> None:
    from stspilot.monitor.alerts import SERVICE, disk_alerts

    alerts = disk_alerts(free, total)
    assert [a.severity.label for a in alerts] == ([expected] if expected else [])
    assert all(a.domain == SERVICE and a.code == "service.disk.low" for a in alerts)
    assert all(a.lasting for a in alerts)


async def test_monitor_round_raises_the_disk_alert(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor raises service.disk.low when the store's disk is nearly full (a floor set
    above what this machine's disk has free), and says nothing when the floor is low."""
    import shutil

    from stspilot.check.run import CheckOptions
    from stspilot.monitor.loop import MonitorConfig, run_once

    monkeypatch.setenv("STSPILOT_DISK_PATH", "/")
    usage = shutil.disk_usage("/")
    quiet = MonitorConfig(disk_min_free_ratio=0.0, disk_min_free_bytes=0)
    assert (await run_once(store, options=CheckOptions(), now=NOW, config=quiet)).alerts == 0
    full = MonitorConfig(disk_min_free_ratio=min(1.0, usage.free / usage.total + 0.05))
    tally = await run_once(store, options=CheckOptions(), now=NOW, config=full)
    assert tally.alerts == 1
    [alert] = MonitorStore(store).open_alerts("(service)")
    assert alert["code"] == "service.disk.low"
