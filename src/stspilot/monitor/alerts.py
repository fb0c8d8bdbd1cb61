"""What changed between two checks of a domain, as alerts with stable de-duplication keys.

Pure core: no I/O, no clock (``now`` is a parameter). ``detect_changes`` compares the stored
previous check (``CheckRecord``) with the current ``CheckResult``. Two kinds of alert:

- *events* (``lasting=False``): something changed between the two checks (id changed, mode
  changed, MX set changed, policy changed without an id bump). Their key names the change, so
  the same change is alerted once.
- *conditions* (``lasting=True``): something is wrong now (live MX not covered, orphan,
  certificate expiring, check failing, stuck in testing, failed sessions in the newest TLS-RPT
  reports). Their key names the condition, so the notifier can remind after a quiet period
  and say "resolved" when it clears.

Policy changed without an id bump and stuck in testing are the rollout's own judgements
(``stspilot.rollout.assess.assess_rollout``), reused rather than re-derived.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stspilot.findings import Severity
from stspilot.rollout.evidence import (
    HistoryEntry,
    ReportWindow,
    RolloutInputs,
    effective_mode,
    history_from_checks,
    live_state_from_check,
    policy_digest,
)
from stspilot.tlsrpt.cadence import Cadence, quiet

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.store.models import CheckRecord

__all__ = ["Alert", "detect_changes", "make_alert", "quiet_reporter_alerts"]

_MODE_RANK = {None: 0, "none": 0, "testing": 1, "enforce": 2}


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing to tell a person about one domain; ``key`` is stable across runs (dedup)."""

    key: str
    severity: Severity
    domain: str
    code: str
    message: str
    lasting: bool = False  # a condition (resolves when it clears) rather than a one-off event


def _alert(
    domain: str, code: str, severity: Severity, message: str, *parts: str, lasting: bool
) -> Alert:
    key = "|".join((domain, code, *parts))
    if len(key) > 400:  # keys are stored; a hostile MX set must not make them unbounded
        key = f"{domain}|{code}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return Alert(key, severity, domain, code, message, lasting)


def make_alert(
    domain: str, code: str, severity: Severity, message: str, *parts: str, lasting: bool
) -> Alert:
    """An alert from another module of the monitor (self-healing), keyed like these."""
    return _alert(domain, code, severity, message, *parts, lasting=lasting)


