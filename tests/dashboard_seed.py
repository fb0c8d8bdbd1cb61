"""Realistic dashboard data for the page and browser tests: sample TLS-RPT reports through the
real ingest pipeline, and stored checks shaped like ``render.result_to_json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from stspilot.ingest.pipeline import commit_prepared, ingest_raw, prepare_unit
from stspilot.lab.sample_reports import generate_reports, to_gzip
from stspilot.store import Store
from stspilot.tlsrpt.schema import DEFAULT_LIMITS


def ingest_sample_reports(
    store: Store, domains: Sequence[str], *, days: int, now: datetime, seed: int = 7
) -> int:
    """About four reports per domain and day for the ``days`` days before ``now``; returns
    how many reports were stored."""
    start = now - timedelta(days=days)
    units = [
        prepare_unit(to_gzip(r), origin="test:sample", received_at=now, limits=DEFAULT_LIMITS)
        for r in generate_reports(4 * days * len(domains), seed=seed, domains=domains, start=start)
    ]
    return sum(outcome.new for outcome in commit_prepared(store, units))


def ingest_report(store: Store, report: dict[str, Any], *, now: datetime) -> None:
    ingest_raw(store, json.dumps(report).encode(), origin="test:crafted", received_at=now)


def check_result(
    domain: str,
    observed_at: datetime,
    *,
    mode: str = "testing",
    policy_id: str = "20261101T000000",
    mx: Sequence[str] = ("mx1.example.com",),
    cert_days: int = 40,
    findings: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A stored check's ``result`` (``stspilot.check/1`` domain entry) of a healthy domain."""
    not_after = observed_at + timedelta(days=cert_days)
    return {
        "domain": domain,
        "observed_at": observed_at.isoformat(),
        "stage": mode,
        "worst": max((f["severity"] for f in findings), default=None),
        "deadline_hit": False,
        "effective": {"usable": True, "mode": mode, "reason_code": None, "reason": ""},
        "sts_record": {"id": policy_id, "extensions": {}},
        "policy": {
            "version": "STSv1",
            "mode": mode,
            "max_age": 86400,
            "mx": list(mx),
            "extensions": {},
        },
        "policy_source": f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
        "tlsrpt": {"state": "valid", "rua": [f"mailto:tlsrpt@{domain}"], "extensions": {}},
        "mx": [
            {
                "host": host,
                "preference": 10 * (i + 1),
                "covered_by": host,
                "probe_outcome": "ok",
                "tls_ok": True,
                "tls_version": "TLSv1.3",
                "cert_not_after": (not_after + timedelta(days=i)).isoformat(),
                "days_to_expiry": cert_days + i,
                "findings": [],
            }
            for i, host in enumerate(mx)
        ],
        "findings": list(findings),
    }


def save_check(store: Store, domain: str, observed_at: datetime, **options: Any) -> int:
    result = check_result(domain, observed_at, **options)
    return store.save_check(
        domain=domain,
        observed_at=observed_at,
        stage=result["stage"],
        mode=result["policy"]["mode"],
        worst_severity=result["worst"],
        findings_count=len(result["findings"]),
        policy_id=result["sts_record"]["id"],
        policy_sha256="",
        mx_set=[m["host"] for m in result["mx"]],
        result=result,
    )


FINDING = {
    "code": "mx.cert.expiring",
    "severity": "warning",
    "title": "MX certificate expires soon",
    "detail": "The certificate of mx2.example.com expires in 9 days.",
    "fix": "Renew the certificate of mx2.example.com before it expires.",
    "rfc": "RFC 8461 §4.2",
    "subject": "mx2.example.com",
}
