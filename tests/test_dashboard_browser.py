"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the real app
served by uvicorn on 127.0.0.1 (a free port, a background thread). Logs in, adds a domain,
reads a domain page with its chart; screenshots go to ``artifacts/screenshots/``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from browser_support import SHOTS, ServerThread, log_in, overflowing, page_overflow, shot
from browser_support import browser_fixture as browser_fixture  # the `browser` fixture
from dashboard_seed import FINDING, ingest_sample_reports, save_check
from stspilot.findings import Severity
from stspilot.monitor.alerts import Alert
from stspilot.store import Store
from stspilot.store.hosting import HostedPolicies
from stspilot.store.monitor import MonitorStore
from stspilot.web import pages
from stspilot.web.app import create_app
from web_support import PASSWORD, World, build_world

pytestmark = [pytest.mark.slow]


@pytest.fixture
def world(store: Store) -> World:
    w = build_world(store)
    now = w.clock()
    ingest_sample_reports(store, ["example.com"], days=30, now=now)
    save_check(store, "example.com", now - timedelta(hours=1), cert_days=9, findings=[FINDING],
               mx=("mx1.example.com", "mx2.example.com"))  # fmt: skip
    message = (
        "example.com: TLS-RPT reports for yesterday: 40 of 1,040 sessions failed (result types: "
        "certificate-expired 40; MX: mx2.example.com 40; reported by Google Inc.); under mode "
        "enforce these senders did not deliver."
    )
    key = "example.com|tlsrpt.failures"
    alert = Alert(key, Severity.ERROR, "example.com", "tlsrpt.failures", message, True)
    MonitorStore(store).record_alerts("example.com", [alert], now=now, sent=[])
    return w


@pytest.fixture
def base_url(world: World) -> Iterator[str]:
    app = create_app(world.settings, world.store, routers=[pages.router], clock=world.clock)
    with ServerThread(app) as url:
        yield url


def test_log_in_add_a_domain_and_read_its_page(browser: Any, base_url: str, world: World) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Every sub-resource (CSS, script) is served by the app itself; the browser's own
    # /favicon.ico guess is the one request allowed to miss.
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    # Every page needs a login: the dashboard sends us to the form and back.
    page.goto(f"{base_url}/domains/example.com")
    expect(page).to_have_url(f"{base_url}/login?next=/domains/example.com")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    shot(page, "01-login")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}/domains/example.com")

    # The inventory.
    page.click("text=Domains")
    expect(page.locator("table.inventory")).to_contain_text("example.com")
    expect(page.locator("table.inventory")).not_to_contain_text("globex.test")
    expect(page.locator("table.inventory td.alerts")).to_contain_text("1 error")
    shot(page, "02-inventory")

    # Add a domain through the form (CSRF token included by the page itself).
    page.click("text=+ Add domain")
    page.fill("input[name=domain]", "browser.example")
    page.select_option("select[name=mode]", "testing")
    page.fill("textarea[name=mx]", "mx1.browser.example\nmx2.browser.example")
    shot(page, "03-add-domain")
    page.click("#add-domain button[type=submit]")
    expect(page).to_have_url(f"{base_url}/domains/browser.example")
    hosted = HostedPolicies(world.store).get("browser.example")
    assert hosted is not None and hosted.tenant == "acme"
    expect(page.locator("#publish")).to_contain_text(f"v=STSv1; id={hosted.policy_id}")
    expect(page.locator("#history")).to_contain_text(hosted.policy_id)
    shot(page, "04-new-domain")

    # A domain with reports: the chart is drawn and readable, the tables and the gate are there.
    page.goto(f"{base_url}/domains/example.com?days=30")
    chart = page.locator("#chart-rate svg")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150
    points = page.locator("#chart-rate .tooltip-trigger")
    assert points.count() >= 28  # a rate point per day with reports
    # dashboard.js gave every point a hover title (progressive enhancement ran).
    title = points.first.locator("title").text_content()
    assert title and "failure rate" in title and "%" in title
    # The result-type bars carry their numbers.
    labels = page.locator("#chart-types text.value").all_text_contents()
    assert labels and all(t.replace(",", "").isdigit() for t in labels)
    expect(page.locator("#chart-types svg")).to_be_visible()
    expect(page.locator("#failures")).to_contain_text("By reporter")
    expect(page.locator("#reporters")).to_contain_text("Google Inc.")
    expect(page.locator("#live")).to_contain_text("The live TXT id is 20261101T000000")
    expect(page.locator("#rollout")).to_contain_text("What if it had been enforce?")
    expect(page.locator("#findings")).to_contain_text(FINDING["title"])
    expect(page.locator("#alerts")).to_contain_text("senders did not deliver")
    shot(page, "05-domain-page")

    page.goto(f"{base_url}/reports?domain=example.com")
    expect(page.locator("table.reports tbody tr")).to_have_count(pages.PER_PAGE)
    shot(page, "06-reports")
    assert errors == [], errors
    assert all(url.startswith(base_url) for url in requested), "the dashboard works offline"
    assert f"{base_url}/static/dashboard.js" in requested
    page.close()


def test_another_tenant_cannot_read_the_domain(browser: Any, base_url: str) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", "gina")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("table.inventory")).to_contain_text("globex.test")
    response = page.goto(f"{base_url}/domains/example.com")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    shot(page, "07-other-tenant")
    page.close()


