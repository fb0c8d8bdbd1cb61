"""Policy hosting: ``GET /.well-known/mta-sts.txt`` by ``Host: mta-sts.<domain>``, Caddy's
on-demand TLS ``ask`` endpoint, and what a customer must publish for a hosted domain.

The policy path is the hot path (every sending MTA fetches it): ``web.fastpath`` answers it
ahead of the framework, from the encoded answers of ``PolicyCache``, which re-reads the store's
generation counter at most every ``policy_cache_ttl`` seconds. A change made through this
replica clears its cache at once; one made through another replica is seen within the TTL.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stspilot.store.hosting import (
    POLICY_HOST_PREFIX,
    HostedDomain,
    HostedPolicies,
    ServedPolicy,
)
from stspilot.sts.names import fold_name
from stspilot.web.settings import WebSettings, in_networks

log = logging.getLogger(__name__)

POLICY_PATH = "/.well-known/mta-sts.txt"
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NOSNIFF = (b"x-content-type-options", b"nosniff")
# RFC 8461 §3.3: senders must not follow redirects or use caches beyond max_age; tell shared
# caches not to keep it either, so an edit (with its new id) is what the next fetch gets.
_POLICY_HEADERS = ((b"content-type", b"text/plain"), (b"cache-control", b"no-store"), _NOSNIFF)


@dataclass(frozen=True, slots=True)
class Answer:
    """One response to a policy-host request, encoded once: status, headers (with the length)
    and body. HEAD sends the same headers and no body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    served: ServedPolicy | None = None


def plain_answer(status: int, text: str, *extra: tuple[bytes, bytes]) -> Answer:
    body = text.encode("utf-8")
    headers = [_TEXT, (b"content-length", str(len(body)).encode()), _NOSNIFF, *extra]
    return Answer(status, headers, body)


def policy_answer(served: ServedPolicy | None) -> Answer:
    """200 with the exact policy bytes, or the plain-text 404 of a name not hosted here."""
    if served is None:
        return NOT_HOSTED
    body = served.text.encode("utf-8")
    headers = [*_POLICY_HEADERS, (b"content-length", str(len(body)).encode())]
    return Answer(200, headers, body, served)


NOT_HOSTED = plain_answer(404, "no MTA-STS policy is hosted for this name\n")
NOT_FOUND = plain_answer(404, "not found\n")
NOT_ALLOWED = plain_answer(405, "method not allowed\n", (b"allow", b"GET, HEAD"))


def normalize_request_host(value: bytes) -> str:
    """A Host header's value, lower case, without port or root dot (IPv6 literals whole)."""
    host = value.decode("latin-1").strip().lower()
    if ":" in host:
        if host.startswith("["):
            return host.split("]", 1)[0] + "]"
        host = host.rsplit(":", 1)[0]
    return fold_name(host)


class PolicyCache:
    """The encoded answer per host (the policy, or "not hosted"), valid while the store's
    generation counter is unchanged; the counter is re-read at most every ``ttl`` seconds."""

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
        self._entries: dict[str, Answer] = {}
        self._generation = -1
        self._checked = float("-inf")
        # Bumped whenever the entries are dropped: a store read that started before the drop
        # must not put what it read back (it may be the text from before the change).
        self._epoch = 0
        self._lock = threading.Lock()
        # One reader of the generation at a time: when the TTL runs out under load, the
        # requests that find it stale wait for that one read instead of each doing their own.
        self._refresh = threading.Lock()

    def invalidate(self) -> None:
        """Forget everything (this replica changed a policy)."""
        with self._lock:
            self._entries.clear()
            self._epoch += 1
            self._checked = float("-inf")

    def _fresh(self) -> None:
        if self._clock() - self._checked < self._ttl:
            return
        with self._refresh:
            now = self._clock()
            if now - self._checked < self._ttl:  # another thread read it meanwhile
                return
            generation = self._hosting.generation()
            with self._lock:
                if generation != self._generation:
                    self._entries.clear()
                    self._epoch += 1
                    self._generation = generation
                self._checked = now

    def answer(self, host: str) -> Answer:
        """Blocking (it may read the store): call from a worker thread on a miss."""
        self._fresh()
        epoch = self._epoch
        found = self._entries.get(host)
        if found is not None:
            return found
        found = policy_answer(self._hosting.served_policy(host))
        with self._lock:
            if epoch == self._epoch:
                if len(self._entries) >= self._max:
                    self._entries.clear()  # a flood of unknown names: start over, bounded
                self._entries[host] = found
        return found

    def cached_answer(self, host: str) -> Answer | None:
        """The answer without touching the store, None on a miss: the fast path."""
        if self._clock() - self._checked >= self._ttl:
            return None
        return self._entries.get(host)

    def lookup(self, host: str) -> ServedPolicy | None:
        """Blocking: the policy served for ``host``, None when none is hosted."""
        return self.answer(host).served

    def cached(self, host: str) -> tuple[bool, ServedPolicy | None]:
        """(hit, value) without touching the store."""
        found = self.cached_answer(host)
        return (False, None) if found is None else (True, found.served)


