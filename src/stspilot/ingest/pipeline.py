"""The ingest pipeline: raw units (a file, a mail, a POST body) -> parsed reports -> one commit.

A *unit* is the bytes one source hands over and later acknowledges as a whole (an IMAP
message, an SMTP DATA, an HTTP body, a file). Each unit goes through two steps:

1. ``prepare_unit`` (pure CPU, picklable, so it can run in a process pool): extract the report
   parts (``decode.extract_reports``), parse each (``reports.parse_report``) and decide what to
   store and what to quarantine.
2. ``commit_prepared``: hand many prepared units to ``Store.ingest_batch``, which writes them in
   ONE transaction. The store dedupes reports on (organisation, report-id) and quarantine
   entries on the raw bytes' SHA-256, so running the same input again is a no-op. That is the
   whole crash-safety story: a killed run leaves either a committed batch or nothing, and the
   next run turns what was committed into duplicates.

A batch the store fails is committed again one unit per transaction, so one unit can never
keep the others out; a unit the store refuses even alone (``StoreRefused``: values it cannot
hold, which no retry will change) is quarantined with the database's reason instead of being
handed back to its source to retry for ever (``commit_units``).

A unit holding several reports of which some do not parse: the good reports are stored AND the
whole raw unit is quarantined with the failing part's code and reason. Nothing is lost, the
good data is usable at once, and retrying the quarantined unit after a parser fix adds the
missing reports while the stored ones come back as duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from stspilot.errors import ParseError, ReportError, StoreError, StoreRefused
from stspilot.ingest.decode import (
    Envelope,
    Extracted,
    envelope_deviations,
    extract_reports,
)
from stspilot.ingest.mail import DkimVerdict
from stspilot.store.models import BatchResult, NewQuarantine, NewReport
from stspilot.store.rows import check_identity
from stspilot.tlsrpt.reports import fast_pickle, parse_report
from stspilot.tlsrpt.schema import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

# The quarantine code of a unit whose reports parsed but the database would not store.
STORE_REFUSED = "report.store.refused"


class IngestStore(Protocol):
    """What the pipeline needs from ``stspilot.store.Store``: one transactional batch write."""

    def ingest_batch(
        self, reports: Sequence[NewReport], quarantined: Sequence[NewQuarantine]
    ) -> BatchResult: ...


class MailVerifier(Protocol):
    """What the pipeline needs to verify a mail's DKIM signatures (``dkim.DkimVerifier``)."""

    def verify(self, raw: bytes, envelope: Envelope | None = None) -> DkimVerdict: ...


@dataclass(frozen=True, slots=True)
class Tally:
    """What happened to the reports and units of one run."""

    new: int = 0  # reports stored for the first time
    duplicate: int = 0  # reports already stored (retries, second rua, re-runs)
    quarantined: int = 0  # units kept in quarantine (unreadable, or partly so)
    errors: int = 0  # sources that could not even be read (no bytes to keep)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.new + other.new,
            self.duplicate + other.duplicate,
            self.quarantined + other.quarantined,
            self.errors + other.errors,
        )

    @classmethod
    def of(cls, outcomes: Iterable[RawOutcome]) -> Tally:
        new = duplicate = quarantined = 0
        for outcome in outcomes:
            new += outcome.new
            duplicate += outcome.duplicate
            quarantined += outcome.quarantined
        return cls(new, duplicate, quarantined)


@dataclass(frozen=True, slots=True)
class RawOutcome:
    """What became of one unit, once committed."""

    origin: str
    new: int = 0
    duplicate: int = 0
    quarantined: bool = False
    code: str | None = None  # why (part of) the unit was quarantined
    reason: str | None = None
    report_pks: tuple[int, ...] = ()


@fast_pickle
@dataclass(frozen=True, slots=True)
class Prepared:
    """One unit after parsing and before the store: what to add, what to quarantine."""

    origin: str
    reports: tuple[NewReport, ...] = ()
    quarantine: NewQuarantine | None = None


