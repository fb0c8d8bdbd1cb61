"""``stspilot reports``: summaries, lists and the quarantine of stored TLS-RPT reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from stspilot.cli.options import DB, JSON, JSONL, domain_argument, json_mode, write_json
from stspilot.errors import StoreError

if TYPE_CHECKING:
    from stspilot.store import QuarantineItem, Store

reports_app = typer.Typer(
    name="reports",
    help="Read stored TLS-RPT reports: summary, list, quarantine, retry.",
    no_args_is_help=True,
)

WIDE = 120  # columns from which the quarantine is drawn as a table


def _window(days: int, now: datetime) -> tuple[date, date]:
    """The last ``days`` UTC days up to and including today, as [since, until)."""
    today = now.astimezone(UTC).date()
    return today - timedelta(days=days - 1), today + timedelta(days=1)


@reports_app.command("summary")
def summary_command(
    domain: str | None = domain_argument("policy domain (default: all domains)", None),
    days: int = typer.Option(14, "--days", min=1, max=3660, help="how many UTC days back"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    as_csv: bool = typer.Option(False, "--csv", help="print the summary as one CSV table"),
    db: str | None = DB,
) -> None:
    """Summarise the stored reports of the last --days days, for one domain or all.

    Sessions, success and failure rates per day; failures by result type (cause and fix),
    by receiving MX and by sender; and what mode: enforce would have refused."""
    from stspilot.store import Store
    from stspilot.tlsrpt.export import summary_to_csv, summary_to_json
    from stspilot.tlsrpt.summary import summarize

    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv")
    since, until = _window(days, datetime.now(UTC))
    name = domain
    with Store.open(db, reader=True) as store:
        summary = summarize(store.report_aggregates(name, since=since, until=until))
    if as_json:
        typer.echo(json.dumps(summary_to_json(summary), indent=2))
    elif as_csv:
        sys.stdout.write(summary_to_csv(summary))
    else:
        from stspilot.cli.report_summary import render_summary

        render_summary(summary)


@reports_app.command("list")
def list_command(
    domain: str | None = domain_argument("policy domain (default: all)", None),
    days: int | None = typer.Option(None, "--days", min=1, help="only the last N UTC days"),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JSON,
    as_jsonl: bool = JSONL,
    db: str | None = DB,
) -> None:
    """Stored reports, newest day first."""
    from stspilot.store import Store

    mode = json_mode(as_json, as_jsonl)

    since, until = _window(days, datetime.now(UTC)) if days else (None, None)
    name = domain
    with Store.open(db, reader=True) as store:
        rows = store.list_reports(name, since=since, until=until, limit=limit, offset=offset)
    if mode:
        write_json(
            (
                {
                    "pk": r.pk,
                    "organization_name": r.organization_name,
                    "report_id": r.report_id,
                    "start": r.start.isoformat(),
                    "end": r.end.isoformat(),
                    "policy_domains": list(r.policy_domains),
                    "successful": r.successful_sessions,
                    "failed": r.failed_sessions,
                    "origin": r.origin,
                    "received_at": r.received_at.isoformat(),
                }
                for r in rows
            ),
            mode,
        )
        return
    from rich.console import Console
    from rich.table import Table

    if not rows:
        typer.echo("no reports stored" + (f" for {name}" if name else ""))
        return
    table = Table(title="Stored TLS-RPT reports")
    for col in ("#", "day", "organisation", "report id", "domains", "ok", "failed"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.pk),
            r.start.date().isoformat(),
            r.organization_name,
            r.report_id,
            ", ".join(r.policy_domains),
            f"{r.successful_sessions:,}",
            f"{r.failed_sessions:,}",
            style="red" if r.failed_sessions else None,
        )
    Console(highlight=False).print(table)


def _item_dict(q: QuarantineItem) -> dict[str, Any]:
    return {
        "id": q.id,
        "sha256": q.sha256,
        "size": q.size,
        "origin": q.origin,
        "code": q.code,
        "reason": q.reason,
        "received_at": q.received_at.isoformat(),
        "resolved": q.resolved,
        "resolved_at": q.resolved_at.isoformat() if q.resolved_at else None,
        "resolved_report_pk": q.resolved_report_pk,
        "note": q.note,
    }


@reports_app.command("quarantine")
def quarantine_command(
    show_all: bool = typer.Option(False, "--all", help="include resolved entries"),
    show: int | None = typer.Option(None, "--show", metavar="ID", help="one entry in detail"),
    raw: bool = typer.Option(False, "--raw", help="with --show: write the raw bytes to stdout"),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    db: str | None = DB,
) -> None:
    """Inputs that could not be read as reports, with their origin and reason."""
    from stspilot.store import Store

    if raw and show is None:
        raise typer.BadParameter("--raw needs --show ID")
    with Store.open(db, reader=True) as store:
        if show is not None:
            _show_quarantine(store, show, raw=raw, as_json=as_json)
            return
        items = store.list_quarantine(include_resolved=show_all, limit=limit)
    if as_json:
        typer.echo(json.dumps([_item_dict(q) for q in items], indent=2))
        return
    if not items:
        typer.echo("the quarantine is empty" if show_all else "nothing in quarantine")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if console.width < WIDE:
        # Narrow (or not a terminal, where rich assumes 80 columns): a block per entry, so
        # codes and paths stay whole instead of folding into a 7-column table.
        from rich.markup import escape

        for q in items:
            state = f"resolved: {q.note}" if q.resolved else "waiting"
            console.print(
                f"[bold]#{q.id}[/]  {q.received_at:%Y-%m-%d %H:%M}  {q.size:,} bytes  "
                f"[bold]{escape(q.code)}[/]  {escape(state)}",
                soft_wrap=True,
            )
            console.print(f"    {escape(q.origin)}", soft_wrap=True)
            console.print(f"    {escape(q.reason)}", soft_wrap=True)
    else:
        table = Table(title="Quarantine")
        # Codes, dates and sizes stay whole (they are what one searches for); the origin
        # path and the reason take the width that is left.
        for col in ("id", "received", "size", "code"):
            table.add_column(col, no_wrap=True, justify="right" if col == "size" else "left")
        table.add_column("origin", overflow="fold", ratio=1)
        table.add_column("reason", ratio=2)
        table.add_column("state", overflow="fold")
        for q in items:
            state = f"resolved: {q.note}" if q.resolved else "waiting"
            table.add_row(
                str(q.id),
                q.received_at.strftime("%Y-%m-%d %H:%M"),
                f"{q.size:,}",
                q.code,
                q.origin,
                q.reason,
                state,
            )
        console.print(table)
    typer.echo("Fix the cause, then run `stspilot reports retry` to read them again.")


def _show_quarantine(store: Store, id: int, *, raw: bool, as_json: bool) -> None:
    item = store.get_quarantine(id)
    if item is None:
        raise StoreError(f"no quarantine entry {id}")
    data = store.quarantine_raw(id)
    if raw:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if as_json:
        typer.echo(json.dumps(_item_dict(item), indent=2))
        return
    for key, value in _item_dict(item).items():
        typer.echo(f"{key}: {value}")
    preview = data[:2048]
    if preview[:2] == b"\x1f\x8b":
        typer.echo("raw: gzip data (use --raw > file.gz to save it)")
    else:
        text = preview.decode("utf-8", "replace")
        typer.echo("raw (first 2 KiB):" if len(data) > 2048 else "raw:")
        typer.echo(text)


@reports_app.command("retry")
def retry_command(
    ids: list[int] | None = typer.Argument(None, metavar="[ID...]", help="default: all waiting"),
    as_json: bool = JSON,
    as_jsonl: bool = JSONL,
    db: str | None = DB,
) -> None:
    """Read quarantined inputs again with the current parser; store what now parses."""
    from stspilot.store import Store

    mode = json_mode(as_json, as_jsonl)
    with Store.open(db) as store:
        if ids:
            items = [store.get_quarantine(i) for i in ids]
            missing = [str(i) for i, q in zip(ids, items, strict=True) if q is None]
            if missing:
                raise StoreError(f"no quarantine entry {', '.join(missing)}")
        else:
            items = list(store.list_quarantine(limit=100_000))
        outcomes: list[dict[str, Any]] | None = [] if mode == "json" else None
        still = 0
        for outcome in _retry(store, [q for q in items if q is not None]):
            still += outcome["still_failing"]
            if outcomes is not None:
                outcomes.append(outcome)
            elif mode == "jsonl":
                write_json([outcome], "jsonl")
            else:
                typer.echo(f"#{outcome['id']}: {outcome['message']}")
    if outcomes is not None:
        write_json(outcomes, "json")
    raise typer.Exit(1 if still else 0)


def _retry(store: Store, items: list[QuarantineItem]) -> Iterator[dict[str, Any]]:
    """Each entry read again: its id, whether it is now resolved, and what happened."""
    from stspilot.ingest.pipeline import prepare_unit
    from stspilot.tlsrpt.schema import DEFAULT_LIMITS

    for item in items:
        if item.resolved:
            yield _outcome(item.id, "already resolved")
            continue
        if item.truncated:  # only a prefix is kept: the whole input must come again
            message = f"cannot retry: only the first {item.kept} of {item.size} bytes are kept"
            yield _outcome(item.id, message, still_failing=True)
            continue
        prepared = prepare_unit(
            store.quarantine_raw(item.id),
            origin=item.origin,
            received_at=item.received_at,
            limits=DEFAULT_LIMITS,
        )
        # dedup_raw=False: other reports of this very unit may be stored already
        # (a partly readable mail); the (organisation, report-id) key still dedupes.
        added = store.add_reports(prepared.reports, dedup_raw=False)
        new = sum(a.status == "new" for a in added)
        counts = f"{new} new, {len(added) - new} duplicate"
        if prepared.quarantine is None:
            note = f"retried: {counts}"
            store.resolve_quarantine(
                item.id, report_pk=added[0].report_pk if added else None, note=note
            )
            yield _outcome(item.id, note, resolved=True)
        else:
            q = prepared.quarantine
            store.update_quarantine_reason(item.id, code=q.code, reason=q.reason)
            message = f"still failing ({counts}): {q.code}: {q.reason}"
            yield _outcome(item.id, message, still_failing=True)


def _outcome(
    id: int, message: str, *, resolved: bool = False, still_failing: bool = False
) -> dict[str, Any]:
    return {"id": id, "resolved": resolved, "still_failing": still_failing, "message": message}


def register(app: typer.Typer) -> None:
    app.add_typer(reports_app, name="reports")
