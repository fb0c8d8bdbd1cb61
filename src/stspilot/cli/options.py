"""Options shared by several commands, declared once (``--db``, the live check's options).

Each command module imports what it shares from here, never from another command's module.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from stspilot.check.run import CheckOptions
    from stspilot.ingest.dkim import DkimSettings


def canonical_domains(value: Any) -> Any:
    """A DOMAIN argument (one, several or none) in canonical form, the same rule at every door
    (``stspilot.sts.names.domain_name``): an IP address, a URL or a bad label is
    ``InvalidName``, which the top level prints as one line with exit 3."""
    from stspilot.sts.names import domain_name

    if value is None:
        return None
    if isinstance(value, str):
        return domain_name(value)
    return [domain_name(v) for v in value]


def domain_argument(help: str, default: Any = ...) -> Any:
    """A positional DOMAIN (or DOMAIN...) checked and canonicalised as it comes in."""
    return typer.Argument(default, help=help, callback=canonical_domains, metavar="DOMAIN")


DB = typer.Option(
    None,
    "--db",
    help="database URL or SQLite path (default: $STSPILOT_DATABASE_URL, then the "
    "user data directory)",
)

# Machine-readable output: --json is one JSON document, --jsonl one object per line as it comes.
JSON = typer.Option(False, "--json", help="print one JSON document")
JSONL = typer.Option(False, "--jsonl", help="print one JSON object per line, as they come")


def json_mode(as_json: bool, as_jsonl: bool) -> str | None:
    """``"json"``, ``"jsonl"`` or None (text); both is a usage error."""
    from stspilot.cli import UsageError

    if as_json and as_jsonl:
        raise UsageError("--json and --jsonl are two output formats: give one of them")
    return "json" if as_json else "jsonl" if as_jsonl else None


def write_json(items: Iterable[Mapping[str, Any]], mode: str) -> None:
    """``items`` as one JSON array (``json``) or one object per line, flushed (``jsonl``)."""
    if mode == "json":
        sys.stdout.write(json.dumps([dict(i) for i in items], indent=2) + "\n")
        return
    for item in items:
        sys.stdout.write(json.dumps(dict(item)) + "\n")
        sys.stdout.flush()


# The live check behind `rollout`, `generate` and `monitor run`, parsed as `check` parses it.
NAMESERVER = typer.Option(None, "--nameserver", help="DNS server IP[:PORT] (default: system)")
CA_FILE = typer.Option(None, "--ca-file", help="extra CA certificate (PEM) to trust")
PORT_MAP = typer.Option(None, "--port-map", help="e.g. 443=8443,25=2525 (the lab)")
TIMEOUT = typer.Option(10.0, "--timeout", min=0.1, help="seconds per network step")
DEADLINE = typer.Option(45.0, "--deadline", min=0.5, help="seconds for the whole live check")

# DKIM verification of report mail (`ingest`, `receive`).
DKIM_NAMESERVER = typer.Option(
    None,
    "--nameserver",
    help="DKIM key lookups: IP[:PORT] of the resolver (default: the system's)",
)
DKIM_TIMEOUT = typer.Option(3.0, "--dkim-timeout", min=0.1, help="seconds per DKIM key lookup")


def check_options(
    nameserver: str | None,
    ca_file: Path | None,
    port_map: str | None,
    timeout: float = 10.0,
    deadline: float = 45.0,
) -> CheckOptions:
    """The live check's options, parsed the way ``stspilot check`` parses them."""
    from stspilot.cli.check_run import build_options

    return build_options(
        nameserver=nameserver,
        ca_file=ca_file,
        port_map=port_map,
        timeout=timeout,
        deadline=deadline,
        concurrency=1,
        probe_mx=True,
    )


def dkim_settings(
    verify: bool, nameserver: str | None, timeout: float = 3.0
) -> DkimSettings | None:
    """The DKIM verifier's settings from the CLI options (None: do not verify)."""
    from stspilot.cli.values import parse_nameserver

    host, port = parse_nameserver(nameserver)
    if not verify:
        return None
    from stspilot.ingest.dkim import DkimSettings  # asyncio, dkimpy's settings: when asked

    return DkimSettings(nameserver=host, port=port, timeout=timeout)


_BIND_ERRORS = {
    errno.EADDRINUSE: "the address is already in use",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "no such address on this machine",
}


def listen_socket(host: str, port: int, option: str) -> socket.socket:
    """A TCP socket bound to HOST:PORT (not yet listening), or ``ConfigError`` (exit 4) with
    one line saying why not; the servers are handed the socket, so their own start-up never
    has to report a failed bind."""
    from stspilot.errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({option}): {exc.strerror}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = _BIND_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
        raise ConfigError(f"cannot listen on {host}:{port} ({option}): {why}") from exc
    return sock
