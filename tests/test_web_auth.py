"""Accounts and authentication: password hashing, API tokens, signed sessions, login/logout with
CSRF, session revocation, login rate limiting and the page-login redirect (issue 5)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends

from stspilot.store import Store
from stspilot.store.accounts import Accounts, User, hash_password, verify_password
from stspilot.web.app import create_app
from stspilot.web.auth import (
    make_session,
    read_session,
    require_page_user,
    safe_next,
    session_cookie_name,
)
from stspilot.web.settings import WebSettings
from web_support import (
    PASSWORD,
    World,
    client_for,
    form_token,
    login,
    make_app,
    settings,
)

pytestmark = pytest.mark.db


@pytest.mark.parametrize(
    ("stored_for", "tried", "ok"),
    [
        ("hunter2-hunter2", "hunter2-hunter2", True),
        ("hunter2-hunter2", "hunter2-hunter3", False),
        ("hunter2-hunter2", "", False),
        ("pässwörd-ünïcode", "pässwörd-ünïcode", True),
        ("pässwörd-ünïcode", "passwort-unicode", False),
    ],
)
def test_password_hash(stored_for: str, tried: str, ok: bool) -> None:
    encoded = hash_password(stored_for, n=2**10)
    assert encoded.startswith("scrypt$1024$8$1$") and stored_for not in encoded
    assert verify_password(tried, encoded) is ok


@pytest.mark.parametrize(
    "encoded",
    ["", "scrypt$", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$1024$8$1$!!$??"],
)
def test_malformed_hash_never_verifies(encoded: str) -> None:
    assert verify_password("anything", encoded) is False


def test_two_hashes_of_one_password_differ() -> None:
    assert hash_password("same password", n=2**10) != hash_password("same password", n=2**10)


def _user(epoch: int = 0) -> User:
    from datetime import UTC, datetime

    return User(7, "u", 1, "t", False, False, epoch, datetime(2026, 1, 1, tzinfo=UTC))


def test_session_cookie_roundtrip_and_tampering() -> None:
    web = settings(session_seconds=3600)
    value = make_session(web, _user(3), now=1000.0)
    assert read_session(web, value, now=1000.0) == (7, 3)
    assert read_session(web, value, now=1000.0 + 3601) is None  # expired
    uid, epoch, expires, mac = value.split(".")
    forged = ".".join(("8", epoch, expires, mac))  # another user, same mac
    assert read_session(web, forged, now=1000.0) is None
    later = ".".join((uid, epoch, str(int(expires) + 10**6), mac))  # extended expiry
    assert read_session(web, later, now=1000.0) is None
    other_key = WebSettings(secret_key=b"another-secret-key-0123456789", secure_cookies=False)
    assert read_session(other_key, value, now=1000.0) is None
    for junk in ("", "a.b.c.d", "1.2.3", "." * 300):
        assert read_session(web, junk, now=1000.0) is None


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/", "/"),
        ("/domains/example.com", "/domains/example.com"),
        ("//evil.test/", "/"),
        ("/\\evil.test", "/"),
        ("https://evil.test/", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_safe_next(target: str, safe: str) -> None:
    assert safe_next(target) == safe


async def test_login_flow(client: httpx.AsyncClient, world: World) -> None:
    page = await client.get("/login")
    assert page.status_code == 200 and "stspilot_csrf" in page.cookies
    assert page.headers["x-frame-options"] == "DENY"  # the login form cannot be framed
    assert page.headers["content-type"].startswith("text/html")
    r = await login(client, "alice")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert session_cookie_name(world.settings) in client.cookies
    me = await client.get("/api/me")
    assert me.status_code == 200 and me.json()["name"] == "alice" and me.json()["tenant"] == "acme"
    # Cookie-authenticated writes need the CSRF header: a form on another site cannot send it.
    assert (await client.post("/api/tokens", json={"name": "x"})).status_code == 403
    token = form_token((await client.get("/login")).text)
    made = await client.post("/api/tokens", json={"name": "x"}, headers={"x-csrf-token": token})
    assert made.status_code == 201 and made.json()["token"].startswith("stsp_")
    out = await client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303
    gone = await client.get("/api/me")
    assert gone.status_code == 401 and gone.headers["www-authenticate"] == "Bearer"
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["title"] == "unauthorized"


@pytest.mark.parametrize(
    ("user", "password", "status"),
    [("alice", "wrong password", 401), ("nobody", PASSWORD, 401), ("alice", "", 401)],
)
async def test_login_refused(
    client: httpx.AsyncClient, user: str, password: str, status: int
) -> None:
    r = await login(client, user, password)
    assert r.status_code == status
    assert "Wrong user name or password" in r.text
    assert (await client.get("/api/me")).status_code == 401


async def test_login_needs_csrf(client: httpx.AsyncClient) -> None:
    await client.get("/login")
    r = await client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 403
    forged = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "abc.def"}
    )
    assert forged.status_code == 403
    assert (await client.get("/api/me")).status_code == 401


async def test_login_redirect_is_never_off_site(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    r = await client.post(
        "/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": form_token(page.text),
            "next": "//evil.test/x",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_password_change_ends_sessions(client: httpx.AsyncClient, world: World) -> None:
    await login(client, "alice")
    assert (await client.get("/api/me")).status_code == 200
    Accounts(world.store).set_password("alice", "a brand new password", password_n=2**10)
    assert (await client.get("/api/me")).status_code == 401


async def test_tokens(client: httpx.AsyncClient, world: World) -> None:
    auth = world.auth("alice")
    listed = (await client.get("/api/tokens", headers=auth)).json()
    assert [t["name"] for t in listed] == ["tests"]
    assert "token" not in listed[0]  # the secret is shown once, at creation
    made = (await client.post("/api/tokens", json={"name": "ci"}, headers=auth)).json()
    new = {"authorization": f"Bearer {made['token']}"}
    assert (await client.get("/api/me", headers=new)).json()["name"] == "alice"
    gone = await client.delete(f"/api/tokens/{made['id']}", headers=auth)
    assert gone.status_code == 204
    assert (await client.get("/api/me", headers=new)).status_code == 401
    # Someone else's token id is not found, not revoked.
    other = await client.delete(f"/api/tokens/{listed[0]['id']}", headers=world.auth("gina"))
    assert other.status_code == 404
    assert (await client.get("/api/me", headers=auth)).status_code == 200


async def test_login_is_rate_limited(world: World) -> None:
    app = make_app(world, login_rate=0.001, login_burst=3, public_hosts=frozenset())
    async with client_for(app) as c:
        statuses = [(await login(c, "alice", "wrong password")).status_code for _ in range(5)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3:] == [429, 429]


async def test_secure_cookies_use_host_prefix(world: World) -> None:
    app = make_app(world, secure_cookies=True)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://stspilot.test") as c:
        r = await login(c, "alice")
        assert r.status_code == 303
        cookie = next(
            v for k, v in r.headers.multi_items() if k == "set-cookie" and "session" in k + v
        )
        assert cookie.startswith("__Host-stspilot_session=") and "Secure" in cookie
        assert "HttpOnly" in cookie
        assert (await c.get("/api/me")).status_code == 200


async def test_pages_redirect_to_login(world: World) -> None:
    pages = APIRouter()

    @pages.get("/domains-page")
    async def domains_page(user: User = Depends(require_page_user)) -> dict[str, str]:
        return {"hello": user.name}

    app = create_app(world.settings, world.store, routers=[pages], clock=world.clock)
    async with client_for(app) as c:
        r = await c.get("/domains-page?x=1")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/domains-page%3Fx%3D1"
        await login(c, "alice")
        assert (await c.get("/domains-page")).json() == {"hello": "alice"}


def test_cli_user_and_token(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from stspilot.cli.app import app

    runner = CliRunner()
    monkeypatch.setenv("STSPILOT_PASSWORD", "cli password 123")
    made = runner.invoke(app, ["user", "add", "carol", "--tenant", "initech", "--db", store_url])
    assert made.exit_code == 0, made.output
    assert "tenant initech created" in made.output and "user carol created" in made.output
    token = runner.invoke(app, ["token", "create", "--user", "carol", "--db", store_url])
    assert token.exit_code == 0 and token.stdout.startswith("stsp_")
    with Store.open(store_url) as store:
        accounts = Accounts(store)
        user = accounts.user_for_token(token.stdout.strip(), now=datetime.now(UTC))
        assert user is not None and user.name == "carol" and user.tenant == "initech"
        assert accounts.authenticate("carol", "cli password 123") is not None
    monkeypatch.setenv("STSPILOT_PASSWORD", "short")
    refused = runner.invoke(app, ["user", "add", "dave", "--tenant", "initech", "--db", store_url])
    assert refused.exit_code != 0 and isinstance(refused.exception, ValueError)
