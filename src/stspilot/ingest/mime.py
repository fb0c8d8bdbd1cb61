"""A fast reader for the usual report mail (RFC 8460 §5.3): ASCII headers and one flat
``multipart/report``, read with plain string operations; ``None`` for anything unusual, and the
caller then lets the stdlib ``email`` package read the message (a fast path, never a second
opinion).

It answers exactly what ``email.message.Message`` with ``policy=compat32`` answers for the
messages it accepts (header values, content type, boundary, file name, transfer-decoded
payload); tests/test_decode.py compares the two on every sample and corpus mail.
"""

from __future__ import annotations

import binascii
import quopri
import re
from dataclasses import dataclass
from typing import TypeVar

# Header fields (RFC 5322 §2.2, §3.6.8: a name of printable ASCII but colon and space, folded
# lines start with white space); values as compat32 keeps them, leading blanks stripped.
_FIELDS = re.compile(r"([!-9;-~]+):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)\n")
# A block is fields and their continuation lines: the first line starts a field, and every
# later line a field or a continuation (a "From " line, a line without a colon, an empty
# line: no). Checked at the line starts only (the search skips to each line break in C).
_FIRST_FIELD = re.compile(r"[!-9;-~]+:")
_BAD_LINE = re.compile(r"\n(?![ \t]|[!-9;-~]+:)")
# "; name=value" or '; name="value"' (no RFC 2231 "*", no backslash escapes: a part's file name
# is then read by the stdlib from its two fields, anything else falls back to the full reader),
# and a list of them (from its first semicolon), maybe with a semicolon at the end: written so
# that a text parses one way only (blanks before a semicolon end the parameter before it), or
# a failing fullmatch would try every split of every run of blanks.
_PARAMS = re.compile(r'\s*;\s*([!#$%&\'+\-.^_`|~0-9A-Za-z]+)\s*=\s*(?:"([^"\\]*)"|([^;\s"]*))\s*')
_PARAM_LIST = re.compile(
    r'(?:;\s*[!#$%&\'+\-.^_`|~0-9A-Za-z]+\s*=\s*(?:"[^"\\]*"|[^;\s"]*)\s*)*(?:;\s*)?'
)
# Memos of pure functions of repeated header values: at most this many entries, and only
# for keys up to _MEMO_KEY characters or bytes (a huge header is not kept).
_MEMO_SIZE = 1024
_MEMO_KEY = 1024
_K = TypeVar("_K", str, bytes)
_V = TypeVar("_V")


class Headers:
    """The header fields of a message or part, as ``Message.get``/``get_all`` give them under
    compat32: first match wins, names compare case-insensitively, folded values keep their
    line breaks (readers collapse whitespace themselves).

    Built by ``parse_headers`` from a block it checked; a look-up searches the block's text for
    the field (a report mail's envelope needs a handful of its dozens of fields), and the full
    list of fields is only split out when asked for."""

    __slots__ = ("_fields", "_low", "text")

    def __init__(self, text: str) -> None:
        # Checked fields with LF line ends, no line break at the end.
        self.text = text
        self._low = "\n" + text.lower()  # "\nname:" finds a field start (ASCII: same offsets)
        self._fields: list[tuple[str, str]] | None = None

    @property
    def fields(self) -> list[tuple[str, str]]:
        """(lower-case name, value) of every field, in order."""
        if self._fields is None:
            self._fields = [(n.lower(), v) for n, v in _FIELDS.findall(self.text + "\n")]
        return self._fields

    def get(self, name: str, failobj: str | None = None) -> str | None:
        needle = _NEEDLES.get(name) or _needle(name)
        at = self._low.find(needle) if needle else -1
        if at < 0:
            return failobj
        # The value: from after the colon to the line break that no blank follows.
        text = self.text
        start = at + len(needle) - 1
        end = text.find("\n", start)
        while end >= 0 and text[end + 1] in " \t":  # text never ends with a line break
            end = text.find("\n", end + 1)
        return (text[start:end] if end >= 0 else text[start:]).lstrip(" \t")

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        needle = _NEEDLES.get(name) or _needle(name)
        low = self._low
        at = low.find(needle) if needle else -1
        found = []
        while at >= 0:
            found.append(_value(self.text, at + len(needle) - 1))
            at = low.find(needle, at + 1)
        return found or failobj

    def keys(self) -> list[str]:
        return [key for key, _ in self.fields]


def _value(text: str, start: int) -> str:
    """The value of the field whose text (after the colon) starts at ``start`` (as ``get``)."""
    end = text.find("\n", start)
    while end >= 0 and text[end + 1] in " \t":
        end = text.find("\n", end + 1)
    return (text[start:end] if end >= 0 else text[start:]).lstrip(" \t")


