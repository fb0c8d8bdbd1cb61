"""Forged reports cannot steer the gate (issue 15, Medium): each stored report's authenticity
(DKIM-verified mail, an operator's file import, an unauthenticated HTTPS POST) is read with
the report counts, and the gate and the what-if judge with it: unauthenticated reports never
make a failing gate pass nor dilute another reporter's failures, and a reporter whose volume
jumps by orders of magnitude is flagged.

The forged report goes through ``stspilot serve`` (POST /tlsrpt), as an attacker would send it.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta

import httpx

from serve_process import serving
from stspilot.ingest.pipeline import prepare_unit
from stspilot.rollout.evidence import DailyTotal, FailureCount, LiveState, ReportWindow
from stspilot.rollout.gate import compute_what_if, evaluate_gate, volume_jumps
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.dashboard import report_window
from stspilot.store.hosting import HostedPolicies
from stspilot.tlsrpt.schema import DEFAULT_LIMITS

DOMAIN = "victim.test"
TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def report(org: str, rid: str, day: date, ok: int, failed: int) -> bytes:
    details = (
        [
            {
                "result-type": "certificate-expired",
                "receiving-mx-hostname": f"mx.{DOMAIN}",
                "failed-session-count": failed,
            }
        ]
        if failed
        else []
    )
    body = {
        "organization-name": org,
        "date-range": {
            "start-datetime": f"{day}T00:00:00Z",
            "end-datetime": f"{day}T23:59:59Z",
        },
        "contact-info": f"tlsrpt@{org}",
        "report-id": rid,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing", f"mx: mx.{DOMAIN}"],
                    "policy-domain": DOMAIN,
                    "mx-host": [f"mx.{DOMAIN}"],
                },
                "summary": {
                    "total-successful-session-count": ok,
                    "total-failure-session-count": failed,
                },
                "failure-details": details,
            }
        ],
    }
    return json.dumps(body).encode()


def seed(store: Store) -> None:
    tenant = Accounts(store).add_tenant("victims", now=TODAY)
    HostedPolicies(store).add(
        DOMAIN, tenant_id=tenant.id, mode="testing", mx=[f"mx.{DOMAIN}"], now=TODAY
    )


def import_file(store: Store, raw: bytes, name: str) -> None:
    """As ``stspilot ingest FILE`` does: an operator's import (origin: the file's path)."""
    unit = prepare_unit(raw, origin=f"/imports/{name}", received_at=TODAY, limits=DEFAULT_LIMITS)
    store.add_reports(unit.reports)


def live() -> LiveState:
    return LiveState(domain=DOMAIN, observed_at=TODAY, tlsrpt_rua=(f"mailto:tlsrpt@{DOMAIN}",))


def window(store: Store) -> ReportWindow:
    return report_window(store, DOMAIN, TODAY - timedelta(days=8), TODAY)


def test_a_forged_https_report_cannot_pass_the_gate(store_url: str, store: Store) -> None:
    """Only an HTTPS POST claims sessions: the volume and the reports-arrive criteria fail."""
    seed(store)
    yesterday = TODAY.date() - timedelta(days=1)
    forged = gzip.compress(report("Google Inc.", "forged-1", yesterday, 10**9, 0))
    with serving(store_url) as served:
        r = httpx.post(f"{served.base}/tlsrpt", content=forged, timeout=30)
    assert r.status_code == 201
    seen = window(store)
    assert [t.authenticated for t in seen.totals] == [False]
    gate = {c.name: c for c in evaluate_gate(live(), seen, days=7, min_sessions=50, now=TODAY)}
    assert not gate["report-volume"].passed
    assert "1,000,000,000 sessions in unauthenticated reports not counted" in (
        gate["report-volume"].evidence
    )
    assert not gate["tlsrpt"].passed and "only unauthenticated" in gate["tlsrpt"].evidence


def test_a_forged_report_does_not_dilute_real_failures(store_url: str, store: Store) -> None:
    """Mail.ru's imported reports say 5 % failed; a forged 10^9-session report from "Google
    Inc." neither dilutes that nor passes unnoticed."""
    seed(store)
    for back in range(1, 6):
        day = TODAY.date() - timedelta(days=back)
        import_file(store, report("Mail.ru", f"mailru-{back}", day, 950, 50), f"{back}.json")
        import_file(store, report("Yahoo", f"yahoo-{back}", day, 1000, 0), f"y{back}.json")
    before = compute_what_if(window(store), frozenset({f"mx.{DOMAIN}"}), 7)
    forged = gzip.compress(report("Google Inc.", "forged-2", TODAY.date(), 10**9, 0))
    with serving(store_url) as served:
        assert httpx.post(f"{served.base}/tlsrpt", content=forged, timeout=30).status_code == 201
    after = compute_what_if(window(store), frozenset({f"mx.{DOMAIN}"}), 7)
    assert after.sessions == before.sessions == 10_000
    assert after.failed == before.failed == 250
    assert after.unauthenticated_sessions == 10**9
    reporters = {r.organization: r for r in after.by_reporter}
    assert reporters["Mail.ru"].failure_rate == 0.05 and reporters["Mail.ru"].authenticated
    assert not reporters["Google Inc."].authenticated
    assert any(j.startswith("Google Inc.: 1,000,000,000 sessions") for j in after.volume_jumps)
    shown = {r.organization_name: r.authenticity for r in store.list_reports(DOMAIN)}
    assert shown == {"Google Inc.": "https", "Mail.ru": "operator", "Yahoo": "operator"}


def test_unauthenticated_failures_still_fail_the_gate() -> None:
    """A failure is a failure whoever reports it: the gate may fail on it (never pass)."""
    day = TODAY.date() - timedelta(days=1)
    seen = ReportWindow(
        totals=(DailyTotal(day, "x", 0, 3, authenticated=False),),
        failures=(FailureCount(day, "x", "certificate-expired", "", 3, authenticated=False),),
    )
    gate = {c.name: c for c in evaluate_gate(live(), seen, days=7, min_sessions=1, now=TODAY)}
    assert not gate["reports-clean"].passed


def test_volume_jump_of_a_known_reporter() -> None:
    days = [TODAY.date() - timedelta(days=n) for n in range(5)]
    totals = [DailyTotal(d, "Big", 1000, 0) for d in days[1:]] + [
        DailyTotal(days[0], "Big", 500_000, 0)
    ]
    assert volume_jumps(totals) == (f"Big: 500,000 sessions on {days[0]} (usually about 1,000)",)
    assert volume_jumps([*totals[:-1], DailyTotal(days[0], "Big", 50_000, 0)]) == ()
