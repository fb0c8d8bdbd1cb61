"""Report aggregates to a plain-English TLS health summary (and its JSON and CSV shapes).

Pure core: no I/O, no clock; the window and the aggregate rows are parameters. The store's
queries return the row types defined here, so the store and this module share one vocabulary.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import date
from typing import Any


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """Sessions of one policy domain on one UTC day, from the reports' summaries (RFC 8460 §4.4)."""

    policy_domain: str
    day: date
    reports: int
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Failed sessions of one result type, grouped by one dimension (``key``).

    ``key`` is the receiving MX, the sending organisation, the sending IP or (for the
    by-result-type breakdown) the result type itself; "" where the reporter left it out.
    """

    policy_domain: str
    key: str
    result_type: str
    sessions: int


@dataclass(frozen=True, slots=True)
class SenderTotal:
    """Sessions reported by one sending organisation for one policy domain."""

    policy_domain: str
    organization_name: str
    reports: int
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class AuthenticityCount:
    """Mailed reports of one sending organisation with one DKIM outcome (RFC 8460 §3):
    ``pass``, ``fail``, ``temperror``, ``none`` (unsigned) or ``unchecked`` (stored without
    verification)."""

    organization_name: str
    result: str
    reports: int


@dataclass(frozen=True, slots=True)
class ReportAggregates:
    """Everything the summary reads, for the window [since, until) in whole UTC days.

    ``authenticity`` is None when the caller did not read the envelopes (no authenticity
    line then, rather than a line of zeros)."""

    domain: str | None
    since: date
    until: date
    daily: tuple[DailyTotal, ...]
    by_result_type: tuple[FailureCount, ...]
    by_mx: tuple[FailureCount, ...]
    by_organization: tuple[FailureCount, ...]
    by_sending_ip: tuple[FailureCount, ...]
    senders: tuple[SenderTotal, ...]
    authenticity: tuple[AuthenticityCount, ...] | None = None


# --- what each result type means (RFC 8460 §4.3, IANA "STARTTLS Validation Result Types") -----


@dataclass(frozen=True, slots=True)
class Advice:
    """The likely cause of one result type and the fix, in the words an admin acts on."""

    result_type: str
    category: str  # "negotiation", "dane", "sts" or "unknown"
    refused_under_enforce: bool  # would an MTA-STS enforce policy make senders refuse it?
    cause: str
    fix: str
    rfc: str


# Under enforce, senders must not deliver to an MX that fails name matching or certificate
# validation or lacks STARTTLS (RFC 8461 §5, checklist A8.1): those sessions are the refusals.
# sts-* types say the policy itself could not be fetched or used; the sender then goes on with
# its cached policy or, without one, delivers as if there were no MTA-STS (§3.3, A3.14/A3.15),
# so they are failures to fix but not refusals. DANE types are DANE's, not MTA-STS's (§2).
# fmt: off
_ADVICE: tuple[Advice, ...] = (
    Advice("starttls-not-supported", "negotiation", True,
           "the receiving MX did not offer STARTTLS (or the sender could not start it)",
           "enable STARTTLS on that MX host, or remove the host from MX and from the policy",
           "RFC 8460 §4.3.1"),
    Advice("certificate-host-mismatch", "negotiation", True,
           "the MX certificate does not name the MX host (SAN mismatch)",
           "issue a certificate whose subjectAltName covers the exact MX host name",
           "RFC 8460 §4.3.1; RFC 8461 §4.2"),
    Advice("certificate-expired", "negotiation", True,
           "the MX certificate has expired",
           "renew the MX certificate (and automate renewal)",
           "RFC 8460 §4.3.1"),
    Advice("certificate-not-trusted", "negotiation", True,
           "the MX certificate is self-signed, from an unknown CA, or the chain is incomplete",
           "install a certificate from a public CA and serve the full chain (intermediates)",
           "RFC 8460 §4.3.1; RFC 8461 §4.2"),
    Advice("validation-failure", "negotiation", True,
           "a general validation failure; often an MX host that the policy's mx lines do not "
           "cover (Google reports those as validation-failure)",
           "add the MX host (or a correct one-label wildcard) to the policy's mx lines, bump "
           "the id, and read failure-reason-code for other causes",
           "RFC 8460 §4.3.3; RFC 8461 §4.1"),
    Advice("tlsa-invalid", "dane", False,
           "no TLSA record matched the MX certificate (DANE)",
           "update the TLSA records before rolling the certificate (publish new + old first)",
           "RFC 8460 §4.3.2.1"),
    Advice("dnssec-invalid", "dane", False,
           "the sender's resolver got no valid DNSSEC answer for the TLSA records",
           "fix the DNSSEC chain of the MX zone (DS, signatures, expiry)",
           "RFC 8460 §4.3.2.1"),
    Advice("dane-required", "dane", False,
           "the sender requires DANE for this destination but found no validated TLSA record",
           "publish DNSSEC-signed TLSA records for the MX host, or ask the sender why",
           "RFC 8460 §4.3.2.1; RFC 7672 §6"),
    Advice("sts-policy-fetch-error", "sts", False,
           "the sender could not fetch https://mta-sts.<domain>/.well-known/mta-sts.txt "
           "(unreachable, not 200, timeout, redirect)",
           "make the policy host answer 200 text/plain at the exact URL, without redirects",
           "RFC 8460 §4.3.2.2; RFC 8461 §3.3"),
    Advice("sts-policy-invalid", "sts", False,
           "the policy file was fetched but does not validate",
           "fix the policy syntax (version, mode, mx, max_age lines) and bump the TXT id",
           "RFC 8460 §4.3.2.2; RFC 8461 §3.2"),
    Advice("sts-webpki-invalid", "sts", False,
           "the certificate of mta-sts.<domain> failed WebPKI validation",
           "serve a valid public certificate for mta-sts.<domain> with the full chain",
           "RFC 8460 §4.3.2.2; RFC 8461 §3.3"),
)
# fmt: on
ADVICE: dict[str, Advice] = {a.result_type: a for a in _ADVICE}

UNKNOWN_ADVICE = Advice(
    "",
    "unknown",
    False,
    "a result type outside the IANA registry (a newer one, or a reporter's own)",
    "read the failure-reason-code and additional-information of these failures",
    "RFC 8460 §4.3, §6.6",
)


def advice_for(result_type: str) -> Advice:
    """The cause and fix of a result type; unknown types get generic advice (RFC 8460 §4.3)."""
    known = ADVICE.get(result_type)
    if known is not None:
        return known
    return Advice(
        result_type,
        UNKNOWN_ADVICE.category,
        False,
        UNKNOWN_ADVICE.cause,
        UNKNOWN_ADVICE.fix,
        UNKNOWN_ADVICE.rfc,
    )


# --- the summary --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayLine:
    day: date
    reports: int
    successful: int
    failed: int

    @property
    def sessions(self) -> int:
        return self.successful + self.failed

    @property
    def failure_rate(self) -> float:
        return self.failed / self.sessions if self.sessions else 0.0


@dataclass(frozen=True, slots=True)
class ResultTypeLine:
    advice: Advice
    sessions: int

    @property
    def result_type(self) -> str:
        return self.advice.result_type


@dataclass(frozen=True, slots=True)
class BreakdownLine:
    """Failed sessions of one MX host, sender or sending IP, with its result types."""

    key: str
    sessions: int
    result_types: tuple[tuple[str, int], ...]  # largest first


@dataclass(frozen=True, slots=True)
class SenderLine:
    organization: str
    reports: int
    successful: int
    failed: int
    result_types: tuple[tuple[str, int], ...]

    @property
    def failure_rate(self) -> float:
        total = self.successful + self.failed
        return self.failed / total if total else 0.0


@dataclass(frozen=True, slots=True)
class AuthenticityLine:
    """Mailed reports by DKIM outcome: of all senders (``key`` "") or of one organisation."""

    key: str
    verified: int = 0  # pass
    failed: int = 0  # fail
    unverifiable: int = 0  # temperror: the key could not be fetched
    unsigned: int = 0  # none
    unchecked: int = 0  # stored without verification (--verify-dkim off)

    @property
    def mailed(self) -> int:
        return self.verified + self.failed + self.unverifiable + self.unsigned + self.unchecked


_AUTH_FIELDS = {
    "pass": "verified",
    "fail": "failed",
    "temperror": "unverifiable",
    "none": "unsigned",
    "unchecked": "unchecked",
}


def _authenticity(
    counts: tuple[AuthenticityCount, ...],
) -> tuple[AuthenticityLine, tuple[AuthenticityLine, ...]]:
    per_org: dict[str, dict[str, int]] = {}
    for c in counts:
        field = _AUTH_FIELDS.get(c.result, "unchecked")
        acc = per_org.setdefault(c.organization_name, {})
        acc[field] = acc.get(field, 0) + c.reports
    total: dict[str, int] = {}
    for acc in per_org.values():
        for field, n in acc.items():
            total[field] = total.get(field, 0) + n
    orgs = sorted(
        (AuthenticityLine(org, **acc) for org, acc in per_org.items()),
        key=lambda a: (-(a.failed + a.unsigned), -a.mailed, a.key),
    )
    return AuthenticityLine("", **total), tuple(orgs)


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """TLS health of one domain (or all) over a window of whole UTC days, ready to render."""

    domain: str | None
    since: date
    until: date  # exclusive
    domains: tuple[str, ...]
    reports: int
    successful: int
    failed: int
    daily: tuple[DayLine, ...]  # every day of the window, zero where no report covered it
    result_types: tuple[ResultTypeLine, ...]
    by_mx: tuple[BreakdownLine, ...]
    senders: tuple[SenderLine, ...]
    by_sending_ip: tuple[BreakdownLine, ...]
    refused_mx: tuple[BreakdownLine, ...]  # only the result types enforce refuses
    refused_senders: tuple[BreakdownLine, ...]
    # The plain-English account, one sentence per line: the overview (totals, quiet days,
    # worst day), one line per result type / MX / failing sender, and the enforce verdict.
    overview: tuple[str, ...]
    details: tuple[str, ...]
    verdict: tuple[str, ...]
    # Mailed reports by DKIM outcome (RFC 8460 §3), overall and per organisation; None when
    # the envelopes were not read.
    authenticity: AuthenticityLine | None = None
    authenticity_by_sender: tuple[AuthenticityLine, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        return self.overview + self.details + self.verdict

    @property
    def sessions(self) -> int:
        return self.successful + self.failed

    @property
    def failure_rate(self) -> float:
        return self.failed / self.sessions if self.sessions else 0.0

    @property
    def refused_sessions(self) -> int:
        return sum(line.sessions for line in self.refused_mx)


def _breakdown(rows: tuple[FailureCount, ...], *, refused_only: bool) -> tuple[BreakdownLine, ...]:
    per_key: dict[str, dict[str, int]] = {}
    for row in rows:
        if refused_only and not advice_for(row.result_type).refused_under_enforce:
            continue
        types = per_key.setdefault(row.key, {})
        types[row.result_type] = types.get(row.result_type, 0) + row.sessions
    lines = [
        BreakdownLine(key, sum(types.values()), _largest_first(types))
        for key, types in per_key.items()
    ]
    return tuple(sorted(lines, key=lambda b: (-b.sessions, b.key)))


def _largest_first(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summarize(aggregates: ReportAggregates) -> ReportSummary:
    """Turn the store's aggregates into a ``ReportSummary`` with its plain-English lines."""
    per_day: dict[date, list[int]] = {}
    for d in aggregates.daily:
        acc = per_day.setdefault(d.day, [0, 0, 0])
        acc[0] += d.reports
        acc[1] += d.successful
        acc[2] += d.failed
    days: list[DayLine] = []
    day = aggregates.since
    while day < aggregates.until:
        n, ok, bad = per_day.get(day, (0, 0, 0))
        days.append(DayLine(day, n, ok, bad))
        day = date.fromordinal(day.toordinal() + 1)
    # Days outside the window (callers passing a wider query) still count in the totals.
    reports = sum(v[0] for v in per_day.values())
    successful = sum(v[1] for v in per_day.values())
    failed = sum(v[2] for v in per_day.values())

    type_totals: dict[str, int] = {}
    for row in aggregates.by_result_type:
        type_totals[row.result_type] = type_totals.get(row.result_type, 0) + row.sessions
    result_types = tuple(ResultTypeLine(advice_for(rt), n) for rt, n in _largest_first(type_totals))

    sender_types: dict[str, dict[str, int]] = {}
    for row in aggregates.by_organization:
        types = sender_types.setdefault(row.key, {})
        types[row.result_type] = types.get(row.result_type, 0) + row.sessions
    sender_acc: dict[str, list[int]] = {}
    for s in aggregates.senders:
        acc = sender_acc.setdefault(s.organization_name, [0, 0, 0])
        acc[0] += s.reports
        acc[1] += s.successful
        acc[2] += s.failed
    senders = tuple(
        sorted(
            (
                SenderLine(org, n, ok, bad, _largest_first(sender_types.get(org, {})))
                for org, (n, ok, bad) in sender_acc.items()
            ),
            key=lambda s: (-s.failed, -s.successful, s.organization),
        )
    )
    domains = tuple(sorted({d.policy_domain for d in aggregates.daily}))
    authenticity: AuthenticityLine | None = None
    authenticity_by_sender: tuple[AuthenticityLine, ...] = ()
    if aggregates.authenticity is not None:
        authenticity, authenticity_by_sender = _authenticity(aggregates.authenticity)
    summary = ReportSummary(
        domain=aggregates.domain,
        since=aggregates.since,
        until=aggregates.until,
        domains=domains,
        reports=reports,
        successful=successful,
        failed=failed,
        daily=tuple(days),
        result_types=result_types,
        by_mx=_breakdown(aggregates.by_mx, refused_only=False),
        senders=senders,
        by_sending_ip=_breakdown(aggregates.by_sending_ip, refused_only=False),
        refused_mx=_breakdown(aggregates.by_mx, refused_only=True),
        refused_senders=_breakdown(aggregates.by_organization, refused_only=True),
        overview=(),
        details=(),
        verdict=(),
        authenticity=authenticity,
        authenticity_by_sender=authenticity_by_sender,
    )
    overview, details, verdict = _plain_english(summary)
    return replace(summary, overview=overview, details=details, verdict=verdict)


