"""``stspilot host``: hosted MTA-STS policies (served as ``mta-sts.<domain>``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stspilot.cli.options import CA_FILE, DB, NAMESERVER, PORT_MAP, TIMEOUT, domain_argument

if TYPE_CHECKING:
    from stspilot.store import Store
    from stspilot.store.hosting import HostedDomain

host_app = typer.Typer(help="Hosted MTA-STS policies (served as mta-sts.<domain>).")


def _now() -> datetime:
    return datetime.now(UTC)


def _open(db: str | None, *, reader: bool = False) -> Store:
    from stspilot.store import Store

    return Store.open(db, reader=reader)


def _hosted_line(h: HostedDomain) -> str:
    state = "" if h.state == "active" else f"  [{h.state} until {h.remove_after}]"
    return f"{h.domain}\t{h.tenant}\t{h.mode}\tid={h.policy_id}\tmx={','.join(h.mx)}{state}"


@host_app.command("add")
def host_add(
    domain: str = domain_argument("the mail domain to host"),
    tenant: str = typer.Option(..., "--tenant"),
    mode: str = typer.Option("testing", "--mode", help="testing, enforce or none"),
    mx: list[str] = typer.Option([], "--mx", help="mx pattern (repeat)"),
    max_age: int | None = typer.Option(None, "--max-age", min=0, help="seconds"),
    crlf: bool = typer.Option(False, "--crlf", help="serve CRLF line ends"),
    auto_sync_mx: bool = typer.Option(False, "--auto-sync-mx", help="apply MX syncs"),
    db: str | None = DB,
) -> None:
    """Host DOMAIN's policy and print the TXT record to publish."""
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies

    with _open(db) as store:
        owner = Accounts(store).tenant(tenant)
        hosted = HostedPolicies(store).add(
            domain,
            tenant_id=owner.id,
            mode=mode,
            mx=mx,
            max_age=max_age,
            crlf=crlf,
            auto_sync_mx=auto_sync_mx,
            now=_now(),
            actor="cli",
        )
    typer.echo(_hosted_line(hosted))
    typer.echo(f'publish: _mta-sts.{hosted.domain}. TXT "{hosted.sts_txt_value}"')


