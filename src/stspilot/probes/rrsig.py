"""RRSIG verification over RRsets read by ``probes/dnswire.py``, each DNSKEY's public key
parsed once (RFC 4034 §3.1.8.1, §5.3, canonical form and order §6.2, §6.3).

Why not ``dns.dnssec.validate_rrsig``: it needs dnspython's object model of the answer (every
record an immutable ``Rdata``, every name a ``Name``), which is most of what DANE costs a
domain: ``dns.message.from_wire`` of the DO answers took 1.1-1.3 ms of the ~2.5 ms the
validator spent a domain (``docs/dane.md``, Cost). ``parse_dnssec_message`` keeps each
record's RDATA in canonical form as it reads it, so the signed octet string is a join here.
And ``validate_rrsig`` looks the signer's keys up by recomputing every candidate's key tag and
rebuilds the public key for each signature (217 µs a signature against 140 µs with the key
parsed once, ECDSAP256SHA256, load 3.4).

The key handling is dnspython's own public pieces: ``dns.dnssecalgs`` builds the public key
(once per DNSKEY) and verifies with ``cryptography`` (ECDSA keys by a subclass of its class
whose ``verify`` makes the same checks in one step, ``_direct``); ``dns.dnssec.default_policy``
says which algorithms may validate (RFC 8624 / RFC 9904); the key tag is computed as its
``key_id`` does (differential tests in ``tests/test_dnssec_cache.py``). Callers keep
``ZoneKey``s only for DNSKEY RRsets they validated.

A parsed key is kept per process by the exact octets of its DNSKEY RDATA (``MAX_LOADED_KEYS``):
what it vouches for is only that these octets are this public key (or are refused, with that
reason), so a DNSKEY met again (a zone whose keys are checked again after their cache time,
one key shared by many zones, as large DNS hosts do) is not parsed again. Whether a key may
verify a signature, and the RRSIG's validity times, are decided at every verification.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import dns.exception

from stspilot.probes.dnssec import dnssec_module
from stspilot.probes.dnswire import DNSKEY, Dnskey, RRset, Rrsig, WireName

if TYPE_CHECKING:  # dns.dnssecalgs loads cryptography's algorithms: on first use only
    from dns.dnssecalgs.base import GenericPrivateKey, GenericPublicKey
    from dns.rdtypes.ANY.DNSKEY import DNSKEY as DnspythonDnskey

_RSAMD5 = 1
_PRIVATE = (253, 254)  # PRIVATEDNS, PRIVATEOID (RFC 4034 Appendix A.1.1)
_ZONE_FLAG = 0x0100  # RFC 4034 §2.1.1
_REVOKE_FLAG = 0x0080  # RFC 5011 §2.1
_FIXED = struct.Struct("!HHI")
MAX_LOADED_KEYS = 10_000  # parsed keys kept by DNSKEY RDATA; past it the memo starts over
_ECDSA = {13: 32, 14: 48}  # ECDSAP256SHA256, ECDSAP384SHA384: octets of each coordinate
_LENGTH = struct.Struct("!H")


class VerifyFailure(Exception):
    """Why a signature does not verify: "expired", "not yet valid", "verify failure", ..."""


@dataclass(frozen=True, slots=True)
class ZoneKey:
    """One DNSKEY of a zone: its tag, the record, and the public key parsed once (None with
    ``error`` when the algorithm is unknown, forbidden by policy, or the key is malformed)."""

    tag: int
    dnskey: Dnskey
    public: GenericPublicKey | None
    error: str = ""


def key_tag(dnskey: Dnskey) -> int:
    """RFC 4034 Appendix B (B.1 for RSA/MD5), as dnspython's ``key_id`` computes it."""
    wire = dnskey.wire
    if dnskey.algorithm == _RSAMD5:
        return (wire[-3] << 8) + wire[-2]
    total = (sum(wire[0::2]) << 8) + sum(wire[1::2])
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


_loaded: dict[bytes, ZoneKey] = {}


