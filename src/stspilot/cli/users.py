"""``stspilot tenant|user|token``: accounts, from the command line."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer

from stspilot.cli.options import DB, JSON, write_json

if TYPE_CHECKING:
    from stspilot.store import Store
    from stspilot.store.accounts import Accounts, User

PASSWORD_ENV = "STSPILOT_PASSWORD"

tenant_app = typer.Typer(help="Tenants: an MSP's customers; users see only their own domains.")
user_app = typer.Typer(help="Dashboard and API users.")
token_app = typer.Typer(help="API tokens (Authorization: Bearer ...) for machines.")


def _now() -> datetime:
    return datetime.now(UTC)


def _open(db: str | None, *, reader: bool = False) -> Store:
    from stspilot.store import Store

    return Store.open(db, reader=reader)


@tenant_app.command("add")
def tenant_add(name: str = typer.Argument(...), db: str | None = DB) -> None:
    """Create a tenant."""
    from stspilot.store.accounts import Accounts

    with _open(db) as store:
        tenant = Accounts(store).add_tenant(name, now=_now())
    typer.echo(f"tenant {tenant.name} created")


@tenant_app.command("list")
def tenant_list(db: str | None = DB, as_json: bool = JSON) -> None:
    """List tenants."""
    from stspilot.store.accounts import Accounts

    with _open(db, reader=True) as store:
        tenants = Accounts(store).list_tenants()
    if as_json:
        write_json(({"name": t.name} for t in tenants), "json")
        return
    for tenant in tenants:
        typer.echo(tenant.name)


def _password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("add")
def user_add(
    name: str = typer.Argument(...),
    tenant: str = typer.Option(..., "--tenant", help="the user's tenant (created if new)"),
    admin: bool = typer.Option(False, "--admin", help="sees and manages every tenant"),
    tenant_admin: bool = typer.Option(
        False, "--tenant-admin", help="manages the users of its own tenant"
    ),
    db: str | None = DB,
) -> None:
    """Create a user; the password comes from $STSPILOT_PASSWORD or a prompt."""
    from stspilot.store.accounts import Accounts

    password = _password()
    with _open(db) as store:
        accounts = Accounts(store)
        if accounts.get_tenant(tenant) is None:
            accounts.add_tenant(tenant, now=_now())
            typer.echo(f"tenant {tenant} created")
        user = accounts.add_user(
            name, password, tenant=tenant, admin=admin, tenant_admin=tenant_admin, now=_now()
        )
    role = " (admin)" if admin else " (tenant admin)" if tenant_admin else ""
    typer.echo(f"user {user.name} created in tenant {user.tenant}{role}")


@user_app.command("disable")
def user_disable(name: str = typer.Argument(...), db: str | None = DB) -> None:
    """Disable a user: no login, sessions end now, API tokens refused (kept for enable)."""
    from stspilot.store.accounts import Accounts

    with _open(db) as store:
        Accounts(store).set_disabled(name, True)
    typer.echo(f"user {name} disabled")


@user_app.command("enable")
def user_enable(name: str = typer.Argument(...), db: str | None = DB) -> None:
    """Enable a disabled user again (its unrevoked tokens work again)."""
    from stspilot.store.accounts import Accounts

    with _open(db) as store:
        Accounts(store).set_disabled(name, False)
    typer.echo(f"user {name} enabled")


@user_app.command("password")
def user_password(
    name: str = typer.Argument(...),
    revoke_tokens: bool | None = typer.Option(
        None,
        "--revoke-tokens/--keep-tokens",
        help="also revoke the user's API tokens (asked when not given on a terminal)",
    ),
    db: str | None = DB,
) -> None:
    """Set a new password (ends the user's sessions; offers to revoke their API tokens)."""
    import sys

    from stspilot.store.accounts import Accounts

    password = _password()
    with _open(db) as store:
        accounts = Accounts(store)
        if revoke_tokens is None:
            owner = _token_owner(accounts, name)
            live = [t for t in accounts.list_tokens(owner.id) if not t.revoked]
            revoke_tokens = (
                bool(live)
                and sys.stdin.isatty()
                and typer.confirm(
                    f"{name} has {len(live)} API token(s); revoke them too?", default=True
                )
            )
        revoked = accounts.set_password(name, password, revoke_tokens=bool(revoke_tokens))
    typer.echo(f"password of {name} changed" + (f"; {revoked} token(s) revoked" if revoked else ""))


@user_app.command("list")
def user_list(db: str | None = DB, as_json: bool = JSON) -> None:
    """List users."""
    from stspilot.store.accounts import Accounts

    with _open(db, reader=True) as store:
        users = Accounts(store).list_users()
    if as_json:
        rows = (
            {
                "name": u.name,
                "tenant": u.tenant,
                "admin": u.is_admin,
                "tenant_admin": u.tenant_admin,
                "disabled": u.disabled,
            }
            for u in users
        )
        write_json(rows, "json")
        return
    for user in users:
        flag = " admin" if user.is_admin else " tenant-admin" if user.tenant_admin else ""
        flag += " disabled" if user.disabled else ""
        typer.echo(f"{user.name}\t{user.tenant}{flag}")


def _token_owner(accounts: Accounts, user: str) -> User:
    from stspilot.store.accounts import NotFound

    owner = accounts.get_user_by_name(user)
    if owner is None:
        raise NotFound(f"no user {user!r}")
    return owner


@token_app.command("create")
def token_create(
    user: str = typer.Option(..., "--user", help="the token acts as this user"),
    name: str = typer.Option("cli", "--name", help="a label for the token"),
    scope: str = typer.Option(
        "write", "--scope", help="read (GET/HEAD only) or write (all the user may do)"
    ),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="lifetime such as 12h, 30d [default: 90d]"
    ),
    no_expiry: bool = typer.Option(False, "--no-expiry", help="the token never expires"),
    db: str | None = DB,
) -> None:
    """Create an API token and print it (it is shown only once)."""
    from stspilot.cli.values import parse_duration
    from stspilot.store.accounts import DEFAULT_TOKEN_LIFETIME, TOKEN_SCOPES, Accounts

    if scope not in TOKEN_SCOPES:
        raise typer.BadParameter(f"{scope!r}: use read or write", param_hint="--scope")
    if no_expiry and expires_in is not None:
        raise typer.BadParameter("give --expires-in or --no-expiry, not both")
    lifetime = None if no_expiry else DEFAULT_TOKEN_LIFETIME
    if expires_in is not None:
        lifetime = parse_duration(expires_in)
    now = _now()
    with _open(db) as store:
        accounts = Accounts(store)
        owner = _token_owner(accounts, user)
        secret, token = accounts.create_token(
            owner.id,
            name,
            now=now,
            scope=scope,
            expires_at=None if lifetime is None else now + lifetime,
        )
    # stdout is the secret alone (for scripts); the rest goes to stderr.
    typer.echo(secret)
    typer.echo(f"token {token.id} ({token.scope}) expires {_when(token.expires_at)}", err=True)


