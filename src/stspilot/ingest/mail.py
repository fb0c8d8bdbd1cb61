"""TLS-RPT report e-mails (RFC 8460 §5.3): the envelope, the report parts, and how they agree.

No network and no DKIM verification: a signature's presence, its ``d=`` and its ``h=`` list are
recorded as authenticity signals. The body always wins over the envelope (RFC 8460 §5.6).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any, Protocol

from stspilot.errors import LimitExceeded
from stspilot.ingest.mime import Headers, flat_multipart
from stspilot.report_schema import DEVIATIONS, Limits
from stspilot.reports import Deviation, TlsReport, fast_pickle

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

_SUBJECT_DOMAIN = re.compile(r"\bDomain:\s*([^\s<>]+)", re.IGNORECASE)
_SUBJECT_SUBMITTER = re.compile(r"\bSubmitter:\s*([^\s<>]+)", re.IGNORECASE)
_SUBJECT_REPORT_ID = re.compile(r"\bReport-ID:\s*<?([^\s<>]+)>?", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]")
# "addr@domain" or "Display Name <addr@domain>" with nothing parseaddr would rewrite.
_SIMPLE_FROM = re.compile(r'(?:[^<>"(),;:@\\]*<)?([^\s<>"(),;:@\\\[\]]+@[^\s<>"(),;:@\\\[\]]+)>?')


class HeaderSource(Protocol):
    """Header look-ups as ``email.message.Message`` offers them (``mime.Headers`` too)."""

    def get(self, name: str, failobj: Any = None) -> Any: ...

    def get_all(self, name: str, failobj: Any = None) -> Any: ...


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
    return _SPACES.sub(" ", text).strip()


def _from_address(text: str) -> str | None:
    simple = _SIMPLE_FROM.fullmatch(text)
    if simple is not None and text.count("<") == text.count(">") <= 1 and ".." not in text:
        return simple.group(1)
    return parseaddr(text)[1] or None


def read_envelope(msg: HeaderSource) -> Envelope:
    subject = header_text(msg, "Subject") or ""
    domain = _SUBJECT_DOMAIN.search(subject)
    submitter = _SUBJECT_SUBMITTER.search(subject)
    report_id = _SUBJECT_REPORT_ID.search(subject)
    from_text = header_text(msg, "From")
    from_addr = _from_address(from_text) if from_text else None
    signatures = [_dkim_tags(str(v)) for v in msg.get_all("DKIM-Signature") or ()]
    dkim_domains = tuple(dict.fromkeys(s["d"].lower() for s in signatures if s.get("d")))
    covers = any(
        {"tls-report-domain", "tls-report-submitter"}
        <= {h.strip().lower() for h in s.get("h", "").split(":")}
        for s in signatures
    )
    return Envelope(
        tls_report_domain=_domain(header_text(msg, "TLS-Report-Domain")),
        tls_report_submitter=_domain(header_text(msg, "TLS-Report-Submitter")),
        subject=subject,
        subject_domain=_domain(domain.group(1)) if domain else None,
        subject_submitter=_domain(submitter.group(1)) if submitter else None,
        subject_report_id=report_id.group(1) if report_id else None,
        message_id=(header_text(msg, "Message-ID") or "").strip("<> ") or None,
        from_addr=from_addr,
        date=_date(header_text(msg, "Date")),
        dkim_signed=bool(signatures),
        dkim_domains=dkim_domains,
        dkim_covers_tlsrpt_headers=covers,
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
    headers) read by ``mime.flat_multipart`` without the stdlib parser (most of the cost of a
    mailed report); ``None`` for anything else, and the caller walks the message with
    ``email`` instead."""
    cut = _blank_line(raw)
    if cut < 0:
        return None
    flat = flat_multipart(raw, cut, limits.max_mime_parts, _max_encoded(limits))
    if flat is None:
        return None
    top, leaves = flat
    found = []
    for index, leaf in enumerate(leaves, start=1):  # numbered as email's walk() would
        picked = _choose(
            index, leaf.content_type, leaf.filename, leaf.encoded_size, leaf.decoded, limits
        )
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
    decode: Callable[[], bytes | None],
    limits: Limits,
) -> ReportPart | None:
    """Whether a part carries a report: by media type AND file name AND content (§5.3)."""
    declared = ctype in REPORT_TYPES
    named = filename.lower().endswith(REPORT_SUFFIXES)
    if not (declared or named or ctype in LOOSE_TYPES or ctype.startswith("text/")):
        return None
    if encoded_size > _max_encoded(limits):
        raise LimitExceeded(
            "report.limit.compressed-bytes",
            f"report part is over {limits.max_compressed_bytes} bytes",
        )
    payload = decode()
    if payload is None:
        return None
    label = _label(index, ctype, filename)
    if not (declared or named or ctype in LOOSE_TYPES):
        # A text/* part without a report name: only a JSON report body counts (a mislabelled
        # +json part), never the human-readable first part (§5.3).
        head = payload.lstrip()[:4096]
        if not (head.startswith(b"{") and b'"policies"' in payload):
            return None
    elif not (payload[:2] == b"\x1f\x8b" or payload.lstrip()[:1] == b"{") and not (
        declared or named
    ):
        return None  # an octet-stream that is neither gzip nor JSON is someone else's file
    return ReportPart(label, payload, ctype, declared)


def _blank_line(raw: bytes) -> int:
    """Where the body starts (after the first empty line), or -1."""
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf + 2
    return crlf + 4 if crlf >= 0 else -1


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
    subject_norm = _NOT_ALNUM.sub("", subject_id.lower())
    body_norm = _NOT_ALNUM.sub("", body_id.lower())
    if subject_norm == body_norm:
        return True
    if "@" in subject_id and "@" not in body_id:
        return _NOT_ALNUM.sub("", subject_id.rpartition("@")[0].lower()) == body_norm
    return False


def _aligned(a: str, b: str) -> bool:
    """Same domain, or one is a subdomain of the other (relaxed alignment)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _dkim_tags(value: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in _SPACES.sub("", value).split(";"):
        key, sep, val = item.partition("=")
        if sep and key not in tags:
            tags[key.lower()] = val
    return tags


def _domain(value: str | None) -> str | None:
    if not value:
        return None
    return value.strip().strip("<>").rstrip(".").lower() or None


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _label(index: int, ctype: str, filename: str) -> str:
    return f"part {index}: {filename or ctype}"
