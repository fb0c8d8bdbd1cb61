"""Policy hosting: ``GET /.well-known/mta-sts.txt`` by ``Host: mta-sts.<domain>``, Caddy's
on-demand TLS ``ask`` endpoint, and what a customer must publish for a hosted domain.

The policy path is the hot path (every sending MTA fetches it): it is answered by an ASGI
middleware in front of the framework, from an in-memory cache that re-reads the store's
generation counter at most every ``policy_cache_ttl`` seconds. A change made through this
replica clears its cache at once; one made through another replica is seen within the TTL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from stspilot.store.hosting import (
    POLICY_HOST_PREFIX,
    HostedDomain,
    HostedPolicies,
    ServedPolicy,
)
from stspilot.web.ratelimit import Asgi, Receive, Scope, Send
from stspilot.web.settings import WebSettings, in_networks

POLICY_PATH = "/.well-known/mta-sts.txt"
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
# RFC 8461 §3.3: senders must not follow redirects or use caches beyond max_age; tell shared
# caches not to keep it either, so an edit (with its new id) is what the next fetch gets.
_POLICY_HEADERS = [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")]


def request_host(scope: Scope) -> str:
    """The Host header, lower case, without port or root dot (IPv6 literals kept whole)."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = str(value.decode("latin-1")).strip().lower()
            if host.startswith("["):
                return host.split("]", 1)[0] + "]"
            return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")
    return ""


class PolicyCache:
    """Rendered policy per host (and "not hosted"), valid while the generation is unchanged."""

    def __init__(
        self,
        hosting: HostedPolicies,
        *,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hosting = hosting
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, ServedPolicy | None] = {}
        self._generation = -1
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget everything (this replica changed a policy)."""
        with self._lock:
            self._entries.clear()
            self._checked = float("-inf")

    def _fresh(self) -> None:
        now = self._clock()
        if now - self._checked < self._ttl:
            return
        generation = self._hosting.generation()
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
            self._checked = now

    def lookup(self, host: str) -> ServedPolicy | None:
        """Blocking (it may read the store): call from a worker thread on a miss."""
        self._fresh()
        if host in self._entries:
            return self._entries[host]
        served = self._hosting.served_policy(host)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()  # a flood of unknown names: start over, stay bounded
            self._entries[host] = served
        return served

    def cached(self, host: str) -> tuple[bool, ServedPolicy | None]:
        """(hit, value) without touching the store: the fast path."""
        if self._clock() - self._checked >= self._ttl:
            return False, None
        try:
            return True, self._entries[host]
        except KeyError:
            return False, None


class PolicyHostMiddleware:
    """Answers every request whose Host is ``mta-sts.*`` (and not one of the app's own names):
    the policy file on its path, a plain-text 404 for everything else, never the app."""

    def __init__(self, app: Asgi, *, cache: PolicyCache, settings: WebSettings) -> None:
        self.app = app
        self.cache = cache
        self.public_hosts = settings.public_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = request_host(scope)
        path = scope.get("path", "")
        is_policy_host = host.startswith(POLICY_HOST_PREFIX) and host not in self.public_hosts
        if not is_policy_host:
            if path == POLICY_PATH:  # the app's own name, or an IP: no policy lives here
                await _plain(send, 404, b"no MTA-STS policy is hosted for this name\n")
                return
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        if path != POLICY_PATH:
            await _plain(send, 404, b"not found\n")
            return
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        hit, served = self.cache.cached(host)
        if not hit:
            served = await asyncio.to_thread(self.cache.lookup, host)
        if served is None:
            await _plain(send, 404, b"no MTA-STS policy is hosted for this name\n")
            return
        body = served.text.encode("utf-8")
        headers = [*_POLICY_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_TEXT, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def ask_routes(hosting: HostedPolicies, settings: WebSettings) -> list[Any]:
    """``GET /ask?domain=NAME``: 200 only for ``mta-sts.`` + a hosted domain (Caddy issues a
    certificate only then), 404 for any other name, 403 to clients not in ``ask_clients``."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def ask(request: Request) -> Response:
        peer = request.client.host if request.client else ""
        if not in_networks(peer, settings.ask_clients):
            return PlainTextResponse("forbidden\n", status_code=403)
        name = request.query_params.get("domain", "").strip().lower().rstrip(".")
        if not name or len(name) > 253:
            return PlainTextResponse("domain parameter required\n", status_code=400)
        if not name.startswith(POLICY_HOST_PREFIX):
            return PlainTextResponse("not a policy host\n", status_code=404)
        hosted = await asyncio.to_thread(hosting.is_policy_host, name)
        if not hosted:
            return PlainTextResponse("not hosted here\n", status_code=404)
        return PlainTextResponse("ok\n")

    return [Route("/ask", ask, methods=["GET"], name="ask", include_in_schema=False)]


def publish_info(hosted: HostedDomain, settings: WebSettings) -> dict[str, Any]:
    """What the customer publishes in DNS, in the never-orphan order (RFC 8461 §8.1: the
    policy is served first, the TXT ``id`` announcing it comes after)."""
    d = hosted.domain
    records: list[dict[str, Any]] = []
    steps = [f"The policy for {d} (id {hosted.policy_id}) is served by stspilot now."]
    if settings.policy_cname_target:
        target = settings.policy_cname_target.rstrip(".") + "."
        records.append({"name": f"mta-sts.{d}.", "type": "CNAME", "value": target})
        steps.append(f"Once: point mta-sts.{d} at {target} (CNAME).")
    else:
        steps.append(f"Once: point mta-sts.{d} (A/AAAA or CNAME) at this server.")
    if settings.txt_delegation_zone:
        zone = settings.txt_delegation_zone.rstrip(".")
        target = f"{d}.{zone}."
        records.append({"name": f"_mta-sts.{d}.", "type": "CNAME", "value": target})
        records.append({"name": target, "type": "TXT", "value": hosted.sts_txt_value})
        steps.append(f"Once: CNAME _mta-sts.{d} to {target}; the operator publishes the TXT there.")
    else:
        records.append({"name": f"_mta-sts.{d}.", "type": "TXT", "value": hosted.sts_txt_value})
        steps.append(
            f'Then: set _mta-sts.{d} TXT "{hosted.sts_txt_value}" (after every policy change).'
        )
    return {
        "domain": d,
        "policy_id": hosted.policy_id,
        "policy_url": f"https://{hosted.policy_host}{POLICY_PATH}",
        "txt_value": hosted.sts_txt_value,
        "records": records,
        "steps": steps,
    }
