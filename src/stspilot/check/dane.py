"""DANE for SMTP, judged: TLSA records parsed and matched against the chain an MX host served.

Pure core: no I/O; the DNSSEC verdicts come in ``facts`` (``probes.dane`` made them), the time
is ``facts.observed_at``. RFC 6698 §2 (record format), RFC 7671 §5 (DANE-EE, DANE-TA), §9
(digest agility), RFC 7672 §3 (what an SMTP client does), checklist Part F.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

from stspilot.errors import ParseError

if TYPE_CHECKING:  # cryptography loads when a chain is matched (~40 ms of every check else)
    from cryptography import x509

MAX_TLSA_DATA = 4096  # octets of association data: a full certificate fits; more is abuse


class Usage(IntEnum):
    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class Selector(IntEnum):
    CERT = 0
    SPKI = 1


class MatchingType(IntEnum):
    FULL = 0
    SHA256 = 1
    SHA512 = 2


_DIGEST_LENGTH = {MatchingType.SHA256: 32, MatchingType.SHA512: 64}


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1); the fields are raw octets, known values or not."""

    usage: int
    selector: int
    matching_type: int
    data: bytes

    @property
    def params(self) -> str:
        return f"{self.usage} {self.selector} {self.matching_type}"

    def to_text(self) -> str:
        return f"{self.params} {self.data.hex()}"

    @property
    def unusable_reason(self) -> str:
        """Why an SMTP client skips this record (RFC 7672 §3.1.3, RFC 6698 §4.1); "" if usable."""
        return _unusable(self.usage, self.selector, self.matching_type, len(self.data))

    @property
    def usable(self) -> bool:
        return not _unusable(self.usage, self.selector, self.matching_type, len(self.data))


@functools.lru_cache(maxsize=1024)
def _unusable(usage: int, selector: int, matching_type: int, length: int) -> str:
    # Cached: a verdict asks it of each record several times, and records repeat per run.
    if usage in (Usage.PKIX_TA, Usage.PKIX_EE):
        return f"usage {usage} (PKIX) is not for SMTP"
    if usage not in (Usage.DANE_TA, Usage.DANE_EE):
        return f"unknown usage {usage}"
    if selector not in (Selector.CERT, Selector.SPKI):
        return f"unknown selector {selector}"
    if matching_type not in (MatchingType.FULL, MatchingType.SHA256, MatchingType.SHA512):
        return f"unknown matching type {matching_type}"
    expected = _DIGEST_LENGTH.get(MatchingType(matching_type))
    if expected is not None and length != expected:
        return f"digest of {length} octets where {expected} belong"
    if not length:
        return "no association data"
    return ""


@functools.lru_cache(maxsize=4096)
def parse_tlsa(text: str) -> TlsaRecord:
    """``"3 1 1 ab12..."`` → ``TlsaRecord``: three 8-bit numbers, then hex that may hold spaces
    (RFC 6698 §2.2). ``ParseError`` (code ``dane.tlsa.syntax``) for anything else. Cached by
    the text (a record is frozen): a host's records are judged for every domain it serves."""
    fields = text.split()
    if len(fields) < 4:
        raise ParseError("dane.tlsa.syntax", f"a TLSA record has 4 fields: {text[:80]!r}")
    numbers: list[int] = []
    for field in fields[:3]:
        if not field.isascii() or not field.isdigit() or len(field) > 3 or int(field) > 255:
            raise ParseError("dane.tlsa.syntax", f"not an 8-bit number: {field[:10]!r}")
        numbers.append(int(field))
    hexdata = "".join(fields[3:])
    if len(hexdata) > 2 * MAX_TLSA_DATA:
        raise ParseError("dane.tlsa.syntax", "association data longer than 4096 octets")
    try:
        if not hexdata.isascii():
            raise ValueError("non-ASCII character")
        data = bytes.fromhex(hexdata)
    except ValueError as exc:
        raise ParseError("dane.tlsa.syntax", f"association data is not hex: {exc}") from exc
    return TlsaRecord(numbers[0], numbers[1], numbers[2], data)


