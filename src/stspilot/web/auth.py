"""Who is asking: API tokens (``Authorization: Bearer``), signed session cookies, CSRF tokens,
the ``current_user`` / ``require_user`` dependencies and the login/logout form routes.

Sessions are stateless cookies ``uid.epoch.expires.mac`` (HMAC-SHA256 with the app's secret
key); bumping the user's ``session_epoch`` revokes them all. CSRF protection is a signed
double-submit token: the form (or the ``X-CSRF-Token`` header) must carry ``nonce.mac`` whose
nonce equals the CSRF cookie's, and only the server can make the mac. It is required on every
unsafe request authenticated by the cookie; bearer-token requests carry no ambient authority
and need none.

A token's scope is enforced here, in ``current_user``, for every route at once: a ``read``
token may only GET and HEAD (403 otherwise). Expired, revoked and unknown tokens are all the
same 401. Sessions have no scope.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from stspilot.store.accounts import ApiToken, User
from stspilot.web.ratelimit import Asgi, Receive, Scope, Send, client_address
from stspilot.web.settings import WebContext, WebSettings

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.routing import Route

auth_log = logging.getLogger("stspilot.auth")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_SCOPE_METHODS = frozenset({"GET", "HEAD"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_UNSET = object()


class LoginRequired(Exception):
    """Raised by page dependencies; the app answers with a redirect to ``/login?next=...``."""


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def session_cookie_name(settings: WebSettings) -> str:
    # __Host- cookies must be Secure, path /, without Domain: a sibling or parent domain (say a
    # hosted mta-sts.* name pointing here) cannot plant or overwrite them.
    return "__Host-stspilot_session" if settings.secure_cookies else "stspilot_session"


def csrf_cookie_name(settings: WebSettings) -> str:
    return "__Host-stspilot_csrf" if settings.secure_cookies else "stspilot_csrf"


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "|".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


# --- sessions ----------------------------------------------------------------------------------


def make_session(settings: WebSettings, user: User, *, now: float) -> str:
    expires = int(now) + settings.session_seconds
    fields = (str(user.id), str(user.session_epoch), str(expires))
    return ".".join((*fields, _mac(settings.secret_key, "session", *fields)))


def read_session(settings: WebSettings, value: str, *, now: float) -> tuple[int, int] | None:
    """(user id, epoch) of a valid, unexpired session cookie, else None."""
    parts = value.split(".")
    if len(parts) != 4 or len(value) > 256:
        return None
    uid, epoch, expires, mac = parts
    if not hmac.compare_digest(mac, _mac(settings.secret_key, "session", uid, epoch, expires)):
        return None
    if not (uid.isdigit() and epoch.isdigit() and expires.isdigit()) or int(expires) < now:
        return None
    return int(uid), int(epoch)


# --- CSRF --------------------------------------------------------------------------------------


def _csrf_for(settings: WebSettings, nonce: str) -> str:
    return f"{nonce}.{_mac(settings.secret_key, 'csrf', nonce)}"


def csrf_token(request: Request) -> str:
    """The token to put in a form's ``csrf_token`` field (or the X-CSRF-Token header).

    Sets the CSRF cookie on this response when the browser has none yet.
    """
    settings = context(request).settings
    nonce = getattr(request.state, "csrf_new", None)
    if nonce is None:
        nonce = request.cookies.get(csrf_cookie_name(settings), "")
        if not (16 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum()):
            nonce = secrets.token_urlsafe(24)
            request.state.csrf_new = nonce
    return _csrf_for(settings, nonce)


def csrf_valid(request: Request, submitted: str) -> bool:
    settings = context(request).settings
    nonce = request.cookies.get(csrf_cookie_name(settings), "")
    if not nonce or not submitted or len(submitted) > 200:
        return False
    return hmac.compare_digest(submitted, _csrf_for(settings, nonce))


async def require_csrf(request: Request) -> None:
    """Dependency for form POSTs: the header or the form field must carry a valid token."""
    from fastapi import HTTPException

    submitted = request.headers.get(CSRF_HEADER, "")
    if not submitted and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD, "")
        submitted = value if isinstance(value, str) else ""
    if not csrf_valid(request, submitted):
        raise HTTPException(403, "missing or invalid CSRF token")


# On every app response (not on policy files): no framing of the login form (clickjacking), no
# MIME sniffing, no full URLs in Referer to other sites.
_SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class CsrfCookieMiddleware:
    """Adds the CSRF cookie to a response when ``csrf_token`` made a new nonce for it, and the
    security headers to every response of the app."""

    def __init__(self, app: Asgi, *, settings: WebSettings) -> None:
        self.app = app
        self.name = csrf_cookie_name(settings)
        self.secure = settings.secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
                nonce = scope.get("state", {}).get("csrf_new")
                if nonce:
                    cookie = f"{self.name}={nonce}; Path=/; HttpOnly; SameSite=Strict"
                    if self.secure:
                        cookie += "; Secure"
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"set-cookie", cookie.encode("latin-1")),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


# --- who is asking -----------------------------------------------------------------------------


async def current_user(request: Request) -> User | None:
    """The user behind this request (bearer token first, then the session cookie), or None.

    Sets ``request.state.auth`` to ``"token"`` or ``"session"`` and ``request.state.token`` to
    the ``ApiToken`` used (or None); computed once per request. A ``read`` token on a method
    other than GET/HEAD raises 403: every route reaches the user through here.
    """
    cached = getattr(request.state, "user", _UNSET)
    if cached is _UNSET:
        cached = await _identify(request)
    token: ApiToken | None = getattr(request.state, "token", None)
    if token is not None and token.scope == "read" and request.method not in READ_SCOPE_METHODS:
        from fastapi import HTTPException

        raise HTTPException(
            403, f"this token has scope read: {request.method} needs a token with scope write"
        )
    return cached  # type: ignore[return-value]


async def _identify(request: Request) -> User | None:
    ctx = context(request)
    user: User | None = None
    token: ApiToken | None = None
    how = None
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        found = await asyncio.to_thread(
            ctx.accounts.authenticate_token, credential.strip(), now=ctx.clock()
        )
        if found is not None:
            (user, token), how = found, "token"
    elif not header:
        cookie = request.cookies.get(session_cookie_name(ctx.settings))
        session = None
        if cookie:
            now = ctx.clock().timestamp()
            session = read_session(ctx.settings, cookie, now=now)
        if session is not None:
            found_user = await asyncio.to_thread(ctx.accounts.get_user, session[0])
            if (
                found_user is not None
                and not found_user.disabled
                and found_user.session_epoch == session[1]
            ):
                user, how = found_user, "session"
    request.state.user = user
    request.state.auth = how
    request.state.token = token
    return user


async def require_user(request: Request) -> User:
    """Dependency for the API: 401 without valid credentials; cookie-authenticated unsafe
    requests also need the CSRF header (a browser form on another site cannot send it)."""
    from fastapi import HTTPException

    user = await current_user(request)
    if user is None:
        raise HTTPException(401, "authentication required", {"WWW-Authenticate": "Bearer"})
    if request.state.auth == "session" and request.method not in SAFE_METHODS:
        await require_csrf(request)
    return user


async def require_admin(request: Request) -> User:
    from fastapi import HTTPException

    user = await require_user(request)
    if not user.is_admin:
        raise HTTPException(403, "administrators only")
    return user


async def require_page_user(request: Request) -> User:
    """Dependency for dashboard pages: like ``require_user`` but redirects to the login form."""
    user = await current_user(request)
    if user is None:
        raise LoginRequired()
    if request.method not in SAFE_METHODS and request.state.auth == "session":
        await require_csrf(request)
    return user


# --- login / logout ----------------------------------------------------------------------------


def safe_next(target: str) -> str:
    """Only same-site paths: ``/x``, never ``//evil`` or ``/\\evil`` (open redirects)."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return "/"
    return target[:2048]


