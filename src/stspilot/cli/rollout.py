"""``stspilot rollout``: where a domain stands on the way to enforce, and what to do next."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stspilot.cli import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS
from stspilot.cli.options import (
    CA_FILE,
    DB,
    DEADLINE,
    NAMESERVER,
    PORT_MAP,
    TIMEOUT,
    check_options,
    domain_argument,
)
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.check.run import CheckOptions
    from stspilot.rollout.assess import RolloutAssessment

HELP = """Assess the rollout of MTA-STS for DOMAIN: stage, the enforce gate, what-if, next step.

Runs a live check (saved to the store unless --no-save), reads the stored TLS-RPT reports of
the last --days days and the history of earlier checks, and prints: the stage and since when;
each enforce-gate criterion with its evidence; how many sessions enforce would have refused;
the exact records and policy to publish next; rollback, decommission and (with --new-mx or
when the MX set drifted) an MX migration runbook.

With --apply --new-mx HOST it carries out the MX migration step by step, with its waits (see
stspilot publish mx-migrate). With --apply alone it carries out the next stage (or --to
testing|enforce|none) through stspilot publish: it shows the plan, asks (unless --yes), and
publishes in the never-orphan order, each step verified and journaled. --to enforce is
refused while the gate fails, unless --force REASON (the journal records the reason). --to
testing is the fast rollback; --to none decommissions the safe way (RFC 8461 §8.3).

Exit code: 0 the gate passes (or enforce is healthy), 1 it passes with warnings, 2 it fails
(with --apply --to enforce: refused); 4 a publishing step failed (resume with
stspilot publish resume DOMAIN).
"""


def run_check(domain: str, options: CheckOptions) -> CheckResult:
    """One live check of ``domain`` (its name checked at the door)."""
    from stspilot.check.run import check_domains
    from stspilot.sts.names import domain_name

    name = domain_name(domain)
    (result,) = asyncio.run(check_domains([name], options=options))
    return result


# --- store ----------------------------------------------------------------------------------


def exit_code(a: RolloutAssessment) -> int:
    from stspilot.findings import Severity
    from stspilot.rollout.assess import Stage

    # Removing MTA-STS is not a step towards enforce: the gate does not decide then. An error
    # finding (the policy changed without a new id, mail refused under enforce) also means 2.
    gate_ok = a.stage is Stage.WINDING_DOWN or a.ready
    if not gate_ok or a.worst is Severity.ERROR:
        return EXIT_ERRORS
    return EXIT_WARNINGS if a.worst is Severity.WARNING else EXIT_OK


def rollout_command(
    domain: str = domain_argument("the mail domain"),
    days: int = typer.Option(14, "--days", min=1, max=366, help="what-if window in days"),
    gate_days: int = typer.Option(7, "--gate-days", min=1, max=366, help="gate window in days"),
    min_sessions: int = typer.Option(50, "--min-sessions", min=0, help="sessions the gate needs"),
    stuck_after: int = typer.Option(30, "--stuck-after", min=1, help="days of clean testing"),
    new_mx: list[str] = typer.Option([], "--new-mx", help="planned MX host (repeat): runbook"),
    db: str | None = DB,
    no_save: bool = typer.Option(False, "--no-save", help="do not store this check"),
    as_json: bool = typer.Option(False, "--json", help="print stspilot.rollout/1 JSON"),
    nameserver: str | None = NAMESERVER,
    ca_file: Path | None = CA_FILE,
    port_map: str | None = PORT_MAP,
    timeout: float = TIMEOUT,
    deadline: float = DEADLINE,
    apply: bool = typer.Option(False, "--apply", help="carry out the next stage (or --to)"),
    to: str | None = typer.Option(None, "--to", help="with --apply: testing, enforce or none"),
    yes: bool = typer.Option(False, "--yes", "-y", help="with --apply: do not ask"),
    force: str | None = typer.Option(
        None, "--force", help="with --apply --to enforce: the REASON to pass a failing gate"
    ),
    config: Path | None = typer.Option(None, "--config", help="publish config (TOML)"),
    policy: str | None = typer.Option(
        None, "--policy", help="with --apply: hosted, webroot:PATH or elsewhere"
    ),
) -> None:
    from rich.console import Console

    from stspilot.rollout.assess import assess_rollout
    from stspilot.rollout.render import dumps, render_rollout_text, rollout_to_json
    from stspilot.store import Store
    from stspilot.store.checks import rollout_inputs, save_check

    if gate_days > days:
        raise typer.BadParameter("--gate-days cannot be longer than --days")
    if not apply and (to or yes or force):
        raise typer.BadParameter("--to, --yes and --force go with --apply")
    if apply and new_mx and (to or force):
        raise typer.BadParameter(
            "--apply --new-mx carries out the MX migration: no --to or --force"
        )
    options = check_options(nameserver, ca_file, port_map, timeout, deadline)
    result = run_check(domain, options)
    now = result.observed_at
    planned = tuple(new_mx) if new_mx else None
    with Store.open(db) as store:
        inputs = rollout_inputs(
            store, result.domain, now, days=days, latest=result, planned_mx=planned
        )
        if not no_save:
            save_check(store, result)
    assert inputs is not None  # given the check just run
    try:
        assessment = assess_rollout(
            inputs,
            now=now,
            window_days=days,
            gate_days=gate_days,
            min_sessions=min_sessions,
            stuck_after_days=stuck_after,
        )
    except ConfigError as exc:  # e.g. a --new-mx that is no host name
        raise typer.BadParameter(str(exc)) from exc
    if as_json:
        document: Mapping[str, Any] = rollout_to_json(assessment)
        sys.stdout.write(dumps(dict(document)) + "\n")
    else:
        render_rollout_text(assessment, Console(highlight=False, soft_wrap=False))
    if apply and new_mx:
        # The MX-migration runbook above, carried out step by step with its waits.
        from stspilot.cli.publish import migrate_mx

        net = {"nameserver": nameserver, "ca_file": ca_file, "port_map": port_map}
        migrate_mx(
            result.domain,
            new_mx,
            dry_run=False,
            yes=yes,
            config=config,
            db=db,
            timeout=timeout,
            **net,
        )
        raise typer.Exit(EXIT_OK)
    if apply:
        from stspilot.cli.publish import apply_rollout

        net = {"nameserver": nameserver, "ca_file": ca_file, "port_map": port_map}
        raise typer.Exit(
            apply_rollout(
                assessment,
                inputs.live,
                to=to,
                yes=yes,
                force=force or "",
                config=config,
                policy=policy,
                db=db,
                timeout=timeout,
                **net,
            )
        )
    raise typer.Exit(exit_code(assessment))


def register(app: typer.Typer) -> None:
    app.command("rollout", help=HELP)(rollout_command)
