"""Every connection to ``stspilot serve`` is bounded (issue 15, Medium): silent, slow-header and
slow-body clients are cut off, an endless header block is refused, idle keep-alive ends, and
concurrent report uploads beyond the cap get 503. Raw sockets against the real server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from serve_process import Served, serving

LIMITS = {
    "STSPILOT_HEADER_TIMEOUT": "1",
    "STSPILOT_BODY_TIMEOUT": "1.5",
    "STSPILOT_KEEP_ALIVE": "1",
    "STSPILOT_MAX_UPLOADS": "3",
    "STSPILOT_MAX_HEADER_BYTES": "16384",
}


@pytest.fixture
def served(store_url: str) -> Iterator[Served]:
    with serving(store_url, LIMITS) as running:
        yield running


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and after how many seconds."""
    start = time.monotonic()
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data, time.monotonic() - start


def test_a_silent_connection_is_closed(served: Served) -> None:
    with connect(served) as sock:
        data, took = read_until_closed(sock)
    assert took < 5 and data.startswith(b"HTTP/1.1 408")


def test_slow_headers_are_cut_off(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        try:
            for _ in range(20):  # one header line every 0.3 s: never done
                time.sleep(0.3)
                sock.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = read_until_closed(sock)
    assert time.monotonic() - start < 5
    assert data.startswith(b"HTTP/1.1 408")


def test_an_endless_header_block_is_refused(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            while sent < 16 * 1024 * 1024:
                sock.sendall(b"X-Big: " + b"a" * 8000 + b"\r\n")
                sent += 8009
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = read_until_closed(sock)
    # Refused long before 16 MiB: what was sent past the 16 KiB cap sat in socket buffers.
    assert sent < 8 * 1024 * 1024
    assert data.startswith(b"HTTP/1.1 431") or data == b""


def test_a_slow_body_is_cut_off(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(
            b"POST /tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Type: application/tlsrpt+gzip\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"\x1f\x8b" + b"\0" * 100
        )
        data, took = read_until_closed(sock)
    assert took < 5
    assert data == b"" or data.startswith(b"HTTP/1.1 408")


def test_idle_keep_alive_ends(served: Served) -> None:
    with connect(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data, took = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200") and took < 5


def test_concurrent_uploads_beyond_the_cap_get_503(served: Served) -> None:
    stalled = []
    try:
        for _ in range(3):  # the cap: each holds an upload slot while its body trickles
            sock = connect(served)
            sock.sendall(
                b"POST /tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n" + b"a" * 1000
            )
            stalled.append(sock)
        time.sleep(0.2)
        with connect(served) as extra:
            extra.sendall(
                b"POST /tlsrpt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
            )
            data, _ = read_until_closed(extra)
        assert data.startswith(b"HTTP/1.1 503"), data[:200]
        assert b"retry-after" in data.lower()
    finally:
        for sock in stalled:
            sock.close()
