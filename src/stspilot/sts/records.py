"""The ``_mta-sts`` and ``_smtp._tls`` TXT records: selection, parsing, formatting, the policy id.

Pure core: no I/O, no clock. Grammar: RFC 8461 §3.1 (checklist A2.*) and RFC 8460 §3 (B2.*).

Selection (RFC 8461 §3.1, RFC 8460 §3): each record's character-strings are joined with nothing
in between; records whose bytes do not begin with the version are dropped; exactly one must be
left, else the domain has no policy (MTA-STS) or does not do TLS-RPT.

Erratum 6285 (checklist E.2): the prose says "records that do not begin with ``v=STSv1;``" but
the ABNF delimiter is ``*WSP ";" *WSP``, so ``v=STSv1 ;`` is grammatical. We are lenient when
filtering and strict when validating: a record is a candidate when it begins with the exact,
case-sensitive version followed by WSP, ``;`` or the end of the record; the candidate is then
validated against the ABNF as written, which accepts ``v=STSv1 ; id=1`` and rejects
``v=STSv1`` alone (no ``id``). ``v=STSv12;...`` is not a candidate at all. The same rule holds
for ``v=TLSRPTv1``.

Tolerated, not in the grammar: whitespace after the last field without a closing ``;``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from stspilot.errors import ConfigError, RecordError
from stspilot.findings import Note

# RFC 8461 §3.1 / RFC 8460 §3: sts-ext-name, sts-ext-value (also tlsrpt-ext-*), sts-id.
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_WSP = " \t"
_PRINTABLE = re.compile(r"[\x20-\x7e\t]*")


@dataclass(frozen=True, slots=True)
class _Kind:
    version: str
    missing: str
    not_version: str
    multiple: str
    syntax: str
    split: str


_STS = _Kind(
    "v=STSv1",
    "sts.txt.missing",
    "sts.txt.not-sts",
    "sts.txt.multiple",
    "sts.txt.syntax",
    "sts.txt.split",
)
_TLSRPT = _Kind(
    "v=TLSRPTv1",
    "tlsrpt.missing",
    "tlsrpt.not-tlsrpt",
    "tlsrpt.multiple",
    "tlsrpt.syntax",
    "tlsrpt.split",
)

# A host name as RFC 5321 Domain (LDH labels); used for rua mailto: and https: hosts.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
# RFC 3986 characters minus "," "!" ";" which RFC 8460 §3 requires percent-encoded.
_URI_CHARS = r"(?:[A-Za-z0-9\-._~:/?#\[\]@$&'()*+=]|%[0-9A-Fa-f]{2})"
_LOCAL = r"(?:[A-Za-z0-9\-._~$&'()*+=]|%[0-9A-Fa-f]{2})+"
_MAILTO = re.compile(rf"(?i:mailto):{_LOCAL}@({_DOMAIN})(?:\?{_URI_CHARS}*)?")
_HTTPS = re.compile(rf"(?i:https)://({_DOMAIN})(?::[0-9]{{1,5}})?(?:[/?#]{_URI_CHARS}*)?")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")

Extensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StsRecord:
    """A valid ``_mta-sts`` record: its ``id`` and the extension fields it carried."""

    id: str
    extensions: Extensions = ()


@dataclass(frozen=True, slots=True)
class TlsRptRecord:
    """A valid ``_smtp._tls`` record: the report URIs and the extension fields."""

    rua: tuple[str, ...]
    extensions: Extensions = ()


R = TypeVar("R", StsRecord, TlsRptRecord)


@dataclass(frozen=True, slots=True)
class RecordSelection(Generic[R]):
    """What a sender makes of the TXT answer at ``_mta-sts`` or ``_smtp._tls``.

    ``record`` is set when exactly one valid record was selected. Otherwise ``error_code``
    names the finding (``sts.txt.missing``, ``sts.txt.multiple``, ``sts.txt.id.invalid``, ...)
    and ``error`` explains it. ``text`` is the joined text of the single candidate, if any.
    """

    record: R | None
    text: str | None = None
    error_code: str | None = None
    error: str = ""
    notes: tuple[Note, ...] = ()
    texts: tuple[str, ...] = field(default=())  # every record at the name, joined, for display

    @property
    def ok(self) -> bool:
        return self.record is not None


def _is_candidate(data: bytes, version: str) -> bool:
    """Erratum 6285: the version, then WSP, ";" or the end (see the module docstring)."""
    prefix = version.encode("ascii")
    if not data.startswith(prefix):
        return False
    rest = data[len(prefix) :]
    return rest == b"" or rest[:1] in (b";", b" ", b"\t")


def _display(data: bytes) -> str:
    return data.decode("ascii", errors="backslashreplace")


def _fields(text: str, kind: _Kind) -> list[tuple[str, str]]:
    """Split a record into (name, value) fields after the version; raise on bad structure."""
    if not _is_candidate(text.encode("utf-8", "surrogatepass"), kind.version):
        raise RecordError(kind.not_version, f"the record does not begin with {kind.version}")
    if _PRINTABLE.fullmatch(text) is None:
        raise RecordError(kind.syntax, "the record holds non-ASCII or control characters")
    body = text.rstrip(_WSP)
    head, delim, rest = body.partition(";")
    if head.rstrip(_WSP) != kind.version:
        raise RecordError(kind.syntax, f"{kind.version} must be followed by ';'")
    if not delim:
        return []
    pieces = [p.strip(_WSP) for p in rest.split(";")]
    if pieces[-1] == "":
        pieces.pop()  # the optional trailing delimiter
    fields: list[tuple[str, str]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        if not eq or not _EXT_NAME.fullmatch(name):
            shown = piece or "(empty)"
            raise RecordError(kind.syntax, f"{shown!r} is not a name=value field")
        fields.append((name, value))
    return fields


def _parse_sts(text: str) -> tuple[StsRecord, tuple[Note, ...]]:
    notes: list[Note] = []
    record_id: str | None = None
    extensions: list[tuple[str, str]] = []
    seen: set[str] = {"v"}
    for name, value in _fields(text, _STS):
        if name in seen:
            # RFC 8461 §3.2: a repeated field other than mx: the first one counts. It must still
            # be grammatical (as an sts-extension) for the record to be valid (§3.1).
            if not _EXT_VALUE.fullmatch(value):
                raise RecordError("sts.txt.syntax", f"field {name}={value!r} has an invalid value")
            notes.append(Note("sts.txt.duplicate-field", f"{name}={value} repeats; ignored", name))
            continue
        seen.add(name)
        if name == "id":
            if not _ID.fullmatch(value):
                raise RecordError(
                    "sts.txt.id.invalid", f"id={value!r} is not 1 to 32 letters and digits"
                )
            record_id = value
        elif not _EXT_VALUE.fullmatch(value):
            raise RecordError("sts.txt.syntax", f"field {name}={value!r} has an invalid value")
        else:
            extensions.append((name, value))
            notes.append(Note("sts.txt.extension", f"unknown field {name}={value} ignored", name))
    if record_id is None:
        raise RecordError("sts.txt.id.missing", "the record has no id field")
    return StsRecord(record_id, tuple(extensions)), tuple(notes)


def _check_uri(uri: str) -> None:
    scheme = _SCHEME.match(uri)
    if scheme is None:
        raise RecordError("tlsrpt.rua.invalid", f"{uri!r} is not a URI")
    name = scheme.group(1).lower()
    if name not in ("mailto", "https"):
        raise RecordError(
            "tlsrpt.rua.scheme", f"{uri!r} uses {name}:, only mailto: and https: work"
        )
    pattern = _MAILTO if name == "mailto" else _HTTPS
    if pattern.fullmatch(uri) is None:
        extra = " (',', '!' and ';' must be percent-encoded)" if any(c in uri for c in ",!") else ""
        raise RecordError("tlsrpt.rua.invalid", f"{uri!r} is not a valid {name}: URI{extra}")


def _rua_uris(value: str) -> tuple[str, ...]:
    """RFC 8460 §3: ``%s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)``.

    WSP may surround the commas, never follow ``rua=`` directly (B2.4).
    """
    if value[:1] in (" ", "\t"):
        raise RecordError("tlsrpt.rua.invalid", f"rua={value!r}: no space after 'rua='")
    uris = tuple(u.strip(_WSP) for u in value.split(","))
    for uri in uris:
        _check_uri(uri)
    return uris


def _parse_tlsrpt(text: str) -> tuple[TlsRptRecord, tuple[Note, ...]]:
    notes: list[Note] = []
    rua: tuple[str, ...] | None = None
    extensions: list[tuple[str, str]] = []
    seen: set[str] = {"v"}
    for name, value in _fields(text, _TLSRPT):
        if name in seen:
            # The first one counts; a repeat must still be a grammatical rua or extension.
            if not _EXT_VALUE.fullmatch(value):
                if name != "rua":
                    raise RecordError(
                        "tlsrpt.syntax", f"field {name}={value!r} has an invalid value"
                    )
                _rua_uris(value)
            notes.append(Note("tlsrpt.duplicate-field", f"{name}={value} repeats; ignored", name))
            continue
        seen.add(name)
        if name == "rua":
            rua = _rua_uris(value)
        elif not _EXT_VALUE.fullmatch(value):
            raise RecordError("tlsrpt.syntax", f"field {name}={value!r} has an invalid value")
        else:
            extensions.append((name, value))
            notes.append(Note("tlsrpt.extension", f"unknown field {name}={value} ignored", name))
    if rua is None:
        raise RecordError("tlsrpt.rua.missing", "the record has no rua field")
    return TlsRptRecord(rua, tuple(extensions)), tuple(notes)


def parse_sts_record(text: str) -> StsRecord:
    """Parse one joined ``_mta-sts`` record; ``RecordError`` codes are ``sts.txt.*`` findings."""
    return _parse_sts(text)[0]


def record_id(text: str | None) -> str:
    """The ``id`` of a ``_mta-sts`` record as a sender reads it; "" when absent or unusable."""
    try:
        return parse_sts_record(text).id if text else ""
    except RecordError:
        return ""


def record_rua(text: str | None) -> tuple[str, ...]:
    """The ``rua`` URIs of a ``_smtp._tls`` record; () when absent or unusable."""
    try:
        return parse_tlsrpt_record(text).rua if text else ()
    except RecordError:
        return ()


def parse_tlsrpt_record(text: str) -> TlsRptRecord:
    """Parse one joined ``_smtp._tls`` record; ``RecordError`` codes are ``tlsrpt.*`` findings."""
    return _parse_tlsrpt(text)[0]


def new_policy_id(now: datetime, *, previous: str = "", avoid: Collection[str] = ()) -> str:
    """A fresh TXT ``id`` from the UTC time: 14 digits, e.g. ``20261122131200``.

    RFC 8461 §3.1 allows 1-32 letters and digits, so no ``T``/``Z`` separators are needed and
    none of ``-:.`` may appear (checklist A2.5). Ids are only compared for equality (A2.6): when
    the second-resolution id equals ``previous`` (or one in ``avoid``: other plans printed at
    the same time) the microseconds are added, then a letter, so every id handed out differs.
    """
    if now.tzinfo is None:
        raise ConfigError("now must be an aware datetime")
    taken = {previous, *avoid}
    utc = now.astimezone(UTC)
    seconds, micro = utc.strftime("%Y%m%d%H%M%S"), utc.strftime("%Y%m%d%H%M%S%f")
    for candidate in (seconds, micro, *(micro + c for c in "abcdefghijklmnopqrstuvwxyz")):
        if candidate not in taken:
            return candidate
    raise ConfigError("no fresh policy id left for this moment")  # 28 ids taken in 1 µs


def format_sts_record(record: StsRecord) -> str:
    """The TXT value to publish, e.g. ``v=STSv1; id=20261122T131200``."""
    parts = [_STS.version, f"id={record.id}", *(f"{k}={v}" for k, v in record.extensions)]
    return "; ".join(parts)


def format_tlsrpt_record(record: TlsRptRecord) -> str:
    """The TXT value to publish, e.g. ``v=TLSRPTv1; rua=mailto:tlsrpt@example.com``."""
    parts = [
        _TLSRPT.version,
        "rua=" + ",".join(record.rua),
        *(f"{k}={v}" for k, v in record.extensions),
    ]
    return "; ".join(parts)


def _select(
    records: Sequence[tuple[bytes, ...]],
    kind: _Kind,
    parse: Callable[[str], tuple[R, tuple[Note, ...]]],
) -> RecordSelection[R]:
    joined = [b"".join(strings) for strings in records]  # RFC 8461 §3.1, RFC 8460 §3: no spaces
    texts = tuple(_display(data) for data in joined)
    if not joined:
        return RecordSelection(None, error_code=kind.missing, error="no TXT record", texts=texts)
    candidates = [i for i, data in enumerate(joined) if _is_candidate(data, kind.version)]
    if not candidates:
        message = f"{len(joined)} TXT record(s), none beginning with {kind.version}"
        return RecordSelection(None, error_code=kind.not_version, error=message, texts=texts)
    if len(candidates) > 1:
        message = f"{len(candidates)} records begin with {kind.version}; senders ignore them all"
        return RecordSelection(None, error_code=kind.multiple, error=message, texts=texts)
    index = candidates[0]
    text = texts[index]
    notes: tuple[Note, ...] = ()
    if len(records[index]) > 1:
        # RFC 8461 §3.1 / RFC 8460 §3: legal, joined with nothing in between.
        notes = (Note(kind.split, f"the record is split into {len(records[index])} strings"),)
    if not joined[index].isascii():
        message = "the record holds non-ASCII bytes"
        return RecordSelection(None, text, kind.syntax, message, notes, texts)
    try:
        parsed = parse(text)
    except RecordError as error:
        return RecordSelection(None, text, error.code, error.message, notes, texts)
    return RecordSelection(parsed[0], text, None, "", notes + parsed[1], texts)


def select_sts_record(records: Sequence[tuple[bytes, ...]]) -> RecordSelection[StsRecord]:
    """RFC 8461 §3.1 selection over every TXT record at ``_mta-sts.<domain>``."""
    return _select(records, _STS, _parse_sts)


def select_tlsrpt_record(records: Sequence[tuple[bytes, ...]]) -> RecordSelection[TlsRptRecord]:
    """RFC 8460 §3 selection over every TXT record at ``_smtp._tls.<domain>``."""
    return _select_tlsrpt(tuple(records))


# A check selects a domain's TLS-RPT record twice: for the report domains to look up, then
# to judge it. The selection is immutable (frozen, tuples) and a function of the records.
@functools.lru_cache(maxsize=1024)
def _select_tlsrpt(records: tuple[tuple[bytes, ...], ...]) -> RecordSelection[TlsRptRecord]:
    return _select(records, _TLSRPT, _parse_tlsrpt)


def rua_domains(record: TlsRptRecord) -> tuple[str, ...]:
    """Lower-case domains of the record's ``mailto:`` URIs, in order, without repeats."""
    found: list[str] = []
    for uri in record.rua:
        match = _MAILTO.fullmatch(uri)
        if match and match.group(1).lower() not in found:
            found.append(match.group(1).lower())
    return tuple(found)
