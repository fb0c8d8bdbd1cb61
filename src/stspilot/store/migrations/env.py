"""Alembic environment: runs on the connection ``Store.open`` hands over, or on ``sqlalchemy.url``
from alembic.ini when a developer runs ``alembic`` by hand (e.g. ``revision --autogenerate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

# Every module that defines tables on the shared metadata, so autogenerate sees them all.
import stspilot.store.accounts
import stspilot.store.hosting
import stspilot.store.intake
import stspilot.store.journal
import stspilot.store.monitor  # noqa: F401
from stspilot.store.schema import metadata
from stspilot.store.url import make_engine, resolve_url

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(resolve_url(config.get_main_option("sqlalchemy.url")))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
