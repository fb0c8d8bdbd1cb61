"""Writing a batch: deduplicated reports with their policies, failure details and raw bytes,
and quarantine entries, all on the caller's connection (one transaction per batch).

Rows are built before any database work (``store/rows.py``: in the decode workers for bulk
ingest) and go in through the driver (``Writer``: ``executemany``; PostgreSQL: ``COPY``),
not SQLAlchemy per row. The unique constraints decide duplicates (``INSERT ... ON CONFLICT DO
NOTHING``), so concurrent writers and re-runs after a crash never store a report twice.

One write path per engine: ``Store`` (SQLAlchemy, every intake) and ``SqliteWriter`` (bulk
ingest into a new or up-to-date SQLite store, on ``sqlite3`` alone) both run ``Writer``'s
statements.
The tables and columns are ``store/schema.py``'s (migrations) and ``store/rows.py``'s column
lists; this module names them in SQL and imports SQLAlchemy only for type checking.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stspilot.errors import StoreError, StoreRefused
from stspilot.store.models import (
    AddResult,
    BatchResult,
    NewQuarantine,
    NewReport,
    QuarantineResult,
)
from stspilot.store.rows import (
    DETAIL_COLUMNS,
    POLICY_COLUMNS,
    REPORT_COLUMNS,
    ReportRows,
    RowBuilder,
    clip,
    no_nul,
    sha256_hex,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

# Parameters per IN (...) list: well under SQLite's 32766 host-parameter limit.
CHUNK = 500

# The sqlite3 module sends every parameter that is not exactly str, int, float or bytearray
# through its adapter registry, where a miss costs a tuple, a dict lookup and two attribute
# lookups: None (NULL) included, ~7 of a stored report's ~60 values, 8% of its insert
# instructions (callgrind). An adapter for NoneType is one dict hit, and ``{}.get`` returns
# None without running Python code: the same NULL as before, for every sqlite3 user here.
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))


def now_utc() -> datetime:
    return datetime.now(UTC)


def add_reports(
    conn: Connection, items: Sequence[NewReport], *, dedup_raw: bool
) -> list[AddResult]:
    """Store parsed reports (building their rows here); raises ``ReportError`` for an identity
    too long to store, before anything is written."""
    builder = RowBuilder(conn.dialect.name)
    return add_rows(conn, [builder.build(item) for item in items], dedup_raw=dedup_raw)


def add_rows(conn: Connection, items: Sequence[ReportRows], *, dedup_raw: bool) -> list[AddResult]:
    """``write_rows`` on a SQLAlchemy connection's driver connection (``Store``)."""
    return write_rows(Writer.of(conn), items, dedup_raw=dedup_raw)


def add_quarantine(conn: Connection, item: NewQuarantine) -> QuarantineResult:
    """``Writer.quarantine`` on a SQLAlchemy connection's driver connection (``Store``)."""
    return Writer.of(conn).quarantine(item)


