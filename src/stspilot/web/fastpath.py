"""The policy fast path: requests for ``mta-sts.*`` hosts answered from the policy cache by the
outermost ASGI callable, before FastAPI builds a request or runs a middleware.

Every sending MTA fetches the policy (RFC 8461 §3.3), so this is the hot path of the service:
it finds the Host header, looks the encoded answer up in memory and sends it in two messages.
What it answers, for any request on a ``mta-sts.*`` Host that is not one of the app's own names:

    GET/HEAD /.well-known/mta-sts.txt   200 text/plain, the exact policy bytes, no-store
                                        404 text/plain when no policy is hosted for the name
    other method on that path           405 text/plain, Allow: GET, HEAD
    any other path                      404 text/plain (never the app, never HTML)

and, on any other Host, the policy path alone (the app's own name or an IP literal: 404).
Everything else returns False and goes on to the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from stspilot.store.hosting import POLICY_HOST_PREFIX
from stspilot.web.hosting import (
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_HOSTED,
    POLICY_PATH,
    Answer,
    PolicyCache,
    normalize_request_host,
)

Scope = MutableMapping[str, Any]
Send = Any  # an ASGI send callable (typed loosely: servers hand over their own)

_PREFIX = POLICY_HOST_PREFIX.encode()


class PolicyFastPath:
    """``await fast(scope, send)`` answers a policy-host request and says True, else False."""

    __slots__ = ("cache", "public_hosts")

    def __init__(self, cache: PolicyCache, public_hosts: frozenset[str]) -> None:
        self.cache = cache
        self.public_hosts = public_hosts

    async def __call__(self, scope: Scope, send: Send) -> bool:
        raw = b""
        for name, value in scope["headers"]:
            if name == b"host":
                raw = value
                break
        path = scope["path"]
        # Bytes first: the common non-policy request costs one comparison, no decoding.
        if raw[:8].lower() != _PREFIX and not raw[:1].isspace():
            if path == POLICY_PATH:  # the app's own name, or an IP: no policy lives here
                await _send(send, NOT_HOSTED, scope["method"])
                return True
            return False
        host = normalize_request_host(raw)
        if host in self.public_hosts:
            if path == POLICY_PATH:
                await _send(send, NOT_HOSTED, scope["method"])
                return True
            return False
        method = scope["method"]
        if path != POLICY_PATH:
            answer = NOT_FOUND
        elif method != "GET" and method != "HEAD":
            answer = NOT_ALLOWED
        else:
            cached = self.cache.cached_answer(host)
            # A miss reads the store: in a worker thread, so the event loop keeps serving.
            if cached is None:
                cached = await asyncio.to_thread(self.cache.answer, host)
            answer = cached
        await _send(send, answer, method)
        return True


async def _send(send: Send, answer: Answer, method: str) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.body})
