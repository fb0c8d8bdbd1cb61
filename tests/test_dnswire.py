"""probes/dnswire.py reads answers as dnspython does: the same RRsets, rdata, names and errors."""

from __future__ import annotations

import random
import struct

import dns.exception
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
from stspilot.probes.dnswire_signed import parse_dnssec_message

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


# --- DO answers (parse_dnssec_message): RRSIG, DNSKEY, DS, NSEC, NSEC3, TLSA ---


def _signed_answers() -> list[bytes]:
    """Real DO answers of a zone signed by the lab (ECDSA P-256, NSEC), and NSEC3, DS and
    mixed-case records made here: every record type the validator reads."""
    from stspilot.lab.dns_server import DnsData, Record
    from stspilot.lab.dnssec import sign_zone

    zone = "Sig.Test"
    records = [
        Record(f"mx1.{zone}", "A", "192.0.2.1"),
        Record(f"mx1.{zone}", "AAAA", "2001:db8::1"),
        Record(zone, "MX", f"10 MX1.{zone}."),
        Record(zone, "MX", f"20 mx2.{zone}."),
        Record(f"_25._tcp.mx1.{zone}", "TLSA", "3 1 1 " + "ab" * 32),
        Record(f"_25._tcp.mx1.{zone}", "TLSA", "3 1 2 " + "cd" * 64),
        Record(f"_25._tcp.mx2.{zone}", "TLSA", "3 1 1 " + "ab" * 20),  # short digest
        Record(f"alias.{zone}", "CNAME", f"MX1.{zone}."),
    ]
    data = DnsData(records, None, [sign_zone(zone, records)])
    asked = [
        (zone, "DNSKEY"), (zone, "MX"), (f"mx1.{zone}", "A"), (f"mx1.{zone}", "AAAA"),
        (f"_25._tcp.mx1.{zone}", "TLSA"), (f"_25._tcp.mx2.{zone}", "TLSA"),
        (f"alias.{zone}", "A"), (f"_25._tcp.nx.{zone}", "TLSA"), (f"mx1.{zone}", "TLSA"),
        (zone, "SOA"),
    ]  # fmt: skip
    out = []
    for name, rdtype in asked:
        response = data.respond(dns.message.make_query(name, rdtype, want_dnssec=True))
        assert response is not None
        out.append(response.to_wire(max_size=65535))
    query = dns.message.make_query("n3.example.", "DS", want_dnssec=True)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text_list("n3.example.", 60, "IN", "DS", [
            "2371 13 2 " + "ab" * 32, "2371 13 4 " + "cd" * 48, "60485 8 1 " + "ef" * 20,
        ])
    )  # fmt: skip
    response.authority.append(
        dns.rrset.from_text_list("9PQ1U5RB9QJ2IGJ7Q0G0F35PDVM3TV4O.n3.example.", 30, "IN", "NSEC3", [  # noqa: E501
            "1 1 12 aabbccdd 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR NS SOA RRSIG DNSKEY NSEC3PARAM",
            "1 0 0 - 2T7B4G4VSA5SMI47K61MV5BV1A22BOJS TYPE65534 A",
        ])
    )  # fmt: skip
    response.authority.append(
        dns.rrset.from_text("A.n3.example.", 20, "IN", "NSEC", "Zed.N3.example. A MX RRSIG NSEC")
    )
    out.append(response.to_wire())
    return out


def _fields(rdata: object) -> object:
    """What the validator reads of a record, from dnspython's object or ours."""
    kind = type(rdata).__name__.upper()
    if kind in ("RRSIG",):
        r: object = rdata
        return (
            r.type_covered, r.algorithm, r.labels, r.original_ttl,  # type: ignore[attr-defined]
            r.expiration, r.inception, r.key_tag,  # type: ignore[attr-defined]
            str(r.signer).lower(), r.signature,  # type: ignore[attr-defined]
        )  # fmt: skip
    if kind == "DNSKEY":
        return rdata.flags, rdata.protocol, rdata.algorithm, rdata.key  # type: ignore[attr-defined]
    if kind == "DS":
        return rdata.key_tag, rdata.algorithm, rdata.digest_type, rdata.digest  # type: ignore[attr-defined]
    if kind == "NSEC":
        return str(rdata.next), _types(rdata)  # type: ignore[attr-defined]
    if kind == "NSEC3":
        return (
            rdata.algorithm, rdata.flags, rdata.iterations,  # type: ignore[attr-defined]
            rdata.salt, rdata.next, _types(rdata),  # type: ignore[attr-defined]
        )  # fmt: skip
    return None


def _plain(fields: object) -> object:
    """dnspython's enums (``Algorithm.ECDSAP256SHA256``) as the numbers they are."""
    if isinstance(fields, tuple):
        return tuple(int(v) if isinstance(v, int) else v for v in fields)
    return fields


def _types(rdata: object) -> frozenset[int]:
    if hasattr(rdata, "types"):
        return rdata.types  # type: ignore[no-any-return]
    found = set()
    for window, bitmap in rdata.windows:  # type: ignore[attr-defined]
        for index, byte in enumerate(bitmap):
            found.update(window * 256 + index * 8 + b for b in range(8) if byte & (0x80 >> b))
    return frozenset(found)


