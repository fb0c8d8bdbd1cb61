"""The JSON API: hosted domains (create, validate, edit), report intake through the app and the
report, summary, check and rollout views, accounts for admins, the OpenAPI description."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from intake_samples import report_json
from web_support import World, client_for, make_app

pytestmark = pytest.mark.db

GZIP = {"content-type": "application/tlsrpt+gzip"}


async def test_create_domain(client: httpx.AsyncClient, world: World) -> None:
    body = {"domain": "New.Example.NET.", "mode": "testing", "mx": ["MX.example.net."]}
    r = await client.post("/api/domains", json=body, headers=world.auth("alice"))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["domain"] == "new.example.net" and made["tenant"] == "acme"
    assert made["mx"] == ["mx.example.net"] and made["max_age"] == 86400
    assert made["policy"] == "version: STSv1\nmode: testing\nmx: mx.example.net\nmax_age: 86400\n"
    assert made["publish"]["records"] == [
        {
            "name": "_mta-sts.new.example.net.",
            "type": "TXT",
            "value": f"v=STSv1; id={made['policy_id']}",
        }
    ]
    listed = (await client.get("/api/domains", headers=world.auth("alice"))).json()
    assert [d["domain"] for d in listed] == ["example.com", "new.example.net"]
    dup = await client.post("/api/domains", json=body, headers=world.auth("root"))
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"domain": "a.test", "mode": "enforce", "mx": []}, 422),  # enforce needs mx (§3.2)
        ({"domain": "a.test", "mx": ["mx*.a.test"]}, 422),  # a wildcard only as "*."
        ({"domain": "a.test", "mx": ["*.*.a.test"]}, 422),
        ({"domain": "a.test", "mode": "strict", "mx": ["mx.a.test"]}, 422),
        ({"domain": "a.test", "mx": ["mx.a.test"], "max_age": 31557601}, 422),
        ({"domain": "a.test", "mx": ["mx.a.test"], "max_age": -1}, 422),
        ({"domain": "localhost", "mx": ["mx.a.test"]}, 422),  # one label
        ({"domain": "-bad-.test", "mx": ["mx.a.test"]}, 422),
        ({"domain": "a_b.test", "mx": ["mx.a.test"]}, 422),
        ({"domain": "a.test", "mode": "none"}, 201),  # mode none may list no mx
        ({"domain": "a.test", "mx": ["*.a.test"], "max_age": 0}, 201),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, world: World, body: dict[str, Any], status: int
) -> None:
    r = await client.post("/api/domains", json=body, headers=world.auth("alice"))
    assert r.status_code == status, r.text
    if status == 422:
        assert (
            await client.get("/api/domains/a.test", headers=world.auth("alice"))
        ).status_code == 404


async def test_admin_creates_for_a_tenant(client: httpx.AsyncClient, world: World) -> None:
    body = {"domain": "ops.test", "mx": ["mx.ops.test"], "tenant": "globex"}
    r = await client.post("/api/domains", json=body, headers=world.auth("root"))
    assert r.status_code == 201 and r.json()["tenant"] == "globex"
    names = [
        d["domain"] for d in (await client.get("/api/domains", headers=world.auth("gina"))).json()
    ]
    assert names == ["globex.test", "ops.test"]
    # A non-admin cannot place a domain in another tenant.
    body = {"domain": "sneaky.test", "mx": ["mx.sneaky.test"], "tenant": "globex"}
    assert (
        await client.post("/api/domains", json=body, headers=world.auth("alice"))
    ).status_code == 404


async def test_reports_through_the_app(client: httpx.AsyncClient, world: World) -> None:
    auth = world.auth("alice")
    body = gzip.compress(report_json("Google Inc.", "r-1", failures=2))
    r = await client.post("/tlsrpt", content=body, headers=GZIP)
    assert r.status_code == 201, r.text  # 2xx only after the commit
    again = await client.post("/tlsrpt", content=body, headers=GZIP)
    assert again.status_code == 200  # a retry of a stored report
    listed = (await client.get("/api/domains/example.com/reports", headers=auth)).json()
    assert len(listed) == 1 and listed[0]["organization_name"] == "Google Inc."
    assert listed[0]["failed_sessions"] == 3
    detail = await client.get(f"/api/reports/{listed[0]['id']}", headers=auth)
    assert detail.status_code == 200
    assert detail.json()["report"]["report_id"] == "r-1"
    summary = (await client.get("/api/domains/example.com/summary", headers=auth)).json()
    assert (summary["reports"], summary["successful"], summary["failed"]) == (1, 100, 3)
    assert {r["result_type"] for r in summary["result_types"]} == {"certificate-expired"}
    assert (await client.get("/api/reports/999999", headers=auth)).status_code == 404


async def test_checks_and_rollout(client: httpx.AsyncClient, world: World) -> None:
    auth = world.auth("alice")
    assert (await client.get("/api/domains/example.com/rollout", headers=auth)).status_code == 404
    result = {
        "effective": {"usable": True, "mode": "testing", "reason_code": "", "reason": ""},
        "sts_record": {"id": "20261101000000", "extensions": {}},
        "policy": {
            "version": "STSv1",
            "mode": "testing",
            "max_age": 86400,
            "mx": ["mx1.example.com", "mx2.example.com"],
            "extensions": {},
        },
        "tlsrpt": {"state": "valid", "rua": ["mailto:tlsrpt@example.com"], "extensions": {}},
        "mx": [
            {
                "host": "mx1.example.com",
                "covered_by": "mx1.example.com",
                "tls_ok": True,
                "probe_outcome": "ok",
                "days_to_expiry": 60,
                "findings": [],
            },
        ],
        "findings": [],
    }
    world.store.save_check(
        domain="example.com",
        observed_at=world.clock(),
        stage="testing",
        mode="testing",
        worst_severity=None,
        findings_count=0,
        policy_id="20261101000000",
        policy_sha256="ab",
        mx_set=["mx1.example.com"],
        result=result,
    )
    checks = (await client.get("/api/domains/example.com/checks", headers=auth)).json()
    assert [c["stage"] for c in checks] == ["testing"]
    world.store.save_check(
        domain="example.com",
        observed_at=world.clock() - timedelta(days=1),
        stage="reporting",
        mode=None,
        worst_severity=None,
        findings_count=0,
        policy_id=None,
        policy_sha256=None,
        mx_set=["mx1.example.com"],
        result={},
    )
    checks = (await client.get("/api/domains/example.com/checks", headers=auth)).json()
    assert [c["stage"] for c in checks] == ["testing", "reporting"]  # newest first
    one = (await client.get("/api/domains/example.com/checks?limit=1", headers=auth)).json()
    assert [c["stage"] for c in one] == ["testing"]
    latest = (await client.get("/api/domains/example.com/checks/latest", headers=auth)).json()
    assert latest["result"]["policy"]["mode"] == "testing"
    r = await client.get("/api/domains/example.com/rollout", headers=auth)
    assert r.status_code == 200, r.text
    assessment = r.json()
    assert assessment["stage"] in {"testing", "fixing"}
    assert {c["name"] for c in assessment["gate"]} >= {"reports-clean"}
    bad = await client.get("/api/domains/example.com/rollout?days=3&gate_days=7", headers=auth)
    assert bad.status_code == 422


async def test_open_alerts_of_a_domain(client: httpx.AsyncClient, world: World) -> None:
    from stspilot.findings import Severity
    from stspilot.monitor.alerts import Alert
    from stspilot.store.monitor import MonitorStore

    schedule = MonitorStore(world.store)
    for domain in ("example.com", "globex.test"):
        alert = Alert(f"{domain}|mx.uncovered|mx9", Severity.ERROR, domain, "mx.uncovered",
                      f"{domain}: MX mx9.{domain} is not covered by the policy.", True)  # fmt: skip
        schedule.record_alerts(domain, [alert], now=world.clock(), sent=[])
    auth = world.auth("alice")
    r = await client.get("/api/domains/example.com/alerts", headers=auth)
    assert r.status_code == 200, r.text
    (only,) = r.json()
    assert (only["code"], only["severity"], only["lasting"]) == ("mx.uncovered", "error", True)
    assert only["last_sent_at"] is None and "mx9.example.com" in only["message"]
    other = await client.get("/api/domains/globex.test/alerts", headers=auth)
    assert other.status_code == 404  # another tenant's domain is like an unknown one
    admin = await client.get("/api/domains/globex.test/alerts", headers=world.auth("root"))
    assert [a["code"] for a in admin.json()] == ["mx.uncovered"]


async def test_admin_only_account_routes(client: httpx.AsyncClient, world: World) -> None:
    assert (await client.get("/api/tenants", headers=world.auth("alice"))).status_code == 403
    assert (
        await client.post("/api/tenants", json={"name": "x"}, headers=world.auth("alice"))
    ).status_code == 403
    made = await client.post("/api/tenants", json={"name": "initech"}, headers=world.auth("root"))
    assert made.status_code == 201
    user = {"name": "peter", "password": "tps reports 99", "tenant": "initech"}
    assert (
        await client.post("/api/users", json=user, headers=world.auth("root"))
    ).status_code == 201
    names = {u["name"] for u in (await client.get("/api/users", headers=world.auth("root"))).json()}
    assert names == {"alice", "gina", "root", "peter"}
    assert "password" not in str(
        (await client.get("/api/users", headers=world.auth("root"))).json()
    )
    dup = await client.post("/api/users", json=user, headers=world.auth("root"))
    assert dup.status_code == 409


async def test_openapi(client: httpx.AsyncClient, world: World) -> None:
    assert (await client.get("/api/openapi.json")).status_code == 401
    spec = (await client.get("/api/openapi.json", headers=world.auth("alice"))).json()
    paths = set(spec["paths"])
    assert {
        "/api/domains",
        "/api/domains/{domain}",
        "/api/domains/{domain}/sync-mx",
        "/api/domains/{domain}/reports",
        "/api/domains/{domain}/rollout",
        "/api/tokens",
    } <= paths
    assert not any(p.startswith(("/login", "/ask", "/tlsrpt")) for p in paths)


async def test_smtp_receiver_runs_inside_the_app(world: World) -> None:
    """With smtp_listen set, the app's lifespan runs the SMTP receiver in the same process."""
    import asyncio
    import smtplib

    from intake_samples import report_mail

    app = make_app(
        world, smtp_listen=("127.0.0.1", 0), smtp_domains=frozenset({"reports.example.com"})
    )
    mail = report_mail(report_json("Mail Org", "smtp-1"))

    def send(port: int) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
            return smtp.sendmail("noreply@sender.example", ["tlsrpt@reports.example.com"], mail)

    async with app.router.lifespan_context(app):
        host, port = app.state.smtp_address
        assert host == "127.0.0.1" and port > 0
        refused = await asyncio.to_thread(send, port)
        assert refused == {}  # 250: stored before the answer
        async with client_for(app) as c:
            listed = await c.get("/api/domains/example.com/reports", headers=world.auth("alice"))
        assert [r["report_id"] for r in listed.json()] == ["smtp-1"]
    # DKIM is verified by default, as by `stspilot receive` (this sample mail is unsigned).
    stored = world.store.get_report(listed.json()[0]["id"])
    assert stored is not None and stored.envelope is not None
    assert stored.envelope["dkim"]["result"] == "none"


