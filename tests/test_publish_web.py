"""Publishing from the web against real servers on loopback (Knot primary + secondary, an HTTPS
policy host serving the hosted store, the app served by uvicorn): a hosted policy edit carries
its id to the delegation zone by itself (policy first), failures show and ``publish resume``
finishes them; the actions' plan and confirmation, the stale-plan 409, the enforce gate, who
may act, and CSRF on the form."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pubweb_support import DELEGATION, PubWorld, pub_world
from stspilot.store import Store
from stspilot.store.hosting import HostedPolicies
from stspilot.store.journal import PublishJournal
from web_support import PASSWORD, form_token

pytestmark = [pytest.mark.slow, pytest.mark.db]


@pytest.fixture
def pw(tmp_path: Path, store: Store) -> Iterator[PubWorld]:
    yield from pub_world(tmp_path, store)


def latest_run(pw: PubWorld, domain: str) -> dict[str, Any]:
    with pw.client("root") as c:
        runs = c.get(f"/api/domains/{domain}/journal").json()
    assert runs, f"no publish run of {domain}"
    first: dict[str, Any] = runs[0]
    return first


def resume_args(pw: PubWorld, store_url: str) -> list[str]:
    """``stspilot publish resume example.com`` against the world's servers and store."""
    return [
        "publish", "resume", "example.com", "--config", str(pw.config),
        "--db", store_url, "--nameserver", f"{pw.check.nameserver}:{pw.check.dns_port}",
        "--ca-file", str(pw.check.ca_file), "--port-map", f"443={pw.check.port_map[443]}",
    ]  # fmt: skip


def test_a_hosted_policy_edit_publishes_its_id_policy_first(pw: PubWorld) -> None:
    assert pw.txt("example.com") == []
    with pw.client("alice") as c:  # a plain tenant user may edit the policy
        answer = c.patch("/api/domains/example.com", json={"mode": "enforce", "max_age": 86400})
    assert answer.status_code == 200, answer.text
    new_id = answer.json()["policy_id"]
    started = latest_run(pw, "example.com")
    # Journaled before the answer, with the user as the actor; carried out in the background.
    assert started["action"] == "hosted-sync" and started["actor"] == "alice (web)"
    assert started["destination"] == "hosted-delegation"
    run = pw.wait_run("example.com", started["id"])
    assert run["state"] == "done", run
    policy, sts = run["steps"]
    assert policy["kind"] == "policy" and sts["kind"] == "sts"
    # Never-orphan order: the policy was fetched as a sender would before the id went out.
    assert policy["verified_at"] <= sts["intended_at"]
    assert sts["target"]["name"] == f"example.com.{DELEGATION}."
    assert pw.txt("example.com") == [f"v=STSv1; id={new_id}"]
    # A change that leaves the served policy alone publishes nothing.
    with pw.client("alice") as c:
        c.patch("/api/domains/example.com", json={"auto_sync_mx": True})
    assert latest_run(pw, "example.com")["id"] == run["id"]


def test_a_failed_sync_shows_and_publish_resume_finishes_it(pw: PubWorld, store_url: str) -> None:
    from typer.testing import CliRunner

    from stspilot.cli.app import app as cli

    policies = pw.host.policies
    pw.host.policies = {}  # the policy host serves nothing: the policy step cannot verify
    config = pw.config.read_text().replace("verify_timeout = 20", "verify_timeout = 2")
    pw.config.write_text(config)
    with pw.client("alice") as c:
        answer = c.patch("/api/domains/example.com", json={"mode": "enforce"})
    new_id = answer.json()["policy_id"]
    run = pw.wait_run("example.com", latest_run(pw, "example.com")["id"])
    assert run["state"] == "failed"
    assert run["steps"][0]["state"] == "failed" and run["steps"][1]["state"] == "planned"
    assert "stspilot publish resume example.com" in run["error"]
    assert pw.txt("example.com") == []  # the id of a policy not served is never announced
    # The domain page shows the failure (the journal section).
    with pw.client() as c:
        page = c.get("/login")
        c.post("/login", data={"username": "alice", "password": PASSWORD,
                               "csrf_token": form_token(page.text)})  # fmt: skip
        text = c.get("/domains/example.com").text
    assert "hosted-sync" in text and "failed" in text and "publish resume" in text

    pw.host.policies = policies
    result = CliRunner().invoke(cli, resume_args(pw, store_url))
    assert result.exit_code == 0, result.output
    done = PublishJournal(pw.store).get(run["id"])
    assert done.state == "done"
    assert pw.txt("example.com") == [f"v=STSv1; id={new_id}"]


