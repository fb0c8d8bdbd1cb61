"""Writing a batch: deduplicated reports with their policies, failure details and raw bytes,
and quarantine entries, all on the caller's connection (one transaction per batch).

Rows go in with executemany (SQLAlchemy Core "insertmanyvalues"), not the ORM per row; the
unique constraints decide duplicates (``INSERT ... ON CONFLICT DO NOTHING``), so concurrent
writers and re-runs after a crash never store a report twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, Insert, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from stspilot.errors import ReportError
from stspilot.reports import Deviation, TlsReport
from stspilot.store.models import AddResult, NewQuarantine, NewReport, QuarantineResult
from stspilot.store.schema import quarantine, raw_blobs, reports
from stspilot.store.url import json_dumps

# Parameters per IN (...) list: well under SQLite's 32766 host-parameter limit.
CHUNK = 500
# Identity columns must fit their indexed columns (PostgreSQL btree entries are capped too).
_MAX_IDENTITY = 512
# Free-text columns that are indexed are clipped: a hostile 10 kB "hostname" must not fail a batch.
_CLIP = {"mx": 255, "ip": 64, "domain": 255, "type": 128, "origin": 1024}


def now_utc() -> datetime:
    return datetime.now(UTC)


def insert_ignoring(conn: Connection, table: Table) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _clip(value: str | None, kind: str) -> str | None:
    return None if value is None else _no_nul(value[: _CLIP[kind]])


def _text(value: str | None) -> str | None:
    return None if value is None else _no_nul(value)


def _json_text(encoded: bytes) -> str:
    text = encoded.decode()
    # PostgreSQL jsonb refuses the NUL escape (see _no_nul).
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _deviation_json(deviations: Sequence[Deviation]) -> list[dict[str, str]]:
    return [{"code": d.code, "path": d.path, "message": d.message} for d in deviations]


# Envelope values the fast encoder takes as they are (floats and anything else go the slow way,
# whose rules for NaN, bytes and sets differ from msgspec's).
_PLAIN = frozenset({str, int, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _envelope_json(envelope: object) -> str:
    """The envelope as JSON text: the mail ``Envelope`` (flat strings, flags, string tuples and
    a date) goes through msgspec; anything else through ``url.json_dumps`` (asdict + json,
    ~20x slower, which was a third of the store's time per mailed report)."""
    if is_dataclass(envelope) and not isinstance(envelope, type):
        names = _FIELD_NAMES.get(type(envelope))
        if names is None:
            names = _FIELD_NAMES[type(envelope)] = tuple(f.name for f in fields(envelope))
        items: Any = [(n, getattr(envelope, n)) for n in names]
    elif isinstance(envelope, Mapping):
        items = envelope.items()
    else:
        raise TypeError(f"envelope must be a mapping or a dataclass, not {type(envelope).__name__}")
    out: dict[str, object] = {}
    for key, value in items:
        kind = type(value)
        if kind is datetime:
            value = value.isoformat()  # the format json_dumps writes
        elif kind is tuple or kind is list:
            if not all(type(v) is str for v in value):
                return json_dumps(_jsonable_envelope(envelope))
        elif kind not in _PLAIN or type(key) is not str:
            return json_dumps(_jsonable_envelope(envelope))
        out[key] = value
    return _json_text(_JSON.encode(out))


def _jsonable_envelope(envelope: object) -> Mapping[str, Any] | None:
    if envelope is None:
        return None
    if is_dataclass(envelope) and not isinstance(envelope, type):
        return asdict(envelope)
    if isinstance(envelope, Mapping):
        return dict(envelope)
    raise TypeError(f"envelope must be a mapping or a dataclass, not {type(envelope).__name__}")


class _Driver:
    """Plain DBAPI inserts for the hot path, bypassing SQLAlchemy's per-row parameter
    processing (which cost more than SQLite itself): values are converted here to exactly what
    the column types store, so Core reads them back unchanged. PostgreSQL child rows go in with
    COPY; SQLite with ``executemany``."""

    def __init__(self, conn: Connection) -> None:
        self.pg = conn.dialect.name == "postgresql"
        self.dbapi: Any = conn.connection.dbapi_connection
        self.mark = "%s" if self.pg else "?"
        # Values repeat across a batch (same day, same policy text, same MX list): convert once.
        self._ts: dict[datetime, object] = {}
        self._day: dict[datetime, object] = {}
        self._json: dict[tuple[str, ...], str] = {}
        self.memo: dict[tuple[str, str | None], str | None] = {}

    def ts(self, value: datetime) -> object:
        out = self._ts.get(value)
        if out is None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
            utc = value.astimezone(UTC)
            # SQLAlchemy's SQLite DATETIME text format, naive UTC (see schema.UtcDateTime).
            out = utc if self.pg else utc.replace(tzinfo=None).isoformat(" ", "microseconds")
            self._ts[value] = out
        return out

    def day(self, start: datetime) -> object:
        """The UTC day a report starting at ``start`` covers (RFC 8460 §4.1)."""
        out = self._day.get(start)
        if out is None:
            day = start.astimezone(UTC).date()
            out = self._day[start] = day if self.pg else day.isoformat()
        return out

    def strings(self, value: tuple[str, ...]) -> str:
        """A tuple of strings as a JSON array (policy lines, MX patterns), cached."""
        out = self._json.get(value)
        if out is None:
            out = self._json[value] = _json_text(_JSON.encode(value))
        return out

    @staticmethod
    def json(value: object) -> str:
        return _json_text(_JSON.encode(value))

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
                marks = ", ".join([self.mark] * len(columns))
                cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        finally:
            cur.close()

    def insert_returning(
        self,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[Any, ...]],
        returning: str,
    ) -> list[tuple[Any, ...]]:
        """Multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: only inserted rows return."""
        if self.pg:
            return self._unnest_returning(table, columns, rows, returning)
        out: list[tuple[Any, ...]] = []
        per = max(1, 30_000 // len(columns))  # bound parameters per statement (SQLite: 32766)
        one = "(" + ", ".join([self.mark] * len(columns)) + ")"
        cur = self.dbapi.cursor()
        try:
            for i in range(0, len(rows), per):
                part = rows[i : i + per]
                sql = (
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                    + ", ".join([one] * len(part))
                    + f" ON CONFLICT DO NOTHING RETURNING {returning}"
                )
                cur.execute(sql, [v for row in part for v in row])
                out.extend(tuple(r) for r in cur.fetchall())
        finally:
            cur.close()
        return out

    def _unnest_returning(
        self,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[Any, ...]],
        returning: str,
    ) -> list[tuple[Any, ...]]:
        # One array parameter per column: psycopg would otherwise parse a statement with
        # thousands of placeholders in Python, which cost more than the insert itself.
        types = _PG_TYPES[table]
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT DO NOTHING RETURNING {returning}"
        )
        params = [list(col) for col in zip(*rows, strict=True)]
        cur = self.dbapi.cursor()
        try:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()


