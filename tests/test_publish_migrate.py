"""The MX-migration plan (``publish/migrate.py``, pure): its order, its waits, its refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stspilot.errors import ConfigError
from stspilot.publish.migrate import plan_mx_migration
from stspilot.publish.plan import Live, StepKind, check_order

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
STS = "v=STSv1; id=20261201000000"


def policy(mode: str, *mx: str, max_age: int = 604800) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def live(text: str, served: int = 0) -> Live:
    return Live("example.com", sts=STS, policy=text, sts_ttl=3600, served_max_age=served)


def test_widen_wait_switch_wait_narrow() -> None:
    plan = plan_mx_migration(
        live(policy("enforce", "mx1.example.com"), served=1209600),
        mx_now=["mx1.example.com."],
        mx_ttl=300,
        new_hosts=["MX2.example.net"],
        rua=[],
        now=NOW,
    )
    kinds = [s.kind for s in plan.steps]
    assert kinds == [
        StepKind.POLICY, StepKind.STS, StepKind.WAIT, StepKind.MX,
        StepKind.WAIT, StepKind.POLICY, StepKind.STS,
    ]  # fmt: skip
    check_order(plan.steps)
    widened, _, wait, mx, mx_wait, narrowed, final = plan.steps
    assert widened.value is not None and "mx: mx1.example.com" in widened.value
    assert "mx: mx2.example.net" in widened.value and "mode: enforce" in widened.value
    assert wait.seconds == 1209600  # the longest max_age ever served, not today's week
    assert (mx.value, mx.expect) == ("mx2.example.net", ("mx1.example.com",))
    assert mx_wait.seconds == 300
    assert narrowed.value is not None and "mx1.example.com" not in narrowed.value
    assert final.policy_id == narrowed.policy_id != widened.policy_id
    assert final.expect == (STS,)


def test_a_pattern_that_covers_the_new_host_needs_no_widening() -> None:
    plan = plan_mx_migration(
        live(policy("testing", "*.example.com")),
        mx_now=["mx1.example.com"],
        mx_ttl=60,
        new_hosts=["mx2.example.com"],
        rua=[],
        now=NOW,
    )
    # *.example.com covers both: the MX switch and its TTL, nothing to publish
    assert [s.kind for s in plan.steps] == [StepKind.MX, StepKind.WAIT]
    assert plan.notes and "no widening" in plan.notes[0]


@pytest.mark.parametrize(
    ("text", "mx_now", "new", "why"),
    [
        (policy("none"), ["mx1.example.com"], ["mx2.example.com"], "mode none"),
        (policy("enforce", "mx1.example.com"), ["mx1.example.com"], ["mx1.example.com"], "already"),
        (
            policy("enforce", "mx1.example.com"),
            ["mx9.example.com"],
            ["mx2.example.com"],
            "not covered",
        ),
        (
            policy("enforce", "mx1.example.com"),
            ["mx1.example.com"],
            ["not a name!"],
            "not a domain name",
        ),
    ],
)
def test_refusals(text: str, mx_now: list[str], new: list[str], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        plan_mx_migration(live(text), mx_now=mx_now, mx_ttl=300, new_hosts=new, rua=[], now=NOW)
