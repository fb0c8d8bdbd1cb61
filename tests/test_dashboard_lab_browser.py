"""The dashboard against the lab (real DNS, HTTPS and SMTP servers on 127.x addresses): the
monitor checks a domain whose live policy is enforce while stspilot hosts it in testing, and
one of its regular reporters has gone quiet; Chromium shows the mismatch and the alert."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from browser_support import ServerThread, log_in, shot
from browser_support import browser_fixture as browser_fixture  # the `browser` fixture
from stspilot.check.run import CheckOptions
from stspilot.ingest.pipeline import commit_prepared, prepare_unit
from stspilot.lab import Lab
from stspilot.lab.sample_reports import generate_reports, to_gzip
from stspilot.lab.scenarios import BY_DOMAIN
from stspilot.monitor.loop import MonitorConfig, add_domain, run_once
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.store.monitor import MonitorStore
from stspilot.tlsrpt.schema import DEFAULT_LIMITS
from stspilot.web import pages
from stspilot.web.app import create_app
from web_support import World, build_world

pytestmark = [pytest.mark.slow]

DOMAIN = "enforce-ok.test"  # the lab serves it in mode enforce


@pytest.fixture
def lab_options() -> Iterator[CheckOptions]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="lab", daemon=True)
    thread.start()
    lab = Lab([BY_DOMAIN[DOMAIN]])
    asyncio.run_coroutine_threadsafe(lab.start(), loop).result(60)
    info = lab.info
    try:
        yield CheckOptions(
            nameserver=info.nameserver,
            dns_port=info.dns_port,
            ca_file=info.ca_file,
            port_map=info.port_map,
            deadline=20.0,
        )
    finally:
        asyncio.run_coroutine_threadsafe(lab.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def ingest(store: Store, reports: list[dict[str, Any]], now: Any) -> None:
    units = [
        prepare_unit(to_gzip(r), origin="test:lab", received_at=now, limits=DEFAULT_LIMITS)
        for r in reports
    ]
    commit_prepared(store, units)


@pytest.fixture
def world(store: Store, lab_options: CheckOptions) -> World:
    w = build_world(store)
    now = w.clock()
    acme = Accounts(store).tenant("acme")
    # Hosted here in testing, while the lab's live DNS and policy host say enforce.
    HostedPolicies(store).add(DOMAIN, tenant_id=acme.id, mode="testing",
                              mx=[f"mx1.{DOMAIN}"], now=now)  # fmt: skip
    # Four reporters for 30 days; Google stops four days before now, the others go on.
    start = now - timedelta(days=31)
    reports = generate_reports(4 * 30, seed=5, domains=[DOMAIN], start=start)
    quiet_from = (now - timedelta(days=4)).date().isoformat()
    kept = [
        r for r in reports
        if r["organization-name"] != "Google Inc."
        or r["date-range"]["start-datetime"][:10] < quiet_from
    ]  # fmt: skip
    assert len(kept) < len(reports)
    ingest(store, kept, now)
    add_domain(store, [DOMAIN], now=now)
    config = MonitorConfig(enroll_hosted=False)
    # A thread of its own: Playwright's sync API keeps an event loop on this one.
    tallies: list[Any] = []
    runner = threading.Thread(
        target=lambda: tallies.append(
            asyncio.run(run_once(store, options=lab_options, now=now, config=config))
        )
    )
    runner.start()
    runner.join(120)
    assert [(t.checked, t.failed) for t in tallies] == [(1, 0)]
    return w


@pytest.fixture
def base_url(world: World) -> Iterator[str]:
    app = create_app(world.settings, world.store, routers=[pages.router], clock=world.clock)
    with ServerThread(app) as url:
        yield url


def test_monitor_alerts_on_a_quiet_reporter_and_the_page_shows_live_versus_hosted(
    browser: Any, base_url: str, world: World
) -> None:
    from playwright.sync_api import expect

    codes = {a["code"]: a for a in MonitorStore(world.store).open_alerts(DOMAIN)}
    assert "tlsrpt.reporter-quiet" in codes, codes
    assert "Google Inc." in codes["tlsrpt.reporter-quiet"]["message"]
    # Only the reporter that stopped: the others kept their habit.
    quiet = [a for a in MonitorStore(world.store).open_alerts(DOMAIN)
             if a["code"] == "tlsrpt.reporter-quiet"]  # fmt: skip
    assert len(quiet) == 1

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, base_url, "alice")
    page.goto(f"{base_url}/domains/{DOMAIN}")
    live = page.locator("#live")
    expect(live).to_contain_text("Senders see a different policy than the one hosted here")
    expect(live).to_contain_text("mode enforce live, testing hosted")
    expect(live.locator("li.note-bad").first).to_be_visible()
    # The mismatch is among the first sections of the jump bar.
    jump = page.locator("nav.jump a").all_text_contents()
    assert any("Live vs hosted" in j for j in jump[:3]), jump
    expect(page.locator("#alerts")).to_contain_text("tlsrpt.reporter-quiet")
    expect(page.locator("#alerts")).to_contain_text("Google Inc. sent TLS-RPT reports daily")
    overdue = page.locator("#cadence tr.overdue")
    expect(overdue).to_have_count(1)
    expect(overdue).to_contain_text("Google Inc.")
    expect(page.locator("#cadence")).to_contain_text("on time")
    expect(page.locator("#stage-help")).to_contain_text("enforce")
    shot(page, "09-lab-live-vs-hosted-and-quiet-reporter")
    page.close()
