"""The MTA-STS policy file (RFC 8461 §3.2): parse, format, and MX pattern matching (§4.1).

Pure core: no I/O, no clock. Grammar: checklist A4.*. How lenient we are, on purpose (A4.17):

- accepted silently: LF or CRLF line ends (erratum 6253), no final line end (A4.3), spaces or
  tabs after ``:`` and after the value (A4.4), leading zeros in ``max_age`` (A4.8);
- accepted with a ``Note`` (a "tolerated" finding): a repeated key other than ``mx`` (the first
  one counts, §3.2), a repeated ``mx`` pattern (deduplicated), unknown keys (ignored, §3.2),
  mixed LF and CRLF, blank lines after the last field;
- rejected with ``PolicyError``: anything else the ABNF does not produce, e.g. indented lines,
  blank lines between fields, a space before ``:``, a BOM, comments, prose, invalid UTF-8.

The first problem found decides the error code, checked in this order: structure
(``sts.policy.syntax``), then ``version``, ``mode``, ``max_age``, the ``mx`` patterns
(``sts.policy.mx.invalid``) and last ``sts.policy.mx.missing``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from stspilot.errors import ConfigError, PolicyError
from stspilot.findings import Note
from stspilot.sts.names import fold_name

MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: "up to 31557600" (one year); erratum 7282
MODES = ("testing", "enforce", "none")  # the journey's order (design.md), for messages

# By stage (design.md's journey): testing is short so a mistake is forgotten in a day; enforce
# is at least a week so a downgrade window stays small (RFC 8461 §10.2, checklist A9.1);
# `none` is short so senders drop the policy soon (RFC 8461 §8.3, checklist A5.8).
DEFAULT_MAX_AGE: dict[str, int] = {"testing": 86_400, "enforce": 7 * 86_400, "none": 86_400}

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")  # sts-policy-ext-name
# sts-policy-ext-value: vchar [*(SP / vchar) vchar]; vchar is %x21-7E or any UTF-8 beyond ASCII.
_EXT_VALUE = re.compile(
    r"[!-~\u0080-\U0010ffff](?:[ !-~\u0080-\U0010ffff]*[!-~\u0080-\U0010ffff])?"
)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")  # RFC 5321 sub-domain
_WSP = " \t"
_KNOWN = ("version", "mode", "max_age", "mx")


class Mode(StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Policy:
    """A valid policy. ``notes`` record tolerated deviations; they do not take part in equality."""

    version: str
    mode: Mode
    max_age: int
    mx: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()
    notes: tuple[Note, ...] = field(default=(), compare=False)


def is_valid_mx_pattern(pattern: str) -> bool:
    """RFC 8461 §3.2 ``sts-policy-mx-value = ["*."] Domain`` (RFC 5321 Domain, A-labels only)."""
    domain = pattern[2:] if pattern.startswith("*.") else pattern
    if not domain or len(domain) > 253 or not domain.isascii():
        return False  # A4.13: U-labels are invalid, write A-labels (punycode)
    labels = domain.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return False
    # A4.12: no IP addresses. RFC 1123 §2.1: a host name is never dotted-decimal, because the
    # top-level label is alphabetic; an all-digit last label is an IPv4 address (or part of one).
    return not labels[-1].isdigit()


def fold_mx_pattern(text: str) -> str:
    """``text`` as an ``mx`` pattern is compared: the name part through ``sts.names.fold_name``
    (case, root dot, U-labels as A-labels: checklist A4.13), ``*.`` kept. Never raises; check
    the result with ``is_valid_mx_pattern``."""
    pattern = text.strip()
    if pattern.startswith("*."):
        return "*." + fold_name(pattern[2:])
    return fold_name(pattern)


def _split_lines(text: str, notes: list[Note]) -> list[str]:
    """Split on LF or CRLF (A4.2); an optional final terminator; trailing blank lines noted."""
    lines = text.split("\n")
    crlf = [line.endswith("\r") for line in lines[:-1]]
    if any(crlf) and not all(crlf):
        notes.append(Note("sts.policy.line-endings", "the file mixes LF and CRLF line ends"))
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if lines and lines[-1] == "":
        lines.pop()  # [sts-policy-term] after the last field
    blank = 0
    while lines and lines[-1].strip(_WSP) == "":
        lines.pop()
        blank += 1
    if blank:
        notes.append(Note("sts.policy.whitespace", f"{blank} blank line(s) after the last field"))
    return lines


def _split_fields(text: str, notes: list[Note]) -> list[tuple[int, str, str]]:
    if text.startswith("\ufeff"):
        raise PolicyError("sts.policy.syntax", "the file starts with a byte-order mark")
    lines = _split_lines(text, notes)
    if not lines:
        raise PolicyError("sts.policy.syntax", "the file is empty")
    fields: list[tuple[int, str, str]] = []
    for number, line in enumerate(lines, start=1):
        key, colon, rest = line.partition(":")
        if not colon or not _KEY.fullmatch(key):
            shown = line if len(line) <= 60 else line[:57] + "..."
            why = "is blank" if not line.strip(_WSP) else f"is not 'key: value': {shown!r}"
            raise PolicyError("sts.policy.syntax", f"line {number} {why}")
        value = rest.strip(_WSP)
        if value == "" and key not in _KNOWN:
            # sts-policy-ext-value is 1 or more characters; an empty known key gets the
            # more useful error of that key (e.g. sts.policy.mode) below.
            raise PolicyError("sts.policy.syntax", f"line {number}: {key} has no value")
        if "\r" in value or not (value == "" or _EXT_VALUE.fullmatch(value)):
            raise PolicyError(
                "sts.policy.syntax", f"line {number}: the value of {key} holds control characters"
            )
        fields.append((number, key, value))
    return fields


def _max_age(value: str) -> int:
    # ABNF 1*10DIGIT, capped at one year by the prose (A4.8, erratum 7282).
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise PolicyError("sts.policy.max-age", f"max_age {value!r} is not a number of seconds")
    seconds = int(value)
    if seconds > MAX_AGE_LIMIT:
        raise PolicyError(
            "sts.policy.max-age", f"max_age {seconds} is over the limit of {MAX_AGE_LIMIT} (1 year)"
        )
    return seconds


def parse_policy(text: str | bytes) -> Policy:
    """Parse a policy body; ``PolicyError`` codes are ``sts.policy.*`` finding codes."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise PolicyError(
                "sts.policy.syntax", f"the file is not UTF-8 ({error.reason})"
            ) from None
    notes: list[Note] = []
    first: dict[str, str] = {}
    mx: list[str] = []
    seen_mx: set[str] = set()
    extensions: list[tuple[str, str]] = []
    for number, key, value in _split_fields(text, notes):
        if key == "mx":
            # Repeated mx lines are normal; an identical repeat is harmless but noted (A4.16).
            if value.lower() in seen_mx:
                notes.append(Note("sts.policy.mx.duplicate", f"mx: {value} repeats", value))
            else:
                seen_mx.add(value.lower())
                mx.append(value)
        elif key in first:
            # RFC 8461 §3.2: any other field repeated: the first occurrence counts.
            notes.append(
                Note("sts.policy.duplicate-key", f"line {number}: {key}: {value} ignored", key)
            )
        else:
            first[key] = value
            if key not in _KNOWN:
                extensions.append((key, value))
                notes.append(Note("sts.policy.extension", f"unknown key {key} ignored", key))
    version = first.get("version")
    if version != "STSv1":
        what = "no version line" if version is None else f"version {version!r} is not STSv1"
        raise PolicyError("sts.policy.version", what)
    raw_mode = first.get("mode")
    if raw_mode not in tuple(Mode):
        what = (
            "no mode line"
            if raw_mode is None
            else f"mode {raw_mode!r} is not enforce, testing or none"
        )
        raise PolicyError("sts.policy.mode", what)
    mode = Mode(raw_mode)
    if "max_age" not in first:
        raise PolicyError("sts.policy.max-age", "no max_age line")
    max_age = _max_age(first["max_age"])
    for pattern in mx:
        if not is_valid_mx_pattern(pattern):
            raise PolicyError(
                "sts.policy.mx.invalid", f"mx {pattern!r} is not a host name or *.zone"
            )
    if not mx and mode is not Mode.NONE:
        raise PolicyError("sts.policy.mx.missing", f"mode {mode} requires at least one mx line")
    return Policy(version, mode, max_age, tuple(mx), tuple(extensions), tuple(notes))


