"""Report aggregates to a plain-English TLS health summary (its JSON and CSV shapes are in
``summary_export.py``, what each result type means in ``advice.py``).

Pure core: no I/O, no clock; the window and the aggregate rows are parameters. The store's
queries return the row types defined here, so the store and this module share one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from stspilot.tlsrpt.advice import Advice, advice_for


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
    # Not mailed: POSTed over HTTPS (unauthenticated by nature, RFC 8460 §5.4, §7) or
    # imported from files by an operator.
    posted: int = 0
    imported: int = 0

    @property
    def mailed(self) -> int:
        return self.verified + self.failed + self.unverifiable + self.unsigned + self.unchecked


_AUTH_FIELDS = {
    "pass": "verified",
    "fail": "failed",
    "temperror": "unverifiable",
    "none": "unsigned",
    "unchecked": "unchecked",
    "https": "posted",
    "file": "imported",
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

    @property
    def dane_failed_sessions(self) -> int:
        """Sessions DANE senders refused (``tlsa`` policies: RFC 8460 §4.3.2.1)."""
        return sum(r.sessions for r in self.result_types if r.advice.category == "dane")


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
    """The authenticity line: mailed reports by DKIM outcome (RFC 8460 §3), then those
    POSTed over HTTPS (nobody authenticated them) and those an operator imported."""
    other = ""
    if a.posted:
        other += f"; {a.posted:,} POSTed over HTTPS (unauthenticated, RFC 8460 §5.4)"
    if a.imported:
        other += f"; {a.imported:,} imported from files"
    if not a.mailed:
        return (
            "Authenticity: no report in this window came by mail (DKIM does not apply)"
            + other
            + "."
        )
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
    return text + other + "."


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
    dane = _dane_sentence(s)
    if not s.refused_mx:
        verdict = (
            "None of the reported failures is of a kind that mode: enforce refuses (RFC 8461 §5)."
        )
        return tuple(overview), tuple(details), (verdict, *dane)
    hosts = ", ".join(
        f"{b.key or '(not reported)'} ({_types(b.result_types)})" for b in s.refused_mx
    )
    orgs = ", ".join(f"{b.key} ({b.sessions:,})" for b in s.refused_senders)
    verdict = (
        f"Under mode: enforce, up to {s.refused_sessions:,} of these sessions would have "
        f"been refused (RFC 8461 §5): at MX {hosts}; from senders {orgs}. Fix these "
        "before switching to enforce."
    )
    return tuple(overview), tuple(details), (verdict, *dane)


def _dane_sentence(s: ReportSummary) -> tuple[str, ...]:
    if not s.dane_failed_sessions:
        return ()
    types = ", ".join(
        f"{r.result_type} {r.sessions:,}" for r in s.result_types if r.advice.category == "dane"
    )
    return (
        f"DANE senders (tlsa policies) already refused {s.dane_failed_sessions:,} session(s) "
        f"({types}), whatever the MTA-STS mode: an MTA-STS pass never overrides a DANE "
        "failure (RFC 8461 §2). Run stspilot check on the domain: its dane.* findings name "
        "the MX host and the record to publish.",
    )
