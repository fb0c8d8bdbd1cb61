"""The inventory's reads: each report's authenticity stored with its rows (one rule, the same
from ingest and from migration 0009's backfill), the gate's volume-jump rule unchanged by its
fast path, sorting and CSV export over the whole filtered inventory, and the access log's
client behind a trusted proxy."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select

from dashboard_seed import save_check
from stspilot.ingest.mail import DkimVerdict, Envelope
from stspilot.rollout.evidence import DailyTotal
from stspilot.rollout.gate import JUMP_FACTOR, volume_jumps
from stspilot.store import NewReport, Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.store.rows import AUTHENTICATED, authenticity
from stspilot.store.schema import failure_details, report_policies, reports
from stspilot.store.versions import MIGRATIONS
from stspilot.tlsrpt.reports import parse_report
from stspilot.web import inventory, pages
from stspilot.web.app import create_app
from web_support import World, client_for, make_app

pytestmark = pytest.mark.db

ORIGINS = (
    "smtp:192.0.2.1",
    "imap://reports@mail.example/INBOX;UID=7",
    "https:198.51.100.7",
    "HTTPS:file-named-like-a-post.json",
    "/imports/one.json",
    "stdin",
    "Smtp:upper.eml",
)


def envelope(result: str | None) -> Envelope:
    return Envelope(
        tls_report_domain="sender.example", tls_report_submitter="sender.example",
        subject="Report Domain: d.example", subject_domain="d.example",
        subject_submitter="sender.example", subject_report_id="x", message_id="<m@x>",
        from_addr="tlsrpt@sender.example", date=None, dkim_signed=result is not None,
        dkim_domains=("sender.example",) if result else (), dkim_covers_tlsrpt_headers=True,
        dkim=None if result is None else DkimVerdict(result, "sender.example", "s1", True),
    )  # fmt: skip


ENVELOPES: tuple[Any, ...] = (
    None,
    envelope(None),
    envelope("pass"),
    envelope("fail"),
    {"dkim": {"result": "pass"}},
    {"dkim": {"result": "none"}},
    {"note": "no dkim member"},
)


def report_body(rid: str, day: date) -> bytes:
    body = {
        "organization-name": "Sender",
        "date-range": {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"},
        "contact-info": "tlsrpt@sender.example",
        "report-id": rid,
        "policies": [
            {
                "policy": {"policy-type": "sts", "policy-domain": "d.example"},
                "summary": {
                    "total-successful-session-count": 10,
                    "total-failure-session-count": 1,
                },
                "failure-details": [
                    {"result-type": "certificate-expired", "failed-session-count": 1}
                ],
            }
        ],
    }
    return json.dumps(body).encode()


def store_every_kind(store: Store, world_now: Any) -> dict[int, str]:
    """One report per (origin, envelope); returns report pk -> the rule's class."""
    items, expected = [], []
    for i, origin in enumerate(ORIGINS):
        for j, env in enumerate(ENVELOPES):
            raw = report_body(f"r-{i}-{j}", world_now.date() - timedelta(days=1))
            items.append(NewReport(parse_report(raw), raw, origin, world_now, envelope=env))
            dkim = (
                env.get("dkim", {}).get("result")
                if isinstance(env, dict)
                else (env.dkim.result if env is not None and env.dkim is not None else None)
            )
            expected.append(authenticity(origin, dkim))
    added = store.add_reports(items, dedup_raw=False)
    return {a.report_pk: kind for a, kind in zip(added, expected, strict=True)}


def stored_classes(store: Store) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    with store.engine.connect() as conn:
        for table, key in (
            (reports, reports.c.id),
            (report_policies, report_policies.c.report_pk),
            (failure_details, failure_details.c.report_pk),
        ):
            out[table.name] = dict(conn.execute(select(key, table.c.authenticity)).all())
    return out


def test_the_rule() -> None:
    assert authenticity("https:198.51.100.7", "pass") == "https"  # a POST is never mail
    assert authenticity("smtp:192.0.2.1", "pass") == "dkim"
    assert authenticity("smtp:192.0.2.1", "fail") == "mail"
    assert authenticity("imap://x", None) == "mail"
    assert authenticity("/imports/a.eml", "pass") == "dkim"
    assert authenticity("/imports/a.json", None) == "operator"
    assert authenticity("HTTPS:odd-file-name", None) == "https"  # never the other way round
    assert {"dkim", "operator"} == AUTHENTICATED