_JSON = msgspec.json.Encoder()

REPORT_COLUMNS = (
    "organization_name", "report_id", "start_at", "end_at", "day", "contact_info",
    "raw_sha256", "origin", "received_at", "stored_at", "envelope", "deviations",
    "policy_count", "successful_sessions", "failed_sessions",
)  # fmt: skip
_PG_TYPES = {
    "reports": (
        "text", "text", "timestamptz", "timestamptz", "date", "text", "text", "text",
        "timestamptz", "timestamptz", "jsonb", "jsonb", "integer", "bigint", "bigint",
    ),
    "raw_blobs": ("text", "bigint", "integer", "bytea"),
}  # fmt: skip
POLICY_COLUMNS = (
    "report_pk", "idx", "policy_type", "policy_domain", "day", "organization_name",
    "policy_string", "mx_host", "successful_sessions", "failed_sessions",
)  # fmt: skip
DETAIL_COLUMNS = (
    "report_pk", "policy_idx", "idx", "policy_type", "policy_domain", "day",
    "organization_name", "result_type", "failed_session_count", "sending_mta_ip",
    "receiving_mx_hostname", "receiving_mx_helo", "receiving_ip", "additional_information",
    "failure_reason_code",
)  # fmt: skip


def add_reports(
    conn: Connection, items: Sequence[NewReport], *, dedup_raw: bool
) -> list[AddResult]:
    for item in items:
        r = item.report
        if len(r.organization_name) > _MAX_IDENTITY or len(r.report_id) > _MAX_IDENTITY:
            raise ReportError(
                "report.identity.too-long",
                f"organization-name or report-id longer than {_MAX_IDENTITY} characters",
            )
    shas = [sha256_hex(item.raw) for item in items]
    known_raw: dict[str, int] = {}
    if dedup_raw:
        wanted = sorted(set(shas))
        for i in range(0, len(wanted), CHUNK):
            q = select(raw_blobs.c.sha256, raw_blobs.c.report_pk).where(
                raw_blobs.c.sha256.in_(wanted[i : i + CHUNK])
            )
            for sha, pk in conn.execute(q):
                known_raw.setdefault(sha, pk)
    keys = [_key(item) for item in items]
    # Identities are looked up first only for units whose bytes are known (re-runs): their
    # own stored report must be named, not the unit's first one. Everything else goes
    # straight to INSERT ... ON CONFLICT DO NOTHING, and only what it refuses is looked up.
    rerun = {key for key, sha in zip(keys, shas, strict=True) if sha in known_raw}
    existing = _existing_keys(conn, rerun)

    results: list[AddResult | None] = [None] * len(items)
    first_in_batch: dict[tuple[str, str], int] = {}
    pending: list[int] = []  # indexes of items to insert
    for n, (key, sha) in enumerate(zip(keys, shas, strict=True)):
        if key in existing:
            results[n] = AddResult("duplicate", existing[key], sha)
        elif sha in known_raw:
            results[n] = AddResult("duplicate", known_raw[sha], sha)
        elif key not in first_in_batch:
            first_in_batch[key] = n
            pending.append(n)

    if pending:
        drv = _Driver(conn)
        stored_at = drv.ts(now_utc())
        rows = [_report_row(drv, items[n], shas[n], stored_at) for n in pending]
        returned = drv.insert_returning(
            "reports", REPORT_COLUMNS, rows, "id, organization_name, report_id"
        )
        inserted = {(org, rid): int(pk) for pk, org, rid in returned}
        lost = {keys[n] for n in pending if keys[n] not in inserted}
        if lost:  # stored before: by an earlier batch, or a concurrent writer just now
            existing.update(_existing_keys(conn, lost))
        policies: list[tuple[Any, ...]] = []
        details: list[tuple[Any, ...]] = []
        blobs: dict[str, tuple[int, bytes]] = {}
        for n in pending:
            key = keys[n]
            if key in inserted:
                pk = inserted[key]
                results[n] = AddResult("new", pk, shas[n])
                _child_rows(drv, pk, items[n].report, policies, details)
                blobs.setdefault(shas[n], (pk, items[n].raw))
            else:
                results[n] = AddResult("duplicate", existing[key], shas[n])
        drv.copy_or_insert("report_policies", POLICY_COLUMNS, policies)
        drv.copy_or_insert("failure_details", DETAIL_COLUMNS, details)
        if blobs:
            # Raw units are content-addressed: a unit already kept (another batch) is skipped.
            drv.insert_returning(
                "raw_blobs",
                ("sha256", "report_pk", "size", "raw"),
                [(s, pk, len(b), b) for s, (pk, b) in blobs.items()],
                "sha256",
            )
    # Later copies of a report that is new in this very batch point at the first one.
    for n, key in enumerate(keys):
        if results[n] is None:
            first = results[first_in_batch[key]]
            assert first is not None
            results[n] = AddResult("duplicate", first.report_pk, shas[n])
    return [r for r in results if r is not None]


