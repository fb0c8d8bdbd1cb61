"""How a publish plan and the journal look in the terminal and as JSON (``publish status``).

Presentation only: a plan or journal run in, text on a rich ``Console`` or a JSON-ready dict out.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from stspilot.publish.plan import PublishPlan, Step
from stspilot.store.journal import JournalRun

if TYPE_CHECKING:
    from rich.console import Console


def render_plan(plan: PublishPlan, console: Console, *, title: str = "") -> None:
    console.print(f"[bold]{title or plan.action}[/bold] for {plan.domain}:")
    for i, step in enumerate(plan.steps, 1):
        console.print(f"  {i}. {step.title}")
        if step.note:
            console.print(f"     [dim]{step.note}[/dim]")
    for note in plan.notes:
        console.print(f"  {note}")


def render_runs(runs: list[JournalRun], console: Console) -> None:
    if not runs:
        console.print("no publish runs in the journal")
        return
    for run in runs:
        when = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        console.print(
            f"[bold]run {run.id}[/bold] {run.action} {run.state} · {when} UTC by {run.actor} · "
            f"dns {run.dns} · policy {run.destination}"
        )
        if run.reason:
            console.print(f"  reason: {run.reason}")
        for s in run.steps:
            at = s.verified_at or s.done_at or s.intended_at
            stamp = f"{at:%H:%M:%S}" if at else "--------"
            console.print(f"  {s.seq + 1}. [{s.state:>8}] {stamp} {Step.from_dict(s.target).title}")
            if s.error:
                console.print(f"     [red]{s.error}[/red]")
        if run.error and run.state != "done":
            console.print(f"  [yellow]{run.error}[/yellow]")


def run_to_json(run: JournalRun) -> dict[str, Any]:
    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": run.id,
        "domain": run.domain,
        "action": run.action,
        "actor": run.actor,
        "reason": run.reason,
        "dns": run.dns,
        "destination": run.destination,
        "state": run.state,
        "error": run.error,
        "created_at": stamp(run.created_at),
        "updated_at": stamp(run.updated_at),
        "steps": [
            {
                "seq": s.seq,
                "kind": s.kind,
                "target": dict(s.target),
                "state": s.state,
                "outcome": dict(s.outcome) if s.outcome else None,
                "error": s.error,
                "intended_at": stamp(s.intended_at),
                "done_at": stamp(s.done_at),
                "verified_at": stamp(s.verified_at),
            }
            for s in run.steps
        ],
    }
