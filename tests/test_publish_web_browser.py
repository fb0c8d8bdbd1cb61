"""Publishing from the dashboard in a real browser (Debian's Chromium driven by Playwright)
against the app served by uvicorn, Knot and the HTTPS policy host: the plan, its confirmation,
the run's progress followed by publish.js (no inline script: the CSP forbids it), and a plan
that changed before it was confirmed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser_support import browser_fixture as browser_fixture  # the `browser` fixture
from browser_support import log_in, shot
from pubweb_support import DELEGATION, PubWorld, pub_world
from stspilot.store import Store
from stspilot.store.hosting import HostedPolicies

pytestmark = [pytest.mark.slow]


@pytest.fixture
def pw(tmp_path: Path, store: Store) -> Iterator[PubWorld]:
    yield from pub_world(tmp_path, store)


def watch(page: Any) -> list[str]:
    """Script errors, failed sub-resources and CSP reports of ``page``."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        # Failed loads are judged by the responses below (the browser's favicon guess may miss).
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") and "/publish" not in r.url
            else None
        ),
    )
    return errors


def test_plan_confirm_and_follow_the_run(browser: Any, pw: PubWorld) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = watch(page)
    log_in(page, pw.base, "ada")  # a tenant administrator of acme
    page.goto(f"{pw.base}/domains/example.com")
    actions = page.locator("#publish-actions")
    expect(actions).to_be_visible()
    actions.locator("select[name=action]").select_option("hosted-sync")
    actions.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/domains/example\.com/publish\?action=hosted-sync$"))
    steps = page.locator("#plan-steps")
    expect(steps).to_contain_text(f"example.com.{DELEGATION}.")
    expect(steps).to_contain_text("serve the policy at https://mta-sts.example.com/")
    shot(page, "publish-01-plan")
    served = pw.host.policies
    pw.host.policies = {}  # the policy is not served yet: the run waits at its first step
    page.locator("#confirm-form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/domains/example\.com/publish/runs/\d+$"))
    expect(page.locator("#run-state")).to_have_text("running")
    expect(page.locator("#run")).to_have_attribute("data-poll", "2000")
    # publish.js follows the run from the journal until it is done, without a reload.
    page.evaluate("window.notReloaded = true")
    pw.host.policies = served
    expect(page.locator("#run-state")).to_have_text("done", timeout=40_000)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#run li")).to_have_count(2)
    expect(page.locator("#run")).not_to_have_attribute("data-poll", re.compile(".*"))
    shot(page, "publish-02-run-done")
    hosted = HostedPolicies(pw.store).require("example.com")
    assert pw.txt("example.com") == [hosted.sts_txt_value]
    # The domain page's journal links the run.
    page.goto(f"{pw.base}/domains/example.com#journal")
    expect(page.locator("#journal")).to_contain_text("hosted-sync")
    assert errors == []


def test_a_plan_changed_before_the_confirmation_is_not_carried_out(
    browser: Any, pw: PubWorld
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, pw.base, "root")
    page.goto(f"{pw.base}/domains/example.com/publish?action=hosted-sync")
    expect(page.locator("#confirm-form")).to_be_visible()
    before = page.locator("#plan-steps").inner_text()
    with pw.client("root") as c:  # someone edits the policy meanwhile
        assert c.patch("/api/domains/example.com", json={"max_age": 123456}).status_code == 200
    page.locator("#confirm-form button[type=submit]").click()
    expect(page.locator("#plan-message")).to_contain_text("Not carried out")
    expect(page.locator("#plan-message")).to_contain_text("changed since it was shown")
    after = page.locator("#plan-steps").inner_text()
    assert "123456" in after and before != after  # the new plan, to confirm again
    shot(page, "publish-03-stale")


def test_a_plain_user_sees_no_actions(browser: Any, pw: PubWorld) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, pw.base, "alice")
    page.goto(f"{pw.base}/domains/example.com")
    expect(page.locator("h1.domain")).to_contain_text("example.com")
    expect(page.locator("#publish-actions")).to_have_count(0)
    page.goto(f"{pw.base}/domains/example.com/publish?action=hosted-sync")
    expect(page.locator("#plan-steps")).to_be_visible()  # the plan may be read
    expect(page.locator("#confirm-form")).to_have_count(0)
