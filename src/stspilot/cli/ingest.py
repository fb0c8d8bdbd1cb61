"""``stspilot ingest``: files, folders and mailboxes, or an IMAP folder, into the store."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stspilot.cli import UsageError
from stspilot.cli.options import DB, DKIM_NAMESERVER, DKIM_TIMEOUT, dkim_settings, json_mode
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.ingest.dkim import DkimSettings
    from stspilot.ingest.imap import PollResult
    from stspilot.ingest.pipeline import Tally
    from stspilot.store import Store

HELP = """Store TLS-RPT reports from files, folders, mbox files and Maildirs.

PATH may be a .json, .json.gz or .gz report, an .eml mail, an mbox file or a folder (Maildir
or any tree of those). Anything that cannot be read as a report is kept in the quarantine with
its reason (see `stspilot reports`), never dropped. Running it again is safe: reports already
stored count as duplicates.

`stspilot ingest imap --config FILE` polls an IMAP folder instead (once, or with --watch);
the password comes from $STSPILOT_IMAP_PASSWORD or the config's password_file.

With --verify-dkim each mail's DKIM signature is checked (RFC 8460 §3) against its key in
DNS (--nameserver, else the system resolver): the result is stored on the report, and a
signature that does not verify is recorded as a deviation, never refused. Off by default:
it needs DNS and makes bulk ingest slower.
"""


def _tally_dict(tally: Tally) -> dict[str, int]:
    return {
        "new": tally.new,
        "duplicate": tally.duplicate,
        "quarantined": tally.quarantined,
        "errors": tally.errors,
    }


def _tally_line(tally: Tally) -> str:
    return f"{tally.new} new, {tally.duplicate} duplicate, {tally.quarantined} quarantined" + (
        f", {tally.errors} unreadable" if tally.errors else ""
    )


def _exit_code(tally: Tally) -> int:
    # 1 (warnings) when something needs a look: quarantined units or unreadable sources.
    return 1 if (tally.quarantined or tally.errors) else 0


def ingest_command(
    paths: list[str] = typer.Argument(
        ..., metavar="PATH...", help="files or folders, - for standard input, or 'imap'"
    ),
    db: str | None = DB,
    as_json: bool = typer.Option(False, "--json", help="print the tally as one JSON document"),
    as_jsonl: bool = typer.Option(
        False, "--jsonl", help="IMAP --watch: print each poll's tally as a JSON line"
    ),
    batch_size: int = typer.Option(2000, "--batch-size", min=1, help="units per transaction"),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="processes that read and parse while this one stores (0: one per CPU, up to 4, "
        "for inputs of more than 250 files; 1: all in this process)",
    ),
    config: Path | None = typer.Option(None, "--config", help="IMAP: TOML file with [imap]"),
    watch: bool = typer.Option(False, "--watch", help="IMAP: keep polling until SIGTERM"),
    interval: float = typer.Option(60.0, "--interval", min=1.0, help="IMAP: seconds between"),
    verify_dkim: bool = typer.Option(
        False, "--verify-dkim", help="verify each mail's DKIM signature (needs DNS)"
    ),
    nameserver: str | None = DKIM_NAMESERVER,
    dkim_timeout: float = DKIM_TIMEOUT,
) -> None:
    from stspilot.store import Store

    dkim = dkim_settings(verify_dkim, nameserver, dkim_timeout)

    mode = json_mode(as_json, as_jsonl)
    imap_mode = paths[0] == "imap"
    if not imap_mode and (config is not None or watch):
        raise UsageError("--config and --watch are for `stspilot ingest imap`")
    if imap_mode and len(paths) > 1:
        raise UsageError("`stspilot ingest imap` takes no paths (use ./imap for a file)")
    if mode == "json" and watch:
        raise UsageError("--watch prints a tally per poll: use --jsonl")
    if "-" in paths and len(paths) > 1:
        raise UsageError("- (standard input) is the only PATH when given")
    with Store.open(db) as store:
        if imap_mode:
            code = _run_imap(store, config, watch=watch, interval=interval, mode=mode, dkim=dkim)
        elif paths == ["-"]:
            code = _run_stdin(store, as_json=mode is not None, dkim=dkim)
        else:
            code = _run_paths(
                store, paths, batch_size, workers, as_json=mode is not None, dkim=dkim
            )
    raise typer.Exit(code)


def _run_paths(
    store: Store,
    paths: list[str],
    batch_size: int,
    workers: int,
    *,
    as_json: bool,
    dkim: DkimSettings | None,
) -> int:
    from stspilot.ingest.bulk import ingest_paths

    resolved = [Path(p) for p in paths]
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(missing)}")
    if as_json or not sys.stderr.isatty():
        # No progress to draw (JSON, or stderr is a file or pipe: cron, scripts, benchmarks),
        # so rich is not loaded: ~0.1 s of CPU, a tenth of a 10,000-file run's start-up.
        def say_error(path: Path, exc: OSError) -> None:
            print(f"stspilot: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)

        tally = ingest_paths(
            store, resolved, batch_size=batch_size, workers=workers, on_error=say_error, dkim=dkim
        )
    else:
        tally = _with_progress(store, resolved, batch_size, workers, dkim)
    if as_json:
        typer.echo(json.dumps(_tally_dict(tally)))
    else:
        typer.echo(_tally_line(tally))
    return _exit_code(tally)


def _with_progress(
    store: Store, paths: list[Path], batch_size: int, workers: int, dkim: DkimSettings | None
) -> Tally:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from stspilot.ingest.bulk import ingest_paths

    console = Console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.completed} inputs"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task("", total=None)

        def on_progress(tally: Tally, done: int) -> None:
            progress.update(task, completed=done, description=_tally_line(tally))

        def on_error(path: Path, exc: OSError) -> None:
            console.print(f"stspilot: cannot read {path}: {exc.strerror or exc}", markup=False)

        return ingest_paths(
            store,
            paths,
            batch_size=batch_size,
            workers=workers,
            on_progress=on_progress,
            on_error=on_error,
            dkim=dkim,
        )


def _run_stdin(store: Store, *, as_json: bool, dkim: DkimSettings | None) -> int:
    """One report file or one mail on standard input (a mail filter's pipe, ``zcat |``); an
    mbox is spooled to a temporary file and read as one."""
    import tempfile
    from datetime import UTC, datetime

    from stspilot.ingest.decode import is_mbox
    from stspilot.ingest.pipeline import Tally, ingest_raw
    from stspilot.tlsrpt.schema import DEFAULT_LIMITS

    cap = DEFAULT_LIMITS.max_input_bytes + 1
    head = sys.stdin.buffer.read(cap)
    if is_mbox(head):
        with tempfile.TemporaryDirectory(prefix="stspilot-") as folder:
            spool = Path(folder) / "stdin.mbox"
            with spool.open("wb") as out:
                out.write(head)
                while chunk := sys.stdin.buffer.read(1 << 20):
                    out.write(chunk)
            return _run_paths(store, [str(spool)], 2000, 1, as_json=as_json, dkim=dkim)
    verifier = None
    if dkim is not None:
        from stspilot.ingest.dkim import DkimVerifier

        verifier = DkimVerifier(dkim)
    # A larger input is cut just past the limit, as a file is, and quarantined for its size.
    outcome = ingest_raw(store, head, origin="stdin", received_at=datetime.now(UTC), dkim=verifier)
    tally = Tally.of([outcome])
    typer.echo(json.dumps(_tally_dict(tally)) if as_json else _tally_line(tally))
    return _exit_code(tally)


def _run_imap(
    store: Store,
    config_path: Path | None,
    *,
    watch: bool,
    interval: float,
    mode: str | None,
    dkim: DkimSettings | None,
) -> int:
    from stspilot.ingest.imap import ImapError, load_imap_config, poll_once
    from stspilot.ingest.imap import watch as watch_folder

    config = load_imap_config(config_path)
    verifier = None
    if dkim is not None:
        from stspilot.ingest.dkim import DkimVerifier

        verifier = DkimVerifier(dkim)  # one key cache for every poll

    def show(result: PollResult | ImapError) -> None:
        if isinstance(result, ImapError):
            typer.echo(f"stspilot: {result}", err=True)
            return
        if mode:
            document = {**_tally_dict(result.tally), "moved": result.moved}
            typer.echo(json.dumps({**document, "flagged": result.flagged}))
        else:
            typer.echo(
                f"{_tally_line(result.tally)} ({result.moved} moved, {result.flagged} flagged)"
            )
        sys.stdout.flush()

    if not watch:
        result = poll_once(store, config, dkim=verifier)
        show(result)
        return _exit_code(result.tally)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watch_folder(store, config, interval=interval, stop=stop, on_poll=show, dkim=verifier)
    return 0


def register(app: typer.Typer) -> None:
    app.command("ingest", help=HELP)(ingest_command)
