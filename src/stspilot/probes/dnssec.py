"""DNSSEC building blocks for the DANE validator (``probes/dane.py``): trust anchors, keys by
tag, and the NSEC/NSEC3 proofs of denial of existence (RFC 4035 §5.4, RFC 5155 §8).

No network here; ``dns.dnssec`` is imported on first use (``dnssec_module``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rrset

from stspilot.errors import ConfigError

if TYPE_CHECKING:
    import dns.message


@functools.cache
def dnssec_module() -> ModuleType:
    """``dns.dnssec``, imported on first use: it costs ~0.2 s (cryptography's algorithms),
    which ``stspilot check`` should pay while its first questions are on the wire."""
    with warnings.catch_warnings():
        # dnspython 2.9 names cryptography's deprecated DSA classes at import; no DSA is used.
        warnings.filterwarnings("ignore", message="DSA is deprecated")
        import dns.dnssec
    return dns.dnssec


# The IANA root zone KSKs (KSK-2017, KSK-2024), from https://data.iana.org/root-anchors/.
IANA_ROOT_ANCHORS = """\
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
"""
MAX_ANCHOR_BYTES = 64 * 1024
_DIGESTS = {1: "SHA1", 2: "SHA256", 4: "SHA384"}


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """DS or DNSKEY records per zone; an answer is judged from the closest anchor above it."""

    by_zone: dict[dns.name.Name, tuple[dns.rdata.Rdata, ...]]
    _labels: dict[tuple[bytes, ...], dns.name.Name] = field(default_factory=dict, repr=False)

    @classmethod
    def from_text(cls, text: str) -> TrustAnchors:
        """Zone-file lines ``<zone> [ttl] [IN] DS|DNSKEY <rdata>``; ``;`` starts a comment."""
        by_zone: dict[dns.name.Name, list[dns.rdata.Rdata]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            try:
                owner = dns.name.from_text(fields[0])
                rest = [f for f in fields[1:3] if f.isdigit() or f.upper() == "IN"]
                rtype = fields[1 + len(rest)].upper()
                if rtype not in ("DS", "DNSKEY"):
                    raise ValueError(f"{rtype} is not DS or DNSKEY")
                rdata = dns.rdata.from_text(
                    dns.rdataclass.IN, rtype, " ".join(fields[2 + len(rest) :])
                )
            except (IndexError, ValueError, dns.exception.DNSException) as exc:
                raise ConfigError(f"trust anchor line {number}: {exc}") from exc
            by_zone.setdefault(owner, []).append(rdata)
        if not by_zone:
            raise ConfigError("the trust anchor file holds no DS or DNSKEY record")
        return cls({zone: tuple(rdatas) for zone, rdatas in by_zone.items()})

    @classmethod
    def load(cls, path: Path | str | None) -> TrustAnchors:
        """The anchors in ``path``; the IANA root anchors when ``path`` is None."""
        if path is None:
            return cls.from_text(IANA_ROOT_ANCHORS)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_ANCHOR_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the trust anchor file {path}: {exc}") from exc
        if len(data) > MAX_ANCHOR_BYTES:
            raise ConfigError(f"the trust anchor file {path} is larger than 64 KiB")
        return cls.from_text(data.decode("utf-8", "replace"))

    def closest(self, name: dns.name.Name) -> dns.name.Name | None:
        # By lower-cased label tuples: cheaper than a Name per suffix (Names hash slowly).
        if not self._labels:
            self._labels.update({_folded(zone.labels): zone for zone in self.by_zone})
        labels = _folded(name.labels)
        for start in range(len(labels)):
            zone = self._labels.get(labels[start:])
            if zone is not None:
                return zone
        return None


def _folded(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in labels)


def by_tag(zone: dns.name.Name, keys: Iterable[dns.rdata.Rdata]) -> dict[int, dns.rrset.RRset]:
    out: dict[int, dns.rrset.RRset] = {}
    for key in keys:
        tag = dnssec_module().key_id(key)
        rrset = out.setdefault(tag, dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY))
        rrset.add(key)
    return out


def parent_side(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.name.Name:
    """Where an RRset's zone is looked for: a DS at a zone cut belongs to the parent."""
    if rdtype == dns.rdatatype.DS and name != dns.name.root:
        return name.parent()
    return name


def matches_anchor(
    zone: dns.name.Name,
    key: dns.rdata.Rdata,
    anchors: Iterable[dns.rdata.Rdata],
    tag: int | None = None,
) -> bool:
    """``key`` is one of the DNSKEY anchors, or its digest is one of the DS anchors; ``tag``
    (the key's tag, when known) skips the digest of DS records for other keys."""
    for anchor in anchors:
        if anchor.rdtype == dns.rdatatype.DNSKEY:
            if anchor == key:
                return True
            continue
        if tag is not None and (
            anchor.key_tag != tag  # type: ignore[attr-defined]
            or anchor.algorithm != key.algorithm  # type: ignore[attr-defined]
        ):
            continue
        digest = _DIGESTS.get(anchor.digest_type)  # type: ignore[attr-defined]
        if digest is None:
            continue
        try:
            if dnssec_module().make_ds(zone, key, digest) == anchor:
                return True
        except (dns.exception.DNSException, ValueError):
            continue
    return False


def find_rrset(
    section: list[dns.rrset.RRset],
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    covers: dns.rdatatype.RdataType = dns.rdatatype.NONE,
) -> dns.rrset.RRset | None:
    for rrset in section:
        if (
            rrset.name == name
            and rrset.rdtype == rdtype
            and rrset.covers == covers
            and rrset.rdclass == dns.rdataclass.IN
        ):
            return rrset
    return None


def nsec_proves(
    proofs: list[dns.rrset.RRset],
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    nxdomain: bool,
) -> bool:
    """Validated NSEC records prove ``qname``/``rdtype`` absent (RFC 4035 §5.4); NSEC3 is
    judged by ``probes/denial.py``."""
    for proof in proofs:
        for rdata in proof:
            if isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC) and _nsec_proves(
                proof.name, rdata, qname, rdtype, nxdomain=nxdomain
            ):
                return True
    return False


