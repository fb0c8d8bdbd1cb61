"""The TLS-RPT wire schema (RFC 8460 §4.4), input limits, and the table of tolerated deviations.

Pure core: no I/O, no clock. ``tlsrpt.reports.parse_report`` decodes into the msgspec structs
below (typed decoding does the kind checks in C) and turns them into the model; the
deviation table is rendered into ``docs/report-deviations.md`` so the docs cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from msgspec import UNSET, UnsetType

from stspilot.tlsrpt.model import Count, FailureDetail

OptStr = str | None | UnsetType  # UNSET = member absent, None = explicit JSON null


@dataclass(frozen=True, slots=True)
class Limits:
    """Size, depth and count caps for untrusted report input (RFC 8460 §7: hostile values)."""

    max_input_bytes: int = 32 * 1024 * 1024  # one file or one mail message as read
    max_compressed_bytes: int = 10 * 1024 * 1024  # one gzip payload (RFC 8460 §5.2: 10 MB)
    max_json_bytes: int = 16 * 1024 * 1024  # one report after decompression
    max_compression_ratio: int = 250  # past the first MiB of output (a bomb is ~1000:1)
    max_depth: int = 32  # JSON nesting; the schema itself needs 5
    max_policies: int = 10_000
    max_failure_details: int = 10_000  # per policy
    # Sessions one report may count: each of its two summary sums over the policies, and the
    # sum of its failure details' counts. A report covers one sender's sessions to one domain
    # for one UTC day (RFC 8460 §4.1); all the world's mail is under 10**12 messages a day, so
    # a larger count is an error or an attack, and the bound keeps every stored sum and every
    # database aggregate over millions of reports inside a signed 64-bit integer.
    max_sessions: int = 10**12
    max_mime_parts: int = 200  # parts walked in one message
    max_reports_per_message: int = 20


DEFAULT_LIMITS = Limits()


# --- wire schema (RFC 8460 §4.4); member names are kebab-case on the wire ---------------------


class WireFailureDetail(msgspec.Struct, rename="kebab", gc=False):
    # Same order as tlsrpt.reports.FailureDetail, so the first 8 values map straight onto it.
    # Absent and null are both None here (unlike the other structs): the parser's fast
    # structure check then sees a mismatch for an explicit null and does the exact check.
    result_type: str
    failed_session_count: Count
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None
    # The prose name of additional-information (RFC 8460 §4.4, checklist E.7); seen in the wild.
    additional_info_uri: str | None = None


class WirePolicy(msgspec.Struct, rename="kebab", frozen=True, gc=False):
    # Frozen, with tuples: hashable, so the parser can cache what it reads from a policy.
    policy_type: str
    policy_string: tuple[str, ...] | UnsetType | None = UNSET
    policy_domain: OptStr = UNSET
    # An array per §4.4 and erratum 6241; a bare string in Appendix B (checklist B4.9, D.8).
    mx_host: tuple[str, ...] | str | UnsetType | None = UNSET
    # The prose name of mx-host (RFC 8460 §4.4, checklist B4.9, E.7): read as mx-host.
    mx_host_pattern: tuple[str, ...] | str | UnsetType | None = UNSET


class WireSummary(msgspec.Struct, rename="kebab", gc=False):
    total_successful_session_count: Count
    total_failure_session_count: Count


class WirePolicyResult(msgspec.Struct, rename="kebab", gc=False):
    policy: WirePolicy
    summary: WireSummary
    failure_details: list[WireFailureDetail] | UnsetType | None = UNSET


class WireDateRange(msgspec.Struct, rename="kebab", gc=False):
    start_datetime: str
    end_datetime: str


class WireReport(msgspec.Struct, rename="kebab", gc=False):
    organization_name: str
    date_range: WireDateRange
    report_id: str
    policies: list[WirePolicyResult]
    contact_info: OptStr = UNSET


REPORT_DECODER: msgspec.json.Decoder[WireReport] = msgspec.json.Decoder(WireReport)


# --- the checked schema: what nearly every report is, checked by msgspec in C ------------------
# ``parse_report`` decodes with CHECKED_DECODER first. Its failure details are decoded straight
# into the model's ``FailureDetail``, whose annotations admit only what the model stores as sent:
# a registered result-type, no empty optional string, no member it does not know
# (additional-info-uri, extensions). The parse still checks the addresses: a ``Meta``
# pattern costs 15k instructions a report more than ``IP_ADDRESS.fullmatch`` from Python, and
# twice the cache misses. Anything else is a ValidationError here, and the report is decoded
# again with REPORT_DECODER, whose loop records the deviations (or raises the error a bad
# report gets): same result, slower path. ``tests/test_reports_checked.py`` holds them equal.
class CheckedPolicyResult(msgspec.Struct, rename="kebab", gc=False):
    policy: WirePolicy
    summary: WireSummary
    failure_details: list[FailureDetail] | UnsetType | None = UNSET


class CheckedReport(msgspec.Struct, rename="kebab", gc=False, kw_only=True):
    # Members in the order reporters write them (RFC 8460 App. B, Google, Microsoft): msgspec
    # looks a member name up from the field after the last one found, so one comparison each.
    organization_name: str
    date_range: WireDateRange
    contact_info: OptStr = UNSET
    report_id: str
    policies: list[CheckedPolicyResult]


CHECKED_DECODER: msgspec.json.Decoder[CheckedReport] = msgspec.json.Decoder(CheckedReport)
STRING_LIST_DECODER: msgspec.json.Decoder[tuple[str, ...]] = msgspec.json.Decoder(tuple[str, ...])


# --- the deviation table ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviationInfo:
    code: str
    stage: str  # "report" (the JSON body) or "mail" (the message or file that carried it)
    what: str  # what the sender did
    handling: str  # what we do with it
    basis: str  # RFC section / checklist item / who sends it


_TABLE: tuple[DeviationInfo, ...] = (
    DeviationInfo(
        "json.bom",
        "report",
        "UTF-8 byte order mark before the JSON text",
        "stripped",
        "RFC 8259 §8.1 (senders MUST NOT add one)",
    ),
    DeviationInfo(
        "date.no-offset",
        "report",
        "date-time without `Z` or ±hh:mm",
        "read as UTC",
        "RFC 3339 §5.6; Microsoft 2024 (checklist D.1)",
    ),
    DeviationInfo(
        "date.leap-second",
        "report",
        "seconds value 60",
        "read as :59",
        "RFC 3339 §5.6 allows it; Python cannot represent it",
    ),
    DeviationInfo(
        "date.end-next-midnight",
        "report",
        "end-datetime is the next day at 00:00:00 instead of 23:59:59",
        "kept as sent",
        "RFC 8460 §4.1, App. B; Mail.ru, Stalwart (D.4, D.6)",
    ),
    DeviationInfo(
        "date.range-not-one-day",
        "report",
        "date range is not one full UTC day",
        "kept as sent",
        "RFC 8460 §4.1 SHOULD (checklist B6.1)",
    ),
    DeviationInfo(
        "contact-info.null",
        "report",
        "`contact-info` is JSON null",
        "stored as no contact",
        "RFC 8460 §4.4; Stalwart-style reporters (D.6)",
    ),
    DeviationInfo(
        "contact-info.missing",
        "report",
        "`contact-info` member absent",
        "stored as no contact",
        "RFC 8460 §4.4",
    ),
    DeviationInfo(
        "contact-info.not-addr-spec",
        "report",
        "`contact-info` is not an e-mail address",
        "kept as sent",
        "RFC 8460 §4.4",
    ),
    DeviationInfo(
        "organization-name.empty",
        "report",
        "`organization-name` is empty",
        "kept as sent",
        "RFC 8460 §4.4",
    ),
    DeviationInfo(
        "policy-type.unknown",
        "report",
        "policy-type is not sts, tlsa or no-policy-found",
        "kept as sent",
        "RFC 8460 §4.4 (checklist B4.6)",
    ),
    DeviationInfo(
        "policy-domain.missing",
        "report",
        "`policy-domain` absent or null",
        "stored as the empty string",
        "sys4 tlsrpt-reporter issue #51 (D.7)",
    ),
    DeviationInfo(
        "policy-domain.not-a-label",
        "report",
        "policy-domain is not ASCII (a U-label instead of an A-label)",
        "kept as sent",
        "RFC 8460 §4.4 MUST (checklist B4.8)",
    ),
    DeviationInfo(
        "policy-string.missing",
        "report",
        "`sts` or `tlsa` policy without `policy-string`",
        "stored as empty",
        "Microsoft fetch errors, Mail.ru (D.3, D.4)",
    ),
    DeviationInfo(
        "tlsa.policy-string.json-encoded",
        "report",
        "`tlsa` policy-string is one string holding a JSON array of RRs",
        "decoded into one string per TLSA RR",
        "Microsoft (D.2); RFC 8460 §4.5",
    ),
    DeviationInfo(
        "mx-host.string",
        "report",
        "`mx-host` is a string, not an array",
        "read as a one-element array",
        "RFC 8460 App. B, erratum 6241 (D.8, E.5)",
    ),
    DeviationInfo(
        "mx-host.missing",
        "report",
        "`sts` policy without `mx-host`",
        "stored as empty",
        "Microsoft, Mail.ru (D.3, D.4)",
    ),
    DeviationInfo(
        "mx-host-pattern.key",
        "report",
        "`mx-host-pattern` used as the member name",
        "read as `mx-host` (when both are sent, `mx-host` wins)",
        "RFC 8460 §4.4 prose (checklist B4.9, E.7)",
    ),
    DeviationInfo(
        "mx-host.prefixed",
        "report",
        "`mx-host` values carry an `mx: ` prefix",
        "prefix removed",
        "cry-inc test data",
    ),
    DeviationInfo(
        "failure-details.missing",
        "report",
        "`failure-details` member absent",
        "read as an empty array",
        "Google without failures (D.5, B4.5)",
    ),
    DeviationInfo(
        "counts.failures-exceed-total",
        "report",
        "sum of failed-session-count exceeds total-failure-session-count",
        "kept as sent (overlapping result types may do this, §4)",
        "RFC 8460 §4 (B4.14); Mail.ru sample (D.4)",
    ),
    DeviationInfo(
        "counts.failures-without-details",
        "report",
        "total-failure-session-count > 0 but no failure details",
        "kept as sent",
        "RFC 8460 §4.4",
    ),
    DeviationInfo(
        "result-type.unknown",
        "report",
        "result-type not in the IANA registry",
        "kept as sent",
        "RFC 8460 §4.3, §6.6 (checklist B5.4)",
    ),
    DeviationInfo(
        "ip.empty",
        "report",
        "an IP address member is the empty string",
        "stored as absent",
        "Google (D.5, PS.MTA-STS PR #33)",
    ),
    DeviationInfo(
        "ip.invalid",
        "report",
        "an IP address member is not an IP address",
        "kept as sent",
        "RFC 8460 §4.4 ABNF (checklist B4.12)",
    ),
    DeviationInfo(
        "field.empty",
        "report",
        "an optional string member (hostname, HELO, URI, reason) is empty",
        "stored as absent",
        "parsedmarc edge-case sample",
    ),
    DeviationInfo(
        "additional-info-uri.key",
        "report",
        "`additional-info-uri` used as the member name",
        "read as `additional-information`",
        "RFC 8460 §4.4 prose (checklist E.7)",
    ),
    DeviationInfo(
        "report-id.no-at",
        "mail",
        "Subject Report-ID is not `<left@right>`",
        "compared leniently with the body",
        "RFC 8460 §5.3; Microsoft, Stalwart (D.3)",
    ),
    DeviationInfo(
        "mail.subject.nonstandard",
        "mail",
        "Subject does not follow `Report Domain: … Submitter: … Report-ID: …`",
        "ignored (the body wins)",
        "RFC 8460 §5.3 SHOULD; Mail.ru",
    ),
    DeviationInfo(
        "mail.headers.missing",
        "mail",
        "TLS-Report-Domain or TLS-Report-Submitter header absent",
        "ignored (the body wins)",
        "RFC 8460 §5.3 MUST (checklist B8.3)",
    ),
    DeviationInfo(
        "mail.domain.mismatch",
        "mail",
        "TLS-Report-Domain or the Subject domain is not a policy domain of the body",
        "the body wins",
        "RFC 8460 §5.6 (checklist B10.1)",
    ),
    DeviationInfo(
        "mail.submitter.mismatch",
        "mail",
        "TLS-Report-Submitter differs from the domain of contact-info",
        "the body wins",
        "RFC 8460 §5.3 MUST; Mail.ru (checklist B8.4)",
    ),
    DeviationInfo(
        "mail.report-id.mismatch",
        "mail",
        "Subject Report-ID does not match the body's report-id",
        "the body wins",
        "RFC 8460 §5.6",
    ),
    DeviationInfo(
        "mail.dkim.missing",
        "mail",
        "no DKIM-Signature header",
        "recorded as an authenticity signal, not verified",
        "RFC 8460 §3 MUST (checklist B3.3)",
    ),
    DeviationInfo(
        "mail.dkim.fail",
        "mail",
        "DKIM signature does not verify",
        "stored anyway, the failure recorded as an authenticity signal (verification is opt-in)",
        "RFC 8460 §3 (receivers may ignore such reports); RFC 6376 §6",
    ),
    DeviationInfo(
        "mail.dkim.domain-mismatch",
        "mail",
        "no DKIM signature whose d= is the submitter or its parent domain",
        "recorded as an authenticity signal",
        "RFC 8460 §3 (checklist B3.3)",
    ),
    DeviationInfo(
        "mail.dkim.headers-unsigned",
        "mail",
        "TLS-Report-Domain/-Submitter are not in any signature's h= list",
        "recorded as an authenticity signal",
        "RFC 8460 §5.3 SHOULD; Microsoft, Mail.ru (B8.5)",
    ),
    DeviationInfo(
        "mail.type.misdeclared",
        "mail",
        "report part not declared application/tlsrpt+gzip or +json",
        "picked by file name and content",
        "RFC 8460 §6.4, §6.5; stalwart rpt02",
    ),
)

DEVIATIONS: dict[str, DeviationInfo] = {d.code: d for d in _TABLE}


def deviations_markdown() -> str:
    """The text of ``docs/report-deviations.md``, generated from the table above."""
    lines = [
        "# TLS-RPT report deviations",
        "",
        "<!-- Generated from stspilot.tlsrpt.schema.DEVIATIONS; do not edit by hand. -->",
        "<!-- Regenerate: STSPILOT_REGEN_DOCS=1 .venv/bin/pytest tests/test_reports.py -k doc -->",
        "",
        "stspilot accepts what real TLS-RPT reporters send. Each departure from RFC 8460 that",
        "it tolerates is recorded on the stored report as a deviation with a stable code.",
        "Values of the wrong kind are refused with a `ReportError` instead (see below).",
        "",
        "| code | stage | what the sender did | what stspilot does | basis |",
        "|---|---|---|---|---|",
    ]
    for d in _TABLE:
        lines.append(f"| `{d.code}` | {d.stage} | {d.what} | {d.handling} | {d.basis} |")
    lines += [
        "",
        "## Refused, with their error codes",
        "",
        "| code | when |",
        "|---|---|",
    ]
    for code, when in REFUSALS:
        lines.append(f"| `{code}` | {when} |")
    lines += [
        "",
        "Duplicate member names are refused (`report.json.duplicate-key`): RFC 8460 §4 requires",
        "I-JSON, whose §2.3 forbids them, no reporter we know sends them, and a silent",
        "last-one-wins choice would let two tools read the same report differently.",
        "",
        "A body `report-id` without `@` is not a deviation: RFC 8460 §4.4 leaves its form to the",
        "reporter (its own example has none). Only the Subject's Report-ID is meant to be",
        "`<left@right>` (§5.3); that is `report-id.no-at`. Unknown extension members are accepted",
        "and ignored (within `Limits.max_depth`).",
        "",
    ]
    return "\n".join(lines)


REFUSALS: tuple[tuple[str, str], ...] = (
    ("report.json.invalid", "not UTF-8, not JSON, or not a JSON object"),
    ("report.json.duplicate-key", "an object repeats a member name (I-JSON, RFC 7493 §2.3)"),
    (
        "report.field.missing",
        "a member every real reporter sends is absent "
        "(organization-name, date-range, report-id, policies, policy, summary, policy-type, "
        "both summary counts, result-type, failed-session-count)",
    ),
    ("report.field.type", "a member has the wrong JSON kind (e.g. policies not an array)"),
    ("report.field.empty", "report-id is empty (it is half of the deduplication key)"),
    (
        "report.count.invalid",
        "a session count is a string, float, boolean, negative or above 2^53-1 (e.g. 10^400)",
    ),
    ("report.date.invalid", "a date-time that is not an RFC 3339 date-time"),
    ("report.date.range", "end-datetime before start-datetime"),
    ("report.limit.json-bytes", "the JSON text is larger than `Limits.max_json_bytes`"),
    ("report.limit.depth", "JSON nesting deeper than `Limits.max_depth`"),
    ("report.limit.policies", "more policies than `Limits.max_policies`"),
    (
        "report.limit.failure-details",
        "more failure details in one policy than `Limits.max_failure_details`",
    ),
    (
        "report.limit.sessions",
        "the report's successful, failed or failure-detail sessions add up to more than "
        "`Limits.max_sessions` (10^12: more than all the world's mail in a day)",
    ),
    ("report.limit.input-bytes", "one file or message is larger than `Limits.max_input_bytes`"),
    (
        "report.limit.compressed-bytes",
        "a gzip payload or report part is larger than `Limits.max_compressed_bytes`",
    ),
    ("report.limit.decompressed-bytes", "gzip expands past `Limits.max_json_bytes`"),
    (
        "report.limit.compression-ratio",
        "past its first MiB, gzip expands more than "
        "`Limits.max_compression_ratio` times (a decompression bomb)",
    ),
    ("report.limit.mime-parts", "a message has more than `Limits.max_mime_parts` parts"),
    (
        "report.limit.reports-per-message",
        "a message carries more than `Limits.max_reports_per_message` reports",
    ),
    ("report.gzip.invalid", "gzip data is corrupt or truncated"),
    ("report.format.unknown", "input is neither JSON, gzip nor an e-mail message"),
    ("mail.no-report", "an e-mail carries no report part (RFC 8460 §5.3)"),
    ("mail.part.invalid", "a part declared or named as a report is neither gzip nor JSON"),
    ("mail.invalid", "the e-mail's MIME structure cannot be read"),
)
