"""``stspilot lab``: run the simulated world (DNS, policy hosts, MX hosts) on loopback.

``lab up`` runs in the foreground until Ctrl-C and prints the exact ``stspilot check`` command
that points at it; ``lab scenarios`` lists what the world contains and what check must say.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stspilot.lab.scenarios import Scenario

lab_app = typer.Typer(
    name="lab",
    help="The simulated mail world on loopback, for demos and trying a rollout safely.",
    no_args_is_help=True,
)


def _pick(names: list[str]) -> list[Scenario]:
    from stspilot.lab.scenarios import BY_DOMAIN, SCENARIOS

    if not names:
        return list(SCENARIOS)
    chosen: list[Scenario] = []
    for name in names:
        domain = name if name.endswith(".test") else f"{name}.test"
        if domain not in BY_DOMAIN:
            raise typer.BadParameter(f"no scenario {name!r} (see: stspilot lab scenarios)")
        chosen.append(BY_DOMAIN[domain])
    return chosen


@lab_app.command("scenarios")
def scenarios_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the scenarios: domain, what is wrong, expected stage and finding codes."""
    import json

    from rich.console import Console
    from rich.table import Table

    from stspilot.cli.extras import require_extra

    require_extra("lab", "lab scenarios")
    from stspilot.lab.scenarios import SCENARIOS

    if as_json:
        rows = [
            {
                "domain": sc.domain,
                "summary": sc.summary,
                "stage": sc.stage,
                "expected": sorted(sc.expected),
            }
            for sc in SCENARIOS
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("domain", "what it shows", "stage", "expected findings")
    for sc in SCENARIOS:
        table.add_row(sc.domain, sc.summary, sc.stage, ", ".join(sorted(sc.expected)) or "-")
    Console().print(table)


@lab_app.command("up")
def up_command(
    scenario: Annotated[
        list[str] | None, typer.Argument(help="scenario domains to serve (default: all)")
    ] = None,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0, help="delay per TCP exchange")
    ] = 0.0,
    dns_latency_ms: Annotated[
        float, typer.Option("--dns-latency-ms", min=0, help="delay per DNS answer")
    ] = 0.0,
) -> None:
    """Run the world in the foreground (Ctrl-C stops it) and print how to check it."""
    import asyncio
    import contextlib
    import signal

    from stspilot.cli.extras import require_extra

    require_extra("lab", "lab up")

    from stspilot.lab.world import Lab

    chosen = _pick(scenario or [])

    async def serve() -> None:
        async with Lab(chosen, latency=latency_ms / 1000, dns_latency=dns_latency_ms / 1000) as lab:
            info = lab.info
            command = ["stspilot", "check", *info.check_args(trust_anchor=True), *info.domains[:3]]
            typer.echo(f"lab up: DNS {info.nameserver}:{info.dns_port}, CA {info.ca_file}")
            typer.echo(f"        HTTPS port {info.https_port}, SMTP port {info.smtp_port}")
            typer.echo(f"{len(info.domains)} scenario domains; check some with:\n")
            typer.echo("  " + shlex.join(command) + "\n")
            typer.echo("or all of them: add -f with `stspilot lab scenarios --json` domains.")
            typer.echo(
                "\nMonitor them (every lab host is on loopback, which the monitor's guard "
                "refuses\nunless --allow-private is given):\n"
            )
            typer.echo("  " + shlex.join(["stspilot", "monitor", "add", *info.domains[:3]]))
            run = ["stspilot", "monitor", "run", "--once", "--allow-private", *info.check_args()]
            typer.echo("  " + shlex.join(run) + "\n")
            typer.echo("Ctrl-C stops the lab.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        typer.echo("lab stopped")

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        typer.echo("lab stopped")


@lab_app.command("reports")
def reports_command(
    folder: Annotated[Path, typer.Argument(help="where to write them (created if missing)")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1_000_000)] = 100,
    domain: Annotated[
        list[str] | None,
        typer.Option("--domain", help="policy domain (repeat; default: example.com)"),
    ] = None,
    mail: Annotated[
        bool, typer.Option("--mail", help="write .eml mails (RFC 8460 §5.3) instead of files")
    ] = False,
    plain: Annotated[bool, typer.Option("--plain", help="write .json, not .json.gz")] = False,
    seed: Annotated[int, typer.Option("--seed", help="the same seed writes the same reports")] = 0,
) -> None:
    """Write sample TLS-RPT reports (RFC 8460 §4) from a mix of senders, for `stspilot ingest`."""
    from datetime import UTC, datetime, timedelta

    from stspilot.lab.sample_reports import (
        PROVIDERS,
        file_name,
        generate_reports,
        to_email,
        to_gzip,
        to_json_bytes,
    )
    from stspilot.sts.names import domain_name

    domains = [domain_name(d) for d in domain or ["example.com"]]
    # A report per sender, domain and day, ending yesterday: `reports summary` shows them.
    days = count // (len(domains) * len(PROVIDERS)) + 1
    start = datetime.now(UTC) - timedelta(days=days)
    folder.mkdir(parents=True, exist_ok=True)
    reports = generate_reports(count, seed=seed, domains=domains, start=start)
    for i, report in enumerate(reports):
        if mail:
            (folder / f"report-{i:06d}.eml").write_bytes(to_email(report, gzip=not plain))
        else:
            body = to_json_bytes(report) if plain else to_gzip(report)
            (folder / file_name(report, gzip=not plain, unique=str(i))).write_bytes(body)
    kind = "mails" if mail else "report files"
    typer.echo(f"{count} {kind} in {folder}; store them with: stspilot ingest {folder}")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
