"""The database schema as SQLAlchemy Core tables: reports, their policies and failure details,
raw bytes, the quarantine and check history; indexed for dashboards over millions of sessions.

Report-derived rows repeat ``policy_domain``, ``day`` and ``organization_name`` so that every
dashboard question (by domain, day, sender, result type, MX, sending IP) is answered from one
indexed table without joins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# Constraint names are fixed so migrations and both backends agree on them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Integer on SQLite so the primary key is the rowid (autoincrement); 64-bit on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")
# BYTEA on PostgreSQL: what its dialect makes of LargeBinary (DDL, binds and results alike).
Blob = LargeBinary()


class _Json(TypeDecorator[Any]):
    """JSON; JSONB on PostgreSQL. Resolved per dialect when a connection first compiles it,
    so that a SQLite process never imports ``sqlalchemy.dialects.postgresql`` (~0.2 s of CPU
    on every command, a ``with_variant(JSONB())`` at import would cost it). The same types,
    DDL, binds and JSON operators as ``JSON().with_variant(JSONB(), "postgresql")``."""

    impl = JSON
    cache_ok = True
    # As JSON's: Python None is stored as JSON null, not SQL NULL (TypeDecorator's default
    # is the other way round).
    should_evaluate_none = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


Json = _Json()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out on both backends (SQLite keeps naive text, so we add UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


reports = Table(
    "reports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("organization_name", String(512), nullable=False),
    Column("report_id", String(512), nullable=False),
    Column("start_at", UtcDateTime(), nullable=False),
    Column("end_at", UtcDateTime(), nullable=False),
    # The UTC day the report covers (RFC 8460 §4.1: one report per full UTC day).
    Column("day", Date(), nullable=False),
    Column("contact_info", String(512)),
    Column("raw_sha256", String(64), nullable=False),  # -> raw_blobs (looked up there)
    Column("origin", String(1024), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("stored_at", UtcDateTime(), nullable=False),
    Column("envelope", Json),
    Column("deviations", Json, nullable=False),
    Column("policy_count", Integer(), nullable=False),
    Column("successful_sessions", BigInteger(), nullable=False),
    Column("failed_sessions", BigInteger(), nullable=False),
    Column("authenticity", String(16), nullable=False, server_default=""),
    # RFC 8460 §3/§5.5: reports arrive more than once (several rua, retries): dedupe on the id.
    # report_id first: the batch dedup looks reports up by report_id IN (...).
    UniqueConstraint("report_id", "organization_name"),
)
Index(None, reports.c.day)

# Content-addressed raw bytes (a mail with two reports is kept once), for audit (RFC 8460 §8:
# treat as sensitive).
raw_blobs = Table(
    "raw_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    # The first report stored from these bytes: answers "seen this unit?" with one lookup.
    Column("report_pk", Id, nullable=False),
    Column("size", Integer(), nullable=False),
    Column("raw", Blob, nullable=False),
)

report_policies = Table(
    "report_policies",
    metadata,
    Column("report_pk", Id, ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer(), primary_key=True, autoincrement=False),
    Column("policy_type", String(64), nullable=False),
    Column("policy_domain", String(255), nullable=False),
    Column("day", Date(), nullable=False),
    Column("organization_name", String(512), nullable=False),
    Column("policy_string", Json, nullable=False),
    Column("mx_host", Json, nullable=False),
    Column("successful_sessions", BigInteger(), nullable=False),
    Column("failed_sessions", BigInteger(), nullable=False),
    # How the report came (``store.rows.authenticity``: dkim, operator, https, mail), written
    # with the row at ingest (migration 0009 backfilled older rows): the rollout's counts read
    # it here instead of joining every row to its report. A writer that left it out would
    # store "" (not authenticated: such rows can make the gate fail, never pass).
    Column("authenticity", String(16), nullable=False, server_default=""),
    # SQLite: the primary key IS the table (no rowid B-tree plus a PK index to update).
    sqlite_with_rowid=False,
)
# (policy_domain, day) and what the dashboard's windows read of a row, so SQLite answers them
# from the index alone (migration 0011; the primary key columns ride along in every index).
Index(
    "ix_report_policies_domain_day_covering",
    *(
        report_policies.c[name]
        for name in (
            "policy_domain",
            "day",
            "authenticity",
            "organization_name",
            "successful_sessions",
            "failed_sessions",
        )
    ),
)

failure_details = Table(
    "failure_details",
    metadata,
    Column("report_pk", Id, ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True),
    Column("policy_idx", Integer(), primary_key=True, autoincrement=False),
    Column("idx", Integer(), primary_key=True, autoincrement=False),
    Column("policy_type", String(64), nullable=False),
    Column("policy_domain", String(255), nullable=False),
    Column("day", Date(), nullable=False),
    Column("organization_name", String(512), nullable=False),
    Column("result_type", String(128), nullable=False),
    Column("failed_session_count", BigInteger(), nullable=False),
    Column("sending_mta_ip", String(64)),
    Column("receiving_mx_hostname", String(255)),
    Column("receiving_mx_helo", String(255)),
    Column("receiving_ip", String(64)),
    Column("additional_information", Text()),
    Column("failure_reason_code", Text()),
    Column("authenticity", String(16), nullable=False, server_default=""),
    sqlite_with_rowid=False,
)
Index(
    "ix_failure_details_domain_day_covering",
    *(
        failure_details.c[name]
        for name in (
            "policy_domain",
            "day",
            "result_type",
            "receiving_mx_hostname",
            "organization_name",
            "authenticity",
            "failed_session_count",
        )
    ),
)
# No other indexes: every query (store/queries.py, dashboard.py) filters on (policy_domain,
# day), or on day alone through ``reports`` (its day index) and the children's primary key;
# each index more is written on every insert (migrations 0003 and 0005 dropped five).

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", Integer(), nullable=False),
    Column("raw", Blob, nullable=False),
    Column("origin", String(1024), nullable=False),
    Column("code", String(128), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("resolved", Boolean(), nullable=False),
    Column("resolved_at", UtcDateTime()),
    Column("resolved_report_pk", Id, ForeignKey("reports.id", ondelete="SET NULL")),
    Column("note", Text()),
)
Index(None, quarantine.c.resolved, quarantine.c.id)

checks = Table(
    "checks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("domain", String(255), nullable=False),
    Column("observed_at", UtcDateTime(), nullable=False),
    Column("stage", String(64), nullable=False),
    Column("mode", String(32)),
    Column("worst_severity", String(32)),
    Column("findings_count", Integer(), nullable=False),
    Column("policy_id", String(64)),
    Column("policy_sha256", String(64)),
    Column("mx_set", Json, nullable=False),
    Column("result", Json, nullable=False),
)
Index(None, checks.c.domain, checks.c.observed_at)
