"""Where the database is: ``--db`` beats ``STSPILOT_DATABASE_URL`` beats a SQLite file in the
user's data directory; and the engine settings each backend needs (WAL and pragmas for SQLite)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stspilot.errors import ConfigError, StoreError
from stspilot.store.rows import json_dumps, no_nul

if TYPE_CHECKING:
    from sqlalchemy import Engine

# SQLAlchemy is imported where it is used: bulk ingest into an up-to-date SQLite store
# (``store/batch.py`` ``open_sqlite_writer``) resolves a path and sets the pragmas below
# without it (~0.33 s of CPU a process).

ENV_VAR = "STSPILOT_DATABASE_URL"


def default_sqlite_path() -> Path:
    """``<user data dir>/stspilot.sqlite3`` (platformdirs), created on first use."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("stspilot")) / "stspilot.sqlite3"


def resolve_url(
    url: str | None = None, *, env: Mapping[str, str] | None = None, create_folder: bool = True
) -> str:
    """The database URL to use: the explicit one, else the environment variable, else SQLite.

    A bare path (no ``://``) is taken as a SQLite file, so ``--db ./reports.db`` works.
    """
    environ = os.environ if env is None else env
    chosen = url or environ.get(ENV_VAR) or ""
    if not chosen:
        path = default_sqlite_path()
        if create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in chosen:
        return f"sqlite:///{Path(chosen).expanduser().resolve()}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

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


def safe_url(url: str | Any) -> str:
    """The store's URL for people: the password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: another backend, or an in-memory database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


# What the drivers say (lower case) -> what it means for the person at the keyboard.
_CAUSES = (
    ("readonly database", "it is read-only (no write permission on the file or its folder)"),
    ("read-only transaction", "it is read-only (a standby, or default_transaction_read_only)"),
    ("database is locked", "another process holds its write lock (timed out waiting)"),
    ("file is not a database", "the file is not a SQLite database"),
    ("connection refused", "connection refused (is the server running there?)"),
    ("password authentication failed", "authentication failed (user or password)"),
    ("authentication failed", "authentication failed (user or password)"),
    ("no password supplied", "authentication failed (no password given)"),
    ("could not translate host name", "the host name does not resolve"),
    ("name or service not known", "the host name does not resolve"),
    ("timeout expired", "the connection timed out"),
    ("no such table", "it has no stspilot tables (not a stspilot store?)"),
)


def describe_db_error(exc: BaseException, url: str | None = None) -> str:
    """One line saying why the database said no, without the driver's stack of text."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    low = text.lower()
    for needle, cause in _CAUSES:
        if needle in low:
            return cause
    if "unable to open database file" in low and url is not None:
        path = sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            return f"its folder {path.parent} does not exist"
        if path is not None and not os.access(path.parent, os.W_OK):
            return f"it is read-only (its folder {path.parent} is not writable)"
        return "the file cannot be opened"
    match = re.search(r'(database|role) "([^"]+)" does not exist', text)
    if match and match[1] == "role":
        return f"authentication failed (no role {match[2]!r})"
    if match:
        return f"the database {match[2]!r} does not exist"
    first = text.splitlines()[0] if text else type(orig).__name__
    return first[:200]


def store_error(doing: str, url: str | Any, exc: BaseException) -> StoreError:
    """``StoreError("cannot read the store <url>: <cause>")``, one line, password hidden."""
    return StoreError(
        f"cannot {doing} the store {safe_url(url)}: {describe_db_error(exc, str(url))}"
    )


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine with the per-backend settings; SQLite gets WAL, NORMAL sync and a busy timeout.

    ``read_only`` (SQLite): the file is opened ``mode=ro`` and nothing is written to set it up,
    so a store the process may not write can still be read.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if read_only and path is not None:
            # A folder that cannot hold the WAL index (-shm) is read as immutable, SQLite's
            # way to read a WAL database on read-only media (no one may write it meanwhile).
            shm = path.with_name(path.name + "-shm")
            can_index = os.access(path.parent, os.W_OK) or shm.exists()
            flag = "mode=ro" if can_index else "immutable=1"
            engine = create_engine(
                f"sqlite:///file:{path}?{flag}&uri=true", json_serializer=json_dumps
            )
            event.listen(engine, "connect", _sqlite_on_connect_read_only)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
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


def _sqlite_on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE) so two writers queue on the busy
    # timeout instead of failing with "database is locked" when a read lock cannot be upgraded.
    if conn.get_execution_options().get("stspilot_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
