"""DNS messages for the questions stspilot asks most (A, AAAA, MX, TXT), laid out and read here.

Why not ``dns.message.from_wire`` for these: it builds a full object model of every answer
(rdata classes for every type, EDNS options, TSIG hooks), which was the largest single cost
of a bulk check (21 % of the checker's CPU in a profile of 1,000 domains; ~0.15 ms an answer
against ~0.03 ms here, ``bench/check_bench.py``), and importing it (``dns.message`` and
``dns.name``, which loads ``importlib.metadata``) cost ~50-60 ms of every ``stspilot check``
before its first packet. The questions stspilot asks for MTA-STS need five record types,
read the way dnspython reads them (so every answer means what it meant before):

- the header (id, flags, rcode with the EDNS extended bits, RFC 6891 §6.1.3), the question,
  and every resource record of every section walked and bounds-checked; a message that does
  not parse is ``WireError``, never a guess (dnspython's rules: compression pointers only
  backwards, labels of at most 63 octets, names of at most 255, no trailing bytes);
- answer RRs grouped into RRsets by (name, type, class), duplicates dropped, first-seen order,
  as dnspython's ``Message.answer`` has them;
- A, AAAA (text as ``dns.ipv6.inet_ntoa`` writes it), MX, TXT (each character-string kept)
  and CNAME rdata; the rdata of any other type in the answer is kept as bytes;
- names as label tuples, compared without regard to ASCII case, written as dnspython's
  ``Name.to_text`` writes them (the same escapes), so names in findings are unchanged.

The answers to DO questions, which the DANE validator checks, are read by
``probes.dnswire_signed`` on this module's reader.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Self

import dns.ipv6

A, NS, CNAME, SOA, MX, TXT, AAAA, OPT = 1, 2, 5, 6, 15, 16, 28, 41
DNAME, DS, RRSIG, NSEC, DNSKEY, NSEC3, TLSA = 39, 43, 46, 47, 48, 50, 52
CLASS_IN = 1
QR, TC = 0x8000, 0x0200
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
MAX_NAME = 255
_ESCAPED = frozenset(b'"().;\\@$')
_RCODES = (
    *("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN"),
    *("YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI", "12", "13", "14", "15"),
    *("BADVERS", "BADKEY", "BADTIME", "BADMODE", "BADNAME", "BADALG", "BADTRUNC", "BADCOOKIE"),
)
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")


class WireError(ValueError):
    """A message that does not parse as RFC 1035 §4 lays it out."""


def rcode_text(rcode: int) -> str:
    return _RCODES[rcode] if 0 <= rcode < len(_RCODES) else str(rcode)


def _label_text(label: bytes) -> str:
    if label.isalnum() or (label.isascii() and label.replace(b"-", b"").isalnum()):
        return label.decode("ascii")  # the common case: nothing to escape
    out = []
    for c in label:
        if c in _ESCAPED:
            out.append("\\" + chr(c))
        elif 0x20 < c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\{c:03d}")
    return "".join(out)


_LENGTHS = tuple(bytes((size,)) for size in range(64))  # a label's length octet


class WireName:
    """An absolute DNS name as labels (without the root's empty label); equal and hashed
    without regard to ASCII case, as DNS names are (RFC 4343)."""

    __slots__ = ("_key", "labels")

    def __init__(self, labels: tuple[bytes, ...]) -> None:
        self.labels = labels
        self._key = tuple(map(bytes.lower, labels))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WireName) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        if not self.labels:
            return "."
        return ".".join(_label_text(label) for label in self.labels) + "."

    def __repr__(self) -> str:
        return f"WireName({self!s})"

    def to_wire(self) -> bytes:
        return b"".join(bytes((len(label),)) + label for label in self.labels) + b"\0"

    # --- what DNSSEC validation needs (RFC 4034 §6) ---

    def canonical(self) -> bytes:
        """The name in canonical form: uncompressed, lower case (RFC 4034 §6.2)."""
        return b"".join([_LENGTHS[len(label)] + label for label in self._key]) + b"\0"

    def parent(self) -> WireName:
        if not self.labels:
            raise WireError("the root has no parent")
        return WireName(self.labels[1:])

    def is_subdomain(self, other: WireName) -> bool:
        """``self`` is ``other`` or a name below it."""
        size = len(other._key)
        return size <= len(self._key) and self._key[len(self._key) - size :] == other._key

    def is_wild(self) -> bool:
        return bool(self.labels) and self.labels[0] == b"*"

    def suffix(self, count: int) -> WireName:
        """The name of its last ``count`` labels."""
        return WireName(self.labels[len(self.labels) - count :] if count else ())

    def common_labels(self, other: WireName) -> int:
        """How many labels, counted from the root, the two names share."""
        count = 0
        for mine, theirs in zip(reversed(self._key), reversed(other._key), strict=False):
            if mine != theirs:
                break
            count += 1
        return count

    def order_key(self) -> tuple[bytes, ...]:
        """A key that sorts names in DNSSEC canonical order (RFC 4034 §6.1): labels compared
        from the root down, each as lower-cased octets, an absent label sorting first."""
        return self._key[::-1]


def name_from_text(text: str) -> WireName:
    """The name ``text`` names (absolute; a trailing dot optional). Plain ASCII host names are
    read here; anything with escapes or non-ASCII, and every invalid name, goes through
    ``dns.name.from_text`` so it means (or fails with) exactly what it did before."""
    plain = text[:-1] if text.endswith(".") else text
    if plain and plain.isascii() and "\\" not in plain and len(plain) < MAX_NAME - 1:
        labels = tuple(plain.encode("ascii").split(b"."))
        if b"" not in labels and max(map(len, labels)) < 64:  # no empty nor long label
            return WireName(labels)
    import dns.name

    parsed = dns.name.from_text(text)
    return WireName(tuple(label for label in parsed.labels if label))


@dataclass(frozen=True, slots=True)
class Question:
    name: WireName
    rdtype: int
    rdclass: int


@dataclass(frozen=True, slots=True)
class Address:
    address: str


@dataclass(frozen=True, slots=True)
class Mx:
    preference: int
    exchange: WireName


@dataclass(frozen=True, slots=True)
class Txt:
    strings: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Cname:
    target: WireName


@dataclass(frozen=True, slots=True)
class Opaque:
    data: bytes


class Rrsig(NamedTuple):
    """RFC 4034 §3.1; ``head``: the RDATA before the signature, as the signature covers it
    (RFC 4034 §3.1.8.1: the signer's name in canonical form, §6.2; read off the wire, where
    it is uncompressed, and lower-cased: length octets are below 64, never an ASCII letter).
    A named tuple, not a frozen dataclass like the others: an answer holds one for each
    RRset, and a tuple is built ~4 times faster than a frozen dataclass of ten fields."""

    type_covered: int
    algorithm: int
    labels: int
    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    signer: WireName
    signature: bytes
    head: bytes


@dataclass(frozen=True, slots=True)
class Dnskey:
    """RFC 4034 §2.1; ``wire``: the whole RDATA (for key tags and DS digests)."""

    flags: int
    protocol: int
    algorithm: int
    key: bytes
    wire: bytes


@dataclass(frozen=True, slots=True)
class Ds:
    """RFC 4034 §5.1."""

    key_tag: int
    algorithm: int
    digest_type: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Nsec:
    """RFC 4034 §4.1: the next owner name (case kept, RFC 6840 §5.1) and the types present."""

    next: WireName
    types: frozenset[int]


@dataclass(frozen=True, slots=True)
class Nsec3:
    """RFC 5155 §3.1: ``next`` is the next hashed owner name, as raw hash octets."""

    algorithm: int
    flags: int
    iterations: int
    salt: bytes
    next: bytes
    types: frozenset[int]


Rdata = Address | Mx | Txt | Cname | Opaque | Rrsig | Dnskey | Ds | Nsec | Nsec3


class RRset(tuple[Rdata, ...]):
    """The records of one (name, type, class) in the answer section, in first-seen order.

    Read by ``parse_dnssec_message``, RRSIGs are grouped by the type they cover (``covers``),
    ``ttl`` is the least TTL of the records, and ``digestable`` holds each record's RDATA in
    canonical form (RFC 4034 §6.2) in the records' order, or is None for a type whose
    canonical form is not known here (then no signature over the RRset is accepted)."""

    name: WireName
    rdtype: int
    rdclass: int
    covers: int = 0
    ttl: int = 0
    digestable: tuple[bytes, ...] | None = None

    def __new__(cls, name: WireName, rdtype: int, rdclass: int, rdatas: list[Rdata]) -> Self:
        rrset = super().__new__(cls, rdatas)
        rrset.name, rrset.rdtype, rrset.rdclass = name, rdtype, rdclass
        return rrset


@dataclass(frozen=True, slots=True)
class Message:
    """What stspilot reads of an answer (the subset of ``dns.message.Message`` it uses)."""

    id: int
    flags: int
    ednsflags: int
    question: tuple[Question, ...]
    answer: tuple[RRset, ...]
    # the authority section (``parse_dnssec_message`` only), or the function that reads it
    # on first use: checked at once, so reading it later cannot fail (``_check_signed``)
    _authority: tuple[RRset, ...] | Callable[[], tuple[RRset, ...]] = ()

    @property
    def authority(self) -> tuple[RRset, ...]:
        found = self._authority
        if callable(found):
            found = found()
            object.__setattr__(self, "_authority", found)  # read once
        return found

    def rcode(self) -> int:
        """The rcode, with the 8 high bits an OPT record carries (RFC 6891 §6.1.3)."""
        return ((self.ednsflags >> 20) & 0xFF0) | (self.flags & 0x000F)


class _Reader:
    __slots__ = ("data", "end", "names")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)
        # names read so far by their offset: an owner name is mostly a pointer to one of them,
        # read once (the same checks as reading it again: it was read from that very offset)
        self.names: dict[int, WireName] = {}

    def name(self, at: int, compressed: bool = True) -> tuple[WireName, int]:
        """The name at ``at`` and the offset after it (after the first pointer, if any);
        ``compressed=False``: a pointer is refused (RRSIG's signer, NSEC's next name: RFC
        4034 §3.1.7, §4.1.1, and dnspython refuses them too)."""
        data, labels, length = self.data, [], 1
        start = at
        if compressed and at + 1 < self.end and data[at] & 0xC0 == 0xC0:
            target = ((data[at] & 0x3F) << 8) | data[at + 1]
            known = self.names.get(target) if target < at else None
            if known is not None:  # a pointer backwards to a name read already
                return known, at + 2
        after, end = -1, self.end
        limit = at  # pointers must go strictly backwards (no loops), as dnspython requires
        while True:
            if at >= end:
                raise WireError("name runs past the end of the message")
            size = data[at]
            if size == 0:
                at += 1
                break
            if size & 0xC0 == 0xC0:
                if not compressed:
                    raise WireError("compressed name where compression is not allowed")
                if at + 1 >= end:
                    raise WireError("compression pointer runs past the end")
                target = ((size & 0x3F) << 8) | data[at + 1]
                if after < 0:
                    after = at + 2
                if target >= limit:
                    raise WireError("compression pointer does not point backwards")
                limit = at = target
                continue
            if size & 0xC0:
                raise WireError(f"unknown label type {size >> 6}")
            following = at + 1 + size
            if following > end:
                raise WireError("label runs past the end of the message")
            length += size + 1
            if length > MAX_NAME:
                raise WireError("name longer than 255 octets")
            labels.append(data[at + 1 : following])
            at = following
        name = self.names[start] = WireName(tuple(labels))
        return name, (after if after >= 0 else at)


def _rdata(reader: _Reader, rdtype: int, rdclass: int, at: int, end: int) -> Rdata:
    data = reader.data
    if rdclass != CLASS_IN:
        return Opaque(data[at:end])
    if rdtype == A:
        if end - at != 4:
            raise WireError("A record of the wrong length")
        return Address(".".join(str(b) for b in data[at:end]))
    if rdtype == AAAA:
        if end - at != 16:
            raise WireError("AAAA record of the wrong length")
        return Address(dns.ipv6.inet_ntoa(data[at:end]))
    if rdtype == MX:
        if end - at < 3:
            raise WireError("MX record too short")
        exchange, after = reader.name(at + 2)
        if after != end:
            raise WireError("MX record of the wrong length")
        return Mx((data[at] << 8) | data[at + 1], exchange)
    if rdtype == CNAME:
        target, after = reader.name(at)
        if after != end:
            raise WireError("CNAME record of the wrong length")
        return Cname(target)
    if rdtype == TXT:
        strings = []
        while at < end:
            size = data[at]
            if at + 1 + size > end:
                raise WireError("TXT string runs past its record")
            strings.append(data[at + 1 : at + 1 + size])
            at += 1 + size
        if not strings:
            raise WireError("TXT record without a string")
        return Txt(tuple(strings))
    return Opaque(data[at:end])


def parse_message(data: bytes) -> Message:
    """Read an answer; ``WireError`` when it is not a well-formed DNS message."""
    return _parse(data)


_QUESTION = struct.Struct("!HH")
_new_tuple = tuple.__new__
_ROOT = WireName(())


def _parse(data: bytes) -> Message:
    """Read an answer; ``WireError`` when it is not a well-formed DNS message."""
    if len(data) < 12:
        raise WireError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    reader = _Reader(data)
    at = 12
    questions = []
    for _ in range(qdcount):
        name, at = reader.name(at)
        if at + 4 > reader.end:
            raise WireError("question runs past the end")
        rdtype, rdclass = struct.unpack_from("!HH", data, at)
        at += 4
        questions.append(Question(name, rdtype, rdclass))
    groups: dict[tuple[WireName, int, int], list[Rdata]] = {}
    ednsflags = 0
    opt_seen = False
    for section, count in ((0, ancount), (1, nscount), (2, arcount)):
        for _ in range(count):
            name, at = reader.name(at)
            if at + 10 > reader.end:
                raise WireError("resource record runs past the end")
            rdtype, rdclass, ttl, rdlength = _RR.unpack_from(data, at)
            at += 10
            end = at + rdlength
            if end > reader.end:
                raise WireError("rdata runs past the end")
            if rdtype == OPT:
                if section != 2 or opt_seen or name.labels:
                    raise WireError("misplaced OPT record")
                opt_seen = True
                ednsflags = ttl
            elif section == 0:
                rdata = _rdata(reader, rdtype, rdclass, at, end)
                group = groups.setdefault((name, rdtype, rdclass), [])
                if rdata not in group:
                    group.append(rdata)
            at = end
    if at != reader.end:
        raise WireError("trailing bytes after the message")
    answer = tuple(RRset(name, t, c, rdatas) for (name, t, c), rdatas in groups.items())
    return Message(qid, flags, ednsflags, tuple(questions), answer)