@functools.lru_cache(maxsize=1024)
def _spki(der: bytes) -> bytes:
    # Cached: one chain is matched against every record of a host (and hosts share chains).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(der)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@functools.lru_cache(maxsize=1024)
def association(der: bytes, selector: int, matching_type: int) -> bytes:
    """The data a TLSA record of ``selector``/``matching_type`` holds for certificate ``der``."""
    content = _spki(der) if selector == Selector.SPKI else der
    if matching_type == MatchingType.SHA256:
        return hashlib.sha256(content).digest()
    if matching_type == MatchingType.SHA512:
        return hashlib.sha512(content).digest()
    return content


def effective_records(records: Sequence[TlsaRecord]) -> tuple[TlsaRecord, ...]:
    """Usable records after digest agility (RFC 7671 §9): per usage and selector, the Full
    records plus those of the strongest digest present; a weaker digest alone never passes."""
    usable = [r for r in records if r.usable]
    strongest: dict[tuple[int, int], int] = {}
    for r in usable:
        if r.matching_type != MatchingType.FULL:
            key = (r.usage, r.selector)
            strongest[key] = max(strongest.get(key, 0), r.matching_type)
    return tuple(
        r
        for r in usable
        if r.matching_type == MatchingType.FULL
        or r.matching_type == strongest[(r.usage, r.selector)]
    )


class MatchFailure(StrEnum):
    NONE = ""
    NO_MATCH = "no-match"  # no usable record matches any certificate it may match
    TA_NOT_SENT = "ta-not-sent"  # a DANE-TA record matches nothing the server sent
    TA_NAME = "ta-name"  # DANE-TA matched, but the leaf names neither MX nor domain
    TA_PATH = "ta-path"  # DANE-TA matched, but the chain from it to the leaf does not verify
    TA_DATES = "ta-dates"  # DANE-TA matched, but a certificate of the path is out of date
    NO_CHAIN = "no-chain"  # no certificate was read (no TLS)


@dataclass(frozen=True, slots=True)
class ChainMatch:
    """How the served chain fares against a TLSA RRset (RFC 7672 §3.1)."""

    ok: bool
    failure: MatchFailure
    detail: str
    matched: tuple[str, ...]  # the records (presentation form) that matched
    unmatched: tuple[str, ...]  # usable records that match nothing in the served chain


def _load(chain: Sequence[bytes]) -> list[x509.Certificate | None]:
    return [_certificate(der) for der in chain]


