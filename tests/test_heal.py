"""Self-healing's judgement (``monitor/heal.py``: drift, confirmation, the repair's publication)
and its memory in the store (``store/heal.py``: opt-in, sightings that survive a restart)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stspilot.monitor.heal import (
    ID_NOT_BUMPED,
    KINDS,
    MX_DRIFT,
    confirmed,
    observe,
    repair_for,
)
from stspilot.rollout.evidence import HistoryEntry, LiveState, MxState
from stspilot.store import Store
from stspilot.store.heal import HealStore

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def live(**kw: object) -> LiveState:
    base = LiveState(
        "example.com",
        T0,
        sts_id="20261201000000",
        mode="enforce",
        max_age=604800,
        mx_patterns=("mx1.example.com",),
        policy_sha256="b" * 64,
        tlsrpt_rua=("mailto:tlsrpt@example.com",),
        mx=(MxState("mx1.example.com", covered_by="mx1.example.com", tls_ok=True),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def entry(minutes: int, policy_id: str, sha: str) -> HistoryEntry:
    return HistoryEntry(T0 - timedelta(minutes=minutes), "enforce", policy_id, sha)


ID = "20261201000000"


@pytest.mark.parametrize(
    ("history", "drift"),
    [
        ([], False),  # first check ever: nothing to compare with
        ([entry(60, ID, "b" * 64)], False),  # the id was announced with this body
        ([entry(60, ID, "a" * 64)], True),  # same id, another body now
        ([entry(90, ID, "a" * 64), entry(60, ID, "b" * 64)], True),  # changed since
        ([entry(90, "other", "a" * 64), entry(60, ID, "b" * 64)], False),  # new id, new body
        # a transient body under the same id is not what the id was announced with
        ([entry(90, ID, "b" * 64), entry(60, ID, "a" * 64)], False),
    ],
)
def test_id_not_bumped_is_judged_against_the_body_the_id_was_first_seen_with(
    history: list[HistoryEntry], drift: bool
) -> None:
    found = observe(live(), history, id_bump=True, mx_sync=False)
    assert [d.kind for d in found] == ([ID_NOT_BUMPED] if drift else [])
    assert observe(live(), history, id_bump=False, mx_sync=False) == []


def test_an_unreadable_state_shows_no_drift() -> None:
    history = [entry(60, ID, "a" * 64)]
    assert observe(live(policy_problem="fetch failed"), history, id_bump=True, mx_sync=True) == []
    assert observe(live(sts_id=None), history, id_bump=True, mx_sync=True) == []
    # an empty MX answer (a lookup that failed) never narrows the policy to nothing
    assert observe(live(mx=()), [], id_bump=False, mx_sync=True) == []


def test_mx_drift_fingerprint_names_exactly_what_was_seen() -> None:
    two = live(
        mx=(
            MxState("mx1.example.com", covered_by="mx1.example.com", tls_ok=True),
            MxState("mx2.example.com", tls_ok=True),
        )
    )
    (a,) = observe(two, [], id_bump=False, mx_sync=True)
    (b,) = observe(two, [], id_bump=False, mx_sync=True)
    assert a.kind == MX_DRIFT and a == b and "outside the policy: mx2.example.com" in a.detail
    other = replace(two, mx=(*two.mx[:1], MxState("mx3.example.com", tls_ok=True)))
    (c,) = observe(other, [], id_bump=False, mx_sync=True)
    assert c.fingerprint != a.fingerprint
    assert observe(live(), [], id_bump=False, mx_sync=True) == []  # in line: no drift


def test_confirmation_needs_two_checks_the_gap_apart() -> None:
    gap = timedelta(minutes=10)
    assert not confirmed(T0, T0, 1, gap)
    assert not confirmed(T0, T0 + 11 * MIN, 1, gap)
    assert not confirmed(T0, T0 + 9 * MIN, 5, gap)
    assert confirmed(T0, T0 + 10 * MIN, 2, gap)


def test_repair_widens_before_it_narrows() -> None:
    both = live(
        mx_patterns=("mx1.example.com",),
        mx=(
            MxState("mx1.example.com", covered_by="mx1.example.com", tls_ok=True),
            MxState("mx2.example.com", tls_ok=True),
        ),
    )
    (drift,) = observe(both, [], id_bump=False, mx_sync=True)
    repair = repair_for(drift, both, now=T0)
    assert repair.publication is not None and not repair.refused
    assert repair.publication.mx_patterns == ("mx1.example.com", "mx2.example.com")
    assert repair.publication.mode == "enforce" and repair.publication.max_age == 604800
    assert repair.publication.policy_id != ID
    # mx1 has gone from the MX set: only then its line goes
    moved = live(
        mx_patterns=("mx1.example.com", "mx2.example.com"),
        mx=(MxState("mx2.example.com", covered_by="mx2.example.com", tls_ok=True),),
    )
    (drift,) = observe(moved, [], id_bump=False, mx_sync=True)
    narrowed = repair_for(drift, moved, now=T0)
    assert narrowed.publication is not None
    assert narrowed.publication.mx_patterns == ("mx2.example.com",)


@pytest.mark.parametrize(
    ("mode", "tls_ok", "refused"),
    [
        ("enforce", None, True),  # not probed: not known to work
        ("enforce", False, True),
        ("enforce", True, False),
        ("testing", None, False),  # testing refuses no mail
    ],
)
def test_under_enforce_a_new_host_must_pass_starttls_first(
    mode: str, tls_ok: bool | None, refused: bool
) -> None:
    state = live(
        mode=mode,
        mx=(
            MxState("mx1.example.com", covered_by="mx1.example.com", tls_ok=True),
            MxState(
                "mx2.example.com",
                tls_ok=tls_ok,
                problem="certificate expired" if tls_ok is False else "",
            ),
        ),
    )
    (drift,) = observe(state, [], id_bump=False, mx_sync=True)
    repair = repair_for(drift, state, now=T0)
    assert bool(repair.refused) is refused
    assert (repair.publication is None) is refused
    if refused:
        assert repair.refused.startswith("gate refused") and "mx2.example.com" in repair.refused


@pytest.mark.db
def test_sightings_are_consecutive_and_survive_a_restart(store_url: str) -> None:
    with Store.open(store_url) as store:
        heal = HealStore(store)
        assert heal.settings("example.com").any is False
        heal.opt_in("example.com", now=T0, actor="test", id_bump=True)
        heal.opt_in("example.com", now=T0, actor="test", mx_sync=True)
        got = heal.settings("example.com")
        assert got.id_bump and got.mx_sync and got.updated_by == "test"
        seen = [(ID_NOT_BUMPED, "fp1", "changed")]
        assert heal.pending_domains() == set()
        rows = heal.record("example.com", seen, kinds=KINDS, now=T0)
        assert rows[ID_NOT_BUMPED].checks == 1
        assert heal.pending_domains() == {"example.com"}
    with Store.open(store_url) as store:  # a monitor restart
        heal = HealStore(store)
        rows = heal.record("example.com", seen, kinds=KINDS, now=T0 + 11 * MIN)
        row = rows[ID_NOT_BUMPED]
        assert (row.checks, row.first_seen_at, row.last_seen_at) == (2, T0, T0 + 11 * MIN)
        # another fingerprint starts over
        rows = heal.record("example.com", [(ID_NOT_BUMPED, "fp2", "x")], kinds=KINDS, now=T0)
        assert rows[ID_NOT_BUMPED].checks == 1 and rows[ID_NOT_BUMPED].fingerprint == "fp2"
        # a check that does not see it forgets it; a kind not looked for is left alone
        assert heal.record("example.com", [], kinds=(MX_DRIFT,), now=T0) != {}
        assert heal.record("example.com", [], kinds=KINDS, now=T0) == {}
        heal.record("example.com", seen, kinds=KINDS, now=T0)
        heal.opt_in("example.com", now=T0, actor="test", id_bump=False, mx_sync=False)
        assert heal.all_settings() == [] and heal.sightings("example.com") == {}