def ask_routes(hosting: HostedPolicies, settings: WebSettings) -> list[Any]:
    """``GET /ask?domain=NAME``: 200 for ``mta-sts.`` + a hosted domain and for the app's own
    names (``public_hosts``: the dashboard needs a certificate too), so Caddy issues a
    certificate only then; 404 for any other name; 403 to clients not in ``ask_clients``
    (judged on the client behind a trusted proxy: through Caddy, the asker is the public)."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def ask(request: Request) -> Response:
        from stspilot.web.ratelimit import client_address

        peer = client_address(request.scope, settings.trusted_proxies)
        if not in_networks(peer, settings.ask_clients):
            return PlainTextResponse("forbidden\n", status_code=403)
        name = fold_name(request.query_params.get("domain", ""))
        if not name or len(name) > 253:
            return PlainTextResponse("domain parameter required\n", status_code=400)
        if name in settings.public_hosts:
            return PlainTextResponse("ok\n")
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
        who = (
            "stspilot publishes the TXT there after every policy change (see the journal)"
            if settings.publish_config
            else "the operator publishes the TXT there"
        )
        steps.append(f"Once: CNAME _mta-sts.{d} to {target}; {who}.")
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


# --- the hook after a hosted policy change -----------------------------------------------------


def _delegation(app: Any) -> Any:
    """The delegation zone's provider (``ZoneConfig``), None without one; ``StspilotError``
    when the publish config is broken."""
    from stspilot.publish.config import load_config
    from stspilot.publish.hosted import delegation_zone

    ctx = app.state.ctx
    if not ctx.settings.txt_delegation_zone:
        return None
    return delegation_zone(
        load_config(ctx.settings.publish_config), ctx.settings.txt_delegation_zone
    )


def _in_background(app: Any, zone: Any, run: Any, *, actor: str) -> None:
    from stspilot.check.run import CheckOptions
    from stspilot.publish.hosted import WEB_REASON, carry_out
    from stspilot.web.publish_jobs import publish_jobs

    ctx = app.state.ctx
    check = ctx.settings.check_options or CheckOptions(allow_private=False)

    async def job() -> Any:
        return await carry_out(
            ctx.store, zone, run, check=check, clock=ctx.clock, actor=actor, reason=WEB_REASON
        )

    publish_jobs(app).submit(run.id, job)


def sync_after_change(app: Any, hosted: HostedDomain, *, actor: str) -> int | None:
    """With a provider configured for the delegation zone, carry the change of ``hosted``'s
    policy to its TXT record there: the policy served and fetched as a sender would first, then
    the new id (``publish/hosted.py``: ``start_sync``), journaled with ``actor`` before this
    returns and carried out in the background. Returns the journal run, None without a provider
    (the customer is shown the record, as before). Blocking: call it from a worker thread."""
    from stspilot.errors import StspilotError
    from stspilot.publish.hosted import start_sync, start_unconfigured

    ctx = app.state.ctx
    try:
        zone = _delegation(app)
        if zone is None:
            return None
        run = start_sync(ctx.store, hosted, zone, actor=actor, now=ctx.clock())
    except StspilotError as exc:
        # The change is made; that its record cannot follow must show where the journal shows.
        log.warning("%s: the delegation zone's TXT record cannot follow: %s", hosted.domain, exc)
        return start_unconfigured(
            ctx.store, hosted.domain, str(exc), actor=actor, now=ctx.clock()
        ).id
    _in_background(app, zone, run, actor=actor)
    return run.id


def delegation_record_pending(app: Any, hosted: HostedDomain, *, actor: str) -> int | None:
    """Before a decommissioned hosted domain is removed, its TXT record in the delegation zone
    goes first (``publish/hosted.removal_pending``, the rule ``stspilot host remove`` follows
    too). None when nothing stands in the way: no provider configured for the zone (the
    operator removes it), or a finished run since the wait ended removed it. Otherwise the
    journal run that removes it: the one under way, or one started now (carried out in the
    background). Blocking: call it from a worker thread."""
    from stspilot.errors import StspilotError
    from stspilot.publish.hosted import removal_pending, start_unconfigured

    ctx = app.state.ctx
    if not ctx.settings.txt_delegation_zone or not ctx.settings.publish_config:
        return None
    try:
        zone = _delegation(app)
        if zone is None:
            return None
        pending = removal_pending(ctx.store, hosted, zone, actor=actor, now=ctx.clock())
    except StspilotError as exc:
        log.warning(
            "%s: the delegation zone's TXT record cannot be removed: %s", hosted.domain, exc
        )
        return start_unconfigured(
            ctx.store, hosted.domain, str(exc), actor=actor, now=ctx.clock()
        ).id
    if pending is None:
        return None
    if pending.started:
        _in_background(app, zone, pending.run, actor=actor)
    return pending.run.id
