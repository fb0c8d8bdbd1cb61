"""The values the store takes and gives back: new reports, add results, quarantine entries,
stored reports and check records (frozen dataclasses; no SQL here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from stspilot.tlsrpt.reports import Deviation, TlsReport

AddStatus = Literal["new", "duplicate"]


@dataclass(frozen=True, slots=True)
class NewReport:
    """One parsed report to store, with the raw unit (file, mail) it came from, for audit.

    ``envelope`` is the mail metadata (``stspilot.ingest.decode.Envelope`` as a mapping or the
    dataclass itself) stored as JSON; ``deviations`` are extra ones found outside the body
    (headers vs body); the report's own ``deviations`` are stored too.
    """

    report: TlsReport
    raw: bytes
    origin: str
    received_at: datetime
    envelope: Mapping[str, Any] | Any | None = None
    deviations: tuple[Deviation, ...] = ()


class AddResult(NamedTuple):
    """What became of one report. A named tuple: a batch makes thousands, and a frozen
    dataclass costs several times as much to create."""

    status: AddStatus
    report_pk: int
    sha256: str  # of the raw unit


@dataclass(frozen=True, slots=True)
class NewQuarantine:
    """Raw bytes that could not be turned into a report, with where they came from and why."""

    raw: bytes
    origin: str
    code: str  # a ParseError code, e.g. "report.json.invalid" or "mail.no-report"
    reason: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class QuarantineResult:
    id: int
    status: AddStatus


@dataclass(frozen=True, slots=True)
class BatchResult:
    reports: list[AddResult]
    quarantined: list[QuarantineResult]


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    id: int
    sha256: str
    size: int
    origin: str
    code: str
    reason: str
    received_at: datetime
    resolved: bool
    resolved_at: datetime | None
    resolved_report_pk: int | None
    note: str | None
    kept: int  # bytes kept: ``size``, or a prefix (``store.batch.QUARANTINE_KEEP_BYTES``)

    @property
    def truncated(self) -> bool:
        """Only a prefix of the input is kept (its size and SHA-256 are of the whole)."""
        return self.kept < self.size


@dataclass(frozen=True, slots=True)
class ReportListing:
    """A stored report's headline, for lists (no policies)."""

    pk: int
    organization_name: str
    report_id: str
    start: datetime
    end: datetime
    policy_domains: tuple[str, ...]
    successful_sessions: int
    failed_sessions: int
    origin: str
    received_at: datetime
    authenticity: str = ""  # store.queries.AUTHENTICITY: dkim, operator, https, mail


@dataclass(frozen=True, slots=True)
class StoredReport:
    pk: int
    report: TlsReport
    raw_sha256: str
    origin: str
    received_at: datetime
    stored_at: datetime
    envelope: Mapping[str, Any] | None
    deviations: tuple[Deviation, ...]  # the report's own and the extra ones, in that order


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One stored check of a domain (what the checker or the monitor saw at ``observed_at``)."""

    id: int
    domain: str
    observed_at: datetime
    stage: str
    mode: str | None
    worst_severity: str | None
    findings_count: int
    policy_id: str | None
    policy_sha256: str | None
    mx_set: tuple[str, ...]
    result: Mapping[str, Any] = field(default_factory=dict)