def write_rows(w: Writer, items: Sequence[ReportRows], *, dedup_raw: bool) -> list[AddResult]:
    """Store pre-built reports; results line up with ``items``. A report whose identity is
    stored already, or whose raw unit is (``dedup_raw``), is a duplicate; so is a later copy
    within ``items`` (it points at the first).

    This is the storing process's share of bulk ingest, in series with everything else, so
    the rows go to ``executemany`` as the workers built them where they can (the report rows
    whole; a child row gets its report's id prepended in C, ``map`` of a tuple's ``__add__``)
    and the usual batch, all new, takes one pass."""
    known_raw = w.known_raw({item.sha256 for item in items}) if dedup_raw else {}
    # Identities are looked up first only for units whose bytes are known (re-runs): their
    # own stored report must be named, not the unit's first one. Everything else goes
    # straight to INSERT ... ON CONFLICT DO NOTHING, and only what it refuses is looked up.
    existing = (
        w.existing_keys({item.key for item in items if item.sha256 in known_raw})
        if known_raw
        else {}
    )

    results: list[AddResult | None] = [None] * len(items)
    first_in_batch: dict[tuple[str, str], int] = {}
    pending: list[int] = []  # indexes of items to insert
    for n, item in enumerate(items):
        key = item.key
        if known_raw:  # else existing is empty too
            if key in existing:
                results[n] = AddResult("duplicate", existing[key], item.sha256)
                continue
            if item.sha256 in known_raw:
                results[n] = AddResult("duplicate", known_raw[item.sha256], item.sha256)
                continue
        if key not in first_in_batch:  # else a later copy: pointed at the first below
            first_in_batch[key] = n
            pending.append(n)

    if pending:
        ids = w.insert_reports(
            [items[n].report for n in pending],
            [items[n].key for n in pending],
            w.timestamp(now_utc()),
        )
        lost = {items[n].key for n, pk in zip(pending, ids, strict=True) if pk is None}
        if lost:  # stored before: by an earlier batch, or a concurrent writer just now
            existing.update(w.existing_keys(lost))
        policies: list[tuple[Any, ...]] = []
        details: list[tuple[Any, ...]] = []
        blobs: dict[str, tuple[str, int, int, bytes]] = {}
        for n, pk in zip(pending, ids, strict=True):
            item = items[n]
            sha = item.sha256
            if pk is None:
                results[n] = AddResult("duplicate", existing[item.key], sha)
                continue
            results[n] = AddResult("new", pk, sha)
            head = (pk,)
            policies.extend(map(head.__add__, item.policies))
            details.extend(map(head.__add__, item.details))
            if sha not in blobs:
                blobs[sha] = (sha, pk, len(item.raw), item.raw)
        w.copy_or_insert("report_policies", POLICY_COLUMNS, policies)
        w.copy_or_insert("failure_details", DETAIL_COLUMNS, details)
        if blobs:
            # Raw units are content-addressed: a unit already kept (another batch) is skipped.
            w.insert_ignoring(
                "raw_blobs", ("sha256", "report_pk", "size", "raw"), list(blobs.values())
            )
    # Later copies of a report that is new in this very batch point at the first one.
    for n, item in enumerate(items):
        if results[n] is None:
            first = results[first_in_batch[item.key]]
            assert first is not None
            results[n] = AddResult("duplicate", first.report_pk, item.sha256)
    return cast(list[AddResult], results)


_QUARANTINE_COLUMNS = (
    "sha256", "size", "raw", "origin", "code", "reason", "received_at", "resolved",
)  # fmt: skip


