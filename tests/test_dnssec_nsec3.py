"""NSEC3 denial of existence (RFC 5155 §8): closest-encloser proofs, table-driven, no sockets.

dnspython cannot sign a zone with NSEC3 yet (``sign_zone`` raises NotImplementedError), so the
chains are built here from a zone's names with ``nsec3_hash``, as a signer would (every name and
empty non-terminal hashed, sorted, each record pointing at the next; with opt-out, unsigned
delegations left out). The last tests sign such records and run them through the validator.
"""

from __future__ import annotations

import time
import warnings

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dnssec_support import their_name, wire_message, wire_name, wire_rdata  # type: ignore[import-not-found]
from stspilot.facts import DnssecStatus, DnsStatus
from stspilot.probes.dane import DnssecValidator
from stspilot.probes.denial import Nsec3, Nsec3Proof, nsec3_proof
from stspilot.probes.dnssec import TrustAnchors
from stspilot.probes.dnswire import Message, WireName

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import dns.dnssec
    from dns.dnssectypes import Algorithm

ZONE = "n3.test."
NAMES = {
    "": "SOA NS DNSKEY NSEC3PARAM RRSIG",
    "mx1": "A RRSIG",
    "_tcp.mx1": "",  # an empty non-terminal
    "_25._tcp.mx1": "TLSA RRSIG",
    "wild": "",
    "*.wild": "A RRSIG",
    "deleg": "NS DS RRSIG",  # a signed delegation
    "sub": "NS",  # an unsigned delegation (left out of an opt-out chain)
    "dname": "DNAME RRSIG",
}


def _abs(relative: str) -> dns.name.Name:
    return dns.name.from_text(f"{relative}.{ZONE}" if relative else ZONE)


def _hash(name: dns.name.Name, salt: str, iterations: int) -> str:
    raw = b"" if salt == "-" else bytes.fromhex(salt)
    return str(dns.dnssec.nsec3_hash(name, raw, iterations, 1)).upper()


def chain(
    *, opt_out: bool = False, salt: str = "-", iterations: int = 0, algorithm: int = 1,
    drop: tuple[str, ...] = (),
) -> list[Nsec3]:  # fmt: skip
    names = {k: v for k, v in NAMES.items() if not (opt_out and v == "NS") and k not in drop}
    hashed = sorted((_hash(_abs(k), salt, iterations), types) for k, types in names.items())
    out: list[Nsec3] = []
    for index, (own, types) in enumerate(hashed):
        following = hashed[(index + 1) % len(hashed)][0]
        text = f"{algorithm} {int(opt_out)} {iterations} {salt} {following} {types}"
        rdata = dns.rdata.from_text("IN", "NSEC3", text)
        out.append((dns.name.from_text(f"{own}.{ZONE}"), rdata))  # type: ignore[arg-type]
    return out


def _proof_of_mx2(records: list[Nsec3]) -> list[Nsec3]:
    """What a server sends for NXDOMAIN at _25._tcp.mx2: the NSEC3 matching the closest
    encloser (the apex) and those covering the next closer name and the wildcard."""
    wanted = {_hash(_abs(""), "-", 0)}
    for name in ("mx2", "*"):
        target = _hash(_abs(name), "-", 0)
        owners = sorted(o.labels[0].decode().upper() for o, _ in records)
        wanted.add(([h for h in owners if h < target] or owners[-1:])[-1])
    return [(o, r) for o, r in records if o.labels[0].decode().upper() in wanted]


def _without_cover(records: list[Nsec3], name: dns.name.Name) -> list[Nsec3]:
    """``records`` less the one covering ``name``'s hash."""
    target = _hash(name, "-", 0)
    owners = sorted(o.labels[0].decode().upper() for o, _ in records)
    below = [h for h in owners if h < target] or owners[-1:]
    return [(o, r) for o, r in records if o.labels[0].decode().upper() != below[-1]]


TLSA, DS, A = dns.rdatatype.TLSA, dns.rdatatype.DS, dns.rdatatype.A
P, OUT, N = Nsec3Proof.PROVEN, Nsec3Proof.OPT_OUT, Nsec3Proof.NONE

