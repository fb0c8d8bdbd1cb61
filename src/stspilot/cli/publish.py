"""``stspilot publish``: write DNS records and the policy in the never-orphan order, verified at
every step and journaled; ``publish status`` shows the journal, ``publish resume`` continues."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from stspilot.cli import EXIT_OK
from stspilot.cli.options import CA_FILE, NAMESERVER, PORT_MAP, TIMEOUT, check_options

if TYPE_CHECKING:
    from rich.console import Console

    from stspilot.publish.apply import Publisher
    from stspilot.publish.config import DomainConfig
    from stspilot.publish.plan import Target
    from stspilot.rollout.assess import RolloutAssessment
    from stspilot.rollout.evidence import LiveState
    from stspilot.store import Store
    from stspilot.store.journal import JournalRun

HELP = """Publish DOMAIN's records and policy in the never-orphan order, each step verified.

The TLS-RPT record, the MTA-STS policy and the _mta-sts record go out in the order that never
shows senders a record without its policy, each step verified before the next.

The DNS provider (--dns rfc2136|lexicon|manual) and its credentials come from the publish
config (--config, $STSPILOT_PUBLISH_CONFIG, or publish.toml in the user config folder; secrets
only from the environment or an owner-only file). The policy goes to --policy hosted (the store
stspilot serve hosts from), webroot:PATH (written atomically) or elsewhere (stspilot waits until
it is served). Every step is written to the journal first: `stspilot publish status DOMAIN`
shows it, `stspilot publish resume DOMAIN` continues after a crash or a provider outage.

Exit code: 0 done (or paused on a wait), 4 a step failed (the message names it and the command
that resumes); nothing half done.
"""


class _PublishGroup(TyperGroup):
    """``publish DOMAIN`` runs; ``publish status|resume DOMAIN`` are sub-commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


publish_app = typer.Typer(cls=_PublishGroup, help=HELP, no_args_is_help=True)

CONFIG = typer.Option(None, "--config", help="publish config (TOML)")
DB = typer.Option(None, "--db", help="database URL or SQLite path")
YES = typer.Option(False, "--yes", "-y", help="do not ask before changing anything")
JSON = typer.Option(False, "--json", help="print the journal as JSON")


def actor() -> str:
    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "cli"


def domain_config(
    domain: str, config: Path | None, dns: str | None, policy: str | None
) -> DomainConfig:
    from stspilot.publish.config import load_config
    from stspilot.sts.names import domain_name

    return load_config(config).for_domain(domain_name(domain), dns=dns, policy=policy)


def execute(
    store: Store,
    config: DomainConfig,
    *,
    nameserver: str | None,
    ca_file: Path | None,
    port_map: str | None,
    timeout: float,
    target: Callable[[Publisher], Any],
) -> Any:
    """Open a publisher for ``config`` and run the coroutine ``target(publisher)`` returns."""
    from stspilot.publish.session import open_publisher

    options = check_options(nameserver, ca_file, port_map, timeout)

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    async def main() -> Any:
        async with open_publisher(store, config, check=options, progress=say, actor=actor()) as p:
            return await target(p)

    return asyncio.run(main())


def apply_target(
    store: Store,
    config: DomainConfig,
    target: Target,
    *,
    yes: bool,
    reason: str,
    none_since: datetime | None,
    console: Console,
    history_max_age: int = 0,
    **net: Any,
) -> JournalRun | None:
    """Plan ``target`` from what is live, show it, ask, then carry it out."""
    from stspilot.publish.session import utc_now

    async def go(publisher: Publisher) -> JournalRun | None:
        plan = await publisher.plan_for(
            target, now=utc_now(), none_since=none_since, history_max_age=history_max_age
        )
        if not plan.steps:
            console.print(f"{plan.domain}: nothing to change; what is live is what was asked")
            return None
        from stspilot.publish.render import render_plan

        render_plan(plan, console, title=target.action)
        if not yes and not typer.confirm("Carry out these steps?", default=False):
            raise typer.Abort()
        run = publisher.start(plan, actor=actor(), reason=reason)
        return await publisher.run(run)

    result: JournalRun | None = execute(store, config, target=go, **net)
    if result is not None:
        from stspilot.publish.render import render_runs

        render_runs([result], console)
    return result


