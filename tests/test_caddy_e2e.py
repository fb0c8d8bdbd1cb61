"""End to end: a hosted policy fetched through Caddy over HTTPS with a certificate Caddy obtained
on demand from a local ACME CA (pebble), checked by stspilot's own checker (issue 5)."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from caddy_world import (
    LOOPBACK,
    SHIPPED_CADDYFILE,
    CaddyWorld,
    app_host,
    caddy_env,
    derive_caddyfile,
    host_domain,
    missing_tools,
    start_app,
    start_world,
)
from stspilot.check.evaluate import evaluate
from stspilot.check.run import CheckOptions, Probes, gather_facts
from stspilot.facts import FetchOutcome
from stspilot.findings import Severity

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools())),
]

log = logging.getLogger(__name__)

HOSTED = "hosted.test"
STRANGER = "stranger.test"


def caddyfile_text() -> str:
    """The repository's Caddyfile: what is shipped is what is tested."""
    return SHIPPED_CADDYFILE.read_text()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaddyWorld]:
    root = tmp_path_factory.mktemp("caddy-e2e")
    db_url = f"sqlite:///{root / 'stspilot.sqlite3'}"
    policy = host_domain(db_url, HOSTED, mode="testing", mx=[f"mx.{HOSTED}"])

    def start() -> CaddyWorld:
        return start_world(
            root,
            hosted=HOSTED,
            stranger=STRANGER,
            policy=policy,
            start_app=lambda world: start_app(world, db_url),
            caddyfile_text=caddyfile_text(),
        )

    try:
        running = start()
    except (RuntimeError, TimeoutError) as first:
        # Ports are picked free but handed to other processes a moment later: another test
        # run may take one in between. A second, fresh attempt tells that from a real failure.
        log.warning("first start of the Caddy world failed, retrying: %s", first)
        running = start()
    try:
        yield running
    finally:
        running.stop()


def options(world: CaddyWorld) -> CheckOptions:
    return CheckOptions(
        nameserver=LOOPBACK,
        dns_port=world.dns_port,
        ca_file=world.pebble_root,  # trust pebble's root of this run, as a sender trusts WebPKI
        port_map={443: world.https_port},
        probe_mx=False,
        fetch_timeout=30.0,  # the first handshake waits for the on-demand issuance
        deadline=40.0,
    )


async def test_checker_fetches_the_hosted_policy_through_caddy(world: CaddyWorld) -> None:
    opts = options(world)
    async with Probes(opts) as probes:
        facts = await gather_facts(HOSTED, probes=probes, options=opts)
    fetch = facts.policy
    assert fetch is not None
    assert fetch.outcome is FetchOutcome.OK, (
        fetch.error,
        world.processes["caddy"].output()[-3000:],
    )
    assert fetch.status == 200
    assert fetch.content_type.split(";")[0].strip() == "text/plain"
    assert fetch.body == world.policy.encode()
    # The certificate validated against pebble's root: Caddy got it from the ACME CA, on demand.
    assert fetch.tls is not None and fetch.tls.ok
    assert fetch.tls.cert is not None
    assert fetch.tls.cert.issuer.startswith("CN=Pebble Intermediate CA")
    assert fetch.tls.cert.dns_names == (f"mta-sts.{HOSTED}",)
    assert f"mta-sts.{HOSTED}" in world.issued_names()
    assert (f"mta-sts.{HOSTED}", 200) in world.asks()
    # RFC 8461 §3.3: the checker finds nothing wrong with the policy host or its certificate.
    result = evaluate(facts)
    policy_problems = [
        f
        for f in result.findings
        if f.code.startswith(("sts.policy", "sts.orphan"))
        and f.severity >= Severity.WARNING
        and f.code != "sts.policy.mode-testing"
    ]
    assert policy_problems == []
    assert result.policy is not None and result.policy.mode.value == "testing"


def handshake(world: CaddyWorld, name: str) -> ssl.SSLError | None:
    """TLS to Caddy with ``name`` as SNI; the error, or None when a certificate validated."""
    context = ssl.create_default_context(cafile=str(world.pebble_root))
    with socket.create_connection((LOOPBACK, world.https_port), timeout=10) as raw:
        raw.settimeout(10)
        try:
            with context.wrap_socket(raw, server_hostname=name):
                return None
        except ssl.SSLError as exc:
            return exc


