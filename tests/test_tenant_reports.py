"""A report that covers two tenants' domains (issue 15, Low): each tenant sees only its own
policies' parts, in the report view and in the list's totals. Against ``stspilot serve``."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import httpx

from serve_process import serving
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies

NOW = datetime.now(UTC)


def policy(domain: str, ok: int, failed: int) -> dict[str, object]:
    return {
        "policy": {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: testing", f"mx: mx.{domain}"],
            "policy-domain": domain,
            "mx-host": [f"mx.{domain}"],
        },
        "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
        "failure-details": [
            {
                "result-type": "certificate-expired",
                "receiving-mx-hostname": f"mx.{domain}",
                "receiving-ip": "192.0.2.77",
                "additional-information": f"secret note of {domain}",
                "failed-session-count": failed,
            }
        ],
    }


def test_each_tenant_sees_only_its_own_parts(store_url: str, store: Store) -> None:
    accounts = Accounts(store)
    hosting = HostedPolicies(store)
    tokens = {}
    for tenant, user, domain in (("acme", "alice", "acme.test"), ("globex", "gina", "globex.test")):
        t = accounts.add_tenant(tenant, now=NOW)
        u = accounts.add_user(user, "x" * 16, tenant=tenant, now=NOW, password_n=2**10)
        tokens[user], _ = accounts.create_token(u.id, "t", now=NOW)
        hosting.add(domain, tenant_id=t.id, mode="testing", mx=[f"mx.{domain}"], now=NOW)
    day = (NOW - timedelta(days=1)).date()
    body = {
        "organization-name": "Big Sender",
        "date-range": {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"},
        "contact-info": "tlsrpt@big.example",
        "report-id": "two-tenants-1",
        "policies": [policy("acme.test", 100, 1), policy("globex.test", 5000, 7)],
    }
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": "app.test"}) as served:
        posted = httpx.post(
            f"{served.base}/tlsrpt", content=gzip.compress(json.dumps(body).encode()), timeout=30
        )
        assert posted.status_code == 201

        def get(user: str, path: str) -> httpx.Response:
            auth = {"authorization": f"Bearer {tokens[user]}", "host": "app.test"}
            return httpx.get(f"{served.base}{path}", headers=auth, timeout=30)

        listed = get("alice", "/api/domains/acme.test/reports").json()
        [row] = listed
        shown = get("alice", f"/api/reports/{row['id']}")
        other = get("gina", "/api/domains/globex.test/reports").json()
    assert row["policy_domains"] == ["acme.test"]
    assert (row["successful_sessions"], row["failed_sessions"]) == (100, 1)
    assert (other[0]["successful_sessions"], other[0]["failed_sessions"]) == (5000, 7)
    assert shown.status_code == 200
    assert "globex" not in shown.text  # neither its MX hosts nor its notes
    assert [p["policy_domain"] for p in shown.json()["report"]["policies"]] == ["acme.test"]


def test_reports_belong_to_the_hosting_period(store_url: str, store: Store) -> None:
    """A tenant that hosts a name sees only the reports of its hosting period, not those of
    an earlier tenant or of before anyone hosted it."""
    from stspilot.ingest.pipeline import prepare_unit
    from stspilot.tlsrpt.schema import DEFAULT_LIMITS

    accounts = Accounts(store)
    t = accounts.add_tenant("acme", now=NOW)
    u = accounts.add_user("alice", "x" * 16, tenant="acme", now=NOW, password_n=2**10)
    token, _ = accounts.create_token(u.id, "t", now=NOW)
    began = NOW - timedelta(days=5)
    HostedPolicies(store).add(
        "acme.test", tenant_id=t.id, mode="testing", mx=["mx.acme.test"], now=began
    )
    pks = {}
    for rid, back in (("before", 8), ("during", 2)):
        day = (NOW - timedelta(days=back)).date()
        body = {
            "organization-name": "Big Sender",
            "date-range": {
                "start-datetime": f"{day}T00:00:00Z",
                "end-datetime": f"{day}T23:59:59Z",
            },
            "contact-info": "tlsrpt@big.example",
            "report-id": rid,
            "policies": [policy("acme.test", 100, 1)],
        }
        unit = prepare_unit(
            json.dumps(body).encode(),
            origin=f"/imports/{rid}.json",
            received_at=NOW - timedelta(days=back - 1),
            limits=DEFAULT_LIMITS,
        )
        [added] = store.add_reports(unit.reports)
        pks[rid] = added.report_pk
    auth = {"authorization": f"Bearer {token}", "host": "app.test"}
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": "app.test"}) as served:
        listed = httpx.get(
            f"{served.base}/api/domains/acme.test/reports?days=30", headers=auth, timeout=30
        ).json()
        before = httpx.get(f"{served.base}/api/reports/{pks['before']}", headers=auth, timeout=30)
        during = httpx.get(f"{served.base}/api/reports/{pks['during']}", headers=auth, timeout=30)
        summary = httpx.get(
            f"{served.base}/api/domains/acme.test/summary?days=30", headers=auth, timeout=30
        ).json()
    assert [r["report_id"] for r in listed] == ["during"]
    assert before.status_code == 404 and during.status_code == 200
    assert summary["reports"] == 1  # the summary starts at the hosting period too