async def test_check_now_against_the_lab(world: World) -> None:
    """POST /check runs a live check (here against the loopback lab) and stores it."""
    from stspilot.check.run import CheckOptions
    from stspilot.lab.scenarios import BY_DOMAIN
    from stspilot.lab.world import start_lab

    lab = await start_lab([BY_DOMAIN["testing-ok.test"]])
    try:
        info = lab.info
        options = CheckOptions(
            nameserver=info.nameserver,
            dns_port=info.dns_port,
            ca_file=info.ca_file,
            port_map=info.port_map,
            deadline=20.0,
        )
        app = make_app(world, check_options=options)
        async with client_for(app) as c:
            # Not alice's domain: refused like an unknown one, before any probe runs.
            denied = await c.post("/api/domains/testing-ok.test/check", headers=world.auth("alice"))
            assert denied.status_code == 404
            r = await c.post("/api/domains/testing-ok.test/check", headers=world.auth("root"))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["domain"] == "testing-ok.test" and body["mode"] == "testing"
            assert body["result"]["policy"]["mode"] == "testing" and body["mx_set"]
            rollout = await c.get(
                "/api/domains/testing-ok.test/rollout", headers=world.auth("root")
            )
            assert rollout.status_code == 200 and rollout.json()["stage"] in {"testing", "fixing"}
            bad = await c.post("/api/domains/not a domain/check", headers=world.auth("root"))
            assert bad.status_code == 422
            # an IP literal is no domain (sts.names): refused before any probe
            ip = await c.post("/api/domains/127.0.0.1/check", headers=world.auth("root"))
            assert ip.status_code == 422 and "IP address" in ip.text
    finally:
        await lab.stop()


