"""DNSSEC building blocks for the DANE validator (``probes/dane.py``): trust anchors, DS
digests, and the NSEC proofs of denial of existence (RFC 4035 §5.4; NSEC3: ``probes/denial.py``).

Records and names are ``probes/dnswire.py``'s (read by
``dnswire_signed.parse_dnssec_message``). No network here;
``dns.dnssec`` (policy, key construction) is imported on first use (``dnssec_module``).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from stspilot.errors import ConfigError
from stspilot.probes.dnswire import (
    CNAME,
    DNSKEY,
    DS,
    Dnskey,
    Ds,
    Nsec,
    Opaque,
    Rdata,
    RRset,
    WireName,
    name_from_text,
)


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
_DIGESTS = {1: hashlib.sha1, 2: hashlib.sha256, 4: hashlib.sha384}  # RFC 4034, 4509, 6605
Anchor = Ds | Dnskey


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """DS or DNSKEY records per zone; an answer is judged from the closest anchor above it."""

    by_zone: dict[WireName, tuple[Anchor, ...]]
    _folded: dict[tuple[bytes, ...], WireName] = field(default_factory=dict, repr=False)

    @classmethod
    def from_text(cls, text: str) -> TrustAnchors:
        """Zone-file lines ``<zone> [ttl] [IN] DS|DNSKEY <rdata>``; ``;`` starts a comment.
        Plain DS lines (numbers and hex, as the lab writes one per signed zone) are read
        here; anything else by dnspython's text parser. Either way the records are kept as
        the wire records the validator compares with."""
        import dns.exception

        by_zone: dict[WireName, list[Anchor]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            try:
                owner = name_from_text(fields[0])
                rest = [f for f in fields[1:3] if f.isdigit() or f.upper() == "IN"]
                rtype = fields[1 + len(rest)].upper()
                if rtype not in ("DS", "DNSKEY"):
                    raise ValueError(f"{rtype} is not DS or DNSKEY")
                anchor = _anchor(rtype, fields[2 + len(rest) :])
            except (IndexError, ValueError, dns.exception.DNSException) as exc:
                raise ConfigError(f"trust anchor line {number}: {exc}") from exc
            by_zone.setdefault(owner, []).append(anchor)
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

    def closest(self, name: WireName) -> WireName | None:
        # By lower-cased label tuples: cheaper than a name per suffix.
        if not self._folded:
            self._folded.update({zone._key: zone for zone in self.by_zone})
        labels = name._key  # lower-cased labels, the root's last
        for start in range(len(labels) + 1):
            zone = self._folded.get(labels[start:])
            if zone is not None:
                return zone
        return None


def _anchor(rtype: str, fields: list[str]) -> Anchor:
    """The record of an anchor line's RDATA fields, read as ``parse_dnssec_message`` reads it
    (``WireError``, a ValueError, when that refuses it)."""
    from stspilot.probes.dnswire_signed import parse_rdata

    plain = (
        rtype == "DS"
        and len(fields) >= 4
        and all(f.isascii() and f.isdigit() and len(f) <= 5 for f in fields[:3])
        and int(fields[0]) <= 0xFFFF
        and int(fields[1]) <= 0xFF
        and int(fields[2]) <= 0xFF
    )
    if plain:
        head = bytes((int(fields[0]) >> 8, int(fields[0]) & 0xFF, int(fields[1]), int(fields[2])))
        wire = head + bytes.fromhex("".join(fields[3:]))
    else:
        import dns.rdata
        import dns.rdataclass

        rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, " ".join(fields))
        wire = rdata.to_wire() or b""
    anchor = parse_rdata(DS if rtype == "DS" else DNSKEY, wire)
    assert isinstance(anchor, Ds | Dnskey)
    return anchor


def parent_side(name: WireName, rdtype: int) -> WireName:
    """Where an RRset's zone is looked for: a DS at a zone cut belongs to the parent."""
    if rdtype == DS and name.labels:
        return name.parent()
    return name


def matches_anchor(zone: WireName, key: Dnskey, anchors: Iterable[Anchor], tag: int) -> bool:
    """``key`` (whose tag is ``tag``) is one of the DNSKEY anchors, or its digest is one of
    the DS anchors for that tag and algorithm (RFC 4034 §5.1.4: digest = hash(owner |
    DNSKEY RDATA)). Digest types are those a validator must follow (RFC 8624 §3.3: SHA-1,
    SHA-256 and SHA-384; dnspython's ``ok_to_validate_ds``); SHA-1 may no longer be
    published (it is refused for creating a DS) but is still validated."""
    policy = dnssec_module().default_policy
    for anchor in anchors:
        if isinstance(anchor, Dnskey):
            if anchor.wire == key.wire:
                return True
            continue
        if anchor.key_tag != tag or anchor.algorithm != key.algorithm:
            continue
        digest = _DIGESTS.get(anchor.digest_type)
        if digest is None or not policy.ok_to_validate_ds(anchor.digest_type):
            continue
        if digest(zone.canonical() + key.wire).digest() == anchor.digest:
            return True
    return False