def test_resume_from_the_web(pw: PubWorld) -> None:
    served = pw.host.policies
    pw.host.policies = {}
    pw.config.write_text(pw.config.read_text().replace("verify_timeout = 20", "verify_timeout = 2"))
    with pw.client("ada") as c:
        new_id = c.patch("/api/domains/example.com", json={"mode": "enforce"}).json()["policy_id"]
        failed = pw.wait_run("example.com", latest_run(pw, "example.com")["id"])
        assert failed["state"] == "failed"
        shown = plan(c, "example.com", "resume")
        assert shown["resume_run"] == failed["id"]
        assert f"continue run {failed['id']}" in shown["summary"]
        assert [s["kind"] for s in shown["steps"]] == ["policy", "sts"]  # none verified yet
        pw.host.policies = served
        answer = confirm(c, "example.com", shown)
        assert answer.status_code == 202, answer.text
        assert answer.json()["run"]["id"] == failed["id"]  # the same run, continued
    run = pw.wait_run("example.com", failed["id"])
    assert run["state"] == "done", run
    assert pw.txt("example.com") == [f"v=STSv1; id={new_id}"]
    with pw.client("ada") as c:  # nothing left to resume
        assert c.get("/api/domains/example.com/publish/plan?action=resume").status_code == 409


def test_a_run_being_carried_out_is_not_resumed_twice(pw: PubWorld) -> None:
    served = pw.host.policies
    pw.host.policies = {}  # the run waits at its policy step (verify_timeout 20 s)
    with pw.client("ada") as c:
        c.patch("/api/domains/example.com", json={"mode": "enforce"})
        running = latest_run(pw, "example.com")
        assert running["state"] == "running"
        shown = plan(c, "example.com", "resume")
        assert shown["resume_run"] == running["id"]
        refused = confirm(c, "example.com", shown)
        assert refused.status_code == 409 and "being carried out now" in refused.json()["detail"]
    pw.host.policies = served
    assert pw.wait_run("example.com", running["id"])["state"] == "done"


def plan(c: httpx.Client, domain: str, action: str, **extra: str) -> dict[str, Any]:
    answer = c.get(f"/api/domains/{domain}/publish/plan", params={"action": action, **extra})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def confirm(c: httpx.Client, domain: str, shown: dict[str, Any]) -> httpx.Response:
    body = {k: shown[k] for k in ("action", "planned_at", "digest", "force_reason")}
    return c.post(f"/api/domains/{domain}/publish/runs", json=body)


def store_check(pw: PubWorld, domain: str) -> None:
    import asyncio

    from stspilot.check.run import check_domains
    from stspilot.store.checks import save_check

    (result,) = asyncio.run(check_domains([domain], options=pw.check))
    save_check(pw.store, result)


