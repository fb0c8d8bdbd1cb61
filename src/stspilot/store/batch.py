"""Writing a batch: deduplicated reports with their policies, failure details and raw bytes,
and quarantine entries, all on the caller's connection (one transaction per batch).

Rows are built before any database work (``store/rows.py``: in the decode workers for bulk
ingest) and go in through the driver (``executemany``; PostgreSQL: ``COPY``),
not the ORM per row. The unique constraints decide duplicates (``INSERT ... ON CONFLICT DO
NOTHING``), so concurrent writers and re-runs after a crash never store a report twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Insert, Table, select

from stspilot.errors import StoreError
from stspilot.store.models import AddResult, NewQuarantine, NewReport, QuarantineResult
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
from stspilot.store.schema import quarantine, raw_blobs, reports

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


def insert_ignoring(conn: Connection, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    # The dialect's module only when its database is open: a SQLite process never loads
    # PostgreSQL's (nor the other way round).
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def add_reports(
    conn: Connection, items: Sequence[NewReport], *, dedup_raw: bool
) -> list[AddResult]:
    """Store parsed reports (building their rows here); raises ``ReportError`` for an identity
    too long to store, before anything is written."""
    builder = RowBuilder(conn.dialect.name)
    return add_rows(conn, [builder.build(item) for item in items], dedup_raw=dedup_raw)


def add_rows(conn: Connection, items: Sequence[ReportRows], *, dedup_raw: bool) -> list[AddResult]:
    """Store pre-built reports; results line up with ``items``. A report whose identity is
    stored already, or whose raw unit is (``dedup_raw``), is a duplicate; so is a later copy
    within ``items`` (it points at the first)."""
    known_raw = _known_raw(conn, {item.sha256 for item in items}) if dedup_raw else {}
    # Identities are looked up first only for units whose bytes are known (re-runs): their
    # own stored report must be named, not the unit's first one. Everything else goes
    # straight to INSERT ... ON CONFLICT DO NOTHING, and only what it refuses is looked up.
    existing = _existing_keys(conn, {item.key for item in items if item.sha256 in known_raw})

    results: list[AddResult | None] = [None] * len(items)
    first_in_batch: dict[tuple[str, str], int] = {}
    pending: list[int] = []  # indexes of items to insert
    for n, item in enumerate(items):
        key = item.key
        if key in existing:
            results[n] = AddResult("duplicate", existing[key], item.sha256)
        elif item.sha256 in known_raw:
            results[n] = AddResult("duplicate", known_raw[item.sha256], item.sha256)
        elif key not in first_in_batch:
            first_in_batch[key] = n
            pending.append(n)

    if pending:
        drv = _Driver(conn)
        stored_at = (
            now_utc() if drv.pg else now_utc().replace(tzinfo=None).isoformat(" ", "microseconds")
        )
        ids = drv.insert_reports(
            [(*items[n].report, stored_at) for n in pending], [items[n].key for n in pending]
        )
        lost = {items[n].key for n, pk in zip(pending, ids, strict=True) if pk is None}
        if lost:  # stored before: by an earlier batch, or a concurrent writer just now
            existing.update(_existing_keys(conn, lost))
        policies: list[tuple[Any, ...]] = []
        details: list[tuple[Any, ...]] = []
        blobs: dict[str, tuple[int, bytes]] = {}
        for n, pk in zip(pending, ids, strict=True):
            item = items[n]
            if pk is None:
                results[n] = AddResult("duplicate", existing[item.key], item.sha256)
                continue
            results[n] = AddResult("new", pk, item.sha256)
            policies += [(pk, *row) for row in item.policies]
            details += [(pk, *row) for row in item.details]
            if item.sha256 not in blobs:
                blobs[item.sha256] = (pk, item.raw)
        drv.copy_or_insert("report_policies", POLICY_COLUMNS, policies)
        drv.copy_or_insert("failure_details", DETAIL_COLUMNS, details)
        if blobs:
            # Raw units are content-addressed: a unit already kept (another batch) is skipped.
            drv.insert_ignoring(
                "raw_blobs",
                ("sha256", "report_pk", "size", "raw"),
                [(s, pk, len(b), b) for s, (pk, b) in blobs.items()],
            )
    # Later copies of a report that is new in this very batch point at the first one.
    for n, item in enumerate(items):
        if results[n] is None:
            first = results[first_in_batch[item.key]]
            assert first is not None
            results[n] = AddResult("duplicate", first.report_pk, item.sha256)
    return [r for r in results if r is not None]


def _known_raw(conn: Connection, shas: set[str]) -> dict[str, int]:
    """The stored report of each raw unit already kept, by SHA-256."""
    wanted = sorted(shas)
    found: dict[str, int] = {}
    if conn.dialect.name == "sqlite":
        # The driver directly: SQLAlchemy compiling a 500-value IN cost as much as running it.
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i : i + CHUNK]
                marks = ", ".join(["?"] * len(chunk))
                cur.execute(
                    f"SELECT sha256, report_pk FROM raw_blobs WHERE sha256 IN ({marks})", chunk
                )
                found.update(cur.fetchall())
        finally:
            cur.close()
        return found
    for i in range(0, len(wanted), CHUNK):
        q = select(raw_blobs.c.sha256, raw_blobs.c.report_pk).where(
            raw_blobs.c.sha256.in_(wanted[i : i + CHUNK])
        )
        found.update((sha, pk) for sha, pk in conn.execute(q))
    return found


def _existing_keys(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    if not keys:
        return {}
    # report_id IN (...) uses the unique index (report_id, organization_name) as a prefix;
    # the organisation is matched here (portable: no tuple IN).
    by_id = sorted({rid for _org, rid in keys})
    found: dict[tuple[str, str], int] = {}
    for i in range(0, len(by_id), CHUNK):
        q = select(reports.c.id, reports.c.organization_name, reports.c.report_id).where(
            reports.c.report_id.in_(by_id[i : i + CHUNK])
        )
        for pk, org, rid in conn.execute(q):
            if (org, rid) in keys:
                found[(org, rid)] = pk
    return found


class _Driver:
    """Plain DBAPI inserts for the hot path, bypassing SQLAlchemy's per-row parameter
    processing (which cost more than SQLite itself): the rows hold exactly what the column
    types store (``store/rows.py``). PostgreSQL child rows go in with COPY; SQLite with
    ``executemany``."""

    def __init__(self, conn: Connection) -> None:
        self.pg = conn.dialect.name == "postgresql"
        self.dbapi: Any = conn.connection.dbapi_connection

    def insert_reports(
        self, rows: list[tuple[Any, ...]], keys: list[tuple[str, str]]
    ) -> list[int | None]:
        """Insert report rows, skipping stored identities: the id of each row, None where
        its identity was stored already."""
        if self.pg:
            returned = self._staged_returning(
                "reports", REPORT_COLUMNS, rows, "id, organization_name, report_id"
            )
            ids = {(org, rid): int(pk) for pk, org, rid in returned}
            return [ids.get(key) for key in keys]
        # SQLite: executemany (one prepared statement). A 2,000-row VALUES list with RETURNING
        # cost ~40% more: SQLite compiles a 30,000-parameter statement per batch. The
        # transaction holds the write lock (BEGIN IMMEDIATE), so every row past the largest id
        # before the insert is one of ours, and SQLite gives each new row the largest id plus
        # one (https://www.sqlite.org/autoinc.html): with no identity refused, row i got
        # before + 1 + i. Otherwise (re-runs) the new rows are read back.
        cur = self.dbapi.cursor()
        try:
            cur.execute("SELECT coalesce(max(id), 0) FROM reports")
            (before,) = cur.fetchone()
            changes = self.dbapi.total_changes
            names = ", ".join(REPORT_COLUMNS)
            marks = ", ".join(["?"] * len(REPORT_COLUMNS))
            cur.executemany(
                f"INSERT INTO reports ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows
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


def add_quarantine(conn: Connection, item: NewQuarantine) -> QuarantineResult:
    row = quarantine_row(item)
    sha = row["sha256"]
    new_id = conn.execute(
        insert_ignoring(conn, quarantine).returning(quarantine.c.id), row
    ).scalar_one_or_none()
    if new_id is not None:
        return QuarantineResult(int(new_id), "new")
    old = conn.execute(select(quarantine.c.id).where(quarantine.c.sha256 == sha)).scalar_one()
    return QuarantineResult(int(old), "duplicate")
