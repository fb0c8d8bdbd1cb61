"""Where the database is: ``--db`` beats ``STSPILOT_DATABASE_URL`` beats a SQLite file in the
user's data directory; and the engine settings each backend needs (WAL and pragmas for SQLite)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stspilot.errors import ConfigError

ENV_VAR = "STSPILOT_DATABASE_URL"


def default_sqlite_path() -> Path:
    """``<user data dir>/stspilot.sqlite3`` (platformdirs), created on first use."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("stspilot")) / "stspilot.sqlite3"


def resolve_url(url: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The database URL to use: the explicit one, else the environment variable, else SQLite.

    A bare path (no ``://``) is taken as a SQLite file, so ``--db ./reports.db`` works.
    """
    environ = os.environ if env is None else env
    chosen = url or environ.get(ENV_VAR) or ""
    if not chosen:
        path = default_sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in chosen:
        return f"sqlite:///{Path(chosen).expanduser().resolve()}"
    try:
        parsed = make_url(chosen)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {chosen!r}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship with; SQLAlchemy's bare default would be psycopg2.
        chosen = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return chosen


def _json_default(value: object) -> Any:
    """Envelope and result values that JSON does not know: dates, tuples of dataclasses, bytes."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def no_nul(value: str) -> str:
    """``value`` with NUL replaced by U+FFFD. PostgreSQL text and jsonb cannot hold NUL; JSON
    allows "\u0000" and hostile reports send it (RFC 8460 §7). Every string either engine is
    given goes through here (rows as they are built, every other statement's parameters in
    ``_no_nul_parameters``), so both store the same text and find it by the same value."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def json_dumps(value: object) -> str:
    text = json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    # PostgreSQL jsonb refuses the NUL escape; hostile input carries it (RFC 8460 §7).
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def make_engine(url: str) -> Engine:
    """An engine with the per-backend settings; SQLite gets WAL, NORMAL sync and a busy timeout."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, json_serializer=json_dumps)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        engine = create_engine(url, json_serializer=json_dumps, pool_pre_ping=True)
    event.listen(engine, "before_cursor_execute", _no_nul_parameters, retval=True)
    return engine


def _no_nul_parameters(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
) -> tuple[str, Any]:
    """String parameters without NUL (``no_nul``), on both engines: a value searched for, as
    well as one stored. Without this, a NUL in a filter was an error on PostgreSQL and a
    silent miss on SQLite. The bulk insert path writes through the driver with rows that
    ``store/rows.py`` cleaned already."""
    if executemany:
        return statement, [_clean(p) for p in parameters]
    return statement, _clean(parameters)


def _clean(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        if any(type(v) is str and "\x00" in v for v in parameters.values()):
            return {k: no_nul(v) if type(v) is str else v for k, v in parameters.items()}
        return parameters
    if isinstance(parameters, tuple | list) and any(
        type(v) is str and "\x00" in v for v in parameters
    ):
        return type(parameters)(no_nul(v) if type(v) is str else v for v in parameters)
    return parameters


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is deferred
    # and too late for the write lock); WAL lets readers (the dashboard) run during ingest, and
    # synchronous=NORMAL in WAL mode still never loses a committed transaction to a crashed
    # process (only to a power cut), which is the crash-safety contract we give.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
        # 8 KiB pages for a new database (a no-op on an existing one; must precede WAL): raw
        # units (2-6 KiB mails) fit a page without overflow chains, and index B-trees are
        # shallower; measured 15-20% less CPU per stored report (bench/store_bench.py).
        cursor.execute("PRAGMA page_size = 8192")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # Bigger page cache (64 MiB) and fewer, larger checkpoints: index pages of a big batch
        # stay in memory and the WAL is copied back once per ~64 MiB instead of every 4 MiB.
        cursor.execute("PRAGMA cache_size = -65536")
        cursor.execute("PRAGMA wal_autocheckpoint = 16384")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE) so two writers queue on the busy
    # timeout instead of failing with "database is locked" when a read lock cannot be upgraded.
    if conn.get_execution_options().get("stspilot_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
