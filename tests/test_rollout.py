"""assess_rollout: stages, the enforce gate, what-if and runbooks; pure (no network, no store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stspilot.check.evaluate import evaluate
from stspilot.facts import FetchOutcome, PolicyFetch, TlsFailure, TlsResult
from stspilot.rollout.assess import (
    DailyTotal,
    FailureCount,
    HistoryEntry,
    LiveState,
    MxState,
    ReportWindow,
    RolloutAssessment,
    RolloutInputs,
    Stage,
    assess_gate,
    assess_rollout,
    window_from_reports,
)
from stspilot.rollout.evidence import history_from_checks, live_state_from_check
from stspilot.rollout.generate import DAY, WEEK
from stspilot.tlsrpt.reports import FailureDetail, PolicyResult, TlsReport
from test_evaluate import (  # type: ignore[import-not-found]
    HEALTHY,
    MX2,
    TESTING,
    URL,
    tls_fail,
    with_probe,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
HOSTS = ("mx1.example.com", "mx2.example.com")
OLD_ID = "20261101000000"


def live(
    *,
    mode: str | None = "testing",
    hosts: Iterable[str] = HOSTS,
    patterns: Iterable[str] | None = None,
    sts_id: str | None = OLD_ID,
    rua: tuple[str, ...] = ("mailto:tlsrpt@reports.example.net",),
    policy_problem: str = "",
    tls: Mapping[str, str | None] | None = None,
    max_age: int | None = DAY,
    sha: str = "aaa",
) -> LiveState:
    """A live state; ``tls`` maps host -> problem (None: not probed)."""
    hosts = tuple(hosts)
    pats = tuple(hosts if patterns is None else patterns)
    tls = tls or {}
    states = []
    for h in hosts:
        covered = next(
            (p for p in pats if p == h or (p.startswith("*.") and h.partition(".")[2] == p[2:])),
            None,
        )
        if h in tls:
            problem = tls[h]
            states.append(MxState(h, covered, None if problem is None else False, problem or ""))
        else:
            states.append(MxState(h, covered, True, "", days_to_expiry=60))
    return LiveState(
        domain="example.com",
        observed_at=NOW,
        sts_id=sts_id if mode is not None or sts_id else None,
        mode=mode,
        max_age=max_age if mode else None,
        mx_patterns=pats if mode else (),
        policy_sha256=sha if mode else "",
        policy_problem=policy_problem,
        tlsrpt_rua=rua,
        mx=tuple(states),
    )


def window(
    *,
    days: int = 7,
    orgs: Iterable[str] = ("Google LLC", "Microsoft Corporation"),
    per_day: int = 40,
    failures: Iterable[tuple[int, str, str, str, int]] = (),
    last_day_offset: int = 1,
) -> ReportWindow:
    """Daily totals ending ``last_day_offset`` days ago; failures: (days ago, org, type, mx, n)."""
    fails = list(failures)
    totals = []
    for back in range(last_day_offset, last_day_offset + days):
        day = TODAY - timedelta(days=back)
        for org in orgs:
            failed = sum(n for b, o, _, _, n in fails if b == back and o == org)
            totals.append(DailyTotal(day, org, per_day, failed))
    details = tuple(
        FailureCount(TODAY - timedelta(days=b), o, t, mx, n) for b, o, t, mx, n in fails
    )
    return ReportWindow(tuple(totals), details)


def assess(
    state: LiveState,
    reports: ReportWindow | None = None,
    history: Iterable[HistoryEntry] = (),
    **kwargs: Any,
) -> RolloutAssessment:
    inputs = RolloutInputs(
        live=state,
        reports=window() if reports is None else reports,
        history=tuple(history),
        planned_mx=kwargs.pop("planned_mx", None),
    )
    return assess_rollout(inputs, now=NOW, **kwargs)


def codes(a: RolloutAssessment) -> list[str]:
    return [f.code for f in a.findings]


def gate(a: RolloutAssessment) -> dict[str, bool]:
    return {c.name: c.passed for c in a.gate}


ALL_PASS = {
    "reports-clean": True,
    "report-volume": True,
    "mx-covered": True,
    "mx-tls": True,
    "policy-fetch": True,
    "tlsrpt": True,
}

# --- stages ---------------------------------------------------------------------------------

STAGE_CASES = [
    ("nothing published", live(mode=None, sts_id=None, rua=()), window(days=0), Stage.NONE),
    ("TLS-RPT only", live(mode=None, sts_id=None), None, Stage.REPORTING),
    (
        "TXT without a usable policy",
        live(mode=None, policy_problem="http-status 404"),
        None,
        Stage.REPORTING,
    ),
    ("testing, clean", live(), None, Stage.TESTING),
    (
        "testing with failures",
        live(),
        window(failures=[(2, "Google LLC", "certificate-expired", "mx2.example.com", 5)]),
        Stage.FIXING,
    ),
    ("enforce", live(mode="enforce", max_age=WEEK), None, Stage.ENFORCE),
    ("mode none", live(mode="none", patterns=()), None, Stage.WINDING_DOWN),
]


@pytest.mark.parametrize(
    ("state", "reports", "stage"),
    [c[1:] for c in STAGE_CASES],
    ids=[c[0] for c in STAGE_CASES],
)
def test_stage(state: LiveState, reports: ReportWindow | None, stage: Stage) -> None:
    assert assess(state, reports).stage is stage


# --- the gate, one criterion at a time ------------------------------------------------------

GATE_CASES: list[tuple[str, LiveState, ReportWindow | None, dict[str, bool], str]] = [
    ("all clean", live(), None, ALL_PASS, "0 failed of 560 sessions"),
    (
        "failures on a live MX",
        live(),
        window(failures=[(1, "Google LLC", "certificate-host-mismatch", "mx1.example.com", 7)]),
        {**ALL_PASS, "reports-clean": False},
        "7 failed of 567 sessions: 7 certificate-host-mismatch on mx1.example.com",
    ),
    (
        "failures the reporter did not attribute to an MX (Mail.ru style)",
        live(),
        window(
            failures=[(3, "Mail.Ru", "validation-failure", "", 4)], orgs=("Mail.Ru", "Google LLC")
        ),
        {**ALL_PASS, "reports-clean": False},
        "did not name",
    ),
    (
        "failed sessions without any failure details",
        live(),
        ReportWindow((DailyTotal(TODAY - timedelta(days=1), "Google LLC", 100, 3),)),
        {**ALL_PASS, "reports-clean": False},
        "no failure details",
    ),
    (
        "failures only on an MX that is no longer live",
        live(),
        window(failures=[(2, "Google LLC", "certificate-expired", "old-mx.example.com", 9)]),
        ALL_PASS,
        "9 on MX hosts no longer live",
    ),
    (
        "too few sessions",
        live(),
        window(per_day=1),
        {**ALL_PASS, "report-volume": False},
        "14 sessions from 2 organisation(s)",
    ),
    (
        "no reports at all",
        live(),
        window(days=0),
        {**ALL_PASS, "report-volume": False, "tlsrpt": False},
        "no reports stored",
    ),
    (
        "reports stopped arriving",
        live(),
        window(last_day_offset=5),
        {**ALL_PASS, "tlsrpt": False},
        "newest report covers 2026-11-17",
    ),
    ("no TLS-RPT record", live(rua=()), None, {**ALL_PASS, "tlsrpt": False}, "no valid _smtp._tls"),
    (
        "an MX outside the policy",
        live(patterns=("mx1.example.com",)),
        None,
        {**ALL_PASS, "mx-covered": False},
        "not covered: mx2.example.com",
    ),
    (
        "wildcard covers both",
        live(patterns=("*.example.com",)),
        None,
        ALL_PASS,
        "mx1.example.com by *.example.com",
    ),
    (
        "expired MX certificate",
        live(tls={"mx2.example.com": "certificate has expired"}),
        None,
        {**ALL_PASS, "mx-tls": False},
        "mx2.example.com: certificate has expired",
    ),
    (
        "MX not probed",
        live(tls={"mx1.example.com": None}),
        None,
        {**ALL_PASS, "mx-tls": False},
        "mx1.example.com: not probed",
    ),
    (
        "policy host certificate expired",
        live(policy_problem="sts.policy.tls.expired: certificate has expired"),
        None,
        {**ALL_PASS, "policy-fetch": False},
        "certificate has expired",
    ),
    (
        "no policy yet",
        live(mode=None, sts_id=None),
        None,
        {**ALL_PASS, "mx-covered": False, "policy-fetch": False},
        "no _mta-sts TXT record",
    ),
]


@pytest.mark.parametrize(
    ("state", "reports", "expected", "evidence"),
    [c[1:] for c in GATE_CASES],
    ids=[c[0] for c in GATE_CASES],
)
def test_gate_criteria(
    state: LiveState, reports: ReportWindow | None, expected: dict[str, bool], evidence: str
) -> None:
    a = assess(state, reports)
    assert gate(a) == expected
    assert a.ready is all(expected.values())
    assert any(evidence in c.evidence for c in a.gate), [c.evidence for c in a.gate]
    assert all(c.evidence for c in a.gate)  # evidence shown whether it passes or not


def test_a_missing_intermediate_fails_the_gate_as_an_mx_and_a_policy_problem() -> None:
    """From ``evaluate`` to the gate: a leaf served without its intermediate is a failure."""
    facts = TESTING(with_probe(tls_fail(TlsFailure.CHAIN_INCOMPLETE))(HEALTHY))
    mx_state = live_state_from_check(evaluate(facts))
    a = assess_gate(mx_state, window(), now=NOW)
    mx_tls = next(c for c in a.gate if c.name == "mx-tls")
    assert not mx_tls.passed and MX2 in mx_tls.evidence
    assert "mx.cert.chain-incomplete" in mx_tls.evidence
    fetch = PolicyFetch(
        URL, FetchOutcome.TLS_FAILED, tls=TlsResult(False, TlsFailure.CHAIN_INCOMPLETE)
    )
    policy_state = live_state_from_check(evaluate(replace(HEALTHY, policy=fetch)))
    policy = next(
        c for c in assess_gate(policy_state, window(), now=NOW).gate if c.name == "policy-fetch"
    )
    assert not policy.passed and "sts.policy.tls.chain-incomplete" in policy.evidence


def test_failures_older_than_the_gate_window_do_not_block() -> None:
    reports = window(
        days=14, failures=[(10, "Google LLC", "certificate-expired", "mx1.example.com", 50)]
    )
    a = assess(live(), reports)
    assert gate(a)["reports-clean"] and a.stage is Stage.TESTING
    assert a.what_if.refused == 50  # ... but the 14-day what-if still shows them


# --- what-if --------------------------------------------------------------------------------


def test_what_if_counts_refusals_by_sender_mx_and_type() -> None:
    reports = window(
        days=14,
        failures=[
            (1, "Google LLC", "certificate-expired", "mx2.example.com", 30),
            (2, "Microsoft Corporation", "certificate-expired", "mx2.example.com", 10),
            (3, "Google LLC", "starttls-not-supported", "mx1.example.com", 5),
            (4, "Google LLC", "sts-policy-fetch-error", "", 8),  # not a refusal by enforce
            (5, "Google LLC", "certificate-expired", "gone.example.com", 99),  # host retired
        ],
    )
    w = assess(live(), reports).what_if
    assert w.days == 14
    assert w.sessions == 14 * 2 * 40 + (30 + 10 + 5 + 8 + 99)
    assert w.refused == 45
    assert w.by_organization == (("Google LLC", 35), ("Microsoft Corporation", 10))
    assert w.by_mx == (("mx2.example.com", 40), ("mx1.example.com", 5))
    assert w.by_result_type == (("certificate-expired", 40), ("starttls-not-supported", 5))
    assert w.other_failures == (("sts-policy-fetch-error", 8),)
    assert w.gone_mx == (("gone.example.com", 99),)


def test_what_if_never_exceeds_the_failure_totals() -> None:
    # One session may count under several result types (RFC 8460 §4, checklist B4.14).
    reports = ReportWindow(
        (DailyTotal(TODAY - timedelta(days=1), "Mail.Ru", 100, 3),),
        (
            FailureCount(TODAY - timedelta(days=1), "Mail.Ru", "certificate-expired", "", 3),
            FailureCount(TODAY - timedelta(days=1), "Mail.Ru", "validation-failure", "", 3),
        ),
    )
    assert assess(live(), reports).what_if.refused == 3


# --- findings -------------------------------------------------------------------------------


def history_entry(
    days_ago: float,
    mode: str | None = "testing",
    policy_id: str | None = OLD_ID,
    sha: str = "aaa",
    max_age: int | None = DAY,
) -> HistoryEntry:
    return HistoryEntry(NOW - timedelta(days=days_ago), mode, policy_id, sha, HOSTS, max_age)


FINDING_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("healthy testing, recent", {"history": [history_entry(5)]}, []),
    (
        "stuck in testing",
        {"history": [history_entry(40), history_entry(20)]},
        ["rollout.stuck-testing"],
    ),
    (
        "long in testing but the gate fails: not stuck, just not ready",
        {"history": [history_entry(40)], "state": live(rua=())},
        [],
    ),
    (
        "policy changed without an id bump",
        {"history": [history_entry(3, sha="old")]},
        ["rollout.id-not-bumped"],
    ),
    (
        "id bumped with the change",
        {"history": [history_entry(3, policy_id="20261119000000", sha="old")]},
        [],
    ),
    (
        "reports only from one sender",
        {"reports": window(orgs=("Google LLC",), per_day=80)},
        ["rollout.gate.single-reporter"],
    ),
    (
        "failures on a retired MX",
        {
            "reports": window(
                failures=[(2, "Google LLC", "certificate-expired", "old.example.com", 4)]
            )
        },
        ["rollout.failures-gone-mx"],
    ),
    (
        "enforce refusing mail",
        {
            "state": live(mode="enforce", max_age=WEEK),
            "reports": window(
                failures=[(1, "Google LLC", "certificate-expired", "mx1.example.com", 12)]
            ),
        },
        ["rollout.enforce.failures"],
    ),
    (
        "MX drift: a live host outside the policy",
        {"state": live(patterns=("mx1.example.com",))},
        ["rollout.mx-drift"],
    ),
    (
        "MX drift: a stale pattern",
        {"state": live(patterns=(*HOSTS, "old.example.com"))},
        ["rollout.mx-drift"],
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "expected"), [c[1:] for c in FINDING_CASES], ids=[c[0] for c in FINDING_CASES]
)
def test_findings(kwargs: dict[str, Any], expected: list[str]) -> None:
    state = kwargs.pop("state", live())
    a = assess(state, kwargs.pop("reports", None), kwargs.pop("history", ()), **kwargs)
    assert sorted(codes(a)) == sorted(expected)
    for f in a.findings:
        assert f.title and f.detail and f.fix and f.rfc


def test_findings_are_in_the_catalogue_with_texts() -> None:
    from stspilot.findings import CATALOGUE

    for code in (
        "rollout.id-not-bumped",
        "rollout.stuck-testing",
        "rollout.gate.failures",
        "rollout.mx-drift",
        "rollout.decommission-safe",
        "generate.mx.probe-failed",
    ):
        assert CATALOGUE[code].explanation and CATALOGUE[code].fix


# --- since ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "since_days", "lower_bound"),
    [
        ([], None, False),
        ([history_entry(9), history_entry(4)], 9, True),  # the oldest check is already testing
        (
            [history_entry(30, mode=None, policy_id=None), history_entry(9), history_entry(4)],
            9,
            False,
        ),
        ([history_entry(30, mode="enforce"), history_entry(2)], 2, False),  # rolled back 2 days ago
    ],
)
def test_since(history: list[HistoryEntry], since_days: int | None, lower_bound: bool) -> None:
    a = assess(live(), None, history)
    assert a.since == (None if since_days is None else NOW - timedelta(days=since_days))
    assert a.since_is_lower_bound is lower_bound


# --- runbooks -------------------------------------------------------------------------------


def test_next_step_from_nothing_is_reporting_only() -> None:
    a = assess(live(mode=None, sts_id=None, rua=()), window(days=0))
    plan = a.runbooks.next_step
    assert plan.title == "Start reporting"
    assert plan.publications == ()
    assert plan.steps == (
        'Publish _smtp._tls.example.com. 3600 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"',
    )


def test_next_step_from_reporting_is_a_testing_policy_covering_every_mx() -> None:
    a = assess(live(mode=None, sts_id=None))
    (pub,) = a.runbooks.next_step.publications
    assert pub.mode == "testing" and pub.max_age == DAY
    assert pub.mx_patterns == HOSTS
    assert pub.rua == ("mailto:tlsrpt@reports.example.net",)


def test_ready_testing_gets_enforce_and_its_rollback() -> None:
    a = assess(live(patterns=("*.example.com",)))
    assert a.ready
    (pub,) = a.runbooks.next_step.publications
    assert (pub.mode, pub.max_age, pub.mx_patterns) == ("enforce", WEEK, ("*.example.com",))
    assert pub.policy_id != OLD_ID and pub.sts_txt.value == f"v=STSv1; id={pub.policy_id}"
    rollback = a.runbooks.rollback
    assert rollback is not None
    (back,) = rollback.publications
    assert back.mode == "testing" and back.policy_id != pub.policy_id
    assert rollback.wait_until == NOW + timedelta(seconds=WEEK)  # the enforce max_age


def test_not_ready_testing_lists_the_failing_criteria() -> None:
    a = assess(live(patterns=("mx1.example.com",), tls={"mx1.example.com": "self-signed"}))
    plan = a.runbooks.next_step
    assert plan.title == "Fix before enforce"
    assert any("not covered: mx2.example.com" in s for s in plan.steps)
    assert any("self-signed" in s for s in plan.steps)
    (pub,) = plan.publications  # coverage is fixed with a new testing policy and id
    assert pub.mode == "testing" and pub.mx_patterns == HOSTS and pub.policy_id != OLD_ID
    assert a.runbooks.rollback is None


@pytest.mark.parametrize(
    ("max_age", "title", "publishes"),
    [(WEEK, "Keep enforcing", False), (DAY, "Raise max_age", True)],
)
def test_healthy_enforce(max_age: int, title: str, publishes: bool) -> None:
    a = assess(live(mode="enforce", max_age=max_age))
    assert a.stage is Stage.ENFORCE and a.ready
    assert a.runbooks.next_step.title == title
    assert bool(a.runbooks.next_step.publications) is publishes
    assert a.runbooks.rollback is not None


def test_enforce_with_failures_rolls_back_with_the_old_max_age() -> None:
    reports = window(failures=[(1, "Google LLC", "certificate-expired", "mx2.example.com", 20)])
    a = assess(live(mode="enforce", max_age=2 * WEEK), reports)
    assert not a.ready
    assert a.runbooks.next_step.title == "Fix now or roll back"
    rollback = a.runbooks.rollback
    assert rollback is not None and rollback.publications[0].mode == "testing"
    assert rollback.publications[0].policy_id != OLD_ID
    assert rollback.wait_until == NOW + timedelta(days=14)
    assert "14 days" in rollback.steps[-1]


def test_decommission_plan_serves_mode_none_for_the_longest_max_age() -> None:
    history = [history_entry(60, mode="enforce", max_age=2 * WEEK), history_entry(30)]
    a = assess(live(), None, history)
    plan = a.runbooks.decommission
    (pub,) = plan.publications
    assert pub.mode == "none" and pub.mx_patterns == () and pub.policy_id != OLD_ID
    assert plan.wait_until == NOW + timedelta(days=14)  # the enforce max_age seen 60 days ago
    assert plan.steps[-1].startswith("Then delete _mta-sts.example.com")


@pytest.mark.parametrize(("none_since_days", "safe"), [(3, False), (20, True)])
def test_winding_down(none_since_days: int, safe: bool) -> None:
    history = [
        history_entry(60, mode="enforce", max_age=2 * WEEK),
        history_entry(none_since_days, mode="none", max_age=DAY),
    ]
    a = assess(live(mode="none", patterns=()), None, history)
    assert a.stage is Stage.WINDING_DOWN
    assert ("rollout.decommission-safe" in codes(a)) is safe
    plan = a.runbooks.next_step
    assert plan.wait_until == NOW - timedelta(days=none_since_days) + timedelta(days=14)
    assert any("Delete" in s or "delete" in s for s in plan.steps)


def test_planned_mx_migration_never_leaves_a_live_mx_outside_the_policy() -> None:
    a = assess(
        live(mode="enforce", max_age=WEEK),
        planned_mx=("mx1.newprovider.net", "mx2.newprovider.net"),
    )
    plan = a.runbooks.migration
    assert plan is not None
    both, final = plan.publications
    assert set(both.mx_patterns) == {*HOSTS, "mx1.newprovider.net", "mx2.newprovider.net"}
    assert final.mx_patterns == ("mx1.newprovider.net", "mx2.newprovider.net")
    assert both.mode == final.mode == "enforce"
    assert len({OLD_ID, both.policy_id, final.policy_id}) == 3
    text = "\n".join(plan.steps)
    # the order: policy with both sets, then MX switch, then removal of the old hosts
    assert (
        text.index("Add the new hosts")
        < text.index("Switch the MX records")
        < text.index("Remove the old hosts")
    )
    assert plan.wait_until == NOW + timedelta(seconds=WEEK)


def test_drift_plan_covers_live_hosts_before_dropping_stale_patterns() -> None:
    state = live(patterns=("mx1.example.com", "old.example.com"))
    a = assess(state)
    plan = a.runbooks.migration
    assert plan is not None
    cover, tidy = plan.publications
    assert cover.mx_patterns == ("mx1.example.com", "mx2.example.com", "old.example.com")
    assert tidy.mx_patterns == HOSTS
    assert cover.policy_id != tidy.policy_id


def test_no_migration_plan_when_policy_matches_mx_set() -> None:
    assert assess(live()).runbooks.migration is None


# --- reports -> window ----------------------------------------------------------------------


def _report(
    org: str, day: date, domain: str, ok: int, details: tuple[FailureDetail, ...]
) -> TlsReport:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    policy = PolicyResult(
        "sts", domain, (), (), ok, sum(d.failed_session_count for d in details), details
    )
    return TlsReport(org, f"{org}-{day}", start, start + timedelta(days=1), None, (policy,))


def test_window_from_reports() -> None:
    d1, d2 = TODAY - timedelta(days=1), TODAY - timedelta(days=2)
    reports = [
        _report(
            "Google LLC",
            d1,
            "example.com",
            100,
            (FailureDetail("certificate-expired", 3, receiving_mx_hostname="MX2.example.com."),),
        ),
        _report("Google LLC", d2, "example.com", 50, ()),
        _report("Mail.Ru", d1, "EXAMPLE.com", 10, (FailureDetail("validation-failure", 2),)),
        _report("Google LLC", d1, "other.example", 999, ()),  # another domain: ignored
    ]
    w = window_from_reports(reports, "example.com")
    assert w.totals == (
        DailyTotal(d2, "Google LLC", 50, 0),
        DailyTotal(d1, "Google LLC", 100, 3),
        DailyTotal(d1, "Mail.Ru", 10, 2),
    )
    assert w.failures == (
        FailureCount(d1, "Google LLC", "certificate-expired", "mx2.example.com", 3),
        FailureCount(d1, "Mail.Ru", "validation-failure", "", 2),
    )


# --- adapters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:  # the shape of store.models.CheckRecord that history_from_checks reads
    observed_at: datetime
    mode: str | None
    policy_id: str | None
    policy_sha256: str | None
    mx_set: tuple[str, ...]
    result: dict[str, Any]


def test_history_from_checks_reads_max_age_and_sorts() -> None:
    rows = [
        _Row(NOW - timedelta(days=1), "enforce", "b", "s2", HOSTS, {"policy": {"max_age": WEEK}}),
        _Row(NOW - timedelta(days=9), "testing", "a", None, HOSTS, {"policy": None}),
        _Row(NOW - timedelta(days=5), None, None, None, (), {}),
    ]
    got = history_from_checks(rows)
    assert [e.policy_id for e in got] == ["a", None, "b"]
    assert [e.max_age for e in got] == [None, None, WEEK]
    assert got[0].policy_sha256 == "" and got[2].mx_hosts == HOSTS


@pytest.mark.parametrize(
    "state",
    [
        live(),
        live(mode="enforce", max_age=WEEK),
        live(patterns=("mx1.example.com", "old.example.com")),
    ],
    ids=["testing", "enforce", "drift"],
)
def test_every_plan_printed_together_has_its_own_id(state: LiveState) -> None:
    # Plans are alternatives; an id copied from one into another would leave senders on their
    # cached policy (RFC 8461 §3.1).
    r = assess(state, planned_mx=("mx9.example.com",)).runbooks
    plans = [r.next_step, r.rollback, r.decommission, r.migration]
    ids = [p.policy_id for plan in plans if plan for p in plan.publications]
    assert len(ids) >= 3
    assert len(set(ids)) == len(ids) and OLD_ID not in ids


def test_steps_skip_the_tlsrpt_record_when_it_is_live() -> None:
    (pub,) = assess(live()).runbooks.next_step.publications
    steps = assess(live()).runbooks.next_step.steps
    assert not any("TLS-RPT record" in s for s in steps)
    assert len(steps) == len(pub.steps) - 1


# --- never a traceback ------------------------------------------------------------------------

_host = st.sampled_from(
    [
        "mx1.example.com",
        "mx2.example.com",
        "a.mx.example.com",
        "b.c.mx.example.com",
        "x.mail.protection.outlook.com",
        "other.example.net",
    ]
)
_pattern = st.sampled_from(
    [
        "mx1.example.com",
        "*.mx.example.com",
        "*.example.com",
        "gone.example.org",
        "*.mail.protection.outlook.com",
    ]
)
_mx = st.builds(
    MxState,
    _host,
    st.none() | _pattern,
    st.none() | st.booleans(),
    st.text(max_size=5),
    st.none() | st.integers(-5, 400),
)
_live = st.builds(
    LiveState,
    domain=st.just("example.com"),
    observed_at=st.just(NOW),
    sts_id=st.none() | st.just(OLD_ID),
    mode=st.none() | st.sampled_from(["testing", "enforce", "none"]),
    max_age=st.none() | st.integers(0, 31_557_600),
    mx_patterns=st.lists(_pattern, max_size=3).map(tuple),
    policy_sha256=st.sampled_from(["", "aaa", "bbb"]),
    policy_problem=st.sampled_from(["", "timeout"]),
    tlsrpt_rua=st.sampled_from([(), ("mailto:tlsrpt@example.com",)]),
    mx=st.lists(_mx, max_size=3).map(tuple),
)
_day = st.integers(0, 30).map(lambda n: TODAY - timedelta(days=n))
_org = st.sampled_from(["Google LLC", "Mail.Ru", ""])
_window = st.builds(
    ReportWindow,
    st.lists(
        st.builds(DailyTotal, _day, _org, st.integers(0, 500), st.integers(0, 50)), max_size=8
    ).map(tuple),
    st.lists(
        st.builds(
            FailureCount,
            _day,
            _org,
            st.sampled_from(["certificate-expired", "sts-policy-fetch-error", "x-unknown"]),
            st.sampled_from(["", "mx1.example.com", "gone.example.com"]),
            st.integers(0, 50),
        ),
        max_size=8,
    ).map(tuple),
)
_history = st.lists(
    st.builds(
        HistoryEntry,
        st.integers(1, 90).map(lambda d: NOW - timedelta(days=d)),
        st.none() | st.sampled_from(["testing", "enforce", "none"]),
        st.none() | st.sampled_from([OLD_ID, "20250101000000"]),
        st.sampled_from(["", "aaa", "bbb"]),
        st.just(HOSTS),
        st.none() | st.integers(0, 31_557_600),
    ),
    max_size=5,
).map(tuple)


@settings(max_examples=300, deadline=None)
@given(_live, _window, _history, st.none() | st.lists(_host, min_size=1, max_size=3).map(tuple))
def test_assess_rollout_never_raises(
    state: LiveState,
    reports: ReportWindow,
    history: tuple[HistoryEntry, ...],
    planned: tuple[str, ...] | None,
) -> None:
    a = assess_rollout(RolloutInputs(state, reports, history, planned), now=NOW)
    assert len(a.gate) == 6 and a.runbooks.next_step.title
    ids = [
        p.policy_id
        for plan in (
            a.runbooks.next_step,
            a.runbooks.rollback,
            a.runbooks.decommission,
            a.runbooks.migration,
        )
        if plan
        for p in plan.publications
    ]
    assert len(set(ids)) == len(ids)
    assert a.what_if.refused <= max(a.what_if.failed, sum(n for _, n in a.what_if.by_result_type))


# --- assess_gate: the inventory's cheap path agrees with assess_rollout ----------------------

AGREEMENT_CASES = [(c[0], c[1], c[2]) for c in STAGE_CASES] + [
    (c[0], c[1], c[2]) for c in GATE_CASES
] + [
    (
        "failures older than the gate window",
        live(),
        window(days=14, failures=[(10, "Google LLC", "certificate-expired", "mx1.example.com", 5)]),
    ),
    ("enforce with failures", live(mode="enforce", max_age=WEEK), window(
        failures=[(1, "Google LLC", "certificate-expired", "mx2.example.com", 3)]
    )),
]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "reports"), [c[1:] for c in AGREEMENT_CASES], ids=[c[0] for c in AGREEMENT_CASES]
)
@pytest.mark.parametrize("gate_days", [3, 7])
def test_assess_gate_agrees_with_assess_rollout(
    state: LiveState, reports: ReportWindow | None, gate_days: int
) -> None:
    reports = window() if reports is None else reports
    full = assess(state, reports, gate_days=gate_days)
    cheap = assess_gate(state, reports, now=NOW, gate_days=gate_days)
    assert (cheap.domain, cheap.stage, cheap.gate, cheap.ready) == (
        full.domain, full.stage, full.gate, full.ready
    )  # fmt: skip
