"""The client behind a trusted proxy (issue 15): ``Forwarded`` (RFC 7239) or
``X-Forwarded-For``, believed only from a configured proxy, right-most untrusted hop."""

from __future__ import annotations

import pytest

from stspilot.web.ratelimit import client_address, forwarded_for
from stspilot.web.settings import parse_networks

PROXY = parse_networks("127.0.0.1/32, 10.0.0.0/8")


def scope(peer: str, *headers: tuple[str, str]) -> dict[str, object]:
    return {"client": (peer, 1234), "headers": [(k.encode(), v.encode()) for k, v in headers]}


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.9", [("x-forwarded-for", "127.0.0.1")], "203.0.113.9"),  # not a proxy
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", [("x-forwarded-for", "198.51.100.7")], "198.51.100.7"),
        ("127.0.0.1", [("x-forwarded-for", "127.0.0.1, 198.51.100.7, 10.1.2.3")], "198.51.100.7"),
        ("127.0.0.1", [("forwarded", 'for="[2001:db8::1]:443";proto=https')], "2001:db8::1"),
        ("127.0.0.1", [("forwarded", "for=192.0.2.60:8080, for=10.0.0.2")], "192.0.2.60"),
        # Forwarded wins over X-Forwarded-For when both are sent.
        (
            "127.0.0.1",
            [("forwarded", "for=192.0.2.1"), ("x-forwarded-for", "192.0.2.2")],
            "192.0.2.1",
        ),
    ],
)
def test_client_address(peer: str, headers: list[tuple[str, str]], expected: str) -> None:
    assert client_address(scope(peer, *headers), PROXY) == expected


def test_forwarded_for_ignores_other_parameters() -> None:
    assert forwarded_for('by=10.0.0.1;for="_hidden", For=unknown') == ["_hidden", "unknown"]
