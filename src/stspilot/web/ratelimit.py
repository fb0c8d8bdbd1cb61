"""Per-client token buckets, and an ASGI middleware that applies one to chosen POST paths.

Memory is bounded: the least recently seen clients are forgotten first, which only ever makes
the limiter more generous to them. Each replica limits on its own (a client spread over N
replicas gets N times the rate): this is a guard against floods, not a quota.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from stspilot.web.settings import IpNetwork, in_networks

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Asgi = Callable[[Scope, Receive, Send], Any]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up, one bucket per client key."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._max = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token of ``key``: 0.0 when allowed, else seconds until one is there."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                wait, tokens = 0.0, tokens - 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return wait

    def peek(self, key: str) -> float:
        """Tokens ``key`` has now, without spending one."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - stamp) * self.rate)

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(scope: Scope, trusted: tuple[IpNetwork, ...]) -> str:
    """The client's IP: the TCP peer, or, only when the peer is a trusted proxy, the right-most
    address of the forwarding chain that is not itself a trusted proxy (the left parts are the
    client's to write). The chain is read from ``Forwarded`` (RFC 7239 ``for=``) when present,
    else from ``X-Forwarded-For``. Used for rate limits, ``/metrics``, ``/ask`` and as the
    origin of posted reports."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not in_networks(peer, trusted):
        return peer
    forwarded: list[str] = []
    legacy: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for":
            legacy.append(value.decode("latin-1"))
    hops = forwarded_for(",".join(forwarded)) if forwarded else []
    if not hops:
        hops = [h.strip() for h in ",".join(legacy).split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            return hop
    return hops[0] if hops else peer


def rate_key(address: str) -> str:
    """What a rate limit counts: an IPv4 address, or the /64 of an IPv6 one (a single
    subscriber usually holds a whole /64, so counting single addresses counts nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def forwarded_for(value: str) -> list[str]:
    """The ``for=`` addresses of a ``Forwarded`` header (RFC 7239 §4), in order: quotes,
    IPv6 brackets and ports removed; obfuscated or ``unknown`` nodes kept as written."""
    out: list[str] = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, sep, node = pair.partition("=")
            if not sep or key.strip().lower() != "for":
                continue
            node = node.strip().strip('"')
            if node.startswith("["):
                node = node[1:].split("]", 1)[0]
            elif node.count(":") == 1:  # IPv4 with a port
                node = node.split(":", 1)[0]
            if node:
                out.append(node)
    return out


class RateLimitMiddleware:
    """429 with Retry-After for a client over its bucket on one of ``limits``' POST paths."""

    def __init__(
        self,
        app: Asgi,
        *,
        limits: Mapping[str, TokenBucket],
        trusted_proxies: tuple[IpNetwork, ...],
    ) -> None:
        self.app = app
        self.limits = dict(limits)
        self.trusted = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            bucket = self.limits.get(scope.get("path", ""))
            if bucket is not None:
                wait = bucket.take(rate_key(client_address(scope, self.trusted)))
                if wait > 0:
                    await _too_many(send, wait)
                    return
        await self.app(scope, receive, send)


async def _too_many(send: Send, wait: float) -> None:
    body = b"too many requests from this client, retry later\n"
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(max(1, math.ceil(wait))).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
