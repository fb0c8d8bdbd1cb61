"""The monitor against the store (SQLite, or PostgreSQL with STSPILOT_TEST_DATABASE_URL) and the
lab: atomic claims between workers, backoff of a failing domain, alerts delivered once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from stspilot.check.run import CheckOptions
from stspilot.cli.monitor import register
from stspilot.lab import Lab, healthy
from stspilot.lab.scenarios import BY_DOMAIN
from stspilot.monitor.loop import MonitorConfig, add_domain, list_domains, run_once
from stspilot.monitor.notify import Notifier
from stspilot.store import Store
from stspilot.store.monitor import MonitorStore

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CHANGING = "enforce-ok.test"
BENCH = [healthy(i) for i in range(16)]


class LabThread:
    """The lab on its own event loop in a thread (tests run their own loops)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab", daemon=True)
        self.thread.start()
        self.lab = Lab([BY_DOMAIN[CHANGING], *BENCH])
        self.call(self.lab.start())
        info = self.lab.info
        self.options = CheckOptions(
            nameserver=info.nameserver,
            dns_port=info.dns_port,
            ca_file=info.ca_file,
            port_map=info.port_map,
            deadline=20.0,
        )

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def serve_policy(self, domain: str, text: str) -> None:
        """Change what the policy host serves, as an admin editing the file would."""

        async def change() -> None:
            for host in self.lab.https_hosts:
                if f"mta-sts.{domain}" in host.policies:
                    host.policies[f"mta-sts.{domain}"] = text.encode()

        self.call(change())

    def served(self, domain: str) -> str:
        for host in self.lab.https_hosts:
            if f"mta-sts.{domain}" in host.policies:
                return host.policies[f"mta-sts.{domain}"].decode()
        raise KeyError(domain)

    def close(self) -> None:
        self.call(self.lab.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[LabThread]:
    world = LabThread()
    try:
        yield world
    finally:
        world.close()


class Hook:
    """A loopback webhook receiver (stdlib http.server in a thread)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hook.received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def test_two_workers_never_check_the_same_domain(
    store: Store, store_url: str, lab: LabThread
) -> None:
    domains = [sc.domain for sc in BENCH]
    add_domain(store, domains, now=T0)
    tallies: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with Store.open(store_url, migrate=False) as own:  # another worker's own engine
            config = MonitorConfig(batch_size=len(domains), worker=name, concurrency=8)
            barrier.wait()
            tallies[name] = asyncio.run(
                run_once(own, options=lab.options, now=T0 + HOUR, config=config)
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(t.claimed for t in tallies.values()) == len(domains)
    assert sum(t.checked for t in tallies.values()) == len(domains)
    histories = {d: store.check_history(d) for d in domains}
    assert all(len(h) == 1 for h in histories.values()), {d: len(h) for d, h in histories.items()}
    rows = list_domains(store)
    assert {r.domain for r in rows} == set(domains)
    assert all(r.next_run_at == T0 + HOUR + timedelta(hours=6) for r in rows)
    assert all(r.claimed_by is None and r.failures == 0 for r in rows)


def test_claims_are_exclusive_under_a_race(store: Store, store_url: str) -> None:
    schedule = MonitorStore(store)
    schedule.add([f"d{i}.example" for i in range(60)], now=T0)
    got: list[tuple[str, ...]] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        with Store.open(store_url, migrate=False) as own:
            barrier.wait()
            for _ in range(6):
                claim = MonitorStore(own).claim(
                    now=T0, worker=f"w{n}", limit=7, lease=timedelta(minutes=5)
                )
                got.append(claim.domains)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flat = [d for claim in got for d in claim]
    assert len(flat) == len(set(flat)) == 60
    # A lease still running keeps the rows; once it has passed they are due again.
    assert schedule.claim(now=T0 + timedelta(minutes=4), worker="x", limit=100,
                          lease=HOUR).domains == ()  # fmt: skip
    assert len(schedule.claim(now=T0 + timedelta(minutes=6), worker="x", limit=100,
                              lease=HOUR).domains) == 60  # fmt: skip


def test_a_failing_domain_is_pushed_forward(store: Store) -> None:
    # A name that is no domain reached the schedule (say, an old row): its check raises.
    MonitorStore(store).add(["not a domain"], now=T0)
    config = MonitorConfig(retry_base=timedelta(minutes=5), enroll_hosted=False)
    options = CheckOptions(nameserver="127.0.0.1", dns_port=9)

    def run(at: datetime) -> int:
        return asyncio.run(run_once(store, options=options, now=at, config=config)).failed

    assert run(T0) == 1
    (row,) = list_domains(store)
    assert (row.failures, row.next_run_at) == (1, T0 + timedelta(minutes=5))
    assert row.last_error and "not a domain" in row.last_error
    assert run(T0 + timedelta(minutes=1)) == 0  # not due: no crash loop
    assert run(T0 + timedelta(minutes=5)) == 1
    (row,) = list_domains(store)
    assert (row.failures, row.next_run_at) == (2, T0 + timedelta(minutes=15))


def test_policy_edit_without_id_bump_alerts_once(store: Store, lab: LabThread, hook: Hook) -> None:
    add_domain(store, [CHANGING], now=T0)
    config = MonitorConfig(interval=6 * HOUR, enroll_hosted=False)
    alerts = Notifier(webhooks=(hook.url,), timeout=5.0)

    def run(at: datetime) -> None:
        tally = asyncio.run(run_once(store, options=lab.options, now=at, config=config,
                                     alerts=alerts))  # fmt: skip
        assert (tally.checked, tally.failed, tally.delivery_errors) == (1, 0, ())

    original = lab.served(CHANGING)
    run(T0)
    assert hook.received == []  # a healthy domain's first check says nothing
    edited = original.replace("max_age: 604800", "max_age: 1209600")
    assert edited != original
    lab.serve_policy(CHANGING, edited)
    try:
        run(T0 + 6 * HOUR)
        assert [m["code"] for m in hook.received] == ["rollout.id-not-bumped"]
        assert hook.received[0]["domain"] == CHANGING
        assert "[stspilot ERROR]" in hook.received[0]["text"]
        run(T0 + 12 * HOUR)
        assert len(hook.received) == 1  # no duplicate on the next run
    finally:
        lab.serve_policy(CHANGING, original)
    assert len(store.check_history(CHANGING)) == 3


def test_expiry_days_sets_both_the_alerts_and_the_stored_findings(
    store: Store, lab: LabThread, hook: Hook
) -> None:
    """``--expiry-days`` is one threshold: the lab's certificates (90 days left) are
    "expiring" for the stored check and for the alerts alike, the policy host's included."""
    domain = BENCH[0].domain
    add_domain(store, [domain], now=T0)
    config = MonitorConfig(interval=6 * HOUR, enroll_hosted=False, expiry_days=120)
    alerts = Notifier(webhooks=(hook.url,), timeout=5.0)
    tally = asyncio.run(run_once(store, options=lab.options, now=T0, config=config, alerts=alerts))
    assert (tally.checked, tally.failed, tally.delivery_errors) == (1, 0, ())
    record = store.latest_check(domain)
    assert record is not None
    codes = {f["code"] for f in record.result["findings"]}
    assert {"mx.cert.expiring", "sts.policy.tls.expiring"} <= codes
    assert {m["code"] for m in hook.received} == {"cert.mx", "cert.policy-host"}
    # The default threshold (14 days) sees nothing to say about the same certificates.
    add_domain(store, [BENCH[1].domain], now=T0)
    quiet = MonitorConfig(interval=6 * HOUR, enroll_hosted=False)
    asyncio.run(run_once(store, options=lab.options, now=T0, config=quiet))
    record = store.latest_check(BENCH[1].domain)
    assert record is not None and record.result["findings"] == []


def test_failures_in_fresh_reports_alert_under_enforce(
    store: Store,
    store_url: str,
    lab: LabThread,
    hook: Hook,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sender's TLS-RPT report of failed sessions two days ago, for a domain in enforce: mail
    was not delivered: an error alert."""
    from intake_samples import report_json
    from stspilot.ingest.pipeline import ingest_raw

    raw = report_json("google.com", "r-enforce-1", domain=CHANGING, failures=2)
    outcome = ingest_raw(store, raw, origin="test", received_at=T0)
    assert (outcome.new, outcome.quarantined) == (1, False)
    add_domain(store, [CHANGING], now=T0)
    config = MonitorConfig(interval=6 * HOUR, enroll_hosted=False)
    alerts = Notifier(webhooks=(hook.url,), timeout=5.0)
    tally = asyncio.run(run_once(store, options=lab.options, now=T0, config=config, alerts=alerts))
    assert (tally.checked, tally.failed, tally.delivery_errors) == (1, 0, ())
    (sent,) = [m for m in hook.received if m["code"] == "tlsrpt.failures"]
    assert "[stspilot ERROR]" in sent["text"]
    assert "3 of 103 sessions failed" in sent["text"] and "did not deliver" in sent["text"]
    # The open alerts, as `stspilot monitor alerts` lists them.
    from stspilot.cli import main

    assert main(["monitor", "alerts", CHANGING, "--db", store_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["code"], a["severity"]) for a in listed] == [("tlsrpt.failures", "error")]
    assert listed[0]["last_sent_at"] is not None
    assert main(["monitor", "alerts", "other.example", "--db", store_url]) == 0
    assert "no open alerts" in capsys.readouterr().out


def test_cli_run_guards_private_addresses_unless_allowed(
    store: Store, store_url: str, lab: LabThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """``monitor run`` checks tenants' domains: by default it connects to no private address
    (the lab is all loopback), like the web app's "check now"; ``--allow-private`` for the lab."""
    from stspilot.cli import main

    guarded, allowed = BENCH[2].domain, BENCH[3].domain
    argv = ["monitor", "run", "--once", "--db", store_url, *lab.lab.info.check_args()]
    add_domain(store, [guarded], now=T0)
    assert main(argv) == 0
    add_domain(store, [allowed], now=T0)
    assert main([*argv, "--allow-private"]) == 0
    assert "checked 1" in capsys.readouterr().out

    def codes(domain: str) -> set[str]:
        record = store.latest_check(domain)
        assert record is not None
        return {f["code"] for f in record.result["findings"]}

    assert {"sts.policy.blocked", "mx.blocked"} <= codes(guarded)
    assert codes(allowed) == set()


def test_cli_add_list_and_sigterm(store_url: str, tmp_path: Any) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    done = runner.invoke(app, ["monitor", "add", "Example.COM.", "example.org", "--db", store_url])
    assert done.exit_code == 0, done.output
    assert "2 domain(s) added" in done.output
    listed = runner.invoke(app, ["monitor", "list", "--json", "--db", store_url])
    assert [r["domain"] for r in json.loads(listed.output)] == ["example.com", "example.org"]
    from stspilot.cli import EXIT_USAGE, main

    assert main(["monitor", "add", "no/domain", "--db", store_url]) == EXIT_USAGE
    removed = runner.invoke(app, ["monitor", "remove", "example.com", "example.org",
                                  "--db", store_url])  # fmt: skip
    assert "2 domain(s) removed" in removed.output
    # A worker with nothing due idles until SIGTERM, then exits cleanly.
    proc = subprocess.Popen(
        [sys.executable, "-m", "stspilot", "monitor", "run", "--db", store_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "STSPILOT_DEBUG": "1"},
    )
    try:
        assert proc.stderr is not None
        assert "monitor running" in proc.stderr.readline().decode()  # handlers are in place
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"claimed 0" in out


class MailSink:
    """A loopback SMTP relay (aiosmtpd) on its own loop; keeps every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.smtp import SMTP

        self.messages: list[bytes] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                sink.messages.append(envelope.content)
                return "250 OK"

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> asyncio.Server:
            return await self.loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_lasting_alert_reminds_after_quiet_and_resolves_by_mail(store: Store) -> None:
    from stspilot.findings import Severity
    from stspilot.monitor.alerts import Alert
    from stspilot.monitor.notify import MailRelay, deliver

    sink = MailSink()
    relay = MailRelay("127.0.0.1", sink.port, mail_to=("noc@example.net",))
    notifier = Notifier(mail=relay, timeout=5.0)
    schedule = MonitorStore(store)
    quiet = timedelta(hours=24)
    message = "a.example: the certificate of MX mx.a.example expires in 9 day(s)."
    key = "a.example|cert.mx|mx.a.example"
    expiring = Alert(key, Severity.WARNING, "a.example", "cert.mx", message, lasting=True)

    def round_at(at: datetime, alerts: list[Alert]) -> list[str]:
        planned = schedule.plan_alerts("a.example", alerts, now=at, quiet=quiet)
        delivery = asyncio.run(deliver(planned, notifier))
        assert delivery.errors == ()
        schedule.record_alerts("a.example", alerts, now=at, sent=delivery.delivered)
        return [("resolved " if o.resolved else "") + o.code for o in delivery.delivered]

    try:
        assert round_at(T0, [expiring]) == ["cert.mx"]
        assert round_at(T0 + 6 * HOUR, [expiring]) == []  # within the quiet period
        assert round_at(T0 + 25 * HOUR, [expiring]) == ["cert.mx"]  # reminder
        assert round_at(T0 + 31 * HOUR, []) == ["resolved cert.mx"]
        assert round_at(T0 + 37 * HOUR, []) == []
        assert schedule.open_alerts("a.example") == []
    finally:
        sink.close()
    assert len(sink.messages) == 3
    assert b"Subject: [stspilot resolved] a.example: cert.mx" in sink.messages[-1]


def test_cli_check_rechecks_a_domain_before_it_is_due(
    store: Store, store_url: str, lab: LabThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """``monitor check DOMAIN`` checks now what ``monitor run`` would check only when due."""
    from stspilot.cli import EXIT_USAGE, main

    domain, other = BENCH[4].domain, BENCH[5].domain
    add_domain(store, [domain, other], now=T0)
    argv = ["--db", store_url, "--allow-private", *lab.lab.info.check_args()]
    assert main(["monitor", "run", "--once", *argv]) == 0  # both checked; next due in 6 h
    first = store.latest_check(domain)
    assert first is not None
    capsys.readouterr()
    assert main(["monitor", "run", "--once", *argv]) == 0
    assert "claimed 0" in capsys.readouterr().out  # nothing is due
    assert main(["monitor", "check", domain, *argv]) == 0
    assert "claimed 1, checked 1, failed 0" in capsys.readouterr().out
    again = store.latest_check(domain)
    assert again is not None and again.id != first.id  # a new check was stored
    (row,) = [r for r in list_domains(store) if r.domain == domain]
    assert row.next_run_at > datetime.now(UTC) + 5 * HOUR  # rescheduled from now
    assert main(["monitor", "check", "not-enrolled.example", *argv]) == EXIT_USAGE
    assert "not monitored: not-enrolled.example" in capsys.readouterr().err


def test_without_a_target_alerts_are_not_reported_as_sent(
    store: Store, store_url: str, lab: LabThread, capsys: pytest.CaptureFixture[str]
) -> None:
    from stspilot.cli import main

    broken = BENCH[6].domain
    add_domain(store, [broken], now=T0)
    # Without --allow-private every lab host is refused: alerts, and no target to send them to.
    assert main(["monitor", "run", "--once", "--db", store_url, *lab.lab.info.check_args()]) == 0
    out = capsys.readouterr().out
    assert "checked 1" in out and "sent" not in out.replace("none sent", "")
    assert "none sent (no --webhook or --smtp" in out
    assert main(["monitor", "alerts", broken, "--db", store_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and all(a["last_sent_at"] is None for a in listed)
