"""Presentation of check results: the rich text report and the stspilot.check/2 JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from stspilot.check.dane_verdict import DaneState, DaneVerdict
from stspilot.check.evaluate import CheckResult, evaluate
from stspilot.check.json_doc import (
    SCHEMA,
    CheckJsonDocument,
    CheckTally,
    check_results_to_json,
    dumps_check_json,
    format_result_jsonl,
    result_to_json,
)
from stspilot.check.render import (
    FULL_REPORTS_UP_TO,
    format_check_plain,
    format_result_line_plain,
    format_tally_plain,
    render_check_text,
    render_result_line,
    render_tally,
)
from stspilot.facts import DomainFacts, FetchOutcome, TlsFailure
from test_evaluate import (  # type: ignore[import-not-found]
    CASES,
    HEALTHY,
    MX2,
    NO_STS,
    _facts,
    _host,
    fetch_fail,
    mx,
    ok_probe,
    tls_fail,
    with_probe,
)

BROKEN = evaluate(
    with_probe(tls_fail(TlsFailure.SELF_SIGNED))(
        mx("mx1.example.com", "mx2.example.com", "new.example.org")(HEALTHY)
    )
)
CLEAN = evaluate(HEALTHY)
ORPHAN = evaluate(
    fetch_fail(FetchOutcome.REDIRECT, status=301, location="https://www.example.com/")(HEALTHY)
)


def _text(results: list[CheckResult], *, verbose: bool = False) -> str:
    out = io.StringIO()
    render_check_text(results, Console(file=out, width=120, color_system=None), verbose=verbose)
    return out.getvalue()


def test_text_report_for_one_domain() -> None:
    text = _text([BROKEN])
    assert "example.com" in text and "Stage:     enforce" in text
    assert "senders apply mode enforce" in text
    assert "NOT COVERED" in text  # new.example.org in the MX table
    assert "self-signed" in text
    for finding in BROKEN.findings:
        assert finding.code in text
        if finding.severity.label != "info":
            assert finding.rfc in text
    # most severe first: the error findings come before the table's info lines
    assert text.index("mx.cert.self-signed") < text.index("sts.mx.not-covered")
    assert "Fix: Add the line mx: new.example.org to the policy" in text


def test_text_report_clean_domain() -> None:
    text = _text([CLEAN])
    assert "No findings." in text
    assert "mx1.example.com" in text


def test_text_report_unusable_policy() -> None:
    text = _text([ORPHAN])
    assert "no MTA-STS policy for senders" in text
    assert "sts.policy.redirect" in text and "https://www.example.com/" in text


def test_info_details_only_when_verbose() -> None:
    result = evaluate(NO_STS(HEALTHY))
    info = next(f for f in result.findings if f.code == "sts.txt.missing")
    assert info.fix not in _text([result]).replace("\n", " ")
    assert "Fix:" in _text([result], verbose=True)


def test_many_domains_get_a_summary_table() -> None:
    results = [replace(CLEAN, domain=f"d{i}.example") for i in range(FULL_REPORTS_UP_TO + 1)]
    results.append(replace(BROKEN, domain="broken.example"))
    text = _text(results)
    assert f"{len(results)} domains" in text
    assert "Stage:" not in text  # no full reports for many domains ...
    assert "broken.example" in text and "mx.cert.self-signed" in text
    assert text.count("Stage:") == 0
    assert _text(results, verbose=True).count("Stage:") == len(results)  # ... unless verbose


def test_json_document() -> None:
    document = json.loads(dumps_check_json([BROKEN, CLEAN, ORPHAN]))
    assert document == check_results_to_json([BROKEN, CLEAN, ORPHAN])
    assert document["schema"] == SCHEMA == "stspilot.check/2"
    assert document["summary"] == {"domains": 3, "errors": 2, "warnings": 0, "clean": 1}
    broken, clean, orphan = document["domains"]
    assert broken["stage"] == "enforce" and broken["worst"] == "error"
    assert broken["effective"] == {
        "usable": True,
        "mode": "enforce",
        "reason_code": "ok",
        "reason": BROKEN.effective.reason,
    }
    hosts = {m["host"]: m for m in broken["mx"]}
    assert hosts["new.example.org"]["covered_by"] is None
    assert hosts["new.example.org"]["probe_outcome"] == "not-probed"
    assert hosts["mx2.example.com"]["tls_ok"] is False
    assert hosts["mx2.example.com"]["findings"] == ["mx.cert.self-signed"]
    assert hosts["mx1.example.com"]["days_to_expiry"] == 60
    assert hosts["mx1.example.com"]["cert_not_after"].startswith("2027-01-21")
    assert [f["code"] for f in broken["findings"]] == list(BROKEN.codes())
    first = broken["findings"][0]
    assert set(first) == {"code", "severity", "title", "detail", "fix", "rfc", "subject"}
    assert first["severity"] == "error"
    assert clean["findings"] == [] and clean["worst"] is None
    assert clean["sts_record"] == {"id": "20261122", "extensions": {}}
    assert clean["policy"]["mx"] == ["mx1.example.com", "mx2.example.com"]
    assert clean["tlsrpt"] == {
        "state": "valid",
        "rua": ["mailto:tlsrpt@reports.example.net"],
        "extensions": {},
    }
    assert orphan["effective"]["usable"] is False
    assert orphan["effective"]["reason_code"] == "sts.policy.redirect"
    assert orphan["policy"] is None and orphan["policy_source"] is None


def test_json_of_no_results() -> None:
    assert check_results_to_json([]) == {
        "schema": SCHEMA,
        "summary": {"domains": 0, "errors": 0, "warnings": 0, "clean": 0},
        "domains": [],
    }


def test_verbose_shows_the_policy_as_served() -> None:
    text = _text([CLEAN], verbose=True)
    assert "Policy file as served:" in text
    assert "mx: mx2.example.com" in text
    assert "Policy file as served:" not in _text([CLEAN])


def test_json_document_written_piece_by_piece_is_the_whole_document() -> None:
    for results in ([], [CLEAN], [BROKEN, CLEAN, ORPHAN], [CLEAN] * 5):
        whole = json.dumps(check_results_to_json(results), indent=2, ensure_ascii=False) + "\n"
        document = CheckJsonDocument()
        pieces = [document.start(), *map(document.entry, results), document.finish()]
        assert "".join(pieces) == whole == dumps_check_json(results)
        assert document.tally.domains == len(results)
    # The summary is last: only the tally is needed to write it.
    assert list(check_results_to_json([CLEAN])) == ["schema", "domains", "summary"]


def test_jsonl_line_is_the_documents_entry() -> None:
    line = format_result_jsonl(BROKEN)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == result_to_json(BROKEN)
    assert json.loads(line) == check_results_to_json([BROKEN])["domains"][0]


def test_tally_counts_by_worst_finding() -> None:
    tally = CheckTally()
    assert tally.worst is None
    for result in (BROKEN, CLEAN, ORPHAN, CLEAN):
        tally.add(result)
    assert tally.to_json() == {"domains": 4, "errors": 2, "warnings": 0, "clean": 2}
    assert tally.worst is not None and tally.worst.label == "error"
    assert check_results_to_json([BROKEN, CLEAN, ORPHAN, CLEAN])["summary"] == tally.to_json()


def test_a_line_per_domain_and_the_tally() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40, color_system=None)  # narrow: lines never wrap
    tally = CheckTally()
    for result in (BROKEN, CLEAN, ORPHAN):
        render_result_line(result, console)
        tally.add(result)
    render_tally(tally, console)
    broken, clean, orphan, summary = out.getvalue().splitlines()
    assert broken.split()[:7] == ["✗", "error", "example.com", "enforce", "mode", "enforce", "2"]
    assert broken.endswith("2 errors, 0 warnings  mx.cert.self-signed mx2.example.com")
    assert clean.split() == ["✓", "ok", "example.com", "enforce", "mode", "enforce"]
    assert "reporting" in orphan and "no policy" in orphan and "sts.orphan.dns" in orphan
    assert summary == "Checked 3 domains: 1 clean, 0 with warnings, 2 with errors."


# --- the plain layout is rich's layout -----------------------------------------------------------


def _rich(draw: Callable[[Console], None], width: int) -> str:
    out = io.StringIO()
    draw(Console(file=out, width=width))  # a file: no terminal, no colour, as `| cat` gets
    return out.getvalue()


def _with_dane(result: CheckResult) -> CheckResult:
    states = list(DaneState)
    verdicts = tuple(
        DaneVerdict(m.host, states[n % len(states)], f"_25._tcp.{m.host}", "secure", "", (), ())
        for n, m in enumerate(result.mx)
    )
    return replace(result, dane=verdicts)


def _same_as_rich(result: CheckResult, width: int, verbose: bool) -> bool:
    """The plain layout equals rich's wherever it gives one; whether it gave one."""
    plain = format_check_plain([result], width, verbose=verbose)
    if plain is not None:
        assert plain == _rich(lambda c: render_check_text([result], c, verbose=verbose), width)
    line = format_result_line_plain(result)
    if line is not None:
        assert line == _rich(lambda c: render_result_line(result, c), width)
    return plain is not None


