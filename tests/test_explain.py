"""web.explain: pure; the stage and gate in words, live-versus-hosted truth from a stored check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard_seed import check_result
from stspilot.store.hosting import HostedDomain
from stspilot.web.explain import STAGES, gate_words, live_versus_hosted

T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOSTED = HostedDomain(
    id=1, domain="example.com", tenant_id=1, tenant="acme", mode="testing",
    mx=("mx1.example.com",), max_age=86400, policy_id="20261206T000000", version=2,
    policy_text="version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n",
    crlf=False, auto_sync_mx=False, state="active", remove_after=None, pending_mx=None,
    created_at=T - timedelta(days=9), updated_at=T - timedelta(days=1),
)  # fmt: skip


def levels(
    *,
    result: dict[str, Any] | None = None,
    live_id: str | None = HOSTED.policy_id,
    observed_at: datetime = T,
    earlier_ids: tuple[str, ...] = (),
) -> list[tuple[str, str]]:
    """(level, text) of each note for a stored check (by default one in sync with HOSTED)."""
    if result is None:
        result = check_result("example.com", T, policy_id=HOSTED.policy_id)
    notes = live_versus_hosted(
        HOSTED, live_id=live_id, result=result, observed_at=observed_at, earlier_ids=earlier_ids
    )
    return [(n.level, n.text) for n in notes]


def test_in_sync_says_so_twice() -> None:
    found = levels()
    assert [lvl for lvl, _ in found] == ["ok", "ok"]
    assert "DNS points here" in found[0][1] and "equals the hosted one" in found[1][1]


def test_a_live_policy_from_elsewhere_names_each_difference() -> None:
    live = check_result("example.com", T, mode="enforce", mx=("mx9.example.net",))
    (policy, _) = levels(result=live)
    assert policy[0] == "bad"
    assert "mode enforce live, testing hosted" in policy[1]
    assert "mx mx9.example.net live, mx1.example.com hosted" in policy[1]


def test_no_policy_and_no_id_tell_what_to_publish() -> None:
    live = {**check_result("example.com", T), "policy": None}
    found = levels(result=live, live_id=None)
    assert [lvl for lvl, _ in found] == ["bad", "bad"]
    assert "Senders get no policy" in found[0][1]
    assert 'TXT "v=STSv1; id=20261206T000000"' in found[1][1]


def test_an_earlier_id_is_recognised_and_a_stale_check_is_flagged() -> None:
    found = levels(live_id="20261101T000000", earlier_ids=("20261101T000000",),
                   observed_at=T - timedelta(days=2))  # fmt: skip
    assert found[0][0] == "warn" and "predates the last change" in found[0][1]
    assert "(an earlier id of this policy)" in found[-1][1] and found[-1][0] == "bad"


def test_no_check_is_unknown_not_an_alarm() -> None:
    notes = live_versus_hosted(HOSTED, live_id=None, result=None, observed_at=None)
    assert [(n.level, "Unknown" in n.text) for n in notes] == [("warn", True)]


@pytest.mark.parametrize(
    ("stage", "failing", "level", "says"),
    [
        ("testing", 0, "ok", "Ready for mode enforce"),
        ("fixing", 2, "bad", "Not ready for enforce yet: 2 of 5"),
        ("enforce", 0, "ok", "Already enforcing, and every criterion still holds"),
        ("enforce", 2, "warn", "Already enforcing. 2 of 5 criteria no longer hold"),
    ],
)
def test_the_gate_reads_for_the_stage(stage: str, failing: int, level: str, says: str) -> None:
    got_level, text = gate_words(stage, failing, 5)
    assert got_level == level and says in text


def test_every_stage_is_explained_with_a_next_step() -> None:
    for stage in ("unchecked", "none", "reporting", "testing", "fixing", "enforce", "winding-down"):
        assert STAGES[stage].meaning and STAGES[stage].next