def zone_key(dnskey: Dnskey) -> ZoneKey:
    """``dnskey`` with its tag and parsed public key; never raises for a bad key. Parsed once
    per process for the same RDATA octets (``_loaded``)."""
    if not dnssec_module().default_policy.ok_to_validate(dnskey):  # asked every time
        tag, algorithm = key_tag(dnskey), dnskey.algorithm
        return ZoneKey(tag, dnskey, None, f"algorithm {algorithm} is not allowed to validate")
    known = _loaded.get(dnskey.wire)
    if known is not None and known.dnskey == dnskey:
        return known
    key = _parse_key(dnskey)
    if len(_loaded) >= MAX_LOADED_KEYS:
        _loaded.clear()
    _loaded[dnskey.wire] = key
    return key


def _parse_key(dnskey: Dnskey) -> ZoneKey:
    """``dnskey`` with its tag and parsed public key; never raises for a bad key.

    dnspython's key classes read only a DNSKEY's ``algorithm`` and ``key``, which ``Dnskey``
    has: it is handed to them as it is (building dnspython's own ``DNSKEY`` for it cost
    more than the key itself, ~20 of ~60 µs a key); the private algorithms, whose class
    depends on a prefix of the key, go through dnspython's ``DNSKEY``."""
    dnssec_module()  # first: it silences dnspython's DSA warning at import
    import dns.dnssecalgs

    tag = key_tag(dnskey)
    algorithm = dnskey.algorithm
    try:
        if algorithm in _PRIVATE:
            import dns.rdata
            import dns.rdataclass
            import dns.rdatatype

            wire = dnskey.wire
            theirs = cast(
                "DnspythonDnskey",
                dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire)),
            )
            algorithm_cls = dns.dnssecalgs.get_algorithm_cls_from_dnskey(theirs)
        else:
            theirs = cast("DnspythonDnskey", dnskey)
            algorithm_cls = _classes.get(algorithm) or dns.dnssecalgs.get_algorithm_cls(algorithm)
            _classes[algorithm] = algorithm_cls
        octets = _ECDSA.get(algorithm)
        if octets is not None and len(dnskey.key) == 2 * octets:
            public = _ecdsa_key(algorithm_cls.public_cls, dnskey.key)
        else:
            public = algorithm_cls.public_cls.from_dnskey(theirs)
    except dns.exception.UnsupportedAlgorithm:
        return ZoneKey(tag, dnskey, None, f"unsupported algorithm {algorithm}")
    except (dns.exception.DNSException, ValueError, TypeError, IndexError):
        return ZoneKey(tag, dnskey, None, "invalid public key")
    return ZoneKey(tag, dnskey, public)


# dnspython's key class of each (non-private) algorithm met, as ``get_algorithm_cls`` gives it
_classes: dict[int, type[GenericPrivateKey]] = {}


def _ecdsa_key(public_cls: type[GenericPublicKey], point: bytes) -> GenericPublicKey:
    """dnspython's ECDSA public key of the DNSKEY key field ``point`` (x | y, RFC 6605 §4),
    built from the uncompressed point (~18 µs) instead of from the two integers, as its
    ``from_dnskey`` does (~31 µs); the same checks (the point must be on the curve: a
    ``ValueError`` otherwise). Only for a field of exactly two coordinates: ``from_dnskey``
    ignores octets past them, and other lengths go through it to be read as it reads them.
    The key is of ``_direct(public_cls)``: dnspython's class, its ``verify`` in one step."""
    direct, from_point = _direct(public_cls)
    curve = public_cls.curve  # type: ignore[attr-defined]
    return direct(key=from_point(curve, b"\x04" + point))