@publish_app.command("run", hidden=True)
def publish_command(
    domain: str = typer.Argument(..., help="the mail domain"),
    dns: str | None = typer.Option(None, "--dns", help="rfc2136, lexicon or manual"),
    policy: str | None = typer.Option(
        None, "--policy", help="hosted, webroot:PATH or elsewhere (default: the config's)"
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="testing, enforce or none (default: the live mode, else testing)"
    ),
    mx: list[str] = typer.Option([], "--mx", help="MX host to cover (default: the live set)"),
    max_age: int | None = typer.Option(None, "--max-age", min=0, help="seconds"),
    rua: list[str] = typer.Option([], "--rua", help="TLS-RPT URI (default: the live one)"),
    reporting_only: bool = typer.Option(False, "--reporting-only", help="only the TLS-RPT record"),
    remove: bool = typer.Option(False, "--remove", help="decommission (RFC 8461 §8.3)"),
    config: Path | None = CONFIG,
    db: str | None = DB,
    yes: bool = YES,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
) -> None:
    """Publish DOMAIN's records and policy in the never-orphan order, each step verified."""
    from rich.console import Console

    from stspilot.publish.plan import Live, Target, policy_mode
    from stspilot.publish.session import utc_now
    from stspilot.rollout.generate import generate
    from stspilot.store import Store
    from stspilot.sts.records import record_id, record_rua

    cfg = domain_config(domain, config, dns, policy)
    console = Console(highlight=False, soft_wrap=True)
    net: dict[str, Any] = {
        "nameserver": nameserver,
        "ca_file": ca_file,
        "port_map": port_map,
        "timeout": timeout,
    }
    with Store.open(db) as store:

        async def live_mx(publisher: Publisher) -> tuple[list[str], Live]:
            lookup = await publisher.fetcher.resolver.lookup_mx(cfg.domain)
            return [h.host for h in lookup.hosts], await publisher.read_live(cfg.domain)

        hosts, live = execute(store, cfg, target=live_mx, **net)
        previous = record_id(live.sts)
        # Without --mode the live mode stays (a plain `publish` never rolls back by surprise).
        current = policy_mode(live.policy) if live.policy else None
        chosen = "none" if remove else (mode or current or "testing")
        pub = generate(
            cfg.domain,
            mx_hosts=mx or hosts,
            mode=chosen,
            rua=rua or list(record_rua(live.tlsrpt)),
            now=utc_now(),
            max_age=max_age,
            previous_id=previous,
            patterns=() if chosen == "none" else None,
        )
        action = "decommission" if remove else ("reporting" if reporting_only else chosen)
        target = Target(action, pub, reporting_only=reporting_only, decommission=remove)
        apply_target(
            store, cfg, target, yes=yes, reason="", none_since=None, console=console, **net
        )
    raise typer.Exit(EXIT_OK)


@publish_app.command("status")
def status_command(
    domain: str = typer.Argument(..., help="the mail domain"),
    limit: int = typer.Option(5, "--limit", min=1, help="runs to show, newest first"),
    as_json: bool = JSON,
    db: str | None = DB,
) -> None:
    """The journal of DOMAIN: every run and step, when, verified or not."""
    from rich.console import Console

    from stspilot.store import Store
    from stspilot.store.journal import PublishJournal
    from stspilot.sts.names import domain_name

    with Store.open(db) as store:
        runs = PublishJournal(store).runs(domain_name(domain), limit=limit)
    if as_json:
        from stspilot.publish.render import run_to_json

        sys.stdout.write(json.dumps([run_to_json(r) for r in runs], indent=2) + "\n")
    else:
        from stspilot.publish.render import render_runs

        render_runs(runs, Console(highlight=False, soft_wrap=True))


@publish_app.command("resume")
def resume_command(
    domain: str = typer.Argument(..., help="the mail domain"),
    config: Path | None = CONFIG,
    db: str | None = DB,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
) -> None:
    """Continue DOMAIN's unfinished run from its first step not verified."""
    from rich.console import Console

    from stspilot.errors import PublishError
    from stspilot.store import Store
    from stspilot.store.journal import PublishJournal

    console = Console(highlight=False, soft_wrap=True)
    with Store.open(db) as store:
        from stspilot.sts.names import domain_name

        name = domain_name(domain)
        run = PublishJournal(store).open_run(name)
        if run is None:
            raise PublishError(f"{name} has no unfinished publish run", step="resume")
        if run.destination == "hosted-delegation":  # the hosted service's own TXT records
            from stspilot.publish.hosted import resume_delegated

            options = check_options(nameserver, ca_file, port_map, timeout)
            render = resume_delegated(store, run, config=config, check=options, actor=actor())
            from stspilot.publish.render import render_runs

            render_runs([render], console)
            return
        cfg = domain_config(domain, config, None, run.destination)

        async def go(publisher: Publisher) -> JournalRun:
            return await publisher.resume(cfg.domain)

        done = execute(
            store,
            cfg,
            target=go,
            nameserver=nameserver,
            ca_file=ca_file,
            port_map=port_map,
            timeout=timeout,
        )
    from stspilot.publish.render import render_runs

    render_runs([done], console)


