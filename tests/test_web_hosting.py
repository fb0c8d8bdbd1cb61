"""Policy hosting: the policy file by Host, new ids and history on every change, MX sync,
decommission, the ask endpoint, publish info and the cache across replicas (issue 5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from stspilot.store.hosting import HostedPolicies, ServedPolicy, plan_mx_sync
from stspilot.sts.policy import parse_policy
from stspilot.web.app import create_app
from stspilot.web.hosting import POLICY_PATH, PolicyCache, publish_info
from web_support import World, client_for, make_app, settings

pytestmark = pytest.mark.db


EXAMPLE = (
    "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmax_age: 86400\n"
)


async def policy(client: httpx.AsyncClient, host: str) -> httpx.Response:
    return await client.get(POLICY_PATH, headers={"host": host})


@pytest.mark.parametrize(
    ("host", "status", "body"),
    [
        ("mta-sts.example.com", 200, EXAMPLE),
        ("MTA-STS.Example.COM", 200, EXAMPLE),  # Host is case-insensitive
        ("mta-sts.example.com:8443", 200, EXAMPLE),  # the port is ignored
        ("mta-sts.example.com.", 200, EXAMPLE),  # a root dot too
        ("mta-sts.unknown.test", 404, None),
        ("mta-sts.", 404, None),
        ("example.com", 404, None),  # no mta-sts. prefix: no policy
        ("stspilot.test", 404, None),  # the app's own name
        ("127.0.0.1:8080", 404, None),
    ],
)
async def test_policy_by_host(
    client: httpx.AsyncClient, host: str, status: int, body: str | None
) -> None:
    r = await policy(client, host)
    assert r.status_code == status
    # Never an HTML page: 200 and 404 alike are text/plain (RFC 8461 §3.3).
    assert r.headers["content-type"].startswith("text/plain")
    if body is not None:
        assert r.text == body
        assert parse_policy(r.content).mx == ("mx1.example.com", "mx2.example.com")


async def test_head_and_wrong_method_and_other_paths(
    client: httpx.AsyncClient, world: World
) -> None:
    head = await client.head(POLICY_PATH, headers={"host": "mta-sts.example.com"})
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(EXAMPLE)
    post = await client.post(POLICY_PATH, headers={"host": "mta-sts.example.com"}, content=b"x")
    assert post.status_code == 405
    # A hosted name never reaches the app: no API, no login page, even with valid credentials.
    for path in ("/api/domains", "/login", "/", "/.well-known/mta-sts.txt.bak"):
        r = await client.get(path, headers={"host": "mta-sts.example.com", **world.auth("alice")})
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/plain")


async def test_crlf_configured(client: httpx.AsyncClient, world: World) -> None:
    r = await client.patch(
        "/api/domains/example.com", json={"crlf": True}, headers=world.auth("alice")
    )
    assert r.status_code == 200
    served = await policy(client, "mta-sts.example.com")
    assert served.text == EXAMPLE.replace("\n", "\r\n")


async def test_every_change_has_a_new_id_and_history(
    client: httpx.AsyncClient, world: World
) -> None:
    auth = world.auth("alice")
    before = (await client.get("/api/domains/example.com", headers=auth)).json()
    edits: list[dict[str, Any]] = [
        {"mx": ["mx1.example.com"]},
        {"mode": "enforce", "max_age": 604800},
        {"max_age": 1209600},
    ]
    ids = [before["policy_id"]]
    for edit in edits:
        after = await client.patch("/api/domains/example.com", json=edit, headers=auth)
        assert after.status_code == 200, after.text
        body = after.json()
        ids.append(body["policy_id"])
        assert body["publish"]["txt_value"] == f"v=STSv1; id={body['policy_id']}"
        served = await policy(client, "mta-sts.example.com")
        assert served.text == body["policy"]
    assert len(set(ids)) == len(ids)
    history = (await client.get("/api/domains/example.com/history", headers=auth)).json()
    assert [h["policy_id"] for h in history] == ids[::-1]
    assert [h["version"] for h in history] == [4, 3, 2, 1]
    # A no-op edit changes nothing: no new id for senders to re-fetch.
    same = await client.patch("/api/domains/example.com", json={"max_age": 1209600}, headers=auth)
    assert same.json()["policy_id"] == ids[-1]


async def test_publish_info_with_delegation(world: World) -> None:
    web = settings(
        policy_cname_target="policy.provider.test", txt_delegation_zone="sts.provider.test"
    )
    hosted = HostedPolicies(world.store).require("example.com")
    info = publish_info(hosted, web)
    records = {(r["name"], r["type"]): r["value"] for r in info["records"]}
    assert records[("mta-sts.example.com.", "CNAME")] == "policy.provider.test."
    assert records[("_mta-sts.example.com.", "CNAME")] == "example.com.sts.provider.test."
    assert records[("example.com.sts.provider.test.", "TXT")] == f"v=STSv1; id={hosted.policy_id}"
    assert "the operator publishes the TXT there" in info["steps"][-1]
    # With a publish config, stspilot itself carries each change to the delegation zone.
    own = publish_info(
        hosted, settings(txt_delegation_zone="sts.provider.test", publish_config=Path("p.toml"))
    )
    assert "stspilot publishes the TXT there after every policy change" in own["steps"][-1]
    plain = publish_info(hosted, settings())
    assert {(r["name"], r["type"]) for r in plain["records"]} == {("_mta-sts.example.com.", "TXT")}
    assert plain["policy_url"] == "https://mta-sts.example.com/.well-known/mta-sts.txt"


@pytest.mark.parametrize(
    ("patterns", "live", "expected"),
    [
        (["mx1.a.test"], ["mx1.a.test"], ["mx1.a.test"]),
        (["mx1.a.test"], ["MX1.A.TEST.", "mx2.a.test"], ["mx1.a.test", "mx2.a.test"]),
        (["mx1.a.test", "old.a.test"], ["mx1.a.test"], ["mx1.a.test"]),
        (["*.a.test"], ["mx9.a.test", "mx8.a.test"], ["*.a.test"]),
        # A wildcard covers one label only (RFC 8461 §4.1): a deeper host is added exactly.
        (["*.a.test"], ["x.y.a.test"], ["x.y.a.test"]),
        (["mx.old.test"], ["mx.new.test"], ["mx.new.test"]),
    ],
)
def test_plan_mx_sync(patterns: list[str], live: list[str], expected: list[str]) -> None:
    assert list(plan_mx_sync(patterns, live)) == expected


async def test_sync_mx_proposes_then_applies(client: httpx.AsyncClient, world: World) -> None:
    auth = world.auth("alice")
    old = await policy(client, "mta-sts.example.com")
    live = ["mx1.example.com", "mx3.example.com"]
    r = await client.post("/api/domains/example.com/sync-mx", json={"live_mx": live}, headers=auth)
    body = r.json()
    assert r.status_code == 200 and body["changed"] and not body["applied"]
    assert body["added"] == ["mx3.example.com"] and body["removed"] == ["mx2.example.com"]
    assert body["hosted"]["pending_mx"] == ["mx1.example.com", "mx3.example.com"]
    assert (await policy(client, "mta-sts.example.com")).text == old.text  # only proposed
    applied = await client.post("/api/domains/example.com/sync-mx/apply", headers=auth)
    assert applied.status_code == 200
    assert applied.json()["mx"] == ["mx1.example.com", "mx3.example.com"]
    assert applied.json()["pending_mx"] is None
    served = await policy(client, "mta-sts.example.com")
    assert parse_policy(served.content).mx == ("mx1.example.com", "mx3.example.com")
    again = await client.post("/api/domains/example.com/sync-mx/apply", headers=auth)
    assert again.status_code == 409


async def test_sync_mx_auto_applies_from_the_latest_check(
    client: httpx.AsyncClient, world: World
) -> None:
    auth = world.auth("gina")
    await client.patch("/api/domains/globex.test", json={"auto_sync_mx": True}, headers=auth)
    none_yet = await client.post("/api/domains/globex.test/sync-mx", json={}, headers=auth)
    assert none_yet.status_code == 409  # nothing stored to compare with
    world.store.save_check(
        domain="globex.test",
        observed_at=world.clock(),
        stage="enforce",
        mode="enforce",
        worst_severity=None,
        findings_count=0,
        policy_id=None,
        policy_sha256=None,
        mx_set=["mx1.globex.test", "mail.partner.test"],
        result={},
    )
    r = await client.post("/api/domains/globex.test/sync-mx", json={}, headers=auth)
    body = r.json()
    assert r.status_code == 200 and body["applied"], body
    assert body["proposed"] == ["*.globex.test", "mail.partner.test"]
    # The never-orphan order: the policy is served first, then the TXT id is published.
    assert "served now" in body["steps"][0] and body["hosted"]["policy_id"] in body["steps"][1]
    served = await policy(client, "mta-sts.globex.test")
    assert "mx: mail.partner.test" in served.text
    unchanged = await client.post("/api/domains/globex.test/sync-mx", json={}, headers=auth)
    assert unchanged.json()["changed"] is False


async def test_decommission_then_remove(client: httpx.AsyncClient, world: World) -> None:
    auth = world.auth("gina")
    early = await client.delete("/api/domains/globex.test", headers=auth)
    assert early.status_code == 409  # never remove a policy senders still cache
    r = await client.post("/api/domains/globex.test/decommission", headers=auth)
    body = r.json()
    assert body["state"] == "decommissioning" and body["mode"] == "none"
    served = parse_policy((await policy(client, "mta-sts.globex.test")).content)
    assert served.mode == "none"
    assert (await client.delete("/api/domains/globex.test", headers=auth)).status_code == 409
    world.clock.advance(seconds=604800 - 1)  # the old max_age has not quite passed
    assert (await client.delete("/api/domains/globex.test", headers=auth)).status_code == 409
    world.clock.advance(seconds=2)
    assert (await client.delete("/api/domains/globex.test", headers=auth)).status_code == 204
    assert (await policy(client, "mta-sts.globex.test")).status_code == 404
    asked = await client.get("/ask", params={"domain": "mta-sts.globex.test"})
    assert asked.status_code == 404


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("mta-sts.example.com", 200),
        ("MTA-STS.EXAMPLE.COM.", 200),
        ("example.com", 404),  # only the policy host gets a certificate
        ("www.example.com", 404),
        ("mta-sts.unknown.test", 404),
        ("mta-sts.mta-sts.example.com", 404),
        ("", 400),
        ("x" * 300, 400),
    ],
)
async def test_ask(client: httpx.AsyncClient, name: str, status: int) -> None:
    r = await client.get("/ask", params={"domain": name})
    assert r.status_code == status


async def test_ask_refuses_other_clients(app: Any) -> None:
    async with client_for(app, peer="203.0.113.7") as outsider:
        r = await outsider.get("/ask", params={"domain": "mta-sts.example.com"})
    assert r.status_code == 403


async def test_cache_is_correct_across_replicas(world: World) -> None:
    """Replica A caches; a change through replica B is seen by A within the TTL, not later."""
    ticks = [0.0]
    hosting = HostedPolicies(world.store)
    cache = PolicyCache(hosting, ttl=2.0, max_entries=10, clock=lambda: ticks[0])
    first = cache.lookup("mta-sts.example.com")
    assert first is not None and cache.cached("mta-sts.example.com") == (True, first)
    other_replica = HostedPolicies(world.store)
    other_replica.update("example.com", now=world.clock(), mode="enforce", max_age=604800)
    ticks[0] = 1.0  # within the TTL: the old text may still be served
    assert cache.cached("mta-sts.example.com") == (True, first)
    ticks[0] = 2.5  # past the TTL: the generation is read again and the entry dropped
    assert cache.cached("mta-sts.example.com")[0] is False
    fresh = cache.lookup("mta-sts.example.com")
    assert (
        fresh is not None and "mode: enforce" in fresh.text and fresh.policy_id != first.policy_id
    )
    assert cache.lookup("mta-sts.nothing.test") is None  # cached negatively, bounded


async def test_two_apps_on_one_store(world: World) -> None:
    a = create_app(settings(policy_cache_ttl=0.0), world.store, routers=[], clock=world.clock)
    b = create_app(settings(policy_cache_ttl=0.0), world.store, routers=[], clock=world.clock)
    async with client_for(a) as ca, client_for(b) as cb:
        assert "mode: testing" in (await policy(ca, "mta-sts.example.com")).text
        r = await cb.patch(
            "/api/domains/example.com",
            json={"mode": "enforce", "max_age": 604800},
            headers=world.auth("alice"),
        )
        assert r.status_code == 200
        assert "mode: enforce" in (await policy(ca, "mta-sts.example.com")).text


def test_cli_host_add_and_serve(store_url: str, tmp_path: Any) -> None:
    """`stspilot host add`, then `stspilot serve` prints where it listens and serves the policy."""
    import os
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        "STSPILOT_SECRET_KEY": "serve-test-secret-0123456789",
        "STSPILOT_PASSWORD": "x" * 12,
    }
    run = [sys.executable, "-m", "stspilot"]
    subprocess.run(
        [*run, "tenant", "add", "acme", "--db", store_url], env=env, check=True, timeout=60
    )
    added = subprocess.run(
        [
            *run,
            "host",
            "add",
            "served.test",
            "--tenant",
            "acme",
            "--mx",
            "mx.served.test",
            "--db",
            store_url,
        ],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert 'publish: _mta-sts.served.test. TXT "v=STSv1; id=' in added.stdout
    listed = subprocess.run(
        [*run, "host", "list", "--json", "--db", store_url],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert '"domain": "served.test"' in listed.stdout
    server = subprocess.Popen(
        [*run, "serve", "--listen", "127.0.0.1:0", "--db", store_url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("stspilot serving on http://127.0.0.1:"), line
        base = line.split()[-1]
        r = httpx.get(
            f"{base}/.well-known/mta-sts.txt", headers={"host": "mta-sts.served.test"}, timeout=10
        )
        assert r.status_code == 200 and "mx: mx.served.test" in r.text
        assert httpx.get(f"{base}/api/domains", timeout=10).status_code == 401
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)


# --- the fast path (web.fastpath) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "host", "status", "reaches_app"),
    [
        ("GET", POLICY_PATH, " mta-sts.example.com ", 200, False),  # stray spaces
        ("HEAD", POLICY_PATH, "mta-sts.unknown.test", 404, False),
        ("POST", "/tlsrpt", "mta-sts.example.com", 404, False),  # a policy host: never the app
        ("GET", "/static/x.css", "Mta-Sts.Example.Com", 404, False),
        ("GET", POLICY_PATH, "[::1]:8443", 404, False),  # an IP literal: no policy lives here
        ("GET", POLICY_PATH, "STSPILOT.TEST", 404, False),  # the app's own name
        ("GET", "/login", "stspilot.test", 200, True),
        ("GET", "/tlsrpt", "stspilot.test", 405, True),
    ],
)
async def test_fast_path_answers(
    client: httpx.AsyncClient, method: str, path: str, host: str, status: int, reaches_app: bool
) -> None:
    r = await client.request(method, path, headers={"host": host})
    assert r.status_code == status
    # Security headers come from the app's middleware; the fast path sets nosniff itself and
    # answers in plain text only (never an HTML page, RFC 8461 §3.3).
    assert ("x-frame-options" in r.headers) is reaches_app
    if not reaches_app:
        assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["x-content-type-options"] == "nosniff"
    if method == "HEAD":
        assert r.content == b"" and int(r.headers["content-length"]) > 0


async def test_fast_path_policy_host_that_is_an_app_name(world: World) -> None:
    """A public host that starts with mta-sts. is the app's, not a policy host."""
    app = make_app(world, public_hosts=frozenset({"mta-sts.stspilot.test"}))
    async with client_for(app) as c:
        login = await c.get("/login", headers={"host": "mta-sts.stspilot.test"})
        policy_file = await policy(c, "mta-sts.stspilot.test")
    assert login.status_code == 200
    assert policy_file.status_code == 404 and policy_file.text.startswith("no MTA-STS")


