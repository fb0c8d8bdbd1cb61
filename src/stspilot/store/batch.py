"""Writing a batch: deduplicated reports with their policies, failure details and raw bytes,
and quarantine entries, all on the caller's connection (one transaction per batch).

Rows go in with executemany (SQLAlchemy Core "insertmanyvalues"), not the ORM per row; the
unique constraints decide duplicates (``INSERT ... ON CONFLICT DO NOTHING``), so concurrent
writers and re-runs after a crash never store a report twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Insert, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from stspilot.errors import ReportError
from stspilot.reports import Deviation, TlsReport
from stspilot.store.models import AddResult, NewQuarantine, NewReport, QuarantineResult
from stspilot.store.schema import failure_details, quarantine, raw_blobs, report_policies, reports

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
    return None if value is None else value[: _CLIP[kind]]


def _deviation_json(deviations: Sequence[Deviation]) -> list[dict[str, str]]:
    return [{"code": d.code, "path": d.path, "message": d.message} for d in deviations]


def _jsonable_envelope(envelope: object) -> Mapping[str, Any] | None:
    if envelope is None:
        return None
    if is_dataclass(envelope) and not isinstance(envelope, type):
        return asdict(envelope)
    if isinstance(envelope, Mapping):
        return dict(envelope)
    raise TypeError(f"envelope must be a mapping or a dataclass, not {type(envelope).__name__}")


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
            q = select(reports.c.raw_sha256, reports.c.id).where(
                reports.c.raw_sha256.in_(wanted[i : i + CHUNK])
            )
            for sha, pk in conn.execute(q):
                known_raw.setdefault(sha, pk)
    existing = _existing_keys(
        conn, {(i.report.organization_name, i.report.report_id) for i in items}
    )

    stored_at = now_utc()
    results: list[AddResult | None] = [None] * len(items)
    first_in_batch: dict[tuple[str, str], int] = {}
    pending: list[int] = []  # indexes of items to insert
    for n, (item, sha) in enumerate(zip(items, shas, strict=True)):
        key = (item.report.organization_name, item.report.report_id)
        if key in existing:
            results[n] = AddResult("duplicate", existing[key], sha)
        elif sha in known_raw:
            results[n] = AddResult("duplicate", known_raw[sha], sha)
        elif key not in first_in_batch:
            first_in_batch[key] = n
            pending.append(n)

    if pending:
        rows = [_report_row(items[n], shas[n], stored_at) for n in pending]
        stmt = insert_ignoring(conn, reports).returning(
            reports.c.id, reports.c.organization_name, reports.c.report_id
        )
        inserted = {(org, rid): pk for pk, org, rid in conn.execute(stmt, rows)}
        lost = [n for n in pending if _key(items[n]) not in inserted]
        if lost:  # a concurrent writer stored these between our SELECT and INSERT
            existing.update(_existing_keys(conn, {_key(items[n]) for n in lost}))
        policies: list[dict[str, Any]] = []
        details: list[dict[str, Any]] = []
        blobs: dict[str, bytes] = {}
        for n in pending:
            key = _key(items[n])
            if key in inserted:
                pk = inserted[key]
                results[n] = AddResult("new", pk, shas[n])
                _child_rows(pk, items[n].report, policies, details)
                blobs.setdefault(shas[n], items[n].raw)
            else:
                results[n] = AddResult("duplicate", existing[key], shas[n])
        if policies:
            conn.execute(report_policies.insert(), policies)
        if details:
            conn.execute(failure_details.insert(), details)
        if blobs:
            conn.execute(
                insert_ignoring(conn, raw_blobs),
                [{"sha256": s, "size": len(b), "raw": b} for s, b in blobs.items()],
            )
    # Later copies of a report that is new in this very batch point at the first one.
    for n, item in enumerate(items):
        if results[n] is None:
            first = results[first_in_batch[_key(item)]]
            assert first is not None
            results[n] = AddResult("duplicate", first.report_pk, shas[n])
    return [r for r in results if r is not None]


def _key(item: NewReport) -> tuple[str, str]:
    return (item.report.organization_name, item.report.report_id)


def _existing_keys(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    # Filter on report_id (selective) and match the organisation here: portable, and the
    # unique index (organization_name, report_id) still serves the insert.
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


def _report_row(item: NewReport, sha: str, stored_at: datetime) -> dict[str, Any]:
    r = item.report
    return {
        "organization_name": r.organization_name,
        "report_id": r.report_id,
        "start_at": r.start,
        "end_at": r.end,
        "day": r.start.astimezone(UTC).date(),
        "contact_info": _clip(r.contact_info, "origin"),
        "raw_sha256": sha,
        "origin": _clip(item.origin, "origin"),
        "received_at": item.received_at,
        "stored_at": stored_at,
        "envelope": _jsonable_envelope(item.envelope),
        "deviations": _deviation_json((*r.deviations, *item.deviations)),
        "policy_count": len(r.policies),
        "successful_sessions": sum(p.successful_sessions for p in r.policies),
        "failed_sessions": sum(p.failed_sessions for p in r.policies),
    }


def _child_rows(
    pk: int, r: TlsReport, policies: list[dict[str, Any]], details: list[dict[str, Any]]
) -> None:
    day = r.start.astimezone(UTC).date()
    org = r.organization_name
    for p_idx, p in enumerate(r.policies):
        domain = _clip(p.policy_domain.lower().rstrip("."), "domain")
        ptype = _clip(p.policy_type, "type")
        policies.append(
            {
                "report_pk": pk,
                "idx": p_idx,
                "policy_type": ptype,
                "policy_domain": domain,
                "day": day,
                "organization_name": org,
                "policy_string": list(p.policy_string),
                "mx_host": list(p.mx_host),
                "successful_sessions": p.successful_sessions,
                "failed_sessions": p.failed_sessions,
            }
        )
        for d_idx, d in enumerate(p.failure_details):
            mx = d.receiving_mx_hostname
            details.append(
                {
                    "report_pk": pk,
                    "policy_idx": p_idx,
                    "idx": d_idx,
                    "policy_type": ptype,
                    "policy_domain": domain,
                    "day": day,
                    "organization_name": org,
                    "result_type": _clip(d.result_type, "type"),
                    "failed_session_count": d.failed_session_count,
                    "sending_mta_ip": _clip(d.sending_mta_ip, "ip"),
                    # MX names compare case-insensitively without the root dot (RFC 8461 §4.1).
                    "receiving_mx_hostname": _clip(mx.lower().rstrip("."), "mx") if mx else mx,
                    "receiving_mx_helo": _clip(d.receiving_mx_helo, "mx"),
                    "receiving_ip": _clip(d.receiving_ip, "ip"),
                    "additional_information": d.additional_information,
                    "failure_reason_code": d.failure_reason_code,
                }
            )


def add_quarantine(conn: Connection, item: NewQuarantine) -> QuarantineResult:
    sha = sha256_hex(item.raw)
    row = {
        "sha256": sha,
        "size": len(item.raw),
        "raw": item.raw,
        "origin": _clip(item.origin, "origin"),
        "code": _clip(item.code, "type"),
        "reason": item.reason,
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
