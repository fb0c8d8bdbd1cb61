"""Sessions and logins against an outsider (issue 15, Low), on ``stspilot serve``: logout ends
the session on the server, a session cannot mint a token that never expires, a password
change can revoke tokens, failed logins back off per account, and IPv6 clients are counted
per /64."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from serve_process import Served, serving
from stspilot.store import Store
from stspilot.store.accounts import Accounts

NOW = datetime.now(UTC)
PASSWORD = "correct horse battery"
APP = "app.test"
ENV = {"STSPILOT_INSECURE_COOKIES": "1", "STSPILOT_PUBLIC_HOSTS": APP}


@pytest.fixture
def served(store_url: str, store: Store) -> Iterator[Served]:
    accounts = Accounts(store)
    accounts.add_tenant("acme", now=NOW)
    accounts.add_user("alice", PASSWORD, tenant="acme", now=NOW, password_n=2**10)
    with serving(store_url, ENV) as running:
        yield running


def client(served: Served, forwarded: str | None = None) -> httpx.Client:
    headers = {"host": APP}
    if forwarded:
        headers["x-forwarded-for"] = forwarded  # the server trusts its loopback peer
    return httpx.Client(base_url=served.base, headers=headers, timeout=30)


def login(http: httpx.Client, password: str = PASSWORD, user: str = "alice") -> httpx.Response:
    page = http.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    return http.post(
        "/login", data={"username": user, "password": password, "csrf_token": token.group(1)}
    )


def csrf(http: httpx.Client) -> str:
    page = http.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_logout_ends_the_session_on_the_server(served: Served) -> None:
    with client(served) as http:
        assert login(http).status_code == 303
        copied = dict(http.cookies)
        assert http.get("/api/me").status_code == 200
        http.post("/logout", data={"csrf_token": csrf(http)})
    with client(served) as thief:
        thief.cookies.update(copied)
        assert thief.get("/api/me").status_code == 401


def test_a_session_cannot_mint_a_token_that_never_expires(served: Served) -> None:
    with client(served) as http:
        assert login(http).status_code == 303
        headers = {"x-csrf-token": csrf(http)}
        forever = http.post(
            "/api/tokens", json={"name": "x", "expires_in_days": None}, headers=headers
        )
        bounded = http.post("/api/tokens", json={"name": "y"}, headers=headers)
    assert forever.status_code == 403
    assert bounded.status_code == 201 and bounded.json()["expires_at"] is not None


def test_password_change_revokes_tokens(served: Served, store_url: str, store: Store) -> None:
    accounts = Accounts(store)
    alice = accounts.get_user_by_name("alice")
    assert alice is not None
    secret, _ = accounts.create_token(alice.id, "ci", now=NOW)
    bearer = {"authorization": f"Bearer {secret}"}
    with client(served) as http:
        assert http.get("/api/me", headers=bearer).status_code == 200
        changed = subprocess.run(
            [sys.executable, "-m", "stspilot", "user", "password", "alice", "--revoke-tokens",
             "--db", store_url],
            env={**os.environ, "STSPILOT_PASSWORD": "another long password"},
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "1 token(s) revoked" in changed.stdout
        assert http.get("/api/me", headers=bearer).status_code == 401


def test_failed_logins_back_off_per_account(served: Served) -> None:
    """Wrong passwords for one account from ever new addresses: after ten, even the right
    password waits; another account is not affected."""
    statuses = []
    for n in range(12):
        with client(served, forwarded=f"198.51.100.{n + 1}") as http:
            statuses.append(login(http, "wrong password").status_code)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    with client(served, forwarded="203.0.113.50") as http:
        assert login(http).status_code == 429  # the right password waits too
        assert login(http, "wrong", user="bob").status_code == 401


def test_ipv6_clients_are_counted_per_64(served: Served) -> None:
    """The login limit (burst 10 per client): a /64 is one client, whatever the address."""
    statuses = []
    for n in range(12):
        with client(served, forwarded=f"2001:db8:1:2::{n + 1:x}") as http:
            statuses.append(login(http, "wrong", user=f"user{n}").status_code)
    assert 429 in statuses
    with client(served, forwarded="2001:db8:1:3::1") as http:  # another /64
        assert login(http, "wrong", user="someone").status_code == 401


def test_pages_carry_a_strict_csp_and_no_inline_script(served: Served) -> None:
    with client(served) as http:
        anonymous = http.get("/login")
        assert login(http).status_code == 303
        pages = [anonymous, *(http.get(path) for path in ("/", "/domains", "/reports"))]
    for page in pages:
        if page.status_code != 200:
            continue
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), page.url
        assert not re.search(r"\son[a-z]+=", page.text), page.url  # no inline handlers


def test_hsts_when_served_for_https(store_url: str, store: Store) -> None:
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": APP}) as running:
        page = httpx.get(f"{running.base}/login", headers={"host": APP}, timeout=30)
    assert page.headers["strict-transport-security"] == "max-age=31536000"