def _key(item: NewReport) -> tuple[str, str]:
    return (_no_nul(item.report.organization_name), _no_nul(item.report.report_id))


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL (JSON allows "\u0000", hostile reports send
    # it, RFC 8460 §7); replace it on both backends so identities agree everywhere.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


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


def _report_row(drv: _Driver, item: NewReport, sha: str, stored_at: object) -> tuple[Any, ...]:
    r = item.report
    deviations = (*r.deviations, *item.deviations)
    return (
        *_key(item),
        drv.ts(r.start),
        drv.ts(r.end),
        drv.day(r.start),
        _clip(r.contact_info, "origin"),
        sha,
        _clip(item.origin, "origin"),
        drv.ts(item.received_at),
        stored_at,
        None if item.envelope is None else _envelope_json(item.envelope),
        drv.json(_deviation_json(deviations)) if deviations else "[]",
        len(r.policies),
        sum(p.successful_sessions for p in r.policies),
        sum(p.failed_sessions for p in r.policies),
    )


def _child_rows(
    drv: _Driver,
    pk: int,
    r: TlsReport,
    policies: list[tuple[Any, ...]],
    details: list[tuple[Any, ...]],
) -> None:
    day = drv.day(r.start)
    org = _no_nul(r.organization_name)
    # Hosts, IPs and result types repeat across a batch: clip each distinct value once.
    memo = drv.memo
    for p_idx, p in enumerate(r.policies):
        domain = _clip(p.policy_domain.lower().rstrip("."), "domain")
        ptype = _clip(p.policy_type, "type")
        policies.append(
            (
                pk, p_idx, ptype, domain, day, org,
                drv.strings(p.policy_string), drv.strings(p.mx_host),
                p.successful_sessions, p.failed_sessions,
            )
        )  # fmt: skip
        for d_idx, d in enumerate(p.failure_details):
            details.append(
                (
                    pk, p_idx, d_idx, ptype, domain, day, org,
                    memo.get(("type", d.result_type)) or _memo(memo, "type", d.result_type),
                    d.failed_session_count,
                    memo.get(("ip", d.sending_mta_ip)) or _memo(memo, "ip", d.sending_mta_ip),
                    memo.get(("rmx", d.receiving_mx_hostname))
                    or _memo(memo, "rmx", d.receiving_mx_hostname),
                    memo.get(("mx", d.receiving_mx_helo))
                    or _memo(memo, "mx", d.receiving_mx_helo),
                    memo.get(("ip", d.receiving_ip)) or _memo(memo, "ip", d.receiving_ip),
                    _text(d.additional_information),
                    _text(d.failure_reason_code),
                )
            )  # fmt: skip


def _memo(memo: dict[tuple[str, str | None], str | None], kind: str, value: str | None) -> Any:
    """Clip ``value`` as ``kind`` and remember it; "rmx" is a receiving MX name, which
    compares case-insensitively without the root dot (RFC 8461 §4.1)."""
    if not value:
        return value
    out = _clip(value.lower().rstrip("."), "mx") if kind == "rmx" else _clip(value, kind)
    memo[(kind, value)] = out
    return out


def add_quarantine(conn: Connection, item: NewQuarantine) -> QuarantineResult:
    sha = sha256_hex(item.raw)
    row = {
        "sha256": sha,
        "size": len(item.raw),
        "raw": item.raw,
        "origin": _clip(_no_nul(item.origin), "origin"),
        "code": _clip(_no_nul(item.code), "type"),
        "reason": _no_nul(item.reason),
        "received_at": item.received_at,
        "resolved": False,
    }
    new_id = conn.execute(
        insert_ignoring(conn, quarantine).returning(quarantine.c.id), row
    ).scalar_one_or_none()
    if new_id is not None:
        return QuarantineResult(int(new_id), "new")
    old = conn.execute(select(quarantine.c.id).where(quarantine.c.sha256 == sha)).scalar_one()
    return QuarantineResult(int(old), "duplicate")
