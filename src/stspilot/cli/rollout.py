"""``stspilot rollout``: where a domain stands on the way to enforce, and what to do next."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stspilot.cli import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.check.run import CheckOptions
    from stspilot.rollout.assess import RolloutAssessment
    from stspilot.rollout.evidence import ReportWindow
    from stspilot.store import Store

HELP = """Assess the rollout of MTA-STS for DOMAIN: stage, the enforce gate, what-if, next step.

Runs a live check (saved to the store unless --no-save), reads the stored TLS-RPT reports of
the last --days days and the history of earlier checks, and prints: the stage and since when;
each enforce-gate criterion with its evidence; how many sessions enforce would have refused;
the exact records and policy to publish next; rollback, decommission and (with --new-mx or
when the MX set drifted) an MX migration runbook.

With --apply it then carries out the next stage (or --to testing|enforce|none) through
stspilot publish: it shows the plan, asks (unless --yes), and publishes in the never-orphan
order, each step verified and journaled. --to enforce is refused while the gate fails, unless
--force REASON (the journal records the reason). --to testing is the fast rollback; --to none
decommissions the safe way (RFC 8461 §8.3).

Exit code: 0 the gate passes (or enforce is healthy), 1 it passes with warnings, 2 it fails
(with --apply --to enforce: refused); 4 a publishing step failed (resume with
stspilot publish resume DOMAIN).
"""

# --- options shared with `stspilot generate` -------------------------------------------------


def check_options(
    nameserver: str | None,
    ca_file: Path | None,
    port_map: str | None,
    timeout: float = 10.0,
    deadline: float = 45.0,
) -> CheckOptions:
    """The live check's options, parsed the way ``stspilot check`` parses them."""
    from stspilot.cli.check import build_options

    return build_options(
        nameserver=nameserver,
        ca_file=ca_file,
        port_map=port_map,
        timeout=timeout,
        deadline=deadline,
        concurrency=1,
        probe_mx=True,
    )


def run_check(domain: str, options: CheckOptions) -> CheckResult:
    from stspilot.check.run import check_domains, normalize_domain

    name = normalize_domain(domain)
    (result,) = asyncio.run(check_domains([name], options=options))
    return result


NAMESERVER = typer.Option(None, "--nameserver", help="DNS server IP[:PORT] (default: system)")
CA_FILE = typer.Option(None, "--ca-file", help="extra CA certificate (PEM) to trust")
PORT_MAP = typer.Option(None, "--port-map", help="e.g. 443=8443,25=2525 (the lab)")
TIMEOUT = typer.Option(10.0, "--timeout", min=0.1, help="seconds per network step")
DEADLINE = typer.Option(45.0, "--deadline", min=0.5, help="seconds for the whole live check")


# --- store ----------------------------------------------------------------------------------


def read_window(store: Store, domain: str, since: datetime, until: datetime) -> ReportWindow:
    """The domain's report counts over [since, until] (grouped queries, not per report)."""
    from stspilot.store.dashboard import report_window

    return report_window(store, domain, since, until)


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
    domain: str = typer.Argument(..., help="the mail domain"),
    days: int = typer.Option(14, "--days", min=1, max=366, help="what-if window in days"),
    gate_days: int = typer.Option(7, "--gate-days", min=1, max=366, help="gate window in days"),
    min_sessions: int = typer.Option(50, "--min-sessions", min=0, help="sessions the gate needs"),
    stuck_after: int = typer.Option(30, "--stuck-after", min=1, help="days of clean testing"),
    new_mx: list[str] = typer.Option([], "--new-mx", help="planned MX host (repeat): runbook"),
    db: str | None = typer.Option(None, "--db", help="database URL or SQLite path"),
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

    from stspilot.rollout.assess import RolloutInputs, assess_rollout
    from stspilot.rollout.evidence import live_state_from_check
    from stspilot.rollout.render import dumps, render_rollout_text, rollout_to_json
    from stspilot.store import Store

    if gate_days > days:
        raise typer.BadParameter("--gate-days cannot be longer than --days")
    if not apply and (to or yes or force):
        raise typer.BadParameter("--to, --yes and --force go with --apply")
    options = check_options(nameserver, ca_file, port_map, timeout, deadline)
    result = run_check(domain, options)
    now = result.observed_at
    with Store.open(db) as store:
        history = store.history_entries(result.domain)
        window = read_window(store, result.domain, now - timedelta(days=days + 1), now)
        if not no_save:
            from stspilot.check.history import save_check

            save_check(store, result)
    inputs = RolloutInputs(
        live=live_state_from_check(result),
        reports=window,
        history=history,
        planned_mx=tuple(new_mx) if new_mx else None,
    )
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