@publish_app.command("mx-migrate")
def mx_migrate_command(
    domain: str = typer.Argument(..., help="the mail domain"),
    to: list[str] = typer.Option(..., "--to", help="a new MX host (repeat for several)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the plan and its waits only"),
    config: Path | None = CONFIG,
    db: str | None = DB,
    yes: bool = YES,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
) -> None:
    """Move DOMAIN's mail to new MX hosts without a sender ever refusing the live MX.

    The MX-migration runbook, carried out: the new hosts are added to the policy (served,
    verified, new id); after the longest max_age ever served, you switch the MX records and
    stspilot waits until every authoritative server shows them; after the old MX records'
    TTL the old hosts leave the policy (served, verified, new id). Long waits pause the run:
    `stspilot publish resume DOMAIN` continues it, `stspilot publish status DOMAIN` shows it."""
    net = {"nameserver": nameserver, "ca_file": ca_file, "port_map": port_map, "timeout": timeout}
    migrate_mx(domain, to, dry_run=dry_run, yes=yes, config=config, db=db, **net)


def migrate_mx(
    domain: str,
    to: list[str],
    *,
    dry_run: bool,
    yes: bool,
    config: Path | None,
    db: str | None,
    **net: Any,
) -> JournalRun | None:
    """Plan the MX migration from what is live (records, policy, MX set at the primary), show
    it with its waits, ask, carry it out (``publish mx-migrate``, ``rollout --apply --new-mx``)."""
    from rich.console import Console

    from stspilot.publish.migrate import plan_mx_migration
    from stspilot.publish.render import render_plan, render_runs
    from stspilot.publish.session import utc_now
    from stspilot.store import Store

    cfg = domain_config(domain, config, None, None)
    console = Console(highlight=False, soft_wrap=True)

    async def go(publisher: Publisher) -> JournalRun | None:
        live = await publisher.read_live(cfg.domain)
        mx = await publisher.read_mx(cfg.domain)
        rua = live.tlsrpt.partition("rua=")[2].split(",") if live.tlsrpt else []
        plan = plan_mx_migration(
            live,
            mx_now=mx.hosts,
            mx_ttl=mx.ttl,
            new_hosts=to,
            rua=[u.strip().rstrip(";").strip() for u in rua if u.strip()],
            now=utc_now(),
        )
        render_plan(plan, console, title="MX migration")
        if dry_run:
            return None
        if not yes and not typer.confirm("Carry out these steps?", default=False):
            raise typer.Abort()
        run = publisher.start(plan, actor=actor(), reason=f"MX migration to {' '.join(to)}")
        return await publisher.run(run)

    with Store.open(db) as store:
        done: JournalRun | None = execute(store, cfg, target=go, **net)
    if done is not None:
        render_runs([done], console)
    return done


def register(app: typer.Typer) -> None:
    app.add_typer(publish_app, name="publish")


def apply_rollout(
    assessment: RolloutAssessment,
    live: LiveState,
    *,
    to: str | None,
    yes: bool,
    force: str,
    config: Path | None,
    policy: str | None,
    db: str | None,
    **net: Any,
) -> int:
    """``rollout --apply``: the target the assessment calls for, planned, asked, carried out."""
    from rich.console import Console

    from stspilot.cli import EXIT_ERRORS
    from stspilot.publish.plan import GateRefused, choose_target
    from stspilot.publish.session import utc_now
    from stspilot.store import Store

    console = Console(highlight=False, soft_wrap=True, stderr=True)
    try:
        target = choose_target(assessment, live, to, now=utc_now(), force_reason=force)
    except GateRefused as exc:
        console.print(f"[red]refused:[/red] {exc}")
        return EXIT_ERRORS
    if target.publication is None:
        console.print(f"{assessment.domain}: nothing to publish ({target.summary})")
        return EXIT_OK
    cfg = domain_config(assessment.domain, config, None, policy)
    none_since = assessment.since if assessment.stage.value == "winding-down" else None
    # The decommission runbook waits for the longest max_age the check history saw served.
    books = assessment.runbooks.decommission
    start = none_since or assessment.assessed_at
    longest = int((books.wait_until - start).total_seconds()) if books.wait_until else 0
    reason = f"forced past the enforce gate: {force}" if force and not assessment.ready else ""
    with Store.open(db) as store:
        apply_target(
            store,
            cfg,
            target,
            yes=yes,
            reason=reason or target.summary,
            none_since=none_since,
            console=console,
            history_max_age=max(longest, 0),
            **net,
        )
    return EXIT_OK