@functools.cache
def _direct(
    public_cls: type[GenericPublicKey],
) -> tuple[type[GenericPublicKey], Callable[[Any, bytes], Any]]:
    """A subclass of dnspython's ECDSA key class whose ``verify`` is its own with the same
    checks (RFC 6605 §4: a signature is r | s, each exactly ``octets`` long, else refused),
    calling ``cryptography`` with one ``ECDSA`` object made here instead of one per signature
    (~12,000 of the ~0.87 M instructions a verification took, four a DANE check); and
    ``from_encoded_point``, imported once."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    octets: int = public_cls.octets  # type: ignore[attr-defined]
    ecdsa = ec.ECDSA(public_cls.chosen_hash)  # type: ignore[attr-defined]
    invalid = _refused()[0]

    def verify(self: Any, signature: bytes, data: bytes) -> None:
        if len(signature) != octets * 2:
            raise invalid
        r = int.from_bytes(signature[:octets], "big")
        s = int.from_bytes(signature[octets:], "big")
        self.key.verify(encode_dss_signature(r, s), data, ecdsa)

    direct = type(public_cls.__name__, (public_cls,), {"verify": verify, "__slots__": ()})
    return direct, ec.EllipticCurvePublicKey.from_encoded_point


def key_table(dnskeys: Iterable[Dnskey]) -> dict[int, tuple[ZoneKey, ...]]:
    """Zone keys by tag (tags can collide: each candidate is tried)."""
    table: dict[int, tuple[ZoneKey, ...]] = {}
    for dnskey in dnskeys:
        key = zone_key(dnskey)
        table[key.tag] = (*table.get(key.tag, ()), key)
    return table


def signed_data(rrset: RRset, sig: Rrsig) -> bytes:
    """The octets an RRSIG signs (RFC 4034 §3.1.8.1): the RRSIG RDATA without the signature
    (the signer's name in canonical form), then each record as owner | type | class | original
    TTL | RDATA length | RDATA, in canonical form (§6.2) and canonical order (§6.3: sorted
    as octet strings), the owner rebuilt as the wildcard it was expanded from (§5.3.2)."""
    if rrset.digestable is None:
        raise VerifyFailure(f"cannot verify signatures over type {rrset.rdtype}")
    owner = rrset.name
    count = len(owner.labels)
    labels = sig.labels
    if owner.is_wild() and labels != count - 1:
        raise VerifyFailure("wild owner name has wrong label length")
    if labels > count:
        raise VerifyFailure("owner name longer than RRSIG labels")
    if labels < count:
        owner = WireName((b"*", *owner.suffix(labels).labels))
    fixed = owner.canonical() + _FIXED.pack(rrset.rdtype, rrset.rdclass, sig.original_ttl)
    parts = [sig.head]  # the signer's name in it, in canonical form
    for rdata in sorted(rrset.digestable):
        parts += [fixed, _LENGTH.pack(len(rdata)), rdata]
    return b"".join(parts)


def verify(rrset: RRset, sig: Rrsig, keys: dict[int, tuple[ZoneKey, ...]], now: float) -> None:
    """``VerifyFailure`` naming why ``sig`` does not make ``rrset`` authentic with ``keys``
    (the signer zone's validated keys); returns when it does (RFC 4035 §5.3)."""
    if sig.type_covered != rrset.rdtype:  # the class: sig is an RRSIG of rrset's class
        raise VerifyFailure("RRSIG does not cover the RRset")
    is_dnskey = rrset.rdtype == DNSKEY
    candidates = [
        key
        for key in keys.get(sig.key_tag, ())
        if key.dnskey.algorithm == sig.algorithm
        and key.dnskey.flags & _ZONE_FLAG
        and key.dnskey.protocol == 3
        and (is_dnskey or not key.dnskey.flags & _REVOKE_FLAG)
    ]
    if not candidates:
        raise VerifyFailure("unknown key")
    if sig.expiration < now:
        raise VerifyFailure("expired")
    if sig.inception > now:
        raise VerifyFailure("not yet valid")
    usable = [key for key in candidates if key.public is not None]
    if not usable:
        raise VerifyFailure(candidates[0].error)
    data = signed_data(rrset, sig)
    refused = _refused()
    for key in usable:
        assert key.public is not None
        try:
            key.public.verify(sig.signature, data)
            return
        except refused:
            continue
    raise VerifyFailure("verify failure")


@functools.cache
def _refused() -> tuple[type[Exception], ...]:
    """What a key's ``verify`` raises for a signature it refuses (imported once, not at
    every signature: an import statement in a function costs a lookup each call)."""
    from cryptography.exceptions import InvalidSignature

    return (InvalidSignature, dns.exception.DNSException, ValueError, TypeError)