def remember(memo: dict[_K, _V], key: _K, value: _V) -> None:
    """Keep ``memo[key] = value`` unless the key is huge; empty the memo when it is full."""
    if len(key) <= _MEMO_KEY:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = value


_NEEDLES: dict[str, str] = {}


def _needle(name: str) -> str:
    """The look-up key (line break, lower-case name, colon) of ``name``; "" for a name no
    field can have."""
    needle = _NEEDLES.get(name)
    if needle is None:
        low = name.lower()
        valid = low.isascii() and _FIRST_FIELD.fullmatch(low + ":") is not None
        needle = "\n" + low + ":" if valid else ""
        remember(_NEEDLES, name, needle)
    return needle


@dataclass(frozen=True, slots=True)
class Part:
    """One leaf part of a flat multipart: what ``mail`` needs to pick report parts."""

    content_type: str  # lower case; "text/plain" when absent or malformed, as email does
    filename: str  # "" when absent
    encoded_size: int  # bytes of the still transfer-encoded body
    payload: bytes  # transfer-decoded

    def decoded(self) -> bytes:
        return self.payload


def parse_headers(block: bytes) -> Headers | None:
    """A header block (without the blank line), or None when it is not plain ASCII fields."""
    if not block.isascii():
        return None  # 8-bit or RFC 2047 trouble: the email package knows the rules
    text = block.decode("ascii")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    text = text.rstrip("\n")  # the line break that ends the block is implied
    # Every line a field or its continuation (a "From " line, a line without a colon: no).
    if _FIRST_FIELD.match(text) is None or _BAD_LINE.search(text) is not None:
        return None
    return Headers(text)


_SPLITS: dict[str, tuple[str, dict[str, str]] | None] = {}


def split_value(value: str) -> tuple[str, dict[str, str]] | None:
    """``type/subtype; a=b; c="d"`` -> ("type/subtype", {"a": "b", "c": "d"}); None when the
    parameters need RFC 2231 or quoted-pair decoding, or do not parse."""
    split = _split_value(value)
    return None if split is None else (split[0], dict(split[1]))


def _split_value(value: str) -> tuple[str, dict[str, str]] | None:
    """``split_value``, memoized (report mails repeat their part headers): the dict is shared,
    never to be changed."""
    try:
        return _SPLITS[value]
    except KeyError:
        pass
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    split: tuple[str, dict[str, str]] | None = (head.strip(), params)
    if rest:
        text = ";" + rest
        if "*" in rest or "\\" in rest or "=?" in rest or _PARAM_LIST.fullmatch(text) is None:
            split = None
        else:
            # The list checked, its parameters one after another (each parameter's extent is
            # forced: the names, values and blanks cannot run into one another).
            for name, quoted, token in _PARAMS.findall(text):
                val = quoted or token  # "" either way when empty
                if val.startswith("<"):
                    split = None  # email's unquote strips angle brackets: leave that to it
                    break
                params.setdefault(name.lower(), val)
    remember(_SPLITS, value, split)
    return split


def content_type(headers: Headers) -> tuple[str, dict[str, str]] | None:
    found = _content_type(headers.get("content-type"))
    return None if found is None else (found[0], dict(found[1]))


def _content_type(value: str | None) -> tuple[str, dict[str, str]] | None:
    if value is None:
        return "text/plain", {}
    split = _split_value(value)
    if split is None:
        return None
    ctype, params = split
    ctype = ctype.lower()
    return ("text/plain" if ctype.count("/") != 1 else ctype), params


# A leaf: content type, file name, encoded size, transfer-decoded payload (``Part``'s fields).
Leaf = tuple[str, str, int, bytes]


def flat_multipart(
    raw: bytes, cut: int, max_parts: int, max_encoded: int
) -> tuple[Headers, list[Part]] | None:
    """The top headers and leaf parts of a one-level multipart message whose body starts at
    ``cut``; None for anything else (nested parts, odd delimiters, 8-bit headers, uuencode,
    bad base64, more than ``max_parts`` parts, a part body over ``max_encoded``
    bytes: the full reader then raises the limit errors)."""
    flat = flat_leaves(raw, cut, max_parts, max_encoded)
    if flat is None:
        return None
    return flat[0], [Part(*leaf) for leaf in flat[1]]