def test_ingest_and_the_migration_backfill_agree(store_url: str, store: Store) -> None:
    """Every kind of report gets the rule's class on the report and each of its rows at
    ingest; taking migration 0009 down and up again backfills exactly the same."""
    from datetime import UTC, datetime

    expected = store_every_kind(store, datetime.now(UTC))
    assert set(expected.values()) == {"dkim", "operator", "https", "mail"}
    written = stored_classes(store)
    for table in ("reports", "report_policies", "failure_details"):
        assert written[table] == expected, table
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
        conn.commit()
        gone = {c["name"] for c in inspect(conn).get_columns("report_policies")}
        assert "authenticity" not in gone
        command.upgrade(config, "0009")
        conn.commit()
    assert stored_classes(store) == written


def old_volume_jumps(totals: list[DailyTotal]) -> tuple[str, ...]:
    """The rule before its fast path (rollout/gate.py at main), for comparison."""
    per: dict[str, Counter[date]] = {}
    for t in totals:
        per.setdefault(t.organization, Counter())[t.day] += t.successful + t.failed
    out: list[str] = []
    for org, days in sorted(per.items()):
        others = [n for o, d in per.items() if o != org for n in d.values() if n]
        for day, n in sorted(days.items()):
            rest = [v for d, v in days.items() if d != day and v]
            ordered = sorted(rest or others)
            mid = len(ordered) // 2
            usual = (
                0.0
                if not ordered
                else float(ordered[mid])
                if len(ordered) % 2
                else (ordered[mid - 1] + ordered[mid]) / 2
            )
            if usual and n > JUMP_FACTOR * usual:
                out.append(f"{org}: {n:,} sessions on {day} (usually about {usual:,.0f})")
    return tuple(out)


def test_volume_jumps_fast_path_changes_no_verdict() -> None:
    rng = random.Random(15)
    start = date(2026, 11, 1)
    jumped = 0
    for _ in range(2_000):
        totals = [
            DailyTotal(
                start + timedelta(days=rng.randrange(14)),
                f"org{rng.randrange(4)}",
                rng.choice([0, 1, 5, 50, 1_000, 10**5, 10**7]) * rng.randrange(0, 3),
                rng.randrange(0, 3),
            )
            for _ in range(rng.randrange(0, 30))
        ]
        assert volume_jumps(totals) == old_volume_jumps(totals)
        jumped += bool(old_volume_jumps(totals))
    assert jumped > 50  # the slow path was exercised too


# --- sorting and exporting the whole inventory -----------------------------------------------


@pytest.fixture
def many(world: World) -> World:
    """acme hosts 24 more domains: sessions 0, 10, 20, ... from reports of yesterday."""
    acme = Accounts(world.store).tenant("acme")
    hosting = HostedPolicies(world.store)
    now = world.clock()
    day = (now - timedelta(days=1)).date()
    items = []
    for i in range(24):
        name = f"n{i:02d}.example"
        hosting.add(name, tenant_id=acme.id, mode="testing", mx=[f"mx1.{name}"], now=now)
        save_check(world.store, name, now, mx=(f"mx1.{name}",), cert_days=100 - i)
        if i:
            body = json.loads(report_body(f"s-{i}", day))
            body["policies"][0]["policy"]["policy-domain"] = name
            body["policies"][0]["summary"]["total-successful-session-count"] = 10 * i
            body["policies"][0]["summary"]["total-failure-session-count"] = 0
            body["policies"][0]["failure-details"] = []
            raw = json.dumps(body).encode()
            items.append(NewReport(parse_report(raw), raw, "/imports/x.json", now))
    world.store.add_reports(items)
    return world


def listed(html: str) -> list[str]:
    return re.findall(r'<td[^>]*><a href="/domains/([^"#]+)">', html)


