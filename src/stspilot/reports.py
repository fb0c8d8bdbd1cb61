"""TLS-RPT reports (RFC 8460 §4): the model, and ``parse_report`` from JSON bytes to it.

Pure core: no I/O, no clock. Real providers' quirks are accepted where senders send them and
recorded on the report as ``Deviation`` values; wrong kinds of values are ``ReportError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PolicyType(StrEnum):
    """RFC 8460 §4.4: "presently the only three valid choices"."""

    STS = "sts"
    TLSA = "tlsa"
    NO_POLICY_FOUND = "no-policy-found"


# IANA "STARTTLS Validation Result Types" (RFC 8460 §4.3, §6.6); unknown ones are kept and flagged.
RESULT_TYPES: frozenset[str] = frozenset(
    {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)


@dataclass(frozen=True, slots=True)
class Deviation:
    """A way the report departs from RFC 8460 that we tolerate, e.g. ``date.no-offset``."""

    code: str
    path: str  # JSON-pointer-like location, e.g. "/policies/0/policy/mx-host"
    message: str


@dataclass(frozen=True, slots=True)
class FailureDetail:
    result_type: str
    failed_session_count: int
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One element of ``policies``: the policy applied, its summary and failure details."""

    policy_type: str  # a PolicyType value, or an unknown string kept with a deviation
    policy_domain: str  # "" when the reporter left it out (sys4 tlsrpt-reporter)
    policy_string: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()
    successful_sessions: int = 0
    failed_sessions: int = 0
    failure_details: tuple[FailureDetail, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsReport:
    organization_name: str
    report_id: str
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    contact_info: str | None = None
    policies: tuple[PolicyResult, ...] = ()
    deviations: tuple[Deviation, ...] = ()
