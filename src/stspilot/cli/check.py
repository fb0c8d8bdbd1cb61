"""``stspilot check``: probe domains as a sending MTA would and print what is wrong, and the fix.

This module declares the command for Typer (its options, help and errors); the work is in
``cli/check_run.py``, which also parses the usual command lines itself so that a check sends
its first packet before Typer or rich are loaded. Exit code from the worst finding: 0 clean or
info, 1 warnings, 2 errors (3 usage, 4 operational, as everywhere in the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """Check the MTA-STS and TLS-RPT setup of DOMAIN(s) the way a sending MTA sees it.

For each domain: the _mta-sts and _smtp._tls TXT records, the policy fetched from
https://mta-sts.DOMAIN/.well-known/mta-sts.txt (no redirects, 200 only, text/plain, 64 KiB,
WebPKI), the live MX set against the policy, and a STARTTLS probe of every MX (certificate,
name, expiry). Many domains: -f FILE (one per line, # comments; - for stdin) with
--concurrency N (in flight in all) and --workers N (processes).

Output: up to 3 domains, a full report of each; 4 to 20, a summary table (-v: the full
reports too); more, a line per domain as each completes, then a closing tally.
--json prints one stspilot.check/2 document, --jsonl one JSON object per domain per line.
Every mode writes results as they complete, in input order: a slow domain holds back at
most 4 x --concurrency finished ones behind it, and memory does not grow with the number of
domains. A progress bar is drawn on stderr when it is a terminal and the output is not
already scrolling there.

Exit code: 0 clean (or only information), 1 warnings, 2 errors.
"""


def check_command(
    domains: Annotated[list[str] | None, typer.Argument(help="domains to check")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="file of domains, one a line (- = stdin)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one stspilot.check/2 JSON document")
    ] = False,
    as_jsonl: Annotated[
        bool,
        typer.Option("--jsonl", help="print one JSON object per domain per line, in input order"),
    ] = False,
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
    no_dane: Annotated[
        bool, typer.Option("--no-dane", help="skip the DANE checks (TLSA with DNSSEC)")
    ] = False,
    trust_anchor: Annotated[
        Path | None,
        typer.Option(
            "--trust-anchor",
            help="DNSSEC trust anchors, DS/DNSKEY lines (default: the IANA root; the lab's file)",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="explain everything")] = False,
) -> None:
    from stspilot.cli.check_run import run_check_command

    code = run_check_command(
        domains or [],
        file=file,
        as_json=as_json,
        as_jsonl=as_jsonl,
        concurrency=concurrency,
        no_mx_probe=no_mx_probe,
        nameserver=nameserver,
        ca_file=ca_file,
        port_map=port_map,
        timeout=timeout,
        deadline=deadline,
        workers=workers,
        expiry_days=expiry_days,
        no_dane=no_dane,
        trust_anchor=trust_anchor,
        verbose=verbose,
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("check", help=HELP)(check_command)
