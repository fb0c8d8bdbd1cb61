"""extract_reports, envelope_deviations and iter_sources: mail variants, mbox, Maildir, bombs."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from email import message_from_bytes
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stspilot.errors import LimitExceeded, ReportError
from stspilot.ingest.decode import (
    envelope_deviations,
    extract_reports,
    gunzip,
    iter_sources,
)
from stspilot.ingest.mail import (
    Envelope,
    ReportPart,
    fast_report_parts,
    read_envelope,
    report_parts,
)
from stspilot.lab.sample_reports import generate_reports, to_email, to_gzip, to_json_bytes
from stspilot.tlsrpt.reports import Limits, parse_report

GOOGLE, MICROSOFT, MAILRU = generate_reports(3, seed=7, domains=("example.com",))[:3]
REPORT = GOOGLE
JSON = to_json_bytes(REPORT)
GZ = to_gzip(REPORT)


def report_mail(
    payload: bytes,
    ctype: str,
    *,
    filename: str | None = "google.com!example.com!1!2.json.gz",
    headers: dict[str, str] | None = None,
    encoding: str = "base64",
) -> bytes:
    msg = MIMEMultipart("report", report_type="tlsrpt")
    fields = {
        "From": "noreply-smtp-tls-reporting@google.com",
        "Subject": "Report Domain: example.com Submitter: google.com "
        f"Report-ID: <{REPORT['report-id']}@google.com>",
        "TLS-Report-Domain": "example.com",
        "TLS-Report-Submitter": "google.com",
        "DKIM-Signature": "v=1; d=google.com; s=x; "
        "h=from:subject:tls-report-domain:tls-report-submitter; b=AA",
    }
    fields.update(headers or {})
    for key, value in fields.items():
        if value:
            msg[key] = value
    msg.attach(MIMEText("This is a TLS report.\n"))
    main, _, sub = ctype.partition("/")
    part: Message
    if encoding == "base64":
        part = MIMEApplication(payload, sub) if main == "application" else MIMEBase(main, sub)
        if main != "application":
            part.set_payload(payload)
            from email.encoders import encode_base64

            encode_base64(part)
    else:
        part = MIMEText(payload.decode(), sub, "utf-8")
        del part["Content-Transfer-Encoding"]
        part.set_payload(payload.decode())
        part["Content-Transfer-Encoding"] = "7bit"
    if filename:
        part.add_header("Content-Disposition", "attachment", filename=filename)
    msg.attach(part)
    return msg.as_bytes()


def test_plain_json_and_gzip() -> None:
    (plain,) = extract_reports(JSON)
    (packed,) = extract_reports(GZ)
    assert plain.json_bytes == JSON == packed.json_bytes
    assert plain.envelope is None and packed.envelope is None


@pytest.mark.parametrize(
    "lead", [b" " * 5000, b"\r\n" * 40 + b"\t" * 40, b"\xef\xbb\xbf" + b"\n" * 100]
)
def test_json_after_any_amount_of_whitespace(lead: bytes) -> None:
    """RFC 8259 §2 allows any whitespace before the value; past 64 bytes of it the sniffer
    called the report "neither JSON, gzip nor an e-mail message"."""
    for unit in (lead + JSON, gzip.compress(lead + JSON), report_mail(lead + JSON, "text/plain")):
        (part,) = extract_reports(unit)
        assert parse_report(part.json_bytes).report_id == REPORT["report-id"]


# (case id, mail bytes, expect a mail.type.misdeclared deviation)
MAILS: list[tuple[str, bytes, bool]] = [
    ("rfc-gzip", to_email(REPORT), False),
    ("rfc-json", to_email(REPORT, gzip=False), False),
    ("octet-stream-json-gz-name", report_mail(GZ, "application/octet-stream"), True),
    ("application-gzip", report_mail(GZ, "application/gzip"), True),
    ("bare-tlsrpt", report_mail(JSON, "application/tlsrpt", filename="r.json"), True),
    ("json-declared-but-gzip", report_mail(GZ, "application/tlsrpt+json"), True),
    ("gzip-declared-but-json", report_mail(JSON, "application/tlsrpt+gzip"), True),
    ("text-plain-json-no-name", report_mail(JSON, "text/plain", filename=None, encoding="7bit"),
     True),
    ("octet-stream-no-name", report_mail(GZ, "application/octet-stream", filename=None), True),
]  # fmt: skip


@pytest.mark.parametrize(("case", "raw", "misdeclared"), MAILS, ids=[m[0] for m in MAILS])
def test_mail_variants(case: str, raw: bytes, misdeclared: bool) -> None:
    (found,) = extract_reports(raw)
    assert parse_report(found.json_bytes).report_id == REPORT["report-id"]
    assert found.envelope is not None
    assert found.envelope.tls_report_domain == "example.com"
    assert found.envelope.tls_report_submitter == "google.com"
    assert ("mail.type.misdeclared" in {d.code for d in found.deviations}) == misdeclared


def test_folded_and_encoded_subject() -> None:
    raw = report_mail(
        GZ,
        "application/tlsrpt+gzip",
        headers={"Subject": "=?utf-8?q?Report_Domain=3A_example=2Ecom?=\r\n Submitter: google.com"
                 "\r\n Report-ID: <abc@google.com>"},
    )  # fmt: skip
    (found,) = extract_reports(raw)
    env = found.envelope
    assert env is not None
    assert (env.subject_domain, env.subject_submitter, env.subject_report_id) == (
        "example.com",
        "google.com",
        "abc@google.com",
    )


def test_mail_without_report_is_refused() -> None:
    msg = MIMEText("cron output\n")
    msg["Subject"] = "Cron <root@host> job"
    with pytest.raises(ReportError) as info:
        extract_reports(msg.as_bytes())
    assert info.value.code == "mail.no-report"


def test_two_reports_in_one_mail() -> None:
    msg = MIMEMultipart("report", report_type="tlsrpt")
    msg["TLS-Report-Domain"] = "example.com"
    for doc in (GOOGLE, MICROSOFT):
        part = MIMEApplication(to_gzip(doc), "tlsrpt+gzip")
        part.add_header("Content-Disposition", "attachment", filename="x.json.gz")
        msg.attach(part)
    found = extract_reports(msg.as_bytes())
    assert [parse_report(f.json_bytes).report_id for f in found] == [
        GOOGLE["report-id"],
        MICROSOFT["report-id"],
    ]


BAD: list[tuple[str, bytes, Limits, str]] = [
    ("corrupt-gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 20, Limits(), "report.gzip.invalid"),
    ("truncated-gzip", GZ[: len(GZ) // 2], Limits(), "report.gzip.invalid"),
    ("gzip-not-json", gzip.compress(b"hello"), Limits(), "report.json.invalid"),
    ("declared-part-garbage", report_mail(b"\x00garbage", "application/tlsrpt+gzip"), Limits(),
     "mail.part.invalid"),
    ("declared-part-corrupt-gzip", report_mail(GZ[:40], "application/tlsrpt+gzip"), Limits(),
     "report.gzip.invalid"),
    ("input-too-big", JSON, Limits(max_input_bytes=100), "report.limit.input-bytes"),
    ("compressed-too-big", GZ, Limits(max_compressed_bytes=100), "report.limit.compressed-bytes"),
    ("decompressed-too-big", GZ, Limits(max_json_bytes=100), "report.limit.decompressed-bytes"),
    ("mail-part-too-big", report_mail(GZ, "application/tlsrpt+gzip"),
     Limits(max_compressed_bytes=100), "report.limit.compressed-bytes"),
    ("too-many-parts", report_mail(GZ, "application/tlsrpt+gzip"), Limits(max_mime_parts=2),
     "report.limit.mime-parts"),
    ("not-anything", b"\x00\x01\x02binary", Limits(), "report.format.unknown"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "raw", "limits", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_typed_error(case: str, raw: bytes, limits: Limits, code: str) -> None:
    with pytest.raises(ReportError) as info:
        extract_reports(raw, limits=limits)
    assert info.value.code == code, info.value


def test_bomb_without_the_ratio_guard_stops_at_the_size_cap() -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024), compresslevel=9)
    limits = Limits(max_json_bytes=2 * 1024 * 1024, max_compression_ratio=10**9)
    with pytest.raises(LimitExceeded) as info:
        gunzip(bomb, limits=limits)
    assert info.value.code == "report.limit.decompressed-bytes"


def test_ordinary_large_report_passes_the_ratio_guard() -> None:
    docs = generate_reports(3000, seed=11, domains=[f"d{i}.example" for i in range(40)])
    big = b"[" + b",".join(to_json_bytes(d) for d in docs) + b"]"
    assert len(big) > 2 * 1024 * 1024
    assert gunzip(gzip.compress(big)) == big


def test_concatenated_gzip_members() -> None:
    half = len(JSON) // 2
    assert gunzip(gzip.compress(JSON[:half]) + gzip.compress(JSON[half:])) == JSON


@pytest.mark.parametrize("wrap", ["raw", "mail"])
def test_gzip_bomb_is_refused_fast_with_bounded_memory(wrap: str) -> None:
    bomb = gzip.compress(b"\0" * (90 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100 * 1024
    raw = bomb if wrap == "raw" else report_mail(bomb, "application/tlsrpt+gzip")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(LimitExceeded) as info:
            extract_reports(raw)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "report.limit.compression-ratio"
    # Generous bounds for a shared 2-core machine; bench/parse_bench.py prints the real figure.
    assert elapsed < 2.0
    assert peak < 50 * 1024 * 1024


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for prefix in (
        b"",
        b"\x1f\x8b",
        b"From: a@b\r\nContent-Type: multipart/report\r\n\r\n",
        b'Content-Type: multipart/report; boundary="b"\r\n\r\n--b\r\n',
        b"Content-Type: multipart/report; boundary*=x-unknown''b\r\n\r\n--b\r\n",
        b"Content-Type: application/tlsrpt+gzip; name*=bogus'en'r.json.gz\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n",
    ):
        try:
            found = extract_reports(prefix + data)
        except ReportError as exc:
            assert exc.code.startswith(("report.", "mail.")) and str(exc)
        else:
            assert found and all(f.json_bytes.lstrip()[:1] in (b"{", b"\xef") for f in found)


# --- envelope vs body ------------------------------------------------------------------------


def _codes(raw: bytes) -> set[str]:
    (found,) = extract_reports(raw)
    assert found.envelope is not None
    return {d.code for d in envelope_deviations(parse_report(found.json_bytes), found.envelope)}


def test_generated_provider_mails() -> None:
    assert _codes(to_email(GOOGLE)) == set()
    assert _codes(to_email(MICROSOFT)) == {"mail.dkim.headers-unsigned", "report-id.no-at"}
    assert "mail.submitter.mismatch" in _codes(to_email(MAILRU))


ENVELOPES: list[tuple[str, dict[str, str], str]] = [
    ("no-headers", {"TLS-Report-Domain": ""}, "mail.headers.missing"),
    ("nonstandard-subject", {"Subject": "Report"}, "mail.subject.nonstandard"),
    ("other-domain", {"TLS-Report-Domain": "other.example"}, "mail.domain.mismatch"),
    ("other-submitter", {"TLS-Report-Submitter": "yahoo.com"}, "mail.submitter.mismatch"),
    ("other-report-id", {"Subject": "Report Domain: example.com Submitter: google.com "
                         "Report-ID: <nope@google.com>"}, "mail.report-id.mismatch"),
    ("no-dkim", {"DKIM-Signature": ""}, "mail.dkim.missing"),
    ("foreign-dkim", {"DKIM-Signature": "v=1; d=evil.example; "
                      "h=tls-report-domain:tls-report-submitter"}, "mail.dkim.domain-mismatch"),
    ("dkim-without-headers", {"DKIM-Signature": "v=1; d=google.com; h=from:to"},
     "mail.dkim.headers-unsigned"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "headers", "code"), ENVELOPES, ids=[e[0] for e in ENVELOPES])
def test_envelope_disagreements(case: str, headers: dict[str, str], code: str) -> None:
    raw = report_mail(GZ, "application/tlsrpt+gzip", headers=headers)
    assert code in _codes(raw)


def test_agreeing_envelope_has_no_deviations() -> None:
    assert _codes(report_mail(GZ, "application/tlsrpt+gzip")) == set()


# --- sources -------------------------------------------------------------------------------------


def test_iter_sources_directory(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(JSON)
    (tmp_path / ".hidden.json").write_bytes(JSON)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json.gz").write_bytes(GZ)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "c.json").write_bytes(JSON)
    sources = list(iter_sources(tmp_path))
    assert [Path(s.origin).name for s in sources] == ["a.json", "b.json.gz"]
    assert [s.raw for s in sources] == [JSON, GZ]


def test_iter_sources_follows_symlinked_folders_once(tmp_path: Path) -> None:
    """A link back up (``loop -> ..``) would list the same files again at every level, ~40
    deep until ELOOP; a linked folder elsewhere is read, once however often it is linked."""
    (tmp_path / "a.json").write_bytes(JSON)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    shared = tmp_path.parent / f"{tmp_path.name}-shared"
    shared.mkdir()
    (shared / "b.json.gz").write_bytes(GZ)
    (tmp_path / "sub" / "x-link").symlink_to(shared, target_is_directory=True)
    (tmp_path / "z-link").symlink_to(shared, target_is_directory=True)
    sources = list(iter_sources(tmp_path))
    assert [Path(s.origin).name for s in sources] == ["a.json", "b.json.gz"]
    assert sources[1].origin == str(tmp_path / "sub" / "x-link" / "b.json.gz")


def test_iter_sources_mbox(tmp_path: Path) -> None:
    mails = [to_email(doc) for doc in (GOOGLE, MICROSOFT, MAILRU)]
    quoted = b"From: x@y\n\nFrom here on\n>From quoted\n"
    box = tmp_path / "reports.mbox"
    box.write_bytes(
        b"".join(
            b"From MAILER-DAEMON Thu Jan  1 00:00:00 2025\n"
            + m.replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From ")
            + b"\n"
            for m in [*mails, quoted]
        )
    )
    sources = list(iter_sources(box))
    assert [s.origin for s in sources] == [f"{box}#{i}" for i in range(4)]
    ids = [parse_report(extract_reports(s.raw)[0].json_bytes).report_id for s in sources[:3]]
    assert ids == [GOOGLE["report-id"], MICROSOFT["report-id"], MAILRU["report-id"]]
    # mboxrd: one ">" is removed from quoted "From " lines
    assert sources[3].raw == b"From: x@y\n\nFrom here on\nFrom quoted\n"


def test_iter_sources_maildir(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1.host").write_bytes(to_email(GOOGLE))
    (tmp_path / "cur" / "2.host:2,S").write_bytes(to_email(MICROSOFT))
    (tmp_path / "tmp" / "3.host").write_bytes(b"half-written")
    sources = list(iter_sources(tmp_path))
    assert [Path(s.origin).parent.name for s in sources] == ["new", "cur"]


def test_iter_sources_caps_huge_files(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b"{" + b" " * 5000 + b"}")
    (source,) = iter_sources(big, limits=Limits(max_input_bytes=1000))
    assert len(source.raw) == 1001
    with pytest.raises(LimitExceeded):
        extract_reports(source.raw, limits=Limits(max_input_bytes=1000))


# --- the flat-multipart fast path agrees with the stdlib walk --------------------------------


Both = tuple[tuple[list[ReportPart], Envelope], tuple[list[ReportPart], Envelope]]


def _both_ways(raw: bytes) -> Both | None:
    """(fast parts, fast envelope), (walked parts, stdlib envelope); None when the fast path
    declines the message."""
    flat = fast_report_parts(raw, Limits())
    if flat is None:
        return None
    msg = message_from_bytes(raw, policy=compat32)
    walked = report_parts(msg, Limits())
    return (flat[1], read_envelope(flat[0])), (walked, read_envelope(msg))


@pytest.mark.parametrize(("case", "raw", "misdeclared"), MAILS, ids=[m[0] for m in MAILS])
def test_fast_path_matches_walk(case: str, raw: bytes, misdeclared: bool) -> None:
    both = _both_ways(raw)
    assert both is not None
    fast, walked = both
    assert fast == walked and fast[0]


def test_fast_path_matches_walk_on_corpus(corpus_dir: Path) -> None:
    taken = 0
    for path in sorted((corpus_dir / "tlsrpt-email").iterdir()):
        both = _both_ways(path.read_bytes())
        if both is not None:
            taken += 1
            assert both[0] == both[1], path.name
    assert taken >= 10  # the real report mails are all flat multiparts


def test_forwarded_report_falls_back_to_the_walk() -> None:
    outer = MIMEMultipart("mixed")
    outer["Subject"] = "Fwd: report"
    outer.attach(MIMEText("see attached\n"))
    outer.attach(MIMEMessage(message_from_bytes(to_email(GOOGLE))))
    raw = outer.as_bytes()
    assert fast_report_parts(raw, Limits()) is None
    (found,) = extract_reports(raw)
    assert parse_report(found.json_bytes).report_id == GOOGLE["report-id"]


# Byte-level edits of a report mail: the fast path must decline them (the stdlib then reads
# the mail) or read them exactly as the stdlib does.
ODD_MAILS = [
    ("rfc2231-filename", b'filename="', b"filename*=utf-8''"),
    ("encoded-word-subject", b"Subject: ", b"Subject: =?utf-8?q?Report?= "),
    ("8bit-header", b"Subject: ", "Subject: Bericht für ".encode()),
    (
        "folded-content-type",
        b"Content-Type: multipart/report;",
        b"Content-Type:\r\n multipart/report;",
    ),
    ("quoted-pair-param", b'filename="', b'filename="\\'),
    ("angle-param", b'filename="', b'filename="<'),
    ("no-padding", b"=\n\n", b"\n\n"),
    ("display-name-from", b"From: ", b'From: "Google, Inc." <x@google.com> '),
    (
        "trailing-space-cte",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: base64 ",
    ),
    (
        "quoted-printable",
        b"Content-Transfer-Encoding: 7bit",
        b"Content-Transfer-Encoding: quoted-printable",
    ),
    ("crlf", b"\n", b"\r\n"),
]


def _walk_extract(raw: bytes) -> list[tuple[bytes, Envelope, str]]:
    msg = message_from_bytes(raw, policy=compat32)
    envelope = read_envelope(msg)
    out = []
    for part in report_parts(msg, Limits()):
        if part.payload[:2] == b"\x1f\x8b":
            out.append((gunzip(part.payload), envelope, part.label))
        elif part.payload.lstrip()[:1] == b"{":
            out.append((part.payload, envelope, part.label))
        else:
            return []  # extract_reports refuses the mail: "mail.part.invalid"
    return out


@pytest.mark.parametrize(("case", "old", "new"), ODD_MAILS, ids=[m[0] for m in ODD_MAILS])
@pytest.mark.parametrize("packed", [True, False], ids=["gzip", "json"])
def test_fast_path_declines_or_agrees_on_odd_mails(
    case: str, old: bytes, new: bytes, packed: bool
) -> None:
    raw = to_email(GOOGLE, gzip=packed)
    if old not in raw:
        pytest.skip(f"this sample mail has no {old!r} to change")
    raw = raw.replace(old, new) if case == "crlf" else raw.replace(old, new, 1)
    both = _both_ways(raw)
    if both is not None:
        assert both[0] == both[1]
    want = _walk_extract(raw)
    try:
        got = [(e.json_bytes, e.envelope, e.label) for e in extract_reports(raw)]
    except ReportError:
        got = []
    assert got == want


RFC2231_NAMES = [
    # What the stdlib's own generator writes for a long name (policy.default folds it).
    (
        "continued-encoded",
        "filename*0*=utf-8''google.com%21customer.example%211735689600;\n"
        " filename*1*=%211735775999%21001.json.gz",
    ),
    (
        "continued-plain",
        'filename*0="google.com!customer.example!1735689600";\n'
        ' filename*1="!1735775999!001.json.gz"',
    ),
    ("one-encoded", "filename*=utf-8'en'r%C3%A9port.json.gz"),
    ("latin-1", "filename*=iso-8859-1''r%E9port.json.gz"),
    ("unknown-charset", "filename*=x-nowhere''report.json.gz"),
    ("both-forms", "filename=\"plain.json.gz\"; filename*=utf-8''star.json.gz"),
]


@pytest.mark.parametrize(("case", "param"), RFC2231_NAMES, ids=[c for c, _ in RFC2231_NAMES])
@pytest.mark.parametrize("packed", [True, False], ids=["gzip", "json"])
def test_fast_path_takes_rfc2231_file_names(case: str, param: str, packed: bool) -> None:
    """RFC 2231 §3-§4 parameters (continuations, charset and language) on the report part:
    the fast path takes the mail and names the part exactly as the stdlib walk does."""
    raw = to_email(GOOGLE, gzip=packed)
    start = raw.index(b"filename=")
    end = raw.index(b"\n", start)
    raw = raw[:start] + param.encode() + raw[end:]
    both = _both_ways(raw)
    assert both is not None, "the fast path declined"
    assert both[0] == both[1]
    got = {e.label for e in extract_reports(raw)}
    assert got == {p.label for p in both[1][0]}


def test_fast_path_takes_long_names_from_the_stdlib_generator() -> None:
    from email.message import EmailMessage
    from email.policy import default

    msg = EmailMessage(policy=default)
    msg["From"] = "noreply-smtp-tls-reporting@google.com"
    msg["Subject"] = "Report Domain: customer.example Submitter: google.com Report-ID: <x@google>"
    msg.set_content("This is an aggregate TLS report.")
    name = "google.com!a-long-customer-domain.example!1735689600!1735775999!000123.json.gz"
    msg.add_attachment(to_gzip(GOOGLE), "application", "tlsrpt+gzip", filename=name)
    raw = msg.as_bytes()
    assert b"filename*" in raw  # the stdlib chose RFC 2231 continuations for this name
    both = _both_ways(raw)
    assert both is not None
    assert both[0] == both[1]
    assert [p.label for p in both[0][0]] == [f"part 2: {name}"]
