"""Disabling users and the tenant-level admin role (issue 15, Low): by command and by API,
against ``stspilot serve``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx

from serve_process import serving
from stspilot.store import Store
from stspilot.store.accounts import Accounts

NOW = datetime.now(UTC)
APP = "app.test"


def test_tenant_admin_manages_only_its_tenant(store_url: str, store: Store) -> None:
    accounts = Accounts(store)
    tokens = {}
    for tenant in ("acme", "globex"):
        accounts.add_tenant(tenant, now=NOW)
    for name, tenant, role in (
        ("boss", "acme", "tenant_admin"),
        ("alice", "acme", ""),
        ("gina", "globex", ""),
        ("root", "acme", "admin"),
    ):
        user = accounts.add_user(
            name, "x" * 16, tenant=tenant, now=NOW, password_n=2**10,
            admin=role == "admin", tenant_admin=role == "tenant_admin",
        )  # fmt: skip
        tokens[name], _ = accounts.create_token(user.id, "t", now=NOW)
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": APP}) as served:

        def call(who: str, method: str, path: str, **kw: object) -> httpx.Response:
            headers = {"authorization": f"Bearer {tokens[who]}", "host": APP}
            return httpx.request(method, f"{served.base}{path}", headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

        listed = call("boss", "GET", "/api/users").json()
        assert sorted(u["name"] for u in listed) == ["alice", "boss", "root"]  # its tenant
        assert call("alice", "GET", "/api/users").status_code == 403
        made = call(
            "boss",
            "POST",
            "/api/users",
            json={"name": "bob", "password": "y" * 16, "tenant": "acme"},
        )
        assert made.status_code == 201
        elsewhere = call(
            "boss",
            "POST",
            "/api/users",
            json={"name": "eve", "password": "y" * 16, "tenant": "globex"},
        )
        assert elsewhere.status_code == 404
        escalate = call(
            "boss",
            "POST",
            "/api/users",
            json={"name": "mal", "password": "y" * 16, "tenant": "acme", "admin": True},
        )
        assert escalate.status_code == 403
        # Another tenant's user, and a global admin, answer like unknown names.
        assert call("boss", "POST", "/api/users/gina/disable").status_code == 404
        assert call("boss", "POST", "/api/users/root/disable").status_code == 404
        assert call("boss", "POST", "/api/users/nobody/disable").status_code == 404
        assert call("alice", "GET", "/api/me").status_code == 200
        disabled = call("boss", "POST", "/api/users/alice/disable")
        assert disabled.status_code == 200 and disabled.json()["disabled"] is True
        assert call("alice", "GET", "/api/me").status_code == 401  # its token is refused
        assert call("root", "POST", "/api/users/alice/enable").status_code == 200
        assert call("alice", "GET", "/api/me").status_code == 200


def test_disable_by_command(store_url: str, store: Store) -> None:
    accounts = Accounts(store)
    accounts.add_tenant("acme", now=NOW)
    user = accounts.add_user("alice", "x" * 16, tenant="acme", now=NOW, password_n=2**10)
    token, _ = accounts.create_token(user.id, "t", now=NOW)
    run = [sys.executable, "-m", "stspilot", "user"]
    with serving(store_url, {"STSPILOT_PUBLIC_HOSTS": APP}) as served:
        me = f"{served.base}/api/me"
        auth = {"authorization": f"Bearer {token}", "host": APP}
        assert httpx.get(me, headers=auth, timeout=30).status_code == 200
        done = subprocess.run([*run, "disable", "alice", "--db", store_url], env=os.environ,
                              capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert "disabled" in done.stdout
        assert httpx.get(me, headers=auth, timeout=30).status_code == 401
        listed = subprocess.run([*run, "list", "--db", store_url], capture_output=True,
                                text=True, timeout=60, check=True)  # fmt: skip
        assert "alice\tacme disabled" in listed.stdout
