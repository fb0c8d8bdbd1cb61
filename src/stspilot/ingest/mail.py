"""TLS-RPT report e-mails (RFC 8460 §5.3): the envelope, the report parts, and how they agree.

No network here: a signature's presence, its ``d=`` and its ``h=`` list are recorded as
authenticity signals, and the outcome of a real verification (``ingest/dkim.py``, opt-in) is
carried as ``Envelope.dkim``. The body always wins over the envelope (RFC 8460 §5.6).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, ClassVar, Protocol

from stspilot.errors import LimitExceeded
from stspilot.ingest.mime import Headers, flat_leaves, remember
from stspilot.sts.names import fold_name
from stspilot.tlsrpt.reports import Deviation, TlsReport, fast_pickle
from stspilot.tlsrpt.schema import DEVIATIONS, Limits

# RFC 8460 §6.4, §6.5: the registered report media types.
REPORT_TYPES = frozenset({"application/tlsrpt+gzip", "application/tlsrpt+json"})
# What senders actually put on report parts besides those (stalwart's application/tlsrpt, generic
# gzip and octet-stream with a .json.gz name): taken with a ``mail.type.misdeclared`` deviation.
LOOSE_TYPES = frozenset(
    {
        "application/tlsrpt",
        "application/gzip",
        "application/x-gzip",
        "application/x-gzip-compressed",
        "application/gzip-compressed",
        "application/json",
        "application/octet-stream",
        "text/json",
    }
)
REPORT_SUFFIXES = (".json.gz", ".json", ".gz")
# The deviation of a signature that was verified and failed (only with verification on).
DKIM_FAIL = DEVIATIONS["mail.dkim.fail"]

_SUBJECT_DOMAIN = re.compile(r"\bDomain:\s*([^\s<>]+)", re.IGNORECASE)
_SUBJECT_SUBMITTER = re.compile(r"\bSubmitter:\s*([^\s<>]+)", re.IGNORECASE)
_SUBJECT_REPORT_ID = re.compile(r"\bReport-ID:\s*<?([^\s<>]+)>?", re.IGNORECASE)
# Where each Subject keyword starts (ASCII subjects: the regex then searches from there).
_SUBJECT_KEYS = ((_SUBJECT_DOMAIN, "domain:"), (_SUBJECT_SUBMITTER, "submitter:"),
                 (_SUBJECT_REPORT_ID, "report-id:"))  # fmt: skip
_NOT_ALNUM = re.compile(r"[^0-9a-z]")
# "addr@domain" or "Display Name <addr@domain>" with nothing parseaddr would rewrite.
_SIMPLE_FROM = re.compile(r'(?:[^<>"(),;:@\\]*<)?([^\s<>"(),;:@\\\[\]]+@[^\s<>"(),;:@\\\[\]]+)>?')


class HeaderSource(Protocol):
    """Header look-ups as ``email.message.Message`` offers them (``mime.Headers`` too)."""

    def get(self, name: str, failobj: Any = None) -> Any: ...

    def get_all(self, name: str, failobj: Any = None) -> Any: ...


@fast_pickle
@dataclass(frozen=True, slots=True)
class DkimVerdict:
    """What verifying a report mail's DKIM signature(s) found (RFC 6376 §6, RFC 8460 §3).

    ``result`` is ``pass``, ``fail`` (``reason`` says why), ``temperror`` (the key could not be
    fetched: DNS timeout or failure) or ``none`` (no signature). ``domain`` and ``selector`` are
    the ``d=`` and ``s=`` of the signature the result is about; ``aligned`` whether ``d=`` is
    the reporter's domain (``dkim.is_aligned``)."""

    result: str
    domain: str | None = None
    selector: str | None = None
    aligned: bool = False
    reason: str = ""


DKIM_RESULTS = ("pass", "fail", "temperror", "none")


@fast_pickle
@dataclass(frozen=True, slots=True)
class Envelope:
    """What the report mail's headers claim (RFC 8460 §5.3); compared with the body later."""

    tls_report_domain: str | None
    tls_report_submitter: str | None
    subject: str
    subject_domain: str | None
    subject_submitter: str | None
    subject_report_id: str | None  # without the angle brackets
    message_id: str | None
    from_addr: str | None
    date: datetime | None  # aware, UTC
    dkim_signed: bool
    dkim_domains: tuple[str, ...]
    dkim_covers_tlsrpt_headers: bool
    # The verification's outcome; None (and no "dkim" member in the stored JSON) when
    # verification was not asked for.
    dkim: DkimVerdict | None = None

    # Members the store's JSON leaves out while they are None (``store.rows.envelope_json``).
    JSON_OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"dkim"})


