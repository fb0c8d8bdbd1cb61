"""Security: every API route refuses the unauthenticated; one tenant can neither read nor change
another's domains; CSRF on cookie sessions; the report POST refuses oversized and malformed
bodies cleanly and rate-limits per client (issue 5)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from intake_samples import report_json
from web_support import World, client_for, form_token, login, make_app

pytestmark = pytest.mark.db

PARAMS = {"{domain}": "example.com", "{report_id}": "1", "{token_id}": "1", "{run_id}": "1"}
BODIES: dict[str, Any] = {
    "/api/domains": {"domain": "z.test", "mx": ["mx.z.test"]},
    "/api/domains/{domain}": {"mode": "enforce", "max_age": 604800},
    "/api/domains/{domain}/sync-mx": {"live_mx": ["evil.attacker.test"], "apply": True},
    "/api/tokens": {"name": "x"},
    "/api/tenants": {"name": "x"},
    "/api/users": {"name": "x", "password": "long enough", "tenant": "acme"},
    "/api/domains/{domain}/publish/runs": {
        "action": "hosted-sync",
        "planned_at": "2026-11-22T12:00:00+00:00",
        "digest": "0" * 64,
    },
}


def api_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every JSON API route, read from the app's own OpenAPI
    description, so a route added later is covered without editing this test."""
    out = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]
    assert all(path.startswith("/api/") for _, path in out)
    out.append(("GET", "/api/openapi.json"))
    return out


