"""Security headers on every response of the app (issue 15): a strict Content-Security-Policy
(scripts only from the app's own /static files, no inline script anywhere), HSTS when the app
runs behind TLS (``secure_cookies``), and the usual no-sniff, referrer and framing headers.

Inline styles stay allowed: the charts are pygal's inline SVG, which carries its own <style>.
The two hot paths (policy file, report POST) answer before this middleware; Caddy adds HSTS
and a default policy for them (deploy/Caddyfile).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from stspilot.web.ratelimit import Asgi, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HSTS = "max-age=31536000"


class SecurityHeadersMiddleware:
    def __init__(self, app: Asgi, *, hsts: bool) -> None:
        self.app = app
        extra = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts:
            extra.append((b"strict-transport-security", HSTS.encode()))
        self.extra = extra
        self.names = {name for name, _ in extra}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in self.names]
                message["headers"] = headers + self.extra
            await send(dict(message))

        await self.app(scope, receive, with_headers)
