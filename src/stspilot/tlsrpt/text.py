"""Reading TLS-RPT report text below the schema: RFC 3339 date-times, IP addresses, the exact
structure check (nesting depth, duplicate member names) and msgspec's errors as our codes.

Pure core: no I/O, no clock. Used by ``stspilot.tlsrpt.reports.parse_report``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

from stspilot.errors import LimitExceeded, ReportError
from stspilot.tlsrpt.schema import Limits

# RFC 3339 §5.6 date-time; the offset is optional here so Microsoft's zone-less form (D.1) can be
# read as UTC with a deviation. ``datetime.fromisoformat`` alone accepts far more than RFC 3339.
# ASCII digits only ([0-9], not \d, which also matches other scripts' digits).
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)
# What nearly every reporter sends; datetime.fromisoformat reads it once the shape is checked.
_ZULU = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9]Z")
# An address as RFC 8460 §4.4 has it (checklist B4.12): IPv4 as RFC 3986's dotted quad, no
# leading zeros; IPv6 in any RFC 4291 §2.2 text form (preferred, "::"-compressed, IPv4 in the
# last 32 bits), the language of RFC 3986 §3.2.2's ABNF. No zone index ("%eth0"): it names an
# interface of the sender's host, not an address. One compiled expression, about four times
# cheaper than ``ipaddress.ip_address`` (which raises and catches on every IPv6).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Written out four times: the engine runs a counted repeat of a group ({3}) through its
# general repeat machinery, ~200 instructions more an address.
_V4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
# Possessive: a group of hex digits is always followed by ':', '.' or the end, so giving a digit
# back can never help a match.
_H16 = r"[0-9A-Fa-f]{1,4}+"


def _v6_after(groups: int) -> str:
    """What may follow ``groups`` 16-bit groups and no "::" yet: more groups, or "::" and at
    most 7 - groups groups after it, or (after 6) the IPv4 form of the last two. Read left to
    right in one pass, where RFC 3986's nine alternatives each rescan the groups before the
    "::" (an IPv6 address: ~9,000 -> ~4,900 instructions)."""
    if groups == 8:
        return ""
    # Another group first: an address has more single colons than "::" (each alternative the
    # engine enters and leaves costs a push and a pop of its backtracking stack).
    options = [f":{_H16}{_v6_after(groups + 1)}", f"::{_v6_tail(7 - groups)}"]
    if groups == 6:
        options.append(f":{_V4}")
    return f"(?:{'|'.join(options)})"


def _v6_tail(most: int) -> str:
    """At most ``most`` groups after "::", the IPv4 form counting as two."""
    if most < 2:
        return f"(?:{_H16})?" if most else ""
    return rf"(?:(?:{_H16}:){{0,{most - 1}}}+{_H16}|(?:{_H16}:){{0,{most - 2}}}+{_V4})?"


_V6 = rf"::{_v6_tail(7)}|{_H16}{_v6_after(1)}"
# IPv6 first: an IPv4 address fails the IPv6 expression at its first '.', while an IPv6
# address would first fail each octet alternative of the IPv4 one (IPv6 ~5,900 -> ~4,600
# instructions an address, IPv4 ~3,800 -> ~3,600, of which ~2,300 are the call itself).
IP_ADDRESS = re.compile(rf"{_V6}|{_V4}")
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


def parse_datetime(text: str, name: str) -> tuple[datetime, str | None]:
    """An RFC 3339 §5.6 date-time as an aware UTC datetime, plus a deviation code for the
    forms we tolerate (no offset, leap second)."""
    if _ZULU.fullmatch(text) is not None:
        try:
            return datetime.fromisoformat(text), None  # 3.11 reads "Z" as UTC
        except ValueError:
            raise ReportError(
                "report.date.invalid", f"{name} {text!r} is not a valid date-time"
            ) from None
    m = _DATETIME.fullmatch(text)
    if m is None:
        raise ReportError(
            "report.date.invalid", f"{name} {text[:64]!r} is not an RFC 3339 date-time"
        )
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    code = None
    sec = int(second)
    if sec == 60:  # a leap second (RFC 3339 §5.6); datetime cannot hold it
        sec = 59
        code = "date.leap-second"
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    tz = UTC
    if sign:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ReportError("report.date.invalid", f"{name} {text!r} has an invalid offset")
        delta = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-delta if sign == "-" else delta)
    elif not zulu:
        code = "date.no-offset"  # Microsoft (checklist D.1): read as UTC
    try:
        value = datetime(
            int(year), int(month), int(day), int(hour), int(minute), sec, micro, tzinfo=tz
        )
    except ValueError:
        raise ReportError(
            "report.date.invalid", f"{name} {text!r} is not a valid date-time"
        ) from None
    return (value if tz is UTC else value.astimezone(UTC)), code


def validation_error(text: str) -> ReportError:
    """Map msgspec's 'Expected `int` >= 0 - at `$.policies[0].summary.x`' to our codes."""
    message, _, at = text.partition(" - at `")
    path = at.rstrip("`")
    pointer = re.sub(r"\[(\d+)\]", r".\1", path).replace("$", "", 1).replace(".", "/")
    if message.startswith("Object missing required field"):
        field = message.partition("`")[2].rstrip("`")
        return ReportError("report.field.missing", f"required member {pointer}/{field} is missing")
    if path == "" and message.startswith("Expected `object`"):
        return ReportError("report.json.invalid", "report is not a JSON object")
    if path.endswith("-datetime"):
        return ReportError("report.date.invalid", f"{pointer}: {_plain(message)}")
    if path.endswith("-count"):
        return ReportError("report.count.invalid", f"{pointer}: {_plain(message)}")
    return ReportError("report.field.type", f"{pointer}: {_plain(message)}")


