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
from stspilot.cli.ingest_run import exit_code, run_paths, tally_dict, tally_line
from stspilot.cli.options import DB, DKIM_NAMESERVER, DKIM_TIMEOUT, dkim_settings, json_mode

if TYPE_CHECKING:
    from stspilot.ingest.dkim import DkimSettings
    from stspilot.ingest.imap import PollResult
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
    if not imap_mode and paths != ["-"]:
        # The store opens once the workers have work (``cli/ingest_run.py``).
        code = run_paths(
            db=db,
            paths=paths,
            batch_size=batch_size,
            workers=workers,
            as_json=mode is not None,
            dkim=dkim,
        )
        raise typer.Exit(code)
    from stspilot.store import Store

    with Store.open(db) as store:
        if imap_mode:
            code = _run_imap(store, config, watch=watch, interval=interval, mode=mode, dkim=dkim)
        else:
            code = _run_stdin(store, as_json=mode is not None, dkim=dkim)
    raise typer.Exit(code)


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
            return run_paths(
                db=None,
                paths=[str(spool)],
                batch_size=2000,
                workers=1,
                as_json=as_json,
                dkim=dkim,
                store=store,
            )
    verifier = None
    if dkim is not None:
        from stspilot.ingest.dkim import DkimVerifier

        verifier = DkimVerifier(dkim)
    # A larger input is cut just past the limit, as a file is, and quarantined for its size.
    outcome = ingest_raw(store, head, origin="stdin", received_at=datetime.now(UTC), dkim=verifier)
    tally = Tally.of([outcome])
    typer.echo(json.dumps(tally_dict(tally)) if as_json else tally_line(tally))
    return exit_code(tally)


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
            document = {**tally_dict(result.tally), "moved": result.moved}
            typer.echo(json.dumps({**document, "flagged": result.flagged}))
        else:
            typer.echo(
                f"{tally_line(result.tally)} ({result.moved} moved, {result.flagged} flagged)"
            )
        sys.stdout.flush()

    if not watch:
        result = poll_once(store, config, dkim=verifier)
        show(result)
        return exit_code(result.tally)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watch_folder(store, config, interval=interval, stop=stop, on_poll=show, dkim=verifier)
    return 0


def register(app: typer.Typer) -> None:
    app.command("ingest", help=HELP)(ingest_command)
