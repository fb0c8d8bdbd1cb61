"""NSEC3 denial of existence, proven as RFC 5155 §8 says: the closest-encloser proof (§8.3),
name error (§8.4), no data (§8.5, §8.6 for DS, §8.7 at a wildcard), and opt-out (§6, §7.2.1).

No network and no signatures here: the caller has validated the NSEC3 RRsets it passes
(``probes/dane.py``). Records and names are ``probes/dnswire.py``'s; the hash is RFC 5155 §5's
(SHA-1 over the canonical name and salt, iterated), computed with ``hashlib``. Bounded: at most
``MAX_ITERATIONS`` hash iterations (RFC 9276 §3.2: more is treated as no proof), one hash per
label of the query name.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from enum import StrEnum

from stspilot.probes.dnswire import CNAME, DNAME, DS, NS, SOA, WireName
from stspilot.probes.dnswire import Nsec3 as Nsec3Rdata

MAX_ITERATIONS = 150
_OPT_OUT = 0x01
_SHA1 = 1  # the one NSEC3 hash algorithm (RFC 5155 §11)
Nsec3 = tuple[WireName, Nsec3Rdata]  # (owner, rdata)


def nsec3_hash(name: WireName, salt: bytes, iterations: int) -> str:
    """RFC 5155 §5: the hashed owner name, base32hex upper case without padding."""
    digest = hashlib.sha1(name.canonical() + salt).digest()
    for _ in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=")


class Nsec3Proof(StrEnum):
    PROVEN = "proven"  # the name or type is proven absent
    OPT_OUT = "opt-out"  # only an opt-out span covers it: maybe an unsigned delegation
    NONE = "none"  # these records prove nothing about the name


class _Chain:
    """The NSEC3 records of one zone with one set of hash parameters (RFC 5155 §8.2)."""

    def __init__(self, records: Sequence[Nsec3]) -> None:
        first_owner, first = records[0]
        self.zone = first_owner.parent()
        self.params = (first.salt, first.iterations)
        self.records = [
            (owner.labels[0].decode("ascii", "replace").upper(), rdata)
            for owner, rdata in records
            if owner.parent() == self.zone and (rdata.salt, rdata.iterations) == self.params
        ]
        self._hashes: dict[WireName, str] = {}

    def hash(self, name: WireName) -> str:
        hashed = self._hashes.get(name)
        if hashed is None:
            hashed = self._hashes[name] = nsec3_hash(name, *self.params)
        return hashed

    def matching(self, name: WireName) -> Nsec3Rdata | None:
        hashed = self.hash(name)
        return next((rdata for own, rdata in self.records if own == hashed), None)

    def covering(self, name: WireName) -> Nsec3Rdata | None:
        hashed = self.hash(name)
        for own, rdata in self.records:
            following = base64.b32hexencode(rdata.next).decode("ascii").rstrip("=").upper()
            if own < following:
                if own < hashed < following:
                    return rdata
            elif hashed > own or hashed < following:  # the last NSEC3 wraps to the first
                return rdata
        return None

    def closest_encloser(self, qname: WireName) -> tuple[WireName, Nsec3Rdata] | None:
        """RFC 5155 §8.3: the closest encloser (an ancestor of ``qname`` that an NSEC3 matches,
        not a delegation nor a DNAME) and the NSEC3 covering the next closer name."""
        candidate = qname
        while candidate != self.zone and candidate.labels:
            next_closer, candidate = candidate, candidate.parent()
            match = self.matching(candidate)
            if match is None:
                continue
            types = match.types
            if DNAME in types or (NS in types and SOA not in types):
                return None  # a delegation or DNAME above qname: this zone cannot deny it
            cover = self.covering(next_closer)
            return (candidate, cover) if cover is not None else None
        return None


def _usable(records: Sequence[Nsec3]) -> list[Nsec3]:
    return [
        (owner, rdata)
        for owner, rdata in records
        if rdata.algorithm == _SHA1 and rdata.iterations <= MAX_ITERATIONS and owner.labels
    ]


def nsec3_proof(
    records: Sequence[Nsec3], qname: WireName, rdtype: int, *, nxdomain: bool
) -> Nsec3Proof:
    """What the (validated) NSEC3 ``records`` prove about ``qname``/``rdtype`` (RFC 5155 §8)."""
    usable = _usable(records)
    if not usable:
        return Nsec3Proof.NONE
    chain = _Chain(usable)
    if not qname.is_subdomain(chain.zone):
        return Nsec3Proof.NONE
    return _judge(chain, qname, rdtype, nxdomain=nxdomain)


def _judge(chain: _Chain, qname: WireName, rdtype: int, *, nxdomain: bool) -> Nsec3Proof:
    match = chain.matching(qname)
    if not nxdomain and match is not None:  # §8.5, §8.6: the type bitmap at the name itself
        types = match.types
        absent = rdtype not in types and CNAME not in types
        return Nsec3Proof.PROVEN if absent else Nsec3Proof.NONE
    if match is not None:  # NXDOMAIN for a name that has an NSEC3 of its own: a lie
        return Nsec3Proof.NONE
    encloser = chain.closest_encloser(qname)
    if encloser is None:
        return Nsec3Proof.NONE
    closest, next_cover = encloser
    opt_out = bool(next_cover.flags & _OPT_OUT)
    wildcard = WireName((b"*", *closest.labels))
    if nxdomain:  # §8.4: and no wildcard at the closest encloser could have answered
        if chain.covering(wildcard) is None:
            return Nsec3Proof.NONE
        return Nsec3Proof.OPT_OUT if opt_out else Nsec3Proof.PROVEN
    if rdtype == DS and opt_out:  # §8.6: an unsigned delegation, maybe
        return Nsec3Proof.OPT_OUT
    at_wildcard = chain.matching(wildcard)  # §8.7: NODATA at the wildcard that answered
    if at_wildcard is not None:
        types = at_wildcard.types
        if rdtype not in types and CNAME not in types:
            return Nsec3Proof.PROVEN
    if opt_out:  # §7.2.1 / RFC 8198: an empty name under an opt-out span proves no more
        return Nsec3Proof.OPT_OUT
    return Nsec3Proof.NONE


def nsec3_covers(records: Sequence[Nsec3], name: WireName) -> bool:
    """A (validated) NSEC3 of ``records`` covers ``name``'s hash: for an answer synthesised
    from a wildcard, ``name`` is the next closer name, which must not exist (RFC 5155 §8.8;
    an opt-out span does not weaken it: the wildcard still answered for a name not there)."""
    usable = _usable(records)
    if not usable:
        return False
    chain = _Chain(usable)
    return name.is_subdomain(chain.zone) and chain.covering(name) is not None