def nsec_no_closer_match(
    proofs: list[dns.rrset.RRset], qname: dns.name.Name, encloser: dns.name.Name
) -> bool:
    """Validated NSEC records prove that ``qname``, answered from the wildcard at
    ``encloser``, does not exist and that no name closer to it than ``encloser`` does (RFC
    4035 §3.1.3.3, §5.3.4): an NSEC covers ``qname``, and neither end of its span shares more
    labels with ``qname`` than ``encloser`` (else that name, or one under it, exists)."""
    for proof in proofs:
        for rdata in proof:
            if not isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC):
                continue
            if not _nsec_proves(proof.name, rdata, qname, dns.rdatatype.NONE, nxdomain=True):
                continue
            if all(qname.fullcompare(end)[2] <= len(encloser) for end in (proof.name, rdata.next)):
                return True
    return False


def type_set(rdata: dns.rdtypes.ANY.NSEC.NSEC | dns.rdtypes.ANY.NSEC3.NSEC3) -> set[int]:
    """The types an NSEC/NSEC3 type bitmap lists (RFC 4034 §4.1.2)."""
    found: set[int] = set()
    for window, bitmap in rdata.windows:
        for index, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    found.add(window * 256 + index * 8 + bit)
    return found


def _nsec_proves(
    owner: dns.name.Name,
    rdata: dns.rdtypes.ANY.NSEC.NSEC,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    nxdomain: bool,
) -> bool:
    if not nxdomain:
        types = type_set(rdata)
        return owner == qname and rdtype not in types and dns.rdatatype.CNAME not in types
    following: dns.name.Name = rdata.next
    if owner < following:
        return bool(owner < qname < following)
    return bool(qname > owner or qname < following)  # the last NSEC wraps to the apex


# --- TLSA records dnspython refuses ---------------------------------------------------------

_STAND_IN = 65534  # a private-use type (RFC 6895 §3.1) that TLSA records are read as


def _skip_name(wire: bytes | bytearray, pos: int) -> int:
    """The offset after the (possibly compressed) name at ``pos``; IndexError past the end."""
    for _ in range(128):
        length = wire[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length
    raise ValueError("name too long")


def tlsa_as_generic(data: bytes) -> dns.message.Message | None:
    """``data`` parsed with every TLSA record kept as its exact RDATA octets (a
    ``GenericRdata`` of type TLSA), or None when that does not make it parse either.

    dnspython refuses a whole message when one TLSA record's association data has the wrong
    length for its matching type; a sender skips only that record as unusable (RFC 6698
    §2.1, RFC 7672 §3.1.3). The TLSA types in the record headers are rewritten to a private
    type that dnspython reads as opaque octets, then the RRsets are typed TLSA again; the
    octets are those served, so the RRSIG over them verifies as it would have."""
    import dns.message

    wire = bytearray(data)
    try:
        counts = int.from_bytes(wire[4:6]), sum(int.from_bytes(wire[i : i + 2]) for i in (6, 8, 10))
        pos = 12
        for _ in range(counts[0]):
            pos = _skip_name(wire, pos) + 4
        seen = False
        for _ in range(counts[1]):
            pos = _skip_name(wire, pos)
            rdtype = int.from_bytes(wire[pos : pos + 2])
            if rdtype == _STAND_IN:
                return None
            if rdtype == dns.rdatatype.TLSA:
                wire[pos : pos + 2] = _STAND_IN.to_bytes(2, "big")
                seen = True
            pos += 10 + int.from_bytes(wire[pos + 8 : pos + 10])
        if not seen or pos > len(wire):
            return None
        message = dns.message.from_wire(bytes(wire))
    except (IndexError, ValueError, dns.exception.DNSException):
        return None
    for section in (message.answer, message.authority, message.additional):
        for index, rrset in enumerate(section):
            if rrset.rdtype == _STAND_IN:
                tlsa = dns.rrset.RRset(rrset.name, rrset.rdclass, dns.rdatatype.TLSA)
                for rdata in rrset:
                    octets = rdata.to_wire() or b""
                    generic = dns.rdata.GenericRdata(rrset.rdclass, dns.rdatatype.TLSA, octets)
                    tlsa.add(generic, rrset.ttl)
                section[index] = tlsa
    return message


def tlsa_text(rdata: dns.rdata.Rdata) -> str:
    """A TLSA record as ``"3 1 1 <hex>"`` from its wire octets, whether dnspython could type
    it or not (``tlsa_as_generic``); shorter than 3 octets: a text ``check.dane`` refuses."""
    octets = rdata.to_wire() or b""
    if len(octets) < 3:
        return f"malformed TLSA RDATA {octets.hex() or '(empty)'}"
    return f"{octets[0]} {octets[1]} {octets[2]} {octets[3:].hex()}"