@fast_pickle
@dataclass(frozen=True, slots=True)
class ReportPart:
    """One MIME part that carries (or may carry) a report."""

    label: str
    payload: bytes  # transfer-decoded, still gzip or JSON
    media_type: str  # as declared, lower case
    declared: bool  # media type is one of REPORT_TYPES


def header_text(msg: HeaderSource, name: str) -> str | None:
    """A header unfolded, RFC 2047-decoded and whitespace-collapsed; None when absent."""
    value = msg.get(name)
    if value is None:
        return None
    text = str(value)
    if "=?" in text:  # an RFC 2047 encoded-word, maybe
        # Keep the raw header when an encoded-word is odd: it must not lose the message.
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            text = str(make_header(decode_header(text)))
    # Runs of white space to one space, none at the ends (str.split's white space is \s).
    return " ".join(text.split())


_FROM_MEMO: dict[str, str | None] = {}  # report senders repeat their From


def _from_address(text: str) -> str | None:
    try:
        return _FROM_MEMO[text]
    except KeyError:
        pass
    simple = _SIMPLE_FROM.fullmatch(text)
    if simple is not None and text.count("<") == text.count(">") <= 1 and ".." not in text:
        addr: str | None = simple.group(1)
    else:
        addr = parseaddr(text)[1] or None
    remember(_FROM_MEMO, text, addr)
    return addr


def _subject_search(subject: str) -> list[str | None]:
    """Group 1 of each Subject keyword pattern's first match (None where none matches)."""
    low = subject.lower() if subject.isascii() else None
    found: list[str | None] = []
    for pattern, key in _SUBJECT_KEYS:
        if low is None:
            match = pattern.search(subject)
        else:
            # A match starts at the keyword (ASCII: IGNORECASE is lower()), so searching from
            # its first occurrence finds the same match (\b still sees the character before).
            at = low.find(key)
            match = pattern.search(subject, at) if at >= 0 else None
        found.append(match.group(1) if match else None)
    return found


def read_envelope(msg: HeaderSource) -> Envelope:
    subject = header_text(msg, "Subject") or ""
    domain, submitter, report_id = _subject_search(subject)
    from_text = header_text(msg, "From")
    from_addr = _from_address(from_text) if from_text else None
    signatures = [_dkim_dh(str(v)) for v in msg.get_all("DKIM-Signature") or ()]
    dkim_domains = tuple(dict.fromkeys(d.lower() for d, _ in signatures if d))
    covers = any(_covers_tlsrpt(h or "") for _, h in signatures)
    return Envelope(  # by position: a third cheaper than by keyword (fields in order)
        _domain(header_text(msg, "TLS-Report-Domain")),  # tls_report_domain
        _domain(header_text(msg, "TLS-Report-Submitter")),  # tls_report_submitter
        subject,
        _domain(domain),  # subject_domain
        _domain(submitter),  # subject_submitter
        report_id,  # subject_report_id
        (header_text(msg, "Message-ID") or "").strip("<> ") or None,  # message_id
        from_addr,
        _date(header_text(msg, "Date")),
        bool(signatures),  # dkim_signed
        dkim_domains,
        covers,  # dkim_covers_tlsrpt_headers
    )


def report_parts(msg: Message, limits: Limits) -> list[ReportPart]:
    """The parts that look like reports: by media type AND file name AND content (§5.3)."""
    found: list[ReportPart] = []
    for index, part in enumerate(msg.walk()):
        if index >= limits.max_mime_parts:
            raise LimitExceeded(
                "report.limit.mime-parts", f"message has over {limits.max_mime_parts} parts"
            )
        if not part.is_multipart():
            picked = _pick(index, part, limits)
            if picked is not None:
                found.append(picked)
    return found


def fast_report_parts(raw: bytes, limits: Limits) -> tuple[Headers, list[ReportPart]] | None:
    """The top headers and report parts of the usual report mail (one flat multipart, ASCII
    headers) read by ``mime.flat_leaves`` without the stdlib parser (most of the cost of a
    mailed report); ``None`` for anything else, and the caller walks the message with
    ``email`` instead."""
    cut = _blank_line(raw)
    if cut < 0:
        return None
    flat = flat_leaves(raw, cut, limits.max_mime_parts, _max_encoded(limits))
    if flat is None:
        return None
    top, leaves = flat
    found = []
    for index, (ctype, filename, encoded_size, payload) in enumerate(leaves, start=1):
        # numbered as email's walk() would
        picked = _choose(index, ctype, filename, encoded_size, payload, limits)
        if picked is not None:
            found.append(picked)
    return top, found


def _pick(index: int, part: Message, limits: Limits) -> ReportPart | None:
    ctype = part.get_content_type()
    try:
        filename = (part.get_filename() or "").strip()
    except (ValueError, LookupError, UnicodeError):
        filename = ""
    encoded = part.get_payload()
    if not isinstance(encoded, str):
        return None

    def decode() -> bytes | None:
        payload = part.get_payload(decode=True)
        return payload if isinstance(payload, bytes) else None

    return _choose(index, ctype, filename, len(encoded), decode, limits)


