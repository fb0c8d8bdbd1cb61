"""alerts.detect_changes: pure, table-driven; two checks in, alerts with stable keys out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from stspilot.check.evaluate import CheckResult, evaluate
from stspilot.check.json_doc import result_to_json
from stspilot.facts import (
    CertInfo,
    DnsStatus,
    DomainFacts,
    FetchOutcome,
    MxHost,
    MxLookup,
    MxProbe,
    PolicyFetch,
    SmtpOutcome,
    TlsResult,
    TxtLookup,
)
from stspilot.findings import Severity
from stspilot.monitor.alerts import Alert, detect_changes
from stspilot.rollout.evidence import (
    DailyTotal,
    FailureCount,
    ReportWindow,
    effective_mode,
    policy_digest,
)
from stspilot.store.models import CheckRecord

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=6)
D = "example.com"
MX1, MX2, MX3 = "mx1.example.com", "mx2.example.com", "mx3.example.com"
Change = Callable[[DomainFacts], DomainFacts]


def cert(host: str, days: int) -> CertInfo:
    return CertInfo(
        f"CN={host}",
        "CN=Test CA",
        (host,),
        T0 - timedelta(days=30),
        T1 + timedelta(days=days),
        False,
    )


def probe(host: str, days: int = 60) -> MxProbe:
    return MxProbe(
        host,
        SmtpOutcome.OK,
        ip="127.0.0.1",
        tls=TlsResult(True, version="TLSv1.3", cert=cert(host, days)),
    )


def body(mode: str = "enforce", mx: tuple[str, ...] = (MX1, MX2), max_age: int = 604800) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return ("\n".join(lines) + "\n").encode()


def fetched(data: bytes) -> PolicyFetch:
    tls = TlsResult(True, version="TLSv1.3", cert=cert(f"mta-sts.{D}", 60))
    url = f"https://mta-sts.{D}/.well-known/mta-sts.txt"
    return PolicyFetch(
        url, FetchOutcome.OK, status=200, content_type="text/plain", body=data, tls=tls
    )


def sts_id(value: str) -> Change:
    record = f"v=STSv1; id={value}".encode()
    return lambda f: replace(f, sts_txt=TxtLookup(f"_mta-sts.{D}", DnsStatus.OK, ((record,),)))


def served(data: bytes) -> Change:
    return lambda f: replace(f, policy=fetched(data))


def mx(*hosts: str, days: int = 60) -> Change:
    return lambda f: replace(
        f,
        mx=MxLookup(D, DnsStatus.OK, tuple(MxHost(10 * (i + 1), h) for i, h in enumerate(hosts))),
        mx_probes=tuple(probe(h, days if h == hosts[-1] else 60) for h in hosts),  # last: days
    )


def no_sts(f: DomainFacts) -> DomainFacts:
    return replace(f, sts_txt=TxtLookup(f"_mta-sts.{D}", DnsStatus.NXDOMAIN))


def no_policy(f: DomainFacts) -> DomainFacts:
    return replace(f, policy=PolicyFetch(f.policy.url, FetchOutcome.HTTP_STATUS, status=404))


def same(f: DomainFacts) -> DomainFacts:
    return f


HEALTHY = DomainFacts(
    domain=D,
    observed_at=T0,
    sts_txt=TxtLookup(f"_mta-sts.{D}", DnsStatus.OK, ((b"v=STSv1; id=1",),)),
    tlsrpt_txt=TxtLookup(
        f"_smtp._tls.{D}", DnsStatus.OK, ((b"v=TLSRPTv1; rua=mailto:tlsrpt@reports.example.net",),)
    ),
    mx=MxLookup(D, DnsStatus.OK, (MxHost(10, MX1), MxHost(20, MX2))),
    policy=fetched(body()),
    mx_probes=(probe(MX1), probe(MX2)),
)


def check(change: Change, at: datetime) -> CheckResult:
    return evaluate(replace(change(HEALTHY), observed_at=at))


def stored(result: CheckResult) -> CheckRecord:
    """The record ``history.save_check`` would store for ``result``."""
    worst = result.worst
    return CheckRecord(
        id=1,
        domain=result.domain,
        observed_at=result.observed_at,
        stage=str(result.stage),
        mode=effective_mode(result),
        worst_severity=worst.label if worst else None,
        findings_count=len(result.findings),
        policy_id=result.sts_record.id if result.sts_record else None,
        policy_sha256=policy_digest(result),
        mx_set=tuple(sorted(m.host for m in result.mx if m.host)),
        result=result_to_json(result),
    )


def alerts_for(before: Change | None, after: Change) -> list[Alert]:
    previous = stored(check(before, T0)) if before is not None else None
    return detect_changes(previous, check(after, T1), now=T1, expiry_days=14)


# (id, previous (None: first check), current, code expected, severity, lasting)
CASES: list[tuple[str, Change | None, Change, str, Severity, bool]] = [
    ("id-not-bumped", same, served(body(max_age=1209600)), "rollout.id-not-bumped",
     Severity.ERROR, False),
    ("id-changed", same, sts_id("2"), "policy.id-changed", Severity.INFO, False),
    ("mode-down", same, served(body("testing")), "policy.mode-changed", Severity.WARNING, False),
    ("mode-up", served(body("testing")), same, "policy.mode-changed", Severity.INFO, False),
    ("mx-drift", same, mx(MX1), "mx.drift", Severity.WARNING, False),
    ("mx-uncovered", same, mx(MX1, MX2, MX3), "mx.uncovered", Severity.ERROR, True),
    ("mx-uncovered-testing", None, lambda f: mx(MX1, MX3)(served(body("testing"))(f)),
     "mx.uncovered", Severity.WARNING, True),
    ("orphan-policy", None, no_sts, "sts.orphan.policy", Severity.WARNING, True),
    ("orphan-dns", None, no_policy, "sts.orphan.dns", Severity.ERROR, True),
    ("mx-cert-expiring", None, mx(MX1, MX2, days=5), "cert.mx", Severity.WARNING, True),
    ("mx-cert-expired", None, mx(MX1, MX2, days=-3), "cert.mx", Severity.ERROR, True),
    ("newly-failing", same, no_policy, "check.failing", Severity.ERROR, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "code", "severity", "lasting"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_detects(
    before: Change | None, after: Change, code: str, severity: Severity, lasting: bool
) -> None:
    found = [a for a in alerts_for(before, after) if a.code == code]
    assert len(found) == 1, [a.code for a in alerts_for(before, after)]
    alert = found[0]
    assert (alert.severity, alert.lasting, alert.domain) == (severity, lasting, D)
    assert alert.key.startswith(f"{D}|{code}")
    assert D in alert.message


def test_nothing_changed_nothing_wrong_no_alert() -> None:
    assert alerts_for(same, same) == []
    assert alerts_for(None, same) == []


def test_keys_are_stable_and_name_the_change() -> None:
    # The same change seen from two later runs has one key: the dedup table sends it once.
    first = alerts_for(same, served(body(max_age=1209600)))
    again = alerts_for(same, served(body(max_age=1209600)))
    assert [a.key for a in first] == [a.key for a in again]
    other = alerts_for(same, served(body(max_age=2419200)))
    assert {a.key for a in first}.isdisjoint(a.key for a in other)


def test_policy_edit_with_id_bump_is_no_error() -> None:
    found = alerts_for(same, lambda f: sts_id("2")(served(body(max_age=1209600))(f)))
    assert "rollout.id-not-bumped" not in {a.code for a in found}
    assert "policy.id-changed" in {a.code for a in found}


def test_recovery_clears_the_failing_condition() -> None:
    assert "check.failing" not in {a.code for a in alerts_for(no_policy, same)}
    (still,) = [a for a in alerts_for(no_policy, no_policy) if a.code == "check.failing"]
    assert "still fails" in still.message


def test_expiry_threshold_is_a_parameter() -> None:
    current = check(mx(MX1, MX2, days=20), T1)
    assert not [
        a for a in detect_changes(None, current, now=T1, expiry_days=14) if a.code == "cert.mx"
    ]
    assert (
        len(
            [
                a
                for a in detect_changes(None, current, now=T1, expiry_days=30)
                if a.code == "cert.mx"
            ]
        )
        == 1
    )


def window(day: date, failed: int, *, ok: int = 1000) -> ReportWindow:
    return ReportWindow(
        totals=(
            DailyTotal(day, "Google Inc.", ok, failed),
            DailyTotal(day - timedelta(days=1), "Google Inc.", ok, 99),  # older: not news
        ),
        failures=(
            FailureCount(day, "Google Inc.", "certificate-expired", MX2, failed),
            FailureCount(day - timedelta(days=1), "Google Inc.", "validation-failure", MX1, 99),
        ),
    )


@pytest.mark.parametrize(
    ("mode", "severity", "says"),
    [
        ("enforce", Severity.ERROR, "did not deliver"),
        ("testing", Severity.WARNING, "would be refused"),
    ],
)
def test_failures_in_the_newest_reports(mode: str, severity: Severity, says: str) -> None:
    current = check(served(body(mode)), T1)
    yesterday = T1.date() - timedelta(days=1)
    alerts = detect_changes(None, current, now=T1, reports=window(yesterday, 40))
    (alert,) = [a for a in alerts if a.code == "tlsrpt.failures"]
    assert (alert.severity, alert.lasting) == (severity, True)
    assert alert.key == f"{D}|tlsrpt.failures"
    assert f"for {yesterday}: 40 of 1,040 sessions failed" in alert.message
    assert f"certificate-expired 40; MX: {MX2} 40; reported by Google Inc." in alert.message
    assert says in alert.message and "validation-failure" not in alert.message


def test_no_report_alert_when_clean_stale_or_mode_none() -> None:
    yesterday = T1.date() - timedelta(days=1)
    enforce = check(same, T1)

    def codes(current: CheckResult, reports: ReportWindow) -> set[str]:
        return {a.code for a in detect_changes(None, current, now=T1, reports=reports)}

    assert "tlsrpt.failures" not in codes(enforce, window(yesterday, 0))  # clean newest day
    assert "tlsrpt.failures" not in codes(enforce, window(yesterday - timedelta(days=5), 40))
    assert "tlsrpt.failures" not in codes(check(served(body("none")), T1), window(yesterday, 40))
    assert "tlsrpt.failures" not in codes(enforce, ReportWindow())