PLAIN_RESULTS = [
    BROKEN,
    CLEAN,
    ORPHAN,
    evaluate(NO_STS(HEALTHY)),
    _with_dane(BROKEN),
    _with_dane(CLEAN),
    *(evaluate(case[1](HEALTHY)) for case in CASES),
    evaluate(with_probe(_host(ok_probe(MX2), tls_fail(TlsFailure.EXPIRED)))(HEALTHY)),
    evaluate(with_probe(_host(*(ok_probe(MX2, version="TLSv1.2") for _ in range(3))))(HEALTHY)),
    evaluate(mx(*(f"mx{n}.a-rather-long-provider-name.example" for n in range(3)))(HEALTHY)),
]


@pytest.mark.parametrize("width", [14, 24, 40, 63, 80, 100, 132, 220])
def test_plain_text_is_riches_layout(width: int) -> None:
    laid_out = [_same_as_rich(r, width, v) for r in PLAIN_RESULTS for v in (False, True)]
    if width >= 40:  # the point: a report goes without rich
        assert all(laid_out)


@settings(max_examples=150, deadline=None)
@given(
    facts=_facts,
    width=st.integers(1, 160),
    verbose=st.booleans(),
    source=st.none() | st.text(st.sampled_from("ab -:;.\n§…\t\r中"), max_size=300),
)
def test_plain_text_is_riches_layout_for_any_result(
    facts: DomainFacts, width: int, verbose: bool, source: str | None
) -> None:
    result = replace(evaluate(facts), policy_source=source)
    _same_as_rich(result, width, verbose)
    _same_as_rich(_with_dane(result), width, verbose)


@pytest.mark.parametrize("domains", [0, 1, 2, 3])
def test_plain_tally_is_riches(domains: int) -> None:
    tally = CheckTally()
    for result in [BROKEN, CLEAN, ORPHAN][:domains]:
        tally.add(result)
    assert format_tally_plain(tally) == _rich(lambda c: render_tally(tally, c), 60)


def test_narrow_characters_are_one_cell_for_rich() -> None:
    from rich.cells import cell_len

    from stspilot.check.render import _NARROW

    assert all(cell_len(c) == 1 for c in _NARROW)