_VERIFIED = (1, 5, 15, 16, 28, 43, 47, 48, 50, 52)  # A CNAME MX TXT AAAA DS NSEC DNSKEY NSEC3 TLSA


def _dnssec_view(sections: list[object], ours: bool) -> list[object]:
    out = []
    for section in sections:
        for rrset in section:  # type: ignore[attr-defined]
            if rrset.rdclass != dns.rdataclass.IN:  # never read by the validator
                continue
            if rrset.rdtype not in _VERIFIED:  # no signature over it is accepted: not kept
                digestable = None
                assert not ours or rrset.digestable is None
            elif ours:
                digestable = None if rrset.digestable is None else sorted(rrset.digestable)
            else:
                digestable = sorted(r.to_digestable() for r in rrset)
            fields = sorted(repr(_plain(_fields(r))) for r in rrset)
            name = str(rrset.name)
            out.append((name, rrset.rdtype, rrset.covers, rrset.ttl, digestable, fields))
    return out


def test_dnssec_answers_read_as_dnspython_reads_them() -> None:
    """Names, types, covered types, TTLs, the fields of every DNSSEC record and the canonical
    RDATA a signature covers (dnspython's ``to_digestable``) are the same."""
    for data in _signed_answers():
        try:
            theirs = dns.message.from_wire(data)
        except dns.exception.FormError:  # the short TLSA digest: dnspython refuses it all
            (rrset, _sig) = parse_dnssec_message(data).answer
            assert [len(r.data) for r in rrset] == [3 + 20]  # type: ignore[union-attr]
            continue
        ours = parse_dnssec_message(data)
        assert _dnssec_view([ours.answer, ours.authority], True) == _dnssec_view(
            [theirs.answer, theirs.authority], False
        )
        assert ours.rcode() == theirs.rcode() and ours.flags == theirs.flags


def test_dnssec_truncation_and_corruption_are_refused_or_read_as_dnspython_reads_them() -> None:
    rng = random.Random(6698)
    for data in _signed_answers():
        for cut in range(len(data)):
            with pytest.raises(WireError):
                parse_dnssec_message(data[:cut])
        for _ in range(300):
            corrupt = bytearray(data)
            corrupt[rng.randrange(12, len(corrupt))] = rng.randrange(256)
            try:
                theirs = dns.message.from_wire(bytes(corrupt))
            except Exception:
                theirs = None
            try:
                ours = parse_dnssec_message(bytes(corrupt))
            except WireError:
                continue
            ours.authority  # noqa: B018  (read on first use: it was checked, it cannot fail)
            if theirs is not None:
                assert _dnssec_view([ours.answer, ours.authority], True) == _dnssec_view(
                    [theirs.answer, theirs.authority], False
                )


def _one_record(rdtype: int, rdata: bytes) -> bytes:
    header = bytes.fromhex("1234 8180 0000 0001 0000 0000")
    return header + b"\x01a\x00" + struct.pack("!HHIH", rdtype, 1, 60, len(rdata)) + rdata


@pytest.mark.parametrize(
    ("rdtype", "rdata"),
    [
        pytest.param(46, bytes(18) + b"\xc0\x0c" + b"sig", id="rrsig-compressed-signer"),
        pytest.param(46, bytes(17), id="rrsig-short"),
        pytest.param(48, b"\x01\x01\x03", id="dnskey-short"),
        pytest.param(43, b"\x00\x01\x0d\x02" + bytes(31), id="ds-digest-too-short"),
        pytest.param(43, b"\x00\x01\x0d\x00" + bytes(32), id="ds-digest-type-0"),
        pytest.param(47, b"\xc0\x0c\x00\x01\x40", id="nsec-compressed-next"),
        pytest.param(47, b"\x00\x01\x01\x00", id="nsec-trailing-zero-octet"),
        pytest.param(47, b"\x00\x00\x21" + b"\x01" * 33, id="nsec-window-too-long"),
        pytest.param(47, b"\x00\x01\x01\x40\x00\x01\x40", id="nsec-windows-repeat"),
        pytest.param(47, b"\x00\x00\x02\x40", id="nsec-window-past-record"),
        pytest.param(50, b"\x01\x00\x00\x00\x00\x00", id="nsec3-empty-next"),
        pytest.param(50, b"\x01\x00\x00\x00\x05ab", id="nsec3-salt-past-record"),
        pytest.param(50, b"\x01\x00\x00", id="nsec3-short"),
    ],
)
def test_bad_dnssec_records_are_refused_as_dnspython_refuses_them(
    rdtype: int, rdata: bytes
) -> None:
    data = _one_record(rdtype, rdata)
    with pytest.raises(Exception):  # noqa: B017
        dns.message.from_wire(data)
    with pytest.raises(WireError):
        parse_dnssec_message(data)
    # the same record in the authority section (read when used, checked at once)
    in_authority = data[:6] + bytes.fromhex("0000 0001") + data[10:]
    with pytest.raises(Exception):  # noqa: B017
        dns.message.from_wire(in_authority)
    with pytest.raises(WireError):
        parse_dnssec_message(in_authority)
