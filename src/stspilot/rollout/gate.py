"""The enforce gate and the what-if: named criteria with evidence, from the rollout's inputs.

Pure core: no I/O, no clock (``now`` is a parameter). Each criterion is one question of the
staged playbook that must be answered "yes" before ``mode: enforce`` is safe (RFC 8461 §5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from stspilot.rollout.evidence import DailyTotal, LiveState, MxState, ReportWindow
from stspilot.sts.policy import mx_matches
from stspilot.tlsrpt.advice import ADVICE

# The result types a sender enforcing the policy refuses (RFC 8461 §5, checklist A8.1); one
# table, in summary.py, decides this for the summaries, the gate and the what-if alike.
REFUSED_UNDER_ENFORCE: frozenset[str] = frozenset(
    advice.result_type for advice in ADVICE.values() if advice.refused_under_enforce
)
# The DANE result types (advice category "dane"): refusals by DANE senders, counted apart.
DANE_RESULT_TYPES: frozenset[str] = frozenset(
    advice.result_type for advice in ADVICE.values() if advice.category == "dane"
)


class Stage(StrEnum):
    """Where a domain is on the playbook, as a sender without a cached policy sees it."""

    NONE = "none"  # neither MTA-STS nor TLS-RPT
    REPORTING = "reporting"  # TLS-RPT only
    TESTING = "testing"  # mode: testing, no failures in the gate window
    FIXING = "fixing"  # mode: testing with failures to fix
    ENFORCE = "enforce"
    WINDING_DOWN = "winding-down"  # mode: none (RFC 8461 §8.3)


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Criterion:
    """One named gate criterion with its evidence (shown whether it passes or not)."""

    name: str
    title: str
    verdict: Verdict
    evidence: str

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Sessions in the window that enforce would have refused, and where they came from."""

    days: int
    sessions: int
    failed: int
    refused: int
    by_organization: tuple[tuple[str, int], ...] = ()
    by_mx: tuple[tuple[str, int], ...] = ()
    by_result_type: tuple[tuple[str, int], ...] = ()
    other_failures: tuple[tuple[str, int], ...] = ()  # policy-fetch and unknown types
    gone_mx: tuple[tuple[str, int], ...] = ()  # failures on hosts no longer live (not counted)
    # DANE result types (tlsa-invalid, dnssec-invalid, dane-required; RFC 8460 §4.3.2.1):
    # sessions DANE senders already refused, whatever the MTA-STS mode (RFC 8461 §2)
    dane_refused: int = 0
    dane_by_type: tuple[tuple[str, int], ...] = ()
    # Successful sessions in reports nobody authenticated: shown, never counted in
    # ``sessions`` (a forged report claiming 10^9 successes must not dilute real failures).
    unauthenticated_sessions: int = 0
    by_reporter: tuple[ReporterLine, ...] = ()  # each reporter judged on its own
    volume_jumps: tuple[str, ...] = ()  # reporters whose volume jumped by orders of magnitude


@dataclass(frozen=True, slots=True)
class ReporterLine:
    """One reporting organisation's sessions in the window, judged on its own."""

    organization: str
    sessions: int
    failed: int
    authenticated: bool  # every report of it authenticated (DKIM-verified mail or a file)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.sessions if self.sessions else 0.0


JUMP_FACTOR = 100  # "orders of magnitude": a day over 100x the reporter's (or the field's) usual


def reporter_lines(totals: Sequence[DailyTotal]) -> tuple[ReporterLine, ...]:
    sessions: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    unauth: set[str] = set()
    for t in totals:
        sessions[t.organization] += t.successful + t.failed
        failed[t.organization] += t.failed
        if not t.authenticated:
            unauth.add(t.organization)
    return tuple(
        ReporterLine(org, sessions[org], failed[org], org not in unauth)
        for org in sorted(sessions, key=lambda o: (-failed[o], -sessions[o], o))
    )


