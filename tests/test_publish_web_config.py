"""Web actions for a domain published through its own zone's provider (the publish config, as
``stspilot rollout --apply``): BIND primary + Knot secondary, the policy in a web root served
over HTTPS; an administrator takes it from none to reporting to testing from the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_support import ServerThread
from publish_support import ZONE, Lab, make_lab
from stspilot.check.run import check_domains
from stspilot.lab.authdns import KEY_NAME
from stspilot.store.checks import save_check
from stspilot.store.journal import PublishJournal
from stspilot.web import pages
from stspilot.web.app import create_app
from web_support import build_world, settings

pytestmark = [pytest.mark.slow, pytest.mark.db]


@pytest.fixture
async def lab(tmp_path: Path, store_url: str) -> AsyncIterator[Lab]:
    async for made in make_lab(tmp_path, store_url):
        yield made


@pytest.fixture
def served(lab: Lab, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    key = tmp_path / "tsig.key"
    key.write_text(lab.world.secret)
    key.chmod(0o600)
    config = tmp_path / "publish.toml"
    zone = lab.config.zone.options
    config.write_text(
        f'[zones."{ZONE}"]\nprovider = "rfc2136"\nserver = "{zone["server"]}"\n'
        f'port = {zone["port"]}\nkey_name = "{KEY_NAME}"\nkey_secret_file = "{key}"\n'
        f'[domains."{ZONE}"]\npolicy = "webroot:{lab.webroot}"\nverify_timeout = 20\n'
    )
    web = settings(publish_config=config, check_options=lab.check)
    world = build_world(lab.store, web)
    app = create_app(web, lab.store, routers=[pages.router], clock=lab.clock)
    with ServerThread(app) as base:
        yield base, world


async def step(lab: Lab, c: httpx.AsyncClient, expected: list[str]) -> dict[str, Any]:
    """Check, plan the next stage, confirm it, and wait for the run (the policy host and the
    DNS servers answer on this loop while it waits)."""
    import asyncio

    (result,) = await check_domains([ZONE], options=lab.check)
    save_check(lab.store, result)
    shown = (await c.get(f"/api/domains/{ZONE}/publish/plan", params={"action": "next"})).json()
    assert [s["kind"] for s in shown["steps"]] == expected, shown
    assert shown["destination"] == f"webroot:{lab.webroot}" and shown["dns"].startswith("rfc2136")
    body = {k: shown[k] for k in ("action", "planned_at", "digest", "force_reason")}
    answer = await c.post(f"/api/domains/{ZONE}/publish/runs", json=body)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run"]["id"]
    for _ in range(600):
        run: dict[str, Any] = (await c.get(f"/api/domains/{ZONE}/journal/{run_id}")).json()
        if run["state"] != "running":
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} still running")


async def test_an_admin_rolls_out_a_domain_of_its_own_zone(
    lab: Lab, served: tuple[str, Any]
) -> None:
    base, world = served
    async with httpx.AsyncClient(base_url=base, headers=world.auth("root"), timeout=30) as c:
        first = await step(lab, c, ["tlsrpt"])  # none -> reporting
        assert first["state"] == "done" and first["action"] == "reporting"
        second = await step(lab, c, ["policy", "sts"])  # reporting -> testing
        assert second["state"] == "done" and second["action"] == "testing"
    (seen,) = await check_domains([ZONE], options=lab.check)
    assert seen.policy is not None and seen.policy.mode == "testing"
    assert seen.sts_record is not None
    runs = PublishJournal(lab.store).runs(ZONE)
    assert [r.actor for r in runs] == ["root (web)", "root (web)"]
    assert all(s.state == "verified" for r in runs for s in r.steps)
