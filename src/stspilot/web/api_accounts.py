"""The JSON API's accounts (``/api``): API tokens, tenants and users, with their roles.

Beside ``web/api.py`` (domains, checks, reports, rollout) on the same ``/api`` prefix. Admins
manage everything; a tenant administrator manages its own tenant's users; everyone their own
tokens. A user of another tenant is answered exactly like an unknown one (404).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from stspilot.store.accounts import ApiToken, NotFound, Tenant, User
from stspilot.web.api import CurrentUser, me
from stspilot.web.api_models import (
    TenantIn,
    TenantOut,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
)
from stspilot.web.auth import context, require_admin

Admin = Annotated[User, Depends(require_admin)]

router = APIRouter(prefix="/api", tags=["accounts"])


def _token_out(t: ApiToken, now: datetime) -> TokenOut:
    return TokenOut(
        id=t.id,
        name=t.name,
        prefix=t.prefix,
        scope=t.scope,
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked=t.revoked,
        expired=t.expired(now),
    )


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(request: Request, user: CurrentUser) -> list[TokenOut]:
    ctx = context(request)
    now = ctx.clock()
    return [_token_out(t, now) for t in ctx.accounts.list_tokens(user.id)]


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    responses={403: {"description": "a token asked for a token that outlives it"}},
)
def create_token(request: Request, user: CurrentUser, body: TokenIn) -> TokenCreated:
    """A new token (the secret is in this answer only); 90 days and scope write by default."""
    ctx = context(request)
    now = ctx.clock()
    days = body.expires_in_days
    expires_at = None if days is None else now + timedelta(days=days)
    # A token's expiry bounds what it can do, including the tokens it makes: otherwise a
    # stolen short-lived token would buy permanent access.
    caller: ApiToken | None = getattr(request.state, "token", None)
    if expires_at is None and getattr(request.state, "auth", None) == "session":
        # A browser session (12 h) must not buy permanent access: a cookie stolen once would
        # otherwise mint a token that never expires.
        from fastapi import HTTPException

        raise HTTPException(403, "a login session cannot make a token that never expires")
    limit = None if caller is None else caller.expires_at
    if limit is not None and (expires_at is None or expires_at > limit):
        from fastapi import HTTPException

        raise HTTPException(403, f"this token expires at {limit.isoformat()}: so must its tokens")
    secret, token = ctx.accounts.create_token(
        user.id, body.name, now=now, scope=body.scope, expires_at=expires_at
    )
    return TokenCreated(**_token_out(token, now).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(request: Request, user: CurrentUser, token_id: int) -> None:
    if not 0 < token_id < 2**63:
        raise NotFound(f"no token {token_id}")
    context(request).accounts.revoke_token(user.id, token_id)


def _tenant_out(t: Tenant) -> TenantOut:
    return TenantOut(name=t.name, created_at=t.created_at)


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(request: Request, user: Admin) -> list[TenantOut]:
    return [_tenant_out(t) for t in context(request).accounts.list_tenants()]


@router.post("/tenants", response_model=TenantOut, status_code=201)
def add_tenant(request: Request, user: Admin, body: TenantIn) -> TenantOut:
    ctx = context(request)
    return _tenant_out(ctx.accounts.add_tenant(body.name, now=ctx.clock()))


@router.get("/users", response_model=list[UserOut])
def list_users(request: Request, user: CurrentUser) -> list[UserOut]:
    """Every user (admins) or the users of one's own tenant (tenant admins)."""
    accounts = context(request).accounts
    if user.is_admin:
        return [me(u) for u in accounts.list_users()]
    _require_manager(user)
    return [me(u) for u in accounts.list_users(user.tenant_id)]


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(request: Request, user: CurrentUser, body: UserIn) -> UserOut:
    """Admins add users anywhere; a tenant admin adds users (and tenant admins) to its own
    tenant only, never a global admin."""
    ctx = context(request)
    if not user.is_admin:
        _require_manager(user)
        if body.tenant != user.tenant:
            raise NotFound(f"no tenant {body.tenant!r}")
        if body.admin:
            from fastapi import HTTPException

            raise HTTPException(403, "only administrators make administrators")
    created = ctx.accounts.add_user(
        body.name,
        body.password,
        tenant=body.tenant,
        admin=body.admin,
        tenant_admin=body.tenant_admin,
        now=ctx.clock(),
    )
    return me(created)


@router.post("/users/{name}/disable", response_model=UserOut)
def disable_user(request: Request, user: CurrentUser, name: str) -> UserOut:
    """The user can no longer log in; its sessions end and its tokens are refused."""
    return me(_managed(request, user, name, disabled=True))


@router.post("/users/{name}/enable", response_model=UserOut)
def enable_user(request: Request, user: CurrentUser, name: str) -> UserOut:
    return me(_managed(request, user, name, disabled=False))


def _require_manager(user: User) -> None:
    if not (user.is_admin or user.tenant_admin):
        from fastapi import HTTPException

        raise HTTPException(403, "administrators and tenant administrators only")


def _managed(request: Request, user: User, name: str, *, disabled: bool) -> User:
    _require_manager(user)
    accounts = context(request).accounts
    target = accounts.get_user_by_name(name)
    if target is None or not user.may_manage(target):  # another tenant's: like an unknown one
        raise NotFound(f"no user {name!r}")
    return accounts.set_disabled(name, disabled)