def _when(moment: datetime | None, never: str = "never") -> str:
    return never if moment is None else moment.isoformat(timespec="seconds")


@token_app.command("list")
def token_list(
    user: str = typer.Option(..., "--user", help="whose tokens"),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DB,
) -> None:
    """List a user's tokens: id, name, prefix, scope, created, expires, last used, state."""
    from stspilot.store.accounts import Accounts

    now = _now()
    with _open(db, reader=True) as store:
        accounts = Accounts(store)
        tokens = accounts.list_tokens(_token_owner(accounts, user).id)
    if as_json:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "scope": t.scope,
                "created_at": _when(t.created_at),
                "expires_at": t.expires_at and _when(t.expires_at),
                "last_used_at": t.last_used_at and _when(t.last_used_at),
                "revoked": t.revoked,
                "state": t.state(now),
            }
            for t in tokens
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for t in tokens:
        fields = (
            str(t.id),
            t.name,
            t.prefix + "...",
            t.scope,
            f"created={_when(t.created_at)}",
            f"expires={_when(t.expires_at)}",
            f"last-used={_when(t.last_used_at)}",
            t.state(now),
        )
        typer.echo("\t".join(fields))


@token_app.command("revoke")
def token_revoke(
    token_id: int = typer.Argument(..., help="the id shown by `token list`"),
    user: str = typer.Option(..., "--user", help="the token's user"),
    db: str | None = DB,
) -> None:
    """Revoke a token: it stops working at once."""
    from stspilot.store.accounts import Accounts

    with _open(db) as store:
        accounts = Accounts(store)
        accounts.revoke_token(_token_owner(accounts, user).id, token_id)
    typer.echo(f"token {token_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
