"""API tokens: expiry, read/write scopes, last use, listing (API and CLI) and the migration that
brought them (0006). Real store, real app over in-process ASGI, the app's settable clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from stspilot.cli import EXIT_OK, EXIT_USAGE, main
from stspilot.errors import ConfigError
from stspilot.store import Store
from stspilot.store.accounts import (
    DEFAULT_TOKEN_LIFETIME,
    LAST_USED_EVERY,
    Accounts,
    ApiToken,
    hash_password,
    token_digest,
)
from stspilot.store.schema import UtcDateTime
from stspilot.store.versions import MIGRATIONS
from web_support import PASSWORD, World, client_for, form_token, login, make_app

pytestmark = pytest.mark.db


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(world)) as c:
        yield c


def _bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def _make(world: World, user: str, **options: Any) -> str:
    accounts = Accounts(world.store)
    owner = accounts.get_user_by_name(user)
    assert owner is not None
    secret, _ = accounts.create_token(owner.id, "made", now=world.clock(), **options)
    return secret


def _stored(world: World, user: str, secret: str) -> ApiToken:
    accounts = Accounts(world.store)
    owner = accounts.get_user_by_name(user)
    assert owner is not None
    return next(t for t in accounts.list_tokens(owner.id) if secret.startswith(t.prefix))


# --- expiry ------------------------------------------------------------------------------------


async def test_expired_token_is_refused_like_a_revoked_one(
    client: httpx.AsyncClient, world: World
) -> None:
    expiring = _make(world, "alice", expires_at=world.clock() + timedelta(hours=1))
    revoked = _make(world, "alice")
    gone = _stored(world, "alice", revoked)
    Accounts(world.store).revoke_token(gone.user_id, gone.id)
    assert (await client.get("/api/me", headers=_bearer(expiring))).status_code == 200
    world.clock.advance(minutes=59, seconds=59)
    assert (await client.get("/api/me", headers=_bearer(expiring))).status_code == 200
    world.clock.advance(seconds=1)  # expires_at itself is already too late
    answers = [
        await client.get("/api/me", headers=_bearer(secret))
        for secret in (expiring, revoked, "stsp_" + "x" * 43)
    ]
    assert {r.status_code for r in answers} == {401}
    # Nothing tells an expired token from a revoked or an unknown one.
    assert len({(r.text, r.headers["www-authenticate"]) for r in answers}) == 1
    listed = (await client.get("/api/tokens", headers=world.auth("alice"))).json()
    by_prefix = {t["prefix"]: t for t in listed}
    assert by_prefix[expiring[:11]]["expired"] is True
    assert by_prefix[expiring[:11]]["revoked"] is False
    assert by_prefix[revoked[:11]]["revoked"] is True


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"scope": "admin"}, "scope"),
        ({"expires_at": datetime(2026, 11, 22, 12, 0, tzinfo=UTC)}, "future"),
        ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "future"),
    ],
)
def test_store_refuses_bad_tokens(world: World, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        _make(world, "alice", **options)


# --- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/tokens", {"name": "more"}),
        ("DELETE", "/api/tokens/1", None),
        ("PATCH", "/api/domains/example.com", {"mode": "enforce"}),
        ("POST", "/api/domains", {"domain": "new.example.com"}),
        ("POST", "/api/domains/example.com/decommission", None),
    ],
)
async def test_read_token_cannot_write(
    client: httpx.AsyncClient, world: World, method: str, path: str, body: Any
) -> None:
    read = _bearer(_make(world, "alice", scope="read"))
    r = await client.request(method, path, json=body, headers=read)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"  # RFC 9457, like all errors
    problem = r.json()
    assert (problem["status"], problem["title"]) == (403, "forbidden")
    assert "scope read" in problem["detail"]
    # Nothing changed.
    domain = (await client.get("/api/domains/example.com", headers=read)).json()
    assert domain["mode"] == "testing" and domain["state"] == "active"
    assert [t["name"] for t in (await client.get("/api/tokens", headers=read)).json()] == [
        "tests",
        "made",
    ]


async def test_read_token_reads(client: httpx.AsyncClient, world: World) -> None:
    read = _bearer(_make(world, "alice", scope="read"))
    for path in ("/api/me", "/api/domains", "/api/domains/example.com", "/api/tokens"):
        r = await client.get(path, headers=read)
        assert r.status_code == 200, (path, r.text)
    assert (await client.head("/api/me", headers=read)).status_code in (200, 405)
    openapi = await client.get("/api/openapi.json", headers=read)
    assert openapi.status_code == 200


async def test_write_token_writes(client: httpx.AsyncClient, world: World) -> None:
    write = _bearer(_make(world, "alice", scope="write"))
    r = await client.patch("/api/domains/example.com", json={"mode": "enforce"}, headers=write)
    assert r.status_code == 200 and r.json()["mode"] == "enforce"
    made = await client.post("/api/tokens", json={"name": "ci", "scope": "read"}, headers=write)
    assert made.status_code == 201 and made.json()["scope"] == "read"


async def test_a_token_never_exceeds_its_user(client: httpx.AsyncClient, world: World) -> None:
    alice_write = _bearer(_make(world, "alice", scope="write"))
    root_read = _bearer(_make(world, "root", scope="read"))
    assert (await client.get("/api/tenants", headers=alice_write)).status_code == 403
    new_tenant = {"name": "initech"}
    refused = await client.post("/api/tenants", json=new_tenant, headers=alice_write)
    assert refused.status_code == 403 and refused.json()["detail"] == "administrators only"
    assert (await client.get("/api/tenants", headers=root_read)).status_code == 200
    refused = await client.post("/api/tenants", json=new_tenant, headers=root_read)
    assert refused.status_code == 403 and "scope read" in refused.json()["detail"]
    names = [t["name"] for t in (await client.get("/api/tenants", headers=root_read)).json()]
    assert "initech" not in names


async def test_sessions_have_no_scope(client: httpx.AsyncClient) -> None:
    await login(client, "alice")
    csrf = {"x-csrf-token": form_token((await client.get("/login")).text)}
    made = await client.post("/api/tokens", json={"name": "browser"}, headers=csrf)
    assert made.status_code == 201


# --- creation through the API ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "lifetime"),
    [
        ({"name": "default"}, 201, DEFAULT_TOKEN_LIFETIME),
        ({"name": "week", "expires_in_days": 7}, 201, timedelta(days=7)),
        ({"name": "forever", "expires_in_days": None}, 201, None),
        ({"name": "zero", "expires_in_days": 0}, 422, None),
        ({"name": "huge", "expires_in_days": 10**9}, 422, None),
        ({"name": "bad", "scope": "admin"}, 422, None),
    ],
)
async def test_create_through_the_api(
    client: httpx.AsyncClient,
    world: World,
    body: dict[str, Any],
    status: int,
    lifetime: timedelta | None,
) -> None:
    r = await client.post("/api/tokens", json=body, headers=world.auth("alice"))
    assert r.status_code == status, r.text
    if status != 201:
        return
    made = r.json()
    assert made["token"].startswith(made["prefix"]) and made["scope"] == "write"
    assert made["last_used_at"] is None and made["expired"] is False
    if lifetime is None:
        assert made["expires_at"] is None
    else:
        assert datetime.fromisoformat(made["expires_at"]) == world.clock() + lifetime
    listed = (await client.get("/api/tokens", headers=world.auth("alice"))).json()
    assert "token" not in listed[-1]
    assert {k: v for k, v in made.items() if k != "token"} == listed[-1]


async def test_a_token_cannot_outlive_itself(client: httpx.AsyncClient, world: World) -> None:
    short = _bearer(_make(world, "alice", expires_at=world.clock() + timedelta(days=30)))
    for body in ({"name": "x"}, {"name": "x", "expires_in_days": None}):  # 90 days; never
        r = await client.post("/api/tokens", json=body, headers=short)
        assert r.status_code == 403 and "expires at" in r.json()["detail"]
    ok = await client.post("/api/tokens", json={"name": "x", "expires_in_days": 30}, headers=short)
    assert ok.status_code == 201
    # Tokens without expiry and sessions are not limited.
    forever = {"name": "y", "expires_in_days": None}
    assert (await client.post("/api/tokens", json=forever, headers=world.auth("alice"))).is_success


async def test_openapi_describes_the_token_fields(client: httpx.AsyncClient, world: World) -> None:
    spec = (await client.get("/api/openapi.json", headers=world.auth("alice"))).json()
    schemas = spec["components"]["schemas"]
    assert {"scope", "expires_at", "last_used_at", "revoked", "expired"} <= set(
        schemas["TokenOut"]["properties"]
    )
    token_in = schemas["TokenIn"]["properties"]
    assert token_in["expires_in_days"]["default"] == 90
    assert token_in["scope"]["enum"] == ["read", "write"]


# --- last use ----------------------------------------------------------------------------------


async def test_last_used_is_written_at_most_once_a_minute(
    client: httpx.AsyncClient, world: World
) -> None:
    secret = _make(world, "alice")
    assert _stored(world, "alice", secret).last_used_at is None
    first = world.clock()
    assert (await client.get("/api/me", headers=_bearer(secret))).status_code == 200
    assert _stored(world, "alice", secret).last_used_at == first
    world.clock.advance(seconds=LAST_USED_EVERY.total_seconds() - 1)
    for _ in range(3):
        assert (await client.get("/api/me", headers=_bearer(secret))).status_code == 200
    assert _stored(world, "alice", secret).last_used_at == first  # not rewritten
    world.clock.advance(seconds=1)
    assert (await client.get("/api/me", headers=_bearer(secret))).status_code == 200
    assert _stored(world, "alice", secret).last_used_at == first + LAST_USED_EVERY
    listed = (await client.get("/api/tokens", headers=_bearer(secret))).json()
    mine = next(t for t in listed if secret.startswith(t["prefix"]))
    assert datetime.fromisoformat(mine["last_used_at"]) == first + LAST_USED_EVERY


def test_last_used_touches_one_token_only(world: World) -> None:
    accounts = Accounts(world.store)
    used, idle = _make(world, "alice"), _make(world, "alice")
    found = accounts.authenticate_token(used, now=world.clock())
    assert found is not None and found[0].name == "alice"
    assert found[1].last_used_at == world.clock()
    assert _stored(world, "alice", idle).last_used_at is None


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_create_and_list(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STSPILOT_PASSWORD", PASSWORD)
    db = ["--db", store_url]
    assert main(["user", "add", "carol", "--tenant", "initech", *db]) == EXIT_OK
    capsys.readouterr()
    runs = [
        ["--name", "nightly", "--scope", "read", "--expires-in", "7d"],
        ["--name", "default"],
        ["--name", "forever", "--no-expiry"],
    ]
    secrets = []
    for options in runs:
        assert main(["token", "create", "--user", "carol", *options, *db]) == EXIT_OK
        out = capsys.readouterr()
        assert out.out.startswith("stsp_") and out.out.count("\n") == 1  # the secret alone
        assert "expires" in out.err
        secrets.append(out.out.strip())

    assert main(["token", "list", "--user", "carol", "--json", *db]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["scope"], t["state"]) for t in listed] == [
        ("nightly", "read", "active"),
        ("default", "write", "active"),
        ("forever", "write", "active"),
    ]
    lifetimes = [
        None
        if t["expires_at"] is None
        else datetime.fromisoformat(t["expires_at"]) - datetime.fromisoformat(t["created_at"])
        for t in listed
    ]
    assert lifetimes == [timedelta(days=7), DEFAULT_TOKEN_LIFETIME, None]
    assert all(t["last_used_at"] is None for t in listed)

    with Store.open(store_url) as store:
        found = Accounts(store).authenticate_token(secrets[0], now=datetime.now(UTC))
        assert found is not None and found[1].scope == "read"

    assert main(["token", "revoke", str(listed[0]["id"]), "--user", "carol", *db]) == EXIT_OK
    assert main(["token", "list", "--user", "carol", *db]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 3
    first = lines[0].split("\t")
    assert first[1:4] == ["nightly", secrets[0][:11] + "...", "read"]
    assert first[-2].startswith("last-used=20") and first[-1] == "revoked"  # used just above
    assert lines[1].split("\t")[-2:] == ["last-used=never", "active"]
    assert lines[2].split("\t")[5] == "expires=never"


@pytest.mark.parametrize(
    "options",
    [
        ["--scope", "admin"],
        ["--expires-in", "soon"],
        ["--expires-in", "7d", "--no-expiry"],
    ],
)
def test_cli_refuses_bad_options(
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
) -> None:
    monkeypatch.setenv("STSPILOT_PASSWORD", PASSWORD)
    assert main(["user", "add", "carol", "--tenant", "initech", "--db", store_url]) == EXIT_OK
    code = main(["token", "create", "--user", "carol", *options, "--db", store_url])
    assert code == EXIT_USAGE
    assert "stsp_" not in capsys.readouterr().out


# --- migration 0006 ----------------------------------------------------------------------------


def test_upgrade_from_0005_keeps_old_tokens_working(store_url: str) -> None:
    created = datetime(2025, 1, 1, tzinfo=UTC)
    secret = "stsp_" + "old" * 14
    with Store.open(store_url, migrate=False) as store:
        with store.engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "0005")
            conn.commit()
        accounts = Accounts(store)  # tenants are unchanged since 0002
        tenant = accounts.add_tenant("acme", now=created)
        old_users = sa.table(  # users as of 0002 (0010 adds tenant_admin)
            "users",
            sa.column("id"),
            sa.column("tenant_id"),
            sa.column("name"),
            sa.column("password_hash"),
            sa.column("is_admin", sa.Boolean()),
            sa.column("disabled", sa.Boolean()),
            sa.column("session_epoch"),
            sa.column("created_at", UtcDateTime()),
        )
        with store.engine.begin() as conn:
            user_id = conn.execute(
                old_users.insert().returning(old_users.c.id),
                {
                    "tenant_id": tenant.id,
                    "name": "old",
                    "password_hash": hash_password(PASSWORD, n=2**10),
                    "is_admin": False,
                    "disabled": False,
                    "session_epoch": 0,
                    "created_at": created,
                },
            ).scalar_one()
        old_tokens = sa.table(
            "api_tokens",
            sa.column("user_id"),
            sa.column("name"),
            sa.column("prefix"),
            sa.column("token_sha256"),
            sa.column("created_at", UtcDateTime()),
            sa.column("revoked", sa.Boolean()),
        )
        with store.engine.begin() as conn:
            conn.execute(
                old_tokens.insert(),
                {
                    "user_id": user_id,
                    "name": "legacy",
                    "prefix": secret[:11],
                    "token_sha256": token_digest(secret),
                    "created_at": created,
                    "revoked": False,
                },
            )
        store.migrate()
        now = datetime(2030, 1, 1, tzinfo=UTC)  # years later: still no expiry
        found = accounts.authenticate_token(secret, now=now)
        assert found is not None
        owner, token = found
        assert owner.name == "old"
        assert (token.scope, token.expires_at, token.last_used_at) == ("write", None, now)
        [listed] = accounts.list_tokens(user_id)
        assert listed.state(now) == "active" and listed.created_at == created
