"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the real app
served by uvicorn on 127.0.0.1 (a free port, a background thread). Logs in, adds a domain,
reads a domain page with its chart; screenshots go to ``artifacts/screenshots/``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

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

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
# Quiet and offline: no component updates, no background fetches (see test-services notes §3).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 with a port the kernel picks, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", ws="none", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # reported by __enter__, not lost in the thread
            self.failure = exc

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            self.thread.join(0.01)
        assert self.server.started, f"uvicorn did not start: {self.failure!r}"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


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


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


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
    chart = page.locator("#chart-sessions svg")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150
    bars = page.locator("#chart-sessions .tooltip-trigger")
    assert bars.count() >= 2 * 28  # two stacked series over the days with reports
    # dashboard.js gave every bar a hover title (progressive enhancement ran).
    title = bars.first.locator("title").text_content()
    assert title and "successful" in title
    expect(page.locator("#chart-types svg")).to_be_visible()
    expect(page.locator("#failures")).to_contain_text("By sending organisation")
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
