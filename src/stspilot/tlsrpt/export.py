"""The summary's export shapes: JSON (``stspilot reports summary --json``, the API) and CSV
(``--csv``). Pure: a ``ReportSummary`` in, data or text out.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from stspilot.tlsrpt.summary import (
    AuthenticityLine,
    BreakdownLine,
    ReportSummary,
)

CSV_COLUMNS = (
    "section",
    "day",
    "key",
    "result_type",
    "reports",
    "successful",
    "failed",
    "sessions",
    "failure_rate",
    "refused_under_enforce",
    "cause",
    "fix",
    "verified",
    "unverifiable",
    "unsigned",
    "unchecked",
)


def summary_to_json(s: ReportSummary) -> dict[str, Any]:
    """The summary as JSON-ready data (``stspilot reports summary --json``)."""

    def breakdown(lines: tuple[BreakdownLine, ...]) -> list[dict[str, Any]]:
        return [
            {"key": b.key, "sessions": b.sessions, "result_types": dict(b.result_types)}
            for b in lines
        ]

    return {
        "domain": s.domain,
        "since": s.since.isoformat(),
        "until": s.until.isoformat(),
        "domains": list(s.domains),
        "reports": s.reports,
        "sessions": s.sessions,
        "successful": s.successful,
        "failed": s.failed,
        "failure_rate": round(s.failure_rate, 6),
        "daily": [
            {
                "day": d.day.isoformat(),
                "reports": d.reports,
                "successful": d.successful,
                "failed": d.failed,
                "failure_rate": round(d.failure_rate, 6),
            }
            for d in s.daily
        ],
        "result_types": [
            {
                "result_type": r.result_type,
                "sessions": r.sessions,
                "category": r.advice.category,
                "refused_under_enforce": r.advice.refused_under_enforce,
                "cause": r.advice.cause,
                "fix": r.advice.fix,
                "rfc": r.advice.rfc,
            }
            for r in s.result_types
        ],
        "by_mx": breakdown(s.by_mx),
        "senders": [
            {
                "organization": x.organization,
                "reports": x.reports,
                "successful": x.successful,
                "failed": x.failed,
                "failure_rate": round(x.failure_rate, 6),
                "result_types": dict(x.result_types),
            }
            for x in s.senders
        ],
        "by_sending_ip": breakdown(s.by_sending_ip),
        "would_refuse_under_enforce": {
            "sessions": s.refused_sessions,
            "mx": breakdown(s.refused_mx),
            "senders": breakdown(s.refused_senders),
        },
        "authenticity": None if s.authenticity is None else _authenticity_json(s.authenticity),
        "authenticity_by_sender": [
            {"organization": a.key, **_authenticity_json(a)} for a in s.authenticity_by_sender
        ],
        "lines": list(s.lines),
    }


def _authenticity_json(a: AuthenticityLine) -> dict[str, int]:
    return {
        "mailed": a.mailed,
        "verified": a.verified,
        "failed": a.failed,
        "unverifiable": a.unverifiable,
        "unsigned": a.unsigned,
        "unchecked": a.unchecked,
        "posted": a.posted,
        "imported": a.imported,
    }


def summary_csv_rows(s: ReportSummary) -> list[dict[str, str | int | float]]:
    """One flat table (``--csv``): a ``section`` column says which breakdown a row belongs to."""
    rows: list[dict[str, str | int | float]] = []
    for d in s.daily:
        rows.append(
            {
                "section": "day",
                "day": d.day.isoformat(),
                "reports": d.reports,
                "successful": d.successful,
                "failed": d.failed,
                "sessions": d.sessions,
                "failure_rate": round(d.failure_rate, 6),
            }
        )
    for r in s.result_types:
        rows.append(
            {
                "section": "result_type",
                "key": r.result_type,
                "result_type": r.result_type,
                "sessions": r.sessions,
                "refused_under_enforce": str(r.advice.refused_under_enforce).lower(),
                "cause": r.advice.cause,
                "fix": r.advice.fix,
            }
        )
    for section, lines in (
        ("mx", s.by_mx),
        ("sending_ip", s.by_sending_ip),
        ("refused_mx", s.refused_mx),
        ("refused_sender", s.refused_senders),
    ):
        for b in lines:
            for rt, n in b.result_types:
                rows.append({"section": section, "key": b.key, "result_type": rt, "sessions": n})
    for x in s.senders:
        rows.append(
            {
                "section": "sender",
                "key": x.organization,
                "reports": x.reports,
                "successful": x.successful,
                "failed": x.failed,
                "sessions": x.successful + x.failed,
                "failure_rate": round(x.failure_rate, 6),
            }
        )
    if s.authenticity is not None:
        # One "authenticity" row for all senders (key ""), then one per organisation;
        # "reports" is the mailed reports, "failed" the ones whose signature failed.
        for auth_section, auth_lines in (
            ("authenticity", (s.authenticity,)),
            ("authenticity_sender", s.authenticity_by_sender),
        ):
            for a in auth_lines:
                rows.append(
                    {
                        "section": auth_section,
                        "key": a.key,
                        "reports": a.mailed,
                        "verified": a.verified,
                        "failed": a.failed,
                        "unverifiable": a.unverifiable,
                        "unsigned": a.unsigned,
                        "unchecked": a.unchecked,
                    }
                )
    return rows


def summary_to_csv(s: ReportSummary) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary_csv_rows(s))
    return out.getvalue()