async def test_check_now_guards_private_targets(world: World) -> None:
    """Service mode (the default options): the SSRF guard keeps probes off private addresses;
    the domain's problems come back as a stored check with findings, never a 500."""
    from stspilot.check.run import CheckOptions
    from stspilot.lab.scenarios import BY_DOMAIN
    from stspilot.lab.world import start_lab

    lab = await start_lab([BY_DOMAIN["testing-ok.test"]])
    try:
        info = lab.info
        guarded = CheckOptions(
            nameserver=info.nameserver,
            dns_port=info.dns_port,
            ca_file=info.ca_file,
            port_map=info.port_map,
            allow_private=False,
            deadline=20.0,
        )
        app = make_app(world, check_options=guarded)
        async with client_for(app) as c:
            r = await c.post("/api/domains/testing-ok.test/check", headers=world.auth("root"))
        assert r.status_code == 200, r.text
        assert r.json()["result"]["policy"] is None  # the loopback policy host was not fetched
        codes = {f["code"] for f in r.json()["result"]["findings"]}
        assert {"sts.policy.blocked", "mx.blocked"} <= codes  # nor its MX host probed
    finally:
        await lab.stop()


async def test_imap_polling_runs_inside_the_app(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With imap_config set, the app's lifespan polls the mailbox (real Dovecot on loopback)."""
    import asyncio
    import contextlib

    from imap_server import USERS, run_dovecot
    from intake_samples import report_mail

    with contextlib.ExitStack() as stack:
        try:
            dovecot = stack.enter_context(run_dovecot())
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
        user = USERS[-1]
        dovecot.append(user, "INBOX", report_mail(report_json("Imap Org", "imap-1")))
        config = tmp_path / "imap.toml"
        config.write_text(
            f'[imap]\nhost = "127.0.0.1"\nport = {dovecot.port}\ntls = "none"\nuser = "{user}"\n'
        )
        monkeypatch.setenv("STSPILOT_IMAP_PASSWORD", dovecot.password)
        app = make_app(world, imap_config=config, imap_interval=0.2)
        async with app.router.lifespan_context(app):
            for _ in range(100):
                if world.store.count_reports():
                    break
                await asyncio.sleep(0.1)
        assert [r.report_id for r in world.store.list_reports()] == ["imap-1"]
        assert dovecot.uids(user, "INBOX") == []  # moved only after the commit


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """No login needed, nothing about tenants told; readiness reaches the database."""
    live = await client.get("/healthz")
    assert (live.status_code, live.text) == (200, "ok\n")
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")


async def test_readiness_fails_without_the_database(world: World) -> None:
    from stspilot.store import Store
    from stspilot.web.app import create_app

    # Nothing listens on port 1: the store opens (lazily) but cannot reach its database.
    gone = Store.open(
        "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2", migrate=False
    )
    try:
        app = create_app(world.settings, gone, routers=[], clock=world.clock)
        async with client_for(app) as c:
            assert (await c.get("/healthz")).status_code == 200  # the process still serves
            r = await c.get("/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "the database is not reachable"  # no URL, no driver text
    finally:
        gone.close()


async def test_metrics_for_the_operator(world: World) -> None:
    """Prometheus text format, every figure from the database; loopback scrapers only."""
    from datetime import timedelta

    from stspilot.findings import Severity
    from stspilot.ingest.pipeline import ingest_raw
    from stspilot.monitor.alerts import Alert
    from stspilot.monitor.loop import add_domain
    from stspilot.store.monitor import MonitorStore

    now = world.clock()
    ingest_raw(world.store, report_json("Metrics Org", "m-1"), origin="t", received_at=now)
    ingest_raw(world.store, b"not a report", origin="t", received_at=now)  # quarantined
    add_domain(world.store, ["example.com", "globex.test"], now=now)
    alert = Alert("example.com|check.failing", Severity.ERROR, "example.com", "check.failing",
                  "example.com: the check now fails.", True)  # fmt: skip
    MonitorStore(world.store).record_alerts("example.com", [alert], now=now, sent=[])
    world.store.save_check(
        domain="example.com", observed_at=now - timedelta(minutes=5), stage="testing",
        mode="testing", worst_severity=None, findings_count=0, policy_id=None,
        policy_sha256=None, mx_set=[], result={},
    )  # fmt: skip
    app = make_app(world)
    async with client_for(app) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    samples = {
        name: float(value)
        for name, value in (
            line.rsplit(" ", 1) for line in r.text.splitlines() if line and line[0] != "#"
        )
    }
    assert samples['stspilot_hosted_domains{state="active"}'] == 2
    assert samples["stspilot_reports_stored"] == 1
    assert samples["stspilot_quarantine_waiting"] == 1
    assert samples["stspilot_monitor_domains"] == 2
    assert samples["stspilot_monitor_domains_failing"] == 0
    assert samples['stspilot_monitor_alerts_open{severity="error"}'] == 1
    assert samples['stspilot_monitor_alerts_open{severity="warning"}'] == 0
    assert samples["stspilot_report_last_received_timestamp_seconds"] == now.timestamp()
    last_check = samples["stspilot_check_last_timestamp_seconds"]
    assert last_check == (now - timedelta(minutes=5)).timestamp()
    assert "# TYPE stspilot_reports_stored gauge" in r.text
    async with client_for(app, peer="203.0.113.9") as outside:
        assert (await outside.get("/metrics")).status_code == 403


def scrape(text: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition, by name with labels."""
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line and line[0] != "#")
    return {name: float(value) for name, value in pairs}


async def test_metrics_count_requests_by_route_and_intake_by_channel(world: World) -> None:
    """prometheus-client's text format: requests by route template (not by path), latency
    histograms, and reports stored since the app started by intake channel."""
    from stspilot.ingest.pipeline import ingest_raw

    now = world.clock()
    ingest_raw(world.store, report_json("Before", "b-1"), origin="smtp:1.2.3.4", received_at=now)
    app = make_app(world)  # counts intake from here on
    for i, origin in enumerate(("smtp:127.0.0.1 from=<r@x>", "https:10.0.0.1", "imap://u@h/I",
                                "/srv/in/r.json", "smtp:127.0.0.2 from=<r@y>")):  # fmt: skip
        ingest_raw(world.store, report_json("Org", f"c-{i}"), origin=origin, received_at=now)
    async with client_for(app) as c:
        for name in ("example.com", "nowhere.example"):
            await c.get(f"/api/domains/{name}", headers=world.auth("alice"))
        await c.get("/no/such/path")
        samples = scrape((await c.get("/metrics")).text)
        again = scrape((await c.get("/metrics")).text)
    intake = {k: v for k, v in samples.items() if k.startswith("stspilot_intake_reports_total")}
    assert intake == {
        'stspilot_intake_reports_total{channel="SMTP"}': 2,
        'stspilot_intake_reports_total{channel="HTTPS"}': 1,
        'stspilot_intake_reports_total{channel="IMAP"}': 1,
        'stspilot_intake_reports_total{channel="file"}': 1,
    }
    assert again['stspilot_intake_reports_total{channel="SMTP"}'] == 2  # not counted twice
    routes = {k for k in samples if k.startswith("stspilot_http_requests_total")}
    assert (
        'stspilot_http_requests_total{method="GET",route="/api/domains/{domain}",status="200"}'
        in routes
    )
    assert (
        'stspilot_http_requests_total{method="GET",route="/api/domains/{domain}",status="404"}'
        in routes
    )
    assert not any("nowhere" in k for k in samples)  # paths never become labels
    assert (
        samples['stspilot_http_requests_total{method="GET",route="(unmatched)",status="404"}'] == 1
    )
    count = (
        'stspilot_http_request_duration_seconds_count{method="GET",route="/api/domains/{domain}"}'
    )
    assert samples[count] == 2
    assert (
        'stspilot_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/api/domains/{domain}"}'
        in samples
    )


async def test_requests_and_failed_logins_are_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    from web_support import form_token

    app = make_app(world)
    with caplog.at_level("INFO", logger="stspilot"):
        async with client_for(app, peer="127.0.0.9") as c:
            await c.get("/api/domains/example.com", headers=world.auth("alice"))
            form = await c.get("/login")
            await c.post("/login", data={"username": "alice", "password": "wrong",
                                         "csrf_token": form_token(form.text)})  # fmt: skip
    access = [r for r in caplog.records if r.name == "stspilot.access"]
    fields = [r.request for r in access]  # type: ignore[attr-defined]
    api = next(f for f in fields if f["route"] == "/api/domains/{domain}")
    assert (api["client"], api["user"], api["method"], api["status"]) == (
        "127.0.0.9", "alice", "GET", 200,
    )  # fmt: skip
    assert api["path"] == "/api/domains/example.com" and api["ms"] >= 0
    assert any(f["route"] == "/login" and f["status"] == 401 for f in fields), fields
    (failed,) = [r for r in caplog.records if r.name == "stspilot.auth"]
    assert failed.levelname == "WARNING" and "'alice' from 127.0.0.9" in failed.getMessage()
    assert "wrong" not in failed.getMessage()  # never the password