def prepare_unit(
    raw: bytes,
    *,
    origin: str,
    received_at: datetime,
    limits: Limits,
    dkim: MailVerifier | None = None,
) -> Prepared:
    """Extract and parse one unit; never raises for bad input (that becomes a quarantine).
    With ``dkim``, a mail's signatures are verified and the verdict goes on its envelope."""
    extracted = extract_unit(raw, limits)
    if dkim is not None and not isinstance(extracted, tuple):
        extracted = verify_parts(raw, extracted, dkim)
    return _finish(raw, origin, received_at, limits, extracted)


def verify_parts(raw: bytes, parts: list[Extracted], dkim: MailVerifier) -> list[Extracted]:
    """The parts of one mail with the DKIM verdict on their (shared) envelope; files and HTTP
    bodies (no envelope) unchanged. Never raises: a verifier bug is a ``temperror``."""
    envelope = next((p.envelope for p in parts if p.envelope is not None), None)
    if envelope is None:
        return parts
    try:
        verdict = dkim.verify(raw, envelope)
    except Exception as exc:  # the report must not be lost to the authenticity check
        verdict = DkimVerdict("temperror", reason=f"verifier error: {type(exc).__name__}: {exc}")
    checked = replace(envelope, dkim=verdict)
    return [p if p.envelope is None else replace(p, envelope=checked) for p in parts]


Unreadable = tuple[str, str]  # (code, reason)


def extract_unit(raw: bytes, limits: Limits) -> list[Extracted] | Unreadable:
    """The report parts of one unit (the mail decoding, the costly half of preparing it for
    mailed reports), or why there are none. Never raises."""
    try:
        extracted = extract_reports(raw, limits=limits)
    except ParseError as exc:
        return exc.code, str(exc)
    except Exception as exc:
        # The decoder raises ReportError for bad input; anything else is a bug there, but the
        # bytes must still be kept (design: "never dropped") and the run must go on.
        return "report.decode.internal", f"{type(exc).__name__}: {exc}"
    return extracted or ("report.none", "no TLS report found in this input")


def _finish(
    raw: bytes,
    origin: str,
    received_at: datetime,
    limits: Limits,
    extracted: list[Extracted] | Unreadable,
) -> Prepared:
    """Parse the extracted parts: reports to store and/or the unit to quarantine."""
    if isinstance(extracted, tuple):
        code, reason = extracted
        return prepare_unreadable(
            raw, origin=origin, received_at=received_at, code=code, reason=reason
        )
    reports: list[NewReport] = []
    failures: list[tuple[str, str, str]] = []  # (label, code, reason)
    for part in extracted:
        try:
            report = parse_report(part.json_bytes, limits=limits)
            check_identity(report)  # the store could not index it: keep the unit instead
        except ReportError as exc:
            failures.append((part.label, exc.code, str(exc)))
            continue
        except Exception as exc:  # a parser bug: keep the unit, say what broke, go on
            failures.append((part.label, "report.parse.internal", f"{type(exc).__name__}: {exc}"))
            continue
        extra = part.deviations
        if part.envelope is not None:  # RFC 8460 §5.3/§5.6: headers vs body, body wins
            extra += envelope_deviations(report, part.envelope)
        reports.append(
            NewReport(
                report=report,
                raw=raw,
                origin=origin,
                received_at=received_at,
                envelope=part.envelope,
                deviations=extra,
            )
        )
    quarantine = None
    if failures:
        _, code, reason = failures[0]
        if len(extracted) > 1:
            code = code if not reports else "report.partial"
            reason = "; ".join(f"{lbl}: {c}: {r}" for lbl, c, r in failures)
            if reports:
                reason = f"{len(reports)} of {len(extracted)} reports stored; {reason}"
        quarantine = NewQuarantine(
            raw=raw, origin=origin, code=code, reason=reason, received_at=received_at
        )
    return Prepared(origin=origin, reports=tuple(reports), quarantine=quarantine)


def prepare_unreadable(
    raw: bytes, *, origin: str, received_at: datetime, code: str, reason: str
) -> Prepared:
    """A unit that is kept only in quarantine (bad input, or refused before parsing)."""
    return Prepared(
        origin=origin,
        quarantine=NewQuarantine(
            raw=raw, origin=origin, code=code, reason=reason, received_at=received_at
        ),
    )


