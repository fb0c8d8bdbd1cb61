"""``stspilot monitor``: enrol domains, list the schedule, run the re-check loop with alerts."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stspilot.cli.rollout import CA_FILE, DEADLINE, NAMESERVER, PORT_MAP, TIMEOUT
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.store.retention import Retention

HELP = (
    "Re-check domains on a schedule, keep their history and alert on drift.\n\n"
    "Domains are enrolled with `monitor add` (hosted domains are enrolled automatically). "
    "`monitor run` claims due domains from the database, so several workers on several "
    "machines can share one PostgreSQL database; it stops cleanly on SIGTERM or Ctrl-C."
)

DB = typer.Option(None, "--db", help="database URL or SQLite path")
KEEP_ALL = typer.Option(30, "--keep-all-days", min=1, help="keep every check this long")
KEEP_DAILY = typer.Option(
    400,
    "--keep-daily-days",
    min=1,
    help="then each domain's changes and one check a day until this age; older: changes only",
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``6h``, ``1d`` (or plain seconds) as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not match:
        raise typer.BadParameter(f"not a duration: {text!r} (e.g. 30m, 6h, 1d)")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 1:
        raise typer.BadParameter("a duration must be at least one second")
    return timedelta(seconds=seconds)


def _relay(smtp: str | None, mail_to: list[str], mail_from: str) -> object:
    from stspilot.monitor.notify import MailRelay

    if smtp is None:
        if mail_to:
            raise typer.BadParameter("--mail-to needs --smtp HOST:PORT")
        return None
    if not mail_to:
        raise typer.BadParameter("--smtp needs at least one --mail-to")
    host, _, port = smtp.rpartition(":") if ":" in smtp else (smtp, "", "25")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"--smtp {smtp!r}: use HOST:PORT")
    return MailRelay(host, int(port), mail_from=mail_from, mail_to=tuple(mail_to))


def add_command(
    domains: list[str] = typer.Argument(..., help="domains to monitor"),
    db: str | None = DB,
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.monitor.loop import add_domain
    from stspilot.store import Store

    try:
        with Store.open(db) as store:
            added = add_domain(store, domains, now=utc_now())
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{len(added)} domain(s) added, {len(set(domains)) - len(added)} already enrolled")


def remove_command(
    domains: list[str] = typer.Argument(..., help="domains to stop monitoring"),
    db: str | None = DB,
) -> None:
    from stspilot.monitor.loop import remove_domain
    from stspilot.store import Store

    try:
        with Store.open(db) as store:
            removed = remove_domain(store, domains)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"{removed} domain(s) removed")


def list_command(
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    from stspilot.monitor.loop import list_domains
    from stspilot.store import Store

    with Store.open(db) as store:
        rows = list_domains(store)
    if as_json:
        doc = [
            {
                "domain": r.domain,
                "next_run_at": r.next_run_at.isoformat(),
                "last_run_at": r.last_run_at.isoformat() if r.last_run_at else None,
                "failures": r.failures,
                "last_error": r.last_error,
                "claimed_by": r.claimed_by,
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    for r in rows:
        last = f"{r.last_run_at:%Y-%m-%d %H:%M}" if r.last_run_at else "never"
        state = f"  failing x{r.failures}: {r.last_error}" if r.failures else ""
        typer.echo(f"{r.domain}  next {r.next_run_at:%Y-%m-%d %H:%M} UTC  last {last}{state}")
    if not rows:
        typer.echo("no domains enrolled (stspilot monitor add DOMAIN)")


def run_command(
    once: bool = typer.Option(False, "--once", help="one round, then exit"),
    interval: str = typer.Option("6h", "--interval", help="time between checks of a domain"),
    webhook: list[str] = typer.Option([], "--webhook", help="URL to POST alerts to (repeat)"),
    smtp: str | None = typer.Option(None, "--smtp", help="SMTP relay HOST:PORT for alert mail"),
    mail_to: list[str] = typer.Option([], "--mail-to", help="alert mail recipient (repeat)"),
    mail_from: str = typer.Option("stspilot@localhost", "--mail-from", help="alert sender"),
    batch: int = typer.Option(100, "--batch", min=1, help="domains claimed per round"),
    concurrency: int = typer.Option(20, "--concurrency", min=1, help="checks in flight"),
    expiry_days: int = typer.Option(14, "--expiry-days", min=0, help="certificate warning"),
    keep_all_days: int = KEEP_ALL,
    keep_daily_days: int = KEEP_DAILY,
    allow_private: bool = typer.Option(
        False,
        "--allow-private",
        help="connect to policy and MX hosts on private, loopback or link-local addresses "
        "(off: the SSRF guard, as tenants' domains are checked; on for the lab)",
    ),
    db: str | None = DB,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.cli.rollout import check_options
    from stspilot.monitor.loop import MonitorConfig, Tally, run_forever, run_once
    from stspilot.monitor.notify import MailRelay, Notifier
    from stspilot.store import Store

    if webhook:
        from stspilot.cli.extras import require_extra

        require_extra("serve", "monitor run --webhook")
    relay = _relay(smtp, mail_to, mail_from)
    config = MonitorConfig(
        interval=parse_duration(interval),
        batch_size=batch,
        concurrency=concurrency,
        expiry_days=expiry_days,
        retention=_retention(keep_all_days, keep_daily_days),
        alerts=Notifier(
            webhooks=tuple(webhook), mail=relay if isinstance(relay, MailRelay) else None
        ),
    )
    options = replace(
        check_options(nameserver, ca_file, port_map, timeout, deadline),
        allow_private=allow_private,
    )

    def show(t: Tally) -> None:
        typer.echo(
            f"claimed {t.claimed}, checked {t.checked}, failed {t.failed}, "
            f"alerts {t.alerts}, sent {t.sent}"
        )
        if t.thinned:
            typer.echo(f"thinned {t.thinned} old checks (kept: changes, one a day, the first)")
        for error in t.delivery_errors:
            typer.echo(f"delivery failed: {error}", err=True)
        for error in t.store_errors:
            typer.echo(error, err=True)

    async def main(store: Store) -> Tally:
        if once:
            return await run_once(store, options=options, now=utc_now(), config=config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_forever(store, options=options, config=config, stop=stop, on_round=show)

    with Store.open(db) as store:
        tally = asyncio.run(main(store))
    show(tally)


def alerts_command(
    domain: str | None = typer.Argument(None, help="one domain (default: all)"),
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    from stspilot.store import Store
    from stspilot.store.monitor import MonitorStore

    with Store.open(db) as store:
        rows = MonitorStore(store).open_alerts(domain)
    if as_json:
        keys = ("domain", "code", "severity", "message", "lasting")
        times = ("first_seen_at", "last_seen_at", "last_sent_at")
        doc = [
            {**{k: r[k] for k in keys}, **{k: r[k].isoformat() if r[k] else None for k in times}}
            for r in rows
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    for r in rows:
        sent = f"sent {r['last_sent_at']:%Y-%m-%d %H:%M}" if r["last_sent_at"] else "not sent"
        typer.echo(f"{r['severity']:<7} {r['message']}")
        typer.echo(f"        {r['code']}, since {r['first_seen_at']:%Y-%m-%d %H:%M} UTC, {sent}")
    if not rows:
        typer.echo("no open alerts")


def prune_command(
    keep_all_days: int = KEEP_ALL,
    keep_daily_days: int = KEEP_DAILY,
    dry_run: bool = typer.Option(False, "--dry-run", help="count, delete nothing"),
    db: str | None = DB,
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.store import Store

    retention = _retention(keep_all_days, keep_daily_days)
    with Store.open(db) as store:
        seen, dropped = store.thin_checks(now=utc_now(), retention=retention, dry_run=dry_run)
    verb = "would drop" if dry_run else "dropped"
    typer.echo(
        f"{seen} checks older than {keep_all_days} days: {verb} {dropped}, kept {seen - dropped}"
    )


def _retention(keep_all_days: int, keep_daily_days: int) -> Retention:
    from stspilot.store.retention import Retention

    try:
        return Retention(keep_all_days, keep_daily_days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def register(app: typer.Typer) -> None:
    group = typer.Typer(help=HELP, no_args_is_help=True)
    group.command("add", help="Enrol DOMAIN... (checked at the next round).")(add_command)
    group.command("remove", help="Stop monitoring DOMAIN... and forget its alerts.")(remove_command)
    group.command("list", help="The schedule: next and last run, failures.")(list_command)
    group.command("run", help="Check due domains and send alerts, in a loop or --once.")(
        run_command
    )
    group.command("alerts", help="Open alerts (all domains or DOMAIN), errors first.")(
        alerts_command
    )
    group.command(
        "prune",
        help="Thin old check history: keep every check --keep-all-days, then each domain's "
        "first check, its changes and one check a day; `monitor run` does this daily.",
    )(prune_command)
    app.add_typer(group, name="monitor")