def _max_encoded(limits: Limits) -> int:
    # base64 is 4/3 of the payload; refuse before decoding anything larger than allowed.
    return limits.max_compressed_bytes * 4 // 3 + 4096


def _choose(
    index: int,
    ctype: str,
    filename: str,
    encoded_size: int,
    decode: Callable[[], bytes | None] | bytes,
    limits: Limits,
) -> ReportPart | None:
    """Whether a part carries a report: by media type AND file name AND content (§5.3).
    ``decode``: the transfer-decoded payload, or what decodes it when it is wanted."""
    declared = ctype in REPORT_TYPES
    named = filename.lower().endswith(REPORT_SUFFIXES)
    by_type_or_name = declared or named or ctype in LOOSE_TYPES
    if not (by_type_or_name or ctype.startswith("text/")):
        return None
    if encoded_size > _max_encoded(limits):
        raise LimitExceeded(
            "report.limit.compressed-bytes",
            f"report part is over {limits.max_compressed_bytes} bytes",
        )
    payload = decode if isinstance(decode, bytes) else decode()
    if payload is None:
        return None
    if not by_type_or_name:
        # A text/* part without a report name: only a JSON report body counts (a mislabelled
        # +json part), never the human-readable first part (§5.3).
        if not (payload.lstrip()[:1] == b"{" and b'"policies"' in payload):
            return None
    elif not (declared or named) and not (
        payload[:2] == b"\x1f\x8b" or payload.lstrip()[:1] == b"{"
    ):
        return None  # an octet-stream that is neither gzip nor JSON is someone else's file
    return ReportPart(_label(index, ctype, filename), payload, ctype, declared)


def _blank_line(raw: bytes) -> int:
    """Where the body starts (after the first empty line), or -1."""
    lf = raw.find(b"\n\n")
    if lf < 0:
        crlf = raw.find(b"\r\n\r\n")
        return crlf + 4 if crlf >= 0 else -1
    if raw.find(b"\r", 0, lf) < 0:
        return lf + 2  # no CR before it at all (one memchr): no CRLF blank line either
    # A CRLF blank line counts only before the LF one: search no further.
    crlf = raw.find(b"\r\n\r\n", 0, lf + 3)
    return crlf + 4 if crlf >= 0 else lf + 2


def envelope_deviations(report: TlsReport, envelope: Envelope) -> tuple[Deviation, ...]:
    """Where the headers disagree with the body, and what DKIM looks like. Body wins (§5.6)."""
    out: list[Deviation] = []

    def add(code: str, where: str, detail: str = "") -> None:
        what = DEVIATIONS[code].what
        out.append(Deviation(code, where, f"{what}: {detail}" if detail else what))

    if envelope.tls_report_domain is None or envelope.tls_report_submitter is None:
        add(
            "mail.headers.missing",
            "TLS-Report-Domain" if envelope.tls_report_domain is None else "TLS-Report-Submitter",
        )
    if envelope.subject_domain is None or envelope.subject_submitter is None:
        add("mail.subject.nonstandard", "Subject", repr(envelope.subject[:120]))

    domains = {d for d in report.policy_domains if d}
    for where, claimed in (
        ("TLS-Report-Domain", envelope.tls_report_domain),
        ("Subject", envelope.subject_domain),
    ):
        if claimed and domains and claimed not in domains:
            add("mail.domain.mismatch", where, f"{claimed} vs {', '.join(sorted(domains))}")

    contact = report.contact_domain
    for where, claimed in (
        ("TLS-Report-Submitter", envelope.tls_report_submitter),
        ("Subject", envelope.subject_submitter),
    ):
        if claimed and contact and claimed != contact:
            add("mail.submitter.mismatch", where, f"{claimed} vs contact-info {contact}")

    rid = envelope.subject_report_id
    if rid is not None:
        if "@" not in rid:
            add("report-id.no-at", "Subject", repr(rid))
        if not _same_report_id(rid, report.report_id):
            add("mail.report-id.mismatch", "Subject", f"{rid} vs {report.report_id}")

    verdict = envelope.dkim
    if verdict is not None and verdict.result == "fail":
        # Tolerate and record: the report is stored, the failure is on it (RFC 8460 §3 lets a
        # receiver ignore such reports; the summary counts them apart instead).
        where = f"DKIM-Signature d={verdict.domain} s={verdict.selector}"
        text = DKIM_FAIL.what + (f": {verdict.reason}" if verdict.reason else "")
        out.append(Deviation("mail.dkim.fail", where, text))
    if not envelope.dkim_signed:
        add("mail.dkim.missing", "DKIM-Signature")
    else:
        reporter = envelope.tls_report_submitter or envelope.subject_submitter or contact
        if reporter and not any(_aligned(d, reporter) for d in envelope.dkim_domains):
            add(
                "mail.dkim.domain-mismatch",
                "DKIM-Signature",
                f"d={','.join(envelope.dkim_domains)} vs {reporter}",
            )
        if not envelope.dkim_covers_tlsrpt_headers:
            add("mail.dkim.headers-unsigned", "DKIM-Signature")
    return tuple(out)


