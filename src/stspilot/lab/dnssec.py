"""DNSSEC for the lab: zones signed with dnspython, broken on purpose where a scenario says so.

Each signed zone gets its own KSK and ZSK (ECDSA P-256, algorithm 13), an NSEC chain and
RRSIGs valid from an hour ago for 14 days (``dns.dnssec.sign_zone``). There is no signed root
or ``test.`` above them: the lab's trust anchor file lists the DS of every signed zone
("islands of trust"), and ``stspilot check --trust-anchor`` points at it. A zone not in the
file is insecure, as an unsigned delegation is on the Internet.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TLSA
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

from stspilot.lab.dns_server import Record, record_rdata

with warnings.catch_warnings():
    # dnspython 2.9 names cryptography's deprecated DSA classes at import; DSA is never used.
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import dns.dnssec
    from dns.dnssectypes import Algorithm

LIFETIME = 14 * 86400


class ZoneFault(StrEnum):
    """Breakage applied to one RRset of a signed zone after signing."""

    TAMPERED = "tampered"  # the data changed, the old RRSIG kept: "verify failure"
    EXPIRED = "expired"  # re-signed with an RRSIG that expired yesterday


@dataclass(frozen=True, slots=True)
class SignedZone:
    apex: str
    rrsets: tuple[dns.rrset.RRset, ...]  # everything served: data, DNSKEY, NSEC, RRSIG
    ds: str  # the trust anchor line: "<apex>. IN DS <rdata>"


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.rstrip(".").lower() + ".")


def sign_zone(
    apex: str,
    records: Iterable[Record],
    *,
    faults: Iterable[tuple[str, str, ZoneFault]] = (),
    now: dt.datetime | None = None,
) -> SignedZone:
    """Sign the ``records`` at or below ``apex``; ``faults`` are (owner, type, fault)."""
    origin = _name(apex)
    when = (now or dt.datetime.now(dt.UTC)).timestamp()
    zone = dns.zone.Zone(origin, relativize=False)
    base = [
        Record(apex, "SOA", f"ns1.{origin} hostmaster.{origin} 1 3600 600 86400 300"),
        Record(apex, "NS", f"ns1.{origin}"),
    ]
    ksk_key, zsk_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ksk = dns.dnssec.make_dnskey(ksk_key.public_key(), Algorithm.ECDSAP256SHA256, flags=257)
    zsk = dns.dnssec.make_dnskey(zsk_key.public_key(), Algorithm.ECDSAP256SHA256, flags=256)
    with zone.writer() as txn:
        for record in [*base, *records]:
            owner = _name(record.name)
            if not owner.is_subdomain(origin):
                continue
            rdata = record_rdata(record.rtype, record.value)
            txn.add(owner, 300, rdata)
        dns.dnssec.sign_zone(
            zone,
            txn=txn,
            keys=[(ksk_key, ksk), (zsk_key, zsk)],
            inception=when - 3600,
            lifetime=LIFETIME,
        )
    rrsets: dict[tuple[dns.name.Name, int, int], dns.rrset.RRset] = {}
    for owner, rdataset in zone.iterate_rdatasets():
        rrset = dns.rrset.from_rdata_list(owner, rdataset.ttl, list(rdataset))
        rrsets[(owner, rdataset.rdtype, rdataset.covers)] = rrset
    for owner_text, rtype, fault in faults:
        owner, rdtype = _name(owner_text), dns.rdatatype.from_text(rtype)
        target = rrsets.get((owner, rdtype, dns.rdatatype.NONE))
        if target is None:
            continue
        if fault is ZoneFault.TAMPERED:
            rrsets[(owner, rdtype, dns.rdatatype.NONE)] = _tampered(target)
        else:
            sig = dns.dnssec.sign(
                target, zsk_key, origin, zsk,
                inception=when - 10 * 86400, expiration=when - 86400,
            )  # fmt: skip
            expired = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
            expired.add(sig, 300)
            rrsets[(owner, dns.rdatatype.RRSIG, rdtype)] = expired
    ds = dns.dnssec.make_ds(origin, ksk, "SHA256")
    return SignedZone(apex, tuple(rrsets.values()), f"{origin} IN DS {ds.to_text()}")


def _tampered(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    """The same RRset with every record's last octet flipped (TLSA, A, AAAA), or one more
    record (any other type): its old RRSIG no longer verifies."""
    changed = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
    for rdata in rrset:
        if isinstance(rdata, dns.rdtypes.ANY.TLSA.TLSA):
            cert = rdata.cert[:-1] + bytes([rdata.cert[-1] ^ 0xFF])
            rdata = rdata.replace(cert=cert)
        elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            wire = rdata.to_digestable()
            wire = wire[:-1] + bytes([wire[-1] ^ 0x01])
            rdata = dns.rdata.from_wire(rrset.rdclass, rrset.rdtype, wire, 0, len(wire))
        changed.add(rdata, rrset.ttl)
    if rrset.rdtype not in (dns.rdatatype.TLSA, dns.rdatatype.A, dns.rdatatype.AAAA):
        changed.add(_extra(rrset), rrset.ttl)
    return changed


def _extra(rrset: dns.rrset.RRset) -> dns.rdata.Rdata:
    extra = {dns.rdatatype.TXT: '"tampered"', dns.rdatatype.MX: "99 tampered.invalid."}
    text = extra.get(rrset.rdtype)
    if text is None:
        raise ValueError(f"no way to tamper with {dns.rdatatype.to_text(rrset.rdtype)}")
    return dns.rdata.from_text(rrset.rdclass, rrset.rdtype, text)


def anchor_file_text(zones: Iterable[SignedZone]) -> str:
    lines = ["; the lab's trust anchors: the DS of every signed lab zone"]
    lines += [zone.ds for zone in zones]
    if len(lines) == 1:
        # No zone is signed: an anchor for a name no lab zone is under, so every lab answer
        # is insecure (rather than judged from the real root, which the lab does not serve).
        lines.append("invalid. IN DS 1 13 2 " + "00" * 32)
    return "\n".join(lines) + "\n"
