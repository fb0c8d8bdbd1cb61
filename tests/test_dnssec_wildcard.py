"""Answers synthesised from a wildcard (RFC 4035 §5.3.4, RFC 5155 §8.8, RFC 7129 §5.3), no
sockets: the RRSIG's labels field says the RRset came from ``*.wild.wc.test``; the answer holds
only with validated NSEC or NSEC3 records proving that the name asked does not exist and no
closer name does. Before this check such an answer passed on its signature alone, so a
replayed wildcard signature could vouch for any name under the wildcard's parent.

The lab's DNS does no wildcard synthesis, so the zone is signed here with dnspython's
``dns.dnssec.sign`` and the answers laid out as an authoritative server lays them out.
"""

from __future__ import annotations

import base64
import time
import warnings

import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dnssec_support import their_name, wire_message, wire_name, wire_rdata, wire_rrset  # type: ignore[import-not-found]
from stspilot.facts import DnssecStatus, DnsStatus
from stspilot.probes.dane import DnssecValidator
from stspilot.probes.denial import nsec3_covers
from stspilot.probes.dnssec import TrustAnchors, nsec_no_closer_match
from stspilot.probes.dnswire import Message, WireName

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import dns.dnssec
    from dns.dnssectypes import Algorithm

ZONE = "wc.test."
# owner -> types; "wild" is an empty non-terminal above the wildcard
NAMES = {
    "": "SOA NS DNSKEY RRSIG NSEC",
    "mx1": "A RRSIG NSEC",
    "_25._tcp.mx1": "TLSA RRSIG NSEC",
    "*.wild": "A TLSA RRSIG NSEC",
}
QNAME = "host.wild"  # not in the zone: answered from *.wild


def _abs(relative: str) -> dns.name.Name:
    return dns.name.from_text(f"{relative}.{ZONE}" if relative else ZONE)


def _nsec_chain() -> list[dns.rrset.RRset]:
    owners = sorted(_abs(k) for k in NAMES)
    types = {_abs(k): v for k, v in NAMES.items()}
    out = []
    for index, owner in enumerate(owners):
        following = owners[(index + 1) % len(owners)]
        rdata = dns.rdata.from_text("IN", "NSEC", f"{following} {types[owner]}")
        out.append(dns.rrset.from_rdata(owner, 300, rdata))
    return out


def _nsec3(name: str, *, opt_out: bool = False) -> list[dns.rrset.RRset]:
    """One NSEC3 record whose span covers ``name``'s hash (a server sends no more for §8.8)."""
    hashed = dns.dnssec.nsec3_hash(_abs(name), b"", 0, 1)
    raw = base64.b32hexdecode(hashed.upper())
    below = base64.b32hexencode(bytes([*raw[:-1], raw[-1] - 1])).decode().rstrip("=")
    above = base64.b32hexencode(bytes([*raw[:-1], raw[-1] + 1])).decode().rstrip("=")
    rdata = dns.rdata.from_text("IN", "NSEC3", f"1 {int(opt_out)} 0 - {above} A RRSIG")
    return [dns.rrset.from_rdata(_abs(below.lower()), 300, rdata)]


