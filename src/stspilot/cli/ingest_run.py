"""What ``stspilot ingest PATH...`` does once its options are parsed, and a fast path that
parses them.

No Typer here: ``main`` sends ``stspilot ingest ...`` to ``fast_ingest``, which parses the
usual command lines (paths, ``--db``, ``--json``, ``--batch-size``, ``--workers``) with
argparse and hands anything else (``--help``, ``imap``, ``-``, DKIM options, a mistake, an
out-of-range value) back to the Typer command in ``cli/ingest.py``, the one definition of the
command's help and errors. Typer and the pydantic it loads cost ~0.1-0.15 s of CPU a process
(``python -c "import stspilot.cli.app"``, load ~8), a tenth of a 10,000-file run's start-up
and storing. A test keeps the two parsers' options the same.

The store is opened after the worker processes have their first tasks
(``ingest.bulk.ingest_paths_opening``), and a SQLite store at the newest schema, or a new one
(made so from one script, ``store.versions.create_sqlite_head``), is written through
``sqlite3`` alone (``store.batch.open_sqlite_writer``): such a run never imports SQLAlchemy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.ingest.bulk import BulkStore
    from stspilot.ingest.dkim import DkimSettings
    from stspilot.ingest.pipeline import Tally

# dest, flags, type (None: a flag), default, minimum: as ``cli/ingest.py`` declares them.
FAST_OPTIONS: tuple[tuple[str, tuple[str, ...], type | None, Any, int | None], ...] = (
    ("db", ("--db",), str, None, None),
    ("as_json", ("--json",), None, False, None),
    ("batch_size", ("--batch-size",), int, 2000, 1),
    ("workers", ("--workers",), int, 0, 0),
)


def tally_dict(tally: Tally) -> dict[str, int]:
    return {
        "new": tally.new,
        "duplicate": tally.duplicate,
        "quarantined": tally.quarantined,
        "errors": tally.errors,
    }


def tally_line(tally: Tally) -> str:
    return f"{tally.new} new, {tally.duplicate} duplicate, {tally.quarantined} quarantined" + (
        f", {tally.errors} unreadable" if tally.errors else ""
    )


def exit_code(tally: Tally) -> int:
    # 1 (warnings) when something needs a look: quarantined units or unreadable sources.
    return 1 if (tally.quarantined or tally.errors) else 0


class _NotFast(Exception):
    """The command line is not one the fast path takes; Typer parses it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never print or exit: Typer will say it better
        raise _NotFast(message)


class _Formatter(argparse.HelpFormatter):
    """Never prints (the fast path has no help); a fixed width spares asking the terminal's."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=80)


def fast_ingest(args: list[str]) -> int | None:
    """Run ``stspilot ingest ARGS`` without Typer; None when Typer should parse ARGS."""
    if any(a in ("-h", "--help") or a.startswith("--help=") for a in args):
        return None
    parser = _Parser(
        prog="stspilot ingest", add_help=False, allow_abbrev=False, formatter_class=_Formatter
    )
    parser.add_argument("paths", nargs="+")
    for dest, flags, kind, default, _ in FAST_OPTIONS:
        if kind is None:
            parser.add_argument(*flags, dest=dest, action="store_true")
        else:
            parser.add_argument(*flags, dest=dest, type=kind, default=default)
    try:
        parsed = vars(parser.parse_intermixed_args(args))
    except _NotFast:
        return None
    paths: list[str] = parsed.pop("paths")
    if paths[0] == "imap" or "-" in paths:
        return None  # the IMAP poller, standard input: cli/ingest.py
    for dest, _, _, _, least in FAST_OPTIONS:
        if least is not None and parsed[dest] < least:
            return None  # out of range: Typer's message names the bound
    return run_paths(paths=paths, dkim=None, **parsed)


def run_paths(
    *,
    db: str | None,
    paths: list[str],
    batch_size: int,
    workers: int,
    as_json: bool,
    dkim: DkimSettings | None,
    store: BulkStore | None = None,
) -> int:
    """Ingest ``paths`` into ``store``, else into the store at ``db`` (opened once the
    workers have work, closed here); print the tally; the exit code."""
    from stspilot.ingest.bulk import ingest_paths_opening
    from stspilot.store.batch import url_dialect

    resolved = [Path(p) for p in paths]
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise ConfigError(f"no such file or folder: {', '.join(missing)}")
    opened: list[Any] = []

    def open_store() -> BulkStore:
        if store is not None:
            return store
        from stspilot.store.batch import open_sqlite_writer

        found: Any = open_sqlite_writer(db)
        if found is None:  # PostgreSQL, an older store: Store migrates it
            from stspilot.store import Store

            found = Store.open(db)
        opened.append(found)
        return found  # type: ignore[no-any-return]

    dialect = store.dialect if store is not None else url_dialect(db)
    try:
        if as_json or not sys.stderr.isatty():
            # No progress to draw (JSON, or stderr is a file or pipe: cron, scripts,
            # benchmarks), so rich is not loaded: ~0.1 s of CPU.
            def say_error(path: Path, exc: OSError) -> None:
                print(f"stspilot: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)

            tally = ingest_paths_opening(
                open_store,
                dialect,
                resolved,
                batch_size=batch_size,
                workers=workers,
                on_error=say_error,
                dkim=dkim,
            )
        else:
            tally = _with_progress(open_store, dialect, resolved, batch_size, workers, dkim)
    finally:
        for done in opened:
            done.close()
    print(json.dumps(tally_dict(tally)) if as_json else tally_line(tally))
    return exit_code(tally)


def _with_progress(
    open_store: Any,
    dialect: str,
    paths: list[Path],
    batch_size: int,
    workers: int,
    dkim: DkimSettings | None,
) -> Tally:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from stspilot.ingest.bulk import ingest_paths_opening

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
            progress.update(task, completed=done, description=tally_line(tally))

        def on_error(path: Path, exc: OSError) -> None:
            console.print(f"stspilot: cannot read {path}: {exc.strerror or exc}", markup=False)

        return ingest_paths_opening(
            open_store,
            dialect,
            paths,
            batch_size=batch_size,
            workers=workers,
            on_progress=on_progress,
            on_error=on_error,
            dkim=dkim,
        )