def test_actions_plan_then_confirm_with_the_gate_and_a_stale_plan(pw: PubWorld) -> None:
    hosting = HostedPolicies(pw.store)
    with pw.client("ada") as c:  # a tenant administrator of acme
        shown = plan(c, "example.com", "hosted-sync")
        assert [s["kind"] for s in shown["steps"]] == ["policy", "sts"]
        assert shown["steps"][1]["value"] == hosting.require("example.com").sts_txt_value
        answer = confirm(c, "example.com", shown)
        assert answer.status_code == 202, answer.text
        run = pw.wait_run("example.com", answer.json()["run"]["id"])
        assert run["state"] == "done" and run["actor"] == "ada (web)"

        # The next stage from testing is enforce: refused while the gate fails (no reports).
        store_check(pw, "example.com")
        shown = plan(c, "example.com", "next")
        assert shown["gate"]["stage"] == "testing" and shown["gate"]["ready"] is False
        assert shown["refused"] and "enforce gate fails" in shown["refused"]
        assert [s["kind"] for s in shown["steps"]] == ["policy", "sts"]
        assert "mode: enforce" in shown["steps"][0]["value"]
        refused = confirm(c, "example.com", shown)
        assert refused.status_code == 409 and refused.json()["code"] == "gate-refused"
        assert hosting.require("example.com").mode == "testing"

        # Forced with a reason: a new plan (its own digest), journaled with the reason.
        forced = plan(c, "example.com", "next", force_reason="pilot customer")
        assert forced["refused"] is None and forced["digest"] != shown["digest"]
        answer = confirm(c, "example.com", forced)
        assert answer.status_code == 202, answer.text
        assert answer.json()["run"]["reason"] == "forced past the enforce gate: pilot customer"
        run = pw.wait_run("example.com", answer.json()["run"]["id"])
        assert run["state"] == "done", run
        now = hosting.require("example.com")
        assert now.mode == "enforce"
        assert pw.txt("example.com") == [now.sts_txt_value]

        # Stale: the policy changes between the plan shown and the confirmation.
        store_check(pw, "example.com")  # the rollout's stage is read from the stored check
        shown = plan(c, "example.com", "rollback")
        assert shown["gate"]["stage"] == "enforce" and shown["run_action"] == "rollback"
        assert "mode: testing" in shown["steps"][0]["value"]
        assert c.patch("/api/domains/example.com", json={"max_age": 700000}).status_code == 200
        stale = confirm(c, "example.com", shown)
        assert stale.status_code == 409 and stale.json()["code"] == "stale-plan"
        assert hosting.require("example.com").mode == "enforce"  # nothing carried out
        # An old confirmation is refused even when nothing changed.
        old = {**plan(c, "example.com", "hosted-sync"), "planned_at": "2026-01-01T00:00:00+00:00"}
        assert confirm(c, "example.com", old).status_code == 409


def test_who_may_act(pw: PubWorld) -> None:
    with pw.client("root") as c:
        shown = plan(c, "example.com", "hosted-sync")
    body = {k: shown[k] for k in ("action", "planned_at", "digest", "force_reason")}
    url = "/api/domains/example.com/publish/runs"
    with pw.client("alice") as c:  # sees the domain and its plan, may not carry it out
        assert c.get("/api/domains/example.com/publish/plan?action=hosted-sync").status_code == 200
        assert c.post(url, json=body).status_code == 403
    with pw.client("ada-read") as c:  # a read token: plans yes, actions never
        assert c.get("/api/domains/example.com/publish/plan?action=hosted-sync").status_code == 200
        assert c.post(url, json=body).status_code == 403
    with pw.client("gina") as c:  # another tenant: exactly like an unknown domain
        for domain in ("example.com", "unknown.example"):
            got = c.post(f"/api/domains/{domain}/publish/runs", json=body)
            seen = c.get(f"/api/domains/{domain}/publish/plan")
            assert got.status_code == seen.status_code == 404
            assert got.json()["detail"] == f"'{domain}' is not a hosted domain"
    assert PublishJournal(pw.store).runs("example.com") == []
    with pw.client("root") as c:  # the new routes are described
        paths = c.get("/api/openapi.json").json()["paths"]
    assert "/api/domains/{domain}/publish/plan" in paths
    assert "post" in paths["/api/domains/{domain}/publish/runs"]
    assert "/api/domains/{domain}/journal/{run_id}" in paths


def test_the_confirm_form_needs_its_csrf_token(pw: PubWorld) -> None:
    with pw.client() as c:
        page = c.get("/login")
        c.post("/login", data={"username": "ada", "password": PASSWORD,
                               "csrf_token": form_token(page.text)})  # fmt: skip
        shown = c.get("/domains/example.com/publish", params={"action": "hosted-sync"})
        assert shown.status_code == 200 and 'id="confirm-form"' in shown.text
        fields = {
            name: _field(shown.text, name)
            for name in ("action", "planned_at", "digest", "force_reason", "csrf_token")
        }
        without = {k: v for k, v in fields.items() if k != "csrf_token"}
        assert c.post("/domains/example.com/publish", data=without).status_code == 403
        forged = {**fields, "csrf_token": "x" * 40}
        assert c.post("/domains/example.com/publish", data=forged).status_code == 403
        assert PublishJournal(pw.store).runs("example.com") == []
        done = c.post("/domains/example.com/publish", data=fields)
        assert done.status_code == 303
        run_id = int(done.headers["location"].rsplit("/", 1)[1])
        assert pw.wait_run("example.com", run_id)["state"] == "done"
        progress = c.get(done.headers["location"])
        assert 'data-state="done"' in progress.text and "data-poll" not in progress.text


