"""``stspilot check``: probe domains as a sending MTA would and print what is wrong, and the fix.

Presentation only: options are parsed here, ``stspilot.check.check_domains`` does the work,
``stspilot.render`` draws it. Exit code from the worst finding: 0 clean or info, 1 warnings,
2 errors (3 usage, 4 operational, as everywhere in the CLI).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stspilot.cli import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.check import CheckOptions
    from stspilot.evaluate import CheckResult

PROGRESS_FROM = 5  # domains; fewer finish before a bar would be worth drawing
MAX_FILE_DOMAINS = 1_000_000

HELP = """Check the MTA-STS and TLS-RPT setup of DOMAIN(s) the way a sending MTA sees it.

For each domain: the _mta-sts and _smtp._tls TXT records, the policy fetched from
https://mta-sts.DOMAIN/.well-known/mta-sts.txt (no redirects, 200 only, text/plain, 64 KiB,
WebPKI), the live MX set against the policy, and a STARTTLS probe of every MX (certificate,
name, expiry). Many domains: -f FILE (one per line, # comments; - for stdin) with
--concurrency N (in flight in all) and --workers N (processes); a progress bar is drawn on a
terminal.

Exit code: 0 clean (or only information), 1 warnings, 2 errors.
"""


def parse_nameserver(text: str | None) -> tuple[str | None, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` → (address, port)."""
    import ipaddress

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
        raise typer.BadParameter(f"--nameserver wants IP[:PORT], not {text!r}") from exc
    if not 0 < number < 65536:
        raise typer.BadParameter(f"--nameserver port out of range: {text!r}")
    return host, number


def parse_port_map(text: str | None) -> dict[int, int]:
    """``443=8443,25=2525`` → {443: 8443, 25: 2525}."""
    mapping: dict[int, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        left, sep, right = item.partition("=")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise typer.BadParameter(f"--port-map wants PORT=PORT[,PORT=PORT], not {item!r}")
        src, dst = int(left), int(right)
        if not (0 < src < 65536 and 0 < dst < 65536):
            raise typer.BadParameter(f"--port-map port out of range in {item!r}")
        mapping[src] = dst
    return mapping


def read_domains(args: list[str], file: Path | None) -> list[str]:
    """Arguments first, then the file's lines; normalized, without repeats, order kept."""
    from stspilot.check import normalize_domain

    raw = list(args)
    if file is not None:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {file}: {exc}") from exc
        for line in text.splitlines()[:MAX_FILE_DOMAINS]:
            line = line.split("#", 1)[0].strip()
            if line:
                raw.append(line)
    if not raw:
        raise typer.BadParameter("give at least one DOMAIN or -f FILE")
    try:
        return list(dict.fromkeys(normalize_domain(d) for d in raw))
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


def exit_code(results: list[CheckResult]) -> int:
    from stspilot.findings import Severity

    worst = max((r.worst for r in results if r.worst is not None), default=None)
    if worst is None or worst < Severity.WARNING:
        return EXIT_OK
    return EXIT_WARNINGS if worst == Severity.WARNING else EXIT_ERRORS


def build_options(
    *,
    nameserver: str | None,
    ca_file: Path | None,
    port_map: str | None,
    timeout: float,
    deadline: float,
    concurrency: int,
    probe_mx: bool,
    expiry_days: int = 14,
) -> CheckOptions:
    from stspilot.check import CheckOptions

    host, port = parse_nameserver(nameserver)
    if ca_file is not None and not ca_file.is_file():
        raise typer.BadParameter(f"--ca-file {ca_file} is not a file")
    return CheckOptions(
        nameserver=host,
        dns_port=port,
        ca_file=ca_file,
        port_map=parse_port_map(port_map),
        dns_timeout=min(timeout, 5.0),
        connect_timeout=timeout,
        read_timeout=timeout,
        fetch_timeout=2 * timeout,
        smtp_timeout=3 * timeout,
        deadline=deadline,
        probe_mx=probe_mx,
        concurrency=concurrency,
        expiry_warning_days=expiry_days,
    )


def check_command(
    domains: Annotated[list[str] | None, typer.Argument(help="domains to check")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="file of domains, one a line (- = stdin)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print stspilot.check/1 JSON")] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=10_000, help="domains in flight")
    ] = 50,
    no_mx_probe: Annotated[
        bool, typer.Option("--no-mx-probe", help="skip the STARTTLS probes of the MX hosts")
    ] = False,
    nameserver: Annotated[
        str | None, typer.Option("--nameserver", help="DNS server IP[:PORT] (default: system)")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="extra CA certificate (PEM) to trust")
    ] = None,
    port_map: Annotated[
        str | None, typer.Option("--port-map", help="e.g. 443=8443,25=2525 (the lab)")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="seconds per network step")
    ] = 10.0,
    deadline: Annotated[
        float, typer.Option("--deadline", min=0.5, help="seconds for one whole domain")
    ] = 45.0,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="processes to shard the domains over (default: one per CPU from 200 domains)",
        ),
    ] = None,
    expiry_days: Annotated[
        int,
        typer.Option(
            "--expiry-days", min=0, help="warn of certificates expiring within this many days"
        ),
    ] = 14,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="explain everything")] = False,
) -> None:
    import asyncio

    from stspilot.check import check_domains

    names = read_domains(domains or [], file)
    options = build_options(
        nameserver=nameserver,
        ca_file=ca_file,
        port_map=port_map,
        timeout=timeout,
        deadline=deadline,
        concurrency=concurrency,
        probe_mx=not no_mx_probe,
        expiry_days=expiry_days,
    )
    # rich is imported when there is something to draw: start-up is before the first packet.
    if sys.stderr.isatty() and len(names) >= PROGRESS_FROM:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        errors = Console(stderr=True)

        columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=errors, transient=True) as progress:
            task = progress.add_task("checking", total=len(names))
            results = asyncio.run(
                check_domains(
                    names,
                    options=options,
                    on_result=lambda _: progress.advance(task),
                    workers=workers,
                )
            )
    else:
        results = asyncio.run(check_domains(names, options=options, workers=workers))
    if as_json:
        from stspilot.render import dumps_check_json

        sys.stdout.write(dumps_check_json(results) + "\n")
    else:
        from rich.console import Console

        from stspilot.render import render_check_text

        render_check_text(results, Console(), verbose=verbose)
    raise typer.Exit(exit_code(results))


def register(app: typer.Typer) -> None:
    app.command("check", help=HELP)(check_command)