def _plain(message: str) -> str:
    return message.replace("`", "").replace("Expected", "expected", 1)


def check_structure(data: bytes, limits: Limits) -> None:
    """The slow, exact check for what the fast member count could not rule out: nesting depth
    within unknown members, and duplicate member names (I-JSON, RFC 7493 §2.3)."""
    brackets = _JSON_STRING.sub(b'""', data).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    while brackets:
        depth += 1
        if depth > limits.max_depth:
            raise LimitExceeded(
                "report.limit.depth", f"JSON nesting is deeper than {limits.max_depth}"
            )
        shorter = brackets.replace(b"()", b"")  # drops exactly one level of nesting
        if len(shorter) == len(brackets):
            break
        brackets = shorter
    try:
        # Decoded here, strictly: msgspec does not check UTF-8 inside members it skips.
        json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_refuse_duplicates,
            parse_int=_ignore,
            parse_float=_ignore,
            parse_constant=_ignore,
        )
    except UnicodeDecodeError:
        raise ReportError("report.json.invalid", "report is not UTF-8 (RFC 8460 §4)") from None
    except json.JSONDecodeError as exc:
        raise ReportError("report.json.invalid", f"report is not valid JSON: {exc}") from None
    except RecursionError:
        raise LimitExceeded(
            "report.limit.depth", f"JSON nesting is deeper than {limits.max_depth}"
        ) from None


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> None:
    if len(pairs) > 1 and len({k for k, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        dupe = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ReportError(
            "report.json.duplicate-key",
            f"member name {dupe!r} appears twice in one object (I-JSON, RFC 7493 §2.3)",
        )


def _ignore(_: str) -> None:
    return None


def is_ip(value: str) -> bool:
    """RFC 8460 §4.4: an IPv4 dotted quad without leading zeros, or IPv6 (see IP_ADDRESS).
    The hot loop of ``parse_report`` calls ``IP_ADDRESS.fullmatch`` itself."""
    return IP_ADDRESS.fullmatch(value) is not None