def _field(html: str, name: str) -> str:
    import re

    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, name
    return found.group(1)


def test_without_a_provider_the_record_is_shown_as_before(pw: PubWorld, store: Store) -> None:
    pw.config.write_text("")  # no [zones] for the delegation zone
    with pw.client("alice") as c:
        answer = c.patch("/api/domains/example.com", json={"mode": "enforce"})
        assert answer.status_code == 200
        records = answer.json()["publish"]["records"]
        plan_answer = c.get("/api/domains/example.com/publish/plan?action=hosted-sync")
    assert {"name": f"example.com.{DELEGATION}.", "type": "TXT",
            "value": answer.json()["publish"]["txt_value"]} in records  # fmt: skip
    assert PublishJournal(store).runs("example.com") == []
    assert plan_answer.status_code == 409
    time.sleep(0)  # nothing runs in the background


def test_removing_a_decommissioned_domain_takes_its_delegation_record_first(
    pw: PubWorld,
) -> None:
    """The TXT record in the delegation zone goes before the hosted policy (checklist G5.7):
    deleting the domain while it stands starts its removal and answers 409, never an orphan."""
    from sqlalchemy import update

    from stspilot.store.hosting import hosted_domains

    with pw.client("alice") as c:
        answer = c.patch("/api/domains/example.com", json={"mode": "enforce", "max_age": 86400})
    assert answer.status_code == 200, answer.text
    assert pw.wait_run("example.com", latest_run(pw, "example.com")["id"])["state"] == "done"
    with pw.client("alice") as c:
        assert c.post("/api/domains/example.com/decommission").status_code == 200
    assert pw.wait_run("example.com", latest_run(pw, "example.com")["id"])["state"] == "done"
    assert pw.txt("example.com")  # mode none served under a new id, still announced
    with pw.client("alice") as c:  # the wait is not over: refused as before
        assert c.delete("/api/domains/example.com").status_code == 409
    past = datetime.now(UTC) - timedelta(seconds=1)
    with pw.store.engine.begin() as conn:  # every cached policy has expired
        conn.execute(
            update(hosted_domains)
            .where(hosted_domains.c.domain == "example.com")
            .values(remove_after=past)
        )
    with pw.client("alice") as c:
        refused = c.delete("/api/domains/example.com")
    assert refused.status_code == 409, refused.text
    assert "removed first" in refused.text
    run = pw.wait_run("example.com", latest_run(pw, "example.com")["id"])
    assert run["state"] == "done", run
    assert [s["kind"] for s in run["steps"]] == ["remove-sts"]
    assert pw.txt("example.com") == []
    with pw.client("alice") as c:
        assert c.delete("/api/domains/example.com").status_code == 204
        assert c.get("/api/domains/example.com").status_code == 404


def test_a_hosted_write_resumed_from_the_cli_says_so_in_the_history(
    pw: PubWorld, store_url: str
) -> None:
    """A rollout action on a hosted domain journaled by the web but carried out by ``publish
    resume``: the hosting's history names the resume and its run, not the web."""
    from typer.testing import CliRunner

    from stspilot.cli.app import app as cli
    from stspilot.publish.config import load_config
    from stspilot.publish.hosted import delegation_zone, start_sync

    hosting = HostedPolicies(pw.store)
    hosted = hosting.require("example.com")
    zone = delegation_zone(load_config(pw.config), DELEGATION)
    assert zone is not None
    text = hosted.policy_text.replace(f"mode: {hosted.mode}", "mode: enforce")
    assert text != hosted.policy_text
    run = start_sync(
        pw.store, hosted, zone, actor="ada (web)", now=datetime.now(UTC), action="enforce",
        text=text, max_age=hosted.max_age, reason="rollout action: enforce",
    )  # fmt: skip
    result = CliRunner().invoke(cli, resume_args(pw, store_url))
    assert result.exit_code == 0, result.output
    assert PublishJournal(pw.store).get(run.id).state == "done"
    newest = hosting.history("example.com")[0]
    assert newest.mode == "enforce"
    assert newest.reason == (
        f"stspilot publish resume of run {run.id} (enforce): rollout action: enforce"
    )
    assert pw.txt("example.com") == [f"v=STSv1; id={newest.policy_id}"]
