"""Reading stored rows back into values: a report rebuilt into the model, a check record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from stspilot.store.models import CheckRecord, StoredReport
from stspilot.store.schema import failure_details, report_policies, reports
from stspilot.tlsrpt.reports import Deviation, FailureDetail, PolicyResult, TlsReport


def load_report(conn: Connection, pk: int) -> StoredReport | None:
    """A stored report rebuilt into the model, with its audit metadata."""
    row = conn.execute(select(reports).where(reports.c.id == pk)).mappings().first()
    if row is None:
        return None
    pols = (
        conn.execute(
            select(report_policies)
            .where(report_policies.c.report_pk == pk)
            .order_by(report_policies.c.idx)
        )
        .mappings()
        .all()
    )
    dets = (
        conn.execute(
            select(failure_details)
            .where(failure_details.c.report_pk == pk)
            .order_by(failure_details.c.policy_idx, failure_details.c.idx)
        )
        .mappings()
        .all()
    )
    by_policy: dict[int, list[FailureDetail]] = {}
    for d in dets:
        by_policy.setdefault(d["policy_idx"], []).append(
            FailureDetail(
                result_type=d["result_type"],
                failed_session_count=d["failed_session_count"],
                sending_mta_ip=d["sending_mta_ip"],
                receiving_mx_hostname=d["receiving_mx_hostname"],
                receiving_mx_helo=d["receiving_mx_helo"],
                receiving_ip=d["receiving_ip"],
                additional_information=d["additional_information"],
                failure_reason_code=d["failure_reason_code"],
            )
        )
    policies = tuple(
        PolicyResult(
            policy_type=p["policy_type"],
            policy_domain=p["policy_domain"],
            policy_string=tuple(p["policy_string"]),
            mx_host=tuple(p["mx_host"]),
            successful_sessions=p["successful_sessions"],
            failed_sessions=p["failed_sessions"],
            failure_details=tuple(by_policy.get(p["idx"], ())),
        )
        for p in pols
    )
    deviations = tuple(Deviation(**d) for d in row["deviations"])
    report = TlsReport(
        organization_name=row["organization_name"],
        report_id=row["report_id"],
        start=row["start_at"],
        end=row["end_at"],
        contact_info=row["contact_info"],
        policies=policies,
    )
    return StoredReport(
        pk=pk,
        report=report,
        raw_sha256=row["raw_sha256"],
        origin=row["origin"],
        received_at=row["received_at"],
        stored_at=row["stored_at"],
        envelope=row["envelope"],
        deviations=deviations,
    )


def check_record(row: RowMapping | Mapping[str, Any]) -> CheckRecord:
    return CheckRecord(
        id=row["id"],
        domain=row["domain"],
        observed_at=row["observed_at"],
        stage=row["stage"],
        mode=row["mode"],
        worst_severity=row["worst_severity"],
        findings_count=row["findings_count"],
        policy_id=row["policy_id"],
        policy_sha256=row["policy_sha256"],
        mx_set=tuple(row["mx_set"]),
        result=row["result"],
    )
