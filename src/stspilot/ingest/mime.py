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

# Header fields (RFC 5322 §2.2, §3.6.8: a name of printable ASCII but colon and space, folded
# lines start with white space); values as compat32 keeps them, leading blanks stripped.
_BLOCK = re.compile(r"(?:[!-9;-~]+:[^\n]*\n(?:[ \t][^\n]*\n)*)*")
_FIELDS = re.compile(r"([!-9;-~]+):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)\n")
# "; name=value" or '; name="value"' (no RFC 2231 "*", no backslash escapes: those fall back).
_PARAM = re.compile(r'\s*;\s*([!#$%&\'+\-.^_`|~0-9A-Za-z]+)\s*=\s*(?:"([^"\\]*)"|([^;\s"]*))\s*')
_TRAILING_SEMICOLON = re.compile(r"\s*;\s*")


class Headers:
    """The header fields of a message or part, as ``Message.get``/``get_all`` give them under
    compat32: first match wins, names compare case-insensitively, folded values keep their
    line breaks (readers collapse whitespace themselves)."""

    __slots__ = ("_first", "fields")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields  # (lower-case name, value)
        self._first = dict(reversed(fields))  # the first of each name wins

    def get(self, name: str, failobj: str | None = None) -> str | None:
        return self._first.get(name.lower(), failobj)

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        wanted = name.lower()
        found = [value for key, value in self.fields if key == wanted]
        return found or failobj

    def keys(self) -> list[str]:
        return [key for key, _ in self.fields]


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
    text = text.rstrip("\n") + "\n"  # the line break that ends the block, exactly once
    # Every line a field or its continuation (a "From " line, a line without a colon: no).
    if _BLOCK.fullmatch(text) is None:
        return None
    return Headers([(name.lower(), value) for name, value in _FIELDS.findall(text)])


def split_value(value: str) -> tuple[str, dict[str, str]] | None:
    """``type/subtype; a=b; c="d"`` -> ("type/subtype", {"a": "b", "c": "d"}); None when the
    parameters need RFC 2231 or quoted-pair decoding, or do not parse."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    if rest:
        if "*" in rest or "\\" in rest or "=?" in rest:
            return None
        text = ";" + rest
        pos = 0
        while pos < len(text):
            match = _PARAM.match(text, pos)
            if match is None:
                if _TRAILING_SEMICOLON.fullmatch(text, pos):
                    break
                return None
            quoted, token = match.group(2), match.group(3)
            val = quoted if quoted is not None else token
            if val.startswith("<"):
                return None  # email's unquote strips angle brackets: leave that to it
            params.setdefault(match.group(1).lower(), val)
            pos = match.end()
    return head.strip(), params


def content_type(headers: Headers) -> tuple[str, dict[str, str]] | None:
    value = headers.get("content-type")
    if value is None:
        return "text/plain", {}
    split = split_value(value)
    if split is None:
        return None
    ctype, params = split
    ctype = ctype.lower()
    return ("text/plain" if ctype.count("/") != 1 else ctype), params


def flat_multipart(
    raw: bytes, cut: int, max_parts: int, max_encoded: int
) -> tuple[Headers, list[Part]] | None:
    """The top headers and leaf parts of a one-level multipart message whose body starts at
    ``cut``; None for anything else (nested parts, odd delimiters, 8-bit headers, uuencode,
    bad base64, more than ``max_parts`` parts, a part body over ``max_encoded``
    bytes: the full reader then raises the limit errors)."""
    top = parse_headers(raw[:cut])
    if top is None:
        return None
    found = content_type(top)
    if found is None:
        return None
    ctype, params = found
    boundary = params.get("boundary", "").rstrip()
    if not ctype.startswith("multipart/") or ctype == "multipart/digest" or not boundary:
        return None
    pieces = (b"\n" + raw[cut:]).split(b"\n--" + boundary.encode())
    parts: list[Part] = []
    for piece in pieces[1:]:
        line_end = piece.find(b"\n")
        rest_of_line = piece[: line_end if line_end >= 0 else len(piece)]
        if rest_of_line.startswith(b"--"):
            return (top, parts) if parts else None
        if rest_of_line.strip() or line_end < 0:
            return None  # "--boundary" followed by text: not a delimiter line after all
        if len(parts) + 1 >= max_parts:
            return None  # let the full walk raise the limit error consistently
        part = _part(piece[line_end + 1 :], max_encoded)
        if part is None:
            return None
        parts.append(part)
    return None  # never closed


def _part(piece: bytes, max_encoded: int) -> Part | None:
    if piece.endswith(b"\r"):
        piece = piece[:-1]  # the CR of the CRLF that belongs to the next delimiter
    if piece[:1] == b"\n" or piece[:2] == b"\r\n":
        return None  # no headers at all: rare, leave it to email
    crlf, lf = piece.find(b"\r\n\r\n"), piece.find(b"\n\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        head, body = piece[: lf + 1], piece[lf + 2 :]
    elif crlf >= 0:
        head, body = piece[: crlf + 2], piece[crlf + 4 :]
    else:
        return None
    headers = parse_headers(head)
    if headers is None or len(body) > max_encoded:
        return None
    found = content_type(headers)
    if found is None:
        return None
    ctype, type_params = found
    if ctype.startswith(("multipart/", "message/")):
        return None
    filename = type_params.get("name")
    disposition = headers.get("content-disposition")
    if disposition is not None:
        split = split_value(disposition)
        if split is None:
            return None
        filename = split[1].get("filename", filename)
    cte = headers.get("content-transfer-encoding", "") or ""
    cte = cte.lower()
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
    return Part(ctype, (filename or "").strip(), len(body), payload)
