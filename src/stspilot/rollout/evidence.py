"""What the rollout decides from: the latest check, report counts of a window, check history.

Pure core: no I/O, no clock. Plain values, built from a check (``live_state_from_check`` for a
fresh one, ``live_state_from_stored`` for its stored JSON form: one rule for both) and the store
(``history_from_checks``; ``store/checks.rollout_inputs`` is the one shell that assembles them),
or by tests by hand; ``window_from_reports`` counts parsed TLS-RPT reports the same way the
store's aggregates do.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from stspilot.errors import ParseError
from stspilot.sts.names import fold_name
from stspilot.sts.policy import format_policy, parse_policy
from stspilot.tlsrpt.reports import TlsReport

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult


@dataclass(frozen=True, slots=True)
class MxState:
    """One live MX host as the latest check saw it."""

    host: str
    covered_by: str | None = None  # the policy pattern that covers it, None when uncovered
    tls_ok: bool | None = None  # None: not probed
    problem: str = ""  # why STARTTLS or the certificate failed, in the probe's words
    days_to_expiry: int | None = None
    # DANE (RFC 7672): the host's DaneState value ("" when not checked) and, when DANE
    # senders refuse the host now, why
    dane: str = ""
    dane_problem: str = ""


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the latest check saw, reduced to what the rollout needs."""

    domain: str
    observed_at: datetime
    sts_id: str | None = None  # the _mta-sts TXT id; None when no usable record
    mode: str | None = None  # the served policy's mode; None when no usable policy
    max_age: int | None = None
    mx_patterns: tuple[str, ...] = ()
    policy_sha256: str = ""
    policy_problem: str = ""  # "" when fetched with status 200 and a valid certificate
    tlsrpt_rua: tuple[str, ...] = ()  # empty: no valid _smtp._tls record
    mx: tuple[MxState, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier check from the store (oldest first when handed to ``assess_rollout``)."""

    observed_at: datetime
    mode: str | None
    policy_id: str | None
    policy_sha256: str = ""
    mx_hosts: tuple[str, ...] = ()
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """Sessions one organisation reported for one UTC day (RFC 8460 §4.1: daily reports)."""

    day: date
    organization: str
    successful: int
    failed: int
    # False for reports nobody authenticated (RFC 8460 §5.4 HTTPS POSTs, mail without a
    # passing DKIM signature): they may make the gate fail, never pass (issue 15).
    authenticated: bool = True


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed sessions of one result type to one MX ("" when the reporter left it out)."""

    day: date
    organization: str
    result_type: str
    receiving_mx: str
    sessions: int
    authenticated: bool = True


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """The reports of a window, as counts (the store's aggregates or ``window_from_reports``)."""

    totals: tuple[DailyTotal, ...] = ()
    failures: tuple[FailureCount, ...] = ()

    def since(self, start: date) -> ReportWindow:
        return ReportWindow(
            tuple(t for t in self.totals if t.day >= start),
            tuple(f for f in self.failures if f.day >= start),
        )


@dataclass(frozen=True, slots=True)
class RolloutInputs:
    live: LiveState
    reports: ReportWindow = ReportWindow()
    history: tuple[HistoryEntry, ...] = ()
    planned_mx: tuple[str, ...] | None = None  # the MX set about to go live, if one is planned


def window_from_reports(reports: Iterable[TlsReport], domain: str) -> ReportWindow:
    """Counts for ``domain`` from parsed reports; a report's day is its start date (UTC)."""
    name = fold_name(domain)
    totals: Counter[tuple[date, str]] = Counter()
    failed: Counter[tuple[date, str]] = Counter()
    details: Counter[tuple[date, str, str, str]] = Counter()
    for report in reports:
        day = report.start.date()
        org = report.organization_name
        for policy in report.policies:
            if policy.policy_domain and fold_name(policy.policy_domain) != name:
                continue
            totals[day, org] += policy.successful_sessions
            failed[day, org] += policy.failed_sessions
            for d in policy.failure_details:
                mx = fold_name(d.receiving_mx_hostname or "")
                details[day, org, d.result_type, mx] += d.failed_session_count
    return ReportWindow(
        totals=tuple(
            DailyTotal(day, org, totals[day, org], failed[day, org])
            for day, org in sorted(totals.keys() | failed.keys())
        ),
        failures=tuple(
            FailureCount(day, org, rtype, mx, n)
            for (day, org, rtype, mx), n in sorted(details.items())
        ),
    )


# --- adapters from the check result and the store's check records ----------------------------


class CheckRow(Protocol):
    """What ``history_from_checks`` reads of a stored check (``store.models.CheckRecord``)."""

    @property
    def observed_at(self) -> datetime: ...
    @property
    def mode(self) -> str | None: ...
    @property
    def policy_id(self) -> str | None: ...
    @property
    def policy_sha256(self) -> str | None: ...
    @property
    def mx_set(self) -> tuple[str, ...]: ...
    @property
    def result(self) -> Mapping[str, Any]: ...


def policy_digest(result: CheckResult) -> str | None:
    """SHA-256 of the policy as senders understand it: the parsed policy formatted again, so a
    change of line endings or key order is not taken for a new policy; the raw text otherwise."""
    if result.policy is not None:
        text = format_policy(result.policy)
    elif result.policy_source is not None:
        text = result.policy_source
    else:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def policy_text_digest(text: str) -> str:
    """``policy_digest`` of a policy body as served: the same digest for the same policy."""
    try:
        canonical = format_policy(parse_policy(text))
    except ParseError:
        canonical = text
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def effective_mode(result: CheckResult) -> str | None:
    """The mode a sender without a cached policy applies; None when no usable policy."""
    eff = result.effective
    return str(eff.mode) if eff.usable and eff.mode is not None else None


def live_state_from_check(result: CheckResult) -> LiveState:
    """Reduce a fresh ``CheckResult`` (``evaluate``) to what the rollout decides from.

    Through its stored form (``check.json_doc.result_to_json``), so a fresh check and a stored
    one (``live_state_from_stored``) are read by one rule.
    """
    from stspilot.check.json_doc import result_to_json

    return live_state_from_stored(
        result_to_json(result),
        domain=result.domain,
        observed_at=result.observed_at,
        policy_sha256=policy_digest(result) or "",
    )


def live_state_from_stored(
    document: Mapping[str, Any], *, domain: str, observed_at: datetime, policy_sha256: str
) -> LiveState:
    """Reduce a check's JSON form (``stspilot.check/2``, as stored) to the rollout's evidence."""
    effective = document.get("effective") or {}
    policy = document.get("policy") if effective.get("usable") else None
    findings = document.get("findings") or []
    mx: list[MxState] = []
    for item in document.get("mx") or []:
        host = item.get("host")
        if not host:  # a null MX (RFC 7505) is no host to cover
            continue
        codes = set(item.get("findings") or [])
        problems = [
            f
            for f in findings
            if f.get("subject") == host
            and f.get("code") in codes
            and str(f.get("code", "")).startswith("mx.")
            and f.get("code") != "mx.cert.expiring"
        ]
        problem = f"{problems[0]['title']} ({problems[0]['code']})" if problems else ""
        if not problem and item.get("tls_ok") is False:
            problem = str(item.get("probe_outcome") or "")
        mx.append(
            MxState(
                host=fold_name(host),
                covered_by=item.get("covered_by"),
                tls_ok=item.get("tls_ok"),
                problem=problem,
                days_to_expiry=item.get("days_to_expiry"),
                **_dane_state(item.get("dane")),
            )
        )
    record = document.get("sts_record")
    tlsrpt = document.get("tlsrpt") or {}
    problem = ""
    if record is not None and policy is None:
        problem = f"{effective.get('reason', '')} ({effective.get('reason_code', '')})"
    return LiveState(
        domain=domain,
        observed_at=observed_at,
        sts_id=record.get("id") if isinstance(record, Mapping) else None,
        mode=policy.get("mode") if policy else None,
        max_age=policy.get("max_age") if policy else None,
        mx_patterns=tuple(policy.get("mx") or ()) if policy else (),
        policy_sha256=policy_sha256,
        policy_problem=problem,
        tlsrpt_rua=tuple(tlsrpt.get("rua") or ()) if tlsrpt.get("state") == "valid" else (),
        mx=tuple(mx),
    )


def _dane_state(verdict: Any) -> dict[str, str]:
    """An MX host's DANE verdict as stored (``stspilot.check/2``: state, reason, blocks_mail)."""
    if not isinstance(verdict, Mapping) or not verdict.get("state"):
        return {}
    state = str(verdict["state"])
    problem = f"{state}: {verdict.get('reason', '')}" if verdict.get("blocks_mail") else ""
    return {"dane": state, "dane_problem": problem}


def history_from_checks(rows: Iterable[CheckRow]) -> tuple[HistoryEntry, ...]:
    """Stored checks as history entries, oldest first; max_age is read from the stored JSON."""
    out: list[HistoryEntry] = []
    for row in rows:
        policy = row.result.get("policy") if isinstance(row.result, Mapping) else None
        max_age = policy.get("max_age") if isinstance(policy, Mapping) else None
        out.append(
            HistoryEntry(
                observed_at=row.observed_at,
                mode=row.mode,
                policy_id=row.policy_id,
                policy_sha256=row.policy_sha256 or "",
                mx_hosts=tuple(row.mx_set),
                max_age=max_age if isinstance(max_age, int) else None,
            )
        )
    out.sort(key=lambda e: e.observed_at)
    return tuple(out)
