"""``stspilot generate``: the exact records and policy file to publish for a domain."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from stspilot.cli import EXIT_OK, EXIT_WARNINGS
from stspilot.cli.options import (
    CA_FILE,
    DEADLINE,
    NAMESERVER,
    PORT_MAP,
    TIMEOUT,
    check_options,
    domain_argument,
)
from stspilot.cli.rollout import run_check
from stspilot.errors import ConfigError

HELP = """Print what to publish for DOMAIN: the _smtp._tls and _mta-sts TXT records and the policy.

The mx lines come from the live MX set (one exact line per host; --wildcards uses a one-label
wildcard only where it covers exactly live hosts, e.g. Microsoft 365's
*.mail.protection.outlook.com). The id is fresh (UTC time, digits only). max_age defaults to
1 day in testing and 1 week in enforce. Every listed MX is probed for STARTTLS; one that fails
today is a warning. --mx HOST (repeatable) with --no-probe works offline.

Exit code: 0 nothing to warn about, 1 warnings (e.g. an MX that fails its probe today).
"""


def generate_command(
    domain: str = domain_argument("the mail domain"),
    mode: str = typer.Option("testing", "--mode", help="testing, enforce or none"),
    rua: list[str] = typer.Option([], "--rua", help="mailto: or https: URI (repeat)"),
    max_age: int | None = typer.Option(None, "--max-age", min=0, help="seconds (default by mode)"),
    wildcards: bool = typer.Option(False, "--wildcards", help="allow one-label mx wildcards"),
    mx: list[str] = typer.Option([], "--mx", help="MX host to cover instead of the live set"),
    no_probe: bool = typer.Option(False, "--no-probe", help="with --mx: no network at all"),
    as_json: bool = typer.Option(False, "--json", help="print stspilot.generate/1 JSON"),
    zone: bool = typer.Option(False, "--zone", help="print only the zone-file lines"),
    policy_only: bool = typer.Option(False, "--policy", help="print only the policy file body"),
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
) -> None:
    from rich.console import Console

    from stspilot.rollout.generate import generate
    from stspilot.rollout.render import dumps, publication_to_json, render_publication_text

    if sum((as_json, zone, policy_only)) > 1:
        raise typer.BadParameter("choose one of --json, --zone, --policy")
    if no_probe and not mx:
        raise typer.BadParameter("--no-probe needs the MX hosts given with --mx")
    hosts: list[str] = list(mx)
    failures: dict[str, str] = {}
    previous = ""
    now = datetime.now(UTC)
    if not no_probe:
        result = run_check(domain, check_options(nameserver, ca_file, port_map, timeout, deadline))
        now = result.observed_at
        previous = result.sts_record.id if result.sts_record else ""
        if not hosts:
            hosts = [m.host for m in result.mx]
        if not rua and result.tlsrpt.record is not None:  # keep where reports already go
            rua = list(result.tlsrpt.record.rua)
        for verdict in result.mx:
            if verdict.tls_ok is False:
                why = [f.title for f in result.findings if f.subject == verdict.host]
                failures[verdict.host] = why[0] if why else verdict.probe_outcome
    try:
        publication = generate(
            domain,
            mx_hosts=hosts,
            mode=mode,
            rua=rua,
            now=now,
            max_age=max_age,
            wildcards=wildcards,
            probe_failures=failures,
            previous_id=previous,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if as_json:
        sys.stdout.write(dumps(publication_to_json(publication)) + "\n")
    elif zone:
        sys.stdout.write("".join(line + "\n" for line in publication.zone_lines))
    elif policy_only:  # byte-exact, CRLF line ends: redirect it into the file to serve
        sys.stdout.buffer.write(publication.policy_text.encode("ascii"))
    else:
        render_publication_text(publication, Console(highlight=False, soft_wrap=True))
    warned = any(f.severity >= 2 for f in publication.findings)
    raise typer.Exit(EXIT_WARNINGS if warned else EXIT_OK)


def register(app: typer.Typer) -> None:
    app.command("generate", help=HELP)(generate_command)