CASES = [
    # (id, records, qname, type, nxdomain, expected)
    ("nodata-at-name", chain(), "mx1", TLSA, False, P),  # §8.5
    ("nodata-type-present", chain(), "_25._tcp.mx1", TLSA, False, N),
    ("nodata-at-ent", chain(), "_tcp.mx1", TLSA, False, P),
    ("nxdomain-below-apex", chain(), "_25._tcp.mx2", TLSA, True, P),  # §8.4, ce = apex
    ("nxdomain-below-ent", chain(), "_26._tcp.mx1", TLSA, True, P),  # ce = _tcp.mx1
    ("nxdomain-but-exists", chain(), "_25._tcp.mx1", TLSA, True, N),
    ("nxdomain-wildcard-exists", chain(), "x.wild", TLSA, True, N),  # *.wild would answer
    ("wildcard-nodata", chain(), "x.wild", TLSA, False, P),  # §8.7
    ("wildcard-has-type", chain(), "x.wild", A, False, N),
    ("ds-unsigned-delegation", chain(), "sub", DS, False, P),  # §8.6, exact match
    ("ds-signed-delegation", chain(), "deleg", DS, False, N),
    ("ds-opt-out", chain(opt_out=True), "sub", DS, False, OUT),  # §8.6, §6
    ("ds-no-opt-out-no-match", chain(drop=("sub",)), "sub", DS, False, N),
    ("nxdomain-opt-out", chain(opt_out=True), "_25._tcp.mx2", TLSA, True, OUT),
    ("below-dname", chain(), "a.dname", TLSA, True, N),  # §8.3: not a closest encloser
    ("below-delegation", chain(), "a.sub", TLSA, True, N),
    ("no-wildcard-cover", _without_cover(chain(), _abs("*")), "_25._tcp.mx2", TLSA, True, N),
    ("no-next-closer-cover", _without_cover(chain(), _abs("mx2")), "_25._tcp.mx2", TLSA, True, N),
    ("no-encloser-match", chain(drop=("",)), "_25._tcp.mx2", TLSA, True, N),
    ("salted", chain(salt="aabbccdd", iterations=10), "_25._tcp.mx2", TLSA, True, P),
    ("too-many-iterations", chain(iterations=151), "_25._tcp.mx2", TLSA, True, N),
    ("unknown-hash", chain(algorithm=2), "_25._tcp.mx2", TLSA, True, N),
    ("other-zone", chain(), "mx1.elsewhere.test.", TLSA, True, N),
    ("empty", [], "mx1", TLSA, False, N),
]


@pytest.mark.parametrize(
    ("records", "qname", "rdtype", "nxdomain", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_nsec3_proof(
    records: list[Nsec3], qname: str, rdtype: int, nxdomain: bool, expected: Nsec3Proof
) -> None:
    name = dns.name.from_text(qname) if qname.endswith(".") else _abs(qname)
    ours = [(wire_name(owner), wire_rdata(rdata)) for owner, rdata in records]
    proof = nsec3_proof(ours, wire_name(name), rdtype, nxdomain=nxdomain)  # type: ignore[arg-type]
    assert proof is expected


# --- through the validator: signed NSEC3 records in a real answer ---


class Zone:
    """A signed ``n3.test`` answering DNSKEY and one crafted NSEC3 denial (no socket)."""

    def __init__(self, records: list[Nsec3]) -> None:
        now = time.time()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.dnskey = dns.dnssec.make_dnskey(
            self.key.public_key(), Algorithm.ECDSAP256SHA256, flags=257
        )
        self.origin = dns.name.from_text(ZONE)
        self.when = {"inception": now - 60, "expiration": now + 3600}
        self.keys = dns.rrset.from_rdata(self.origin, 300, self.dnskey)
        self.nsec3 = [dns.rrset.from_rdata(owner, 300, rdata) for owner, rdata in records]
        ds = dns.dnssec.make_ds(self.origin, self.dnskey, "SHA256")
        self.anchors = TrustAnchors.from_text(f"{ZONE} IN DS {ds.to_text()}")

    def _sig(self, rrset: dns.rrset.RRset) -> dns.rrset.RRset:
        sig = dns.dnssec.sign(rrset, self.key, self.origin, self.dnskey, **self.when)  # type: ignore[arg-type]
        return dns.rrset.from_rdata(rrset.name, 300, sig)

    async def query_dnssec(self, asked: WireName, rdtype: int) -> Message:
        name = their_name(asked)
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        response = dns.message.make_response(query)
        if rdtype == dns.rdatatype.DNSKEY and name == self.origin:
            response.answer += [self.keys, self._sig(self.keys)]
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
            for rrset in self.nsec3:
                response.authority += [rrset, self._sig(rrset)]
        return wire_message(response)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("records", "status"),
    [
        pytest.param(_proof_of_mx2(chain()), DnssecStatus.SECURE, id="proven"),
        pytest.param(_proof_of_mx2(chain(opt_out=True)), DnssecStatus.INSECURE, id="opt-out"),
        pytest.param(
            _without_cover(_proof_of_mx2(chain()), _abs("*")), DnssecStatus.BOGUS, id="no-proof"
        ),
    ],
)
async def test_validator_judges_nsec3_denials(records: list[Nsec3], status: DnssecStatus) -> None:
    zone = Zone(records)
    validator = DnssecValidator(zone, zone.anchors)  # type: ignore[arg-type]
    result = await validator.validate(f"_25._tcp.mx2.{ZONE}", dns.rdatatype.TLSA)
    assert result.dnssec.status is status, result.dnssec.reason
    if status is not DnssecStatus.BOGUS:
        assert result.status is DnsStatus.NXDOMAIN


@pytest.mark.parametrize(
    ("name", "salt", "iterations"),
    [
        ("n3.test.", "", 0),
        ("_25._tcp.MX1.n3.test.", "aabbccdd", 10),
        ("*.wild.n3.test.", "ff", 150),
    ],
)
def test_nsec3_hash_is_dnspythons(name: str, salt: str, iterations: int) -> None:
    from stspilot.probes.denial import nsec3_hash

    theirs = dns.dnssec.nsec3_hash(name, bytes.fromhex(salt), iterations, 1)
    assert nsec3_hash(wire_name(name), bytes.fromhex(salt), iterations) == str(theirs).upper()
