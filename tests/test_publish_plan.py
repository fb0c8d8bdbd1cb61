"""The never-orphan order (pure: no network, no store, no clock), table-tested, and the choice of
what ``rollout --apply`` carries out, with the enforce gate as a precondition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stspilot.errors import ConfigError
from stspilot.publish.plan import (
    GateRefused,
    Live,
    Step,
    StepKind,
    check_order,
    choose_target,
    plan_decommission,
    plan_publication,
    plan_reporting,
)
from stspilot.rollout.generate import DAY, WEEK, Publication, generate
from test_rollout import assess, live, window  # type: ignore[import-not-found]

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DOMAIN = "example.com"
MX = ["mx1.example.com"]
P, T, S = StepKind.POLICY, StepKind.TLSRPT, StepKind.STS


def pub(mode: str = "testing", *, previous: str = "", max_age: int | None = None) -> Publication:
    return generate(
        DOMAIN,
        mx_hosts=MX,
        mode=mode,
        now=NOW,
        previous_id=previous,
        max_age=max_age,
        patterns=() if mode == "none" else None,
    )


TESTING = pub("testing")
ENFORCE = pub("enforce", previous=TESTING.policy_id)
RUA = TESTING.tlsrpt_txt.value


def served(p: Publication, **kw: object) -> Live:
    """What is live once ``p`` is fully published."""
    return Live(DOMAIN, tlsrpt=RUA, sts=p.sts_txt.value, policy=p.policy_text, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("live_now", "target", "kinds"),
    [
        # Nothing live: TLS-RPT first, then the policy, then the id (RFC 8461 §8.1).
        (Live(DOMAIN), TESTING, [T, P, S]),
        # Reporting only: the policy, then the id.
        (Live(DOMAIN, tlsrpt=RUA), TESTING, [P, S]),
        # Testing -> enforce: a policy change always brings a new id.
        (served(TESTING), ENFORCE, [P, S]),
        # A policy served without a TXT record (policy orphan): the record only.
        (Live(DOMAIN, tlsrpt=RUA, policy=TESTING.policy_text), TESTING, [S]),
        # Everything live already: nothing to do.
        (served(TESTING), TESTING, []),
        # Only the rua changed: the TLS-RPT record alone.
        (
            Live(
                DOMAIN,
                tlsrpt="v=TLSRPTv1; rua=mailto:old@example.com",
                sts=TESTING.sts_txt.value,
                policy=TESTING.policy_text,
            ),
            TESTING,
            [T],
        ),
    ],
)
def test_publication_order(live_now: Live, target: Publication, kinds: list[StepKind]) -> None:
    plan = plan_publication(live_now, target)
    assert [s.kind for s in plan.steps] == kinds
    check_order(plan.steps)
    sts = [s for s in plan.steps if s.kind is S]
    if sts:  # compare-and-swap on exactly what was read (G1.7)
        assert sts[0].expect == (live_now.sts,)
        assert sts[0].value == target.sts_txt.value


def test_reporting_plan_is_the_tlsrpt_record_only() -> None:
    plan = plan_reporting(Live(DOMAIN), TESTING)
    assert [s.kind for s in plan.steps] == [T] and plan.action == "reporting"
    assert plan.steps[0].expect == (None,)  # first publication: the record must be absent


def test_decommission_waits_for_the_longest_max_age_ever_served() -> None:
    none = pub("none", previous=ENFORCE.policy_id)
    live_now = served(ENFORCE, served_max_age=WEEK, sts_ttl=600)
    plan = plan_decommission(live_now, none, now=NOW)
    kinds = [s.kind for s in plan.steps]
    assert kinds == [
        P,
        S,
        StepKind.WAIT,
        StepKind.REMOVE_STS,
        StepKind.WAIT,
        StepKind.REMOVE_POLICY,
    ]
    assert plan.steps[2].seconds == WEEK  # not the none policy's own day (RFC 8461 §8.3)
    assert plan.steps[3].expect == (none.sts_txt.value,)
    assert plan.steps[4].seconds == 600  # the TXT TTL before the policy goes (G5.7)
    check_order(plan.steps)


def test_decommission_already_under_way_counts_from_when_none_began() -> None:
    none = pub("none", previous=ENFORCE.policy_id, max_age=DAY)
    since = NOW - timedelta(days=2)
    live_now = served(none, served_max_age=WEEK, none_since=since)
    plan = plan_decommission(live_now, none, now=NOW)
    assert [s.kind for s in plan.steps][:2] == [StepKind.WAIT, StepKind.REMOVE_STS]
    assert plan.steps[0].until == since + timedelta(seconds=WEEK)
    assert plan.steps[1].expect == (none.sts_txt.value,)
    # Long over: the wait ends now, not in the past.
    late = plan_decommission(
        served(none, served_max_age=DAY, none_since=NOW - timedelta(days=30)), none, now=NOW
    )
    assert late.steps[0].until == NOW


@pytest.mark.parametrize(
    "steps",
    [
        # The id before its policy.
        (
            Step(S, "_mta-sts.example.com.", "v=STSv1; id=2", policy_id="2"),
            Step(P, "https://x", "body", policy_id="2"),
        ),
        # The policy removed while the TXT record stays.
        (Step(StepKind.REMOVE_POLICY, "https://x"),),
        (Step(StepKind.REMOVE_POLICY, "https://x"), Step(StepKind.REMOVE_STS, "_mta-sts.x.")),
    ],
)
def test_check_order_refuses_an_orphan(steps: tuple[Step, ...]) -> None:
    with pytest.raises(ConfigError):
        check_order(steps)


def test_steps_round_trip_through_the_journal() -> None:
    plan = plan_decommission(served(ENFORCE, served_max_age=WEEK), pub("none"), now=NOW)
    for step in plan.steps:
        assert Step.from_dict(step.to_dict()) == step
    since = NOW - timedelta(hours=1)
    waiting = Step(StepKind.WAIT, DOMAIN, until=since)
    assert Step.from_dict(waiting.to_dict()).until == since


# --- rollout --apply: what to carry out ------------------------------------------------------


def test_next_stage_from_nothing_is_reporting() -> None:
    a = assess(live(mode=None, sts_id=None, rua=()), window(days=0))
    target = choose_target(a, live(mode=None, sts_id=None, rua=()), None, now=NOW)
    assert target.action == "reporting" and target.reporting_only
    assert target.publication is not None


def test_next_stage_from_reporting_is_testing() -> None:
    state = live(mode=None, sts_id=None)
    target = choose_target(assess(state), state, None, now=NOW)
    assert target.action == "testing" and target.publication is not None
    assert target.publication.mode == "testing"


def test_enforce_needs_the_gate_or_a_reason() -> None:
    state = live(patterns=("mx1.example.com",), tls={"mx1.example.com": "self-signed"})
    a = assess(state)
    assert not a.ready
    with pytest.raises(GateRefused, match="mx-covered"):
        choose_target(a, state, "enforce", now=NOW)
    forced = choose_target(a, state, "enforce", now=NOW, force_reason="CEO says so")
    assert forced.publication is not None and forced.publication.mode == "enforce"
    assert forced.publication.policy_id != state.sts_id


def test_ready_testing_goes_to_enforce() -> None:
    state = live()
    target = choose_target(assess(state), state, None, now=NOW)
    assert target.action == "enforce" and target.publication is not None
    assert target.publication.mode == "enforce"


def test_rollback_from_enforce_is_testing_with_a_new_id() -> None:
    state = live(mode="enforce", max_age=WEEK)
    target = choose_target(assess(state), state, "testing", now=NOW)
    assert target.action == "rollback" and target.publication is not None
    assert target.publication.mode == "testing" and target.publication.policy_id != state.sts_id


@pytest.mark.parametrize("mode", ["testing", "enforce", "none"])
def test_decommission_target_is_mode_none(mode: str) -> None:
    state = live(mode=mode, max_age=WEEK)
    target = choose_target(assess(state), state, "none", now=NOW)
    assert target.decommission and target.publication is not None
    assert target.publication.mode == "none"


def test_unknown_or_impossible_targets_are_refused() -> None:
    state = live()
    with pytest.raises(ConfigError):
        choose_target(assess(state), state, "bogus", now=NOW)
    with pytest.raises(ConfigError, match="past reporting"):
        choose_target(assess(state), state, "reporting", now=NOW)
    bare = live(mode=None, sts_id=None)
    with pytest.raises(ConfigError, match="testing policy first"):
        choose_target(assess(bare), bare, "enforce", now=NOW)