async def test_sorting_and_csv_cover_every_matching_domain(many: World) -> None:
    app = create_app(many.settings, many.store, routers=[pages.router], clock=many.clock)
    auth = many.auth("alice")
    async with client_for(app) as client:
        first = await client.get("/?sort=sessions&order=desc&per=10", headers=auth)
        second = await client.get("/?sort=sessions&order=desc&per=10&page=2", headers=auth)
        by_cert = await client.get("/?sort=cert&per=10", headers=auth)
        exported = await client.get("/domains.csv?sort=sessions&order=desc", headers=auth)
        filtered = await client.get("/domains.csv?q=n1&sort=domain&order=desc", headers=auth)
    # The busiest domains of all 25, not the first page's domains reordered.
    assert listed(first.text) == [f"n{i:02d}.example" for i in range(23, 13, -1)]
    assert listed(second.text) == [f"n{i:02d}.example" for i in range(13, 3, -1)]
    assert 'aria-sort="descending"' in first.text and "order=asc" in first.text
    assert listed(by_cert.text)[0] == "n23.example"  # 77 days, the soonest of all
    assert "sort=sessions&amp;order=desc&page=2" in first.text  # the pager keeps the order
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 25 and rows[0]["Domain"] == "n23.example"
    assert [int(r["Sessions"]) for r in rows[:3]] == [230, 220, 210]
    assert rows[0]["Enforce gate"] and rows[0]["Stage"] == "testing"
    names = [r["Domain"] for r in csv.DictReader(io.StringIO(filtered.text))]
    assert names == [f"n{i:02d}.example" for i in range(19, 9, -1)]


