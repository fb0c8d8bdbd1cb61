"""What opening a SQLite store loads: never PostgreSQL's dialect nor its driver (they cost
~0.2 s of CPU on every command; they load when a PostgreSQL URL is opened)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from stspilot.lab.sample_reports import write_corpus

# Runs the real command line in a fresh interpreter and prints, as it exits, the modules
# of interest that were imported.
CHILD = r"""
import atexit, os, sys
WATCH = tuple(os.environ["WATCH"].split(","))
def report():
    seen = sorted(m for m in sys.modules if m.startswith(WATCH))
    print("LOADED", seen, file=sys.stderr)
atexit.register(report)
from stspilot.cli import main
main(sys.argv[1:])  # argv given: the interpreter exits as usual, running the report above
"""


POSTGRESQL = "sqlalchemy.dialects.postgresql,psycopg,alembic"


def _ingest(db: Path, folder: Path, watch: str = POSTGRESQL) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, "ingest", "--db", f"sqlite:///{db}", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WATCH": watch},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("LOADED "))
    loaded = ast.literal_eval(line.removeprefix("LOADED "))
    assert isinstance(loaded, list)
    return [str(m) for m in loaded]


def test_ingest_into_an_existing_sqlite_store_loads_nothing_of_postgresql(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    write_corpus(folder, 3, seed=5, formats=("json.gz", "eml"))
    db = tmp_path / "s.sqlite"
    assert _ingest(db, folder) == []  # a new store, made without Alembic or SQLAlchemy
    second = folder.with_name("more")
    write_corpus(second, 2, seed=6, formats=("json",))
    loaded = _ingest(db, second)  # an existing store at the newest schema: stores and reads
    assert loaded == [], loaded


def test_bulk_ingest_into_an_up_to_date_sqlite_store_loads_neither_typer_nor_sqlalchemy(
    tmp_path: Path,
) -> None:
    """``stspilot ingest PATH...`` parses its options with argparse (``cli/ingest_run.py``)
    and writes a new store (made from ``store/sqlite_head.sql``) and an existing one at the
    newest schema through sqlite3 alone."""
    folder = tmp_path / "in"
    write_corpus(folder, 3, seed=5, formats=("json.gz", "eml"))
    db = tmp_path / "s.sqlite"
    watch = "typer,click,pydantic,rich,sqlalchemy,alembic"
    assert _ingest(db, folder, watch) == []  # a new store
    second = folder.with_name("more")
    write_corpus(second, 2, seed=6, formats=("json",))
    assert _ingest(db, second, watch) == []