def check_max_age(max_age: int) -> int:
    """``max_age`` itself when RFC 8461 §3.2 allows it (0 to one year), else ``ConfigError``."""
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise ConfigError(f"max_age must be between 0 and {MAX_AGE_LIMIT} seconds (RFC 8461 §3.2)")
    return max_age


def check_mode(mode: str) -> Mode:
    """The ``Mode`` for a mode given by a person, else ``ConfigError`` (RFC 8461 §3.2)."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return Mode(mode)


def format_policy(policy: Policy, *, crlf: bool = False) -> str:
    """The policy file to serve, one field per line, ending with a line terminator."""
    lines = [f"version: {policy.version}", f"mode: {policy.mode}"]
    lines += [f"mx: {pattern}" for pattern in policy.mx]
    lines.append(f"max_age: {policy.max_age}")
    lines += [f"{key}: {value}" for key, value in policy.extensions]
    end = "\r\n" if crlf else "\n"
    return end.join(lines) + end


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: does ``pattern`` cover MX ``host``?

    Exact names match case-insensitively; ``*.zone`` matches exactly one more label on the
    left (``a.zone``, never ``zone`` nor ``a.b.zone``). Invalid patterns match nothing. The
    host is folded by ``sts.names.fold_name`` (A7.3: case, root dot; a U-label host is compared
    as its A-label); a host that is no name at all matches nothing.
    """
    if not is_valid_mx_pattern(pattern):
        return False
    name = fold_name(host)
    if not name or not name.isascii():
        return False
    pattern = pattern.lower()
    if pattern.startswith("*."):
        first, dot, rest = name.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return name == pattern


def covering_pattern(patterns: Iterable[str], host: str) -> str | None:
    """The pattern that covers ``host``: an exact name before any wildcard, else None."""
    matching = [p for p in patterns if mx_matches(p, host)]
    exact = [p for p in matching if not p.startswith("*.")]
    for candidate in (*exact, *matching):
        return candidate
    return None