def _authenticity_sentence(a: AuthenticityLine, by_sender: tuple[AuthenticityLine, ...]) -> str:
    """The authenticity line: mailed reports by DKIM outcome (RFC 8460 §3)."""
    if not a.mailed:
        return "Authenticity: no report in this window came by mail (DKIM does not apply)."
    text = (
        f"Authenticity (DKIM, RFC 8460 §3) of {a.mailed:,} mailed report"
        f"{'s' if a.mailed != 1 else ''}: {a.verified:,} verified, {a.failed:,} failed, "
        f"{a.unverifiable:,} unverifiable, {a.unsigned:,} unsigned"
    )
    if a.unchecked:
        text += f", {a.unchecked:,} not checked (ingested without --verify-dkim)"
    doubtful = [x for x in by_sender if x.failed or x.unsigned]
    if doubtful:
        text += "; failed or unsigned: " + ", ".join(
            f"{x.key} ({x.failed:,} failed, {x.unsigned:,} unsigned)" for x in doubtful[:5]
        )
    return text + "."


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%" if rate < 0.999 or rate == 1 else f"{rate * 100:.2f}%"


def _types(pairs: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{rt} {n:,}" for rt, n in pairs)


def _plain_english(s: ReportSummary) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(overview, details, verdict) sentences."""
    who = s.domain or (", ".join(s.domains) if s.domains else "all domains")
    last = date.fromordinal(s.until.toordinal() - 1)
    span = f"{s.since.isoformat()} to {last.isoformat()} ({len(s.daily)} days)"
    if s.reports == 0:
        advice = (
            "Without reports you cannot see failures: publish an _smtp._tls TXT record with "
            "a rua= address that stspilot reads (RFC 8460 §3), and allow a day for the first "
            "reports (they cover whole UTC days, RFC 8460 §4.1)."
        )
        return (f"{who}: no TLS-RPT reports for {span}.",), (), (advice,)
    senders = len(s.senders)
    overview = [
        f"{who}, {span}: {s.sessions:,} sessions in {s.reports:,} reports from {senders:,} "
        f"sending organisation{'s' if senders != 1 else ''}; "
        f"{_pct(1 - s.failure_rate)} succeeded, {s.failed:,} failed ({_pct(s.failure_rate)})."
    ]
    if s.authenticity is not None:
        overview.append(_authenticity_sentence(s.authenticity, s.authenticity_by_sender))
    quiet = [d.day.isoformat() for d in s.daily if d.reports == 0]
    if quiet:
        shown = ", ".join(quiet[:5]) + (f" and {len(quiet) - 5} more" if len(quiet) > 5 else "")
        overview.append(f"No report covered {len(quiet)} day(s): {shown}.")
    if s.failed == 0 and not s.result_types:
        clean = "No failures reported: every reported session used valid TLS."
        return tuple(overview), (), (clean,)
    worst = max(s.daily, key=lambda d: (d.failure_rate, d.failed))
    if worst.failed:
        overview.append(
            f"Worst day: {worst.day.isoformat()} with {worst.failed:,} of {worst.sessions:,} "
            f"sessions failed ({_pct(worst.failure_rate)})."
        )
    details = [
        f"{r.result_type}: {r.sessions:,} failed sessions. Cause: {r.advice.cause}. "
        f"Fix: {r.advice.fix} ({r.advice.rfc})."
        for r in s.result_types
    ]
    details += [
        f"MX {mx.key or '(not reported)'}: {mx.sessions:,} failed sessions "
        f"({_types(mx.result_types)})."
        for mx in s.by_mx[:5]
    ]
    details += [
        f"Sender {x.organization}: {x.failed:,} of {x.successful + x.failed:,} sessions failed "
        f"({_pct(x.failure_rate)})."
        for x in s.senders
        if x.failed
    ]
    if not s.refused_mx:
        verdict = (
            "None of the reported failures is of a kind that mode: enforce refuses (RFC 8461 §5)."
        )
        return tuple(overview), tuple(details), (verdict,)
    hosts = ", ".join(
        f"{b.key or '(not reported)'} ({_types(b.result_types)})" for b in s.refused_mx
    )
    orgs = ", ".join(f"{b.key} ({b.sessions:,})" for b in s.refused_senders)
    verdict = (
        f"Under mode: enforce, up to {s.refused_sessions:,} of these sessions would have "
        f"been refused (RFC 8461 §5): at MX {hosts}; from senders {orgs}. Fix these "
        "before switching to enforce."
    )
    return tuple(overview), tuple(details), (verdict,)


# --- export shapes ------------------------------------------------------------------------------

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
