"""Reports belong to a tenant only from the time it began hosting the domain (the hosting
period, ``received_since``): the dashboard applies it on every page as the JSON API does: the
inventory's figures, sparkline, gate and CSV export, the domain page (charts, failure tables,
per-MX and per-reporter tables, the gate and the what-if), the reports page of one domain
and of the whole tenant. Administrators read every report. In-process, then against
``stspilot serve``."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dashboard_seed import save_check
from serve_process import serving
from stspilot.ingest.pipeline import ingest_raw
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.web import pages
from stspilot.web.app import create_app
from web_support import FAST_SCRYPT, PASSWORD, World, client_for

pytestmark = pytest.mark.db

DOMAIN = "late.test"
BEFORE_ORG, DURING_ORG = "Before Hosting Org", "During Hosting Org"
BEFORE_MX = f"mx-before.{DOMAIN}"
BEFORE_TYPE = "starttls-not-supported"  # only the earlier reports name it
BEFORE = (7_000, 300)  # sessions (successful, failed) per earlier report
DURING = (500, 5)


def report(org: str, rid: str, day: datetime, ok: int, failed: int, mx: str, rtype: str) -> bytes:
    d = day.date()
    body = {
        "organization-name": org,
        "date-range": {"start-datetime": f"{d}T00:00:00Z", "end-datetime": f"{d}T23:59:59Z"},
        "contact-info": f"tlsrpt@{org.split()[0].lower()}.example",
        "report-id": rid,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing", f"mx: mx1.{DOMAIN}"],
                    "policy-domain": DOMAIN,
                    "mx-host": [f"mx1.{DOMAIN}"],
                },
                "summary": {
                    "total-successful-session-count": ok,
                    "total-failure-session-count": failed,
                },
                "failure-details": [
                    {
                        "result-type": rtype,
                        "receiving-mx-hostname": mx,
                        "failed-session-count": failed,
                    }
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def seed_late_tenant(store: Store, now: datetime) -> str:
    """Tenant "late" (user lena) began hosting late.test 3 days before ``now``; reports of
    the name were received before (from an earlier, unhosted time) and since. Returns
    lena's bearer token."""
    accounts = Accounts(store)
    began = now - timedelta(days=3)
    tenant = accounts.add_tenant("late", now=began)
    user = accounts.add_user("lena", PASSWORD, tenant="late", now=began, password_n=FAST_SCRYPT)
    token, _ = accounts.create_token(user.id, "tests", now=began)
    for back in range(10, 4, -1):  # covered days now-10 .. now-5, each received a day later
        day = now - timedelta(days=back)
        raw = report(BEFORE_ORG, f"before-{back}", day, *BEFORE, BEFORE_MX, BEFORE_TYPE)
        ingest_raw(
            store, raw, origin=f"/imports/before-{back}.json", received_at=day + timedelta(days=1)
        )
    HostedPolicies(store).add(
        DOMAIN, tenant_id=tenant.id, mode="testing", mx=[f"mx1.{DOMAIN}"], now=began
    )
    for back in (2, 1):
        day = now - timedelta(days=back)
        raw = report(
            DURING_ORG, f"during-{back}", day, *DURING, f"mx1.{DOMAIN}", "certificate-expired"
        )
        ingest_raw(
            store, raw, origin=f"/imports/during-{back}.json", received_at=day + timedelta(hours=13)
        )
    save_check(store, DOMAIN, now - timedelta(hours=1), mx=(f"mx1.{DOMAIN}",))
    return token


def inventory_figures(html: str) -> tuple[int, int]:
    """(sessions, failed) of late.test's inventory row, as its cells show them (1,234)."""
    row = html[html.index(f'<a href="/domains/{DOMAIN}">') :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r'<td class="n[^"]*">([^<]*)</td>', row)
    return int(cells[0].replace(",", "")), int(cells[1].replace(",", ""))


def sparkline_bars(html: str) -> int:
    row = html[html.index(f'<a href="/domains/{DOMAIN}">') :]
    row = row[: row.index("</tr>")]
    return row.count('fill="#afb8c1"')


def during_sessions() -> int:
    return 2 * (DURING[0] + DURING[1])