class Writer:
    """The write path of a batch, one per engine, on the driver's connection: plain DB-API
    statements, bypassing SQLAlchemy's per-row parameter processing (which cost more than
    SQLite itself): the rows hold exactly what the column types store (``store/rows.py``).
    PostgreSQL rows go in with COPY; SQLite's with ``executemany``.

    ``Store`` (SQLAlchemy) hands it its connection's driver connection (``Writer.of``); bulk
    ingest into an up-to-date SQLite store hands it a ``sqlite3`` connection of its own
    (``SqliteWriter``): the same statements either way."""

    def __init__(self, dbapi: Any, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self.dbapi = dbapi
        self.mark = "%s" if self.pg else "?"

    @classmethod
    def of(cls, conn: Connection) -> Writer:
        return cls(conn.connection.dbapi_connection, conn.dialect.name)

    def timestamp(self, value: datetime) -> object:
        """An aware datetime as the column type stores it (``schema.UtcDateTime``): aware UTC
        on PostgreSQL; naive UTC text on SQLite, SQLAlchemy's format (``RowBuilder.ts``).
        A naive one is a ``StoreError`` (the batch rolls back), as SQLAlchemy's bind was."""
        if value.tzinfo is None:
            raise StoreError("naive datetime given to the store; pass an aware UTC datetime")
        utc = value.astimezone(UTC)
        return utc if self.pg else utc.replace(tzinfo=None).isoformat(" ", "microseconds")

    def _select_in(self, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``sql`` (ending in ``IN``) over ``values``, CHUNK at a time: one statement per
        chunk (SQLAlchemy compiling a 500-value IN cost as much as running it)."""
        out: list[tuple[Any, ...]] = []
        cur = self.dbapi.cursor()
        try:
            for i in range(0, len(values), CHUNK):
                chunk = values[i : i + CHUNK]
                cur.execute(f"{sql} ({', '.join([self.mark] * len(chunk))})", chunk)
                out += cur.fetchall()
        finally:
            cur.close()
        return out

    def known_raw(self, shas: set[str]) -> dict[str, int]:
        """The stored report of each raw unit already kept, by SHA-256."""
        rows = self._select_in(
            "SELECT sha256, report_pk FROM raw_blobs WHERE sha256 IN", sorted(shas)
        )
        return {str(sha): int(pk) for sha, pk in rows}

    def existing_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        if not keys:
            return {}
        # report_id IN (...) uses the unique index (report_id, organization_name) as a prefix;
        # the organisation is matched here (portable: no tuple IN).
        rows = self._select_in(
            "SELECT id, organization_name, report_id FROM reports WHERE report_id IN",
            sorted({rid for _org, rid in keys}),
        )
        return {(org, rid): int(pk) for pk, org, rid in rows if (org, rid) in keys}

    def insert_reports(
        self, rows: list[tuple[Any, ...]], keys: list[tuple[str, str]], stored_at: object
    ) -> list[int | None]:
        """Insert report rows (``REPORT_COLUMNS`` but ``stored_at``, the same for every row),
        skipping stored identities: the id of each row, None where its identity was stored
        already."""
        if self.pg:
            returned = self._staged_returning(
                "reports",
                REPORT_COLUMNS,
                [(*row, stored_at) for row in rows],
                "id, organization_name, report_id",
            )
            ids = {(org, rid): int(pk) for pk, org, rid in returned}
            return [ids.get(key) for key in keys]
        # SQLite: executemany (one prepared statement). A 2,000-row VALUES list with RETURNING
        # cost ~40% more: SQLite compiles a 30,000-parameter statement per batch. The
        # transaction holds the write lock (BEGIN IMMEDIATE), so every row past the largest id
        # before the insert is one of ours, and SQLite gives each new row the largest id plus
        # one (https://www.sqlite.org/autoinc.html): with no identity refused, row i got
        # before + 1 + i. Otherwise (re-runs) the new rows are read back. ``stored_at`` is a
        # literal of the statement (our own timestamp text, ``timestamp``), so the rows go in
        # as they came, without a copy of each to append it.
        assert isinstance(stored_at, str) and "'" not in stored_at
        cur = self.dbapi.cursor()
        try:
            cur.execute("SELECT coalesce(max(id), 0) FROM reports")
            (before,) = cur.fetchone()
            changes = self.dbapi.total_changes
            names = ", ".join(REPORT_COLUMNS)
            marks = ", ".join(["?"] * (len(REPORT_COLUMNS) - 1))
            cur.executemany(
                f"INSERT INTO reports ({names}) VALUES ({marks}, '{stored_at}') "
                "ON CONFLICT DO NOTHING",
                rows,
            )
            added = self.dbapi.total_changes - changes
            cur.execute("SELECT coalesce(max(id), 0) FROM reports")
            (after,) = cur.fetchone()
            if added == len(rows) and after == before + added:
                return list(range(before + 1, after + 1))
            cur.execute(
                "SELECT id, organization_name, report_id FROM reports WHERE id > ?", (before,)
            )
            found = {(org, rid): int(pk) for pk, org, rid in cur.fetchall()}
        finally:
            cur.close()
        if len(found) != added:
            # Only if SQLite stopped giving max(id) + 1 (ids near 2**63): refuse, roll back.
            raise StoreError(f"inserted {added} reports but found {len(found)} new ids")
        return [found.get(key) for key in keys]

    def copy_or_insert(
        self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        if not rows:
            return
        names = ", ".join(columns)
        cur = self.dbapi.cursor()
        try:
            if self.pg:
                with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["?"] * len(columns))
                cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        finally:
            cur.close()

    def insert_ignoring(
        self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
    ) -> None:
        """``INSERT ... ON CONFLICT DO NOTHING`` of many rows."""
        if self.pg:
            self._staged_returning(table, columns, rows, columns[0])
            return
        names = ", ".join(columns)
        marks = ", ".join(["?"] * len(columns))
        cur = self.dbapi.cursor()
        try:
            cur.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows
            )
        finally:
            cur.close()

    def _staged_returning(
        self,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[Any, ...]],
        returning: str,
    ) -> list[tuple[Any, ...]]:
        """PostgreSQL: COPY the rows into a session-local staging table, then one
        ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING``. COPY rows are formatted in
        psycopg's C code; the ``unnest(%s::type[])`` arrays this replaced were escaped in
        Python, element by element (half of the storing process's CPU per report)."""
        names = ", ".join(columns)
        stage = f"stspilot_stage_{table}"
        cur = self.dbapi.cursor()
        try:
            # No defaults or constraints (WITH NO DATA copies the column types only), emptied
            # by every commit; created once per connection.
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS "
                f"AS SELECT {names} FROM {table} WITH NO DATA"
            )
            cur.execute(f"DELETE FROM {stage}")  # a second call in one transaction starts empty
            with cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "
                f"ON CONFLICT DO NOTHING RETURNING {returning}"
            )
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def quarantine(self, item: NewQuarantine) -> QuarantineResult:
        """Keep one unit in the quarantine; the same bytes twice are one entry."""
        row = quarantine_row(item)
        values = [row[c] for c in _QUARANTINE_COLUMNS]
        values[_QUARANTINE_COLUMNS.index("received_at")] = self.timestamp(row["received_at"])
        names = ", ".join(_QUARANTINE_COLUMNS)
        marks = ", ".join([self.mark] * len(_QUARANTINE_COLUMNS))
        cur = self.dbapi.cursor()
        try:
            cur.execute(
                f"INSERT INTO quarantine ({names}) VALUES ({marks}) "
                "ON CONFLICT DO NOTHING RETURNING id",
                values,
            )
            new = cur.fetchone()
            if new is not None:
                return QuarantineResult(int(new[0]), "new")
            cur.execute(f"SELECT id FROM quarantine WHERE sha256 = {self.mark}", (row["sha256"],))
            (old,) = cur.fetchone()
            return QuarantineResult(int(old), "duplicate")
        finally:
            cur.close()


# The quarantine keeps at most this much of an input: enough to read what it was (headers, the
# start of a body) and to retry any report that fits the usual sizes, never a flood's whole
# payload. The size and SHA-256 of the whole input are kept beside it (issue 12/15: an
# unreadable 10 MiB body was kept whole, per request, from anyone).
QUARANTINE_KEEP_BYTES = 256 * 1024


def quarantine_row(item: NewQuarantine, *, keep: int = QUARANTINE_KEEP_BYTES) -> dict[str, Any]:
    """The quarantine row of one input: a bounded prefix of its bytes, its whole size and hash,
    and a reason that says when only a prefix was kept (every intake path comes through here)."""
    sha = sha256_hex(item.raw)
    size = len(item.raw)
    reason = no_nul(item.reason)
    if size > keep:
        reason += f" [kept the first {keep} of {size} bytes; SHA-256 of the whole input {sha}]"
    return {
        "sha256": sha,
        "size": size,
        "raw": item.raw[:keep],
        "origin": clip(no_nul(item.origin), "origin"),
        "code": clip(no_nul(item.code), "type"),
        "reason": reason,
        "received_at": item.received_at,
        "resolved": False,
    }


# -- bulk ingest into an up-to-date SQLite store, without SQLAlchemy -------------------------


def url_dialect(url: str | None) -> str:
    """The engine a store URL names ("sqlite" or "postgresql"), without SQLAlchemy: what bulk
    ingest's workers build rows for before the store is open (``store.url.resolve_url``
    refuses anything else when it is)."""
    from stspilot.store.url import ENV_VAR

    chosen = url or os.environ.get(ENV_VAR) or ""
    if "://" not in chosen or chosen.split("://", 1)[0].split("+", 1)[0] == "sqlite":
        return "sqlite"
    return "postgresql"


class SqliteWriter:
    """``Store.ingest_rows`` and ``Store.ingest_batch`` for a SQLite store at the newest
    schema (an existing one, or a new one made so), on a stdlib ``sqlite3`` connection: bulk
    ingest's storing process does not import SQLAlchemy, ~0.33 s of CPU (``python -c "import
    sqlalchemy"``, 2 CPUs, load ~8), a seventh of a 10,000-file run's CPU. The statements are
    ``Writer``'s, the same as through ``Store``; the connection gets the same pragmas
    (``store.url``), and the transaction is the same: BEGIN IMMEDIATE, foreign-key checks off
    for rows under the ids just returned, COMMIT, or ROLLBACK of the whole batch on any error.
    Driver errors become the same ``StoreRefused`` (the values) and ``StoreError`` (the
    database) as ``Store._write``'s. Anything else (PostgreSQL, an older store, a read-only
    file, a URL with options) opens ``Store``: ``open_sqlite_writer`` answers None."""

    dialect = "sqlite"

    def __init__(self, dbapi: sqlite3.Connection, url: str) -> None:
        self._db = dbapi
        self._url = url

    @contextmanager
    def _write(self) -> Iterator[Writer]:
        db = self._db
        try:
            db.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: before BEGIN
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield Writer(db, "sqlite")
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.rollback()
                    raise
            finally:
                db.execute("PRAGMA foreign_keys = ON")
        except (sqlite3.DataError, sqlite3.IntegrityError, OverflowError) as exc:
            raise StoreRefused(
                f"database refused the values: {exc.__class__.__name__}: {exc}"
            ) from exc
        except sqlite3.Error as exc:
            from stspilot.store.url import store_error

            raise store_error("write to", self._url, exc) from exc

    def ingest_rows(
        self, rows: Sequence[ReportRows], quarantined: Sequence[NewQuarantine] = ()
    ) -> BatchResult:
        with self._write() as w:
            added = write_rows(w, rows, dedup_raw=True) if rows else []
            held = [w.quarantine(q) for q in quarantined]
        return BatchResult(added, held)

    def ingest_batch(
        self, reports: Sequence[NewReport], quarantined: Sequence[NewQuarantine] = ()
    ) -> BatchResult:
        builder = RowBuilder("sqlite")
        return self.ingest_rows([builder.build(item) for item in reports], quarantined)

    def close(self) -> None:
        self._db.close()


def open_sqlite_writer(url: str | None) -> SqliteWriter | None:
    """A ``SqliteWriter`` when ``url`` (``--db``, else the environment, else the default file)
    is a writable SQLite file at the newest migration, or none yet (or an empty one) in a
    writable folder: then it is made at the newest schema here, from the migrations' script
    (``versions.create_sqlite_head``), as ``Store.open`` would make it. Else None (open
    ``Store``, which migrates or explains)."""
    from stspilot.store.url import ENV_VAR, _sqlite_on_connect, resolve_url
    from stspilot.store.versions import create_sqlite_head, migration_heads

    chosen = url or os.environ.get(ENV_VAR) or ""
    if "://" in chosen and (not chosen.startswith("sqlite:///") or any(c in chosen for c in "?#%")):
        return None  # options (uri, mode), escapes, a driver name: Store reads the URL
    # A bare path, the default file or a plain sqlite:///PATH: resolved without SQLAlchemy.
    resolved = chosen if "://" in chosen else resolve_url(url)
    path = Path(resolved.removeprefix("sqlite:///"))
    if not (path.parent.is_dir() and os.access(path.parent, os.W_OK)):
        return None
    if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
        return None
    try:
        db = sqlite3.connect(path)
    except sqlite3.Error:
        return None
    try:
        _sqlite_on_connect(db, None)
        if db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
            # A new store. Not made (False): another process made it meanwhile (its heads
            # are read below), or the script is behind the migrations (Store migrates).
            create_sqlite_head(db)
        heads = {str(row[0]) for row in db.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.Error:
        db.close()
        return None
    if heads != migration_heads():
        db.close()
        return None
    return SqliteWriter(db, resolved)
