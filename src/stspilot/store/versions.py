"""The store's schema version: the newest migration read from the files, and bringing a
database to it (Alembic, imported only when there is something to do).

A database already at the newest migration is recognised without Alembic, whose import and
script scan cost ~0.3 s of CPU (more than ingesting 2,000 reports): the heads read from the
migration files' assignments against the ``alembic_version`` table.
"""

from __future__ import annotations

import ast
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from stspilot.errors import StoreError
from stspilot.store.url import safe_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")

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
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    if at_head(engine):
        return
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
