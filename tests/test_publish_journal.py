"""The publish journal in the store (SQLite, or PostgreSQL with STSPILOT_TEST_DATABASE_URL) and
in the JSON API: runs and steps, open runs, abandonment by a newer plan, served max_ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from stspilot.publish.plan import Live, plan_publication
from stspilot.rollout.generate import generate
from stspilot.store import Store
from stspilot.store.journal import PublishJournal
from web_support import World

pytestmark = pytest.mark.db

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def steps_for(domain: str, mode: str = "testing", max_age: int = 86400) -> list[dict[str, object]]:
    pub = generate(domain, mx_hosts=[f"mx.{domain}"], mode=mode, now=NOW, max_age=max_age)
    return [s.to_dict() for s in plan_publication(Live(domain), pub).steps]


def test_runs_steps_and_states(store: Store) -> None:
    journal = PublishJournal(store)
    run = journal.start(
        "example.com", action="testing", steps=steps_for("example.com"), actor="alice",
        reason="", dns="rfc2136 192.0.2.53:53 zone example.com.", destination="hosted", now=NOW,
    )  # fmt: skip
    assert [s.state for s in run.steps] == ["planned"] * 3 and run.state == "running"
    assert run.next_step is not None and run.next_step.kind == "tlsrpt"
    for seq, state in ((0, "intended"), (0, "done"), (0, "verified"), (1, "intended")):
        journal.mark_step(run.id, seq, state, now=NOW + timedelta(seconds=seq))
    journal.mark_step(run.id, 1, "failed", now=NOW, error="HTTP 429", outcome={"answer": "429"})
    journal.mark_run(run.id, "failed", now=NOW, error="step 2 failed")
    again = journal.open_run("example.com")
    assert again is not None and again.id == run.id and again.state == "failed"
    first, second, _ = again.steps
    assert first.intended_at == NOW and first.verified_at == NOW
    assert (second.state, second.error, second.outcome) == ("failed", "HTTP 429", {"answer": "429"})
    assert again.next_step is not None and again.next_step.seq == 1
    with pytest.raises(Exception, match="unknown step state"):
        journal.mark_step(run.id, 0, "bogus", now=NOW)


def test_a_new_plan_abandons_the_open_run(store: Store) -> None:
    journal = PublishJournal(store)
    kw = {"actor": "a", "reason": "", "dns": "d", "destination": "hosted", "now": NOW}
    old = journal.start("example.com", action="testing", steps=steps_for("example.com"), **kw)  # type: ignore[arg-type]
    other = journal.start("other.com", action="testing", steps=steps_for("other.com"), **kw)  # type: ignore[arg-type]
    new = journal.start(
        "example.com", action="enforce", steps=steps_for("example.com", "enforce"), **kw
    )  # type: ignore[arg-type]
    assert journal.get(old.id).state == "abandoned"
    assert journal.get(other.id).state == "running"  # another domain's run is untouched
    assert [r.id for r in journal.runs("example.com")] == [new.id, old.id]
    journal.mark_run(new.id, "done", now=NOW)
    assert journal.open_run("example.com") is None


def test_many_runs_at_once_as_one_each(store: Store) -> None:
    """The bulk hosted-sync's journal: many runs written and moved on together, each the same
    as one ``start`` and its ``mark_step`` calls would make."""
    journal = PublishJournal(store)
    old = journal.start(
        "a.example", action="testing", steps=steps_for("a.example"), actor="alice", reason="",
        dns="x", destination="hosted", now=NOW,
    )  # fmt: skip
    domains = ["a.example", "b.example", "c.example"]
    runs = [
        {"domain": d, "action": "hosted-sync", "steps": steps_for(d)[1:], "actor": "bob (cli)",
         "reason": "bulk", "dns": "x", "destination": "hosted-delegation"}
        for d in domains
    ]  # fmt: skip
    ids = journal.start_many(runs, now=NOW)
    assert journal.get(old.id).state == "abandoned"  # superseded, as by ``start``
    later = NOW + timedelta(seconds=5)
    journal.mark_steps([(i, 0) for i in ids], "verified", now=later,
                       outcomes=[{"policy_id": d} for d in domains])  # fmt: skip
    journal.mark_steps([(i, 1) for i in ids[:2]], "failed", now=later, error="refused")
    journal.finish_many(ids[:2], "failed", now=later, error="resume")
    journal.mark_run(ids[2], "abandoned", now=later)
    journal.finish_many(ids, "done", now=later)  # only runs still running move on
    assert journal.states(ids) == dict(zip(ids, ["failed", "failed", "abandoned"], strict=True))
    for run_id, domain in zip(ids, domains, strict=True):
        run = journal.get(run_id)
        assert (run.domain, run.action, run.actor) == (domain, "hosted-sync", "bob (cli)")
        first, second = run.steps
        assert first.state == "verified" and first.verified_at == later
        assert first.outcome == {"policy_id": domain}
        assert second.state == ("failed" if run_id != ids[2] else "planned")
    reopened = journal.open_run("a.example")  # the failed bulk run, for publish resume
    assert reopened is not None and reopened.id == ids[0]


def test_served_max_ages_come_from_verified_policy_steps(store: Store) -> None:
    journal = PublishJournal(store)
    kw = {"actor": "a", "reason": "", "dns": "d", "destination": "hosted", "now": NOW}
    for mode, age in (("testing", 86400), ("enforce", 604800)):
        run = journal.start(
            "example.com", action=mode, steps=steps_for("example.com", mode, age), **kw
        )  # type: ignore[arg-type]
        journal.mark_step(run.id, 1, "verified", now=NOW)
        journal.mark_run(run.id, "done", now=NOW)
    run = journal.start(
        "example.com", action="x", steps=steps_for("example.com", "testing", 9), **kw
    )  # type: ignore[arg-type]
    journal.mark_step(run.id, 1, "done", now=NOW)  # served but never verified: not counted
    assert sorted(age for age, _ in journal.served_policies("example.com")) == [86400, 604800]


async def test_the_api_lists_the_journal(client: httpx.AsyncClient, world: World) -> None:
    journal = PublishJournal(world.store)
    for domain in ("example.com", "globex.test"):
        run = journal.start(
            domain, action="testing", steps=steps_for(domain), actor="alice (cli)",
            reason="first policy", dns="rfc2136", destination="hosted", now=world.clock(),
        )  # fmt: skip
        journal.mark_step(run.id, 0, "verified", now=world.clock())
    auth = world.auth("alice")
    r = await client.get("/api/domains/example.com/journal", headers=auth)
    assert r.status_code == 200, r.text
    (only,) = r.json()
    assert (only["action"], only["state"], only["reason"]) == ("testing", "running", "first policy")
    assert [s["state"] for s in only["steps"]] == ["verified", "planned", "planned"]
    assert only["steps"][0]["title"].startswith("set _smtp._tls.example.com. TXT")
    assert (await client.get("/api/domains/globex.test/journal", headers=auth)).status_code == 404
    admin = await client.get("/api/domains/globex.test/journal", headers=world.auth("root"))
    assert [r["domain"] for r in admin.json()] == ["globex.test"]
    assert (await client.get("/api/domains/example.com/journal")).status_code == 401


async def test_the_domain_page_shows_the_journal(world: World) -> None:
    from stspilot.web import pages
    from stspilot.web.app import create_app
    from web_support import client_for, login

    journal = PublishJournal(world.store)
    run = journal.start(
        "example.com", action="enforce", steps=steps_for("example.com", "enforce"),
        actor="alice (cli)", reason="forced past the enforce gate: <pilot>", dns="rfc2136",
        destination="hosted", now=world.clock(),
    )  # fmt: skip
    journal.mark_step(run.id, 0, "verified", now=world.clock())
    journal.mark_step(run.id, 1, "failed", now=world.clock(), error="HTTP 429 Too Many Requests")
    app = create_app(world.settings, world.store, routers=[pages.router], clock=world.clock)
    async with client_for(app) as dash:
        assert (await login(dash, "alice")).status_code == 303
        html = (await dash.get("/domains/example.com")).text
    section = html.split('id="journal"', 1)[1].split("</section>", 1)[0]
    assert "enforce" in section and "alice (cli)" in section
    assert "&lt;pilot&gt;" in section  # escaped
    assert "set _smtp._tls.example.com. TXT" in section and "HTTP 429" in section
