"""Tenants, users (scrypt-hashed passwords) and API tokens (stored hashed) for the web app.

An MSP runs one stspilot for many customers: every user and every hosted domain belongs to one
tenant, and a user sees only its tenant's domains unless it is an admin (the operator). Session
cookies are stateless (signed by the web app); ``session_epoch`` lets one revoke them all.

An API token acts as its user, narrowed by its scope (``read``: safe methods only, enforced by
the web app's auth dependency) and its expiry; it never has more rights than the user.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    false,
    select,
)

from stspilot.errors import ConfigError, StoreError
from stspilot.store.schema import Id, UtcDateTime, metadata
from stspilot.store.transaction import transaction

if TYPE_CHECKING:
    from stspilot.store.api import Store


class NotFound(StoreError, LookupError):
    """The named thing does not exist (or the caller may not know that it does)."""


class Conflict(StoreError):
    """The thing exists already, or its state forbids the change."""


tenants = Table(
    "tenants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Id, ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("is_admin", Boolean(), nullable=False),
    Column("disabled", Boolean(), nullable=False),
    # Manages the users of its own tenant (not other tenants): migration 0008_harden.
    Column("tenant_admin", Boolean(), nullable=False, server_default=false()),
    # Part of every session cookie: bumping it logs the user out everywhere.
    Column("session_epoch", Integer(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)
Index(None, users.c.tenant_id)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("prefix", String(16), nullable=False),  # shown in listings; the token is not kept
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked", Boolean(), nullable=False),
    # "read" or "write"; tokens made before scopes existed had full power (migration 0006).
    Column("scope", String(8), nullable=False, server_default="write"),
    Column("expires_at", UtcDateTime()),  # NULL: never
    Column("last_used_at", UtcDateTime()),  # at most LAST_USED_EVERY stale
)
Index(None, api_tokens.c.user_id)

log = logging.getLogger(__name__)

# --- passwords and tokens ----------------------------------------------------------------------

# scrypt (stdlib, memory-hard): N=2^14, r=8, p=1 is 16 MiB and ~50 ms per hash, the parameter
# set RFC 7914 §2 and OWASP name for interactive logins. Encoded with its parameters so they
# can be raised later without invalidating stored hashes.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_PREFIX = "stsp_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+\-]{0,127}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # scrypt hashes anything, but a megabyte password is a denial of service

TokenScope = Literal["read", "write"]
TOKEN_SCOPES: tuple[TokenScope, ...] = get_args(TokenScope)
# What the API and the CLI give a new token unless told otherwise (no expiry is an explicit
# choice): a leaked token that nobody remembers stops working on its own.
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
# ``last_used_at`` is written when a token authenticates, but not more often than this per
# token: a busy API client costs one UPDATE a minute, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """``scrypt$N$r$p$salt$hash`` for ``password`` with a fresh 16-byte salt."""
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"a password has at most {MAX_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against ``hash_password``'s output."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(want),
            maxmem=128 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so "no such user" takes as long as
    "wrong password" and the login form does not reveal which names exist. Made on first use:
    at import it cost every command that opens the store ~50-100 ms of scrypt."""
    return hash_password(secrets.token_urlsafe(16))


def token_digest(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 is enough (no dictionary to guard against)
    # and lets the lookup be one indexed equality.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{what} name {name!r}: use 1-128 letters, digits and _ . @ + - (start with a "
            "letter or digit)"
        )
    return name


# --- models ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    tenant_id: int
    tenant: str
    is_admin: bool
    disabled: bool
    session_epoch: int
    created_at: datetime
    tenant_admin: bool = False  # manages its own tenant's users (``is_admin``: every tenant's)

    def may_see(self, tenant_id: int) -> bool:
        """Admins see every tenant; everyone else only their own."""
        return self.is_admin or tenant_id == self.tenant_id

    def may_manage(self, other: User) -> bool:
        """Admins manage every user; a tenant admin the users of its tenant that are not
        global admins."""
        if self.is_admin:
            return True
        return self.tenant_admin and other.tenant_id == self.tenant_id and not other.is_admin


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    revoked: bool
    scope: TokenScope
    expires_at: datetime | None  # None: never
    last_used_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def state(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        if self.revoked:
            return "revoked"
        return "expired" if self.expired(now) else "active"


_USER_COLUMNS = (
    users.c.id,
    users.c.name,
    users.c.tenant_id,
    tenants.c.name,
    users.c.is_admin,
    users.c.disabled,
    users.c.session_epoch,
    users.c.created_at,
    users.c.tenant_admin,
)
_TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.user_id,
    api_tokens.c.name,
    api_tokens.c.prefix,
    api_tokens.c.created_at,
    api_tokens.c.revoked,
    api_tokens.c.scope,
    api_tokens.c.expires_at,
    api_tokens.c.last_used_at,
)


