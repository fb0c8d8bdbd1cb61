"""The store's schema version: the newest migration read from the files, and bringing a
database to it (Alembic, imported only when there is something to do).

A database already at the newest migration is recognised without Alembic, whose import and
script scan cost ~0.3 s of CPU (more than ingesting 2,000 reports): the heads read from the
migration files' assignments against the ``alembic_version`` table.

A new SQLite store is not migrated either: ``create_sqlite_head`` runs ``sqlite_head.sql``,
what the migrations leave in an empty SQLite database (every ``sqlite_master`` entry's exact
SQL, in creation order, and every row, ``alembic_version`` included), generated from the
migrations by ``python -m stspilot.store.versions`` and committed. It is used only while its
heads are the migrations' (a migration added without regenerating it sends new stores
through Alembic), and ``tests/test_store_sqlite_head.py`` fails until it is regenerated: it
compares it with what Alembic makes of an empty database, entry by entry and row by row.
Alembic made a new store in ~0.25-0.35 s of CPU (SQLAlchemy and Alembic imported, eleven
migrations run); the script in a few milliseconds, with ``sqlite3`` alone.
"""

from __future__ import annotations

import ast
import re
import sqlite3
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from stspilot.errors import StoreError
from stspilot.store.url import safe_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_HEAD = Path(__file__).with_name("sqlite_head.sql")

# Alembic's migration context is process-global (``alembic.context``): one migration at a time
# per process; across processes the database lock serialises them (see ``migrate``).
_MIGRATE_LOCK = threading.Lock()
_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def migration_heads() -> set[str]:
    """The newest revision(s) of ``migrations/versions``: every ``revision`` that is no
    other's ``down_revision`` (what Alembic's ``ScriptDirectory.get_heads`` answers, read
    from the files' assignments without importing Alembic)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(path.read_text(encoding="utf-8")):
            found = ast.literal_eval(value)
            if name == "revision":
                revisions.add(str(found))
            elif isinstance(found, str):
                parents.add(found)
            elif isinstance(found, (tuple, list)):
                parents.update(str(p) for p in found)
    return revisions - parents


def schema_heads(engine: Engine) -> set[str]:
    """The migrations the database is at (empty: no stspilot schema)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def at_head(engine: Engine) -> bool:
    """Is the database at the newest migration? (Without Alembic; False for a new database.)"""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except SQLAlchemyError:  # no such table yet: a new database
        return False
    return {str(row[0]) for row in rows} == migration_heads()


def require_current(engine: Engine) -> None:
    """``StoreError`` unless the schema is the newest (for a store that cannot migrate)."""
    if schema_heads(engine) != migration_heads():
        raise StoreError(
            f"the store {safe_url(engine.url)} is read-only and its schema is older "
            "than this stspilot: run any command that writes, with write access, to upgrade it"
        )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there); an empty
    SQLite database gets it from ``sqlite_head.sql`` (``create_sqlite_head``)."""
    if at_head(engine):
        return
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            made = create_sqlite_head(conn.connection.dbapi_connection)  # type: ignore[arg-type]
        if made or at_head(engine):  # made here, or by another process meanwhile
            return
    alembic_upgrade(engine)


def alembic_upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration through Alembic (what ``sqlite_head.sql`` is
    generated from; ``migrate`` for every database but an empty SQLite one)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as conn:
        if set(MigrationContext.configure(conn).get_current_heads()) == heads:
            return
    with _MIGRATE_LOCK, engine.connect() as conn:
        conn = conn.execution_options(stspilot_write=True)
        if engine.dialect.name == "postgresql":
            # Several workers may start at once: one migrates, the others wait and then
            # find the schema current (SQLite gets the same from BEGIN IMMEDIATE).
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(8461)")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()


# -- a new SQLite store from one script -------------------------------------------------------

_HEADS_LINE = "-- heads: "


def read_sqlite_head(path: Path | None = None) -> tuple[set[str], list[str]]:
    """The heads ``sqlite_head.sql`` (or ``path``) was generated at, and its statements in
    order."""
    path = path or SQLITE_HEAD
    heads: set[str] = set()
    statements: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not pending and line.startswith("--"):
            if line.startswith(_HEADS_LINE):
                heads = set(line.removeprefix(_HEADS_LINE).split())
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise StoreError(f"{path}: the last statement is incomplete")
    return heads, statements


def create_sqlite_head(db: sqlite3.Connection, path: Path | None = None) -> bool:
    """Create the newest schema in ``db``, an empty SQLite database in autocommit mode (the
    store's connections are: ``url._sqlite_on_connect``), from ``sqlite_head.sql`` in one
    transaction: a killed process leaves an empty database, made again next time. False, with
    nothing written, when the script is not at the migrations' heads (Alembic makes the store)
    or the database is not empty (made meanwhile by another process: BEGIN IMMEDIATE waits
    for its transaction, then finds its tables)."""
    heads, statements = read_sqlite_head(path)
    if heads != migration_heads():
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
            db.execute("ROLLBACK")
            return False
        for statement in statements:
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return True


def sqlite_dump(db: sqlite3.Connection) -> str:
    """The script that makes an empty SQLite database hold what ``db`` holds: each
    ``sqlite_master`` entry's SQL in creation order (SQLite's own ``sqlite_*`` tables and the
    indexes it makes for constraints, which have no SQL, come back by themselves), then each
    table's rows."""
    entries = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
    ).fetchall()
    out = [f"{sql};\n" for _type, name, sql in entries if not name.startswith("sqlite_")]
    for kind, name, _sql in entries:
        if kind != "table":
            continue
        if name.startswith("sqlite_"):
            if db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]:
                raise StoreError(f"{name} has rows: the script cannot make them")
            continue
        for row in db.execute(f'SELECT * FROM "{name}"'):
            out.append(f'INSERT INTO "{name}" VALUES({",".join(map(_literal, row))});\n')
    return "".join(out)


def _literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value.hex()}'"
    return "'" + str(value).replace("'", "''") + "'"


def sqlite_head_text(heads: set[str], dump: str) -> str:
    """``sqlite_head.sql``'s text: a header naming the heads, then the dump."""
    return (
        "-- The newest schema of a new SQLite store: what the migrations leave in an empty\n"
        "-- database (store/versions.py create_sqlite_head). Generated, do not edit:\n"
        "--     .venv/bin/python -m stspilot.store.versions\n"
        f"{_HEADS_LINE}{' '.join(sorted(heads))}\n"
        f"{dump}"
    )


def generate_sqlite_head(work: Path) -> str:
    """``sqlite_head.sql``'s text as it should be: an empty SQLite database at ``work``
    migrated through Alembic, dumped."""
    from stspilot.store.url import make_engine

    engine = make_engine(f"sqlite:///{work}")
    try:
        alembic_upgrade(engine)
    finally:
        engine.dispose()
    db = sqlite3.connect(work)
    try:
        return sqlite_head_text(migration_heads(), sqlite_dump(db))
    finally:
        db.close()


def main() -> None:
    """Write ``sqlite_head.sql`` from the migrations (run after adding one)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        text = generate_sqlite_head(Path(tmp) / "head.sqlite3")
    SQLITE_HEAD.write_text(text, encoding="utf-8")
    print(f"wrote {SQLITE_HEAD} at {' '.join(sorted(migration_heads()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