def volume_jumps(totals: Sequence[DailyTotal]) -> tuple[str, ...]:
    """Reporters whose sessions on one day exceed ``JUMP_FACTOR`` times their median day (or,
    for a reporter with a single day, the median day of every other reporter)."""
    per: dict[str, Counter[date]] = {}
    for t in totals:
        per.setdefault(t.organization, Counter())[t.day] += t.successful + t.failed
    # Every "usual" is a median of some days' non-zero sessions, so at least the smallest of
    # them: when no day exceeds JUMP_FACTOR times that, nothing can jump (the usual case, in
    # O(days); the loop below costs O(days^2) a reporter, ~0.1 ms, on every inventory row).
    sizes = [n for days in per.values() for n in days.values() if n]
    if not sizes or max(sizes) <= JUMP_FACTOR * min(sizes):
        return ()
    out: list[str] = []
    for org, days in sorted(per.items()):
        others = [n for o, d in per.items() if o != org for n in d.values() if n]
        for day, n in sorted(days.items()):
            rest = [v for d, v in days.items() if d != day and v]
            usual = _median(rest) if rest else _median(others)
            if usual and n > JUMP_FACTOR * usual:
                out.append(f"{org}: {n:,} sessions on {day} (usually about {usual:,.0f})")
    return tuple(out)