def assert_tenant_view(pages_html: dict[str, str], csv_text: str) -> None:
    """What lena sees: nothing of the reports received before her hosting began."""
    for path, html in pages_html.items():
        for earlier in (BEFORE_ORG, BEFORE_MX, BEFORE_TYPE, "before-"):
            assert earlier not in html, (path, earlier)
    assert inventory_figures(pages_html["/"]) == (during_sessions(), 2 * DURING[1])
    assert sparkline_bars(pages_html["/"]) == 2  # the two days of her period
    domain_page = pages_html[f"/domains/{DOMAIN}"]
    assert DURING_ORG in domain_page and f"mx1.{DOMAIN}" in domain_page
    # The gate's volume and the what-if count only her period's sessions.
    assert f"{during_sessions():,} sessions from 1 organisation(s)" in domain_page
    assert "during-1" in pages_html[f"/reports?domain={DOMAIN}"]
    assert "during-2" in pages_html["/reports"]
    [row] = [r for r in csv.DictReader(io.StringIO(csv_text)) if r["Domain"] == DOMAIN]
    assert (int(row["Sessions"]), int(row["Failed"])) == (during_sessions(), 2 * DURING[1])


TENANT_PATHS = ["/", f"/domains/{DOMAIN}", f"/reports?domain={DOMAIN}", "/reports"]


async def read_pages(client: httpx.AsyncClient, auth: dict[str, str]) -> tuple[dict[str, str], str]:
    got: dict[str, str] = {}
    for path in TENANT_PATHS:
        response = await client.get(path, headers=auth)
        assert response.status_code == 200, (path, response.text[:300])
        got[path] = response.text
    exported = await client.get("/domains.csv", headers=auth)
    assert exported.status_code == 200
    return got, exported.text


@pytest.fixture
def late_world(world: World) -> tuple[World, str]:
    return world, seed_late_tenant(world.store, world.clock())


async def test_a_later_tenant_sees_only_its_hosting_period(late_world: tuple[World, str]) -> None:
    world, token = late_world
    app = create_app(world.settings, world.store, routers=[pages.router], clock=world.clock)
    async with client_for(app) as client:
        seen, exported = await read_pages(client, {"authorization": f"Bearer {token}"})
        assert_tenant_view(seen, exported)
        # An administrator reads every report of the name (the earlier ones are there).
        admin, admin_csv = await read_pages(client, world.auth("root"))
    assert BEFORE_ORG in admin[f"/domains/{DOMAIN}"]
    assert "before-9" in admin[f"/reports?domain={DOMAIN}"]
    assert inventory_figures(admin["/"])[0] == 6 * sum(BEFORE) + during_sessions()
    assert BEFORE_ORG not in admin_csv  # the export has figures, not reporters


async def test_the_reports_json_behind_a_listed_report_agrees(
    late_world: tuple[World, str],
) -> None:
    """The reports page and the API list the same reports for the tenant."""
    world, token = late_world
    app = create_app(world.settings, world.store, clock=world.clock)
    auth = {"authorization": f"Bearer {token}"}
    async with client_for(app) as client:
        page = (await client.get(f"/reports?domain={DOMAIN}", headers=auth)).text
        api = (await client.get(f"/api/domains/{DOMAIN}/reports", headers=auth)).json()
    listed = re.findall(r"during-\d", page)
    assert sorted(set(listed)) == sorted(r["report_id"] for r in api) == ["during-1", "during-2"]
    assert {r["authenticity"] for r in api} == {"operator"}


def test_stspilot_serve_applies_the_hosting_period(store_url: str, store: Store) -> None:
    """The same, from a real ``stspilot serve`` process over TCP."""
    now = datetime.now(UTC)
    token = seed_late_tenant(store, now)
    auth = {"authorization": f"Bearer {token}", "host": "app.test"}
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": "app.test"}) as served:
        seen: dict[str, str] = {}
        for path in TENANT_PATHS:
            response = httpx.get(f"{served.base}{path}", headers=auth, timeout=30)
            assert response.status_code == 200, (path, response.status_code)
            seen[path] = response.text
        exported = httpx.get(f"{served.base}/domains.csv", headers=auth, timeout=30)
    assert exported.status_code == 200
    assert_tenant_view(seen, exported.text)
