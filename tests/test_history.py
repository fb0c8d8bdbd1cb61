"""Check history: a saved check keeps what the rollout compares (mode, id, policy hash, MX set)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stspilot.check.evaluate import evaluate
from stspilot.check.history import save_check
from stspilot.facts import (
    DnsStatus,
    DomainFacts,
    FetchOutcome,
    MxHost,
    MxLookup,
    PolicyFetch,
    TxtLookup,
)
from stspilot.rollout.evidence import policy_digest
from stspilot.store import Store

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
