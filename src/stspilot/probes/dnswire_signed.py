"""The answers to DO questions (RFC 3225) read for DNSSEC validation, on ``probes.dnswire``'s
reader: the answer and the authority sections, RRSIGs grouped by the type they cover, RRSIG,
DNSKEY, DS, NSEC and NSEC3 records read (refused where dnspython refuses them: compressed
signer or next names, bad type bitmaps, DS digests of the wrong length) and TLSA kept as the
octets served.

Each record's RDATA is kept in canonical form (RFC 4034 §6.2) as it is read, so the octets a
signature covers are a join (``probes.rrsig``). Why not ``dns.message.from_wire``: for the
five DO answers of a DANE check (DNSKEY, MX, A, AAAA, TLSA, each with RRSIGs) it cost ~1.7 ms
of CPU a domain against ~0.18 ms here (25-55 µs an answer against 220-560 µs, load ~20), the
largest part of what DANE added to a check (``docs/dane.md``, Cost).
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from stspilot.probes.dnswire import (
    _HEADER,
    _QUESTION,
    _ROOT,
    _RR,
    AAAA,
    CLASS_IN,
    DNSKEY,
    DS,
    MAX_NAME,
    NS,
    NSEC,
    NSEC3,
    OPT,
    RRSIG,
    SOA,
    TLSA,
    TXT,
    A,
    Address,
    Cname,
    Dnskey,
    Ds,
    Message,
    Mx,
    Nsec,
    Nsec3,
    Opaque,
    Question,
    Rdata,
    RRset,
    Rrsig,
    WireError,
    _new_tuple,
    _rdata,
    _Reader,
)

_RRSIG_HEAD = struct.Struct("!HBBIIIH")
# RFC 4034 §5.1.3 (SHA-1), RFC 4509 (SHA-256), RFC 5933 (GOST), RFC 6605 (SHA-384); type 0 is
# reserved. dnspython refuses a message with such a DS, and so does this module.
_DS_DIGEST_LENGTH = {1: 20, 2: 32, 3: 32, 4: 48}
# Types whose RDATA holds no domain name: their canonical form is the RDATA as received.
_NAMELESS = frozenset((A, AAAA, TXT, DS, DNSKEY, NSEC3, TLSA))


def _types(data: bytes, at: int, end: int, *, read: bool = True) -> frozenset[int]:
    """An NSEC/NSEC3 type bitmap (RFC 4034 §4.1.2), refused where dnspython refuses it:
    windows in increasing order, 1 to 32 octets each, the last octet not zero;
    ``read=False``: only checked (the empty set)."""
    found: set[int] = set()
    last = -1
    while at < end:
        if at + 2 > end:
            raise WireError("type bitmap window runs past its record")
        window, size = data[at], data[at + 1]
        at += 2
        if at + size > end:
            raise WireError("type bitmap runs past its record")
        if window <= last:
            raise WireError("type bitmap windows out of order")
        if not 0 < size <= 32 or data[at + size - 1] == 0:
            raise WireError("type bitmap of a bad length")
        last = window
        for index in range(size if read else 0):
            byte = data[at + index]
            if byte:
                base = window * 256 + index * 8
                found.update(base + bit for bit in range(8) if byte & (0x80 >> bit))
        at += size
    return frozenset(found)


def _signed_rdata(
    reader: _Reader, rdtype: int, rdclass: int, at: int, end: int
) -> tuple[Rdata, bytes | None]:
    """A record of a DNSSEC answer and its RDATA in canonical form (RFC 4034 §6.2), or None
    where that form is not known here."""
    data = reader.data
    if rdclass != CLASS_IN:
        return Opaque(data[at:end]), None
    # the types of a DANE check first (each is what ``_rdata`` reads, without its call)
    if rdtype == TLSA:
        wire = data[at:end]
        return Opaque(wire), wire
    if rdtype == A:
        if end - at != 4:
            raise WireError("A record of the wrong length")
        wire = data[at:end]
        return Address(f"{wire[0]}.{wire[1]}.{wire[2]}.{wire[3]}"), wire
    if rdtype == RRSIG:
        if end - at < 18:
            raise WireError("RRSIG record too short")
        covered, algorithm, labels, ttl, expiration, inception, tag = _RRSIG_HEAD.unpack_from(
            data, at
        )
        signer, after = reader.name(at + 18, compressed=False)
        if after > end:
            raise WireError("RRSIG signer runs past its record")
        head = data[at : at + 18] + data[at + 18 : after].lower()
        return Rrsig(
            covered, algorithm, labels, ttl, expiration, inception, tag, signer,
            data[after:end], head,
        ), None  # fmt: skip
    if rdtype == DNSKEY:
        if end - at < 4:
            raise WireError("DNSKEY record too short")
        wire = data[at:end]
        return Dnskey((wire[0] << 8) | wire[1], wire[2], wire[3], wire[4:], wire), wire
    if rdtype == DS:
        if end - at < 4:
            raise WireError("DS record too short")
        wire = data[at:end]
        digest_type = wire[3]
        expected = _DS_DIGEST_LENGTH.get(digest_type)
        if digest_type == 0 or (expected is not None and len(wire) - 4 != expected):
            raise WireError("DS digest of the wrong length for its type")
        return Ds((wire[0] << 8) | wire[1], wire[2], digest_type, wire[4:]), wire
    if rdtype == NSEC:
        following, after = reader.name(at, compressed=False)
        if after > end:
            raise WireError("NSEC next name runs past its record")
        return Nsec(following, _types(data, after, end)), data[at:end]
    if rdtype == NSEC3:
        if end - at < 5:
            raise WireError("NSEC3 record too short")
        algorithm, flags, iterations = data[at], data[at + 1], (data[at + 2] << 8) | data[at + 3]
        salt_end = at + 5 + data[at + 4]
        if salt_end >= end:
            raise WireError("NSEC3 salt runs past its record")
        next_end = salt_end + 1 + data[salt_end]
        if next_end > end or next_end == salt_end + 1:
            raise WireError("NSEC3 next hashed name empty or past its record")
        salt, hashed = data[at + 5 : salt_end], data[salt_end + 1 : next_end]
        types = _types(data, next_end, end)
        return Nsec3(algorithm, flags, iterations, salt, hashed, types), data[at:end]
    rdata = _rdata(reader, rdtype, rdclass, at, end)
    if rdtype in _NAMELESS:
        return rdata, data[at:end]
    if isinstance(rdata, Mx):
        return rdata, data[at : at + 2] + rdata.exchange.canonical()
    if isinstance(rdata, Cname):
        return rdata, rdata.target.canonical()
    return rdata, None


def parse_rdata(rdtype: int, data: bytes) -> Rdata:
    """One record's RDATA of class IN, as ``parse_dnssec_message`` reads it (trust anchors,
    tests); ``WireError`` when it does not parse."""
    reader = _Reader(data)
    return _signed_rdata(reader, rdtype, CLASS_IN, 0, len(data))[0]


def parse_dnssec_message(data: bytes) -> Message:
    """Read the answer to a DO question (RFC 3225) for DNSSEC validation: the answer and
    authority sections (``RRset.covers``, ``ttl``, ``digestable`` set), with RRSIG, DNSKEY,
    DS, NSEC and NSEC3 records read, and TLSA kept as its octets whatever its digest length
    (RFC 6698 §2.1 has a sender skip such a record, not the whole answer). ``WireError`` when
    it is not a well-formed message, or when a record is refused as dnspython refuses it.

    The same walk and checks as ``_parse``, written for the answers DANE reads five of a
    domain (each an RRset or two with their RRSIGs): an owner name that points back at a name
    read already and an RRSIG are read in the loop itself, each RRset is built in one step
    from its group (a list), and the authority section is checked at once but read when
    first used (``Message.authority``): the five DO answers of a bench domain took 0.99 M
    instructions through the general path, 0.63 M here (``docs/dane.md``, Cost)."""
    if len(data) < 12:
        raise WireError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    reader = _Reader(data)
    read_name, end_all = reader.name, reader.end
    at = 12
    questions = []
    for _ in range(qdcount):
        name, at = read_name(at)
        if at + 4 > end_all:
            raise WireError("question runs past the end")
        rdtype, rdclass = _QUESTION.unpack_from(data, at)
        at += 4
        questions.append(Question(name, rdtype, rdclass))
    answer: _Groups = {}
    at = _dnssec_section(reader, at, ancount, answer)
    # the authority section is checked now and read when used (a NODATA answer's SOA, NSEC
    # and their RRSIGs are not, where DANE judges only the address records that exist)
    authority_at = at
    if nscount:
        at = _dnssec_section(reader, at, nscount, None)
    ednsflags = 0
    opt_seen = False
    for _ in range(arcount):
        if at < end_all and not data[at]:  # the root (the OPT record's owner)
            name, at = _ROOT, at + 1
        else:
            name, at = read_name(at)
        if at + 10 > end_all:
            raise WireError("resource record runs past the end")
        rdtype, rdclass, ttl, rdlength = _RR.unpack_from(data, at)
        at += 10 + rdlength
        if at > end_all:
            raise WireError("rdata runs past the end")
        if rdtype == OPT:
            if opt_seen or name.labels:
                raise WireError("misplaced OPT record")
            opt_seen = True
            ednsflags = ttl
    if at != end_all:
        raise WireError("trailing bytes after the message")
    authority = functools.partial(_authority, data, authority_at, nscount) if nscount else ()
    return Message(qid, flags, ednsflags, tuple(questions), _rrsets(answer), authority)


# a section's RRsets as they are read, by (the owner's lower-cased labels, type, class, type
# covered): [owner, least TTL, records, their canonical RDATA or None when a type's form is
# not known here]
_Groups = dict[tuple[tuple[bytes, ...], int, int, int], list[Any]]


def _dnssec_section(reader: _Reader, at: int, count: int, groups: _Groups | None) -> int:
    """The ``count`` records from ``at`` of an answer or authority section read into
    ``groups``, or (``groups`` None) only checked as they would be read (``_check_signed``);
    the offset after them."""
    data, names, end_all, read_name = reader.data, reader.names, reader.end, reader.name
    unpack_rr, unpack_rrsig = _RR.unpack_from, _RRSIG_HEAD.unpack_from
    for _ in range(count):
        # an owner name is mostly a pointer back to a name read already (``_Reader.name``)
        if at + 1 < end_all and data[at] >= 0xC0:
            target = ((data[at] & 0x3F) << 8) | data[at + 1]
            known = names.get(target) if target < at else None
            if known is not None:
                name, at = known, at + 2
            else:
                name, at = read_name(at)
        else:
            name, at = read_name(at)
        if at + 10 > end_all:
            raise WireError("resource record runs past the end")
        rdtype, rdclass, ttl, rdlength = unpack_rr(data, at)
        at += 10
        end = at + rdlength
        if end > end_all:
            raise WireError("rdata runs past the end")
        if rdtype == OPT:
            raise WireError("misplaced OPT record")
        if groups is None:
            _check_signed(reader, rdtype, rdclass, at, end)
            at = end
            continue
        covers = 0
        rdata: Rdata
        canonical: bytes | None
        if rdtype == RRSIG and rdclass == CLASS_IN:  # _signed_rdata's RRSIG, inline
            if rdlength < 18:
                raise WireError("RRSIG record too short")
            covers, algorithm, labels, original, expiration, inception, tag = unpack_rrsig(data, at)
            signer, after = read_name(at + 18, False)
            if after > end:
                raise WireError("RRSIG signer runs past its record")
            rdata = _new_tuple(Rrsig, (  # Rrsig(...) without its __new__'s Python call
                covers, algorithm, labels, original, expiration, inception, tag, signer,
                data[after:end], data[at : at + 18] + data[at + 18 : after].lower(),
            ))  # fmt: skip
            canonical = None
        else:
            rdata, canonical = _signed_rdata(reader, rdtype, rdclass, at, end)
        at = end
        if ttl > 0x7FFFFFFF:  # RFC 2181 §8: a TTL with the top bit set means zero
            ttl = 0
        key = (name._key, rdtype, rdclass, covers)
        group = groups.get(key)
        if group is None:
            groups[key] = [name, ttl, [rdata], None if canonical is None else [canonical]]
            continue
        if ttl < group[1]:
            group[1] = ttl
        # duplicates (the same canonical RDATA, as dnspython compares records) dropped
        known_canonical = group[3]
        if known_canonical is not None and canonical is not None:
            if canonical not in known_canonical:
                known_canonical.append(canonical)
                group[2].append(rdata)
        elif rdata not in group[2]:
            group[2].append(rdata)
            group[3] = None  # a record whose canonical form is not known here
    return at


def _rrsets(groups: _Groups) -> tuple[RRset, ...]:
    rrsets = []
    for (_, rdtype, rdclass, covers), (name, ttl, rdatas, canonical) in groups.items():
        rrset = _new_tuple(RRset, rdatas)  # the RRset in one step: its attributes one dict
        rrset.__dict__ = {
            "name": name, "rdtype": rdtype, "rdclass": rdclass, "covers": covers,
            "ttl": ttl, "digestable": None if canonical is None else tuple(canonical),
        }  # fmt: skip
        rrsets.append(rrset)
    return tuple(rrsets)


def _authority(data: bytes, at: int, count: int) -> tuple[RRset, ...]:
    """The authority section of a DO answer, read when first used (it was checked)."""
    groups: _Groups = {}
    _dnssec_section(_Reader(data), at, count, groups)
    return _rrsets(groups)


def _check_signed(reader: _Reader, rdtype: int, rdclass: int, at: int, end: int) -> None:
    """``WireError`` where ``_signed_rdata`` refuses the record, without reading it: RRSIG
    and NSEC records checked here as they are read (their names uncompressed and within
    the record, the type bitmap), SOA and NS not at all (``_rdata`` keeps their octets
    unread), any other type read and dropped."""
    if rdclass != CLASS_IN or rdtype in (SOA, NS):
        return
    if rdtype == RRSIG:
        if end - at < 18:
            raise WireError("RRSIG record too short")
        if _skip_name(reader, at + 18) > end:
            raise WireError("RRSIG signer runs past its record")
    elif rdtype == NSEC:
        after = _skip_name(reader, at)
        if after > end:
            raise WireError("NSEC next name runs past its record")
        _types(reader.data, after, end, read=False)
    else:
        _signed_rdata(reader, rdtype, rdclass, at, end)


def _skip_name(reader: _Reader, at: int) -> int:
    """The offset after the uncompressed name at ``at``: ``_Reader.name(at, False)``'s
    checks, in its order, without making the name."""
    data, end, length = reader.data, reader.end, 1
    while True:
        if at >= end:
            raise WireError("name runs past the end of the message")
        size = data[at]
        if size == 0:
            return at + 1
        if size & 0xC0 == 0xC0:
            raise WireError("compressed name where compression is not allowed")
        if size & 0xC0:
            raise WireError(f"unknown label type {size >> 6}")
        following = at + 1 + size
        if following > end:
            raise WireError("label runs past the end of the message")
        length += size + 1
        if length > MAX_NAME:
            raise WireError("name longer than 255 octets")
        at = following
