"""parse_report: every tolerated quirk, every wrong-kind value, every limit, and fuzzing."""

from __future__ import annotations

import copy
import json
import os
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stspilot.errors import LimitExceeded, ReportError
from stspilot.lab.sample_reports import generate_reports, to_json_bytes
from stspilot.tlsrpt.reports import (
    Deviation,
    FailureDetail,
    Limits,
    PolicyResult,
    TlsReport,
    as_dict,
    parse_report,
)
from stspilot.tlsrpt.schema import DEVIATIONS, deviations_markdown

REPO = Path(__file__).resolve().parents[1]
Doc = dict[str, Any]


def base() -> Doc:
    """RFC 8460 Appendix B with erratum 6241 (mx-host as an array): no deviations."""
    return {
        "organization-name": "Company-X",
        "date-range": {
            "start-datetime": "2016-04-01T00:00:00Z",
            "end-datetime": "2016-04-01T23:59:59Z",
        },
        "contact-info": "sts-reporting@company-x.example",
        "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: testing",
                        "mx: *.mail.company-y.example",
                        "max_age: 86400",
                    ],
                    "policy-domain": "company-y.example",
                    "mx-host": ["*.mail.company-y.example"],
                },
                "summary": {
                    "total-successful-session-count": 5326,
                    "total-failure-session-count": 303,
                },
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "2001:db8:abcd:0012::1",
                        "receiving-mx-hostname": "mx1.mail.company-y.example",
                        "failed-session-count": 100,
                    },
                    {
                        "result-type": "starttls-not-supported",
                        "sending-mta-ip": "2001:db8:abcd:0013::1",
                        "receiving-mx-hostname": "mx2.mail.company-y.example",
                        "receiving-ip": "203.0.113.56",
                        "failed-session-count": 200,
                        "additional-information": "https://reports.company-x.example/x",
                    },
                    {
                        "result-type": "validation-failure",
                        "sending-mta-ip": "198.51.100.62",
                        "receiving-ip": "203.0.113.58",
                        "receiving-mx-hostname": "mx-backup.mail.company-y.example",
                        "failed-session-count": 3,
                        "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                    },
                ],
            }
        ],
    }


def edit(fn: Callable[[Doc], object]) -> bytes:
    doc = base()
    fn(doc)
    return json.dumps(doc).encode()


def pol(d: Doc) -> Doc:
    return d["policies"][0]["policy"]  # type: ignore[no-any-return]


def fd(d: Doc, j: int = 0) -> Doc:
    return d["policies"][0]["failure-details"][j]  # type: ignore[no-any-return]