@host_app.command("list")
def host_list(
    tenant: str | None = typer.Option(None, "--tenant"),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DB,
) -> None:
    """List hosted domains."""
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies

    with _open(db, reader=True) as store:
        tenant_id = Accounts(store).tenant(tenant).id if tenant else None
        hosted = HostedPolicies(store).list_domains(tenant_id)
    if as_json:
        rows = [
            {
                "domain": h.domain,
                "tenant": h.tenant,
                "mode": h.mode,
                "mx": list(h.mx),
                "max_age": h.max_age,
                "policy_id": h.policy_id,
                "state": h.state,
                "txt_value": h.sts_txt_value,
            }
            for h in hosted
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    for h in hosted:
        typer.echo(_hosted_line(h))


@host_app.command("set")
def host_set(
    domain: str = domain_argument("the hosted domain"),
    mode: str | None = typer.Option(None, "--mode", help="testing, enforce or none"),
    mx: list[str] = typer.Option([], "--mx", help="mx pattern (repeat; replaces the list)"),
    max_age: int | None = typer.Option(None, "--max-age", min=0, help="seconds"),
    crlf: bool | None = typer.Option(None, "--crlf/--lf", help="line ends served"),
    auto_sync_mx: bool | None = typer.Option(
        None, "--auto-sync-mx/--no-auto-sync-mx", help="apply MX syncs"
    ),
    db: str | None = DB,
) -> None:
    """Change DOMAIN's hosted policy; a changed policy gets a new id: publish the TXT record."""
    from stspilot.cli import UsageError
    from stspilot.store.hosting import HostedPolicies

    if mode is None and not mx and max_age is None and crlf is None and auto_sync_mx is None:
        raise UsageError("nothing to change: give --mode, --mx, --max-age, --crlf/--lf or ...")
    with _open(db) as store:
        policies = HostedPolicies(store)
        before = policies.require(domain)
        hosted = policies.update(
            domain,
            now=_now(),
            mode=mode,
            mx=mx or None,
            max_age=max_age,
            crlf=crlf,
            auto_sync_mx=auto_sync_mx,
            actor="cli",
        )
    typer.echo(_hosted_line(hosted))
    if hosted.policy_id == before.policy_id:
        typer.echo("the served policy did not change: nothing to publish")
    else:
        typer.echo(f'publish: _mta-sts.{hosted.domain}. TXT "{hosted.sts_txt_value}"')


@host_app.command("decommission")
def host_decommission(
    domain: str = domain_argument("the hosted domain"), db: str | None = DB
) -> None:
    """Serve mode: none until cached policies expire (RFC 8461 §8.3)."""
    from stspilot.store.hosting import HostedPolicies

    with _open(db) as store:
        hosted = HostedPolicies(store).decommission(domain, now=_now(), actor="cli")
    typer.echo(_hosted_line(hosted))
    typer.echo(f'publish: _mta-sts.{hosted.domain}. TXT "{hosted.sts_txt_value}"')


@host_app.command("remove")
def host_remove(
    domain: str = domain_argument("the hosted domain"),
    force: bool = typer.Option(False, "--force", help="skip the decommission wait (unsafe)"),
    zone: str | None = typer.Option(
        None, "--zone", help="the delegation zone (default: $STSPILOT_TXT_DELEGATION_ZONE)"
    ),
    config: Path | None = typer.Option(None, "--config", help="publish config (TOML)"),
    db: str | None = DB,
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
) -> None:
    """Stop hosting DOMAIN (after decommission has run its course).

    With a delegation zone (--zone or $STSPILOT_TXT_DELEGATION_ZONE) and a provider for it in
    the publish config, DOMAIN's TXT record there goes first, journaled and verified at every
    server (a record left behind would name a policy nobody serves); the policy only after.
    Exit code 4 when the record still stands: the message names the journal run and the
    command that finishes it."""
    import asyncio
    import os
    import sys

    from stspilot.cli.options import check_options
    from stspilot.cli.publish import actor
    from stspilot.errors import PublishError
    from stspilot.publish.config import load_config
    from stspilot.publish.hosted import carry_out, delegation_zone, record_name, removal_pending
    from stspilot.store.hosting import DECOMMISSIONING, HostedPolicies

    name = (zone or os.environ.get("STSPILOT_TXT_DELEGATION_ZONE") or "").rstrip(".").lower()
    with _open(db) as store:
        policies = HostedPolicies(store)
        hosted = policies.require(domain)
        now = _now()
        over = (
            hosted.state == DECOMMISSIONING and hosted.remove_after and now >= hosted.remove_after
        )
        provider = delegation_zone(load_config(config), name) if name and (over or force) else None
        if name and (over or force) and provider is None:
            print(
                f"stspilot: no provider for the delegation zone {name} in the publish config: "
                f"remove the TXT record {record_name(hosted.domain, name)} yourself",
                file=sys.stderr,
            )
        if provider is not None:
            who = actor()
            pending = removal_pending(store, hosted, provider, actor=who, now=now, force=force)
            if pending is not None:
                run = pending.run
                record = record_name(hosted.domain, provider.zone)
                again = f"stspilot host remove {hosted.domain}"
                if not pending.started:
                    raise PublishError(
                        f"{hosted.domain} is still hosted: its TXT record {record} is removed "
                        f"first, by journal run {run.id} ({run.state}); finish it (stspilot "
                        f"publish resume {hosted.domain}), then {again}",
                        step="host remove",
                        answer=run.state,
                    )
                options = check_options(nameserver, ca_file, port_map, timeout)
                try:
                    done = asyncio.run(
                        carry_out(
                            store,
                            provider,
                            run,
                            check=options,
                            clock=_now,
                            actor=who,
                            reason="stspilot host remove",
                        )
                    )
                except PublishError as exc:
                    raise PublishError(
                        f"{hosted.domain} is still hosted: removing its TXT record {record} "
                        f"first (journal run {run.id}) failed: {exc}; then {again}",
                        step=exc.step,
                        answer=exc.answer,
                    ) from None
                if done.state != "done":  # pragma: no cover - a removal has no wait step
                    raise PublishError(
                        f"{hosted.domain} is still hosted: journal run {run.id} is {done.state}",
                        step="host remove",
                    )
                typer.echo(
                    f"{record} TXT removed and verified at every server (journal run {run.id})"
                )
        policies.remove(hosted.domain, now=_now(), force=force)
    typer.echo(f"{hosted.domain} is no longer hosted")


def register(app: typer.Typer) -> None:
    app.add_typer(host_app, name="host")
