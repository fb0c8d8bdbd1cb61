"""Every real and synthetic TLS-RPT file in the shared corpus ingests with its expected outcome.

Expectations come from ``SOURCES.md`` and checklist Part D: which deviations each file carries,
which files are refused and why. Exact sets, so a new deviation on real data is a decision.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stspilot.errors import ReportError
from stspilot.ingest.decode import envelope_deviations, extract_reports
from stspilot.tlsrpt.reports import parse_report

FD_MISSING = "failure-details.missing"
MX_MISSING = "mx-host.missing"
PS_MISSING = "policy-string.missing"
NEXT_MIDNIGHT = "date.end-next-midnight"
MS_SUBJECT = {"mail.dkim.headers-unsigned", "report-id.no-at"}

# file -> (report deviations, or the error code when refused)
JSON_EXPECTED: dict[str, set[str] | str] = {
    "google-likely__parsedmarc__2024-01-09__anon.json": {MX_MISSING},
    "google-styled__stalwart-mail-auth__rpt02__edited.json": {
        "date.range-not-one-day", MX_MISSING},
    # Deliberately malformed: summaries lack total-failure-session-count, which every real
    # reporter sends (also: unknown policy-type, no policy-domain).
    "google-styled__stalwart-mail-auth__rpt03__invalid-policy-type.json": "report.field.missing",
    "google__cry-inc__2025-03-27__anon__no-policy-found.json": {FD_MISSING},
    "google__cry-inc__2025-05-22__anon.json": {FD_MISSING},
    "google__issue-jgosmann-52__maxchernoff.ca__2025-06-01.json": {FD_MISSING},
    "google__marcbradshaw__fastmaildmarc.com__2020-03-02.json": {FD_MISSING},
    "google__phi-ag__2024-02-17__anon.json": {FD_MISSING},
    "mailru__kravietz__krvtz.net.json": {NEXT_MIDNIGHT, MX_MISSING, PS_MISSING},
    "mailru__parsedmarc__2024-02-22__anon.json": {
        NEXT_MIDNIGHT, MX_MISSING, PS_MISSING, "counts.failures-exceed-total"},
    # Edited to be malformed, but every oddity is a tolerated kind: kept, with deviations.
    "microsoft-edited__neztore__josh.scot__invalid-result-type.json": {
        "additional-info-uri.key", "counts.failures-exceed-total", "ip.invalid", MX_MISSING,
        "result-type.unknown"},
    "microsoft__cry-inc__2025-05-23__anon__sts+tlsa.json": {
        FD_MISSING, MX_MISSING, "tlsa.policy-string.json-encoded"},
    "microsoft__cry-inc__2025-06-14__anon__fetch-error-no-ip.json": {MX_MISSING, PS_MISSING},
    "microsoft__issue-cry-inc-57__2025-06-14__fetch-error-no-ip.json": {MX_MISSING, PS_MISSING},
    "microsoft__neztore__josh.scot__2025-08-03.json.gz": {FD_MISSING, MX_MISSING},
    "microsoft__phi-ag__2024-02-16__anon.json": {FD_MISSING, MX_MISSING},
    "microsoft__phi-ag__2024-03-26__anon__no-timezone.json": {
        "date.no-offset", FD_MISSING, MX_MISSING},
    "postfix-sys4-tlsrpt-reporter__issue-sys4-51__sonne.floppy.org__2025-09-20__no-policy-domain"
    ".json": {"policy-domain.missing"},
    "rfc8460-appendixB-errata6241__phi-ag.json": set(),
    "rfc8460-appendixB__parsedmarc.json": {"mx-host.string"},
    "stalwart-inferred__issue-cry-inc-71__refluxstop.de__2026-01-11__contact-null.json": {
        "contact-info.null", NEXT_MIDNIGHT},
    "stalwart-inferred__issue-parsedmarc-575__mx.egressif.io__2024-10-31__contact-null.json": {
        "contact-info.null", NEXT_MIDNIGHT},
    "synthetic__parsedmarc__empty-string-fields.json": {"field.empty", "ip.empty", MX_MISSING},
    "unknown-mta__cry-inc__2026-01-11__anon__contact-null.json": {
        "contact-info.null", NEXT_MIDNIGHT, "mx-host.prefixed"},
}  # fmt: skip

# file -> (report deviations | error code, carrier + envelope deviations)
MAIL_EXPECTED: dict[str, tuple[set[str] | str, set[str]]] = {
    # Attachment replaced upstream: the body's report-id is not the Subject's (body wins, §5.6).
    "google__isseis__failure__2026-05-12__anon.eml": (
        {NEXT_MIDNIGHT, MX_MISSING}, {"mail.report-id.mismatch"}),
    "google__isseis__success1__2026-05-11__anon.eml": ({FD_MISSING}, set()),
    "google__isseis__success2__anon.eml": ({FD_MISSING}, set()),
    "google__kravietz__krvtz.net__2024-09-15.eml": ({FD_MISSING}, set()),
    "google__kravietz__krvtz.net__2024-09-18.eml": ({FD_MISSING}, set()),
    "google__marcbradshaw__fastmaildmarc.com__2020-03-02.eml": ({FD_MISSING}, set()),
    "google__parsedmarc__cardinalhealth.ca__2024-09-03.eml": ({FD_MISSING}, set()),
    # Submitter mail.ru vs contact-info corp.mail.ru breaks the §5.3 MUST.
    "mailru__kravietz__krvtz.net__2023-01-25.eml": (
        {NEXT_MIDNIGHT, MX_MISSING, PS_MISSING},
        {"mail.dkim.headers-unsigned", "mail.submitter.mismatch"}),
    "microsoft__isseis__2026-05-13__anon.eml": ({FD_MISSING, MX_MISSING}, MS_SUBJECT),
    "microsoft__kravietz__krvtz.net__2024-09-13.eml": (
        {FD_MISSING, MX_MISSING, "tlsa.policy-string.json-encoded"}, MS_SUBJECT),
    "negative__not-a-report__cron-mail__kravietz.eml": ("mail.no-report", set()),
    # The RFC's own example: headers name example.net and mail.sender.example.com while the
    # body is about company-y.example from company-x.example; unsigned.
    "rfc8460-example__stalwart-mail-auth__rpt01.eml": (set(), {
        "mail.dkim.missing", "mail.domain.mismatch", "mail.report-id.mismatch",
        "mail.submitter.mismatch"}),
    "synthetic__stalwart-mail-auth__rpt02__uncompressed-json-part.eml": (
        {"date.range-not-one-day", MX_MISSING}, {
            "mail.type.misdeclared", "mail.dkim.missing", "mail.domain.mismatch",
            "mail.report-id.mismatch", "mail.submitter.mismatch"}),
}  # fmt: skip


def test_expectations_cover_the_corpus(corpus_dir: Path) -> None:
    assert {p.name for p in (corpus_dir / "tlsrpt-json").iterdir()} == set(JSON_EXPECTED)
    assert {p.name for p in (corpus_dir / "tlsrpt-email").iterdir()} == set(MAIL_EXPECTED)


@pytest.mark.parametrize("name", sorted(JSON_EXPECTED))
def test_json_file(corpus_dir: Path, name: str) -> None:
    expected = JSON_EXPECTED[name]
    raw = (corpus_dir / "tlsrpt-json" / name).read_bytes()
    try:
        (found,) = extract_reports(raw)
        report = parse_report(found.json_bytes)
    except ReportError as exc:
        assert exc.code == expected, exc
        return
    assert report.deviation_codes == expected
    assert report.report_id and report.policies


@pytest.mark.parametrize("name", sorted(MAIL_EXPECTED))
def test_mail_file(corpus_dir: Path, name: str) -> None:
    expected, expected_mail = MAIL_EXPECTED[name]
    raw = (corpus_dir / "tlsrpt-email" / name).read_bytes()
    try:
        (found,) = extract_reports(raw)
        report = parse_report(found.json_bytes)
    except ReportError as exc:
        assert exc.code == expected, exc
        return
    assert found.envelope is not None
    assert report.deviation_codes == expected
    mail_codes = {d.code for d in (*found.deviations, *envelope_deviations(report, found.envelope))}
    assert mail_codes == expected_mail


def test_mail_attachment_equals_the_json_file(corpus_dir: Path) -> None:
    """SOURCES.md: the marcbradshaw and kravietz Mail.ru JSON files are these mails' reports."""
    for mail, plain in (
        ("google__marcbradshaw__fastmaildmarc.com__2020-03-02.eml",
         "google__marcbradshaw__fastmaildmarc.com__2020-03-02.json"),
        ("mailru__kravietz__krvtz.net__2023-01-25.eml", "mailru__kravietz__krvtz.net.json"),
    ):  # fmt: skip
        (found,) = extract_reports((corpus_dir / "tlsrpt-email" / mail).read_bytes())
        from_mail = parse_report(found.json_bytes)
        from_file = parse_report((corpus_dir / "tlsrpt-json" / plain).read_bytes())
        assert from_mail == from_file