def ds_usable(ds: Ds) -> bool:
    """This validator can follow ``ds``: a digest type it computes and may validate, for a
    key algorithm it can validate (RFC 4035 §5.2: a zone whose DS records are all unusable
    has no supported path from its parent and is treated as unsigned; RFC 6840 §5.2)."""
    dnssec = dnssec_module()
    if ds.digest_type not in _DIGESTS or not dnssec.default_policy.ok_to_validate_ds(
        ds.digest_type
    ):
        return False
    return algorithm_usable(ds.algorithm)


def algorithm_usable(algorithm: int) -> bool:
    """dnspython implements ``algorithm`` and its policy lets it validate (RFC 8624 §3.1)."""
    import dns.dnssecalgs
    import dns.exception

    dnssec = dnssec_module()
    if algorithm in (253, 254):  # PRIVATEDNS/PRIVATEOID: which one, the key itself says
        return True
    if not dnssec.default_policy.ok_to_validate(_AlgorithmOnly(algorithm)):
        return False
    try:
        dns.dnssecalgs.get_algorithm_cls(algorithm)
    except dns.exception.UnsupportedAlgorithm:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _AlgorithmOnly:
    """What dnspython's policy reads of a DNSKEY to say whether it may validate."""

    algorithm: int


def find_rrset(
    section: Iterable[RRset], name: WireName, rdtype: int, covers: int = 0
) -> RRset | None:
    key = name._key  # compared as WireName compares (lower-cased labels), without its call
    for rrset in section:
        if (
            rrset.rdtype == rdtype
            and rrset.covers == covers
            and rrset.rdclass == 1
            and rrset.name._key == key
        ):
            return rrset
    return None


def nsec_proves(proofs: list[RRset], qname: WireName, rdtype: int, *, nxdomain: bool) -> bool:
    """Validated NSEC records prove ``qname``/``rdtype`` absent (RFC 4035 §5.4); NSEC3 is
    judged by ``probes/denial.py``."""
    for proof in proofs:
        for rdata in proof:
            if isinstance(rdata, Nsec) and _nsec_proves(
                proof.name, rdata, qname, rdtype, nxdomain=nxdomain
            ):
                return True
    return False


def nsec_no_closer_match(proofs: list[RRset], qname: WireName, encloser: WireName) -> bool:
    """Validated NSEC records prove that ``qname``, answered from the wildcard at
    ``encloser``, does not exist and that no name closer to it than ``encloser`` does (RFC
    4035 §3.1.3.3, §5.3.4): an NSEC covers ``qname``, and neither end of its span shares more
    labels with ``qname`` than ``encloser`` (else that name, or one under it, exists)."""
    for proof in proofs:
        for rdata in proof:
            if not isinstance(rdata, Nsec):
                continue
            if not _nsec_proves(proof.name, rdata, qname, 0, nxdomain=True):
                continue
            ends = (proof.name, rdata.next)
            if all(qname.common_labels(end) <= len(encloser.labels) for end in ends):
                return True
    return False


def _nsec_proves(
    owner: WireName, rdata: Nsec, qname: WireName, rdtype: int, *, nxdomain: bool
) -> bool:
    if not nxdomain:
        types = rdata.types
        return owner == qname and rdtype not in types and CNAME not in types
    mine, following, asked = owner.order_key(), rdata.next.order_key(), qname.order_key()
    if mine < following:
        return mine < asked < following
    return asked > mine or asked < following  # the last NSEC wraps to the apex


def tlsa_text(rdata: Rdata) -> str:
    """A TLSA record as ``"3 1 1 <hex>"`` from its wire octets (kept as served, whatever its
    digest length: ``check.dane`` judges it); shorter than 3 octets: a text ``check.dane``
    refuses."""
    octets = rdata.data if isinstance(rdata, Opaque) else b""
    if len(octets) < 3:
        return f"malformed TLSA RDATA {octets.hex() or '(empty)'}"
    return f"{octets[0]} {octets[1]} {octets[2]} {octets[3:].hex()}"
