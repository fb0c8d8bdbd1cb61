"""Policy GETs answered by ``stspilot serve``'s HTTP protocol from the cache (``web/server.py``,
``PolicyFastPath.encoded``) say exactly what the ASGI path says: same status line, headers
and body, HEAD without the body, pipelined requests answered in order, the header cap not
tripped by many small pipelined GETs, and everything else still reaching the app. Raw sockets
against the real server."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from serve_process import Served, serving
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.store.hosting import HostedPolicies

POLICY = b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n"
# The same request with a query: uvicorn and the app answer it (the protocol takes exact paths).
VIA_APP = b"GET /.well-known/mta-sts.txt?x=1 HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n"


@pytest.fixture
def served(store_url: str) -> Iterator[tuple[Served, str]]:
    now = datetime.now(UTC)
    with Store.open(store_url) as store:
        tenant = Accounts(store).add_tenant("acme", now=now)
        hosted = HostedPolicies(store).add(
            "example.test", tenant_id=tenant.id, mode="testing", mx=["mx.example.test"], now=now
        )
    with serving(store_url, {"STSPILOT_MAX_HEADER_BYTES": "16384"}) as running:
        yield running, hosted.policy_text


def exchange(served: Served, data: bytes, responses: int) -> list[bytes]:
    """Send ``data`` on one connection; read ``responses`` whole responses (Content-Length)."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(data)
        buf = b""
        out: list[bytes] = []
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {len(out)} responses"
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length: *(\d+)", head)
            length = int(match.group(1)) if match else 0
            while len(rest) < length:
                chunk = sock.recv(65536)
                assert chunk
                rest += chunk
            out.append(head + b"\r\n\r\n" + rest[:length])
            buf = rest[length:]
    return out


def undated(response: bytes) -> bytes:
    return re.sub(rb"(?im)^date: [^\r]*\r\n", b"", response)


def test_the_protocol_answers_what_the_app_answers(served: tuple[Served, str]) -> None:
    server, policy = served
    # The first GET fills the cache (through the app); the next ones are answered from it.
    direct = exchange(server, POLICY * 3 + VIA_APP, 4)
    assert direct[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert direct[2].endswith(b"\r\n\r\n" + policy.encode())
    assert re.search(rb"(?im)^date: ", direct[2])
    assert b"cache-control: no-store" in direct[2].lower()
    assert {undated(r) for r in direct} == {undated(direct[3])}


def test_head_has_the_headers_and_no_body(served: tuple[Served, str]) -> None:
    server, policy = served
    exchange(server, POLICY, 1)  # fill the cache
    head = POLICY.replace(b"GET ", b"HEAD ", 1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + head.replace(b".txt", b".txt?x=1"))
        data = b""
        while data.count(b"\r\n\r\n") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    first, second, rest = data.split(b"\r\n\r\n", 2)
    assert rest == b""  # no body after either head
    assert undated(first) == undated(second)
    assert f"content-length: {len(policy.encode())}".encode() in first.lower()


def test_pipelined_requests_are_answered_in_order(served: tuple[Served, str]) -> None:
    server, policy = served
    exchange(server, POLICY, 1)
    healthz = b"GET /healthz HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n"
    other = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    got = exchange(server, other + POLICY + healthz + POLICY, 4)
    assert got[0].endswith(b"ok") or got[0].endswith(b"ok\n")
    assert got[1].endswith(policy.encode())
    assert got[2].startswith(b"HTTP/1.1 404")  # any other path on a policy host: plain 404
    assert got[3].endswith(policy.encode())


def test_many_pipelined_gets_are_not_one_long_head(served: tuple[Served, str]) -> None:
    server, policy = served
    exchange(server, POLICY, 1)
    n = 400  # ~28 KiB in a few reads, past the 16 KiB header cap if counted as one head
    got = exchange(server, POLICY * n, n)
    assert len(got) == n and all(r.endswith(policy.encode()) for r in got)


def test_other_names_methods_and_closing_requests(served: tuple[Served, str]) -> None:
    server, policy = served
    exchange(server, POLICY, 1)
    upper = POLICY.replace(b"mta-sts.example.test", b"MTA-STS.Example.Test.:443")
    assert exchange(server, upper, 1)[0].endswith(policy.encode())
    unknown = POLICY.replace(b"example.test", b"nobody.test")
    assert exchange(server, unknown * 2, 2)[1].startswith(b"HTTP/1.1 404")
    post = POLICY.replace(b"GET ", b"POST ", 1)[:-2] + b"Content-Length: 0\r\n\r\n"
    assert exchange(server, post, 1)[0].startswith(b"HTTP/1.1 405")
    closing = POLICY[:-2] + b"Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(closing)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.endswith(policy.encode()) and b"connection: close" in data.lower()
