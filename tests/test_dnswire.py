"""probes/dnswire.py reads answers as dnspython does: the same RRsets, rdata, names and errors."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from stspilot.probes.dnswire import (
    WireError,
    WireName,
    name_from_text,
    parse_message,
    rcode_text,
)

ODD_NAMES = (
    "mx1.example.com.",
    "MX1.Example.COM.",
    "a\\.b.example.",  # a dot inside a label
    "we\\032ird\\\\.example.",  # a space and a backslash
    '\\@\\$\\(\\)\\;\\".example.',
    "\\255\\000x.example.",
    "_25._tcp.mx.example.",
    "xn--bcher-kva.example.",
)


def _answer(qname: str, rdtype: str, rrsets: list[tuple[str, str, list[str]]], **kw: int) -> bytes:
    query = dns.message.make_query(qname, rdtype, use_edns=0)
    response = dns.message.make_response(query)
    for owner, kind, texts in rrsets:
        response.answer.append(dns.rrset.from_text_list(owner, 300, dns.rdataclass.IN, kind, texts))
    response.set_rcode(kw.get("rcode", dns.rcode.NOERROR))
    return response.to_wire()


def _as_dnspython(message: dns.message.Message) -> list[tuple[str, int, list[object]]]:
    out = []
    for rrset in message.answer:
        if rrset.rdclass != dns.rdataclass.IN:  # never read by stspilot (nor by this module)
            continue
        rdatas: list[object] = []
        for rdata in rrset:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                rdatas.append(rdata.address)
            elif rrset.rdtype == dns.rdatatype.MX:
                rdatas.append((rdata.preference, str(rdata.exchange)))
            elif rrset.rdtype == dns.rdatatype.TXT:
                rdatas.append(tuple(rdata.strings))
            elif rrset.rdtype == dns.rdatatype.CNAME:
                rdatas.append(str(rdata.target))
        out.append((str(rrset.name), int(rrset.rdtype), rdatas))
    return out


def _as_ours(data: bytes) -> list[tuple[str, int, list[object]]]:
    out = []
    for rrset in parse_message(data).answer:
        if rrset.rdclass != dns.rdataclass.IN:
            continue
        rdatas: list[object] = []
        for rdata in rrset:
            if hasattr(rdata, "address"):
                rdatas.append(rdata.address)
            elif hasattr(rdata, "preference"):
                rdatas.append((rdata.preference, str(rdata.exchange)))
            elif hasattr(rdata, "strings"):
                rdatas.append(rdata.strings)
            elif hasattr(rdata, "target"):
                rdatas.append(str(rdata.target))
        out.append((str(rrset.name), rrset.rdtype, rdatas))
    return out


CASES = [
    ("example.com.", "A", [("example.com.", "A", ["192.0.2.1", "192.0.2.2", "192.0.2.1"])]),
    (
        "example.com.",
        "AAAA",
        [("example.com.", "AAAA", ["2001:db8::1", "::ffff:192.0.2.1", "::", "::1.2.3.4"])],
    ),
    (
        "example.com.",
        "MX",
        [("example.com.", "MX", [f"{i} {name}" for i, name in enumerate(ODD_NAMES)])],
    ),
    ("example.com.", "MX", [("example.com.", "MX", ["0 ."])]),  # null MX (RFC 7505)
    (
        "_mta-sts.example.com.",
        "TXT",
        [
            ("_mta-sts.example.com.", "CNAME", ["sts.provider.example."]),
            ("sts.provider.example.", "TXT", ['"v=STSv1; " "id=1"', '""', '"v=STSv1; id=1"']),
        ],
    ),
    (
        "Example.COM.",
        "TXT",
        [
            ("example.com.", "TXT", ['"a"']),
            ("other.example.", "A", ["192.0.2.9"]),
            ("EXAMPLE.com.", "TXT", ['"b"', '"a"']),  # merged into the first RRset, deduplicated
        ],
    ),
]


@pytest.mark.parametrize(("qname", "rdtype", "rrsets"), CASES)
def test_answers_read_as_dnspython_reads_them(
    qname: str, rdtype: str, rrsets: list[tuple[str, str, list[str]]]
) -> None:
    data = _answer(qname, rdtype, rrsets)
    theirs = dns.message.from_wire(data)
    ours = parse_message(data)
    assert _as_ours(data) == _as_dnspython(theirs)
    assert ours.rcode() == theirs.rcode()
    assert ours.flags == theirs.flags
    assert [str(q.name) for q in ours.question] == [str(q.name) for q in theirs.question]


@pytest.mark.parametrize("text", ODD_NAMES)
def test_names_are_written_as_dnspython_writes_them(text: str) -> None:
    name = dns.name.from_text(text)
    ours = WireName(tuple(label for label in name.labels if label))
    assert str(ours) == str(name)
    assert ours.to_wire() == name.to_wire()
    assert name_from_text(text) == ours
    assert name_from_text(text.upper()) == ours  # case does not matter


def test_bad_names_fail_as_dnspython_fails() -> None:
    for bad in ("a..b", "x" * 64 + ".example", ".".join(["abcdefgh"] * 40)):
        with pytest.raises(dns.exception.DNSException) as theirs:
            dns.name.from_text(bad)
        with pytest.raises(type(theirs.value)):
            name_from_text(bad)


def test_extended_rcode_and_names() -> None:
    data = _answer("example.com.", "A", [], rcode=dns.rcode.BADVERS)
    assert parse_message(data).rcode() == dns.rcode.BADVERS == 16
    assert rcode_text(16) == dns.rcode.to_text(16) and rcode_text(2) == "SERVFAIL"
    assert rcode_text(77) == dns.rcode.to_text(77)


def test_every_truncation_and_corruption_is_refused_or_read_as_dnspython_reads_it() -> None:
    """Cut short at every byte, or a byte flipped anywhere: WireError and nothing else, and
    what both read, both read the same."""
    data = _answer(*CASES[2])  # MX: compressed names everywhere
    for cut in range(len(data)):
        with pytest.raises(WireError):
            parse_message(data[:cut])
    with pytest.raises(WireError):
        parse_message(data + b"\0")
    rng = random.Random(8461)
    for _ in range(800):
        corrupt = bytearray(data)
        corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        try:
            dns.message.from_wire(bytes(corrupt))
        except Exception:
            theirs_ok = False
        else:
            theirs_ok = True
        try:
            parse_message(bytes(corrupt))
        except WireError:
            ours_ok = False
        else:
            ours_ok = True
        if ours_ok and theirs_ok:  # both read it: the same records
            assert _as_ours(bytes(corrupt)) == _as_dnspython(dns.message.from_wire(bytes(corrupt)))
        # (dnspython also reads the rdata of the authority and additional sections, which
        # stspilot never uses: a byte flipped there may be refused by it and not here.)


def test_pointer_loops_and_forward_pointers_are_refused() -> None:
    header = bytes.fromhex("1234 8180 0001 0000 0000 0000")
    loop = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # the question's name points at itself
    with pytest.raises(WireError, match="backwards"):
        parse_message(loop)
    forward = header + b"\xc0\x12" + b"\x00\x01\x00\x01" + b"\x01a\x00"
    with pytest.raises(WireError):
        parse_message(forward)
    bad_label = header + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01"
    with pytest.raises(WireError, match="label type"):
        parse_message(bad_label)


def test_rdata_of_the_wrong_length_is_refused() -> None:
    good = _answer("example.com.", "A", [("example.com.", "A", ["192.0.2.1"])])
    # rdlength 4 -> 5 with one more byte: an A record of five octets
    at = good.rindex(bytes([192, 0, 2, 1])) - 2
    bad = good[:at] + b"\x00\x05" + good[at + 2 :]
    bad = bad[: at + 6] + b"\x07" + bad[at + 6 :]
    with pytest.raises(Exception):  # noqa: B017
        dns.message.from_wire(bad)
    with pytest.raises(WireError):
        parse_message(bad)


def test_flags_are_kept() -> None:
    data = bytearray(_answer("example.com.", "A", []))
    data[2] |= dns.flags.TC >> 8
    assert parse_message(bytes(data)).flags & dns.flags.TC