def _same_report_id(subject_id: str, body_id: str) -> bool:
    """Compare leniently: Google writes ``2024-09-03T00:00:00Z_example.com`` in the body and
    ``<2024.09.03T00.00.00Z+example.com@google.com>`` in the Subject (checklist D.5)."""
    body_norm = _alnum(body_id)
    if _alnum(subject_id) == body_norm:
        return True
    if "@" in subject_id and "@" not in body_id:
        return _alnum(subject_id.rpartition("@")[0]) == body_norm
    return False


# Every byte but 0-9 and a-z: deleted by bytes.translate.
_NOT_ALNUM_BYTES = bytes(c for c in range(256) if not (48 <= c <= 57 or 97 <= c <= 122))


def _alnum(text: str) -> bytes:
    """The digits and lower-case ASCII letters of ``text`` lowered (``_NOT_ALNUM``)."""
    if text.isascii():
        return text.lower().encode("ascii").translate(None, _NOT_ALNUM_BYTES)
    return _NOT_ALNUM.sub("", text.lower()).encode("ascii")


def _aligned(a: str, b: str) -> bool:
    """Same domain, or one is a subdomain of the other (relaxed alignment)."""
    a, b = fold_name(a), fold_name(b)
    return a == b or a.endswith("." + b) or b.endswith("." + a)


# The d= and h= tags of a DKIM-Signature: the items between semicolons whose name, white
# space removed, is d, D, h or H (a value runs to the next semicolon).
_DKIM_DH = re.compile(r";\s*([dDhH])\s*=([^;]*)")


def _dkim_dh(value: str) -> tuple[str | None, str | None]:
    """The d= and h= tags (white space removed; None when absent) of a DKIM-Signature, as a
    dict of all its tags would have them, built item by item with ``if key not in tags:
    tags[key.lower()] = value``: a lower-case name counts the first time, an upper-case one
    every time. Found without splitting out every tag (the b= signature is most of the
    text)."""
    d: str | None = None
    h: str | None = None
    for match in _DKIM_DH.finditer(";" + value):
        key, val = match.groups()
        if key == "d":
            if d is None:
                d = "".join(val.split())
        elif key == "D":
            d = "".join(val.split())
        elif key == "h":
            if h is None:
                h = "".join(val.split())
        else:
            h = "".join(val.split())
    return d, h


_COVERS: dict[str, bool] = {}  # h= lists repeat per sender


def _covers_tlsrpt(h: str) -> bool:
    """Whether a DKIM h= list signs both TLS-Report headers."""
    try:
        return _COVERS[h]
    except KeyError:
        pass
    covers = {"tls-report-domain", "tls-report-submitter"} <= {
        name.strip().lower() for name in h.split(":")
    }
    remember(_COVERS, h, covers)
    return covers


def _domain(value: str | None) -> str | None:
    if not value:
        return None
    return fold_name(value.strip().strip("<>")) or None


# The usual Date (RFC 5322 §3.3, whitespace collapsed): "Thu, 02 Jan 2025 03:39:59 +0000",
# maybe with a trailing comment, which parsedate ignores; anything else goes to email.utils.
_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?([0-9]{1,2}) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ((?:19|20)[0-9][0-9]) "
    r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]) ([+-])([01][0-9]|2[0-3])([0-5][0-9])(?: |\Z)"
)
_OFFSETS: dict[str, timedelta] = {}  # "+0200" -> what takes a local time to UTC
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    usual = _DATE.match(value)
    if usual is not None:
        day, month, year, hour, minute, second, sign, tz_hour, tz_minute = usual.groups()
        try:
            when = datetime(
                int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
                tzinfo=UTC,
            )  # fmt: skip
        except ValueError:
            pass  # 31 Feb and the like: email.utils decides (None, as it refuses them too)
        else:
            # What parsedate_to_datetime(...).astimezone(UTC) gives ("-0000": UTC as well).
            zone = sign + tz_hour + tz_minute
            offset = _OFFSETS.get(zone)
            if offset is None:  # at most 2 * 24 * 60 of them
                sign_ = -1 if sign == "+" else 1
                offset = _OFFSETS[zone] = timedelta(
                    hours=sign_ * int(tz_hour), minutes=sign_ * int(tz_minute)
                )
            return when + offset
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _label(index: int, ctype: str, filename: str) -> str:
    return f"part {index}: {filename or ctype}"
