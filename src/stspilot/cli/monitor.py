"""``stspilot monitor``: enrol domains, list the schedule, run the re-check loop with alerts."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stspilot.cli import UsageError
from stspilot.cli.options import (
    CA_FILE,
    DB,
    DEADLINE,
    NAMESERVER,
    PORT_MAP,
    TIMEOUT,
    domain_argument,
)
from stspilot.cli.values import parse_duration

if TYPE_CHECKING:
    from stspilot.check.run import CheckOptions
    from stspilot.monitor.loop import MonitorConfig, Tally
    from stspilot.monitor.repair import HealConfig
    from stspilot.store.retention import Retention

HELP = (
    "Re-check domains on a schedule, keep their history and alert on drift.\n\n"
    "Domains are enrolled with `monitor add` (hosted domains are enrolled automatically). "
    "`monitor run` claims due domains from the database, so several workers on several "
    "machines can share one PostgreSQL database; it stops cleanly on SIGTERM or Ctrl-C."
)

KEEP_ALL = typer.Option(30, "--keep-all-days", min=1, help="keep every check this long")
KEEP_DAILY = typer.Option(
    400,
    "--keep-daily-days",
    min=1,
    help="then each domain's changes and one check a day until this age; older: changes only",
)


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
    domains: list[str] = domain_argument("domains to monitor"),
    db: str | None = DB,
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.monitor.loop import add_domain
    from stspilot.store import Store

    with Store.open(db) as store:
        added = add_domain(store, domains, now=utc_now())
    typer.echo(f"{len(added)} domain(s) added, {len(set(domains)) - len(added)} already enrolled")


def remove_command(
    domains: list[str] = domain_argument("domains to stop monitoring"),
    db: str | None = DB,
) -> None:
    from stspilot.monitor.loop import remove_domain
    from stspilot.store import Store

    with Store.open(db) as store:
        removed = remove_domain(store, domains)
    typer.echo(f"{removed} domain(s) removed")


def list_command(
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    from stspilot.monitor.loop import list_domains
    from stspilot.store import Store

    with Store.open(db, reader=True) as store:
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


WEBHOOK = typer.Option([], "--webhook", help="URL to POST alerts to (repeat)")
SMTP = typer.Option(None, "--smtp", help="SMTP relay HOST:PORT for alert mail")
MAIL_TO = typer.Option([], "--mail-to", help="alert mail recipient (repeat)")
MAIL_FROM = typer.Option("stspilot@localhost", "--mail-from", help="alert sender")
CONCURRENCY = typer.Option(20, "--concurrency", min=1, help="checks in flight")
EXPIRY_DAYS = typer.Option(14, "--expiry-days", min=0, help="certificate warning")
ALLOW_PRIVATE = typer.Option(
    False,
    "--allow-private",
    help="connect to policy and MX hosts on private, loopback or link-local addresses "
    "(off: the SSRF guard, as tenants' domains are checked; on for the lab)",
)


HEAL_AFTER = typer.Option(
    "10m",
    "--heal-after",
    help="self-healing: repair a drift only when two consecutive checks this far apart saw it",
)
HEAL = typer.Option(
    True, "--heal/--no-heal", help="repair drift of domains opted in with `monitor heal`"
)
PUBLISH_CONFIG = typer.Option(
    None, "--publish-config", help="self-healing's DNS providers (default: the publish config)"
)
# The options `run` and `check` share, read by ``_setup`` from the command's own values.
_SHARED = (
    "webhook",
    "smtp",
    "mail_to",
    "mail_from",
    "concurrency",
    "expiry_days",
    "allow_private",
    "nameserver",
    "ca_file",
    "port_map",
    "timeout",
    "deadline",
    "heal",
    "heal_after",
    "publish_config",
)


def _setup(values: Mapping[str, Any], **config: Any) -> tuple[MonitorConfig, CheckOptions]:
    """The monitor's settings and the live check's options, from the options ``run`` and
    ``check`` share (``values``: the command's parameters) and ``config`` (its own)."""
    shared = {k: values[k] for k in _SHARED}
    return _settings(**shared, **config)


def _settings(
    *,
    webhook: list[str],
    smtp: str | None,
    mail_to: list[str],
    mail_from: str,
    concurrency: int,
    expiry_days: int,
    allow_private: bool,
    nameserver: str | None,
    ca_file: Path | None,
    port_map: str | None,
    timeout: float,
    deadline: float,
    heal: bool,
    heal_after: str,
    publish_config: Path | None,
    **config: Any,
) -> tuple[MonitorConfig, CheckOptions]:
    from stspilot.cli.options import check_options

    if webhook:  # webhooks go out through httpx, part of the [serve] extra
        from stspilot.cli.extras import require_extra

        require_extra("serve", "monitor --webhook")
    from stspilot.monitor.loop import MonitorConfig
    from stspilot.monitor.notify import MailRelay, Notifier

    relay = _relay(smtp, mail_to, mail_from)
    alerts = Notifier(webhooks=tuple(webhook), mail=relay if isinstance(relay, MailRelay) else None)
    healing = _heal_config(parse_duration(heal_after), publish_config) if heal else None
    settings = MonitorConfig(
        concurrency=concurrency, expiry_days=expiry_days, alerts=alerts, heal=healing, **config
    )
    options = replace(
        check_options(nameserver, ca_file, port_map, timeout, deadline),
        allow_private=allow_private,
    )
    return settings, options


def _heal_config(min_gap: Any, publish_config: Path | None) -> HealConfig:
    from stspilot.monitor.repair import HealConfig
    from stspilot.publish.config import DomainConfig, ZoneConfig, load_config

    def configs(domain: str) -> DomainConfig:
        return load_config(publish_config).for_domain(domain)

    def delegation() -> ZoneConfig | None:
        from stspilot.publish.hosted import delegation_from_env

        return delegation_from_env(publish_config)

    return HealConfig(min_gap=min_gap, configs=configs, delegation=delegation)


def heal_command(
    domains: list[str] = domain_argument("domains to change (none: list every opted-in one)", None),
    id_bump: bool | None = typer.Option(
        None, "--id-bump/--no-id-bump", help="repair a policy changed without an id bump"
    ),
    mx_sync: bool | None = typer.Option(
        None, "--mx-sync/--no-mx-sync", help="keep the policy's mx lines in line with the MX set"
    ),
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.cli.publish import actor
    from stspilot.monitor.loop import list_domains
    from stspilot.store import Store
    from stspilot.store.heal import HealStore
    from stspilot.sts.names import domain_name

    names = [domain_name(d) for d in domains or ()]
    if names and id_bump is None and mx_sync is None:
        raise UsageError("say what to change: --id-bump/--no-id-bump, --mx-sync/--no-mx-sync")
    with Store.open(db) as store:
        heal = HealStore(store)
        if names:
            enrolled = {r.domain for r in list_domains(store)}
            missing = [d for d in names if d not in enrolled]
            if missing:
                raise UsageError(
                    f"not monitored: {', '.join(missing)} (stspilot monitor add DOMAIN first)"
                )
            for name in names:
                heal.opt_in(name, now=utc_now(), actor=actor(), id_bump=id_bump, mx_sync=mx_sync)
        rows = heal.all_settings()
        pending = {r.domain: heal.sightings(r.domain) for r in rows}
    if as_json:
        doc = [
            {
                "domain": r.domain,
                "id_bump": r.id_bump,
                "mx_sync": r.mx_sync,
                "updated_by": r.updated_by,
                "pending": [
                    {
                        "kind": s.kind,
                        "detail": s.detail,
                        "first_seen_at": s.first_seen_at.isoformat(),
                        "checks": s.checks,
                    }
                    for s in pending[r.domain].values()
                ],
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    for r in rows:
        on = [n for n, f in (("id-bump", r.id_bump), ("mx-sync", r.mx_sync)) if f]
        typer.echo(f"{r.domain}  {' '.join(on)}  (by {r.updated_by})")
        for s in pending[r.domain].values():
            typer.echo(
                f"    pending {s.kind}: {s.detail}; seen {s.checks}x since "
                f"{s.first_seen_at:%Y-%m-%d %H:%M} UTC"
            )
    if not rows:
        typer.echo("no domain opted in to self-healing (stspilot monitor heal DOMAIN --id-bump)")


def _tally_json(t: Tally, config: MonitorConfig) -> None:
    document = {
        "claimed": t.claimed,
        "checked": t.checked,
        "failed": t.failed,
        "alerts": t.alerts,
        "sent": t.sent,
        "targets": config.alerts.targets,
        "thinned": t.thinned,
        "repaired": t.repaired,
        "errors": [*t.delivery_errors, *t.store_errors],
    }
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _show(t: Tally, config: MonitorConfig) -> None:
    sent = (
        f"sent {t.sent}"
        if config.alerts.targets
        else "none sent (no --webhook or --smtp; `stspilot monitor alerts` lists them)"
    )
    typer.echo(
        f"claimed {t.claimed}, checked {t.checked}, failed {t.failed}, alerts {t.alerts}, {sent}"
    )
    if t.repaired:
        typer.echo(f"repaired {t.repaired} drift(s) (stspilot publish status DOMAIN)")
    if t.thinned:
        typer.echo(f"thinned {t.thinned} old checks (kept: changes, one a day, the first)")
    for error in t.delivery_errors:
        typer.echo(f"delivery failed: {error}", err=True)
    for error in t.store_errors:
        typer.echo(error, err=True)


def run_command(
    once: bool = typer.Option(False, "--once", help="one round, then exit"),
    as_json: bool = typer.Option(False, "--json", help="with --once: print the tally as JSON"),
    interval: str = typer.Option("6h", "--interval", help="time between checks of a domain"),
    webhook: list[str] = WEBHOOK,
    smtp: str | None = SMTP,
    mail_to: list[str] = MAIL_TO,
    mail_from: str = MAIL_FROM,
    batch: int = typer.Option(100, "--batch", min=1, help="domains claimed per round"),
    concurrency: int = CONCURRENCY,
    expiry_days: int = EXPIRY_DAYS,
    keep_all_days: int = KEEP_ALL,
    keep_daily_days: int = KEEP_DAILY,
    allow_private: bool = ALLOW_PRIVATE,
    db: str | None = DB,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
    heal: bool = HEAL,
    heal_after: str = HEAL_AFTER,
    publish_config: Path | None = PUBLISH_CONFIG,
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.monitor.loop import run_forever, run_once
    from stspilot.store import Store

    config, options = _setup(
        locals(),
        interval=parse_duration(interval),
        batch_size=batch,
        retention=_retention(keep_all_days, keep_daily_days),
    )

    async def main(store: Store) -> Tally:
        if once:
            return await run_once(store, options=options, now=utc_now(), config=config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        typer.echo(
            "monitor running: SIGTERM or Ctrl-C stops it after the round in flight", err=True
        )
        return await run_forever(
            store, options=options, config=config, stop=stop, on_round=lambda t: _show(t, config)
        )

    if as_json and not once:
        raise UsageError("--json needs --once (the loop prints a tally per round)")
    with Store.open(db) as store:
        tally = asyncio.run(main(store))
    if as_json:
        _tally_json(tally, config)
    else:
        _show(tally, config)


def check_command(
    domains: list[str] = domain_argument("enrolled domains to check now"),
    interval: str = typer.Option("6h", "--interval", help="the next check comes this long after"),
    as_json: bool = typer.Option(False, "--json", help="print the tally as JSON"),
    webhook: list[str] = WEBHOOK,
    smtp: str | None = SMTP,
    mail_to: list[str] = MAIL_TO,
    mail_from: str = MAIL_FROM,
    concurrency: int = CONCURRENCY,
    expiry_days: int = EXPIRY_DAYS,
    allow_private: bool = ALLOW_PRIVATE,
    db: str | None = DB,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
    heal: bool = HEAL,
    heal_after: str = HEAL_AFTER,
    publish_config: Path | None = PUBLISH_CONFIG,
) -> None:
    from stspilot.check.run import utc_now
    from stspilot.monitor.loop import list_domains, run_once
    from stspilot.store import Store

    config, options = _setup(locals(), interval=parse_duration(interval))
    names = list(dict.fromkeys(domains))
    with Store.open(db) as store:
        enrolled = {r.domain for r in list_domains(store)}
        missing = [d for d in names if d not in enrolled]
        if missing:
            raise UsageError(
                f"not monitored: {', '.join(missing)} (stspilot monitor add DOMAIN first)"
            )
        tally = asyncio.run(
            run_once(store, options=options, now=utc_now(), config=config, only=names)
        )
    if as_json:
        _tally_json(tally, config)
    else:
        _show(tally, config)
    if tally.claimed < len(names):
        typer.echo(f"{len(names) - tally.claimed} domain(s) held by another worker", err=True)


def alerts_command(
    domain: str | None = domain_argument("one domain (default: all)", None),
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    from stspilot.store import Store
    from stspilot.store.monitor import MonitorStore

    with Store.open(db, reader=True) as store:
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
    group.command("check", help="Check DOMAIN... now, due or not: history, alerts, schedule.")(
        check_command
    )
    group.command(
        "heal",
        help="Opt DOMAIN... in to (or out of) self-healing; without DOMAIN, list who is in.\n\n"
        "The monitor repairs a policy changed without an id bump (--id-bump) and MX drift "
        "(--mx-sync) through stspilot publish, each step verified and journaled, only after "
        "two consecutive checks at least --heal-after apart saw the same drift.",
    )(heal_command)
    group.command("alerts", help="Open alerts (all domains or DOMAIN), errors first.")(
        alerts_command
    )
    group.command(
        "prune",
        help="Thin old check history (`monitor run` does this daily).\n\n"
        "Keeps every check for --keep-all-days, then each domain's first check, its changes "
        "and one check a day.",
    )(prune_command)
    app.add_typer(group, name="monitor")
