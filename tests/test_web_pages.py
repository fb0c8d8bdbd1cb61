"""Dashboard pages in-process (httpx over ASGI): login required, tenant isolation, the domain
page's charts and tables, adding a domain with CSRF, pagination, reports and quarantine."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from dashboard_seed import FINDING, ingest_report, ingest_sample_reports, save_check
from stspilot.lab.sample_reports import generate_reports
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.tlsrpt.summary import DailyTotal, FailureCount
from stspilot.web import charts, pages
from stspilot.web.app import create_app
from web_support import World, client_for, form_token, login

pytestmark = pytest.mark.db

PAGES = ["/", "/domains/example.com", "/domains/new", "/reports", "/quarantine", "/docs"]


@pytest.fixture
def seeded(world: World) -> World:
    now = world.clock()
    ingest_sample_reports(world.store, ["example.com", "globex.test"], days=20, now=now)
    save_check(world.store, "example.com", now - timedelta(hours=2), policy_id="old")
    save_check(  # its first certificate expires in 8 days and 23 hours
        world.store,
        "example.com",
        now - timedelta(hours=1),
        mx=("mx1.example.com", "mx2.example.com"),
        cert_days=9,
        findings=[FINDING],
    )
    save_check(world.store, "globex.test", now, mode="enforce", mx=("mx1.globex.test",))
    return world


@pytest.fixture
def dash_app(seeded: World) -> Any:
    return create_app(seeded.settings, seeded.store, routers=[pages.router], clock=seeded.clock)


@pytest.fixture
async def dash(dash_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(dash_app) as c:
        yield c


async def as_user(client: httpx.AsyncClient, name: str) -> httpx.AsyncClient:
    response = await login(client, name)
    assert response.status_code == 303, response.text
    return client


def domains_listed(html: str) -> list[str]:
    return re.findall(r'<td[^>]*><a href="/domains/([^"#]+)">', html)


# --- access ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
async def test_pages_redirect_to_login_without_a_session(
    dash: httpx.AsyncClient, path: str
) -> None:
    response = await dash.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


async def test_the_app_factory_mounts_the_dashboard(seeded: World) -> None:
    app = create_app(seeded.settings, seeded.store, clock=seeded.clock)  # default routers
    async with client_for(app) as client:
        await as_user(client, "alice")
        response = await client.get("/")
    assert response.status_code == 200
    assert "example.com" in domains_listed(response.text)


@pytest.mark.parametrize(
    ("user", "sees", "hidden"),
    [
        ("alice", ["example.com"], ["globex.test"]),
        ("gina", ["globex.test"], ["example.com"]),
        ("root", ["example.com", "globex.test"], []),
    ],
)
async def test_inventory_shows_only_the_tenants_domains(
    dash: httpx.AsyncClient, user: str, sees: list[str], hidden: list[str]
) -> None:
    await as_user(dash, user)
    response = await dash.get("/")
    assert response.status_code == 200
    listed = domains_listed(response.text)
    assert listed == sees
    for name in hidden:
        assert name not in response.text
        page = await dash.get(f"/domains/{name}")
        assert page.status_code == 404
        assert "not one of your domains" in page.text
        reports = await dash.get("/reports", params={"domain": name})
        assert reports.status_code == 404


async def test_bearer_tokens_open_pages_too(dash: httpx.AsyncClient, seeded: World) -> None:
    response = await dash.get("/", headers=seeded.auth("gina"))
    assert response.status_code == 200
    assert domains_listed(response.text) == ["globex.test"]


# --- inventory ---------------------------------------------------------------------------------


async def test_inventory_row_has_stage_gate_check_findings_cert_and_volume(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "alice")
    html = (await dash.get("/")).text
    row = html.split('href="/domains/example.com"', 1)[1].split("</tr>", 1)[0]
    window = seeded.store.daily_totals(
        "example.com", since=seeded.clock() - timedelta(days=15), until=seeded.clock()
    )
    sessions = sum(t.successful + t.failed for t in window)
    assert sessions > 0
    assert f"{sessions:,}" in row
    assert re.search(r'class="stage stage-(testing|fixing)"', row)
    assert re.search(r"(ready|\d+ failing)", row)
    assert "2026-11-22 11:00 UTC" in row  # the latest of the two checks
    assert "sev-warning" in row
    assert ">8 d<" in row and 'title="mx1.example.com"' in row


async def test_inventory_counts_open_alerts_with_the_worst_severity(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    record_alerts(seeded, "example.com")  # a warning and an error
    await as_user(dash, "alice")
    html = (await dash.get("/")).text
    row = html.split('href="/domains/example.com"', 1)[1].split("</tr>", 1)[0]
    cell = row.split('class="alerts"', 1)[1].split("</td>", 1)[0]
    assert '<a href="/domains/example.com#alerts">2</a>' in cell and "sev-error" in cell
    from stspilot.store.monitor import MonitorStore

    counts = MonitorStore(seeded.store).open_alert_counts(["example.com", "globex.test"])
    assert counts == {"example.com": (2, "error")}


async def test_inventory_paginates_and_filters(dash: httpx.AsyncClient, seeded: World) -> None:
    acme = Accounts(seeded.store).tenant("acme")
    hosting = HostedPolicies(seeded.store)
    for i in range(120):
        hosting.add(
            f"d{i:03d}.example.net",
            tenant_id=acme.id,
            mode="testing",
            mx=["mx.example.net"],
            now=seeded.clock(),
        )
    await as_user(dash, "alice")
    first = await dash.get("/")
    assert len(domains_listed(first.text)) == 50
    assert "page 1 of 3" in first.text
    last = await dash.get("/", params={"page": 3})
    assert len(domains_listed(last.text)) == 121 - 100
    assert domains_listed(last.text)[-1] == "example.com"
    everything = []
    for page in (1, 2, 3):
        everything += domains_listed((await dash.get("/", params={"page": page})).text)
    assert everything == sorted(everything) and len(set(everything)) == 121
    found = await dash.get("/", params={"q": "d11"})
    assert domains_listed(found.text) == [f"d{i}.example.net" for i in range(110, 120)]
    wildcard = await dash.get("/", params={"q": "%"})
    assert domains_listed(wildcard.text) == []
    assert (await dash.get("/", params={"page": 0})).status_code == 422


# --- one domain --------------------------------------------------------------------------------


async def test_domain_page_shows_charts_tables_gate_and_history(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "alice")
    response = await dash.get("/domains/example.com", params={"days": 30})
    assert response.status_code == 200
    html = response.text
    rate = html.split('id="chart-rate"', 1)[1].split("</figure>", 1)[0]
    assert rate.count("<svg") == 1 and "<script" not in rate
    assert "failure rate (%)" in rate and "sessions (right axis)" in rate
    since = seeded.clock() - timedelta(days=29)
    failures = seeded.store.failures_by_result_type(
        "example.com", since=since, until=seeded.clock()
    )
    assert failures, "the sample reports carry failures"
    for row in failures:
        assert f"<code>{row.key}</code>" in html  # every result type, with its advice
    assert 'id="chart-types"' in html
    by_mx = seeded.store.failures_by_mx("example.com", since=since, until=seeded.clock())
    assert any(r.key and f"<code>{r.key}</code>" in html for r in by_mx)
    assert "Google Inc." in html  # by sending organisation
    hosted = HostedPolicies(seeded.store).get("example.com")
    assert hosted is not None and f"<code>{hosted.policy_id}</code>" in html  # history + id
    assert "v=STSv1; id=" in html  # what to publish
    assert "The enforce gate" in html and "What if it had been enforce?" in html
    assert re.search(r"<strong>[\d,]+</strong> of [\d,]+ sessions", html)
    assert FINDING["fix"] in html and FINDING["title"] in html


def record_alerts(world: World, domain: str) -> None:
    """Two open alerts of ``domain`` as the monitor leaves them: one delivered, one not."""
    from stspilot.findings import Severity
    from stspilot.monitor.alerts import Alert
    from stspilot.store.monitor import MonitorStore, Outgoing

    alerts = [
        Alert(f"{domain}|cert.mx|mx1", Severity.WARNING, domain, "cert.mx",
              f"{domain}: the certificate of MX mx1.{domain} expires in 9 day(s).", True),
        Alert(f"{domain}|tlsrpt.failures", Severity.ERROR, domain, "tlsrpt.failures",
              f"{domain}: TLS-RPT reports for yesterday: 3 of 103 sessions failed <b>", True),
    ]  # fmt: skip
    sent = [Outgoing(alerts[1].key, domain, "tlsrpt.failures", "error", alerts[1].message)]
    MonitorStore(world.store).record_alerts(domain, alerts, now=world.clock(), sent=sent)


async def test_domain_page_shows_open_alerts_errors_first(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    record_alerts(seeded, "example.com")
    record_alerts(seeded, "globex.test")  # another tenant's: not on alice's page
    await as_user(dash, "alice")
    html = (await dash.get("/domains/example.com")).text
    section = html.split('id="alerts"', 1)[1].split("</section>", 1)[0]
    assert section.index("tlsrpt.failures") < section.index("cert.mx")  # errors first
    assert "3 of 103 sessions failed &lt;b&gt;" in section  # escaped
    assert "last sent" in section and "not delivered yet" in section
    assert "globex" not in section
    assert 'id="alerts"' not in (await dash.get("/domains/globex.test")).text  # not alice's


@pytest.mark.parametrize(("days", "unit"), [(30, "day"), (90, "day"), (365, "week")])
async def test_domain_page_chart_is_weekly_past_ninety_days(
    dash: httpx.AsyncClient, days: int, unit: str
) -> None:
    await as_user(dash, "alice")
    response = await dash.get("/domains/example.com", params={"days": days})
    assert response.status_code == 200
    assert f"Failure rate per {unit}, last {days} days" in response.text


async def test_domain_page_without_check_or_reports(dash: httpx.AsyncClient, seeded: World) -> None:
    acme = Accounts(seeded.store).tenant("acme")
    HostedPolicies(seeded.store).add(
        "quiet.example",
        tenant_id=acme.id,
        mode="testing",
        mx=["mx.quiet.example"],
        now=seeded.clock(),
    )
    await as_user(dash, "alice")
    response = await dash.get("/domains/quiet.example")
    assert response.status_code == 200
    assert "No reports in this window" in response.text
    assert "No stored check" in response.text


async def test_admin_opens_an_unhosted_domain_with_data_only(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    save_check(seeded.store, "unhosted.example", seeded.clock())
    await as_user(dash, "root")
    assert (await dash.get("/domains/unhosted.example")).status_code == 200
    assert (await dash.get("/domains/nothing.example")).status_code == 404


async def test_report_labels_are_escaped(dash: httpx.AsyncClient, seeded: World) -> None:
    report = generate_reports(
        1, seed=3, domains=["example.com"], start=seeded.clock() - timedelta(days=2)
    )[0]
    report["organization-name"] = "<script>alert(1)</script>Evil"
    report["policies"][0]["failure-details"] = [
        {"result-type": "<img src=x onerror=alert(2)>", "failed-session-count": 5}
    ]
    report["policies"][0]["summary"]["total-failure-session-count"] = 5
    ingest_report(seeded.store, report, now=seeded.clock())
    await as_user(dash, "alice")
    html = (await dash.get("/domains/example.com")).text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;Evil" in html
    reports = (await dash.get("/reports", params={"domain": "example.com"})).text
    assert "<script>alert" not in reports


async def test_malformed_names_are_not_found_or_shown_not_errors(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    report = generate_reports(
        1, seed=4, domains=["example.com"], start=seeded.clock() - timedelta(days=1)
    )[0]
    bad_mx = "x" * 70 + ".example.com"  # a label longer than 63: not a valid IDNA name
    report["policies"][0]["failure-details"] = [
        {"result-type": "certificate-expired", "receiving-mx-hostname": bad_mx,
         "failed-session-count": 3}
    ]  # fmt: skip
    ingest_report(seeded.store, report, now=seeded.clock())
    await as_user(dash, "alice")
    assert (await dash.get("/")).status_code == 200
    page = await dash.get("/domains/example.com")
    assert page.status_code == 200 and bad_mx in page.text
    assert (await dash.get("/domains/" + "a" * 70 + ".example")).status_code == 404
    assert (await dash.get("/reports", params={"domain": "a" * 70 + ".x"})).status_code == 404


# --- adding a domain ---------------------------------------------------------------------------


async def test_add_domain_needs_the_csrf_token(dash: httpx.AsyncClient, seeded: World) -> None:
    await as_user(dash, "alice")
    form = {"domain": "new.example", "mode": "testing", "mx": "mx1.new.example"}
    refused = await dash.post("/domains/new", data=form)
    assert refused.status_code == 403
    forged = await dash.post("/domains/new", data={**form, "csrf_token": "x.y"})
    assert forged.status_code == 403
    assert HostedPolicies(seeded.store).get("new.example") is None
    page = await dash.get("/domains/new")
    done = await dash.post("/domains/new", data={**form, "csrf_token": form_token(page.text)})
    assert done.status_code == 303
    assert done.headers["location"] == "/domains/new.example"
    hosted = HostedPolicies(seeded.store).get("new.example")
    assert hosted is not None and hosted.tenant == "acme" and hosted.mx == ("mx1.new.example",)
    shown = await dash.get("/domains/new.example")
    assert shown.status_code == 200 and hosted.policy_id in shown.text


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"domain": "not a domain", "mx": "mx.example"}, 400, "not a domain name"),
        ({"domain": "x.example", "mx": ""}, 400, "at least one mx pattern"),
        ({"domain": "x.example", "mx": "mx.x.example", "max_age": "soon"}, 400, "max_age"),
        ({"domain": "example.com", "mx": "mx1.example.com"}, 409, "hosted already"),
        ({"domain": "x.example", "mx": "mx.x.example", "tenant": "globex"}, 409, "administrators"),
        ({"domain": "x.example", "mx": "mx.x.example", "mode": "bogus"}, 400, "mode"),
    ],
)
async def test_add_domain_refuses_bad_input_with_the_form_again(
    dash: httpx.AsyncClient, form: dict[str, str], status: int, message: str
) -> None:
    await as_user(dash, "alice")
    token = form_token((await dash.get("/domains/new")).text)
    response = await dash.post("/domains/new", data={**form, "csrf_token": token})
    assert response.status_code == status
    assert message in response.text
    assert 'id="add-domain"' in response.text


async def test_admin_adds_a_domain_for_another_tenant(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "root")
    token = form_token((await dash.get("/domains/new")).text)
    form = {"domain": "g2.test", "mx": "mx.g2.test", "tenant": "globex", "csrf_token": token}
    assert (await dash.post("/domains/new", data=form)).status_code == 303
    hosted = HostedPolicies(seeded.store).get("g2.test")
    assert hosted is not None and hosted.tenant == "globex"


# --- reports and quarantine --------------------------------------------------------------------


async def test_reports_page_is_tenant_scoped_and_paginated(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "alice")
    first = await dash.get("/reports", params={"days": 365})
    assert first.status_code == 200
    assert first.text.count('<a href="/api/reports/') == pages.PER_PAGE
    assert 'rel="next"' in first.text
    assert "globex.test" not in first.text
    listed = [r.pk for r in seeded.store.list_reports("example.com", limit=10_000)]
    seen: list[int] = []
    for page in range(1, 10):
        html = (await dash.get("/reports", params={"days": 365, "page": page})).text
        seen += [int(pk) for pk in re.findall(r'href="/api/reports/(\d+)"', html)]
        if 'rel="next"' not in html:
            break
    assert sorted(seen) == sorted(listed)


@pytest.mark.parametrize(("days", "limit", "offset"), [(365, 500, 0), (365, 7, 3), (5, 50, 0)])
def test_tenant_reports_walk_lists_what_the_per_domain_path_lists(
    seeded: World, days: int, limit: int, offset: int
) -> None:
    """Large tenants walk ``reports`` newest first, small ones go domain by domain: same rows."""
    store = seeded.store
    accounts = Accounts(seeded.store)
    since = seeded.clock() - timedelta(days=days)
    for tenant in accounts.list_tenants():
        walked, by_domain = (
            store.list_reports(
                tenant_id=tenant.id, since=since, limit=limit, offset=offset, walk_after=n
            )
            for n in (0, 10_000)
        )
        assert walked == by_domain
        full = store.list_reports(tenant_id=tenant.id, since=since, limit=500, walk_after=0)
        names = {h.domain for h in HostedPolicies(seeded.store).list_domains(tenant.id)}
        assert all(set(r.policy_domains) & names for r in full)
        if names & {"example.com", "globex.test"}:
            assert full, tenant.name  # the seeded reports are listed, not an empty answer


async def test_quarantine_is_for_admins(dash: httpx.AsyncClient, seeded: World) -> None:
    from datetime import UTC, datetime

    seeded.store.quarantine(
        b"{not json",
        origin="test:bad",
        code="report.json.invalid",
        reason="Expecting property name",
        received_at=datetime.now(UTC),
    )
    await as_user(dash, "alice")
    refused = await dash.get("/quarantine")
    assert refused.status_code == 403 and "report.json.invalid" not in refused.text
    dash.cookies.clear()
    await as_user(dash, "root")
    shown = await dash.get("/quarantine")
    assert shown.status_code == 200 and "report.json.invalid" in shown.text


# --- charts ------------------------------------------------------------------------------------


def test_daily_series_fills_missing_days_and_sums_domains() -> None:
    from datetime import date

    d = date(2026, 11, 1)
    rows = [
        DailyTotal("a.example", d, 1, 10, 1),
        DailyTotal("b.example", d, 1, 5, 0),
        DailyTotal("a.example", d + timedelta(days=2), 1, 7, 3),
        DailyTotal("a.example", d + timedelta(days=9), 1, 100, 100),  # outside
    ]
    series = charts.daily_series(rows, first=d, last=d + timedelta(days=3))
    assert series.days == tuple(d + timedelta(days=i) for i in range(4))
    assert series.successful == (15, 0, 7, 0)
    assert series.failed == (1, 0, 3, 0)
    assert (series.sessions, series.total_failed) == (26, 4)


def test_breakdown_groups_by_key_largest_first() -> None:
    rows = [
        FailureCount("a", "mx1", "certificate-expired", 5),
        FailureCount("a", "mx2", "starttls-not-supported", 9),
        FailureCount("a", "mx1", "validation-failure", 7),
    ]
    out = charts.breakdown(rows)
    assert [(b.key, b.sessions) for b in out] == [("mx1", 12), ("mx2", 9)]
    assert out[0].result_types == (("validation-failure", 7), ("certificate-expired", 5))


@pytest.mark.parametrize(
    ("n_days", "bars", "first_bar_days"),
    [(7, 1, 7), (8, 2, 1), (91, 13, 7), (365, 53, 1), (366, 53, 2)],
)
def test_weekly_bars_end_on_the_last_day_and_keep_every_session(
    n_days: int, bars: int, first_bar_days: int
) -> None:
    from datetime import date

    last = date(2026, 11, 21)
    first = last - timedelta(days=n_days - 1)
    rows = [DailyTotal("a", first + timedelta(days=i), "g", i + 1, i % 3) for i in range(n_days)]
    daily = charts.daily_series(rows, first=first, last=last)
    week = charts.weekly(daily)
    assert (len(week.days), week.step) == (bars, 7)
    assert (week.sessions, week.total_failed) == (daily.sessions, daily.total_failed)
    assert week.days[0] == first and week.days[-1] == last - timedelta(days=6)
    assert week.successful[0] == sum(range(1, first_bar_days + 1))
    assert week.successful[-1] == sum(range(n_days - 6, n_days + 1))
    assert charts.weekly(week) == week


@pytest.mark.parametrize(("days", "bars"), [(30, 30), (90, 90), (91, 13), (365, 53)])
def test_sessions_chart_draws_weeks_past_ninety_days(days: int, bars: int) -> None:
    from datetime import date

    last = date(2026, 11, 21)
    first = last - timedelta(days=days - 1)
    rows = [DailyTotal("a", first + timedelta(days=i), "g", 10, 1) for i in range(days)]
    svg = charts.sessions_chart(charts.daily_series(rows, first=first, last=last))
    assert ("per week" in svg) is (days > charts.WEEKLY_AFTER)
    assert svg.count('class="rect reactive tooltip-trigger"') == 2 * bars


def test_top_with_other_sums_the_tail() -> None:
    pairs = [(f"t{i}", i) for i in range(1, 21)]
    shown = charts.top_with_other(pairs, limit=5)
    assert shown[:4] == [("t20", 20), ("t19", 19), ("t18", 18), ("t17", 17)]
    assert shown[4] == ("other", sum(range(1, 17)))


def test_chart_svg_is_self_contained() -> None:
    from datetime import date

    series = charts.daily_series(
        [DailyTotal("a", date(2026, 1, 2), 1, 10, 2)], first=date(2026, 1, 1), last=date(2026, 1, 3)
    )
    for svg in (
        charts.sessions_chart(series),
        charts.result_type_chart([("certificate-expired", 3), ("</svg><script>x", 1)]),
    ):
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert "<script" not in svg and "<!--" not in svg
        assert re.findall(r"https?://[^\"' )]+", svg) == ["http://www.w3.org/2000/svg"] * len(
            re.findall(r"https?://[^\"' )]+", svg)
        )


async def test_domain_page_says_whether_senders_see_the_hosted_policy(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "alice")
    html = (await dash.get("/domains/example.com")).text
    hosted = HostedPolicies(seeded.store).get("example.com")
    assert hosted is not None
    live = html.split('id="live"', 1)[1].split("</section>", 1)[0]
    # The stored check saw id 20261101T000000 and the hosted policy's mx lines differ.
    assert (
        f"The live TXT id is 20261101T000000, the hosted policy&#39;s id is {hosted.policy_id}"
        in live
    )
    assert "note-bad" in live and f"TXT &#34;{hosted.sts_txt_value}&#34;" in live
    # The jump bar lists the most urgent sections first: the mismatch before the chart.
    jump = html.split('class="jump"', 1)[1].split("</nav>", 1)[0]
    order = re.findall(r'href="#(\w+)"', jump)
    assert order.index("live") < order.index("traffic") and order[0] in ("live", "failures")
    assert html.index('<section id="live">') < html.index('<section id="traffic">')


async def test_live_policy_equal_to_the_hosted_one_is_said_plainly(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    hosted = HostedPolicies(seeded.store).get("example.com")
    assert hosted is not None
    save_check(
        seeded.store, "example.com", seeded.clock(), mode=hosted.mode,
        policy_id=hosted.policy_id, mx=hosted.mx,
    )  # fmt: skip
    await as_user(dash, "alice")
    html = (await dash.get("/domains/example.com")).text
    live = html.split('id="live"', 1)[1].split("</section>", 1)[0]
    assert hosted.max_age == 86400  # as the stored check's policy says
    assert "DNS points here" in live and "note-bad" not in live
    assert f"The live TXT id equals the hosted one ({hosted.policy_id})" in live


async def test_gate_on_a_domain_already_at_enforce_reads_as_enforce(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "gina")
    html = (await dash.get("/domains/globex.test")).text
    assert 'id="stage-help"' in html
    rollout = html.split('id="rollout"', 1)[1].split("</section>", 1)[0]
    assert "Already enforcing" in rollout and "Not ready for enforce" not in rollout
    assert "Refused under enforce" in rollout


async def test_domain_page_lists_the_last_report_of_each_reporter(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    await as_user(dash, "alice")
    html = (await dash.get("/domains/example.com")).text
    table = html.split('id="cadence"', 1)[1].split("</table>", 1)[0]
    seen = seeded.store.sender_totals("example.com")
    assert seen and all(t.organization_name in table for t in seen)
    assert "on time" in table or "not regular" in table
    reporters = html.split('id="by-reporter"', 1)[1].split("</table>", 1)[0]
    assert "Rate" in reporters and " %" in reporters


async def test_inventory_headline_and_filters_by_stage_and_severity(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    acme = Accounts(seeded.store).tenant("acme")
    hosting = HostedPolicies(seeded.store)
    for name in ("broken.example", "unchecked.example"):
        hosting.add(name, tenant_id=acme.id, mode="testing", mx=["mx.x.example"],
                    now=seeded.clock())  # fmt: skip
    error = {**FINDING, "severity": "error", "code": "sts.policy.redirect"}
    save_check(seeded.store, "broken.example", seeded.clock(), mode="enforce", findings=[error])
    record_alerts(seeded, "example.com")  # one cert.mx warning, one tlsrpt error
    await as_user(dash, "alice")
    html = (await dash.get("/")).text
    head = html.split('class="headline"', 1)[1].split("</section>", 1)[0]
    figures = re.findall(r'<span class="big[^"]*">([\d,]+)</span>(?:</a>)?\s*([a-z ]+)', head)
    assert figures == [
        ("3", "domains"), ("1", "failing now"), ("1", "certificates expiring"),
        ("2", "open alerts"),
    ]  # fmt: skip
    assert re.search(r"stage-unchecked\">unchecked</span> 1", head)
    only = lambda **p: dash.get("/", params=p)  # noqa: E731
    assert domains_listed((await only(stage="unchecked")).text) == ["unchecked.example"]
    assert domains_listed((await only(stage="enforce")).text) == ["broken.example"]
    assert domains_listed((await only(severity="error")).text) == ["broken.example"]
    assert domains_listed((await only(severity="warning")).text) == ["example.com"]
    assert domains_listed((await only(severity="clean")).text) == []
    # An unknown filter value is ignored, not an error; the pager keeps the filters.
    assert len(domains_listed((await only(stage="bogus")).text)) == 3
    row = html.split('<a href="/domains/example.com">', 1)[1].split("</tr>", 1)[0]
    assert '<svg class="spark"' in row and re.search(r"\d+\.\d\d %", row)
    # The headline is kept for HEADLINE_TTL: paging does not recount every domain.
    save_check(seeded.store, "unchecked.example", seeded.clock())

    def headline_domains(html: str) -> list[str]:
        return re.findall(r"stage-(\w+)\">\w+</span> 1", html.split("</section>", 1)[0])

    assert "unchecked" in headline_domains((await dash.get("/")).text)
    seeded.clock.advance(seconds=pages.HEADLINE_TTL.total_seconds() + 1)
    assert "unchecked" not in headline_domains((await dash.get("/")).text)


@pytest.mark.parametrize(
    ("origin", "via"),
    [
        ("smtp:127.0.0.1 from=<reports@google.com>", "SMTP"),
        ("https:203.0.113.9", "HTTPS"),
        ("imap://tls@mail.example/INBOX;UID=7", "IMAP"),
        ("/var/spool/reports/google.json.gz", "file"),
    ],
)
async def test_reports_list_shows_the_channel_and_links_only_hosted_domains(
    dash: httpx.AsyncClient, seeded: World, origin: str, via: str
) -> None:
    from stspilot.ingest.pipeline import ingest_raw

    (report,) = generate_reports(1, seed=3, domains=["example.com"], start=seeded.clock())
    report["report-id"] = f"via-{via}"
    # One report naming a hosted domain and one hosted nowhere.
    extra = {**report["policies"][0]}
    extra["policy"] = {**extra["policy"], "policy-domain": "elsewhere.example"}
    report["policies"] = [report["policies"][0], extra]
    ingest_raw(seeded.store, json.dumps(report).encode(), origin=origin,
               received_at=seeded.clock())  # fmt: skip
    await as_user(dash, "root")  # an administrator sees every domain a report names
    html = (await dash.get("/reports", params={"days": 3})).text
    row = html.split(f"via-{via}", 1)[1].split("</tr>", 1)[0]
    assert f'<td class="via">{via}</td>' in row
    assert origin.split(":")[-1] not in row.split('class="via"')[1]  # no server path or peer
    assert '<a href="/domains/example.com">' in row
    assert "elsewhere.example" in row and '<a href="/domains/elsewhere.example">' not in row


async def test_a_report_covering_two_tenants_counts_only_each_tenants_sessions(
    dash: httpx.AsyncClient, seeded: World
) -> None:
    """One consolidated report names example.com (acme) and globex.test (globex): each tenant's
    reports page shows its own policy's sessions only, never the other's volume."""
    now = seeded.clock()
    policy = {
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1"]},
        "failure-details": [],
    }
    report = {
        "organization-name": "Both Inc.",
        "date-range": {
            "start-datetime": (now - timedelta(days=2)).strftime("%Y-%m-%dT00:00:00Z"),
            "end-datetime": (now - timedelta(days=2)).strftime("%Y-%m-%dT23:59:59Z"),
        },
        "contact-info": "tlsrpt@both.example",
        "report-id": "two-tenants-1",
        "policies": [
            {**policy, "policy": {**policy["policy"], "policy-domain": "example.com"},
             "summary": {"total-successful-session-count": 7001,
                         "total-failure-session-count": 3}},
            {**policy, "policy": {**policy["policy"], "policy-domain": "globex.test"},
             "summary": {"total-successful-session-count": 90009,
                         "total-failure-session-count": 11}},
        ],
    }  # fmt: skip
    ingest_report(seeded.store, report, now=now)
    tenants = {t.name: t.id for t in Accounts(seeded.store).list_tenants()}
    expected = [("acme", 7001, 3, "globex.test"), ("globex", 90009, 11, "example.com")]
    for tenant, ok, bad, other in expected:
        rows = [
            r
            for r in seeded.store.list_reports(tenant_id=tenants[tenant], scoped=True, limit=500)
            if r.report_id == "two-tenants-1"
        ]
        assert [(r.successful_sessions, r.failed_sessions) for r in rows] == [(ok, bad)]
        assert other not in rows[0].policy_domains
    await as_user(dash, "alice")
    html = (await dash.get("/reports", params={"days": 30})).text
    assert "7,001" in html or "7001" in html
    assert "90,009" not in html and "90009" not in html and "97,010" not in html
