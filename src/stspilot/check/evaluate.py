"""Turn what the probes saw for one domain (``DomainFacts``) into a ``CheckResult`` with findings.

Pure core: no I/O, and "now" is ``facts.observed_at``. The result answers three questions: what
is published (``stage``), what a sender without a cached policy would apply (``effective``),
and what is wrong or worth knowing (``findings``, most severe first).

Severity of MX findings follows the policy a sender would apply (RFC 8461 §5): an MX that fails
STARTTLS or certificate checks is an error under ``enforce`` (mail is refused), a warning under
``testing`` (reports only) and information with ``none`` or no usable policy. That part, MX
coverage and the STARTTLS probe judgement, lives in ``coverage``.

Discovery follows RFC 8461 §3.1-§3.3 for a sender without a cached policy: no ``_mta-sts``
record means no fetch (a broken policy host is then moot, A3.14); not exactly one valid record,
a failed fetch, a certificate not valid for ``mta-sts.<domain>`` or an invalid body means no
policy; ``mode: none`` is a policy with no effect (§5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from stspilot.check.coverage import (
    FAILED_LOOKUP,
    MxVerdict,
    cert_valid_for,
    days_until,
    mx_verdicts,
    tls_params,
)
from stspilot.check.dane_verdict import DaneVerdict, dane_verdicts
from stspilot.errors import PolicyError
from stspilot.facts import (
    DnssecResult,
    DnsStatus,
    DomainFacts,
    FetchOutcome,
    PolicyFetch,
    TlsFailure,
    TlsResult,
)
from stspilot.findings import Finding, Note, Severity, make
from stspilot.sts.names import fold_name
from stspilot.sts.policy import Mode, Policy, parse_policy
from stspilot.sts.records import (
    RecordSelection,
    StsRecord,
    TlsRptRecord,
    new_policy_id,
    rua_domains,
    select_sts_record,
    select_tlsrpt_record,
)

WEEK = 7 * 86400
DAY = 86400


class PublishedStage(StrEnum):
    """What the domain publishes now, from one check alone (design.md, "The journey").

    Not the rollout stage (``rollout.Stage``), which also reads the stored history and the
    TLS-RPT reports: a published ``testing`` is the rollout's ``testing`` or ``fixing``, and
    ``none-mode`` its ``winding-down``.
    """

    NONE = "none"  # nothing usable published
    REPORTING = "reporting"  # a valid TLS-RPT record, no usable MTA-STS policy
    TESTING = "testing"
    ENFORCE = "enforce"
    NONE_MODE = "none-mode"  # a usable policy in mode none (switched off or being removed)
    # The _mta-sts TXT lookup itself failed (SERVFAIL, timeout): whether a policy is
    # published cannot be known from this check (RFC 8461 §3.1, §5.1).
    UNKNOWN = "unknown"


class TlsRptState(StrEnum):
    VALID = "valid"
    MISSING = "missing"
    INVALID = "invalid"
    LOOKUP_FAILED = "lookup-failed"


@dataclass(frozen=True, slots=True)
class EffectiveState:
    """What a sender with no cached policy reaches now (RFC 8461 §3.3, §5).

    ``reason_code`` is ``"ok"`` when usable, ``"not-fetched"`` when the check skipped the
    policy fetch, otherwise the catalogue code of the finding that makes the policy unusable.
    """

    usable: bool
    mode: Mode | None
    reason_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class TlsRptVerdict:
    state: TlsRptState
    record: TlsRptRecord | None
    rua: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckResult:
    domain: str
    observed_at: datetime
    stage: PublishedStage
    effective: EffectiveState
    sts_record: StsRecord | None
    policy: Policy | None
    policy_source: str | None  # the policy body as fetched (decoded), when one was read
    tlsrpt: TlsRptVerdict
    mx: tuple[MxVerdict, ...]
    findings: tuple[Finding, ...]  # most severe first, then by code and subject
    deadline_hit: bool
    dane: tuple[DaneVerdict, ...] = ()  # one per MX host when DANE was checked (RFC 7672)
    mx_dnssec: DnssecResult | None = None  # the MX RRset's DNSSEC status (DANE checked)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)


NOTES_PER_CODE = 5  # a file with 10 000 repeated lines is one problem, not 10 000 findings


def _from_notes(notes: Iterable[Note]) -> list[Finding]:
    by_code: dict[str, list[Note]] = {}
    for note in notes:
        by_code.setdefault(note.code, []).append(note)
    found: list[Finding] = []
    for code, same in by_code.items():
        for index, note in enumerate(same[:NOTES_PER_CODE]):
            message = note.message
            if index == NOTES_PER_CODE - 1 and len(same) > NOTES_PER_CODE:
                message += f"; and {len(same) - NOTES_PER_CODE} more like it"
            found.append(make(code, subject=note.subject, note=message))
    return found


# --- the _mta-sts TXT record ------------------------------------------------------------------


def _sts_txt(facts: DomainFacts) -> tuple[RecordSelection[StsRecord] | None, list[Finding]]:
    lookup = facts.sts_txt
    if lookup.status in FAILED_LOOKUP:
        return None, [
            make("sts.txt.lookup-failed", name=lookup.name, error=lookup.error or lookup.status)
        ]
    records = lookup.records if lookup.status is DnsStatus.OK else ()
    selection = select_sts_record(records)
    found = _from_notes(selection.notes)
    if lookup.cname_chain:
        found.append(make("sts.txt.cname", chain=" -> ".join((lookup.name, *lookup.cname_chain))))
    if selection.error_code and selection.error_code != "sts.txt.missing":
        found.append(
            make(
                selection.error_code,
                name=lookup.name,
                error=selection.error,
                record=selection.text or "; ".join(selection.texts),
                new_id=new_policy_id(facts.observed_at),
            )
        )
    return selection, found


# --- the policy fetch and body ------------------------------------------------------------------

_FETCH_CODES = {
    FetchOutcome.DNS_FAILURE: "sts.policy.host-missing",
    FetchOutcome.CONNECT_FAILED: "sts.policy.connect-failed",
    FetchOutcome.TIMEOUT: "sts.policy.timeout",
    FetchOutcome.REDIRECT: "sts.policy.redirect",
    FetchOutcome.HTTP_STATUS: "sts.policy.http-status",
    FetchOutcome.TOO_LARGE: "sts.policy.too-large",
    FetchOutcome.PROTOCOL_ERROR: "sts.policy.protocol-error",
    FetchOutcome.BLOCKED: "sts.policy.blocked",
}
_POLICY_TLS_CODES = {
    TlsFailure.EXPIRED: "sts.policy.tls.expired",
    TlsFailure.HOST_MISMATCH: "sts.policy.tls.host-mismatch",
    TlsFailure.SELF_SIGNED: "sts.policy.tls.untrusted",
    TlsFailure.UNTRUSTED: "sts.policy.tls.untrusted",
    TlsFailure.CHAIN_INCOMPLETE: "sts.policy.tls.chain-incomplete",
    TlsFailure.NOT_YET_VALID: "sts.policy.tls.not-yet-valid",
    TlsFailure.HANDSHAKE: "sts.policy.tls.handshake",
}
_HTML = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]", re.I | re.S)


def _fetch_failure(fetch: PolicyFetch, host: str, domain: str) -> Finding:
    params: dict[str, Any] = {
        "url": fetch.url,
        "host": host,
        "domain": domain,
        "status": fetch.status or "",
        "location": fetch.location,
        "error": fetch.error,
        "elapsed": f"{fetch.elapsed:.1f}",
        **tls_params(fetch.tls),
    }
    if fetch.outcome is FetchOutcome.TLS_FAILED:
        failure = fetch.tls.failure if fetch.tls else None
        code = (
            _POLICY_TLS_CODES.get(failure, "sts.policy.tls.handshake")
            if failure
            else ("sts.policy.tls.handshake")
        )
        return make(code, subject=host, **params)
    # "ok" without a body would be a probe bug; say what a sender would: no readable answer.
    code = _FETCH_CODES.get(fetch.outcome, "sts.policy.protocol-error")
    return make(code, subject=host, **params)


def _content_findings(fetch: PolicyFetch, body: bytes) -> list[Finding]:
    """RFC 8461 §3.2: ``text/plain``; charset utf-8 or us-ascii; an HTML page is never a policy.

    "A web page" is said of a body that is one, whatever its type; a policy sent as
    ``text/html`` is a policy with the wrong Content-Type (and is still parsed and shown).
    """
    media, _, params = fetch.content_type.partition(";")
    media = media.strip().lower()
    if _HTML.match(body[:4096]):
        return [make("sts.policy.html", url=fetch.url, content_type=fetch.content_type or "none")]
    if media != "text/plain":
        return [
            make(
                "sts.policy.content-type", url=fetch.url, content_type=fetch.content_type or "none"
            )
        ]
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "us-ascii"):
            return [make("sts.policy.charset", url=fetch.url, charset=charset)]
    return []


@dataclass(frozen=True, slots=True)
class _PolicyView:
    policy: Policy | None = None
    source: str | None = None
    blocker: Finding | None = None  # the first finding that makes the policy unusable
    findings: tuple[Finding, ...] = ()


def _policy(facts: DomainFacts, now: datetime, warn_days: int) -> _PolicyView:
    fetch = facts.policy
    host = f"mta-sts.{facts.domain}"
    if fetch is None:
        return _PolicyView()
    if fetch.outcome is not FetchOutcome.OK or fetch.body is None:
        failure = _fetch_failure(fetch, host, facts.domain)
        return _PolicyView(blocker=failure, findings=(failure,))
    cert = fetch.tls.cert if fetch.tls else None
    if cert is not None and not cert_valid_for(cert, host):
        # RFC 8461 §3.3: valid for the DNS-ID mta-sts.<domain> itself, whatever the fetch said
        # (a certificate for the domain, the provider or a CN only does not do).
        mismatch = TlsResult(False, TlsFailure.HOST_MISMATCH, "no DNS-ID matches", cert=cert)
        failure = _fetch_failure(
            replace(fetch, outcome=FetchOutcome.TLS_FAILED, tls=mismatch), host, facts.domain
        )
        return _PolicyView(blocker=failure, findings=(failure,))
    found = _content_findings(fetch, fetch.body)
    blocker = next((f for f in found if f.severity is Severity.ERROR), None)
    source = fetch.body.decode("utf-8", errors="replace")
    if cert and 0 <= (days := days_until(cert.not_after, now)) < warn_days:
        found.append(
            make(
                "sts.policy.tls.expiring",
                subject=host,
                host=host,
                days=days,
                **tls_params(fetch.tls),
            )
        )
    if blocker and blocker.code == "sts.policy.html":
        return _PolicyView(None, source, blocker, tuple(found))
    try:
        policy = parse_policy(fetch.body)
    except PolicyError as error:
        failure = make(error.code, url=fetch.url, error=error.message, domain=facts.domain)
        return _PolicyView(None, source, blocker or failure, (*found, failure))
    found += _from_notes(policy.notes)
    found += _policy_advice(policy)
    return _PolicyView(policy, source, blocker, tuple(found))


def _policy_advice(policy: Policy) -> list[Finding]:
    found: list[Finding] = []
    if policy.mode is Mode.TESTING:
        found.append(make("sts.policy.mode-testing", max_age=policy.max_age))
        if policy.max_age > DAY:
            found.append(make("sts.policy.max-age.long-testing", max_age=policy.max_age))
    elif policy.mode is Mode.NONE:
        found.append(make("sts.policy.mode-none", max_age=policy.max_age))
    elif policy.max_age < WEEK:
        found.append(make("sts.policy.max-age.short", max_age=policy.max_age))
    found += [
        make("sts.policy.mx.wildcard", subject=p, pattern=p, zone=p[2:])
        for p in policy.mx
        if p.startswith("*.")
    ]
    return found


# --- TLS-RPT (RFC 8460 §3) ----------------------------------------------------------------------


def _tlsrpt(facts: DomainFacts, sts_published: bool) -> tuple[TlsRptVerdict, list[Finding]]:
    lookup = facts.tlsrpt_txt
    if lookup.status in FAILED_LOOKUP:
        finding = make(
            "tlsrpt.lookup-failed", name=lookup.name, error=lookup.error or lookup.status
        )
        return TlsRptVerdict(TlsRptState.LOOKUP_FAILED, None, ()), [finding]
    records = lookup.records if lookup.status is DnsStatus.OK else ()
    selection = select_tlsrpt_record(records)
    found = _from_notes(selection.notes)
    if selection.error_code == "tlsrpt.missing":
        # Flying blind with MTA-STS published; without it, a gentle first step (design.md stage 1).
        severity = Severity.WARNING if sts_published else Severity.INFO
        found.append(
            make("tlsrpt.missing", name=lookup.name, domain=facts.domain, severity=severity)
        )
        found += _at_apex(facts, b"v=TLSRPTv1", "tlsrpt.at-apex", lookup.name)
        return TlsRptVerdict(TlsRptState.MISSING, None, ()), found
    if selection.record is None:
        found.append(
            make(
                selection.error_code or "tlsrpt.syntax",
                name=lookup.name,
                error=selection.error,
                record=selection.text or "; ".join(selection.texts),
            )
        )
        return TlsRptVerdict(TlsRptState.INVALID, None, ()), found
    record = selection.record
    checked = {fold_name(mx.host) for mx in facts.mx.hosts if mx.host}
    rua_mx = {fold_name(lookup.name): lookup for lookup in facts.rua_mx}
    for domain in rua_domains(record):
        if domain == facts.domain:
            shared = checked
        elif domain in rua_mx:
            shared = {fold_name(h.host) for h in rua_mx[domain].hosts if h.host} & checked
        else:
            continue
        if shared:
            found.append(
                make(
                    "tlsrpt.rua.depends-on-mx",
                    subject=domain,
                    rua_domain=domain,
                    hosts=", ".join(sorted(shared)),
                )
            )
    return TlsRptVerdict(TlsRptState.VALID, record, record.rua), found


# --- putting it together ------------------------------------------------------------------------


def _sort_key(finding: Finding) -> tuple[int, str, str]:
    return (-finding.severity, finding.code, finding.subject)


def _effective(
    facts: DomainFacts, selection: RecordSelection[StsRecord] | None, view: _PolicyView
) -> EffectiveState:
    """RFC 8461 §3.1-§3.3 as a sender without a cached policy meets it, step by step."""
    if selection is None or selection.record is None:
        reason = selection.error if selection else "the TXT lookup failed"
        code = selection.error_code if selection else "sts.txt.lookup-failed"
        return EffectiveState(False, None, code or "sts.txt.missing", reason)
    if facts.policy is None:
        return EffectiveState(False, None, "not-fetched", "the policy was not fetched")
    if view.blocker is not None or view.policy is None:
        blocker = view.blocker or make("sts.policy.syntax")
        reason = blocker.title[:1].lower() + blocker.title[1:]
        return EffectiveState(False, None, blocker.code, reason)
    policy = view.policy
    reason = f"senders apply mode {policy.mode} for {policy.max_age} s"
    return EffectiveState(True, policy.mode, "ok", reason)


def _at_apex(facts: DomainFacts, version: bytes, code: str, name: str) -> list[Finding]:
    """A record meant for ``name`` published at the domain itself (RFC 8461 §3.1 and RFC 8460
    §3 name the exact owner; senders never look at the apex)."""
    apex = facts.apex_txt
    if apex is None or apex.status is not DnsStatus.OK:
        return []
    texts = [b"".join(r) for r in apex.records]
    meant = [t for t in texts if t[: len(version)].lower() == version.lower()]
    if not meant:
        return []
    record = meant[0].decode("utf-8", "replace")[:300]
    return [make(code, domain=facts.domain, name=name, record=record)]


def _orphans(
    facts: DomainFacts, txt_code: str | None, effective: EffectiveState, view: _PolicyView
) -> list[Finding]:
    """RFC 8461 §3.3, §8.3: one half published without the other."""
    domain, new_id = facts.domain, new_policy_id(facts.observed_at)
    if txt_code is None and not effective.usable and facts.policy is not None:
        return [make("sts.orphan.dns", domain=domain, reason=effective.reason)]
    unpublished = txt_code in ("sts.txt.missing", "sts.txt.not-sts")
    if unpublished and view.policy is not None and view.blocker is None:
        if txt_code == "sts.txt.missing":
            txt_state, severity = f"there is no _mta-sts.{domain} TXT record", None
        else:  # records exist, none is MTA-STS: one finding that says so (evaluate drops
            # sts.txt.not-sts, which said "there are records" beside "there is none")
            texts = "; ".join(b"".join(r).decode("utf-8", "replace") for r in facts.sts_txt.records)
            txt_state = (
                f"none of the TXT records at _mta-sts.{domain} begins with v=STSv1 "
                f"(found: {texts[:300]})"
            )
            severity = Severity.ERROR  # someone meant to publish: the record is wrong
        return [
            make(
                "sts.orphan.policy",
                domain=domain,
                mode=view.policy.mode,
                new_id=new_id,
                txt_state=txt_state,
                severity=severity,
            )
        ]
    if txt_code == "sts.txt.missing":
        return [make("sts.txt.missing", domain=domain, new_id=new_id)]
    return []


def _stage(effective: EffectiveState, tlsrpt: TlsRptVerdict) -> PublishedStage:
    if effective.mode is Mode.ENFORCE:
        return PublishedStage.ENFORCE
    if effective.mode is Mode.TESTING:
        return PublishedStage.TESTING
    if effective.mode is Mode.NONE:
        return PublishedStage.NONE_MODE
    if effective.reason_code == "sts.txt.lookup-failed":
        return PublishedStage.UNKNOWN
    return PublishedStage.REPORTING if tlsrpt.state is TlsRptState.VALID else PublishedStage.NONE


def evaluate(facts: DomainFacts, *, expiry_warning_days: int = 14) -> CheckResult:
    """Findings, stage and effective state for one domain; never raises on odd facts."""
    selection, findings = _sts_txt(facts)
    txt_code = selection.error_code if selection else "sts.txt.lookup-failed"
    # "Published": some record at _mta-sts claims to be MTA-STS (even if broken or unreadable).
    published = txt_code not in ("sts.txt.missing", "sts.txt.not-sts")
    view = _policy(facts, facts.observed_at, expiry_warning_days)
    if published or (view.policy is not None and view.blocker is None):
        findings += view.findings  # without a TXT record no sender fetches: a broken host is moot
    effective = _effective(facts, selection, view)
    if txt_code in ("sts.txt.missing", "sts.txt.not-sts"):
        findings += _at_apex(facts, b"v=STSv1", "sts.txt.at-apex", f"_mta-sts.{facts.domain}")
    orphans = _orphans(facts, txt_code, effective, view)
    if any(f.code == "sts.orphan.policy" for f in orphans):  # it tells the TXT state itself
        findings = [f for f in findings if f.code != "sts.txt.not-sts"]
    findings += orphans
    mx_policy = view.policy if effective.usable else None
    verdicts, mx_findings = mx_verdicts(facts, mx_policy, effective.mode, expiry_warning_days)
    findings += mx_findings
    tlsrpt, tlsrpt_findings = _tlsrpt(facts, published or effective.usable)
    findings += tlsrpt_findings
    sts_applies = effective.usable and effective.mode in (Mode.ENFORCE, Mode.TESTING)
    dane, dane_findings = dane_verdicts(
        facts, warn_days=expiry_warning_days, sts_applies=sts_applies
    )
    findings += dane_findings
    if facts.deadline_hit:
        findings.append(make("check.deadline", domain=facts.domain))
    return CheckResult(
        domain=facts.domain,
        observed_at=facts.observed_at,
        stage=_stage(effective, tlsrpt),
        effective=effective,
        sts_record=selection.record if selection else None,
        policy=view.policy,
        policy_source=view.source,
        tlsrpt=tlsrpt,
        mx=verdicts,
        findings=tuple(sorted(findings, key=_sort_key)),
        deadline_hit=facts.deadline_hit,
        dane=dane,
        mx_dnssec=facts.mx_dnssec,
    )