def _median(values: Sequence[int]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ranked(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(((k, v) for k, v in counter.items() if v), key=lambda kv: (-kv[1], kv[0])))


def is_live(mx: str, live_hosts: frozenset[str]) -> bool:
    # A failure without a receiving MX (Microsoft, Mail.ru leave it out: checklist D.3, D.4)
    # might concern any live host, so it counts.
    return not mx or mx in live_hosts


def counted_sessions(window: ReportWindow) -> tuple[int, int]:
    """(sessions counted, successful sessions left out): every failure counts, whoever
    reported it; successes count only from authenticated reports."""
    counted = sum(t.successful if t.authenticated else 0 for t in window.totals)
    left_out = sum(0 if t.authenticated else t.successful for t in window.totals)
    return counted + sum(t.failed for t in window.totals), left_out


def compute_what_if(window: ReportWindow, live_hosts: frozenset[str], days: int) -> WhatIf:
    sessions, left_out = counted_sessions(window)
    failed = sum(t.failed for t in window.totals)
    by_org: Counter[str] = Counter()
    by_mx: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    other: Counter[str] = Counter()
    gone: Counter[str] = Counter()
    dane: Counter[str] = Counter()
    for f in window.failures:
        if not is_live(f.receiving_mx, live_hosts):
            gone[f.receiving_mx] += f.sessions
        elif f.result_type in DANE_RESULT_TYPES:
            dane[f.result_type] += f.sessions
        elif f.result_type in REFUSED_UNDER_ENFORCE:
            by_org[f.organization] += f.sessions
            by_mx[f.receiving_mx or "(not named by the reporter)"] += f.sessions
            by_type[f.result_type] += f.sessions
        else:
            other[f.result_type] += f.sessions
    # One session may be counted under several result types (RFC 8460 §4, checklist B4.14), so
    # the refused count never exceeds what the summaries say failed.
    refused = min(sum(by_type.values()), failed) if window.totals else sum(by_type.values())
    return WhatIf(
        days=days,
        sessions=sessions,
        failed=failed,
        refused=refused,
        by_organization=ranked(by_org),
        by_mx=ranked(by_mx),
        by_result_type=ranked(by_type),
        other_failures=ranked(other),
        gone_mx=ranked(gone),
        dane_refused=min(sum(dane.values()), failed) if window.totals else sum(dane.values()),
        dane_by_type=ranked(dane),
        unauthenticated_sessions=left_out,
        by_reporter=reporter_lines(window.totals),
        volume_jumps=volume_jumps(window.totals),
    )


def fmt_top(pairs: Sequence[tuple[str, int]], limit: int = 3) -> str:
    shown = ", ".join(f"{n:,} {k}" for k, n in pairs[:limit])
    return shown + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")


def evaluate_gate(
    live: LiveState,
    window: ReportWindow,
    *,
    days: int,
    min_sessions: int,
    now: datetime,
    report_max_age_days: int = 3,
) -> tuple[Criterion, ...]:
    """The enforce gate over ``window`` (the last ``days`` days of reports), in a fixed order."""
    criteria = (
        _clean_criterion(live, window, days),
        _volume_criterion(window, days, min_sessions),
        _coverage_criterion(live),
        _mx_tls_criterion(live),
        _policy_criterion(live),
        _tlsrpt_criterion(live, window, now, report_max_age_days),
    )
    dane = _dane_criterion(live)
    return criteria if dane is None else (*criteria, dane)


# DaneState values (check/dane_verdict.py) that mean DANE applies to the host
_DANE_APPLIES = frozenset(
    {"match", "mismatch", "no-tls", "unusable", "not-checked", "bogus", "lookup-failed"}
)


def _dane_criterion(live: LiveState) -> Criterion | None:
    """RFC 8461 §2: an MTA-STS pass never overrides a DANE failure, so an MX host that DANE
    senders refuse blocks enforce too. Only shown where some MX host publishes DANE."""
    if not any(m.dane in _DANE_APPLIES for m in live.mx):
        return None
    title = "No MX host fails DANE (TLSA matches the served certificate, DNSSEC valid)"
    bad = [f"{m.host}: {m.dane_problem}" for m in live.mx if m.dane_problem]
    if bad:
        return Criterion("dane", title, Verdict.FAIL, "; ".join(bad))
    states = ", ".join(f"{m.host}: {m.dane or 'not checked'}" for m in live.mx)
    return Criterion("dane", title, Verdict.PASS, states)


def _clean_criterion(live: LiveState, window: ReportWindow, days: int) -> Criterion:
    title = f"No TLS failures in the last {days} days"
    live_hosts = frozenset(m.host for m in live.mx)
    sessions, _ = counted_sessions(window)
    failed = sum(t.failed for t in window.totals)
    counted = [f for f in window.failures if f.sessions and is_live(f.receiving_mx, live_hosts)]
    gone = sum(f.sessions for f in window.failures if not is_live(f.receiving_mx, live_hosts))
    if counted:
        by_what: Counter[str] = Counter()
        for f in counted:
            by_what[
                f"{f.result_type} on {f.receiving_mx or 'an MX the reporter did not name'}"
            ] += f.sessions
        n = min(failed, sum(by_what.values())) if failed else sum(by_what.values())
        return Criterion(
            "reports-clean",
            title,
            Verdict.FAIL,
            f"{n:,} failed of {sessions:,} sessions: {fmt_top(ranked(by_what))}",
        )
    if failed and not gone:
        # The summaries count failures but no detail names them: no reason to trust it away.
        return Criterion(
            "reports-clean",
            title,
            Verdict.FAIL,
            f"{failed:,} failed of {sessions:,} sessions (the reports give no failure details)",
        )
    extra = f"; {gone:,} on MX hosts no longer live, not counted" if gone else ""
    return Criterion(
        "reports-clean", title, Verdict.PASS, f"0 failed of {sessions:,} sessions{extra}"
    )


def _volume_criterion(window: ReportWindow, days: int, min_sessions: int) -> Criterion:
    """Only authenticated reports count towards the volume: a forged report must not make a
    failing gate pass (RFC 8460 §7: HTTPS reports are unauthenticated)."""
    trusted = [t for t in window.totals if t.authenticated]
    sessions = sum(t.successful + t.failed for t in trusted)
    orgs = sorted({t.organization for t in trusted if t.successful + t.failed})
    left_out = sum(t.successful + t.failed for t in window.totals if not t.authenticated)
    evidence = f"{sessions:,} sessions from {len(orgs)} organisation(s)" + (
        f": {', '.join(orgs[:5])}" if orgs else ""
    )
    if left_out:
        evidence += f"; {left_out:,} sessions in unauthenticated reports not counted"
    jumps = volume_jumps(window.totals)
    if jumps:
        evidence += f"; volume jump: {'; '.join(jumps[:3])}"
    return Criterion(
        "report-volume",
        f"At least {min_sessions:,} reported sessions in the last {days} days",
        Verdict.PASS if sessions >= min_sessions else Verdict.FAIL,
        evidence,
    )


def _coverage_criterion(live: LiveState) -> Criterion:
    title = "Every live MX host is covered by the policy"
    if live.mode is None:
        return Criterion("mx-covered", title, Verdict.FAIL, "no policy is served yet")
    if not live.mx:
        return Criterion("mx-covered", title, Verdict.FAIL, "the domain has no live MX hosts")
    uncovered = [m.host for m in live.mx if not _covered(m, live.mx_patterns)]
    if uncovered:
        return Criterion("mx-covered", title, Verdict.FAIL, f"not covered: {', '.join(uncovered)}")
    pairs = ", ".join(f"{m.host} by {_covered(m, live.mx_patterns)}" for m in live.mx)
    return Criterion("mx-covered", title, Verdict.PASS, pairs)


def _covered(mx: MxState, patterns: Sequence[str]) -> str | None:
    if mx.covered_by:
        return mx.covered_by
    return next((p for p in patterns if mx_matches(p, mx.host)), None)


def _mx_tls_criterion(live: LiveState) -> Criterion:
    title = "Every MX host offers STARTTLS with a valid certificate for its name"
    if not live.mx:
        return Criterion("mx-tls", title, Verdict.FAIL, "the domain has no live MX hosts")
    bad = [m for m in live.mx if m.tls_ok is not True]
    if bad:
        words = "; ".join(
            f"{m.host}: {'not probed' if m.tls_ok is None else (m.problem or 'failed')}"
            for m in bad
        )
        return Criterion("mx-tls", title, Verdict.FAIL, words)
    expiry = [
        f"{m.host} expires in {m.days_to_expiry} days"
        for m in live.mx
        if m.days_to_expiry is not None
    ]
    return Criterion(
        "mx-tls", title, Verdict.PASS, "; ".join(expiry) or f"{len(live.mx)} host(s) valid"
    )


def _policy_criterion(live: LiveState) -> Criterion:
    title = f"The policy is fetchable from mta-sts.{live.domain} with a valid certificate"
    if live.sts_id is None:
        return Criterion("policy-fetch", title, Verdict.FAIL, "no _mta-sts TXT record published")
    if live.mode is None or live.policy_problem:
        return Criterion(
            "policy-fetch", title, Verdict.FAIL, live.policy_problem or "no usable policy"
        )
    return Criterion(
        "policy-fetch",
        title,
        Verdict.PASS,
        f"mode {live.mode}, max_age {live.max_age}, id {live.sts_id}",
    )


def _tlsrpt_criterion(
    live: LiveState, window: ReportWindow, now: datetime, max_age_days: int
) -> Criterion:
    title = "TLS-RPT is published and reports arrive"
    if not live.tlsrpt_rua:
        return Criterion("tlsrpt", title, Verdict.FAIL, "no valid _smtp._tls record")
    rua = ", ".join(live.tlsrpt_rua)
    days = [t.day for t in window.totals if t.authenticated]
    if not days:
        why = "only unauthenticated reports" if window.totals else "no reports stored"
        return Criterion("tlsrpt", title, Verdict.FAIL, f"rua={rua}; {why}")
    last = max(days)
    # Reports cover whole UTC days and arrive during the next day (RFC 8460 §4.1, checklist B6).
    if (now.date() - last).days > max_age_days:
        return Criterion(
            "tlsrpt", title, Verdict.FAIL, f"rua={rua}; the newest report covers {last}"
        )
    return Criterion("tlsrpt", title, Verdict.PASS, f"rua={rua}; newest report covers {last}")