def flat_leaves(
    raw: bytes, cut: int, max_parts: int, max_encoded: int
) -> tuple[Headers, list[Leaf]] | None:
    """``flat_multipart`` with the parts as plain tuples."""
    top = parse_headers(raw[:cut])
    if top is None:
        return None
    found = _content_type(top.get("content-type"))
    if found is None:
        return None
    ctype, params = found
    boundary = params.get("boundary", "").rstrip()
    if not ctype.startswith("multipart/") or ctype == "multipart/digest" or not boundary:
        return None
    # The body split on "\n--boundary" as if a line break came first (the one ending the
    # header block does), by offsets into ``buf`` rather than copies of the pieces.
    if cut > 0 and raw[cut - 1] == 10:  # b"\n"
        buf, pos = raw, cut - 1
    else:
        buf, pos = b"\n" + raw[cut:], 0
    delim = b"\n--" + boundary.encode()
    at = buf.find(delim, pos)
    parts: list[Leaf] = []
    while at >= 0:
        start = at + len(delim)
        line_end = buf.find(b"\n", start)
        rest_of_line = buf[start:line_end] if line_end >= 0 else buf[start:]
        if rest_of_line.startswith(b"--"):
            return (top, parts) if parts else None
        at = buf.find(delim, start)  # the next delimiter ends this piece
        if at < 0:
            return None  # never closed
        if rest_of_line.strip() or line_end < 0 or line_end >= at:
            return None  # "--boundary" followed by text: not a delimiter line after all
        if len(parts) + 1 >= max_parts:
            return None  # let the full walk raise the limit error consistently
        part = _part(buf, line_end + 1, at, max_encoded)
        if part is None:
            return None
        parts.append(part)
    return None  # no delimiter at all


# Part header block -> (content type, file name, transfer encoding), or None: report mails
# repeat them (the human-readable part's are the same in every mail from a sender).
_PART_HEADS: dict[bytes, tuple[str, str, str] | None] = {}


def _part_head(head: bytes) -> tuple[str, str, str] | None:
    headers = parse_headers(head)
    if headers is None:
        return None
    type_value = headers.get("content-type")
    disposition = headers.get("content-disposition")
    found = _content_type(type_value)
    split = None if disposition is None else _split_value(disposition)
    if found is not None and (disposition is None or split is not None):
        ctype, type_params = found
        filename = type_params.get("name")
        if split is not None:
            filename = split[1].get("filename", filename)
        filename = (filename or "").strip()
    else:
        # Parameters the plain reader leaves alone: RFC 2231 (``filename*0*=utf-8''...``,
        # which the stdlib's own generator writes for a long name), quoted pairs, angle
        # brackets. The part's file name is then read by the stdlib from these two fields
        # alone, as it reads it from the whole mail; its type is the value before the first
        # ";" either way (RFC 2045 §5.1, email's ``_splitparam``).
        ctype = (type_value or "text/plain").partition(";")[0].strip().lower()
        if ctype.count("/") != 1:
            ctype = "text/plain"
        filename = _stdlib_filename(type_value, disposition)
    if ctype.startswith(("multipart/", "message/")):
        return None
    cte = headers.get("content-transfer-encoding", "") or ""
    return ctype, filename, cte.lower()


def _stdlib_filename(type_value: str | None, disposition: str | None) -> str:
    """``Message.get_filename()`` (compat32) of a part with these two fields, "" for none or
    for one the stdlib cannot decode (as ``mail._pick`` reads it in the full walk)."""
    from email.message import Message

    part = Message()
    if type_value is not None:
        part["Content-Type"] = type_value
    if disposition is not None:
        part["Content-Disposition"] = disposition
    try:
        return (part.get_filename() or "").strip()
    except (ValueError, LookupError, UnicodeError):
        return ""


def _part(buf: bytes, start: int, end: int, max_encoded: int) -> Leaf | None:
    """The part in ``buf[start:end]``."""
    if end > start and buf[end - 1] == 13:  # b"\r"
        end -= 1  # the CR of the CRLF that belongs to the next delimiter
    if buf.startswith(b"\n", start, end) or buf.startswith(b"\r\n", start, end):
        return None  # no headers at all: rare, leave it to email
    lf = buf.find(b"\n\n", start, end)
    # A CRLF blank line counts if it comes first (searched only up to the LF one).
    crlf = buf.find(b"\r\n\r\n", start, min(lf + 3, end) if lf >= 0 else end)
    if crlf >= 0:
        head_end, body_start = crlf + 2, crlf + 4
    elif lf >= 0:
        head_end, body_start = lf + 1, lf + 2
    else:
        return None
    if end - body_start > max_encoded:
        return None
    head = buf[start:head_end]
    try:
        info = _PART_HEADS[head]
    except KeyError:
        info = _part_head(head)
        remember(_PART_HEADS, head, info)
    if info is None:
        return None
    ctype, filename, cte = info
    body = buf[body_start:end]
    if cte == "base64":
        if not body.isascii():
            return None
        try:
            payload = binascii.a2b_base64(body)
        except binascii.Error:
            return None  # missing padding and the like: email repairs what it can
    elif cte == "quoted-printable":  # the human-readable part, often
        payload = quopri.decodestring(body)  # what email itself calls
    elif cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        return None
    else:
        payload = body
    return ctype, filename, len(body), payload
