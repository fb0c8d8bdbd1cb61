"""The one persistence API: ``Store`` over SQLAlchemy Core (SQLite or PostgreSQL).

Writes are batched: one transaction per call, rows inserted with executemany, duplicates
decided by unique constraints (``INSERT ... ON CONFLICT DO NOTHING``), so a crashed ingest
re-run stores every report exactly once and no half-written report is ever visible.
Async callers use ``asyncio.to_thread``: the store is synchronous and thread-safe (one
connection per call from the engine's pool).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from stspilot.errors import StoreError, StoreRefused
from stspilot.store import batch, queries, reads, versions
from stspilot.store.models import (
    AddResult,
    BatchResult,
    CheckRecord,
    NewQuarantine,
    NewReport,
    ReportListing,
    StoredReport,
)
from stspilot.store.quarantine import QuarantineMethods
from stspilot.store.retention import CheckPoint, Retention, checks_to_drop
from stspilot.store.rows import ReportRows
from stspilot.store.schema import checks, raw_blobs, reports
from stspilot.store.url import make_engine, resolve_url, safe_url, sqlite_path, store_error
from stspilot.sts.names import fold_name
from stspilot.tlsrpt.summary import DailyTotal, FailureCount, ReportAggregates, SenderTotal

if TYPE_CHECKING:
    from stspilot.rollout.evidence import HistoryEntry


class NoStore(StoreError):
    """A read command found no store where one was looked for (none is created for it)."""


class Store(QuarantineMethods):
    """Reports, quarantine and check history in one database. Use ``Store.open(url)``.

    The quarantine's methods are in ``store/quarantine.py`` (``QuarantineMethods``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.dialect = engine.dialect.name
        # The write path also talks to the driver directly (executemany, COPY): its errors
        # (sqlite3.Error, psycopg.Error) become StoreError like SQLAlchemy's.
        self._db_errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            engine.dialect.loaded_dbapi.Error,
        )
        # Errors that the values written cause, not the database's state: the driver's data
        # and constraint errors (also as SQLAlchemy wraps them), and the OverflowError sqlite3
        # raises for an integer past 64 bits when it binds it.
        dbapi = engine.dialect.loaded_dbapi
        self._refusals: tuple[type[BaseException], ...] = (
            DataError,
            IntegrityError,
            dbapi.DataError,
            dbapi.IntegrityError,
            OverflowError,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True, reader: bool = False) -> Store:
        """Open (creating and migrating to the latest schema) the database at ``url``.

        ``url`` falls back to ``$STSPILOT_DATABASE_URL``, then to a SQLite file in the user's
        data directory; a bare path means a SQLite file.

        ``reader``: for commands that only read. A store that does not exist (no SQLite
        file, no stspilot schema in the PostgreSQL database) is ``NoStore``, never created
        empty; a SQLite store this process cannot write is opened read-only (then an
        out-of-date schema is an error rather than migrated).
        """
        resolved = resolve_url(url, create_folder=not reader)
        read_only = False
        if reader:
            path = sqlite_path(resolved)
            if path is not None and not path.exists():
                raise NoStore(
                    f"no store at {path}: nothing has been stored there yet "
                    "(ingest, receive, serve and monitor add create it)"
                )
            read_only = path is not None and not (
                os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
            )
        engine = make_engine(resolved, read_only=read_only)
        store = cls(engine)
        try:
            if reader and not store._schema_heads():
                raise NoStore(
                    f"no store in {safe_url(resolved)}: nothing has been stored there yet "
                    "(ingest, receive, serve and monitor add create it)"
                )
            if read_only:
                store.require_current_schema()
            elif migrate:
                store.migrate()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise store_error("open", resolved, exc) from exc
        except StoreError:
            engine.dispose()
            raise
        return store

    def _schema_heads(self) -> set[str]:
        return versions.schema_heads(self._engine)

    def require_current_schema(self) -> None:
        """``StoreError`` unless the schema is the newest (for a store that cannot migrate)."""
        versions.require_current(self._engine)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        versions.migrate(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """For tests and migrations only; everything else goes through the methods here."""
        return self._engine

    @contextmanager
    def _write(self, *, checked_keys: bool = True) -> Iterator[Connection]:
        """A write transaction. ``checked_keys=False`` (SQLite) skips the foreign-key checks
        for writers that insert child rows only under the parent ids their own insert just
        returned (``batch.add_rows``): they cost ~10% of a stored report's CPU."""
        try:
            with self._engine.connect() as conn:
                toggle = not checked_keys and self.dialect == "sqlite"
                if toggle:  # a no-op inside a transaction: set before BEGIN, restore after
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
                try:
                    conn = conn.execution_options(stspilot_write=True)
                    with conn.begin():
                        yield conn
                finally:
                    if toggle:
                        try:
                            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]
                        except self._db_errors:
                            conn.invalidate()  # never back to the pool without its checks
                            raise
        except self._refusals as exc:
            raise StoreRefused(
                f"database refused the values: {exc.__class__.__name__}: {exc}"
            ) from exc
        except self._db_errors as exc:
            raise store_error("write to", self._engine.url, exc) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise store_error("read", self._engine.url, exc) from exc

    # -- reports ---------------------------------------------------------------------------

    def add_report(self, item: NewReport) -> AddResult:
        return self.add_reports([item])[0]

    def add_reports(self, items: Sequence[NewReport], *, dedup_raw: bool = True) -> list[AddResult]:
        """Store a batch of reports in one transaction; results are in the order of ``items``.

        A report is a duplicate when its (organization-name, report-id) is stored (RFC 8460
        §3, §5.5: several rua and retries deliver it again) or, with ``dedup_raw``, when a
        report from the same raw bytes was stored by an earlier call. Several reports of one
        raw unit (a mail with two attachments) in one call are all kept. ``dedup_raw=False``
        is for re-trying a quarantined unit whose other reports were already stored.
        """
        if not items:
            return []
        with self._write() as conn:
            return batch.add_reports(conn, items, dedup_raw=dedup_raw)

    def ingest_batch(
        self, reports_: Sequence[NewReport], quarantined: Sequence[NewQuarantine] = ()
    ) -> BatchResult:
        """Reports and quarantine entries of one batch in ONE transaction: acknowledge the
        sources (IMAP move, HTTP 2xx, SMTP 250) only after this returns."""
        with self._write() as conn:
            added = batch.add_reports(conn, reports_, dedup_raw=True) if reports_ else []
            held = [batch.add_quarantine(conn, q) for q in quarantined]
        return BatchResult(added, held)

    def ingest_rows(
        self, rows: Sequence[ReportRows], quarantined: Sequence[NewQuarantine] = ()
    ) -> BatchResult:
        """``ingest_batch`` for reports whose rows were built already (``store.rows``, in the
        bulk-ingest decode workers): the writing process only inserts."""
        with self._write(checked_keys=False) as conn:
            added = batch.add_rows(conn, rows, dedup_raw=True) if rows else []
            held = [batch.add_quarantine(conn, q) for q in quarantined]
        return BatchResult(added, held)

    def seen_sha256(self, sha: str) -> bool:
        """Whether a report from raw bytes with this SHA-256 is stored (a cheap re-ingest skip)."""
        with self._read() as conn:
            q = select(raw_blobs.c.report_pk).where(raw_blobs.c.sha256 == sha)
            return conn.execute(q).first() is not None

    def ping(self) -> None:
        """One trivial query: raises ``StoreError`` when the database cannot be reached."""
        with self._read() as conn:
            conn.execute(select(1)).scalar_one()

    def count_reports(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(reports)).scalar_one())

    def get_report(self, pk: int) -> StoredReport | None:
        """A stored report rebuilt into the model, with its audit metadata."""
        with self._read() as conn:
            return reads.load_report(conn, pk)

    def report_raw(self, pk: int) -> bytes | None:
        """The raw unit (file, mail) a stored report came from, for audit."""
        with self._read() as conn:
            q = (
                select(raw_blobs.c.raw)
                .join(reports, reports.c.raw_sha256 == raw_blobs.c.sha256)
                .where(reports.c.id == pk)
            )
            raw = conn.execute(q).scalar_one_or_none()
        return None if raw is None else bytes(raw)

    def list_reports(
        self,
        domain: str | None = None,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        tenant_id: int | None = None,
        walk_after: int = reads.SMALL_TENANT,
        scoped: bool = False,
        received_since: datetime | None = None,
    ) -> list[ReportListing]:
        """Reports newest day first, optionally for one policy domain, a day window and the
        hosted domains of one tenant (``store.reads.list_reports``); ``scoped`` counts only
        ``domain``'s policies, ``received_since`` keeps a tenant's hosting period."""
        with self._read() as conn:
            return reads.list_reports(
                conn,
                domain=domain,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
                tenant_id=tenant_id,
                walk_after=walk_after,
                scoped=scoped,
                received_since=received_since,
            )

    # -- aggregates ------------------------------------------------------------------------

    def daily_totals(
        self,
        domain: str | None = None,
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
    ) -> list[DailyTotal]:
        with self._read() as conn:
            return queries.daily_totals(conn, domain=domain, since=since, until=until)

    def failure_counts(
        self,
        dimension: queries.Dimension,
        domain: str | None = None,
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
    ) -> list[FailureCount]:
        """Failed sessions by ``dimension`` ("result_type", "mx", "organization",
        "sending_ip", "receiving_ip") and result type."""
        with self._read() as conn:
            return queries.failure_counts(conn, dimension, domain=domain, since=since, until=until)

    def failures_by_result_type(
        self, domain: str | None = None, **window: Any
    ) -> list[FailureCount]:
        return self.failure_counts("result_type", domain, **window)

    def failures_by_mx(self, domain: str | None = None, **window: Any) -> list[FailureCount]:
        return self.failure_counts("mx", domain, **window)

    def failures_by_organization(
        self, domain: str | None = None, **window: Any
    ) -> list[FailureCount]:
        return self.failure_counts("organization", domain, **window)

    def failures_by_sending_ip(
        self, domain: str | None = None, **window: Any
    ) -> list[FailureCount]:
        return self.failure_counts("sending_ip", domain, **window)

    def sender_totals(
        self,
        domain: str | None = None,
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
    ) -> list[SenderTotal]:
        with self._read() as conn:
            return queries.sender_totals(conn, domain=domain, since=since, until=until)

    def report_aggregates(
        self,
        domain: str | None = None,
        *,
        since: date | datetime,
        until: date | datetime,
        received_since: datetime | None = None,
    ) -> ReportAggregates:
        """All aggregates for ``stspilot.tlsrpt.summary.summarize``, read in one transaction
        (``received_since``: only reports received since then)."""
        with self._read() as conn:
            return queries.report_aggregates(
                conn, domain=domain, since=since, until=until, received_since=received_since
            )

    def list_domains(self) -> list[str]:
        with self._read() as conn:
            return queries.list_domains(conn)

    # -- checks ----------------------------------------------------------------------------

    def save_check(
        self,
        *,
        domain: str,
        observed_at: datetime,
        stage: str,
        mode: str | None,
        worst_severity: str | None,
        findings_count: int,
        policy_id: str | None,
        policy_sha256: str | None,
        mx_set: Sequence[str],
        result: Mapping[str, Any],
    ) -> int:
        """Store one check of ``domain``; returns its id. ``result`` is the full JSON form."""
        row = {
            "domain": fold_name(domain),
            "observed_at": observed_at,
            "stage": stage,
            "mode": mode,
            "worst_severity": worst_severity,
            "findings_count": findings_count,
            "policy_id": policy_id,
            "policy_sha256": policy_sha256,
            "mx_set": sorted(mx_set),
            "result": dict(result),
        }
        with self._write() as conn:
            return int(conn.execute(checks.insert().returning(checks.c.id), row).scalar_one())

    def latest_check(self, domain: str) -> CheckRecord | None:
        q = (
            select(checks)
            .where(checks.c.domain == fold_name(domain))
            .order_by(checks.c.observed_at.desc(), checks.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            rows = conn.execute(q).mappings().all()
        return reads.check_record(rows[0]) if rows else None

    def get_check(self, check_id: int) -> CheckRecord | None:
        with self._read() as conn:
            row = conn.execute(select(checks).where(checks.c.id == check_id)).mappings().first()
        return reads.check_record(row) if row is not None else None

    def check_history(
        self, domain: str, since: datetime | None = None, *, limit: int = 10_000
    ) -> list[CheckRecord]:
        """The newest ``limit`` checks of ``domain`` observed at or after ``since``, oldest
        first (a domain checked every few minutes has more than ``limit``: the newest count)."""
        q = select(checks).where(checks.c.domain == fold_name(domain))
        if since is not None:
            q = q.where(checks.c.observed_at >= since)
        q = q.order_by(checks.c.observed_at.desc(), checks.c.id.desc()).limit(limit)
        with self._read() as conn:
            newest_first = [reads.check_record(row) for row in conn.execute(q).mappings()]
        return newest_first[::-1]

    def history_entries(
        self, domain: str, since: datetime | None = None, *, limit: int = 10_000
    ) -> tuple[HistoryEntry, ...]:
        """``check_history`` as the rollout reads it (``evidence.HistoryEntry``, oldest first),
        without the result documents: only the policy's ``max_age`` is taken from them, in
        SQL (``save_check`` writes it as a number; digits in a string would count too). With
        the documents, a domain's 60 days of 6-hourly checks cost ~5 ms to read, once per
        domain per monitor round."""
        c = checks.c
        max_age = c.result["policy"]["max_age"].as_string()
        q = select(c.observed_at, c.mode, c.policy_id, c.policy_sha256, c.mx_set, max_age).where(
            c.domain == fold_name(domain)
        )
        if since is not None:
            q = q.where(c.observed_at >= since)
        q = q.order_by(c.observed_at.desc(), c.id.desc()).limit(limit)
        with self._read() as conn:
            rows = conn.execute(q).all()
        # Here, not at import: the rollout's findings catalogue is ~0.1 s of CPU that
        # ingest and the other store commands do not need.
        from stspilot.rollout.evidence import HistoryEntry

        return tuple(
            HistoryEntry(
                observed_at=at,
                mode=mode,
                policy_id=policy_id,
                policy_sha256=sha or "",
                mx_hosts=tuple(mx_set),
                max_age=int(age) if age is not None and age.isdigit() else None,
            )
            for at, mode, policy_id, sha, mx_set, age in reversed(rows)
        )

    def thin_checks(
        self,
        *,
        now: datetime,
        retention: Retention | None = None,
        dry_run: bool = False,
        cancel: threading.Event | None = None,
    ) -> tuple[int, int]:
        """Drop old checks that tell nothing new (``store/retention.py``), one domain and one
        transaction at a time, until done or ``cancel`` is set; returns (checks looked at,
        checks dropped)."""
        retention = retention or Retention()
        thin_before, _ = retention.cutoffs(now)
        c = checks.c
        light = (c.id, c.observed_at, c.stage, c.mode, c.worst_severity, c.findings_count,
                 c.policy_id, c.policy_sha256, c.mx_set)  # fmt: skip
        with self._read() as conn:
            domains = list(
                conn.scalars(select(c.domain).where(c.observed_at < thin_before).distinct())
            )
        seen = dropped = 0
        for domain in domains:
            if cancel is not None and cancel.is_set():
                break
            with self._read() if dry_run else self._write() as conn:
                older = conn.execute(
                    select(*light)
                    .where(c.domain == domain, c.observed_at < thin_before)
                    .order_by(c.observed_at, c.id)
                ).all()
                # The first newer check too: the last old check before a change is kept.
                newer = conn.execute(
                    select(*light)
                    .where(c.domain == domain, c.observed_at >= thin_before)
                    .order_by(c.observed_at, c.id)
                    .limit(1)
                ).all()
                points = [
                    CheckPoint(row[0], row[1], (*row[2:8], tuple(row[8])))
                    for row in (*older, *newer)
                ]
                drop = checks_to_drop(points, now=now, retention=retention)
                seen += len(older)
                dropped += len(drop)
                if not dry_run:
                    for i in range(0, len(drop), batch.CHUNK):
                        conn.execute(checks.delete().where(c.id.in_(drop[i : i + batch.CHUNK])))
        return seen, dropped


def open_store(url: str | None = None) -> Store:
    """``Store.open`` as a function."""
    return Store.open(url)
