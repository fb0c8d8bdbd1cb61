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

``encoded(raw_host)`` serves ``stspilot serve``'s HTTP protocol (``web/server.py``), which
answers the commonest request of all, a keep-alive ``GET``/``HEAD`` of the exact policy path
on a ``mta-sts.*`` Host whose answer is cached, before any ASGI machinery: the same answer,
pre-rendered as bytes once per policy version. Anything else (a miss, an expired cache, an
odd request) goes the ASGI way above.
"""

from __future__ import annotations

import asyncio
import http
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
_MEMO = 4096  # Host values and rendered answers remembered (each memo is cleared when full)

# (status line, headers with the blank line, headers with the blank line and the body)
Rendered = tuple[bytes, bytes, bytes]


def render(answer: Answer) -> Rendered:
    """The bytes an HTTP/1.1 server writes for ``answer`` around its own headers (Date)."""
    try:
        phrase = http.HTTPStatus(answer.status).phrase.encode()
    except ValueError:
        phrase = b""
    status = b"HTTP/1.1 %d %s\r\n" % (answer.status, phrase)
    head = b"".join(name + b": " + value + b"\r\n" for name, value in answer.headers) + b"\r\n"
    return status, head, head + answer.body


class PolicyFastPath:
    """``await fast(scope, send)`` answers a policy-host request and says True, else False."""

    __slots__ = ("_hosts", "_rendered", "cache", "public_hosts")

    def __init__(self, cache: PolicyCache, public_hosts: frozenset[str]) -> None:
        self.cache = cache
        self.public_hosts = public_hosts
        self._hosts: dict[bytes, str | None] = {}  # raw Host -> policy host name, or None
        self._rendered: dict[int, tuple[Answer, Rendered]] = {}  # id(answer) -> bytes

    def encoded(self, raw_host: bytes) -> Rendered | None:
        """The cached answer to ``GET /.well-known/mta-sts.txt`` on this Host as bytes, or
        None when the ASGI path must decide (not a policy host, not cached, cache expired)."""
        hosts = self._hosts
        host = hosts.get(raw_host, "")
        if host == "":
            host = None
            if raw_host[:8].lower() == _PREFIX:
                name = normalize_request_host(raw_host)
                if name not in self.public_hosts:
                    host = name
            if len(hosts) >= _MEMO:
                hosts.clear()
            hosts[raw_host] = host
        if host is None:
            return None
        answer = self.cache.cached_answer(host)
        if answer is None:
            return None
        rendered = self._rendered.get(id(answer))
        if rendered is None or rendered[0] is not answer:
            if len(self._rendered) >= _MEMO:
                self._rendered.clear()
            rendered = (answer, render(answer))
            self._rendered[id(answer)] = rendered
        return rendered[1]

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