class CountingHosting:
    """Stands in for ``HostedPolicies`` in cache unit tests: counts store reads, and can make a
    change land between a read's start and its end (another request changing the policy)."""

    def __init__(self) -> None:
        self.text = "version: STSv1\nmode: testing\nmx: a.test\nmax_age: 86400\n"
        self.gen = 1
        self.generation_reads = 0
        self.during_read: Callable[[], None] | None = None

    def generation(self) -> int:
        self.generation_reads += 1
        time.sleep(0.05)  # a slow database: concurrent callers overlap
        return self.gen

    def served_policy(self, host: str) -> ServedPolicy | None:
        text = self.text
        if self.during_read is not None:
            change, self.during_read = self.during_read, None
            change()
        return ServedPolicy(host.removeprefix("mta-sts."), "id1", self.gen, text)


def test_cache_reads_the_generation_once_when_the_ttl_runs_out() -> None:
    hosting = CountingHosting()
    cache = PolicyCache(hosting, ttl=60.0, max_entries=10)  # type: ignore[arg-type]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(cache.answer, ["mta-sts.a.test"] * 16))
    assert hosting.generation_reads == 1  # not sixteen
    assert {a.body for a in answers} == {hosting.text.encode()}


def test_cache_drops_a_read_that_raced_a_change() -> None:
    """A read that started before this replica's change must not put the old text back."""
    hosting = CountingHosting()
    cache = PolicyCache(hosting, ttl=60.0, max_entries=10)  # type: ignore[arg-type]

    def change() -> None:
        hosting.text = hosting.text.replace("testing", "enforce")
        hosting.gen += 1
        cache.invalidate()

    hosting.during_read = change
    stale = cache.answer("mta-sts.a.test")
    assert b"testing" in stale.body  # what that one request saw: fine, it began before
    assert cache.cached_answer("mta-sts.a.test") is None  # but it was not kept
    assert b"enforce" in cache.answer("mta-sts.a.test").body
    assert cache.cached_answer("mta-sts.a.test") is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("192.0.2.1", None),  # an IP literal: refused since sts.names is the one door
        ("[2001:db8::1]", None),
        ("com", None),
        ("a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".example", None),
    ],
)
def test_a_hosted_domain_is_a_name_whose_policy_host_is_one_too(
    text: str, expected: str | None
) -> None:
    from stspilot.errors import InvalidName
    from stspilot.store.hosting_models import check_domain_name

    if expected is None:
        with pytest.raises(InvalidName):
            check_domain_name(text)
    else:
        assert check_domain_name(text) == expected


def test_mx_patterns_given_as_u_labels_are_stored_as_a_labels() -> None:
    from stspilot.store.hosting_models import check_mx_patterns

    got = check_mx_patterns("testing", ["MX.Bücher.example.", "*.bücher.example", "mx.example"])
    assert got == ("mx.xn--bcher-kva.example", "*.xn--bcher-kva.example", "mx.example")