def _short(values: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(values[:limit]) or "(none)"
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _set_digest(values: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest()[:16]


def _previous_mode(previous: CheckRecord) -> str | None:
    return previous.mode


def _previous_usable(previous: CheckRecord) -> bool:
    eff = previous.result.get("effective") if isinstance(previous.result, Mapping) else None
    return bool(isinstance(eff, Mapping) and eff.get("usable"))


def _events(previous: CheckRecord, current: CheckResult) -> list[Alert]:
    d = current.domain
    out: list[Alert] = []
    new_id = current.sts_record.id if current.sts_record else None
    if previous.policy_id and new_id and previous.policy_id != new_id:
        out.append(
            _alert(
                d,
                "policy.id-changed",
                Severity.INFO,
                f"{d}: the _mta-sts TXT id changed from {previous.policy_id} to {new_id}; "
                "senders fetch the policy again (RFC 8461 §3.1).",
                new_id,
                lasting=False,
            )
        )
    old_mode, new_mode = _previous_mode(previous), effective_mode(current)
    if old_mode != new_mode:
        down = _MODE_RANK.get(new_mode, 0) < _MODE_RANK.get(old_mode, 0)
        out.append(
            _alert(
                d,
                "policy.mode-changed",
                Severity.WARNING if down else Severity.INFO,
                f"{d}: the policy senders apply changed from {old_mode or 'no policy'} to "
                f"{new_mode or 'no policy'} (RFC 8461 §5).",
                f"{old_mode}->{new_mode}",
                lasting=False,
            )
        )
    old_mx = sorted(previous.mx_set)
    new_mx = sorted({m.host for m in current.mx if m.host})
    if old_mx and old_mx != new_mx:
        gone = [h for h in old_mx if h not in new_mx]
        added = [h for h in new_mx if h not in old_mx]
        out.append(
            _alert(
                d,
                "mx.drift",
                Severity.WARNING,
                f"{d}: the MX set changed (added: {_short(added)}; removed: {_short(gone)}). "
                "Check that the policy's mx lines cover every live host (RFC 8461 §4.1, §8.1).",
                _set_digest(new_mx),
                lasting=False,
            )
        )
    return out


def _conditions(current: CheckResult, *, expiry_days: int, was_failing: bool) -> list[Alert]:
    d = current.domain
    out: list[Alert] = []
    usable = current.effective.usable and current.policy is not None
    if usable:
        for mx in current.mx:
            if mx.host and mx.covered_by is None:
                out.append(
                    _alert(
                        d,
                        "mx.uncovered",
                        Severity.ERROR
                        if current.effective.mode and str(current.effective.mode) == "enforce"
                        else Severity.WARNING,
                        f"{d}: live MX {mx.host} matches no mx line of the policy; under "
                        "enforce senders refuse to deliver to it (RFC 8461 §4.1).",
                        mx.host,
                        lasting=True,
                    )
                )
    for f in current.findings:
        if f.code in ("sts.orphan.dns", "sts.orphan.policy"):
            out.append(_alert(d, f.code, f.severity, f"{d}: {f.title}.", lasting=True))
        elif f.code in ("sts.policy.tls.expiring", "sts.policy.tls.expired"):
            out.append(
                _alert(
                    d, "cert.policy-host", f.severity, f"{d}: {f.title}.", f.subject, lasting=True
                )
            )
    for mx in current.mx:
        days = mx.days_to_expiry
        if mx.host and days is not None and days <= expiry_days:
            expired = days < 0
            out.append(
                _alert(
                    d,
                    "cert.mx",
                    Severity.ERROR if expired else Severity.WARNING,
                    f"{d}: the certificate of MX {mx.host} "
                    + ("has expired" if expired else f"expires in {days} day(s)")
                    + " (RFC 8461 §4.2).",
                    mx.host,
                    lasting=True,
                )
            )
    errors = [f for f in current.findings if f.severity is Severity.ERROR]
    if errors:
        titles = _short(sorted({f"{f.title} ({f.code})" for f in errors}), 3)
        out.append(
            _alert(
                d,
                "check.failing",
                Severity.ERROR,
                f"{d}: the check {'still fails' if was_failing else 'now fails'}: {titles}.",
                lasting=True,
            )
        )
    return out


def _previous_dane(previous: CheckRecord | None) -> dict[str, str]:
    """Host → DNSSEC status of its TLSA answer in the stored previous check (schema 2)."""
    result = previous.result if previous is not None else None
    mxs = result.get("mx") if isinstance(result, Mapping) else None
    out: dict[str, str] = {}
    for mx in mxs if isinstance(mxs, list) else ():
        dane = mx.get("dane") if isinstance(mx, Mapping) else None
        if isinstance(dane, Mapping) and isinstance(mx.get("host"), str):
            out[mx["host"]] = str(dane.get("dnssec", ""))
    return out


def _dane_alerts(previous: CheckRecord | None, current: CheckResult) -> list[Alert]:
    """DANE conditions (RFC 7672): a TLSA mismatch, a served key that only a CA record (or
    nothing of DANE-EE) still covers, DNSSEC bogus; each keyed by host, lasting."""
    d = current.domain
    before = _previous_dane(previous)
    out: list[Alert] = []
    for v in current.dane:
        state = str(v.state)
        if state in ("mismatch", "no-tls"):
            out.append(
                _alert(
                    d,
                    "dane.mismatch",
                    Severity.ERROR,
                    f"{d}: MX {v.host} fails DANE ({state}: {v.reason}); DANE senders refuse "
                    f"mail to it whatever the MTA-STS mode (RFC 7672 §3.1, RFC 8461 §2). "
                    "Publish the record for the served key (stspilot check prints it).",
                    v.host,
                    lasting=True,
                )
            )
        elif state == "bogus":
            turned = " turned bogus" if before.get(v.host) == "secure" else " is bogus"
            out.append(
                _alert(
                    d,
                    "dane.bogus",
                    Severity.ERROR,
                    f"{d}: DNSSEC of {v.tlsa_name}{turned} ({v.reason}); validating senders "
                    "treat the MX host as unreachable and defer mail (RFC 7672 §2.1.2).",
                    v.host,
                    lasting=True,
                )
            )
        elif state == "match" and _served_key_missing(v.records, v.matched):
            out.append(
                _alert(
                    d,
                    "dane.key-not-in-tlsa",
                    Severity.WARNING,
                    f"{d}: MX {v.host} serves a key that no DANE-EE record of {v.tlsa_name} "
                    f"names (it passes on {', '.join(v.matched)} only). Publish its 3 1 1 "
                    "record before the remaining records go (RFC 7671 §8.1).",
                    v.host,
                    lasting=True,
                )
            )
    mx_dnssec = current.mx_dnssec
    if mx_dnssec is not None and str(mx_dnssec.status) == "bogus":
        out.append(
            _alert(
                d,
                "dane.bogus",
                Severity.ERROR,
                f"{d}: DNSSEC of the MX records is bogus ({mx_dnssec.reason}); validating "
                "senders cannot deliver to the domain (RFC 7672 §2.1.2).",
                "MX",
                lasting=True,
            )
        )
    return out


def _served_key_missing(records: Sequence[str], matched: Sequence[str]) -> bool:
    """DANE-EE records exist, but the match came only from other (DANE-TA) records: the
    served key is not (yet) in TLSA, and removing the CA record would break delivery."""
    has_ee = any(r.startswith("3 ") for r in records)
    return has_ee and not any(r.startswith("3 ") for r in matched)


def _rollout_alerts(
    current: CheckResult,
    history: Sequence[HistoryEntry],
    reports: ReportWindow,
    now: datetime,
    stuck_after_days: int,
) -> list[Alert]:
    from stspilot.rollout.assess import assess_rollout

    if current.effective.reason_code == "not-fetched":
        return []
    assessment = assess_rollout(
        RolloutInputs(live=live_state_from_check(current), reports=reports, history=tuple(history)),
        now=now,
        stuck_after_days=stuck_after_days,
    )
    d = current.domain
    out: list[Alert] = []
    for f in assessment.findings:
        if f.code == "rollout.id-not-bumped":
            # Keyed by the new policy text: each unannounced edit is one alert.
            digest = (policy_digest(current) or "")[:16]
            out.append(
                _alert(d, f.code, f.severity, f"{d}: {f.detail}", f.subject, digest, lasting=False)
            )
        elif f.code == "rollout.stuck-testing":
            out.append(_alert(d, f.code, f.severity, f"{d}: {f.detail}", lasting=True))
    return out


# Reports come a day after the day they cover; a newest day older than this is stale news.
REPORT_FRESH_DAYS = 3


def _report_alerts(current: CheckResult, reports: ReportWindow, now: datetime) -> list[Alert]:
    """Failed sessions in the newest day of TLS-RPT reports (RFC 8460 §4.3): under enforce
    mail that senders did not deliver, under testing mail that enforce would refuse."""
    mode = effective_mode(current)
    if mode not in ("enforce", "testing") or not reports.totals:
        return []
    day = max(t.day for t in reports.totals)
    if (now.date() - day).days > REPORT_FRESH_DAYS:
        return []
    newest = [t for t in reports.totals if t.day == day]
    failed = sum(t.failed for t in newest)
    if failed == 0:
        return []
    total = failed + sum(t.successful for t in newest)
    by_type: Counter[str] = Counter()
    by_mx: Counter[str] = Counter()
    for f in reports.failures:
        if f.day == day:
            by_type[f.result_type] += f.sessions
            by_mx[f.receiving_mx or "(MX not named)"] += f.sessions
    types = _short([f"{t} {n}" for t, n in by_type.most_common()], 3)
    mxs = _short([f"{m} {n}" for m, n in by_mx.most_common()], 3)
    senders = _short(sorted({t.organization for t in newest if t.failed}), 3)
    d = current.domain
    if mode == "enforce":
        severity, outcome = Severity.ERROR, "under mode enforce these senders did not deliver"
    else:
        severity, outcome = Severity.WARNING, "under mode enforce these would be refused"
    message = (
        f"{d}: TLS-RPT reports for {day}: {failed:,} of {total:,} sessions failed "
        f"(result types: {types}; MX: {mxs}; reported by {senders}); {outcome} "
        "(RFC 8460 §4.3). `stspilot reports summary` has the causes and fixes."
    )
    return [_alert(d, "tlsrpt.failures", severity, message, lasting=True)]


def quiet_reporter_alerts(domain: str, cadences: Sequence[Cadence]) -> list[Alert]:
    """A regular reporter (``tlsrpt.cadence``) that stopped sending: its silence hides
    failures exactly when a change may have broken something (RFC 8460 §4.1: one report
    per UTC day). Reporters that were never regular raise nothing."""
    out = []
    for c in quiet(cadences):
        last = c.last_received.strftime("%Y-%m-%d %H:%M UTC") if c.last_received else "unknown"
        out.append(
            _alert(
                domain,
                "tlsrpt.reporter-quiet",
                Severity.WARNING,
                f"{domain}: {c.organization} sent TLS-RPT reports {c.habit} ({c.days_seen} "
                f"days since {c.first_day}) but none has covered a day since {c.last_day} "
                f"({c.silent_days} days; last received {last}). Check that the "
                f"_smtp._tls record still names a working rua, and that mail from "
                f"{c.organization} still arrives (RFC 8460 §3, §4.1).",
                c.organization[:200],
                lasting=True,
            )
        )
    return out


def detect_changes(
    previous: CheckRecord | None,
    current: CheckResult,
    *,
    now: datetime,
    expiry_days: int = 14,
    history: Sequence[HistoryEntry] | None = None,
    reports: ReportWindow | None = None,
    stuck_after_days: int = 30,
    reporters: Sequence[Cadence] = (),
) -> list[Alert]:
    """Alerts for ``current`` given the check stored before it (None: first check).

    ``history`` (oldest first, without ``current``) defaults to ``previous`` alone; give the
    stored history and the report window to detect "stuck in testing", which needs a clean
    enforce gate over time; give the reporters' cadences to detect a regular reporter that
    went quiet.
    """
    was_failing = previous is not None and previous.worst_severity == Severity.ERROR.label
    alerts = _conditions(current, expiry_days=expiry_days, was_failing=was_failing)
    if previous is not None:
        alerts = _events(previous, current) + alerts
    if history is None:
        history = history_from_checks([previous]) if previous is not None else ()
    alerts += _rollout_alerts(current, history, reports or ReportWindow(), now, stuck_after_days)
    alerts += _report_alerts(current, reports or ReportWindow(), now)
    alerts += _dane_alerts(previous, current)
    alerts += quiet_reporter_alerts(current.domain, reporters)
    unique: dict[str, Alert] = {}
    for a in alerts:
        unique.setdefault(a.key, a)
    return sorted(unique.values(), key=lambda a: (-a.severity, a.code, a.key))


def alert_to_json(alert: Alert) -> dict[str, Any]:
    return {
        "key": alert.key,
        "severity": alert.severity.label,
        "domain": alert.domain,
        "code": alert.code,
        "message": alert.message,
        "lasting": alert.lasting,
    }


SERVICE = "(service)"  # the "domain" of alerts about the service itself
DISK_MIN_FREE_RATIO = 0.10
DISK_MIN_FREE_BYTES = 2 * 1024**3


def disk_alerts(
    free: int,
    total: int,
    *,
    min_ratio: float = DISK_MIN_FREE_RATIO,
    min_bytes: int = DISK_MIN_FREE_BYTES,
) -> list[Alert]:
    """A lasting alert while the store's disk is nearly full (below ``min_ratio`` of its size
    or ``min_bytes``, whichever is larger); an error below a quarter of that. The service
    stops taking reports when the disk fills, for every tenant: tell someone first."""
    if total <= 0:
        return []
    floor = max(int(total * min_ratio), min(min_bytes, total // 2))
    if free >= floor:
        return []
    severity = Severity.ERROR if free < floor // 4 else Severity.WARNING
    message = (
        f"the store's disk has {free / 1024**3:.1f} GiB free of {total / 1024**3:.1f} GiB "
        f"(alert below {floor / 1024**3:.1f} GiB): free space or grow the disk before it fills"
    )
    return [_alert(SERVICE, "service.disk.low", severity, message, lasting=True)]