def test_rfc_example_is_clean() -> None:
    report = parse_report(edit(lambda d: None))
    assert report.deviations == ()
    assert report.organization_name == "Company-X"
    assert report.start == datetime(2016, 4, 1, tzinfo=UTC)
    assert report.end == datetime(2016, 4, 1, 23, 59, 59, tzinfo=UTC)
    (p,) = report.policies
    assert p.mx_host == ("*.mail.company-y.example",)
    assert (p.successful_sessions, p.failed_sessions) == (5326, 303)
    assert [d.failed_session_count for d in p.failure_details] == [100, 200, 3]
    assert p.failure_details[1].receiving_ip == "203.0.113.56"
    assert p.failure_details[0].receiving_ip is None
    assert report.contact_domain == "company-x.example"


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def apply(d: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = d
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return apply


_DELETE = object()
P = "policies/0/policy"
F = "policies/0/failure-details"
S = "policies/0/summary"

# (case id, edit, expected deviation code, check on the parsed report or None)
QUIRKS: list[tuple[str, Callable[[Doc], None], str, Callable[[TlsReport], bool] | None]] = [
    ("no-offset", lambda d: d["date-range"].update(
        {"start-datetime": "2016-04-01T00:00:00", "end-datetime": "2016-04-01T23:59:59"}),
     "date.no-offset", lambda r: r.start == datetime(2016, 4, 1, tzinfo=UTC)),
    ("leap-second", _set("date-range/end-datetime", "2016-04-01T23:59:60Z"),
     "date.leap-second", lambda r: r.end.second == 59),
    ("next-midnight", _set("date-range/end-datetime", "2016-04-02T00:00:00Z"),
     "date.end-next-midnight", lambda r: r.end == datetime(2016, 4, 2, tzinfo=UTC)),
    ("seven-days", _set("date-range/end-datetime", "2016-04-07T23:59:59Z"),
     "date.range-not-one-day", None),
    ("contact-null", _set("contact-info", None), "contact-info.null",
     lambda r: r.contact_info is None),
    ("contact-missing", _set("contact-info", _DELETE), "contact-info.missing",
     lambda r: r.contact_info is None),
    ("contact-not-address", _set("contact-info", "https://x.example/"),
     "contact-info.not-addr-spec", None),
    ("org-empty", _set("organization-name", ""), "organization-name.empty", None),
    ("policy-type-unknown", _set(f"{P}/policy-type", "invalid-policy-type"),
     "policy-type.unknown", lambda r: r.policies[0].policy_type == "invalid-policy-type"),
    ("policy-domain-missing", _set(f"{P}/policy-domain", _DELETE), "policy-domain.missing",
     lambda r: r.policies[0].policy_domain == ""),
    ("policy-domain-null", _set(f"{P}/policy-domain", None), "policy-domain.missing", None),
    ("policy-domain-u-label", _set(f"{P}/policy-domain", "bücher.example"),
     "policy-domain.not-a-label", None),
    ("policy-string-missing", _set(f"{P}/policy-string", _DELETE), "policy-string.missing",
     lambda r: r.policies[0].policy_string == ()),
    ("tlsa-json-encoded", lambda d: pol(d).update(
        {"policy-type": "tlsa", "policy-string": ['["3 1 1 AB","3 1 1 CD"]']}),
     "tlsa.policy-string.json-encoded",
     lambda r: r.policies[0].policy_string == ("3 1 1 AB", "3 1 1 CD")),
    ("mx-host-string", _set(f"{P}/mx-host", "*.mail.company-y.example"), "mx-host.string",
     lambda r: r.policies[0].mx_host == ("*.mail.company-y.example",)),
    ("mx-host-missing", _set(f"{P}/mx-host", _DELETE), "mx-host.missing",
     lambda r: r.policies[0].mx_host == ()),
    ("mx-host-prefixed", _set(f"{P}/mx-host", ["mx: mx.server.com"]), "mx-host.prefixed",
     lambda r: r.policies[0].mx_host == ("mx.server.com",)),
    ("mx-host-pattern-key", lambda d: pol(d).update({"mx-host-pattern": pol(d).pop("mx-host")}),
     "mx-host-pattern.key", lambda r: r.policies[0].mx_host == ("*.mail.company-y.example",)),
    ("mx-host-pattern-string", lambda d: pol(d).update(
        {"mx-host-pattern": "mx: mx.example", "mx-host": None}), "mx-host-pattern.key",
     lambda r: r.policies[0].mx_host == ("mx.example",)
     and {"mx-host.string", "mx-host.prefixed"} <= r.deviation_codes),
    ("mx-host-pattern-and-mx-host", lambda d: pol(d).update({"mx-host-pattern": ["other"]}),
     "mx-host-pattern.key",
     lambda r: r.policies[0].mx_host == ("*.mail.company-y.example",)),
    ("failure-details-missing", lambda d: (d["policies"][0].pop("failure-details"),
     d["policies"][0]["summary"].update({"total-failure-session-count": 0})),
     "failure-details.missing", lambda r: r.policies[0].failure_details == ()),
    ("failures-exceed-total", _set(f"{S}/total-failure-session-count", 1),
     "counts.failures-exceed-total", lambda r: r.policies[0].failed_sessions == 1),
    ("failures-without-details", _set(F, []), "counts.failures-without-details", None),
    ("result-type-unknown", _set(f"{F}/0/result-type", "Testing"), "result-type.unknown",
     lambda r: r.policies[0].failure_details[0].result_type == "Testing"),
    ("ip-empty", _set(f"{F}/2/sending-mta-ip", ""), "ip.empty",
     lambda r: r.policies[0].failure_details[2].sending_mta_ip is None),
    ("ip-garbage", _set(f"{F}/2/sending-mta-ip", "x.x.x.x"), "ip.invalid",
     lambda r: r.policies[0].failure_details[2].sending_mta_ip == "x.x.x.x"),
    ("ip-leading-zero", _set(f"{F}/2/receiving-ip", "203.0.113.058"), "ip.invalid", None),
    ("hostname-empty", _set(f"{F}/0/receiving-mx-hostname", ""), "field.empty",
     lambda r: r.policies[0].failure_details[0].receiving_mx_hostname is None),
    ("info-uri-key", lambda d: fd(d, 1).update(
        {"additional-info-uri": fd(d, 1).pop("additional-information")}),
     "additional-info-uri.key",
     lambda r: r.policies[0].failure_details[1].additional_information
     == "https://reports.company-x.example/x"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "change", "code", "check"), QUIRKS, ids=[q[0] for q in QUIRKS])
def test_quirk_is_a_deviation(
    case: str,
    change: Callable[[Doc], None],
    code: str,
    check: Callable[[TlsReport], bool] | None,
) -> None:
    report = parse_report(edit(change))
    assert code in report.deviation_codes, report.deviations
    assert code in DEVIATIONS
    if check is not None:
        assert check(report), report


def test_bom_is_a_deviation() -> None:
    report = parse_report(b"\xef\xbb\xbf" + edit(lambda d: None))
    assert report.deviation_codes == {"json.bom"}


def test_offsets_are_converted_to_utc() -> None:
    report = parse_report(
        edit(_set("date-range", {"start-datetime": "2016-04-01T02:00:00+02:00",
                                 "end-datetime": "2016-04-01T19:59:59.5-04:00"}))
    )  # fmt: skip
    assert report.start == datetime(2016, 4, 1, tzinfo=UTC)
    assert report.end == datetime(2016, 4, 1, 23, 59, 59, 500000, tzinfo=UTC)
    assert report.deviations == ()


def test_str_input_and_extension_members_are_accepted() -> None:
    text = edit(lambda d: d.update({"x-extension": {"nested": [[1, {"a": None}]]}})).decode()
    report = parse_report(text)
    assert report.report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"


# (case id, raw JSON or an edit, expected error code)
ERRORS: list[tuple[str, bytes | Callable[[Doc], None], str]] = [
    ("not-json", b"{", "report.json.invalid"),
    ("empty", b"", "report.json.invalid"),
    ("array", b"[]", "report.json.invalid"),
    ("string", b'"report"', "report.json.invalid"),
    ("not-utf8", b'{"organization-name": "\xff"}', "report.json.invalid"),
    ("trailing", edit(lambda d: None) + b"}", "report.json.invalid"),
    ("not-utf8-in-extension", edit(lambda d: d.update({"x": "@@"})).replace(b"@@", b"\x80"),
     "report.json.invalid"),
    ("nan", edit(lambda d: None).replace(b"5326", b"NaN"), "report.json.invalid"),
    ("no-org", _set("organization-name", _DELETE), "report.field.missing"),
    ("no-date-range", _set("date-range", _DELETE), "report.field.missing"),
    ("no-end", _set("date-range/end-datetime", _DELETE), "report.field.missing"),
    ("no-report-id", _set("report-id", _DELETE), "report.field.missing"),
    ("no-policies", _set("policies", _DELETE), "report.field.missing"),
    ("no-policy", _set("policies/0/policy", _DELETE), "report.field.missing"),
    ("no-summary", _set("policies/0/summary", _DELETE), "report.field.missing"),
    ("no-policy-type", _set(f"{P}/policy-type", _DELETE), "report.field.missing"),
    ("no-total-failure", _set(f"{S}/total-failure-session-count", _DELETE),
     "report.field.missing"),
    ("no-result-type", _set(f"{F}/0/result-type", _DELETE), "report.field.missing"),
    ("no-failed-count", _set(f"{F}/0/failed-session-count", _DELETE), "report.field.missing"),
    ("policies-object", _set("policies", {}), "report.field.type"),
    ("policy-string-nested", _set(f"{P}/policy-string", [["a"]]), "report.field.type"),
    ("org-number", _set("organization-name", 7), "report.field.type"),
    ("ip-number", _set(f"{F}/0/sending-mta-ip", 3232235777), "report.field.type"),
    ("report-id-empty", _set("report-id", ""), "report.field.empty"),
    ("count-string", _set(f"{S}/total-successful-session-count", "5326"),
     "report.count.invalid"),
    ("count-negative", _set(f"{S}/total-successful-session-count", -1), "report.count.invalid"),
    ("count-float", _set(f"{S}/total-successful-session-count", 1.5), "report.count.invalid"),
    ("count-float-integral", _set(f"{S}/total-successful-session-count", 2.0),
     "report.count.invalid"),
    ("count-bool", _set(f"{S}/total-failure-session-count", True), "report.count.invalid"),
    ("count-null", _set(f"{S}/total-failure-session-count", None), "report.count.invalid"),
    ("count-1e400", edit(lambda d: None).replace(b"5326", b"1e400"), "report.count.invalid"),
    ("count-10-400", edit(lambda d: None).replace(b"5326", b"1" + b"0" * 400),
     "report.count.invalid"),
    ("count-2-53", _set(f"{S}/total-successful-session-count", 2**53), "report.count.invalid"),
    ("failed-count-string", _set(f"{F}/0/failed-session-count", "100"),
     "report.count.invalid"),
    ("date-words", _set("date-range/start-datetime", "yesterday"), "report.date.invalid"),
    ("date-only", _set("date-range/start-datetime", "2016-04-01"), "report.date.invalid"),
    ("date-month-13", _set("date-range/start-datetime", "2016-13-01T00:00:00Z"),
     "report.date.invalid"),
    ("date-feb-30", _set("date-range/start-datetime", "2016-02-30T00:00:00Z"),
     "report.date.invalid"),
    ("date-hour-25", _set("date-range/start-datetime", "2016-04-01T25:00:00Z"),
     "report.date.invalid"),
    ("date-bad-offset", _set("date-range/start-datetime", "2016-04-01T00:00:00+25:00"),
     "report.date.invalid"),
    ("date-basic-format", _set("date-range/start-datetime", "20160401T000000Z"),
     "report.date.invalid"),
    ("date-number", _set("date-range/start-datetime", 1459468800), "report.date.invalid"),
    ("date-fullwidth-digits",
     _set("date-range/start-datetime", "\uff12\uff10\uff11\uff16-04-01T00:00:00Z"),
     "report.date.invalid"),
    ("date-arabic-digits-offset",
     _set("date-range/start-datetime", "2016-04-01T00:00:00+\u0660\u0662:00"),
     "report.date.invalid"),
    ("date-week-form", _set("date-range/start-datetime", "2016-W13-5T00:00:00Z"),
     "report.date.invalid"),
    ("date-reversed", _set("date-range/start-datetime", "2016-04-02T00:00:00Z"),
     "report.date.range"),
    ("dupe-root", edit(lambda d: None).replace(b'"report-id"', b'"report-id": "x", "report-id"'),
     "report.json.duplicate-key"),
    ("dupe-count", edit(lambda d: None).replace(
        b'"failed-session-count": 3', b'"failed-session-count": 3, "failed-session-count": 4'),
     "report.json.duplicate-key"),
    ("dupe-escaped", edit(lambda d: None).replace(
        b'"organization-name"', b'"organization-name": "Y", "organization\\u002dname"'),
     "report.json.duplicate-key"),
    ("dupe-spaced", edit(lambda d: None).replace(
        b'"report-id"', b'"report-id" :"a\\":", "report-id"'), "report.json.duplicate-key"),
    ("dupe-mx-host-pattern", edit(lambda d: pol(d).update({"mx-host-pattern": ["a"]})).replace(
        b'"mx-host-pattern"', b'"mx-host-pattern": ["b"], "mx-host-pattern"'),
     "report.json.duplicate-key"),
    ("dupe-in-extension", edit(lambda d: d.update({"x": {"a": 1}})).replace(
        b'"a": 1', b'"a": 1, "a": 2'), "report.json.duplicate-key"),
    # Quotes written \u0022 decode to '"' but are no '"' in the text: four of them must not
    # make up for the four of a repeated member.
    ("dupe-beside-u0022", edit(lambda d: d.update({"organization-name": 'Y""""'})).replace(
        b'\\"', b"\\u0022").replace(b'"report-id"', b'"report-id": "x", "report-id"'),
     "report.json.duplicate-key"),
    # Four strings ending in an escaped backslash: four '\\"' in the text that are no quote in
    # a value, as many as the repeated member's quotes.
    ("dupe-beside-backslashes", edit(lambda d: (
        d.update({"organization-name": "Y\\", "contact-info": "a@b\\"}),
        fd(d).update({"failure-reason-code": "r\\"}))).replace(
        b'"report-id"', b'"report-id": "x\\\\", "report-id"'), "report.json.duplicate-key"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "data", "code"), ERRORS, ids=[e[0] for e in ERRORS])
def test_wrong_kind_is_an_error(case: str, data: bytes | Callable[[Doc], None], code: str) -> None:
    raw = data if isinstance(data, bytes) else edit(data)
    with pytest.raises(ReportError) as info:
        parse_report(raw)
    assert info.value.code == code, info.value
    assert str(info.value)


def nested(depth: int) -> bytes:
    return edit(lambda d: None)[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"


def _many_huge_policies(d: Doc) -> None:
    """1,100 policies of 2**53 - 1 failed sessions each: every count valid, the sum past 2**63."""
    d["policies"].extend(copy.deepcopy(d["policies"]) * 1099)
    for p in d["policies"]:
        p["summary"]["total-failure-session-count"] = 2**53 - 1


LIMITS: list[tuple[str, bytes, Limits, str]] = [
    ("json-bytes", edit(lambda d: None), Limits(max_json_bytes=100), "report.limit.json-bytes"),
    ("depth", nested(40), Limits(), "report.limit.depth"),
    ("depth-small-limit", nested(6), Limits(max_depth=6), "report.limit.depth"),
    ("depth-below-schema", edit(lambda d: None), Limits(max_depth=4), "report.limit.depth"),
    ("depth-huge", nested(200_000), Limits(max_json_bytes=1 << 20), "report.limit.depth"),
    ("policies", edit(lambda d: d["policies"].extend(copy.deepcopy(d["policies"]) * 2)),
     Limits(max_policies=2), "report.limit.policies"),
    ("failure-details", edit(lambda d: None), Limits(max_failure_details=2),
     "report.limit.failure-details"),
    # Each count is within I-JSON's 2**53 - 1; their sums are not within any sane day of mail.
    ("sessions-one-count",
     edit(_set("policies/0/summary/total-successful-session-count", 10**12 + 1)),
     Limits(), "report.limit.sessions"),
    ("sessions-summed-past-int64", edit(_many_huge_policies), Limits(), "report.limit.sessions"),
    ("sessions-detailed",
     edit(_set("policies/0/failure-details/0/failed-session-count", 2**53 - 1)),
     Limits(), "report.limit.sessions"),
    ("sessions-small-limit", edit(lambda d: None), Limits(max_sessions=10),
     "report.limit.sessions"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "data", "limits", "code"), LIMITS, ids=[c[0] for c in LIMITS])
def test_limits_are_typed_errors(case: str, data: bytes, limits: Limits, code: str) -> None:
    with pytest.raises(LimitExceeded) as info:
        parse_report(data, limits=limits)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)


def test_nesting_within_the_limit_is_fine() -> None:
    assert parse_report(nested(20)).report_id


def test_escaped_backslashes_and_quotes_parse() -> None:
    """Strings ending in an escaped backslash (a \\\\ before the closing quote) beside escaped
    quotes: read as sent, no duplicate seen where there is none."""
    report = parse_report(
        edit(lambda d: d.update({"organization-name": "Y\\", "contact-info": 'a@b "q\\"'}))
    )
    assert report.organization_name == "Y\\"
    assert report.contact_info == 'a@b "q\\"'


def test_models_are_genuine_frozen_instances() -> None:
    report = parse_report(edit(lambda d: None))
    p = report.policies[0]
    detail = p.failure_details[0]
    assert type(report) is TlsReport and type(p) is PolicyResult
    assert type(detail) is FailureDetail
    with pytest.raises(AttributeError):
        p.policy_domain = "x"  # type: ignore[misc]
    assert p == PolicyResult(**{f.name: getattr(p, f.name) for f in msgspec.structs.fields(p)})
    assert hash(report) == hash(msgspec.structs.replace(report))
    assert report != msgspec.structs.replace(report, report_id="other")
    # By value, as the dataclasses were: equal, hashable, and a pickle round trip gives an
    # equal report of the same classes.
    again = pickle.loads(pickle.dumps(report))
    assert again == report and hash(again) == hash(report)
    assert type(again.policies[0].failure_details[0]) is FailureDetail
    assert detail == FailureDetail(**as_dict(detail))


def test_as_dict_is_what_dataclasses_asdict_gave() -> None:
    report = parse_report(edit(lambda d: None))
    shown = as_dict(report)
    assert list(shown) == [f.name for f in msgspec.structs.fields(TlsReport)]
    assert shown["start"] == report.start and shown["contact_info"] == report.contact_info
    assert shown["policies"][0]["failure_details"][0] == {
        "result_type": "certificate-expired",
        "failed_session_count": 100,
        "sending_mta_ip": "2001:db8:abcd:0012::1",
        "receiving_mx_hostname": "mx1.mail.company-y.example",
        "receiving_mx_helo": None,
        "receiving_ip": None,
        "additional_information": None,
        "failure_reason_code": None,
    }
    assert shown["policies"][0]["mx_host"] == ("*.mail.company-y.example",)
    assert as_dict(Deviation("a", "/b", "c")) == {"code": "a", "path": "/b", "message": "c"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_reports_round_trip(seed: int) -> None:
    for doc in generate_reports(200, seed=seed, domains=("a.example", "b.example")):
        report = parse_report(to_json_bytes(doc))
        assert report.organization_name == doc["organization-name"]
        assert report.report_id == doc["report-id"]
        assert len(report.policies) == len(doc["policies"])
        for got, want in zip(report.policies, doc["policies"], strict=True):
            assert got.policy_domain == want["policy"]["policy-domain"]
            assert got.successful_sessions == want["summary"]["total-successful-session-count"]
            assert [d.failed_session_count for d in got.failure_details] == [
                d["failed-session-count"] for d in want.get("failure-details", [])
            ]
        assert not {d.code for d in report.deviations} & {"ip.invalid", "result-type.unknown"}


# --- fuzzing: anything JSON-ish gives a report or a ReportError, nothing else ---------------

KEYS = [
    "organization-name", "date-range", "start-datetime", "end-datetime", "contact-info",
    "report-id", "policies", "policy", "policy-type", "policy-string", "policy-domain",
    "mx-host", "summary", "total-successful-session-count", "total-failure-session-count",
    "failure-details", "result-type", "sending-mta-ip", "receiving-ip", "failed-session-count",
]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["2016-04-01T00:00:00Z", "sts", "tlsa", "", "1.2.3.4"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=30,
)


def outcome(parse: Callable[[], TlsReport]) -> None:
    """A report whose deviations are all catalogued, or a ReportError with a code: nothing else."""
    try:
        report = parse()
    except ReportError as exc:
        assert exc.code.startswith(("report.", "mail.")) and str(exc)
    else:
        assert isinstance(report, TlsReport)
        assert all(d.code in DEVIATIONS for d in report.deviations)


def _mutate(doc: Doc, path: list[int], value: object) -> Doc:
    """Replace one node of a valid report, chosen by ``path`` indices, with ``value``."""
    node: Any = doc
    for step in path:
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        if not children:
            break
        key, child = children[step % len(children)]
        if not isinstance(child, dict | list) or step == path[-1]:
            node[key] = value
            return doc
        node = child
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 10), min_size=1, max_size=6), json_values)
def test_fuzz_mutated_reports(path: list[int], value: object) -> None:
    raw = json.dumps(_mutate(base(), path, value)).encode()
    outcome(lambda: parse_report(raw))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_arbitrary_json(value: object) -> None:
    outcome(lambda: parse_report(json.dumps(value)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    outcome(lambda: parse_report(data))


# --- docs and purity ---------------------------------------------------------------------------


def test_deviation_doc_is_current() -> None:
    path = REPO / "docs" / "report-deviations.md"
    text = deviations_markdown()
    if os.environ.get("STSPILOT_REGEN_DOCS"):
        path.write_text(text)
    assert path.read_text() == text, "regenerate: STSPILOT_REGEN_DOCS=1 pytest -k doc"


# --- the address validator (RFC 8460 §4.4, checklist B4.12) -----------------------------------

_IP_FORMS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),  # compressed ("::"), as reporters write them
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
    st.ip_addresses(v=4).map(lambda a: f"64:ff9b::{a}"),
)
_ALMOST_IPS = st.lists(
    st.sampled_from(["", "0", "1", "ff", "abcd", "ABCD", "12345", "1.2.3.4", "01.2.3.4", "g", " "]),
    max_size=10,
).map(":".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_IP_FORMS, _ALMOST_IPS, st.text(alphabet="0123456789abcdef:.%", max_size=45)))
def test_is_ip_agrees_with_ipaddress(text: str) -> None:
    """The one-regex validator accepts exactly what the standard library does, less zone
    indexes ("fe80::1%eth0": an interface of the sender, not an address)."""
    import ipaddress

    from stspilot.tlsrpt.text import is_ip

    try:
        ipaddress.ip_address(text)
        expected = "%" not in text
    except ValueError:
        expected = False
    assert is_ip(text) is expected


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("::", True),
        ("::1", True),
        ("1::", True),
        ("1:2:3:4:5:6:7:8", True),
        ("1:2:3:4:5:6:1.2.3.4", True),
        ("1:2:3:4:5:6:7:8:9", False),
        ("1::2::3", False),
        ("::01.2.3.4", False),
        ("203.0.113.058", False),
        ("fe80::1%eth0", False),
        ("2001:db8::1\n", False),
        # Around the expression's order (IPv6 first, another group before "::", the four
        # octets spelled out): the same answers as ipaddress.
        ("1:2:3:4:5:6:7::", True),
        ("1:2:3:4:5::1.2.3.4", True),
        ("1:2:3:4:5:6::1.2.3.4", False),
        ("1:2:3:4:5:6:7:1.2.3.4", False),
        ("1:2:3:4:5:6:7:8::", False),
        (":1::2", False),
        ("255.255.255.255", True),
        ("0.0.0.0", True),
        ("256.1.1.1", False),
        ("1.2.3", False),
        ("1.2.3.4.5", False),
    ],
)
def test_is_ip_edges(text: str, valid: bool) -> None:
    from stspilot.tlsrpt.text import is_ip

    assert is_ip(text) is valid