class AccountBackoff:
    """Failed logins per account name: ``burst`` free tries, then one per ``every`` seconds
    (a token bucket per name; bounded memory, least recently seen forgotten first)."""

    def __init__(self, *, burst: int = 10, every: float = 30.0) -> None:
        from stspilot.web.ratelimit import TokenBucket

        self._bucket = TokenBucket(1.0 / every, burst)

    def blocked(self, account: str) -> bool:
        return self._bucket.peek(account) < 1.0

    def failed(self, account: str) -> None:
        self._bucket.take(account)


def account_backoff(request: Request) -> AccountBackoff:
    state = request.app.state
    found = getattr(state, "login_backoff", None)
    if found is None:
        found = state.login_backoff = AccountBackoff()
    return found


def auth_routes() -> list[Route]:
    """``GET/POST /login`` (form with CSRF) and ``POST /logout``."""
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    async def login_form(request: Request, *, error: str = "", status: int = 200) -> Response:
        templates = request.app.state.templates
        response: Response = templates.TemplateResponse(
            request,
            "login.html",
            {"error": error, "next": safe_next(request.query_params.get("next", "/"))},
            status_code=status,
        )
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return await login_form(request)
        ctx = context(request)
        form = await request.form(max_files=0, max_fields=10)
        token = form.get(CSRF_FIELD, "")
        if not csrf_valid(request, token if isinstance(token, str) else ""):
            return await login_form(request, error="The form expired; try again.", status=403)
        name, password = form.get("username", ""), form.get("password", "")
        user = None
        account = name.strip().lower()[:128] if isinstance(name, str) else ""
        failures = account_backoff(request)
        if account and failures.blocked(account):
            # Per account, whatever the address: guessing one password from many addresses
            # is slowed as much as from one. Any name, known or not, backs off alike.
            return await login_form(
                request, error="Too many failed logins for this account; wait a minute.", status=429
            )
        if isinstance(name, str) and isinstance(password, str) and name and password:
            user = await asyncio.to_thread(ctx.accounts.authenticate, name, password)
        if user is None:
            if account:
                failures.failed(account)
            peer = client_address(request.scope, ctx.settings.trusted_proxies) or "-"
            auth_log.warning(
                "login failed for user %r from %s", str(name)[:64], peer,
                extra={"request": {"client": peer, "user": str(name)[:64], "route": "/login",
                                   "status": 401, "event": "login-failed"}},
            )  # fmt: skip
            return await login_form(request, error="Wrong user name or password.", status=401)
        target = form.get("next", "/")
        response = RedirectResponse(safe_next(target if isinstance(target, str) else "/"), 303)
        response.set_cookie(
            session_cookie_name(ctx.settings),
            make_session(ctx.settings, user, now=ctx.clock().timestamp()),
            max_age=ctx.settings.session_seconds,
            httponly=True,
            secure=ctx.settings.secure_cookies,
            samesite="lax",
        )
        # A new CSRF nonce for the new session: a token planted before login is worthless.
        request.state.csrf_new = secrets.token_urlsafe(24)
        return response

    async def logout(request: Request) -> Response:
        ctx = context(request)
        form = await request.form(max_files=0, max_fields=10)
        token = form.get(CSRF_FIELD, "") or request.headers.get(CSRF_HEADER, "")
        if not csrf_valid(request, token if isinstance(token, str) else ""):
            return await login_form(request, error="The form expired; try again.", status=403)
        # End the session on the server too: a copied cookie must not outlive the logout.
        # Sessions are stateless, so this ends every session of the account (its epoch).
        user = await current_user(request)
        if user is not None and getattr(request.state, "auth", None) == "session":
            await asyncio.to_thread(ctx.accounts.end_sessions, user.id)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(
            session_cookie_name(ctx.settings),
            httponly=True,
            secure=ctx.settings.secure_cookies,
            samesite="lax",
        )
        return response

    return [
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
    ]