def concrete(path: str) -> str:
    for key, value in PARAMS.items():
        path = path.replace(key, value)
    return path


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer stsp_not-a-real-token"},
        {"authorization": "Bearer "},
        {"authorization": "Basic YWxpY2U6cGFzc3dvcmQ="},
        {"cookie": "stspilot_session=1.0.99999999999.forged"},
    ],
    ids=["none", "bad-token", "empty-token", "basic", "forged-cookie"],
)
async def test_every_api_route_needs_authentication(
    app: Any, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    routes = api_routes(app)
    assert len(routes) > 20
    for method, template in routes:
        r = await client.request(
            method, concrete(template), headers=headers, json=BODIES.get(template)
        )
        assert r.status_code == 401, (method, template, r.status_code)


async def test_tenants_cannot_touch_each_other(
    app: Any, client: httpx.AsyncClient, world: World
) -> None:
    before = (
        await client.get("/.well-known/mta-sts.txt", headers={"host": "mta-sts.example.com"})
    ).text
    domain_routes = [(m, p) for m, p in api_routes(app) if "{domain}" in p]
    assert len(domain_routes) >= 10
    for method, template in domain_routes:
        r = await client.request(
            method, concrete(template), headers=world.auth("gina"), json=BODIES.get(template)
        )
        # Exactly like an unknown domain: the name of another tenant's domain does not leak.
        assert r.status_code == 404, (method, template, r.status_code)
    mine = await client.get("/api/domains/example.com", headers=world.auth("alice"))
    assert mine.status_code == 200 and mine.json()["version"] == 1
    after = (
        await client.get("/.well-known/mta-sts.txt", headers={"host": "mta-sts.example.com"})
    ).text
    assert after == before
    listed = (await client.get("/api/domains", headers=world.auth("gina"))).json()
    assert [d["domain"] for d in listed] == ["globex.test"]
    everything = (await client.get("/api/domains", headers=world.auth("root"))).json()
    assert [d["domain"] for d in everything] == ["example.com", "globex.test"]


async def test_reports_of_another_tenant_are_hidden(
    client: httpx.AsyncClient, world: World
) -> None:
    body = report_json("Google Inc.", "acme-1", domain="example.com")
    assert (
        await client.post(
            "/tlsrpt", content=body, headers={"content-type": "application/tlsrpt+json"}
        )
    ).status_code == 201
    pk = (await client.get("/api/domains/example.com/reports", headers=world.auth("alice"))).json()[
        0
    ]["id"]
    assert (await client.get(f"/api/reports/{pk}", headers=world.auth("alice"))).status_code == 200
    assert (await client.get(f"/api/reports/{pk}", headers=world.auth("gina"))).status_code == 404
    assert (await client.get(f"/api/reports/{pk}", headers=world.auth("root"))).status_code == 200
    # Reports of a domain nobody hosts: admins only.
    assert (
        await client.get("/api/domains/other.test/reports", headers=world.auth("alice"))
    ).status_code == 404
    assert (
        await client.get("/api/domains/other.test/reports", headers=world.auth("root"))
    ).status_code == 200


async def test_cookie_session_writes_need_csrf(client: httpx.AsyncClient, world: World) -> None:
    await login(client, "alice")
    attempts = [
        ("PATCH", "/api/domains/example.com", {"json": {"mode": "enforce", "max_age": 604800}}),
        ("POST", "/api/domains/example.com/decommission", {}),
        ("DELETE", "/api/domains/example.com", {}),
        # What a cross-site HTML form can send: urlencoded, no custom header.
        ("POST", "/api/tokens", {"data": {"name": "x"}}),
        ("POST", "/api/tokens", {"data": {"name": "x", "csrf_token": "forged.value"}}),
    ]
    for method, path, kwargs in attempts:
        r = await client.request(method, path, **kwargs)
        assert r.status_code == 403, (method, path, r.status_code)
    mine = (await client.get("/api/domains/example.com")).json()
    assert mine["mode"] == "testing" and mine["state"] == "active"
    token = form_token((await client.get("/login")).text)
    ok = await client.post("/api/domains/example.com/decommission", headers={"x-csrf-token": token})
    assert ok.status_code == 200


async def test_report_post_refuses_bad_bodies(world: World) -> None:
    app = make_app(world, report_max_bytes=4096)
    async with client_for(app) as c:
        big = b"x" * 5000
        assert (
            await c.post(
                "/tlsrpt", content=big, headers={"content-type": "application/tlsrpt+json"}
            )
        ).status_code == 413

        async def stream() -> AsyncIterator[bytes]:  # no Content-Length: capped while reading
            for _ in range(10):
                yield b"y" * 1000

        assert (await c.post("/tlsrpt", content=stream())).status_code == 413
        bad_gzip = await c.post(
            "/tlsrpt",
            content=b"\x1f\x8bnot gzip",
            headers={"content-type": "application/tlsrpt+gzip"},
        )
        assert bad_gzip.status_code == 400
        not_json = await c.post(
            "/tlsrpt", content=b"{broken", headers={"content-type": "application/tlsrpt+json"}
        )
        assert not_json.status_code == 400
        html = await c.post(
            "/tlsrpt", content=b"<html>hi</html>", headers={"content-type": "text/html"}
        )
        assert html.status_code == 415
        assert all(
            r.headers["content-type"].startswith("text/plain") for r in (bad_gzip, not_json, html)
        )
        assert (await c.get("/tlsrpt")).status_code == 405
        ok = await c.post(
            "/tlsrpt",
            content=gzip.compress(report_json("Org", "fine")),
            headers={"content-type": "application/tlsrpt+gzip"},
        )
        assert ok.status_code == 201
    # Unreadable bodies are kept with their reason, never dropped (the oversized ones are not).
    assert len(world.store.list_quarantine()) == 3


async def test_report_post_rate_limit_per_client(world: World) -> None:
    app = make_app(world, report_rate=0.001, report_burst=2)
    body = report_json("Org", "r")
    headers = {"content-type": "application/tlsrpt+json"}
    async with client_for(app, peer="198.51.100.1") as a, client_for(app, peer="198.51.100.2") as b:
        first = [
            (await a.post("/tlsrpt", content=body, headers=headers)).status_code for _ in range(3)
        ]
        assert first == [201, 200, 429]
        limited = await a.post("/tlsrpt", content=body, headers=headers)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert (await b.post("/tlsrpt", content=body, headers=headers)).status_code == 200
        # A client cannot escape its bucket by claiming another address: only trusted proxies'
        # X-Forwarded-For is believed.
        spoof = {**headers, "x-forwarded-for": "192.0.2.99"}
        assert (await a.post("/tlsrpt", content=body, headers=spoof)).status_code == 429
    async with client_for(app, peer="127.0.0.1") as proxy:  # Caddy on loopback
        for client_ip in ("192.0.2.10", "192.0.2.11"):
            fwd = {**headers, "x-forwarded-for": client_ip}
            assert (await proxy.post("/tlsrpt", content=body, headers=fwd)).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        b"",
        b"mta-sts." + b"a" * 300 + b".test",
        "mta-sts.exä.com".encode(),
        b"[::1]:443",
        b"mta-sts.example.com:notaport",
    ],
)
async def test_odd_hosts_never_fail(client: httpx.AsyncClient, host: bytes) -> None:
    r = await client.get("/.well-known/mta-sts.txt", headers={"host": host})
    assert r.status_code in (200, 404)
    assert r.headers["content-type"].startswith("text/plain")


async def test_unknown_routes_and_errors_are_not_html(
    client: httpx.AsyncClient, world: World
) -> None:
    r = await client.get("/api/domains/nothing.test", headers=world.auth("alice"))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404 and "nothing.test" in r.json()["detail"]
    garbage = await client.post(
        "/api/domains",
        content=b"{not json",
        headers={**world.auth("alice"), "content-type": "application/json"},
    )
    assert garbage.status_code == 422
