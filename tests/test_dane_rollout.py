"""DANE in the rollout: the enforce gate's DANE criterion and the TLSA rollover runbook (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stspilot.rollout.evidence import MxState
from stspilot.rollout.runbooks import tlsa_rollover
from test_rollout import NOW, assess, live  # type: ignore[import-not-found]


def _with_dane(states: dict[str, tuple[str, str]]) -> object:
    """A testing-mode live state whose MX hosts carry DANE states: host -> (state, problem)."""
    base = live()
    mx = tuple(
        replace(
            m, dane=states.get(m.host, ("", ""))[0], dane_problem=states.get(m.host, ("", ""))[1]
        )
        for m in base.mx
    )
    return replace(base, mx=mx)


GATE_CASES = [
    ({}, None),  # no DANE anywhere: no criterion (the gate stays as it was)
    ({"mx1.example.com": ("none", "")}, None),
    ({"mx1.example.com": ("match", ""), "mx2.example.com": ("match", "")}, True),
    ({"mx1.example.com": ("match", ""), "mx2.example.com": ("mismatch", "mismatch: x")}, False),
    ({"mx1.example.com": ("bogus", "bogus: RRSIG expired")}, False),
    ({"mx1.example.com": ("unusable", "")}, True),  # TLS still required, nothing refused
]


@pytest.mark.parametrize(("states", "passes"), GATE_CASES)
def test_dane_gate(states: dict[str, tuple[str, str]], passes: bool | None) -> None:
    result = assess(_with_dane(states))
    dane = [c for c in result.gate if c.name == "dane"]
    if passes is None:
        assert dane == []
        return
    assert dane[0].passed is passes
    if not passes:
        assert not result.ready
        assert any(p in dane[0].evidence for _, p in states.values() if p)


def test_dane_failure_blocks_enforce_even_with_clean_reports() -> None:
    state = _with_dane({"mx2.example.com": ("mismatch", "mismatch: no record matches")})
    result = assess(state)
    assert not result.ready
    assert result.runbooks.next_step.title == "Fix before enforce"
    assert any("mx2.example.com" in step for step in result.runbooks.next_step.steps)


def test_tlsa_rollover_runbook() -> None:
    assert tlsa_rollover(live()) is None
    state = _with_dane({"mx1.example.com": ("match", ""), "mx2.example.com": ("mismatch", "x")})
    plan = tlsa_rollover(state)
    assert plan is not None
    text = "\n".join(plan.steps)
    assert "_25._tcp.mx1.example.com" in text and "_25._tcp.mx2.example.com" in text
    assert plan.steps[0].startswith("First repair")  # mx2 is refused now
    assert "3 1 1" in text and "--reuse-key" in text
    assessed = assess(state)
    assert assessed.runbooks.tlsa_rollover is not None


def test_mx_state_defaults_keep_old_callers() -> None:
    assert MxState("mx.example.com").dane == "" and NOW.tzinfo is not None


# --- reports: DANE result types in the what-if and the summary ---


def test_what_if_counts_dane_refusals_apart() -> None:
    from test_rollout import window  # type: ignore[import-not-found]

    reports = window(
        failures=[
            (1, "Microsoft Corporation", "tlsa-invalid", "mx1.example.com", 7),
            (2, "Google LLC", "dnssec-invalid", "mx2.example.com", 2),
            (2, "Google LLC", "certificate-expired", "mx2.example.com", 3),
            (3, "Google LLC", "sts-policy-fetch-error", "", 4),
        ]
    )
    w = assess(live(), reports).what_if
    assert (w.refused, w.dane_refused) == (3, 9)
    assert w.dane_by_type == (("tlsa-invalid", 7), ("dnssec-invalid", 2))
    assert w.other_failures == (("sts-policy-fetch-error", 4),)


def test_summary_names_dane_refusals() -> None:
    from stspilot.tlsrpt.summary import summarize
    from test_summary import world  # type: ignore[import-not-found]

    summary = summarize(world())
    assert summary.dane_failed_sessions == 5
    dane = [line for line in summary.verdict if line.startswith("DANE senders")]
    assert len(dane) == 1 and "tlsa-invalid 5" in dane[0] and "RFC 8461 §2" in dane[0]
    tlsa = next(r for r in summary.result_types if r.result_type == "tlsa-invalid")
    assert "RFC 7672" in tlsa.advice.rfc and "3 1 1" in tlsa.advice.fix