def test_inventory_sorts_and_exports_every_matching_domain(
    browser: Any, base_url: str, world: World, tmp_path: Any
) -> None:
    from playwright.sync_api import expect

    from dashboard_seed import save_check as save
    from stspilot.store.accounts import Accounts

    acme = Accounts(world.store).tenant("acme")
    hosting = HostedPolicies(world.store)
    now = world.clock()
    for name, cert_days in (("alpha.example", 3), ("zulu.example", 200)):
        hosting.add(name, tenant_id=acme.id, mode="testing", mx=[f"mx1.{name}"], now=now)
        save(world.store, name, now, cert_days=cert_days, mx=(f"mx1.{name}",))
    ingest_sample_reports(world.store, ["zulu.example"], days=14, now=now, seed=11)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, base_url, "alice")
    rows = page.locator("table.inventory tbody tr td:first-child a")
    expect(rows).to_have_count(3)
    assert rows.all_text_contents() == ["alpha.example", "example.com", "zulu.example"]
    expect(page.locator("table.inventory svg.spark")).to_have_count(3)

    # Sorting by the MX certificate (the server sorts every matching domain, not the page):
    # soonest first, then reversed.
    header = page.locator("table.inventory th", has_text="MX certificate")
    header.locator("a").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    assert rows.all_text_contents() == ["alpha.example", "example.com", "zulu.example"]
    header.locator("a").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    assert rows.all_text_contents() == ["zulu.example", "example.com", "alpha.example"]
    # By sessions (numbers, not text): the domain without reports last when descending.
    sessions = page.locator("table.inventory th", has_text="Sessions")
    sessions.locator("a").click()
    page.locator("table.inventory th", has_text="Sessions").locator("a").click()
    sessions = page.locator("table.inventory th", has_text="Sessions")
    expect(sessions).to_have_attribute("aria-sort", "descending")
    assert rows.all_text_contents()[-1] == "alpha.example"
    shot(page, "08-inventory-sorted")

    # The export is the whole filtered inventory in the order shown, as plain figures.
    with page.expect_download() as info:
        page.click("#export-csv")
    path = tmp_path / "domains.csv"
    info.value.save_as(path)
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    head, body = table[0], table[1:]
    assert head[0] == "Domain" and "Failure rate" in head and "Sessions" in head
    assert [r[0] for r in body] == rows.all_text_contents()
    shown = {r[0]: r for r in body}
    zulu = shown["zulu.example"]
    cells = page.locator("table.inventory tbody tr", has_text="zulu.example").locator("td")
    # The plain figure of what the cell shows (1,234).
    assert zulu[head.index("Sessions")] == cells.nth(9).inner_text().replace(",", "")
    assert int(zulu[head.index("Sessions")]) > 0
    assert zulu[head.index("Failed")] == cells.nth(10).inner_text().replace(",", "")
    assert zulu[head.index("Stage")] == cells.nth(2).inner_text().strip()
    assert zulu[head.index("Enforce gate")] == cells.nth(3).inner_text().strip()  # "2 failing"
    assert shown["alpha.example"][head.index("MX certificate")] == "3"  # days, as shown
    assert errors == [], errors

    # Filters narrow what is shown (and so what is exported).
    page.select_option("select[name=stage]", "testing")
    page.fill("input[name=q]", "zulu")
    page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    page.close()


@pytest.mark.parametrize("path", ["/", "/domains/example.com", "/reports", "/domains/new", "/docs"])
def test_phone_width_has_no_sideways_scroll(browser: Any, base_url: str, path: str) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    log_in(page, base_url, "alice")
    page.goto(f"{base_url}{path}")
    if path == "/docs":  # Swagger UI draws after fetching the description
        page.locator("#swagger-ui .opblock").first.wait_for()
    assert page_overflow(page) <= 0, f"{path} scrolls sideways at 390 px: {overflowing(page)}"
    name = path.strip("/").replace("/", "-") or "inventory"
    shot(page, f"phone-{name}")
    page.close()


def test_desktop_screenshots_of_the_new_pages(browser: Any, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    log_in(page, base_url, "alice")
    shot(page, "desktop-inventory")
    page.goto(f"{base_url}/domains/example.com")
    assert page_overflow(page) <= 0
    shot(page, "desktop-domain")
    page.screenshot(path=str(SHOTS / "desktop-domain-top.png"))  # the first screen alone
    page.close()


def test_api_docs_load_offline_for_a_logged_in_user(browser: Any, base_url: str) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # Anything that leaves the app fails, as it would on a machine without internet.
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base_url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base_url}/docs")
    expect(page).to_have_url(f"{base_url}/login?next=/docs")  # for logged-in users only
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    # Swagger UI parses and draws the whole OpenAPI document in the page's JavaScript, which
    # took longer than the 5 s default wait on a machine at load 8-14: wait for what it draws
    # (and for the login's redirect), up to 30 s.
    drawn = 30_000
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}/docs", timeout=drawn)
    # Swagger UI drew the description: the API's title and an operation of each kind.
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("stspilot", timeout=drawn)
    operations = page.locator("#swagger-ui .opblock")
    expect(operations.first).to_be_visible(timeout=drawn)
    expect(operations.nth(9)).to_be_attached(timeout=drawn)  # at least 10 operations
    expect(page.locator("#swagger-ui")).to_contain_text("/api/domains/{domain}", timeout=drawn)
    shot(page, "10-api-docs")
    assert outside == [], outside
    assert errors == [], errors
    context.close()
