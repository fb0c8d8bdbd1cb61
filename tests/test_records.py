"""TXT records _mta-sts and _smtp._tls: selection, parsing, formatting (RFC 8461 §3.1, 8460 §3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stspilot.errors import ConfigError, RecordError
from stspilot.findings import CATALOGUE
from stspilot.sts.records import (
    StsRecord,
    TlsRptRecord,
    format_sts_record,
    format_tlsrpt_record,
    new_policy_id,
    parse_sts_record,
    parse_tlsrpt_record,
    record_id,
    record_rua,
    rua_domains,
    select_sts_record,
    select_tlsrpt_record,
)

STS_VALID = [
    ("v=STSv1; id=20160831085700Z;", StsRecord("20160831085700Z")),
    ("v=STSv1;id=1", StsRecord("1")),
    ("v=STSv1 ; id=abc ;", StsRecord("abc")),  # erratum 6285: WSP before ";" is grammatical
    ("v=STSv1;\tid=abc\t", StsRecord("abc")),  # trailing WSP without ";" tolerated
    ("v=STSv1; id=" + "a" * 32, StsRecord("a" * 32)),
    ("v=STSv1; id=1; ext=val", StsRecord("1", (("ext", "val"),))),
    ("v=STSv1; x.y_z-1=a:b<c>; id=9", StsRecord("9", (("x.y_z-1", "a:b<c>"),))),
    ("v=STSv1; id=1; id=2", StsRecord("1")),  # RFC 8461 §3.2: the first one counts
    ("v=STSv1; id=1; ID=2", StsRecord("1", (("ID", "2"),))),  # names are case-sensitive
]

STS_INVALID = [
    ("", "sts.txt.not-sts"),
    ("id=20180907T090909; v=STSv1;", "sts.txt.not-sts"),  # Snawoot bad-record1
    ("V=STSv1; id=1", "sts.txt.not-sts"),
    ("v=stsv1; id=1", "sts.txt.not-sts"),
    (" v=STSv1; id=1", "sts.txt.not-sts"),
    ("v=STSv12;id=20180907T090909;", "sts.txt.not-sts"),  # Snawoot bad-record3
    ("v=STSv1", "sts.txt.id.missing"),
    ("v=STSv1;", "sts.txt.id.missing"),
    ("v=STSv1; ID=1", "sts.txt.id.missing"),
    ("v=STSv1; id=", "sts.txt.id.invalid"),
    ("v=STSv1; id=" + "a" * 33, "sts.txt.id.invalid"),
    ("v=STSv1; id=2024-01-01", "sts.txt.id.invalid"),
    ("v=STSv1; id=a b", "sts.txt.id.invalid"),
    ("v=STSv1; id=a_b", "sts.txt.id.invalid"),
    ("v=STSv1 id=1", "sts.txt.syntax"),
    ("v=STSv1;; id=1", "sts.txt.syntax"),
    ("v=STSv1; id=1;;", "sts.txt.syntax"),
    ("v=STSv1; id = 1", "sts.txt.syntax"),
    ("v=STSv1; id=1; junk", "sts.txt.syntax"),
    ("v=STSv1; id=1; -x=1", "sts.txt.syntax"),
    ("v=STSv1; id=1; x=a=b", "sts.txt.syntax"),
    ("v=STSv1; id=1; x=", "sts.txt.syntax"),
    ("v=STSv1; id=1; é=1", "sts.txt.syntax"),
    ("v=STSv1; id=1\x00", "sts.txt.syntax"),
    ("v=STSv1; id=1; id=a b", "sts.txt.syntax"),  # a repeat is ignored but must be grammatical
    ("v=STSv1; id=1; x=1; x=a=b", "sts.txt.syntax"),
    ("v=STSv1; Id=1", "sts.txt.id.missing"),  # %s"id=": Id is an extension
]


@pytest.mark.parametrize(("text", "expected"), STS_VALID)
def test_parse_sts_record_valid(text: str, expected: StsRecord) -> None:
    assert parse_sts_record(text) == expected


@pytest.mark.parametrize(("text", "code"), STS_INVALID)
def test_parse_sts_record_invalid(text: str, code: str) -> None:
    with pytest.raises(RecordError) as caught:
        parse_sts_record(text)
    assert caught.value.code == code
    assert code in CATALOGUE


TLSRPT_VALID = [
    ("v=TLSRPTv1; rua=mailto:reports@example.com", ("mailto:reports@example.com",)),
    (
        "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt",
        ("https://reporting.example.com/v1/tlsrpt",),
    ),
    (
        "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.net:8443/x?y=1;",
        ("mailto:a@example.com", "https://r.example.net:8443/x?y=1"),
    ),
    ("v=TLSRPTv1; rua=MAILTO:a%2Cb@example.com", ("MAILTO:a%2Cb@example.com",)),
    ("v=TLSRPTv1; rua=mailto:x%21y@example.com", ("mailto:x%21y@example.com",)),
    ("v=TLSRPTv1; rua=mailto:a%3Bb@example.com", ("mailto:a%3Bb@example.com",)),
    (  # B2.4: WSP on both sides of each comma; tabs too; trailing ";" optional
        "v=TLSRPTv1 ;rua=mailto:a@example.com,\thttps://r.example.com/ ,mailto:b@example.com ; ",
        ("mailto:a@example.com", "https://r.example.com/", "mailto:b@example.com"),
    ),
    (  # a repeated rua is ignored (first wins) but it may have WSP around its commas
        "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com , mailto:c@example.com",
        ("mailto:a@example.com",),
    ),
    ("v=TLSRPTv1; rua=mailto:a@example.com; RUA=x", ("mailto:a@example.com",)),
]

TLSRPT_INVALID = [
    ("v=TLSRPTv1", "tlsrpt.rua.missing"),
    ("v=TLSRPTv1; foo=bar", "tlsrpt.rua.missing"),
    ("v=TLSRPTv1; rua=", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=reports@example.com", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=mailto:x@y.example!10m", "tlsrpt.rua.invalid"),  # no DMARC size suffix
    ("v=TLSRPTv1; rua=mailto:a,b@example.com", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=mailto:@example.com", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=https://", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=http://r.example.com/", "tlsrpt.rua.scheme"),
    ("v=TLSRPTv1; rua=ftp://r.example.com/", "tlsrpt.rua.scheme"),
    ("v=TLSRPTv1 rua=mailto:a@example.com", "tlsrpt.syntax"),
    ("v=TLSRPTv1;; rua=mailto:a@example.com", "tlsrpt.syntax"),
    ("v=TLSRPTv1; rua=mailto:a@example.com; x=", "tlsrpt.syntax"),
    ("rua=mailto:a@example.com; v=TLSRPTv1", "tlsrpt.not-tlsrpt"),
    ("v=tlsrptv1; rua=mailto:a@example.com", "tlsrpt.not-tlsrpt"),
    ("V=TLSRPTv1; rua=mailto:a@example.com", "tlsrpt.not-tlsrpt"),
    ("v=TLSRPTv1; RUA=mailto:a@example.com", "tlsrpt.rua.missing"),  # %s"rua=": case-sensitive
    ("v=TLSRPTv1; rua= mailto:a@example.com", "tlsrpt.rua.invalid"),  # no WSP after "rua="
    ("v=TLSRPTv1; rua=mailto:a@example.com,,mailto:b@example.com", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=mailto:a@example.com,", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=mailto:a@example.com?subject=a;b", "tlsrpt.syntax"),  # ";" unencoded
    ("v=TLSRPTv1; rua=https://r.example.com/a!b", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=https://r.example.com/a,b", "tlsrpt.rua.invalid"),
    ("v=TLSRPTv1; rua=mailto:a@example.com; x=a b", "tlsrpt.syntax"),
]


@pytest.mark.parametrize(("text", "rua"), TLSRPT_VALID)
def test_parse_tlsrpt_record_valid(text: str, rua: tuple[str, ...]) -> None:
    assert parse_tlsrpt_record(text).rua == rua


@pytest.mark.parametrize(("text", "code"), TLSRPT_INVALID)
def test_parse_tlsrpt_record_invalid(text: str, code: str) -> None:
    with pytest.raises(RecordError) as caught:
        parse_tlsrpt_record(text)
    assert caught.value.code == code
    assert code in CATALOGUE


SELECT_STS = [
    # (records, chosen id or None, error code, note codes)
    ((), None, "sts.txt.missing", ()),
    (((b"v=STSv1; id=1",),), "1", None, ()),
    (((b"v=STSv1; ", b"id=1"),), "1", None, ("sts.txt.split",)),
    (((b"v=STSv1; i", b"d=12"),), "12", None, ("sts.txt.split",)),  # joined with nothing between
    (((b"google-site-verification=x",), (b"v=STSv1; id=1",)), "1", None, ()),
    (((b"google-site-verification=x",),), None, "sts.txt.not-sts", ()),
    (((b"v=STSv1; id=1",), (b"v=STSv1; id=2",)), None, "sts.txt.multiple", ()),
    (((b"v=STSv1; id=1",), (b"v=STSv1; id=1",)), None, "sts.txt.multiple", ()),
    (((b"v=STSv12; id=1",),), None, "sts.txt.not-sts", ()),  # dropped by the filter
    (((b"v=STSv1 ; id=1",),), "1", None, ()),  # erratum 6285: lenient filter
    (((b"v=STSv1",),), None, "sts.txt.id.missing", ()),
    (((b"v=STSv1; id=\xc3\xa9",),), None, "sts.txt.syntax", ()),  # ASCII only
    (((b"v=STSv1; id=1; v=STSv1",),), "1", None, ("sts.txt.duplicate-field",)),
    (((b"v=STSv1; id=1; note=hi",),), "1", None, ("sts.txt.extension",)),
    (((b"v=STSv1; id=1", b"; a=b"),), "1", None, ("sts.txt.split", "sts.txt.extension")),
]


@pytest.mark.parametrize(("records", "record_id", "error", "notes"), SELECT_STS)
def test_select_sts_record(
    records: tuple[tuple[bytes, ...], ...],
    record_id: str | None,
    error: str | None,
    notes: tuple[str, ...],
) -> None:
    selection = select_sts_record(records)
    assert (selection.record.id if selection.record else None) == record_id
    assert selection.ok is (record_id is not None)
    assert selection.error_code == error
    assert tuple(n.code for n in selection.notes) == notes
    assert len(selection.texts) == len(records)
    for code in (error, *notes):
        assert code is None or code in CATALOGUE


SELECT_TLSRPT = [
    ((), None, "tlsrpt.missing", ()),
    (((b"v=TLSRPTv1; rua=mailto:a@example.com",),), 1, None, ()),
    (((b"v=TLSRPTv1; rua=mai", b"lto:a@example.com"),), 1, None, ("tlsrpt.split",)),
    (((b"v=spf1 -all",),), None, "tlsrpt.not-tlsrpt", ()),
    (
        ((b"v=TLSRPTv1; rua=mailto:a@example.com",), (b"v=TLSRPTv1; rua=mailto:b@example.com",)),
        None,
        "tlsrpt.multiple",
        (),
    ),
    (
        ((b"v=TLSRPTv1; rua=mailto:a@x.example; rua=mailto:b@x.example",),),
        1,
        None,
        ("tlsrpt.duplicate-field",),
    ),
    (((b"v=TLSRPTv1; rua=mailto:a@x.example; size=10",),), 1, None, ("tlsrpt.extension",)),
    (((b"v=TLSRPTv1; rua=http://x.example/",),), None, "tlsrpt.rua.scheme", ()),
]


@pytest.mark.parametrize(("records", "rua_count", "error", "notes"), SELECT_TLSRPT)
def test_select_tlsrpt_record(
    records: tuple[tuple[bytes, ...], ...],
    rua_count: int | None,
    error: str | None,
    notes: tuple[str, ...],
) -> None:
    selection = select_tlsrpt_record(records)
    assert (len(selection.record.rua) if selection.record else None) == rua_count
    assert selection.error_code == error
    assert tuple(n.code for n in selection.notes) == notes
    for code in (error, *notes):
        assert code is None or code in CATALOGUE


@pytest.mark.parametrize(
    ("record", "text"),
    [
        (StsRecord("20261122131200"), "v=STSv1; id=20261122131200"),
        (StsRecord("1", (("a", "b"),)), "v=STSv1; id=1; a=b"),
        (TlsRptRecord(("mailto:r@example.com",)), "v=TLSRPTv1; rua=mailto:r@example.com"),
        (
            TlsRptRecord(("mailto:r@example.com", "https://r.example.com/")),
            "v=TLSRPTv1; rua=mailto:r@example.com,https://r.example.com/",
        ),
    ],
)
def test_format_records(record: StsRecord | TlsRptRecord, text: str) -> None:
    if isinstance(record, StsRecord):
        assert format_sts_record(record) == text
    else:
        assert format_tlsrpt_record(record) == text


def test_rua_domains() -> None:
    record = parse_tlsrpt_record(
        "v=TLSRPTv1; rua=mailto:a@Example.COM,https://r.example.net/,mailto:b@example.com"
    )
    assert rua_domains(record) == ("example.com",)


# --- properties -----------------------------------------------------------------------------

_alnum = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ids = st.text(_alnum, min_size=1, max_size=32)
_ext_names = st.builds(
    lambda first, rest: first + rest,
    _alnum,
    st.text(st.sampled_from("abcXYZ019_-."), max_size=31),
).filter(lambda n: n not in ("id", "v", "rua"))
_ext_values = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="=;"), min_size=1
)
_extensions = st.lists(st.tuples(_ext_names, _ext_values), max_size=4, unique_by=lambda kv: kv[0])
_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_domains = st.lists(_labels, min_size=2, max_size=4).map(".".join)
_uris = st.one_of(
    _domains.map(lambda d: f"mailto:tlsrpt@{d}"),
    _domains.map(lambda d: f"https://{d}/tlsrpt"),
)


@given(_ids, _extensions)
def test_sts_round_trip(record_id: str, extensions: list[tuple[str, str]]) -> None:
    record = StsRecord(record_id, tuple(extensions))
    assert parse_sts_record(format_sts_record(record)) == record


@given(st.lists(_uris, min_size=1, max_size=3), _extensions)
def test_tlsrpt_round_trip(rua: list[str], extensions: list[tuple[str, str]]) -> None:
    record = TlsRptRecord(tuple(rua), tuple(extensions))
    assert parse_tlsrpt_record(format_tlsrpt_record(record)) == record


_record_text = st.one_of(
    st.text(),
    st.text().map(lambda t: "v=STSv1" + t),
    st.text().map(lambda t: "v=TLSRPTv1" + t),
    st.text(st.sampled_from("v=STSv1TLSRPid;= \t,:mailto@x.https/!%2C")),
)


@given(_record_text)
def test_record_parsers_raise_only_record_errors(text: str) -> None:
    for parse in (parse_sts_record, parse_tlsrpt_record):
        try:
            parse(text)
        except RecordError as error:
            assert error.code in CATALOGUE


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=3).map(tuple), max_size=3))
def test_selection_never_raises(records: list[tuple[bytes, ...]]) -> None:
    for selection in (select_sts_record(records), select_tlsrpt_record(records)):
        assert selection.ok or selection.error_code in CATALOGUE


# --- the policy id (RFC 8461 §3.1) ----------------------------------------------------------

NOW = datetime(2026, 11, 22, 13, 12, 0, tzinfo=UTC)
ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")  # RFC 8461 §3.1


@pytest.mark.parametrize(
    ("now", "previous", "expected"),
    [
        (NOW, "", "20261122131200"),
        (NOW.astimezone(timezone(timedelta(hours=5))), "", "20261122131200"),  # UTC, not local
        (NOW.replace(microsecond=1234), "20261122131200", "20261122131200001234"),
        (NOW, "20261122131200", "20261122131200000000"),
        (NOW, "20261122131200000000", "20261122131200"),
    ],
)
def test_new_policy_id(now: datetime, previous: str, expected: str) -> None:
    got = new_policy_id(now, previous=previous)
    assert got == expected
    assert ID_RE.match(got)
    assert got != previous


def test_new_policy_id_needs_aware_time() -> None:
    with pytest.raises(ConfigError):
        new_policy_id(datetime(2026, 1, 1))  # naive on purpose


def test_new_policy_id_avoids_ids_already_handed_out() -> None:
    taken: set[str] = set()
    for _ in range(10):
        taken.add(new_policy_id(NOW, previous="x", avoid=taken))
    assert len(taken) == 10 and all(ID_RE.match(i) and len(i) <= 32 for i in taken)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=STSv1; id=20261206", "20261206"),
        ("v=STSv1; id=abc; ext=1", "abc"),  # an extension after the id is not part of it
        ("v=STSv1; id=abc; xid=y", "abc"),  # the last "id=" in the text is not the id
        ("v=STSv1;", ""),  # no id: unusable
        ("v=spf1 -all", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_record_id_reads_the_id_as_a_sender_does(text: str | None, expected: str) -> None:
    assert record_id(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=TLSRPTv1; rua=mailto:a@example.com", ("mailto:a@example.com",)),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example/x; ext=1",
            ("mailto:a@example.com", "https://r.example/x"),
        ),
        ("v=TLSRPTv1;", ()),
        (None, ()),
    ],
)
def test_record_rua_reads_the_uris_as_a_sender_does(
    text: str | None, expected: tuple[str, ...]
) -> None:
    assert record_rua(text) == expected
