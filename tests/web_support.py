"""A small world for the web tests: two tenants, their users and tokens, hosted domains, and an
in-process client (httpx over ASGI, no sockets) on the app made by ``create_app``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies
from stspilot.web.app import create_app
from stspilot.web.settings import WebSettings

APP_HOST = "stspilot.test"
PASSWORD = "correct horse battery"
SECRET = b"web-test-secret-key-0123456789abcdef"
FAST_SCRYPT = 2**10  # test users only: production hashes use N=2^14


@dataclass
class Clock:
    """A settable wall clock for the app (decommission waits, session expiry)."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 22, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    store: Store
    clock: Clock
    tokens: dict[str, str]  # user name -> bearer token
    settings: WebSettings

    def auth(self, user: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}"}


def settings(**overrides: Any) -> WebSettings:
    values: dict[str, Any] = {
        "secret_key": SECRET,
        "public_hosts": frozenset({APP_HOST}),
        "secure_cookies": False,
        "policy_cache_ttl": 0.0,
        # The in-process world has no DNS to publish proofs in: tests/test_hosting_proof.py
        # runs the proof against `stspilot serve` and the lab's DNS server.
        "require_hosting_proof": False,
    }
    values.update(overrides)
    return WebSettings(**values)


def build_world(store: Store, web: WebSettings | None = None) -> World:
    """Tenants acme (alice, example.com) and globex (gina, globex.test); ops (root, admin)."""
    clock = Clock()
    accounts = Accounts(store)
    hosting = HostedPolicies(store)
    tokens: dict[str, str] = {}
    for tenant, user, admin in (
        ("acme", "alice", False),
        ("globex", "gina", False),
        ("ops", "root", True),
    ):
        t = accounts.add_tenant(tenant, now=clock())
        u = accounts.add_user(
            user, PASSWORD, tenant=tenant, admin=admin, now=clock(), password_n=FAST_SCRYPT
        )
        tokens[user], _ = accounts.create_token(u.id, "tests", now=clock())
        if tenant == "acme":
            hosting.add(
                "example.com",
                tenant_id=t.id,
                mode="testing",
                mx=["mx1.example.com", "mx2.example.com"],
                now=clock(),
            )
        elif tenant == "globex":
            hosting.add(
                "globex.test",
                tenant_id=t.id,
                mode="enforce",
                mx=["*.globex.test"],
                max_age=604800,
                now=clock(),
            )
    return World(store, clock, tokens, web or settings())


def client_for(app: Any, *, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url=f"http://{APP_HOST}")


def make_app(world: World, **settings_overrides: Any) -> Any:
    web = settings(**settings_overrides) if settings_overrides else world.settings
    return create_app(web, world.store, routers=[], clock=world.clock)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def login(client: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": form_token(page.text)},
    )