def commit_prepared(store: IngestStore, prepared: Sequence[Prepared]) -> list[RawOutcome]:
    """Write all units in one transaction; outcomes line up with ``prepared``.

    Raises whatever the store raises (``StoreError``, driver errors): then nothing of this
    batch was written and no source may be acknowledged.
    """
    if not prepared:
        return []
    result = store.ingest_batch(
        [r for p in prepared for r in p.reports],
        [p.quarantine for p in prepared if p.quarantine is not None],
    )
    added = iter(result.reports)
    kept = iter(result.quarantined)
    outcomes = []
    for unit in prepared:
        statuses = [next(added) for _ in unit.reports]
        if unit.quarantine is not None:
            next(kept)
        outcomes.append(
            RawOutcome(
                origin=unit.origin,
                new=sum(s.status == "new" for s in statuses),
                duplicate=sum(s.status == "duplicate" for s in statuses),
                quarantined=unit.quarantine is not None,
                code=unit.quarantine.code if unit.quarantine else None,
                reason=unit.quarantine.reason if unit.quarantine else None,
                report_pks=tuple(s.report_pk for s in statuses),
            )
        )
    return outcomes


def commit_units(store: IngestStore, units: Sequence[Prepared]) -> list[RawOutcome | StoreError]:
    """Commit ``units`` in one transaction; if that fails, each unit in one of its own.

    The result lines up with ``units``: the outcome of each committed unit, or the
    ``StoreError`` that kept it out (nothing of it was written; its source must retry). A unit
    the store refuses alone is kept in quarantine instead (``refused_quarantine``).
    """
    if not units:
        return []
    try:
        return list(commit_prepared(store, units))
    except StoreError as exc:
        if len(units) > 1:
            log.warning("a batch of %d units failed (%s); committing each alone", len(units), exc)
    return [_commit_alone(store, unit) for unit in units]


def _commit_alone(store: IngestStore, unit: Prepared) -> RawOutcome | StoreError:
    try:
        return commit_prepared(store, [unit])[0]
    except StoreRefused as exc:
        if not unit.reports:  # the quarantine entry itself was refused: nothing smaller to try
            return exc
        first = unit.reports[0]
        kept = refused_quarantine(first.raw, unit.origin, first.received_at, exc)
        if unit.quarantine is not None:  # a part that did not parse: say that too
            kept = replace(kept, reason=f"{kept.reason}; also {unit.quarantine.reason}")
        try:
            return commit_prepared(store, [Prepared(unit.origin, quarantine=kept)])[0]
        except StoreError as again:
            return again
    except StoreError as exc:
        return exc


def refused_quarantine(
    raw: bytes, origin: str, received_at: datetime, exc: StoreRefused
) -> NewQuarantine:
    """The quarantine entry for a unit whose reports the database refused (``STORE_REFUSED``):
    its bytes are kept (up to the quarantine's prefix, ``store.batch.QUARANTINE_KEEP_BYTES``),
    and ``stspilot reports retry`` stores them once the cause is fixed; a unit larger than the
    prefix keeps its size and hash, and must come again from its source."""
    return NewQuarantine(
        raw=raw,
        origin=origin,
        code=STORE_REFUSED,
        reason=f"parsed, but the database refused to store it: {exc}",
        received_at=received_at,
    )


def ingest_raw(
    store: IngestStore,
    raw: bytes,
    *,
    origin: str,
    received_at: datetime,
    limits: Limits | None = None,
    dkim: MailVerifier | None = None,
) -> RawOutcome:
    """Ingest one unit and commit it: the call behind SMTP DATA, HTTP POST and ``retry``.
    Raises ``StoreError`` when nothing was committed (the source must retry)."""
    use_limits = limits if limits is not None else DEFAULT_LIMITS
    unit = prepare_unit(raw, origin=origin, received_at=received_at, limits=use_limits, dkim=dkim)
    outcome = commit_units(store, [unit])[0]
    if isinstance(outcome, StoreError):
        raise outcome
    return outcome