@publish_app.command("hosted-sync")
def hosted_sync_command(
    zone: str | None = typer.Option(
        None, "--zone", help="the delegation zone (default: $STSPILOT_TXT_DELEGATION_ZONE)"
    ),
    verify_policy: bool = typer.Option(
        True, "--verify-policy/--no-verify-policy", help="fetch each policy before its id"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="only list what would change"),
    config: Path | None = CONFIG,
    db: str | None = DB,
    yes: bool = YES,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
) -> None:
    """Make the delegation zone's TXT records say what the hosted store serves.

    Each changed policy is fetched as a sender would, then its new id published and verified
    at every server. Every domain changed gets its own journal run (hosted-sync), written
    before anything changes: after a crash or a failure (exit code 4),
    `stspilot publish resume DOMAIN` finishes it."""
    import os

    from rich.console import Console

    from stspilot.check.run import Probes
    from stspilot.errors import ConfigError
    from stspilot.publish.config import load_config
    from stspilot.publish.hosted import sync_delegation
    from stspilot.publish.rfc2136 import Rfc2136Provider
    from stspilot.publish.session import utc_now
    from stspilot.publish.verify import NameServer, VerifyOptions, authoritative_servers
    from stspilot.store import Store

    name = (zone or os.environ.get("STSPILOT_TXT_DELEGATION_ZONE") or "").rstrip(".").lower()
    if not name:
        raise ConfigError("give --zone or set STSPILOT_TXT_DELEGATION_ZONE")
    zones = load_config(config).zones
    if name not in zones or zones[name].provider != "rfc2136":
        raise ConfigError(f'configure [zones."{name}"] with provider = "rfc2136" first')
    rfc = zones[name].rfc2136()
    options = check_options(nameserver, ca_file, port_map, timeout)
    console = Console(highlight=False, soft_wrap=True)

    async def main(store: Store, dry: bool) -> Any:
        provider = Rfc2136Provider(rfc)
        primary = NameServer("primary", rfc.server, rfc.port)
        async with Probes(options) as probes:
            servers = await authoritative_servers(
                name, primary=primary, port=zones[name].nameserver_port
            )
            return await sync_delegation(
                store,
                provider,
                servers,
                zone=name,
                clock=utc_now,
                fetcher=probes.fetcher if verify_policy else None,
                verify=VerifyOptions(timeout=float(zones[name].options.get("verify_timeout", 300))),
                dry_run=dry,
                actor=actor(),
            )

    with Store.open(db) as store:
        plan = asyncio.run(main(store, True))
        for domain, why in plan.skipped.items():
            console.print(f"[yellow]skipped[/yellow] {domain}: {why}")
        if not plan.changed:
            console.print(f"{name}: every record already says what the store serves")
            return
        console.print(
            f"{len(plan.changed)} record(s) to change in {name}: {', '.join(plan.changed[:10])}"
        )
        if dry_run:
            return
        if not yes and not typer.confirm("Change them?", default=False):
            raise typer.Abort()
        done = asyncio.run(main(store, False))
    for domain, why in done.skipped.items():
        if domain not in plan.skipped:
            console.print(f"[yellow]skipped[/yellow] {domain}: {why}")
    bulk = done.bulk
    console.print(
        f"{len(done.changed)} record(s) changed and verified at every server"
        + (f" in {bulk.write_seconds + bulk.verify_seconds:.1f}s" if bulk else "")
        + (
            f"; journal runs {min(done.runs.values())}-{max(done.runs.values())}"
            if done.runs
            else ""
        )
        + " (stspilot publish status DOMAIN)"
    )