def _user_query() -> Select[Any]:
    return select(*_USER_COLUMNS).join(tenants, tenants.c.id == users.c.tenant_id)


class Accounts:
    """Tenants, users and API tokens in the ``Store``'s database."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _conn(self, *, write: bool) -> AbstractContextManager[Connection]:
        return transaction(
            self._engine, write=write, on_conflict=lambda e: Conflict(f"already exists: {e.orig}")
        )

    # -- tenants ------------------------------------------------------------------------------

    def add_tenant(self, name: str, *, now: datetime) -> Tenant:
        check_name(name, "tenant")
        with self._conn(write=True) as conn:
            if conn.execute(select(tenants.c.id).where(tenants.c.name == name)).first():
                raise Conflict(f"tenant {name!r} exists already")
            pk = conn.execute(
                tenants.insert().returning(tenants.c.id), {"name": name, "created_at": now}
            ).scalar_one()
        return Tenant(int(pk), name, now)

    def get_tenant(self, name: str) -> Tenant | None:
        with self._conn(write=False) as conn:
            row = conn.execute(select(tenants).where(tenants.c.name == name)).first()
        return None if row is None else Tenant(int(row.id), row.name, row.created_at)

    def tenant(self, name: str) -> Tenant:
        found = self.get_tenant(name)
        if found is None:
            raise NotFound(f"no tenant {name!r}")
        return found

    def list_tenants(self) -> list[Tenant]:
        with self._conn(write=False) as conn:
            rows = conn.execute(select(tenants).order_by(tenants.c.name)).all()
        return [Tenant(int(r.id), r.name, r.created_at) for r in rows]

    # -- users --------------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        password: str,
        *,
        tenant: str,
        now: datetime,
        admin: bool = False,
        password_n: int = SCRYPT_N,
        tenant_admin: bool = False,
    ) -> User:
        check_name(name, "user")
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"a password has at least {MIN_PASSWORD} characters")
        encoded = hash_password(password, n=password_n)
        owner = self.tenant(tenant)
        with self._conn(write=True) as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise Conflict(f"user {name!r} exists already")
            pk = conn.execute(
                users.insert().returning(users.c.id),
                {
                    "tenant_id": owner.id,
                    "name": name,
                    "password_hash": encoded,
                    "is_admin": admin,
                    "tenant_admin": tenant_admin,
                    "disabled": False,
                    "session_epoch": 0,
                    "created_at": now,
                },
            ).scalar_one()
        return User(int(pk), name, owner.id, owner.name, admin, False, 0, now, tenant_admin)

    def get_user(self, user_id: int) -> User | None:
        with self._conn(write=False) as conn:
            row = conn.execute(_user_query().where(users.c.id == user_id)).first()
        return None if row is None else User(*row)

    def get_user_by_name(self, name: str) -> User | None:
        with self._conn(write=False) as conn:
            row = conn.execute(_user_query().where(users.c.name == name)).first()
        return None if row is None else User(*row)

    def list_users(self, tenant_id: int | None = None) -> list[User]:
        q = _user_query().order_by(users.c.name)
        if tenant_id is not None:
            q = q.where(users.c.tenant_id == tenant_id)
        with self._conn(write=False) as conn:
            return [User(*row) for row in conn.execute(q)]

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with this name and password, else None (in about equal time)."""
        with self._conn(write=False) as conn:
            row = conn.execute(
                select(users.c.id, users.c.password_hash, users.c.disabled).where(
                    users.c.name == name
                )
            ).first()
        if row is None:
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, row.password_hash) or row.disabled:
            return None
        return self.get_user(int(row.id))

    def set_password(
        self,
        name: str,
        password: str,
        *,
        password_n: int = SCRYPT_N,
        revoke_tokens: bool = False,
    ) -> int:
        """New password; also ends every session of the user, and with ``revoke_tokens``
        revokes every API token of the user (a leaked password may have made some).
        Returns how many tokens were revoked."""
        if len(password) < MIN_PASSWORD:
            raise ConfigError(f"a password has at least {MIN_PASSWORD} characters")
        encoded = hash_password(password, n=password_n)
        with self._conn(write=True) as conn:
            done = conn.execute(
                users.update()
                .where(users.c.name == name)
                .values(password_hash=encoded, session_epoch=users.c.session_epoch + 1)
            )
            if done.rowcount != 1:
                raise NotFound(f"no user {name!r}")
            if not revoke_tokens:
                return 0
            owner = select(users.c.id).where(users.c.name == name).scalar_subquery()
            revoked = conn.execute(
                api_tokens.update()
                .where(api_tokens.c.user_id == owner, api_tokens.c.revoked.is_(False))
                .values(revoked=True)
            )
            return int(revoked.rowcount or 0)

    def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (or enable again) a user: a disabled user cannot log in, its sessions end
        at once and its API tokens are refused (kept, so enabling restores them)."""
        with self._conn(write=True) as conn:
            done = conn.execute(
                users.update()
                .where(users.c.name == name)
                .values(disabled=disabled, session_epoch=users.c.session_epoch + 1)
            )
            if done.rowcount != 1:
                raise NotFound(f"no user {name!r}")
        found = self.get_user_by_name(name)
        assert found is not None
        return found

    def end_sessions(self, user_id: int) -> None:
        with self._conn(write=True) as conn:
            conn.execute(
                users.update()
                .where(users.c.id == user_id)
                .values(session_epoch=users.c.session_epoch + 1)
            )

    # -- API tokens ---------------------------------------------------------------------------

    def create_token(
        self,
        user_id: int,
        name: str,
        *,
        now: datetime,
        scope: TokenScope = "write",
        expires_at: datetime | None = None,
    ) -> tuple[str, ApiToken]:
        """A new token for the user: the secret is returned once and only its hash is kept.

        ``expires_at`` None means never; the edges (API, CLI) default to ``DEFAULT_TOKEN_LIFETIME``.
        """
        check_name(name, "token")
        if scope not in TOKEN_SCOPES:
            raise ConfigError(f"token scope {scope!r}: use one of {', '.join(TOKEN_SCOPES)}")
        if expires_at is not None and expires_at <= now:
            raise ConfigError("a token's expiry must be in the future")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = secret[: len(TOKEN_PREFIX) + 6]
        with self._conn(write=True) as conn:
            if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
                raise NotFound(f"no user {user_id}")
            pk = conn.execute(
                api_tokens.insert().returning(api_tokens.c.id),
                {
                    "user_id": user_id,
                    "name": name,
                    "prefix": prefix,
                    "token_sha256": token_digest(secret),
                    "created_at": now,
                    "revoked": False,
                    "scope": scope,
                    "expires_at": expires_at,
                    "last_used_at": None,
                },
            ).scalar_one()
        token = ApiToken(int(pk), user_id, name, prefix, now, False, scope, expires_at, None)
        return secret, token

    def authenticate_token(self, secret: str, *, now: datetime) -> tuple[User, ApiToken] | None:
        """The enabled user and the live (not revoked, not expired) token behind ``secret``,
        else None, whatever the reason. Records ``last_used_at`` (at most once a minute)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            return None
        q = (
            select(*_USER_COLUMNS, *_TOKEN_COLUMNS)
            .join(tenants, tenants.c.id == users.c.tenant_id)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(
                api_tokens.c.token_sha256 == token_digest(secret),
                api_tokens.c.revoked.is_(False),
                users.c.disabled.is_(False),
            )
        )
        with self._conn(write=False) as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        user = User(*row[: len(_USER_COLUMNS)])
        token = ApiToken(*row[len(_USER_COLUMNS) :])
        if token.expired(now):
            return None
        seen = token.last_used_at
        if seen is None or now - seen >= LAST_USED_EVERY:
            token = self._touch_token(token, now=now)
        return user, token

    def _touch_token(self, token: ApiToken, *, now: datetime) -> ApiToken:
        """Set ``last_used_at``; the condition makes concurrent workers write it once. Best
        effort: a busy database must not turn a valid request into an error."""
        stale = now - LAST_USED_EVERY
        try:
            with self._conn(write=True) as conn:
                conn.execute(
                    api_tokens.update()
                    .where(
                        api_tokens.c.id == token.id,
                        (api_tokens.c.last_used_at.is_(None))
                        | (api_tokens.c.last_used_at <= stale),
                    )
                    .values(last_used_at=now)
                )
        except StoreError as exc:
            log.warning("token %s: last use not recorded: %s", token.prefix, exc)
            return token
        return replace(token, last_used_at=now)

    def user_for_token(self, secret: str, *, now: datetime) -> User | None:
        """The enabled user a live token belongs to, else None."""
        found = self.authenticate_token(secret, now=now)
        return None if found is None else found[0]

    def list_tokens(self, user_id: int) -> list[ApiToken]:
        q = select(*_TOKEN_COLUMNS).where(api_tokens.c.user_id == user_id).order_by(api_tokens.c.id)
        with self._conn(write=False) as conn:
            return [ApiToken(*row) for row in conn.execute(q)]

    def revoke_token(self, user_id: int, token_id: int) -> None:
        with self._conn(write=True) as conn:
            done = conn.execute(
                api_tokens.update()
                .where(api_tokens.c.id == token_id, api_tokens.c.user_id == user_id)
                .values(revoked=True)
            )
            if done.rowcount != 1:
                raise NotFound(f"no token {token_id}")