@pytest.mark.parametrize(
    "name",
    [f"mta-sts.{STRANGER}", HOSTED, f"www.mta-sts.{HOSTED}"],
    ids=["unhosted-domain", "hosted-domain-apex", "below-mta-sts"],
)
def test_caddy_refuses_a_certificate_for_names_the_app_does_not_host(
    world: CaddyWorld, name: str
) -> None:
    error = handshake(world, name)
    # Caddy answers the handshake with an alert: no certificate, not an HTTP error page.
    assert error is not None
    assert "alert" in str(error).lower()
    assert name not in world.issued_names()
    assert any(asked == name and status >= 400 for asked, status in world.asks()), world.asks()


CLIENT = "127.0.0.2"  # a client of Caddy that is not Caddy itself (trusted: 127.0.0.1 only)


def through_caddy(
    world: CaddyWorld, name: str, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTP/1.1 request to Caddy over TLS (SNI ``name``) from ``CLIENT``."""
    context = ssl.create_default_context(cafile=str(world.pebble_root))
    raw = socket.create_connection(
        (LOOPBACK, world.https_port), timeout=20, source_address=(CLIENT, 0)
    )
    with context.wrap_socket(raw, server_hostname=name) as tls:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {name}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/tlsrpt+gzip\r\nConnection: close\r\n\r\n"
        )
        tls.sendall(head.encode() + body)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


def test_the_dashboard_name_gets_a_certificate(world: CaddyWorld) -> None:
    """/ask approves the app's own name (STSPILOT_PUBLIC_HOSTS), so the shipped Caddyfile
    gets it a certificate, and the dashboard answers there."""
    assert handshake(world, app_host(world.hosted)) is None
    status, _ = through_caddy(world, app_host(world.hosted), "GET", "/healthz")
    assert status == 200


def test_metrics_and_ask_refuse_the_public_behind_caddy(world: CaddyWorld) -> None:
    """Behind Caddy every TCP peer is Caddy: the app judges the forwarded client instead."""
    name = app_host(world.hosted)
    assert through_caddy(world, name, "GET", "/metrics")[0] == 403
    assert through_caddy(world, name, "GET", f"/ask?domain=mta-sts.{HOSTED}")[0] == 403


def test_a_posted_report_records_the_client_behind_caddy(world: CaddyWorld) -> None:
    import gzip

    from intake_samples import report_json
    from stspilot.store import Store

    body = gzip.compress(report_json("sender.example", "via-caddy-1", domain=HOSTED))
    status, text = through_caddy(world, app_host(world.hosted), "POST", "/tlsrpt", body)
    assert status == 201, text
    with Store.open(f"sqlite:///{world.root / 'stspilot.sqlite3'}") as store:
        [listing] = [r for r in store.list_reports(limit=10) if r.report_id == "via-caddy-1"]
    assert listing.origin == f"https:{CLIENT}"


def test_security_headers_through_caddy(world: CaddyWorld) -> None:
    """HSTS on every name (the shipped Caddyfile); the app's strict CSP on its pages, and
    Caddy's default one on what the app answers before its middleware (the policy file)."""
    _, page = through_caddy(world, app_host(world.hosted), "GET", "/login")
    _, policy = through_caddy(world, f"mta-sts.{HOSTED}", "GET", "/.well-known/mta-sts.txt")
    page_head, policy_head = (
        page.split(b"\r\n\r\n")[0].lower(),
        policy.split(b"\r\n\r\n")[0].lower(),
    )
    assert b"strict-transport-security: max-age=31536000" in page_head
    assert b"strict-transport-security: max-age=31536000" in policy_head
    assert b"content-security-policy: default-src 'self'; script-src 'self'" in page_head
    assert page_head.count(b"content-security-policy:") == 1
    assert b"content-security-policy: default-src 'none'" in policy_head


def test_caddy_accepts_the_derived_caddyfile() -> None:
    """``caddy adapt`` reads the test variant of the shipped file: the site blocks as shipped."""
    text = derive_caddyfile(caddyfile_text(), ["http_port 18080", "https_port 18443"])
    env = caddy_env("http://127.0.0.1:8080/ask", "127.0.0.1:8080")
    adapted = subprocess.run(
        ["caddy", "adapt", "--adapter", "caddyfile", "--config", "/dev/stdin"],
        input=text.encode(),
        capture_output=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env},
        check=False,
    )
    assert adapted.returncode == 0, adapted.stderr.decode()
    assert b'"on_demand":true' in adapted.stdout
    assert b"http://127.0.0.1:8080/ask" in adapted.stdout
