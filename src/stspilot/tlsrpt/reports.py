"""TLS-RPT reports (RFC 8460 §4): ``parse_report`` from JSON bytes to the model (re-exported
from ``stspilot.tlsrpt.model``).

Pure core: no I/O, no clock. Real providers' quirks are accepted where senders send them and
recorded on the report as ``Deviation`` values; wrong kinds of values are ``ReportError``.
Decompression and mail handling live in ``stspilot.ingest.decode``; the wire schema, the
limits and the table of tolerated deviations live in ``stspilot.tlsrpt.schema``; date-times,
addresses and the exact structure check in ``stspilot.tlsrpt.text``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
from msgspec.structs import astuple

from stspilot.errors import LimitExceeded, ReportError
from stspilot.sts.names import fold_name
from stspilot.tlsrpt.model import (
    RESULT_TYPES,
    Deviation,
    FailureDetail,
    PolicyResult,
    PolicyType,
    TlsReport,
    as_dict,
    fast_pickle,
)
from stspilot.tlsrpt.schema import (
    CHECKED_DECODER,
    DEFAULT_LIMITS,
    DEVIATIONS,
    REPORT_DECODER,
    STRING_LIST_DECODER,
    CheckedPolicyResult,
    CheckedReport,
    DeviationInfo,
    Limits,
    WirePolicy,
    WirePolicyResult,
    WireReport,
    deviations_markdown,
)
from stspilot.tlsrpt.text import (
    IP_ADDRESS,
    check_structure,
    is_ip,
    parse_datetime,
    validation_error,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEVIATIONS",
    "RESULT_TYPES",
    "Deviation",
    "DeviationInfo",
    "FailureDetail",
    "Limits",
    "PolicyResult",
    "PolicyType",
    "TlsReport",
    "as_dict",
    "deviations_markdown",
    "fast_pickle",
    "parse_report",
]

# --- parsing --------------------------------------------------------------------------------------

_UNSET = msgspec.UNSET
_STS = PolicyType.STS.value
_TLSA = PolicyType.TLSA.value
_NO_POLICY = PolicyType.NO_POLICY_FOUND.value
# A memo of date ranges already read (reports of one day share theirs): a cache of a pure
# function, bounded (cleared when full), not configuration. Policies are not remembered: on a
# first pass over fresh reports, hashing a policy to look it up costs as much as reading it.
# Keyed by the end's text, the start's text kept beside it: one fresh string hashed a report, not
# two and a tuple (a second range ending at the same time only replaces the entry).
_DateRange = tuple[datetime, datetime, tuple[Deviation, ...], str]
_DATE_RANGES: dict[str, _DateRange] = {}
# Policy domains are folded every time, not remembered: a batch of reports from many receivers
# names thousands of domains (bench/peers.py's 10,000 reports name 6,344), and a lookup of a
# fresh string in a memo that large misses the caches (hash, entry, the stored name to compare
# with) for about what fold_name costs; without the memo the first pass ran 3-4 % faster.
_MEMO_MAX_OBJECTS = 4096  # date ranges (a few MiB at most)
_SCHEMA_DEPTH = 5  # {report [policies {policy-result {policy [policy-string
_ONE_DAY = timedelta(days=1)
_LAST_SECOND = timedelta(days=1, seconds=-1)


def parse_report(data: bytes | str, *, limits: Limits = DEFAULT_LIMITS) -> TlsReport:
    """Parse and validate one RFC 8460 §4 JSON report.

    Raises ``ReportError`` (``report.json.invalid``, ``report.field.missing``,
    ``report.count.invalid``, ``report.date.invalid``, ...) or its subclass ``LimitExceeded``.
    Tolerated quirks become ``Deviation`` values on the result (see ``DEVIATIONS``).
    """
    if data.__class__ is not bytes:
        if isinstance(data, str):
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError:
                raise ReportError(
                    "report.json.invalid", "report text is not valid Unicode"
                ) from None
        else:
            data = bytes(data)
    if len(data) > limits.max_json_bytes:
        raise LimitExceeded(
            "report.limit.json-bytes",
            f"report JSON is {len(data)} bytes, over the limit of {limits.max_json_bytes}",
        )
    devs: list[Deviation] = []
    if data[:1] == b"\xef" and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        devs.append(_dev("json.bom", ""))
    # The checked schema first (see CHECKED_DECODER): what fails it is decoded again with the
    # wire schema, whose loop records the deviations. A syntax error is the same error in both.
    checked = True
    try:
        try:
            wire: CheckedReport | WireReport = CHECKED_DECODER.decode(data)
        except msgspec.ValidationError:
            checked = False
            wire = REPORT_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ReportError("report.json.invalid", f"report is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ReportError("report.json.invalid", "report is not UTF-8 (RFC 8460 §4)") from None
    except RecursionError:
        raise LimitExceeded(
            "report.limit.depth", f"JSON nesting is deeper than {limits.max_depth}"
        ) from None

    if not wire.report_id:
        raise ReportError("report.field.empty", "report-id is empty")
    if len(wire.policies) > limits.max_policies:
        raise LimitExceeded(
            "report.limit.policies",
            f"report has {len(wire.policies)} policies, over the limit of {limits.max_policies}",
        )
    # JSON strings (member names and string values) the typed decoder consumed. Twice that is
    # the number of '"' in the text unless it holds duplicate or unknown members or escaped
    # quotes; only then is the slow exact check needed. Root: 6 names, 4 string values.
    strings = 10
    if not wire.organization_name:
        devs.append(_dev("organization-name.empty", "/organization-name"))
    contact = wire.contact_info
    if contact is _UNSET:
        contact = None
        devs.append(_dev("contact-info.missing", "/contact-info"))
    else:
        strings += 1 if contact is None else 2
        if contact is None:
            devs.append(_dev("contact-info.null", "/contact-info"))
        elif "@" not in contact:
            devs.append(_dev("contact-info.not-addr-spec", "/contact-info", repr(contact[:64])))

    dr = wire.date_range
    dates = _DATE_RANGES.get(dr.end_datetime)
    if dates is None or dates[3] != dr.start_datetime:
        dates = _date_range(dr.start_datetime, dr.end_datetime)
    start, end, date_devs, _ = dates
    if date_devs:
        devs.extend(date_devs)

    strings, policies = _read_policies(wire.policies, strings, devs, limits, checked)

    # A '"' inside a string value is written \" (Microsoft's JSON-encoded tlsa policy strings,
    # Mail.ru's quoted Go errors): the text's '"' are two a string plus its \" escapes. A '"'
    # written \u0022 is in neither count, so it cannot make up for an extra member name.
    quotes = data.count(b'"')
    if (
        strings * 2 != quotes and strings * 2 + _escaped_quotes(data) != quotes
    ) or limits.max_depth < _SCHEMA_DEPTH:
        check_structure(data, limits)

    return TlsReport(
        wire.organization_name, wire.report_id, start, end, contact, policies, tuple(devs)
    )


def _escaped_quotes(data: bytes) -> int:
    """The number of \\" escapes in ``data``, a JSON text msgspec has read: a backslash there
    only ever starts an escape, so reading backslash-and-next-byte pairs left to right, as
    JSON does, finds every escape (\\\\ before a closing quote is an escaped backslash, not
    an escaped quote). One expression call: ~23,700 instructions for a report with escapes
    (Microsoft's tlsa strings, ~13 backslashes in 2.4 kB) where splitting the text at its
    backslashes and reading the byte after each cost ~30,600 and could not tell \\\\ (the
    exact check ran then)."""
    return _ESCAPES(data).count(b'"')


_ESCAPES = re.compile(rb"\\(.)", re.DOTALL).findall


def _read_policies(
    wire_policies: Sequence[WirePolicyResult | CheckedPolicyResult],
    strings: int,
    devs: list[Deviation],
    limits: Limits,
    checked: bool,
) -> tuple[int, tuple[PolicyResult, ...]]:
    """Every ``policies`` element into a PolicyResult: the hot loop of ``parse_report``, kept
    flat (no call per policy or failure detail in the common case) because it runs for every
    policy of every report. The uncommon shapes of ``mx-host`` go through ``_odd_mx_host``."""
    out: list[PolicyResult] = []
    ip_match = IP_ADDRESS.fullmatch
    successful = failed = detailed = 0  # the report's sums, bounded by limits.max_sessions
    for i, wpr in enumerate(wire_policies):
        pol = wpr.policy
        # The policy object's members in turn, each deviation appended as it is found. JSON
        # strings of the common shape, counted at once: the names policy, summary, policy-type,
        # the two counts, policy-domain, policy-string, mx-host and failure-details, and the
        # policy-type and policy-domain values. The other shapes correct the count below, and
        # the two arrays add their elements.
        ptype = pol.policy_type
        strings += 11
        # Compared, not looked up: a fresh string would be hashed first.
        if ptype != _STS and ptype != _TLSA and ptype != _NO_POLICY:
            devs.append(_policy_dev("policy-type.unknown", i, "policy-type", ptype[:64]))

        domain = pol.policy_domain
        if domain.__class__ is str:
            if not domain.isascii():
                devs.append(_policy_dev("policy-domain.not-a-label", i, "policy-domain", ""))
            domain = fold_name(domain)
        else:
            strings += (domain is None) - 2
            domain = ""
            devs.append(_policy_dev("policy-domain.missing", i, "policy-domain", ""))

        policy_string = pol.policy_string
        if policy_string.__class__ is tuple:
            strings += len(policy_string)
            if (
                ptype == _TLSA
                and len(policy_string) == 1
                and policy_string[0].lstrip().startswith("[")
            ):
                # Microsoft (checklist D.2): ["[\"3 1 1 AB..\",\"3 1 1 CD..\"]"]; RFC 8460
                # §4.5 wants one RR per element.
                try:
                    policy_string = STRING_LIST_DECODER.decode(policy_string[0])
                    devs.append(_TLSA_JSON[i] if i < _PREBUILT else _tlsa_json(i))
                except msgspec.DecodeError:
                    pass  # an odd string, not JSON: keep it as the one RR the sender gave
        else:
            strings += (policy_string is None) - 1
            policy_string = ()
            if ptype in (_STS, _TLSA):
                devs.append(_PS_MISSING[i] if i < _PREBUILT else _ps_missing(i))

        mx_host = pol.mx_host
        if mx_host.__class__ is tuple and pol.mx_host_pattern is _UNSET:
            strings += len(mx_host)
            # One scan of the joined names first: a generator per policy costs more.
            if "mx:" in "\n".join(mx_host):
                mx_host = _unprefixed(mx_host, i, "mx-host", devs)
        elif pol.mx_host_pattern is not _UNSET or mx_host.__class__ is str:
            strings, mx_host = _odd_mx_host(pol, ptype, i, strings - 1, devs)
        else:
            strings += (mx_host is None) - 1
            mx_host = ()
            if ptype == _STS:
                devs.append(_MX_MISSING[i] if i < _PREBUILT else _mx_missing(i))

        summary = wpr.summary
        total_failed = summary.total_failure_session_count
        raw_fds = wpr.failure_details
        details: tuple[FailureDetail, ...] = ()
        if raw_fds is _UNSET or raw_fds is None:
            strings += (raw_fds is None) - 1
            devs.append(_FD_MISSING[i] if i < _PREBUILT else _fd_missing(i))
        elif raw_fds:
            if len(raw_fds) > limits.max_failure_details:
                raise LimitExceeded(
                    "report.limit.failure-details",
                    f"policy {i} has {len(raw_fds)} failure details, over the limit of "
                    f"{limits.max_failure_details}",
                )
            fds: list[FailureDetail] = []
            failed_sum = 0
            if checked:
                # Result type, members and non-empty strings checked by CHECKED_DECODER,
                # which decodes the model's FailureDetail itself: kept unless an address is odd.
                for fd in raw_fds:
                    v = astuple(fd)
                    # Two names and the result-type value, then a name and a string value per
                    # optional member that is not null (see the wire loop below).
                    strings += 15 - 2 * v.count(None)
                    sending_ip = v[2]
                    receiving_ip = v[5]
                    if (sending_ip is None or ip_match(sending_ip) is not None) and (
                        receiving_ip is None or ip_match(receiving_ip) is not None
                    ):
                        fds.append(fd)  # type: ignore[arg-type]  # checked: a FailureDetail
                    else:
                        fds.append(_odd_failure_detail((*v, None), _fd_path(i, len(fds)), devs))
                    failed_sum += v[1]
            else:
                # The wire schema's failure details: the slow path, for reports that did not
                # pass CHECKED_DECODER.
                for j, wfd in enumerate(raw_fds):
                    # Values in FailureDetail order, then additional-info-uri (see the schema).
                    w = astuple(wfd)
                    # As above, plus additional-info-uri (null counts as absent: only a
                    # mismatch follows, and with it the exact check).
                    strings += 17 - 2 * w.count(None)
                    fds.append(_odd_failure_detail(w, _fd_path(i, j), devs))
                    failed_sum += w[1]
            details = tuple(fds)
            detailed += failed_sum
            if failed_sum > total_failed:
                devs.append(
                    _dev(
                        "counts.failures-exceed-total",
                        f"/policies/{i}/summary/total-failure-session-count",
                        f"failure details add up to {failed_sum}, the summary says {total_failed}",
                    )
                )
        if total_failed and not details:
            devs.append(_dev("counts.failures-without-details", f"/policies/{i}/failure-details"))

        ok = summary.total_successful_session_count
        successful += ok
        failed += total_failed
        out.append(PolicyResult(ptype, domain, policy_string, mx_host, ok, total_failed, details))
    if max(successful, failed, detailed) > limits.max_sessions:
        raise LimitExceeded(
            "report.limit.sessions",
            f"the report counts {successful} successful, {failed} failed and {detailed} "
            f"detailed failed sessions; more than {limits.max_sessions} is not a real day of "
            "mail (and would overflow the sums kept of it)",
        )
    return strings, tuple(out)


def _fd_path(i: int, j: int) -> str:
    return f"/policies/{i}/failure-details/{j}"


def _fd_missing(i: int) -> Deviation:
    return _dev("failure-details.missing", f"/policies/{i}/failure-details")


def _ps_missing(i: int) -> Deviation:
    return _policy_dev("policy-string.missing", i, "policy-string", "")


def _tlsa_json(i: int) -> Deviation:
    return _policy_dev("tlsa.policy-string.json-encoded", i, "policy-string", "")


def _mx_missing(i: int) -> Deviation:
    return _policy_dev("mx-host.missing", i, "mx-host", "")


def _odd_mx_host(
    pol: WirePolicy, ptype: str, i: int, strings: int, devs: list[Deviation]
) -> tuple[int, tuple[str, ...]]:
    """``mx-host`` as a bare string, or named ``mx-host-pattern``: the JSON strings counted
    and the names read."""
    raw_mx = pol.mx_host
    alias = pol.mx_host_pattern
    strings += _member_strings(raw_mx) + _member_strings(alias)
    member = "mx-host"
    if alias is not _UNSET:
        devs.append(_policy_dev("mx-host-pattern.key", i, "mx-host-pattern", ""))
        if raw_mx is _UNSET or raw_mx is None:
            raw_mx, member = alias, "mx-host-pattern"
    if raw_mx is _UNSET or raw_mx is None:
        if ptype == _STS:
            devs.append(_policy_dev("mx-host.missing", i, "mx-host", ""))
        return strings, ()
    if isinstance(raw_mx, str):
        devs.append(_policy_dev("mx-host.string", i, member, ""))
        raw_mx = (raw_mx,)
    if "mx:" in "\n".join(raw_mx):
        raw_mx = _unprefixed(raw_mx, i, member, devs)
    return strings, raw_mx


def _unprefixed(
    raw_mx: tuple[str, ...], i: int, member: str, devs: list[Deviation]
) -> tuple[str, ...]:
    """MX names without the ``mx: `` prefix some senders copy from the policy (cry-inc)."""
    if not any(m.startswith("mx:") for m in raw_mx):
        return raw_mx
    devs.append(_policy_dev("mx-host.prefixed", i, member, ""))
    return tuple(m[3:].strip() if m.startswith("mx:") else m for m in raw_mx)


def _member_strings(value: tuple[str, ...] | str | msgspec.UnsetType | None) -> int:
    """JSON strings of an optional string-or-array member: its name and its string values."""
    if value is _UNSET:
        return 0
    if value is None:
        return 1
    return 2 if isinstance(value, str) else 1 + len(value)


@lru_cache(maxsize=4096)
def _policy_dev(code: str, i: int, sub: str, detail: str) -> Deviation:
    return _dev(code, f"/policies/{i}/policy/{sub}", detail)


def _odd_failure_detail(
    values: tuple[Any, ...], where: str, devs: list[Deviation]
) -> FailureDetail:
    """A failure detail of the wire schema (or of the checked one with an odd address, then
    with no alias), its tolerated quirks recorded."""
    (result_type, count, sending_ip, hostname, helo, receiving_ip, info, reason, alias) = values
    if result_type not in RESULT_TYPES:
        devs.append(_dev("result-type.unknown", f"{where}/result-type", result_type[:64]))
    if alias is not None:
        devs.append(_dev("additional-info-uri.key", f"{where}/additional-info-uri"))
        if info is None:
            info = alias
    if sending_ip is not None and not is_ip(sending_ip):
        sending_ip = _odd_ip(sending_ip, f"{where}/sending-mta-ip", devs)
    if receiving_ip is not None and not is_ip(receiving_ip):
        receiving_ip = _odd_ip(receiving_ip, f"{where}/receiving-ip", devs)
    named = (
        ("receiving-mx-hostname", hostname),
        ("receiving-mx-helo", helo),
        ("additional-information", info),
        ("failure-reason-code", reason),
    )
    for name, value in named:
        if value == "":
            devs.append(_dev("field.empty", f"{where}/{name}"))
    return FailureDetail(
        result_type,
        count,
        sending_ip,
        hostname or None,
        helo or None,
        receiving_ip,
        info or None,
        reason or None,
    )


def _odd_ip(value: str, where: str, devs: list[Deviation]) -> str | None:
    """An address that is not a plain dotted quad: empty, IPv6, or not an address at all."""
    if value == "":
        devs.append(_dev("ip.empty", where))  # Google (checklist D.5)
        return None
    if not is_ip(value):
        devs.append(_dev("ip.invalid", where, value[:64]))
    return value


def _date_range(start_text: str, end_text: str) -> _DateRange:
    """Both ends as aware UTC datetimes, plus deviations. Remembered in _DATE_RANGES: reports
    of one day share their date range, so most reports need only a dictionary lookup."""
    start, start_code = parse_datetime(start_text, "start-datetime")
    end, end_code = parse_datetime(end_text, "end-datetime")
    codes: list[tuple[str, str]] = []
    if start_code:
        codes.append((start_code, "/date-range/start-datetime"))
    if end_code:
        codes.append((end_code, "/date-range/end-datetime"))
    if end < start:
        raise ReportError(
            "report.date.range", f"date range ends ({end_text}) before it starts ({start_text})"
        )
    # RFC 8460 §4.1: a report SHOULD cover one full UTC day, 00:00:00 to 23:59:59 (App. B).
    next_midnight = end.hour == end.minute == end.second == end.microsecond == 0 and end > start
    if next_midnight:
        codes.append(("date.end-next-midnight", "/date-range/end-datetime"))
    at_midnight = start.hour == start.minute == start.second == 0
    length = end - start
    if not at_midnight or not (length == _ONE_DAY or _LAST_SECOND <= length < _ONE_DAY):
        codes.append(("date.range-not-one-day", "/date-range"))
    dates = (start, end, tuple(_dev(code, where) for code, where in codes), start_text)
    if len(_DATE_RANGES) >= _MEMO_MAX_OBJECTS:
        _DATE_RANGES.clear()
    _DATE_RANGES[end_text] = dates
    return dates


@lru_cache(maxsize=4096)
def _dev(code: str, where: str, detail: str = "") -> Deviation:
    # Cached: deviations are immutable and the same (code, path) recurs report after report.
    info = DEVIATIONS[code]
    return Deviation(code, where, f"{info.what}: {detail}" if detail else info.what)


# The commonest deviations (Google, Microsoft, Mail.ru), prebuilt for the first policies.
_PREBUILT = 32
_FD_MISSING = tuple(_fd_missing(i) for i in range(_PREBUILT))
_PS_MISSING = tuple(_ps_missing(i) for i in range(_PREBUILT))
_TLSA_JSON = tuple(_tlsa_json(i) for i in range(_PREBUILT))
_MX_MISSING = tuple(_mx_missing(i) for i in range(_PREBUILT))