@functools.lru_cache(maxsize=256)
def _certificate(der: bytes) -> x509.Certificate | None:
    """``der`` parsed (None if it does not parse); cached, as ``_spki``: the domains of a run
    that share an MX host match its one chain (a ``Certificate`` is immutable)."""
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _names(cert: x509.Certificate) -> list[str]:
    """DNS names of a certificate: SAN dNSName, else the subject CN (RFC 7672 §3.2.3)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except (x509.ExtensionNotFound, ValueError):
        names = []
    if names:
        return [n.lower().rstrip(".") for n in names]
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return [str(cn.value).lower().rstrip(".") for cn in cns]


def name_matches(pattern: str, reference: str) -> bool:
    """RFC 7672 §3.2.3: exact, or a wildcard that is the whole first label, for one label."""
    if pattern == reference:
        return True
    if pattern.startswith("*.") and "." in reference:
        return reference.split(".", 1)[1] == pattern[2:] and "*" not in pattern[2:]
    return False


def _matches(record: TlsaRecord, der: bytes) -> bool:
    try:
        return association(der, record.selector, record.matching_type) == record.data
    except ValueError:
        return False


def _path_ok(certs: list[x509.Certificate | None], anchor: int, now: datetime) -> str:
    """ "" when each certificate from the leaf up to ``anchor`` is issued by the next and
    valid at ``now``; else why not (RFC 7672 §3.1.2: DANE-TA validates the path)."""
    from cryptography.exceptions import InvalidSignature

    for index in range(anchor + 1):
        cert = certs[index]
        if cert is None:
            return f"certificate {index} of the chain cannot be parsed"
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"{MatchFailure.TA_DATES}:certificate {index} is not valid now"
        if index == anchor:
            break
        issuer = certs[index + 1]
        if issuer is None:
            return f"certificate {index + 1} of the chain cannot be parsed"
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            return f"certificate {index} is not issued by certificate {index + 1} ({exc})"
    return ""


def match_chain(
    records: Sequence[TlsaRecord],
    chain: Sequence[bytes],
    *,
    references: Sequence[str],
    now: datetime,
) -> ChainMatch:
    """Match ``chain`` (leaf first, as served) against the usable records (RFC 7672 §3.1).

    DANE-EE(3): the leaf alone, no name or date check (§3.1.1). DANE-TA(2): a certificate of
    the chain above the leaf (or the leaf, self-issued) is the anchor; the path from it to the
    leaf must verify and be in date, and the leaf must name one of ``references`` (§3.1.2,
    §3.2.2). Records not in ``effective_records`` are never used.
    """
    effective = effective_records(records)
    if not chain:
        return ChainMatch(False, MatchFailure.NO_CHAIN, "no certificate was read", (), ())
    loaded: list[list[x509.Certificate | None]] = []  # parsed once, and only for DANE-TA

    def certs_of() -> list[x509.Certificate | None]:
        if not loaded:
            loaded.append(_load(chain))
        return loaded[0]

    matched: list[str] = []
    failure, detail = MatchFailure.NO_MATCH, "no usable TLSA record matches the served chain"
    for record in effective:
        if record.usage == Usage.DANE_EE:
            if _matches(record, chain[0]):
                matched.append(record.to_text())
            continue
        index = next((i for i, der in enumerate(chain) if _matches(record, der)), None)
        certs = certs_of() if index is not None else []
        if index is None and (record.selector, record.matching_type) == (0, 0):
            # "2 0 0" holds the whole TA certificate: a server may leave it out of the chain
            # (RFC 7671 §5.2.2), so the path is built to the record's own certificate.
            certs = [*certs_of(), *_load([record.data])]
            index = len(certs) - 1
        if index is None:
            continue
        problem = _ta_problem(certs, index, references, now)
        if problem is None:
            matched.append(record.to_text())
        else:
            failure, detail = problem
    unmatched = [
        r.to_text()
        for r in effective
        if r.to_text() not in matched and not any(_matches(r, der) for der in chain)
    ]
    if matched:
        return ChainMatch(True, MatchFailure.NONE, "", tuple(matched), tuple(unmatched))
    ta_records = [r for r in effective if r.usage == Usage.DANE_TA]
    if failure is MatchFailure.NO_MATCH and ta_records and len(ta_records) == len(effective):
        failure = MatchFailure.TA_NOT_SENT
        detail = "no certificate the server sent matches the DANE-TA record(s)"
    return ChainMatch(False, failure, detail, (), tuple(unmatched))


def _ta_problem(
    certs: list[x509.Certificate | None], index: int, references: Sequence[str], now: datetime
) -> tuple[MatchFailure, str] | None:
    """Why a DANE-TA match at ``certs[index]`` does not authenticate the leaf; None if it does."""
    problem = _path_ok(certs, index, now)
    if problem.startswith("ta-dates:"):
        return MatchFailure.TA_DATES, problem.removeprefix("ta-dates:")
    if problem:
        return MatchFailure.TA_PATH, problem
    leaf = certs[0]
    if leaf is None or not any(name_matches(n, ref) for n in _names(leaf) for ref in references):
        names = ", ".join(_names(leaf)) if leaf is not None else "none"
        return MatchFailure.TA_NAME, f"the certificate names {names}, not {' or '.join(references)}"
    return None


def leaf_not_after(chain: Sequence[bytes]) -> datetime | None:
    certs = _load(chain[:1])
    return certs[0].not_valid_after_utc if certs and certs[0] is not None else None
