"""store/checks.py: a saved check keeps what the rollout compares (mode, id, policy hash, MX
set), reads back as the same evidence as the fresh check, and feeds ``assess_rollout``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stspilot.check.evaluate import evaluate
from stspilot.facts import (
    DnsStatus,
    DomainFacts,
    FetchOutcome,
    MxHost,
    MxLookup,
    PolicyFetch,
    TxtLookup,
)
from stspilot.rollout.evidence import live_state_from_check, policy_digest
from stspilot.store import Store
from stspilot.store.checks import live_state, rollout_inputs, save_check

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = b"version: STSv1\nmode: testing\nmax_age: 86400\nmx: mx1.example.com\n"


def _facts() -> DomainFacts:
    return DomainFacts(
        domain="example.com",
        observed_at=NOW,
        sts_txt=TxtLookup("_mta-sts.example.com", DnsStatus.OK, ((b"v=STSv1; id=20261122",),)),
        tlsrpt_txt=TxtLookup("_smtp._tls.example.com", DnsStatus.NXDOMAIN),
        mx=MxLookup("example.com", DnsStatus.OK, (MxHost(10, "mx1.example.com"),)),
        policy=PolicyFetch(
            "https://mta-sts.example.com/.well-known/mta-sts.txt",
            FetchOutcome.OK,
            status=200,
            content_type="text/plain",
            body=POLICY,
        ),
    )


@pytest.mark.db
def test_saved_check_keeps_what_the_rollout_compares(store: Store) -> None:
    result = evaluate(_facts())
    pk = save_check(store, result)
    record = store.latest_check("example.com")
    assert record is not None and record.id == pk
    assert record.policy_id == "20261122"
    assert record.mode == "testing"
    assert record.policy_sha256 == policy_digest(result)
    assert list(record.mx_set) == ["mx1.example.com"]
    assert record.result["domain"] == "example.com"


BROKEN = PolicyFetch(
    "https://mta-sts.example.com/.well-known/mta-sts.txt", FetchOutcome.OK, status=404
)


@pytest.mark.db
@pytest.mark.parametrize("policy", [None, BROKEN], ids=["served", "not-found"])
def test_a_stored_check_is_the_same_evidence_as_the_fresh_one(
    store: Store, policy: PolicyFetch | None
) -> None:
    facts = _facts() if policy is None else replace(_facts(), policy=policy)
    result = evaluate(facts)
    save_check(store, result)
    record = store.latest_check("example.com")
    assert record is not None
    fresh = live_state_from_check(result)
    assert live_state(record) == fresh
    assert (fresh.policy_problem == "") is (policy is None)


@pytest.mark.db
def test_rollout_inputs_reads_the_latest_check_the_window_and_the_history(store: Store) -> None:
    assert rollout_inputs(store, "example.com", NOW) is None  # nothing checked yet
    older = evaluate(replace(_facts(), observed_at=NOW - timedelta(days=1)))
    save_check(store, older)
    stored = rollout_inputs(store, "example.com", NOW, days=7)
    assert stored is not None
    assert stored.live == live_state_from_check(older)
    assert [h.observed_at for h in stored.history] == [older.observed_at]
    fresh = evaluate(_facts())  # a check just run, not yet saved, is the live state
    given = rollout_inputs(store, "example.com", NOW, latest=fresh, planned_mx=("mx9.example",))
    assert given is not None and given.live == live_state_from_check(fresh)
    assert given.history == stored.history and given.planned_mx == ("mx9.example",)
    recent = rollout_inputs(store, "example.com", NOW, history_since=NOW - timedelta(hours=1))
    assert recent is not None and recent.history == ()
