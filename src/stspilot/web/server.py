"""The HTTP server ``stspilot serve`` runs: uvicorn's httptools protocol with every connection
bounded (issue 15: slow headers, slow bodies and silent connections stayed open, and a 16 MiB
header block was accepted).

``bounded_protocol(limits)`` is an ``HttpToolsProtocol`` that

- closes a connection that has not sent a complete request head ``header_timeout`` seconds
  after it opened or after its previous response (a silent or slowloris client), with 408;
- answers 431 and closes once a request head grows past ``max_header_bytes`` without ending;
- closes a connection whose request body has not arrived whole ``body_timeout`` seconds after
  its head (a slow upload), with 408 when no response was started;

and uvicorn's own settings bound the rest: ``timeout_keep_alive`` (idle keep-alive) and
``limit_concurrency`` (503 beyond that many connections). Concurrent report uploads are bounded
by the intake itself (``ingest.http.ReportIntake``, ``max_uploads``: 503 beyond).

With a ``policy`` fast path (``web/fastpath.py``), the protocol answers a policy GET itself
when it can: a keep-alive HTTP/1.1 ``GET``/``HEAD`` of exactly ``/.well-known/mta-sts.txt``,
no body, nothing before it still being answered, under the connection cap, on a ``mta-sts.*``
Host whose answer is cached. It writes the same bytes the ASGI path would (uvicorn's status
line and Date header, then the pre-rendered answer) in one ``write``, and finishes the
response as uvicorn does (keep-alive and header timers, request count). Every other request,
and a cache miss, goes through uvicorn and the app as before. Measured (``docs/serve.md``):
the uvicorn request cycle (a Task, the ASGI scope and messages, header checks) was about
half of a policy GET's CPU.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from stspilot.web.fastpath import PolicyFastPath
from stspilot.web.hosting import POLICY_PATH

_POLICY_URL = POLICY_PATH.encode()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0  # seconds to send a whole request head
    body_timeout: float = 60.0  # seconds to send a whole body, after the head
    max_header_bytes: int = 64 * 1024  # request line + headers
    keep_alive: float = 5.0  # idle seconds between requests on one connection
    max_connections: int = 1024  # open at once, per process (503 beyond)


def _response(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


TIMEOUT_408 = _response(b"408 Request Timeout", b"request not received in time\n")
TOO_LARGE_431 = _response(
    b"431 Request Header Fields Too Large", b"request header fields too large\n"
)


class BoundedHttpTools(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header size, header time and body time bounds."""

    limits = ConnectionLimits()
    policy: PolicyFastPath | None = None
    # uvicorn's Date header block, rendered once per list it makes (a new one every second)
    _date: tuple[object, bytes] = (None, b"")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered = False  # the current request was answered by the policy path
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- timers -------------------------------------------------------------------------------

    def _arm_head(self) -> None:
        self._cancel_head()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.write(TIMEOUT_408)
            self.transport.close()

    def _body_late(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self.transport.write(TIMEOUT_408)
        self.transport.close()  # the app's receive() now says http.disconnect

    # -- protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing: bytes that completed a head (and any body after it)
            # are not the head's; only a head still open keeps growing.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self.transport.write(TOO_LARGE_431)
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._answered = False

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._cancel_head()
        if self.policy is not None and self.url == _POLICY_URL and self._answer_policy():
            return
        super().on_headers_complete()
        self._cancel_body()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)

    def _answer_policy(self) -> bool:
        """Answer a plain policy GET/HEAD from the cache, as uvicorn would; False to leave it
        to uvicorn and the app."""
        parser = self.parser
        method = parser.get_method()
        if method != b"GET" and method != b"HEAD":
            return False
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return False  # pipelined behind a response still being made: keep the order
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
            return False
        cap = self.limit_concurrency
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):
            return False  # uvicorn answers 503
        if self.expect_100_continue:
            return False
        raw_host = None
        for name, value in self.headers:
            if name == b"host":
                if raw_host is not None:
                    return False  # two Host headers: the app's answer
                raw_host = value
            elif name == b"content-length" or name == b"transfer-encoding":
                return False  # a body to read: the usual way
        if raw_host is None:
            return False
        assert self.policy is not None
        found = self.policy.encoded(raw_host)
        if found is None:
            return False
        status, head, whole = found
        defaults = self.server_state.default_headers
        cached = BoundedHttpTools._date
        if cached[0] is not defaults:
            block = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
            cached = BoundedHttpTools._date = (defaults, block)
        self._answered = True
        self.transport.write(status + cached[1] + (head if method == b"HEAD" else whole))
        self.on_response_complete()  # timers, request count: as after an ASGI response
        # The head counter restarts with the next request's first byte (on_message_begin),
        # not with what is left of this read: pipelined GETs in one read are not one head.
        self._in_head = False
        return True

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_body()
        if not self._answered:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._cancel_body()  # answered before the whole body came (413, 429): no longer late
        super().on_response_complete()
        self._in_head = True
        self._head_bytes = 0
        if not self.transport.is_closing():
            self._arm_head()


def bounded_protocol(
    limits: ConnectionLimits, policy: PolicyFastPath | None = None
) -> type[BoundedHttpTools]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits; with ``policy``,
    cached policy GETs are answered by the protocol itself."""
    return type("BoundedHttpTools", (BoundedHttpTools,), {"limits": limits, "policy": policy})
