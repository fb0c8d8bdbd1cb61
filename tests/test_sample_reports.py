"""The lab's report generator: deterministic, realistic shapes, and every format ingests."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from stspilot.ingest.decode import envelope_deviations, extract_reports, iter_sources
from stspilot.lab.sample_reports import (
    file_name,
    generate_reports,
    to_email,
    to_gzip,
    to_json_bytes,
    write_corpus,
)
from stspilot.tlsrpt.reports import parse_report

# RFC 8460 §5.1: sender "!" policy-domain "!" begin "!" end ["!" unique-id] "." extension
FILE_NAME = re.compile(r"[a-z0-9.-]+![a-z0-9.-]+!\d+!\d+(![A-Za-z0-9]+)?\.json(\.gz)?")


def test_deterministic_from_seed() -> None:
    a = [to_json_bytes(r) for r in generate_reports(50, seed=3)]
    b = [to_json_bytes(r) for r in generate_reports(50, seed=3)]
    c = [to_json_bytes(r) for r in generate_reports(50, seed=4)]
    assert a == b != c
    assert [to_email(r) for r in generate_reports(5, seed=3)] == [
        to_email(r) for r in generate_reports(5, seed=3)
    ]


def test_realistic_mix() -> None:
    docs = generate_reports(2000, seed=1, domains=("a.example", "b.example"))
    orgs = Counter(d["organization-name"] for d in docs)
    assert set(orgs) == {"Google Inc.", "Microsoft Corporation", "Mail.ru", "mx.egressif.io"}
    counts = [len(d["policies"]) for d in docs]
    assert min(counts) == 1 and max(counts) == 20
    with_failures = sum(1 for d in docs for p in d["policies"] if p.get("failure-details"))
    assert 0 < with_failures < sum(counts)
    codes = Counter(c for d in docs for c in parse_report(to_json_bytes(d)).deviation_codes)
    # The providers' known quirks all show up (checklist Part D).
    for code in (
        "date.end-next-midnight",
        "contact-info.null",
        "mx-host.missing",
        "tlsa.policy-string.json-encoded",
        "date.no-offset",
        "failure-details.missing",
    ):
        assert codes[code] > 0, code  # fmt: skip
    assert {d["policies"][0]["policy"]["policy-domain"] for d in docs} == {
        "a.example",
        "b.example",
    }


def test_dates_follow_start() -> None:
    docs = generate_reports(40, seed=2, start=datetime(2024, 2, 28, 15, tzinfo=UTC))
    starts = {parse_report(to_json_bytes(d)).start for d in docs}
    assert min(starts) == datetime(2024, 2, 28, tzinfo=UTC)
    assert all(s.hour == 0 for s in starts)


def test_formats_carry_the_same_report() -> None:
    for doc in generate_reports(30, seed=5):
        want = parse_report(to_json_bytes(doc))
        assert to_gzip(doc)[:2] == b"\x1f\x8b"
        assert FILE_NAME.fullmatch(file_name(doc)), file_name(doc)
        for raw in (to_gzip(doc), to_email(doc), to_email(doc, gzip=False)):
            (found,) = extract_reports(raw)
            assert parse_report(found.json_bytes) == want
            if found.envelope is not None:
                assert found.envelope.tls_report_domain == want.policies[0].policy_domain
                codes = {d.code for d in envelope_deviations(want, found.envelope)}
                assert not codes & {"mail.domain.mismatch", "mail.report-id.mismatch"}


def test_write_corpus(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path / "c", 12, seed=9, formats=("json", "json.gz", "eml"))
    assert len(paths) == 36 and all(p.is_file() for p in paths)
    ids = Counter(
        parse_report(found.json_bytes).report_id
        for source in iter_sources(tmp_path / "c")
        for found in extract_reports(source.raw)
    )
    assert sum(ids.values()) == 36
    assert set(ids.values()) == {3}


def test_default_email_keeps_its_look_alike_signature() -> None:
    report = generate_reports(1)[0]
    raw = to_email(report)
    assert raw == to_email(report)  # bytes still a function of the report
    assert b"bh=AAAA" in raw


def test_email_signed_with_a_lab_key_verifies() -> None:
    import dkim  # type: ignore[import-untyped]

    from stspilot.lab import make_dkim_key

    key = make_dkim_key()
    record = key.record_value().encode()
    for report in generate_reports(8):
        raw = to_email(report, dkim_key=key)
        assert raw.startswith(b"DKIM-Signature: ") and b"bh=AAAA" not in raw
        assert b" l=" not in raw and b";l=" not in raw  # RFC 8460 §3: no body length
        assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record, tlsrpt=True)
        # The signed mail still reads as the same report.
        [found] = extract_reports(raw)
        assert parse_report(found.json_bytes).report_id == report["report-id"]
        assert found.envelope is not None and found.envelope.dkim_signed
        google = report["organization-name"] == "Google Inc."
        assert found.envelope.dkim_covers_tlsrpt_headers is google
