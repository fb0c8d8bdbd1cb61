"""Parsers of option values shared by several commands (addresses, ports, durations).

No Typer here: ``stspilot check``'s fast path parses its options without loading the CLI
framework. A bad value raises ``UsageError`` (exit 3, one line).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta

from stspilot.cli import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_nameserver(text: str | None) -> tuple[str | None, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` → (address, port)."""
    if not text:
        return None, 53
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise UsageError(f"--nameserver wants IP[:PORT], not {text!r}") from exc
    if not 0 < number < 65536:
        raise UsageError(f"--nameserver port out of range: {text!r}")
    return host, number


def parse_port_map(text: str | None) -> dict[int, int]:
    """``443=8443,25=2525`` → {443: 8443, 25: 2525}."""
    mapping: dict[int, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        left, sep, right = item.partition("=")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise UsageError(f"--port-map wants PORT=PORT[,PORT=PORT], not {item!r}")
        src, dst = int(left), int(right)
        if not (0 < src < 65536 and 0 < dst < 65536):
            raise UsageError(f"--port-map port out of range in {item!r}")
        mapping[src] = dst
    return mapping


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``6h``, ``1d`` (or plain seconds) as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise UsageError(f"not a duration: {text!r} (e.g. 30m, 6h, 1d)")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 1:
        raise UsageError("a duration must be at least one second")
    return timedelta(seconds=seconds)


def host_port(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` → (host, port) for a listening or relay address."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} wants HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)