class Zone:
    """``wc.test`` signed with one key: DNSKEY answers, and one crafted wildcard answer."""

    def __init__(self) -> None:
        now = time.time()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.dnskey = dns.dnssec.make_dnskey(
            self.key.public_key(), Algorithm.ECDSAP256SHA256, flags=257
        )
        self.origin = _abs("")
        self.when = {"inception": now - 60, "expiration": now + 3600}
        self.keys = dns.rrset.from_rdata(self.origin, 300, self.dnskey)
        ds = dns.dnssec.make_ds(self.origin, self.dnskey, "SHA256")
        self.anchors = TrustAnchors.from_text(f"{ZONE} IN DS {ds.to_text()}")
        self.proofs: list[dns.rrset.RRset] = []
        self.sign_proofs = True
        wild = dns.rrset.from_text(_abs("*.wild"), 300, "IN", "A", "192.0.2.1")
        self.wild_sig = self.sig(wild)

    def sig(self, rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        sig = dns.dnssec.sign(rrset, self.key, self.origin, self.dnskey, **self.when)  # type: ignore[arg-type]
        return dns.rrset.from_rdata(rrset.name, 300, sig)

    async def query_dnssec(self, asked: WireName, rdtype: int) -> Message | tuple[DnsStatus, str]:
        name = their_name(asked)
        response = dns.message.make_response(dns.message.make_query(name, rdtype, want_dnssec=True))
        if rdtype == dns.rdatatype.DNSKEY and name == self.origin:
            response.answer += [self.keys, self.sig(self.keys)]
        elif rdtype == dns.rdatatype.A and name.is_subdomain(_abs("wild")):
            # RFC 4035 §3.1.3.3: the wildcard's RRset under the name asked, its RRSIG as
            # signed at *.wild (labels 3), and the proof that the name asked does not exist
            synthesised = dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1")
            sig = dns.rrset.RRset(name, self.wild_sig.rdclass, dns.rdatatype.RRSIG, dns.rdatatype.A)
            sig.update(self.wild_sig)
            response.answer += [synthesised, sig]
            for proof in self.proofs:
                response.authority.append(proof)
                if self.sign_proofs:
                    response.authority.append(self.sig(proof))
        else:
            return DnsStatus.SERVFAIL, "not in this test"
        return wire_message(response)


def _covering_nsec(name: str) -> list[dns.rrset.RRset]:
    target = _abs(name)
    for rrset in _nsec_chain():
        following = next(iter(rrset)).next
        if rrset.name < target < following or (following < rrset.name < target):
            return [rrset]
    raise AssertionError(f"no NSEC covers {name}")


def _matching_nsec(name: str) -> list[dns.rrset.RRset]:
    return [r for r in _nsec_chain() if r.name == _abs(name)]


CASES = [
    ("nsec-proof", QNAME, lambda: _covering_nsec(QNAME), True, DnssecStatus.SECURE, ""),
    ("nsec3-proof", QNAME, lambda: _nsec3(QNAME), True, DnssecStatus.SECURE, ""),
    ("nsec3-opt-out", QNAME, lambda: _nsec3(QNAME, opt_out=True), True, DnssecStatus.SECURE, ""),
    ("no-proof", QNAME, list, True, DnssecStatus.BOGUS, "without a proof"),
    ("unsigned-proof", QNAME, lambda: _covering_nsec(QNAME), False, DnssecStatus.BOGUS,
     "not signed"),
    ("nsec-of-another-name", QNAME, lambda: _matching_nsec("mx1"), True, DnssecStatus.BOGUS,
     "do not prove it absent"),
    ("nsec3-of-another-name", QNAME, lambda: _nsec3("mx1"), True, DnssecStatus.BOGUS,
     "do not prove it absent"),
    # two labels below the wildcard's parent: the next closer name is y.wild, not x.y.wild
    ("nsec3-next-closer", "x.y.wild", lambda: _nsec3("y.wild"), True, DnssecStatus.SECURE, ""),
    ("nsec3-qname-not-next-closer", "x.y.wild", lambda: _nsec3("x.y.wild"), True,
     DnssecStatus.BOGUS, "do not prove it absent"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("qname", "proofs", "signed", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_wildcard_answers_need_a_proof(
    qname: str, proofs: object, signed: bool, status: DnssecStatus, reason: str
) -> None:
    zone = Zone()
    zone.proofs = proofs()  # type: ignore[operator]
    zone.sign_proofs = signed
    validator = DnssecValidator(zone, zone.anchors)  # type: ignore[arg-type]
    result = await validator.validate(f"{qname}.{ZONE}", dns.rdatatype.A)
    assert result.status is DnsStatus.OK
    assert result.dnssec.status is status, result.dnssec.reason
    assert reason in result.dnssec.reason
    if status is DnssecStatus.BOGUS:
        assert "wildcard at *.wild.wc.test" in result.dnssec.reason or reason == "not signed"


def test_no_closer_match() -> None:
    """RFC 4035 §5.3.4: an NSEC covering the name whose owner (or next name) lies below the
    wildcard's parent shows a closer name exists: the wildcard could not have answered."""
    qname, encloser = _abs("b.a.wild"), _abs("wild")
    closer = dns.rrset.from_text(_abs("a.wild"), 300, "IN", "NSEC", f"{_abs('c.wild')} A")
    qname, encloser = wire_name(qname), wire_name(encloser)  # type: ignore[assignment]
    ours = [wire_rrset(closer)]
    assert not nsec_no_closer_match(ours, qname, encloser)  # type: ignore[arg-type]
    ours = [wire_rrset(r) for r in _covering_nsec("b.a.wild")]
    assert nsec_no_closer_match(ours, qname, encloser)  # type: ignore[arg-type]
    ours = [wire_rrset(r) for r in _matching_nsec("mx1")]
    assert not nsec_no_closer_match(ours, qname, encloser)  # type: ignore[arg-type]


def test_nsec3_covers_bounds() -> None:
    (rrset,) = _nsec3(QNAME)
    records = [(wire_name(rrset.name), wire_rdata(r)) for r in rrset]
    assert nsec3_covers(records, wire_name(_abs(QNAME)))  # type: ignore[arg-type]
    assert not nsec3_covers(records, wire_name(_abs("mx1")))  # type: ignore[arg-type]
    assert not nsec3_covers(records, wire_name("host.elsewhere.test."))  # type: ignore[arg-type]
    heavy = [(wire_name(rrset.name), wire_rdata(r.replace(iterations=151))) for r in rrset]
    assert not nsec3_covers(heavy, wire_name(_abs(QNAME)))  # type: ignore[arg-type]