async def test_a_formula_in_a_cell_is_quoted() -> None:
    assert inventory.csv_field("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert inventory.csv_field("-12") == "-12"
    assert inventory.csv_field("example.com") == "example.com"


# --- the access log ----------------------------------------------------------------------------


async def test_the_access_log_names_the_client_behind_a_trusted_proxy(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(world)  # loopback is a trusted proxy by default
    with caplog.at_level("INFO", logger="stspilot.access"):
        async with client_for(app, peer="127.0.0.1") as proxied:
            await proxied.get(
                "/api/me", headers={**world.auth("alice"), "x-forwarded-for": "203.0.113.9"}
            )
        async with client_for(
            app, peer="192.0.2.44"
        ) as direct:  # not a proxy: its word is not taken
            await direct.get(
                "/api/me", headers={**world.auth("alice"), "x-forwarded-for": "203.0.113.10"}
            )
    clients = [r.request["client"] for r in caplog.records if r.name == "stspilot.access"]  # type: ignore[attr-defined]
    assert clients == ["203.0.113.9", "192.0.2.44"]


def test_report_windows_apply_each_domains_own_hosting_period(store: Store) -> None:
    """Two domains, each with its own start (one CASE on the row's domain): each keeps the
    reports received since its own start; a domain left out of the mapping keeps all."""
    from datetime import UTC, datetime

    from stspilot.store.dashboard import DashboardReads

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    items = []
    for name in ("a.example", "b.example", "c.example"):
        for back in range(1, 7):  # covered day now-back, received at noon the day after
            body = json.loads(report_body(f"{name}-{back}", (now - timedelta(days=back)).date()))
            body["policies"][0]["policy"]["policy-domain"] = name
            raw = json.dumps(body).encode()
            received = now - timedelta(days=back - 1, hours=12)
            items.append(NewReport(parse_report(raw), raw, "/imports/x.json", received))
    store.add_reports(items)
    starts = {"a.example": now - timedelta(days=2), "b.example": now - timedelta(days=4)}
    windows = DashboardReads(store).report_windows(
        ["a.example", "b.example", "c.example"],
        since=now - timedelta(days=10),
        until=now,
        received_since=starts,
    )
    days = {d: sorted(t.day for t in w.totals) for d, w in windows.items()}
    today = now.date()
    # Received at noon of day now-(back-1): since now-2d keeps back 1, 2; since now-4d 1..4.
    assert days["a.example"] == [today - timedelta(days=b) for b in (2, 1)]
    assert days["b.example"] == [today - timedelta(days=b) for b in (4, 3, 2, 1)]
    assert len(days["c.example"]) == 6
    failures = {d: len(w.failures) for d, w in windows.items()}
    assert failures == {"a.example": 2, "b.example": 4, "c.example": 6}


async def test_every_order_of_a_page_is_the_exports_order(many: World) -> None:
    """A sorted page (sorted on what its order needs) shows the same domains, in the same
    order, as the first rows of the export (sorted on the whole lines), for every column."""
    app = create_app(many.settings, many.store, routers=[pages.router], clock=many.clock)
    auth = many.auth("alice")
    async with client_for(app) as client:
        for key in inventory.SORT_KEYS:
            for order in ("asc", "desc"):
                shown = await client.get(f"/?sort={key}&order={order}&per=10", headers=auth)
                exported = await client.get(f"/domains.csv?sort={key}&order={order}", headers=auth)
                rows = [r["Domain"] for r in csv.DictReader(io.StringIO(exported.text))]
                assert listed(shown.text) == rows[:10], (key, order)
                assert len(rows) == 25


def test_gate_windows_decide_as_report_windows_do(store: Store) -> None:
    """The inventory reads its windows per day (``gate_windows``): for every domain, with and
    without a hosting period, the gate's stage, verdict and failing criteria, the sessions,
    failures and daily series are those of the full ``report_windows``."""
    from datetime import UTC, datetime

    from stspilot.rollout.assess import assess_gate
    from stspilot.rollout.evidence import LiveState, MxState
    from stspilot.store.dashboard import DashboardReads

    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    rng = random.Random(8460)
    names = [f"g{i}.example" for i in range(12)]
    items = []
    for n, name in enumerate(names):
        for k in range(rng.randint(0, 9) + (6 if n < 3 else 0)):
            day = (now - timedelta(days=rng.randint(0, 14))).date()
            clean = n < 3  # an operator's imports without failures: these can pass
            ok, bad = rng.choice((0, 3, 40, 900)), 0 if clean else rng.choice((0, 0, 1, 7))
            mxs = ("", f"mx1.{name}", f"MX1.{name.upper()}.", "gone.example")
            details: list[dict[str, Any]] = []
            for _ in range(0 if clean else rng.choice((0, 0, 1, 2, 3))):
                detail = {
                    "result-type": rng.choice(("certificate-expired", "starttls-not-supported")),
                    "failed-session-count": rng.choice((0, 1, 5)),
                }
                mx = rng.choice(mxs)
                if mx:  # Microsoft and Mail.ru leave the receiving MX out
                    detail["receiving-mx-hostname"] = mx
                details.append(detail)
            body = {
                "organization-name": rng.choice(("Google", "Microsoft", "Mail.ru")),
                "date-range": {
                    "start-datetime": f"{day}T00:00:00Z",
                    "end-datetime": f"{day}T23:59:59Z",
                },
                "contact-info": "tlsrpt@sender.example",
                "report-id": f"{name}-{k}",
                "policies": [
                    {
                        "policy": {"policy-type": "sts", "policy-domain": name},
                        "summary": {
                            "total-successful-session-count": ok,
                            "total-failure-session-count": bad,
                        },
                        "failure-details": details,
                    }
                ],
            }
            raw = json.dumps(body).encode()
            received = now - timedelta(days=rng.randint(0, 10), hours=n)
            origin = "/imports/clean.json" if clean else rng.choice(ORIGINS)
            items.append(NewReport(parse_report(raw), raw, origin, received))
    store.add_reports(items, dedup_raw=False)
    reads = DashboardReads(store)
    window: dict[str, Any] = {"since": now - timedelta(days=15), "until": now}
    periods = {name: now - timedelta(days=rng.randint(0, 12)) for name in names[::2]}
    seen: Counter[tuple[str, bool]] = Counter()
    for received_since in (None, periods):
        full = reads.report_windows(names, received_since=received_since, **window)
        coarse = reads.gate_windows(names, received_since=received_since, **window)
        for name in names:
            live = LiveState(
                name, now, sts_id="1", mode="testing", mx_patterns=(f"mx1.{name}",),
                tlsrpt_rua=(f"mailto:r@{name}",),
                mx=(MxState(f"mx1.{name}", covered_by=f"mx1.{name}", tls_ok=True),),
            )  # fmt: skip
            a, b = (assess_gate(live, w[name], now=now, gate_days=7) for w in (full, coarse))
            assert (b.stage, b.ready) == (a.stage, a.ready), name
            assert [c.passed for c in b.gate] == [c.passed for c in a.gate], name
            series = [
                inventory.window_series(w[name], last=now.date(), days=14) for w in (full, coarse)
            ]
            assert series[0] == series[1], name
            sums = [
                (sum(t.successful for t in w[name].totals), sum(t.failed for t in w[name].totals))
                for w in (full, coarse)
            ]
            assert sums[0] == sums[1], name
            seen[(str(a.stage), a.ready)] += 1
    # The data reach the cases that matter: clean and failing, ready and not.
    assert {s for s, _ in seen} >= {"testing", "fixing"}, seen
    assert {r for _, r in seen} == {True, False}, seen
