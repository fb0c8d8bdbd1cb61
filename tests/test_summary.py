"""Aggregates to a plain-English summary (pure: built from rows, no database)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date

import pytest

from stspilot.tlsrpt.advice import ADVICE, advice_for
from stspilot.tlsrpt.export import CSV_COLUMNS, summary_to_csv, summary_to_json
from stspilot.tlsrpt.reports import RESULT_TYPES
from stspilot.tlsrpt.summary import (
    AuthenticityCount,
    AuthenticityLine,
    DailyTotal,
    FailureCount,
    ReportAggregates,
    SenderTotal,
    summarize,
)

D = "example.com"


def aggregates(**kw: object) -> ReportAggregates:
    base: dict[str, object] = {
        "domain": D,
        "since": date(2026, 11, 1),
        "until": date(2026, 11, 5),
        "daily": (),
        "by_result_type": (),
        "by_mx": (),
        "by_organization": (),
        "by_sending_ip": (),
        "senders": (),
    }
    base.update(kw)
    return ReportAggregates(**base)  # type: ignore[arg-type]


def world() -> ReportAggregates:
    """Google sees an expired certificate on mx1; Microsoft a DANE failure on mx2 (not an
    MTA-STS refusal) and an uncovered MX; other.org shares mx1 but only in the daily totals."""
    fails = [
        # (mx, org, ip, result type, sessions)
        ("mx1.example.com", "Google", "192.0.2.1", "certificate-expired", 30),
        ("mx2.example.com", "Microsoft", "198.51.100.7", "tlsa-invalid", 5),
        ("mx3.example.com", "Microsoft", "198.51.100.7", "validation-failure", 2),
        ("mx3.example.com", "Microsoft", "198.51.100.7", "x-new-type", 1),
    ]

    def by(index: int) -> tuple[FailureCount, ...]:
        return tuple(FailureCount(D, row[index], row[3], row[4]) for row in fails)

    return aggregates(
        daily=(
            DailyTotal(D, date(2026, 11, 1), 2, 970, 30),
            DailyTotal(D, date(2026, 11, 3), 1, 92, 8),
        ),
        by_result_type=tuple(FailureCount(D, r[3], r[3], r[4]) for r in fails),
        by_mx=by(0),
        by_organization=by(1),
        by_sending_ip=by(2),
        senders=(SenderTotal(D, "Google", 2, 970, 30), SenderTotal(D, "Microsoft", 1, 92, 8)),
    )


@pytest.mark.parametrize("result_type", sorted(RESULT_TYPES))
def test_every_iana_result_type_has_a_cause_and_a_fix(result_type: str) -> None:
    advice = advice_for(result_type)
    assert advice.result_type == result_type and advice.category != "unknown"
    assert advice.cause and advice.fix and advice.rfc.startswith("RFC ")
    # enforce refuses the negotiation failures only: sts-* failures leave the sender on its
    # cached policy (or none), DANE failures are DANE's business (RFC 8461 §3.3, §5)
    assert advice.refused_under_enforce == (advice.category == "negotiation")


def test_the_table_is_exactly_the_registry() -> None:
    assert set(ADVICE) == RESULT_TYPES


@pytest.mark.parametrize(
    ("result_type", "words"),
    [
        ("certificate-expired", "renew"),
        ("validation-failure", "mx lines"),
        ("sts-policy-fetch-error", "200 text/plain"),
        ("starttls-not-supported", "STARTTLS"),
    ],
)
def test_fixes_say_what_to_do(result_type: str, words: str) -> None:
    assert words in advice_for(result_type).fix


def test_unknown_result_types_are_kept_with_generic_advice() -> None:
    advice = advice_for("x-new-type")
    assert (advice.result_type, advice.category, advice.refused_under_enforce) == (
        "x-new-type",
        "unknown",
        False,
    )
    assert "failure-reason-code" in advice.fix


def test_no_reports_says_so_and_how_to_get_some() -> None:
    s = summarize(aggregates())
    assert (s.reports, s.sessions, s.failure_rate) == (0, 0, 0.0)
    assert [d.day.day for d in s.daily] == [1, 2, 3, 4]
    assert "no TLS-RPT reports" in s.lines[0]
    assert "_smtp._tls" in s.lines[1]


def test_totals_rates_and_days() -> None:
    s = summarize(world())
    assert (s.reports, s.successful, s.failed, s.sessions) == (3, 1062, 38, 1100)
    assert s.failure_rate == pytest.approx(38 / 1100)
    assert [(d.day.day, d.sessions, d.reports) for d in s.daily] == [
        (1, 1000, 2),
        (2, 0, 0),
        (3, 100, 1),
        (4, 0, 0),
    ]
    assert s.daily[2].failure_rate == pytest.approx(0.08)


def test_breakdowns() -> None:
    s = summarize(world())
    assert [(r.result_type, r.sessions) for r in s.result_types] == [
        ("certificate-expired", 30),
        ("tlsa-invalid", 5),
        ("validation-failure", 2),
        ("x-new-type", 1),
    ]
    assert [(b.key, b.sessions) for b in s.by_mx] == [
        ("mx1.example.com", 30),
        ("mx2.example.com", 5),
        ("mx3.example.com", 3),
    ]
    assert s.by_mx[2].result_types == (("validation-failure", 2), ("x-new-type", 1))
    assert [(x.organization, x.failed, x.result_types) for x in s.senders] == [
        ("Google", 30, (("certificate-expired", 30),)),
        ("Microsoft", 8, (("tlsa-invalid", 5), ("validation-failure", 2), ("x-new-type", 1))),
    ]
    assert [(b.key, b.sessions) for b in s.by_sending_ip] == [
        ("192.0.2.1", 30),
        ("198.51.100.7", 8),
    ]


def test_would_be_refused_under_enforce() -> None:
    s = summarize(world())
    # DANE (tlsa-invalid) and unknown types are not MTA-STS refusals
    assert [(b.key, b.result_types) for b in s.refused_mx] == [
        ("mx1.example.com", (("certificate-expired", 30),)),
        ("mx3.example.com", (("validation-failure", 2),)),
    ]
    assert [(b.key, b.sessions) for b in s.refused_senders] == [("Google", 30), ("Microsoft", 2)]
    assert s.refused_sessions == 32
    enforce = [line for line in s.lines if "enforce" in line]
    assert len(enforce) == 1 and "32" in enforce[0] and "mx1.example.com" in enforce[0]


def test_plain_english_lines() -> None:
    s = summarize(world())
    text = "\n".join(s.lines)
    assert s.lines[0].startswith("example.com, 2026-11-01 to 2026-11-04 (4 days): 1,100 sessions")
    assert "96.5% succeeded, 38 failed (3.5%)" in s.lines[0]
    assert "No report covered 2 day(s): 2026-11-02, 2026-11-04." in text
    assert "Worst day: 2026-11-03 with 8 of 100 sessions failed (8.0%)." in text
    assert "certificate-expired: 30 failed sessions. Cause: the MX certificate has expired" in text
    assert "Sender Microsoft: 8 of 100 sessions failed (8.0%)." in text


def test_clean_window_has_no_failure_lines() -> None:
    s = summarize(
        aggregates(
            daily=tuple(DailyTotal(D, date(2026, 11, d), 1, 500, 0) for d in range(1, 5)),
            senders=(SenderTotal(D, "Google", 4, 2000, 0),),
        )
    )
    assert s.lines[-1] == "No failures reported: every reported session used valid TLS."
    assert not s.refused_mx and not s.result_types


def test_several_domains_add_up_per_day() -> None:
    s = summarize(
        aggregates(
            domain=None,
            daily=(
                DailyTotal("a.org", date(2026, 11, 1), 1, 10, 0),
                DailyTotal("b.org", date(2026, 11, 1), 1, 5, 5),
            ),
        )
    )
    assert s.domains == ("a.org", "b.org")
    assert (s.daily[0].reports, s.daily[0].successful, s.daily[0].failed) == (2, 15, 5)
    assert s.lines[0].startswith("a.org, b.org, 2026-11-01")


def test_json_shape() -> None:
    data = json.loads(json.dumps(summary_to_json(summarize(world()))))
    assert data["sessions"] == 1100 and data["failed"] == 38
    assert [d["day"] for d in data["daily"]] == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
    ]
    first = data["result_types"][0]
    assert first["result_type"] == "certificate-expired" and first["refused_under_enforce"]
    assert data["would_refuse_under_enforce"]["sessions"] == 32
    assert data["by_mx"][2] == {
        "key": "mx3.example.com",
        "sessions": 3,
        "result_types": {"validation-failure": 2, "x-new-type": 1},
    }


def test_csv_shape() -> None:
    text = summary_to_csv(summarize(world()))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    sections: dict[str, int] = {}
    for row in rows:
        sections[row["section"]] = sections.get(row["section"], 0) + 1
    assert sections == {
        "day": 4,
        "result_type": 4,
        "mx": 4,
        "sending_ip": 4,
        "refused_mx": 2,
        "refused_sender": 2,
        "sender": 2,
    }
    expired = next(r for r in rows if r["section"] == "result_type")
    assert expired["key"] == "certificate-expired" and expired["refused_under_enforce"] == "true"


# --- authenticity (DKIM) of mailed reports -------------------------------------------------------


def test_authenticity_line_counts_by_outcome_and_sender() -> None:
    counts = (
        AuthenticityCount("Google Inc.", "pass", 5),
        AuthenticityCount("Google Inc.", "fail", 1),
        AuthenticityCount("Microsoft", "temperror", 2),
        AuthenticityCount("Microsoft", "none", 1),
        AuthenticityCount("Mail.ru", "unchecked", 3),
    )
    s = summarize(replace(world(), authenticity=counts))
    assert s.authenticity == AuthenticityLine("", 5, 1, 2, 1, 3)
    assert s.authenticity.mailed == 12
    by = {a.key: a for a in s.authenticity_by_sender}
    assert by["Google Inc."] == AuthenticityLine("Google Inc.", verified=5, failed=1)
    assert s.authenticity_by_sender[0].key == "Google Inc."  # failed or unsigned first
    [line] = [x for x in s.overview if x.startswith("Authenticity")]
    assert "12 mailed reports: 5 verified, 1 failed, 2 unverifiable, 1 unsigned" in line
    assert "3 not checked" in line and "Google Inc. (1 failed, 0 unsigned)" in line

    data = json.loads(json.dumps(summary_to_json(s)))
    assert data["authenticity"] == {
        "mailed": 12, "verified": 5, "failed": 1, "unverifiable": 2, "unsigned": 1,
        "unchecked": 3, "posted": 0, "imported": 0,
    }  # fmt: skip
    assert {a["organization"] for a in data["authenticity_by_sender"]} == {
        "Google Inc.", "Microsoft", "Mail.ru"
    }  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(summary_to_csv(s))))
    [total] = [r for r in rows if r["section"] == "authenticity"]
    assert (total["reports"], total["verified"], total["failed"]) == ("12", "5", "1")
    assert len([r for r in rows if r["section"] == "authenticity_sender"]) == 3


def test_no_authenticity_when_envelopes_were_not_read() -> None:
    s = summarize(world())
    assert s.authenticity is None
    assert not any(x.startswith("Authenticity") for x in s.lines)
    assert summary_to_json(s)["authenticity"] is None
    assert not any(
        r["section"].startswith("authenticity")
        for r in csv.DictReader(io.StringIO(summary_to_csv(s)))
    )


def test_no_mailed_reports_says_so() -> None:
    s = summarize(replace(world(), authenticity=()))
    assert any("no report in this window came by mail" in x for x in s.overview)
