"""A TLSA record with a digest of the wrong length, without sockets: dnspython refuses the whole
answer, the resolver's DO-answer reader (``dnswire_signed.parse_dnssec_message``) keeps the
TLSA octets
as served, the RRSIG still verifies over them, and only that record is unusable (RFC 6698 §2.1,
RFC 7672 §3.1.3)."""

from __future__ import annotations

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from stspilot.check.dane import parse_tlsa
from stspilot.facts import DnssecStatus, DnsStatus
from stspilot.lab.dns_server import DnsData, Record
from stspilot.lab.dnssec import SignedZone, sign_zone
from stspilot.probes.dane import DnssecValidator
from stspilot.probes.dnssec import TrustAnchors, tlsa_text
from stspilot.probes.dnswire import Message, WireError, WireName
from stspilot.probes.dnswire_signed import parse_dnssec_message

ZONE = "short.test"
TLSA = f"_25._tcp.mx1.{ZONE}"
GOOD = "3 1 1 " + "ab" * 32
SHORT = "3 1 1 " + "cd" * 20  # 20 octets where SHA-256 has 32
RECORDS = [
    Record(f"mx1.{ZONE}", "A", "127.0.0.1"),
    Record(ZONE, "MX", f"10 mx1.{ZONE}."),
    Record(TLSA, "TLSA", GOOD),
    Record(TLSA, "TLSA", SHORT),
]


class WireInProcess:
    """The lab's answers as wire, read by the resolver's own DO-answer parser."""

    def __init__(self, data: DnsData) -> None:
        self.data = data
        self.wires: list[bytes] = []

    async def query_dnssec(self, name: WireName, rdtype: int) -> Message | tuple[DnsStatus, str]:
        response = self.data.respond(dns.message.make_query(str(name), rdtype, want_dnssec=True))
        assert response is not None
        wire = response.to_wire(max_size=65535)
        self.wires.append(wire)
        return parse_dnssec_message(wire)


def _validator(zone: SignedZone) -> tuple[DnssecValidator, WireInProcess]:
    source = WireInProcess(DnsData(RECORDS, None, [zone]))
    anchors = TrustAnchors.from_text(zone.ds)
    return DnssecValidator(source, anchors), source  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_short_digest_keeps_the_rrset_and_its_signature() -> None:
    zone = sign_zone(ZONE, RECORDS)
    validator, source = _validator(zone)
    lookup = await validator.lookup_tlsa(f"mx1.{ZONE}")
    tlsa_wire = next(w for w in source.wires if b"_25" in w)
    with pytest.raises(dns.exception.FormError):  # what dnspython alone does
        dns.message.from_wire(tlsa_wire)
    assert lookup.status is DnsStatus.OK
    assert lookup.dnssec.status is DnssecStatus.SECURE, lookup.dnssec.reason
    assert sorted(lookup.records) == sorted([GOOD, SHORT])
    short = parse_tlsa(SHORT)
    assert short.unusable_reason == "digest of 20 octets where 32 belong"
    assert parse_tlsa(GOOD).usable


@pytest.mark.asyncio
async def test_changed_octets_of_the_short_record_are_bogus() -> None:
    """The signature is checked over the octets served: one flipped octet is a verify failure."""
    zone = sign_zone(ZONE, RECORDS)
    rrsets = []
    for rrset in zone.rrsets:
        if rrset.rdtype == dns.rdatatype.TLSA:
            changed = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
            for rdata in rrset:
                octets = rdata.to_wire()
                if len(octets) == 23:
                    octets = octets[:-1] + bytes([octets[-1] ^ 1])
                changed.add(dns.rdata.GenericRdata(rrset.rdclass, rrset.rdtype, octets), rrset.ttl)
            rrset = changed
        rrsets.append(rrset)
    validator, _ = _validator(SignedZone(zone.apex, tuple(rrsets), zone.ds))
    lookup = await validator.lookup_tlsa(f"mx1.{ZONE}")
    assert lookup.dnssec.status is DnssecStatus.BOGUS
    assert "verify failure" in lookup.dnssec.reason


def _answer(*rdatas: bytes, extra_type: int | None = None) -> bytes:
    query = dns.message.make_query(TLSA, "TLSA", want_dnssec=True)
    response = dns.message.make_response(query)
    rrset = dns.rrset.RRset(dns.name.from_text(TLSA), dns.rdataclass.IN, dns.rdatatype.TLSA)
    for octets in rdatas:
        rrset.add(dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.TLSA, octets), 300)
    response.answer.append(rrset)
    if extra_type is not None:
        other = dns.rrset.RRset(dns.name.from_text(TLSA), dns.rdataclass.IN, extra_type)
        other.add(dns.rdata.GenericRdata(dns.rdataclass.IN, extra_type, b"x"), 300)
        response.answer.append(other)
    return response.to_wire()


@pytest.mark.parametrize(
    ("rdatas", "texts"),
    [
        ([b"\x03\x01\x01" + b"\xab" * 32], ["3 1 1 " + "ab" * 32]),
        ([b"\x03\x01\x02" + b"\xab" * 32], ["3 1 2 " + "ab" * 32]),  # SHA-512 length wrong
        ([b"\x03\x01"], ["malformed TLSA RDATA 0301"]),  # not even the three fields
        ([b"\x02\x00\x01"], ["2 0 1 "]),  # no data at all
    ],
)
def test_resolver_reads_refused_tlsa_as_served(rdatas: list[bytes], texts: list[str]) -> None:
    message = parse_dnssec_message(_answer(*rdatas))
    (rrset,) = message.answer
    assert rrset.rdtype == dns.rdatatype.TLSA
    assert sorted(tlsa_text(r) for r in rrset) == sorted(texts)


def test_other_garbage_is_still_refused() -> None:
    wire = _answer(b"\x03\x01\x01" + b"\xab" * 5)
    for bad in (wire[:-3], wire[:12], wire + b"\0"):
        with pytest.raises(WireError):
            parse_dnssec_message(bad)
    # a record of a private type beside the TLSA records changes nothing about them
    (tlsa, other) = parse_dnssec_message(_answer(b"\x03\x01\x01", extra_type=65534)).answer
    assert tlsa.rdtype == dns.rdatatype.TLSA and other.rdtype == 65534
    assert [tlsa_text(r) for r in tlsa] == ["3 1 1 "]
