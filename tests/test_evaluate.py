"""evaluate(facts): findings, severities, stage and effective state from hand-built facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stspilot.check.evaluate import CheckResult, PublishedStage, TlsRptState, evaluate
from stspilot.facts import (
    AddressLookup,
    CertInfo,
    DnsStatus,
    DomainFacts,
    FetchOutcome,
    MxHost,
    MxLookup,
    MxProbe,
    PolicyFetch,
    SmtpOutcome,
    TlsFailure,
    TlsResult,
    TxtLookup,
)
from stspilot.findings import CATALOGUE, Severity
from stspilot.sts.policy import Mode

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
D = "example.com"
URL = f"https://mta-sts.{D}/.well-known/mta-sts.txt"
MX1, MX2 = "mx1.example.com", "mx2.example.com"


def cert(host: str, days: int = 60) -> CertInfo:
    return CertInfo(
        subject=f"CN={host}",
        issuer="CN=Test CA",
        dns_names=(host,),
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=days),
        self_signed=False,
    )


def ok_probe(host: str, *, days: int = 60, version: str = "TLSv1.3") -> MxProbe:
    tls = TlsResult(True, version=version, cert=cert(host, days))
    return MxProbe(host, SmtpOutcome.OK, ip="127.0.0.1", tls=tls)


def policy_body(
    mode: str = "enforce", mx: tuple[str, ...] = (MX1, MX2), max_age: int = 604800
) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return ("\n".join(lines) + "\n").encode()


def fetched(
    body: bytes = policy_body(), content_type: str = "text/plain", days: int = 60
) -> PolicyFetch:
    tls = TlsResult(True, version="TLSv1.3", cert=cert(f"mta-sts.{D}", days))
    return PolicyFetch(
        URL, FetchOutcome.OK, status=200, content_type=content_type, body=body, tls=tls
    )


def txt(name: str, *records: bytes, status: DnsStatus = DnsStatus.OK) -> TxtLookup:
    return TxtLookup(name, status, tuple((r,) for r in records))


HEALTHY = DomainFacts(
    domain=D,
    observed_at=NOW,
    sts_txt=txt(f"_mta-sts.{D}", b"v=STSv1; id=20261122"),
    tlsrpt_txt=txt(f"_smtp._tls.{D}", b"v=TLSRPTv1; rua=mailto:tlsrpt@reports.example.net"),
    mx=MxLookup(D, DnsStatus.OK, (MxHost(10, MX1), MxHost(20, MX2))),
    policy=fetched(),
    mx_probes=(ok_probe(MX1), ok_probe(MX2)),
)


def with_probe(probe: MxProbe) -> Callable[[DomainFacts], DomainFacts]:
    def change(facts: DomainFacts) -> DomainFacts:
        others = tuple(p for p in facts.mx_probes if p.host != probe.host)
        return replace(facts, mx_probes=(probe, *others))

    return change


def tls_fail(failure: TlsFailure | None) -> MxProbe:
    return MxProbe(MX2, SmtpOutcome.TLS_FAILED, tls=TlsResult(False, failure, "verify failed"))


def fetch_fail(outcome: FetchOutcome, **kw: object) -> Callable[[DomainFacts], DomainFacts]:
    return lambda f: replace(f, policy=PolicyFetch(URL, outcome, **kw))  # type: ignore[arg-type]


def body(data: bytes, content_type: str = "text/plain") -> Callable[[DomainFacts], DomainFacts]:
    return lambda f: replace(f, policy=fetched(data, content_type))


def sts(*records: bytes, status: DnsStatus = DnsStatus.OK) -> Callable[[DomainFacts], DomainFacts]:
    return lambda f: replace(f, sts_txt=txt(f"_mta-sts.{D}", *records, status=status))


def rpt(*records: bytes, status: DnsStatus = DnsStatus.OK) -> Callable[[DomainFacts], DomainFacts]:
    return lambda f: replace(f, tlsrpt_txt=txt(f"_smtp._tls.{D}", *records, status=status))


def apex(*records: bytes) -> Callable[[DomainFacts], DomainFacts]:
    return lambda f: replace(f, apex_txt=txt(D, b"v=spf1 -all", *records))


def mx(*hosts: str, status: DnsStatus = DnsStatus.OK) -> Callable[[DomainFacts], DomainFacts]:
    return lambda f: replace(
        f, mx=MxLookup(D, status, tuple(MxHost(10 * (i + 1), h) for i, h in enumerate(hosts)))
    )


def chain(*changes: Callable[[DomainFacts], DomainFacts]) -> Callable[[DomainFacts], DomainFacts]:
    def change(facts: DomainFacts) -> DomainFacts:
        for step in changes:
            facts = step(facts)
        return facts

    return change


NO_STS = chain(sts(status=DnsStatus.NXDOMAIN), fetch_fail(FetchOutcome.DNS_FAILURE))
TESTING = body(policy_body("testing", max_age=86400))

# (id, change, expected code, expected severity, expected subject or None)
CASES: list[tuple[str, Callable[[DomainFacts], DomainFacts], str, Severity, str | None]] = [
    # _mta-sts TXT
    ("txt-missing", NO_STS, "sts.txt.missing", Severity.INFO, None),
    ("txt-servfail", sts(status=DnsStatus.SERVFAIL), "sts.txt.lookup-failed", Severity.ERROR, None),
    # Records published at the domain itself: a hint beside the missing record's finding.
    (
        "sts-at-apex",
        chain(sts(status=DnsStatus.NODATA), apex(b"v=STSv1; id=1")),
        "sts.txt.at-apex",
        Severity.WARNING,
        None,
    ),
    (
        "tlsrpt-at-apex",
        chain(rpt(status=DnsStatus.NXDOMAIN), apex(b"v=TLSRPTv1; rua=mailto:a@b.c")),
        "tlsrpt.at-apex",
        Severity.WARNING,
        None,
    ),
    # Without a valid policy served (with one, sts.orphan.policy says it all).
    (
        "txt-not-sts",
        chain(fetch_fail(FetchOutcome.HTTP_STATUS, status=404), sts(b"v=spf1 -all")),
        "sts.txt.not-sts",
        Severity.ERROR,
        None,
    ),
    (
        "txt-multiple",
        sts(b"v=STSv1; id=1", b"v=STSv1; id=2"),
        "sts.txt.multiple",
        Severity.ERROR,
        None,
    ),
    ("txt-syntax", sts(b"v=STSv1 id=1"), "sts.txt.syntax", Severity.ERROR, None),
    ("txt-id-missing", sts(b"v=STSv1;"), "sts.txt.id.missing", Severity.ERROR, None),
    ("txt-id-invalid", sts(b"v=STSv1; id=2026-11-22"), "sts.txt.id.invalid", Severity.ERROR, None),
    ("txt-dup", sts(b"v=STSv1; id=1; id=2"), "sts.txt.duplicate-field", Severity.WARNING, "id"),
    ("txt-ext", sts(b"v=STSv1; id=1; foo=bar"), "sts.txt.extension", Severity.INFO, "foo"),
    (
        "txt-split",
        lambda f: replace(
            f, sts_txt=TxtLookup(f"_mta-sts.{D}", DnsStatus.OK, ((b"v=STSv1; ", b"id=1"),))
        ),
        "sts.txt.split",
        Severity.INFO,
        None,
    ),
    (
        "txt-cname",
        lambda f: replace(
            f, sts_txt=replace(f.sts_txt, cname_chain=("_mta-sts.provider.example",))
        ),
        "sts.txt.cname",
        Severity.INFO,
        None,
    ),
    # policy fetch
    (
        "host-missing",
        fetch_fail(FetchOutcome.DNS_FAILURE),
        "sts.policy.host-missing",
        Severity.ERROR,
        f"mta-sts.{D}",
    ),
    (
        "connect",
        fetch_fail(FetchOutcome.CONNECT_FAILED, error="refused"),
        "sts.policy.connect-failed",
        Severity.ERROR,
        None,
    ),
    (
        "timeout",
        fetch_fail(FetchOutcome.TIMEOUT, elapsed=60.0),
        "sts.policy.timeout",
        Severity.ERROR,
        None,
    ),
    (
        "redirect",
        fetch_fail(FetchOutcome.REDIRECT, status=301, location="https://www.example.com/"),
        "sts.policy.redirect",
        Severity.ERROR,
        None,
    ),
    (
        "http-404",
        fetch_fail(FetchOutcome.HTTP_STATUS, status=404, body=b"nope"),
        "sts.policy.http-status",
        Severity.ERROR,
        None,
    ),
    ("too-large", fetch_fail(FetchOutcome.TOO_LARGE), "sts.policy.too-large", Severity.ERROR, None),
    (
        "protocol",
        fetch_fail(FetchOutcome.PROTOCOL_ERROR),
        "sts.policy.protocol-error",
        Severity.ERROR,
        None,
    ),
    ("blocked", fetch_fail(FetchOutcome.BLOCKED), "sts.policy.blocked", Severity.ERROR, None),
    (
        "tls-expired",
        fetch_fail(
            FetchOutcome.TLS_FAILED,
            tls=TlsResult(False, TlsFailure.EXPIRED, "certificate has expired"),
        ),
        "sts.policy.tls.expired",
        Severity.ERROR,
        None,
    ),
    (
        "policy-not-yet-valid",
        fetch_fail(
            FetchOutcome.TLS_FAILED,
            tls=TlsResult(False, TlsFailure.NOT_YET_VALID, "certificate is not yet valid"),
        ),
        "sts.policy.tls.not-yet-valid",
        Severity.ERROR,
        None,
    ),
    (
        "tls-name",
        fetch_fail(FetchOutcome.TLS_FAILED, tls=TlsResult(False, TlsFailure.HOST_MISMATCH)),
        "sts.policy.tls.host-mismatch",
        Severity.ERROR,
        None,
    ),
    (
        "tls-untrusted",
        fetch_fail(FetchOutcome.TLS_FAILED, tls=TlsResult(False, TlsFailure.UNTRUSTED)),
        "sts.policy.tls.untrusted",
        Severity.ERROR,
        None,
    ),
    (
        "tls-chain-incomplete",
        fetch_fail(FetchOutcome.TLS_FAILED, tls=TlsResult(False, TlsFailure.CHAIN_INCOMPLETE)),
        "sts.policy.tls.chain-incomplete",
        Severity.ERROR,
        None,
    ),
    (
        "tls-self-signed",
        fetch_fail(FetchOutcome.TLS_FAILED, tls=TlsResult(False, TlsFailure.SELF_SIGNED)),
        "sts.policy.tls.untrusted",
        Severity.ERROR,
        None,
    ),
    (
        "tls-handshake",
        fetch_fail(FetchOutcome.TLS_FAILED, tls=TlsResult(False, TlsFailure.HANDSHAKE)),
        "sts.policy.tls.handshake",
        Severity.ERROR,
        None,
    ),
    (
        "tls-unknown",
        fetch_fail(FetchOutcome.TLS_FAILED),
        "sts.policy.tls.handshake",
        Severity.ERROR,
        None,
    ),
    (
        "tls-expiring",
        lambda f: replace(f, policy=fetched(days=5)),
        "sts.policy.tls.expiring",
        Severity.WARNING,
        None,
    ),
    (
        "html",
        body(b"<!DOCTYPE html>\n<html><body>Not found</body></html>", "text/html; charset=utf-8"),
        "sts.policy.html",
        Severity.ERROR,
        None,
    ),
    (
        "html-as-text",
        body(b"  <html>\n<head></head></html>"),
        "sts.policy.html",
        Severity.ERROR,
        None,
    ),
    (
        "content-type",
        body(policy_body(), "application/octet-stream"),
        "sts.policy.content-type",
        Severity.ERROR,
        None,
    ),
    ("no-content-type", body(policy_body(), ""), "sts.policy.content-type", Severity.ERROR, None),
    (
        "charset",
        body(policy_body(), "text/plain; charset=iso-8859-1"),
        "sts.policy.charset",
        Severity.WARNING,
        None,
    ),
    # policy text
    ("syntax", body(b"garbage"), "sts.policy.syntax", Severity.ERROR, None),
    (
        "version",
        body(policy_body().replace(b"STSv1", b"STSv2")),
        "sts.policy.version",
        Severity.ERROR,
        None,
    ),
    ("mode", body(policy_body("report")), "sts.policy.mode", Severity.ERROR, None),
    ("max-age", body(policy_body(max_age=31557601)), "sts.policy.max-age", Severity.ERROR, None),
    ("mx-missing", body(policy_body(mx=())), "sts.policy.mx.missing", Severity.ERROR, None),
    ("mx-invalid", body(policy_body(mx=(".",))), "sts.policy.mx.invalid", Severity.ERROR, None),
    (
        "mx-dup",
        body(policy_body(mx=(MX1, MX2, MX1))),
        "sts.policy.mx.duplicate",
        Severity.INFO,
        MX1,
    ),
    (
        "dup-key",
        body(policy_body() + b"mode: none\n"),
        "sts.policy.duplicate-key",
        Severity.WARNING,
        "mode",
    ),
    (
        "extension",
        body(policy_body() + b"contact: postmaster\n"),
        "sts.policy.extension",
        Severity.INFO,
        "contact",
    ),
    (
        "line-endings",
        body(policy_body().replace(b"\n", b"\r\n", 1)),
        "sts.policy.line-endings",
        Severity.INFO,
        None,
    ),
    ("whitespace", body(policy_body() + b"\n\n"), "sts.policy.whitespace", Severity.INFO, None),
    ("mode-testing", TESTING, "sts.policy.mode-testing", Severity.INFO, None),
    ("mode-none", body(policy_body("none", mx=())), "sts.policy.mode-none", Severity.INFO, None),
    (
        "max-age-short",
        body(policy_body(max_age=86400)),
        "sts.policy.max-age.short",
        Severity.WARNING,
        None,
    ),
    (
        "max-age-long-testing",
        body(policy_body("testing", max_age=604800)),
        "sts.policy.max-age.long-testing",
        Severity.INFO,
        None,
    ),
    (
        "wildcard",
        body(policy_body(mx=("*.example.com",))),
        "sts.policy.mx.wildcard",
        Severity.INFO,
        "*.example.com",
    ),
    # orphans
    (
        "orphan-dns",
        fetch_fail(FetchOutcome.HTTP_STATUS, status=404),
        "sts.orphan.dns",
        Severity.ERROR,
        None,
    ),
    ("orphan-policy", sts(status=DnsStatus.NXDOMAIN), "sts.orphan.policy", Severity.WARNING, None),
    # MX set against the policy
    (
        "not-covered-enforce",
        mx(MX1, MX2, "new.example.org"),
        "sts.mx.not-covered",
        Severity.ERROR,
        "new.example.org",
    ),
    (
        "not-covered-testing",
        chain(TESTING, mx(MX1, MX2, "new.example.org")),
        "sts.mx.not-covered",
        Severity.WARNING,
        "new.example.org",
    ),
    ("pattern-unused", mx(MX1), "sts.mx.pattern-unused", Severity.WARNING, MX2),
    ("mx-missing", mx(status=DnsStatus.NODATA), "dns.mx.missing", Severity.WARNING, None),
    ("domain-nxdomain", mx(status=DnsStatus.NXDOMAIN), "dns.domain.nxdomain", Severity.ERROR, None),
    ("mx-null", mx(""), "dns.mx.null", Severity.INFO, None),
    ("mx-servfail", mx(status=DnsStatus.SERVFAIL), "dns.mx.lookup-failed", Severity.ERROR, None),
    # STARTTLS probes, severity by mode
    (
        "no-address",
        with_probe(
            MxProbe(MX2, SmtpOutcome.NO_ADDRESS, address=AddressLookup(MX2, DnsStatus.NXDOMAIN))
        ),
        "mx.no-address",
        Severity.ERROR,
        MX2,
    ),
    (
        "connect-testing",
        chain(TESTING, with_probe(MxProbe(MX2, SmtpOutcome.CONNECT_FAILED))),
        "mx.connect-failed",
        Severity.WARNING,
        MX2,
    ),
    (
        "connect-no-policy",
        chain(NO_STS, with_probe(MxProbe(MX2, SmtpOutcome.CONNECT_FAILED))),
        "mx.connect-failed",
        Severity.WARNING,
        MX2,
    ),
    (
        "blocked-private",
        chain(NO_STS, with_probe(MxProbe(MX2, SmtpOutcome.BLOCKED, error="private"))),
        "mx.blocked",
        Severity.WARNING,  # reachability: at least a warning, even without a policy
        MX2,
    ),
    (
        "banner-timeout",
        with_probe(MxProbe(MX2, SmtpOutcome.BANNER_TIMEOUT)),
        "mx.banner-timeout",
        Severity.ERROR,
        MX2,
    ),
    (
        "banner-rejected",
        with_probe(MxProbe(MX2, SmtpOutcome.BANNER_REJECTED, banner="554 go away")),
        "mx.banner-rejected",
        Severity.ERROR,
        MX2,
    ),
    (
        "no-starttls",
        with_probe(MxProbe(MX2, SmtpOutcome.NO_STARTTLS)),
        "mx.starttls.missing",
        Severity.ERROR,
        MX2,
    ),
    (
        "no-starttls-testing",
        chain(TESTING, with_probe(MxProbe(MX2, SmtpOutcome.NO_STARTTLS))),
        "mx.starttls.missing",
        Severity.WARNING,
        MX2,
    ),
    (
        "no-starttls-none",
        chain(body(policy_body("none")), with_probe(MxProbe(MX2, SmtpOutcome.NO_STARTTLS))),
        "mx.starttls.missing",
        Severity.INFO,
        MX2,
    ),
    (
        "no-starttls-no-policy",
        chain(NO_STS, with_probe(MxProbe(MX2, SmtpOutcome.NO_STARTTLS))),
        "mx.starttls.missing",
        Severity.INFO,
        MX2,
    ),
    (
        "starttls-rejected",
        with_probe(MxProbe(MX2, SmtpOutcome.STARTTLS_REJECTED)),
        "mx.starttls.rejected",
        Severity.ERROR,
        MX2,
    ),
    (
        "handshake",
        with_probe(tls_fail(TlsFailure.HANDSHAKE)),
        "mx.tls.handshake",
        Severity.ERROR,
        MX2,
    ),
    ("handshake-unknown", with_probe(tls_fail(None)), "mx.tls.handshake", Severity.ERROR, MX2),
    (
        "old-tls",
        with_probe(ok_probe(MX2, version="TLSv1.1")),
        "mx.tls.old-version",
        Severity.ERROR,
        MX2,
    ),
    (
        "old-tls-testing",
        chain(TESTING, with_probe(ok_probe(MX2, version="TLSv1"))),
        "mx.tls.old-version",
        Severity.WARNING,
        MX2,
    ),
    (
        "old-tls-no-policy",
        chain(NO_STS, with_probe(ok_probe(MX2, version="TLSv1"))),
        "mx.tls.old-version",
        Severity.WARNING,
        MX2,
    ),
    ("expired", with_probe(tls_fail(TlsFailure.EXPIRED)), "mx.cert.expired", Severity.ERROR, MX2),
    (
        "self-signed",
        with_probe(tls_fail(TlsFailure.SELF_SIGNED)),
        "mx.cert.self-signed",
        Severity.ERROR,
        MX2,
    ),
    (
        "self-signed-testing",
        chain(TESTING, with_probe(tls_fail(TlsFailure.SELF_SIGNED))),
        "mx.cert.self-signed",
        Severity.WARNING,
        MX2,
    ),
    (
        "untrusted",
        with_probe(tls_fail(TlsFailure.UNTRUSTED)),
        "mx.cert.untrusted",
        Severity.ERROR,
        MX2,
    ),
    (
        "chain-incomplete",
        with_probe(tls_fail(TlsFailure.CHAIN_INCOMPLETE)),
        "mx.cert.chain-incomplete",
        Severity.ERROR,
        MX2,
    ),
    (
        "chain-incomplete-testing",
        chain(TESTING, with_probe(tls_fail(TlsFailure.CHAIN_INCOMPLETE))),
        "mx.cert.chain-incomplete",
        Severity.WARNING,
        MX2,
    ),
    (
        "not-yet-valid",
        with_probe(tls_fail(TlsFailure.NOT_YET_VALID)),
        "mx.cert.not-yet-valid",
        Severity.ERROR,
        MX2,
    ),
    (
        "wrong-name",
        with_probe(tls_fail(TlsFailure.HOST_MISMATCH)),
        "mx.cert.host-mismatch",
        Severity.ERROR,
        MX2,
    ),
    ("expiring", with_probe(ok_probe(MX2, days=3)), "mx.cert.expiring", Severity.WARNING, MX2),
    (
        "mx-timeout",
        with_probe(MxProbe(MX2, SmtpOutcome.TIMEOUT)),
        "mx.timeout",
        Severity.ERROR,
        MX2,
    ),
    (
        "mx-protocol",
        with_probe(MxProbe(MX2, SmtpOutcome.PROTOCOL_ERROR)),
        "mx.protocol-error",
        Severity.ERROR,
        MX2,
    ),
    # TLS-RPT
    ("rpt-missing", rpt(status=DnsStatus.NXDOMAIN), "tlsrpt.missing", Severity.WARNING, None),
    (
        "rpt-missing-no-sts",
        chain(NO_STS, rpt(status=DnsStatus.NXDOMAIN)),
        "tlsrpt.missing",
        Severity.INFO,
        None,
    ),
    ("rpt-servfail", rpt(status=DnsStatus.TIMEOUT), "tlsrpt.lookup-failed", Severity.WARNING, None),
    ("rpt-not", rpt(b"v=spf1 -all"), "tlsrpt.not-tlsrpt", Severity.ERROR, None),
    (
        "rpt-multiple",
        rpt(b"v=TLSRPTv1; rua=mailto:a@x.example", b"v=TLSRPTv1; rua=mailto:b@x.example"),
        "tlsrpt.multiple",
        Severity.ERROR,
        None,
    ),
    (
        "rpt-syntax",
        rpt(b"v=TLSRPTv1 rua=mailto:a@x.example"),
        "tlsrpt.syntax",
        Severity.ERROR,
        None,
    ),
    (
        "rpt-no-rua",
        rpt(b"v=TLSRPTv1; ruf=mailto:a@x.example"),
        "tlsrpt.rua.missing",
        Severity.ERROR,
        None,
    ),
    (
        "rpt-scheme",
        rpt(b"v=TLSRPTv1; rua=http://r.example.net/"),
        "tlsrpt.rua.scheme",
        Severity.ERROR,
        None,
    ),
    (
        "rpt-invalid",
        rpt(b"v=TLSRPTv1; rua=mailto:a@x.example!10m"),
        "tlsrpt.rua.invalid",
        Severity.ERROR,
        None,
    ),
    (
        "rpt-ext",
        rpt(b"v=TLSRPTv1; rua=mailto:a@x.example; x=y"),
        "tlsrpt.extension",
        Severity.INFO,
        "x",
    ),
    (
        "rpt-dup",
        rpt(b"v=TLSRPTv1; rua=mailto:a@x.example; rua=mailto:b@x.example"),
        "tlsrpt.duplicate-field",
        Severity.WARNING,
        "rua",
    ),
    (
        "rpt-split",
        lambda f: replace(
            f,
            tlsrpt_txt=TxtLookup(
                f.tlsrpt_txt.name, DnsStatus.OK, ((b"v=TLSRPTv1; ", b"rua=mailto:a@x.example"),)
            ),
        ),
        "tlsrpt.split",
        Severity.INFO,
        None,
    ),
    (
        "rua-own-domain",
        rpt(b"v=TLSRPTv1; rua=mailto:tlsrpt@example.com"),
        "tlsrpt.rua.depends-on-mx",
        Severity.INFO,
        "example.com",
    ),
    (
        "rua-shared-mx",
        chain(
            rpt(b"v=TLSRPTv1; rua=mailto:tlsrpt@example.org"),
            lambda f: replace(
                f, rua_mx=(MxLookup("example.org", DnsStatus.OK, (MxHost(5, MX1),)),)
            ),
        ),
        "tlsrpt.rua.depends-on-mx",
        Severity.INFO,
        "example.org",
    ),
    # the check itself
    ("deadline", lambda f: replace(f, deadline_hit=True), "check.deadline", Severity.WARNING, None),
]


@pytest.mark.parametrize(
    ("change", "code", "severity", "subject"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_finding_emitted(
    change: Callable[[DomainFacts], DomainFacts], code: str, severity: Severity, subject: str | None
) -> None:
    result = evaluate(change(HEALTHY))
    matching = [
        f for f in result.findings if f.code == code and (subject is None or f.subject == subject)
    ]
    assert matching, f"{code} not in {result.codes()}"
    assert matching[0].severity is severity
    assert matching[0].title == CATALOGUE[code].title
    assert "{" not in matching[0].detail + matching[0].fix, "unfilled template placeholder"
    # most severe first, then by code
    keys = [(-f.severity, f.code, f.subject) for f in result.findings]
    assert keys == sorted(keys)


def _leaf_only(host: str) -> TlsResult:
    sent = replace(cert(host), issuer="CN=R11,O=Let's Encrypt,C=US", chain_length=1)
    detail = "unable to get local issuer certificate"
    return TlsResult(False, TlsFailure.CHAIN_INCOMPLETE, detail, cert=sent, verify_code=20)


def test_a_missing_intermediate_is_named_with_its_issuer_and_the_fix() -> None:
    probe = MxProbe(MX2, SmtpOutcome.TLS_FAILED, tls=_leaf_only(MX2))
    fetch = PolicyFetch(URL, FetchOutcome.TLS_FAILED, tls=_leaf_only(f"mta-sts.{D}"))
    result = evaluate(replace(with_probe(probe)(HEALTHY), policy=fetch))
    assert "mx.cert.untrusted" not in result.codes()
    assert "sts.policy.tls.untrusted" not in result.codes()
    by_code = {f.code: f for f in result.findings}
    mx_finding = by_code["mx.cert.chain-incomplete"]
    assert mx_finding.subject == MX2
    assert "(issuer: CN=R11,O=Let's Encrypt,C=US)" in mx_finding.detail
    assert "it sends only its own certificate" in mx_finding.detail
    assert "fullchain.pem" in mx_finding.fix and "smtpd_tls_chain_files" in mx_finding.fix
    policy_finding = by_code["sts.policy.tls.chain-incomplete"]
    assert policy_finding.subject == f"mta-sts.{D}"
    assert "(issuer: CN=R11" in policy_finding.detail
    assert "nginx ssl_certificate fullchain.pem" in policy_finding.fix
    assert result.effective.reason_code == "sts.policy.tls.chain-incomplete"


def test_healthy_domain_has_no_problem() -> None:
    result = evaluate(HEALTHY)
    assert result.findings == ()
    assert result.worst is None
    assert result.stage is PublishedStage.ENFORCE
    assert result.effective.usable and result.effective.mode is Mode.ENFORCE
    assert result.sts_record is not None and result.sts_record.id == "20261122"
    assert result.tlsrpt.state is TlsRptState.VALID
    assert [(m.host, m.covered_by, m.tls_ok, m.days_to_expiry) for m in result.mx] == [
        (MX1, MX1, True, 60),
        (MX2, MX2, True, 60),
    ]
    assert result.policy_source == policy_body().decode()


# Codes that evaluate never emits on purpose: other parts of stspilot own them.
NOT_FROM_EVALUATE: frozenset[str] = frozenset()
NOT_FROM_EVALUATE_PREFIXES = ("rollout.", "generate.", "dane.")  # dane.*: tests/test_dane.py


def test_catalogue_has_no_dead_codes() -> None:
    emitted = {c[2] for c in CASES}
    expected = {
        code
        for code in CATALOGUE
        if code not in NOT_FROM_EVALUATE and not code.startswith(NOT_FROM_EVALUATE_PREFIXES)
    }
    assert expected - emitted == set(), "catalogue codes no evaluate test emits"
    assert emitted - set(CATALOGUE) == set()


STATES: list[tuple[str, Callable[[DomainFacts], DomainFacts], PublishedStage, bool, str]] = [
    ("enforce", lambda f: f, PublishedStage.ENFORCE, True, "ok"),
    ("testing", TESTING, PublishedStage.TESTING, True, "ok"),
    ("none-mode", body(policy_body("none")), PublishedStage.NONE_MODE, True, "ok"),
    (
        "nothing",
        chain(NO_STS, rpt(status=DnsStatus.NXDOMAIN)),
        PublishedStage.NONE,
        False,
        "sts.txt.missing",
    ),
    ("reporting", NO_STS, PublishedStage.REPORTING, False, "sts.txt.missing"),
    (
        "dns-orphan",
        fetch_fail(FetchOutcome.REDIRECT, status=302),
        PublishedStage.REPORTING,
        False,
        "sts.policy.redirect",
    ),
    (
        "html",
        body(b"<html></html>", "text/html"),
        PublishedStage.REPORTING,
        False,
        "sts.policy.html",
    ),
    # A valid policy sent as text/html: the Content-Type is wrong, the body is no web page.
    (
        "bad-type",
        body(policy_body(), "text/html"),
        PublishedStage.REPORTING,
        False,
        "sts.policy.content-type",
    ),
    (
        "octet",
        body(policy_body(), "application/octet-stream"),
        PublishedStage.REPORTING,
        False,
        "sts.policy.content-type",
    ),
    ("bad-body", body(policy_body("doubt")), PublishedStage.REPORTING, False, "sts.policy.mode"),
    (
        "multiple",
        sts(b"v=STSv1; id=1", b"v=STSv1; id=2"),
        PublishedStage.REPORTING,
        False,
        "sts.txt.multiple",
    ),
    # The _mta-sts lookup itself failed: what is published cannot be known (it said reporting).
    (
        "txt-servfail",
        sts(status=DnsStatus.SERVFAIL),
        PublishedStage.UNKNOWN,
        False,
        "sts.txt.lookup-failed",
    ),
    (
        "txt-timeout",
        sts(status=DnsStatus.TIMEOUT),
        PublishedStage.UNKNOWN,
        False,
        "sts.txt.lookup-failed",
    ),
    (
        "not-fetched",
        lambda f: replace(f, policy=None),
        PublishedStage.REPORTING,
        False,
        "not-fetched",
    ),
]


@pytest.mark.parametrize(
    ("change", "stage", "usable", "reason"), [s[1:] for s in STATES], ids=[s[0] for s in STATES]
)
def test_stage_and_effective_state(
    change: Callable[[DomainFacts], DomainFacts], stage: PublishedStage, usable: bool, reason: str
) -> None:
    result = evaluate(change(HEALTHY))
    assert result.stage is stage
    assert result.effective.usable is usable
    assert result.effective.reason_code == reason
    assert (result.effective.mode is not None) is usable


def test_unusable_policy_does_not_judge_mx_coverage() -> None:
    # A sender without a usable policy checks no patterns: an uncovered MX is then no finding.
    result = evaluate(
        chain(fetch_fail(FetchOutcome.TIMEOUT), mx(MX1, "other.example.org"))(HEALTHY)
    )
    assert "sts.mx.not-covered" not in result.codes()
    assert all(m.covered_by is None for m in result.mx)


def test_mx_verdicts_carry_probe_details() -> None:
    result = evaluate(
        with_probe(tls_fail(TlsFailure.EXPIRED))(mx(MX1, MX2, "third.example.org")(HEALTHY))
    )
    verdicts = {m.host: m for m in result.mx}
    assert verdicts[MX2].probe_outcome == "tls-failed" and verdicts[MX2].tls_ok is False
    assert verdicts[MX2].finding_codes == ("mx.cert.expired",)
    assert verdicts["third.example.org"].probe_outcome == "not-probed"
    assert verdicts["third.example.org"].tls_ok is None
    assert verdicts["third.example.org"].finding_codes == ("sts.mx.not-covered",)


def test_expiry_warning_days_is_a_parameter() -> None:
    facts = with_probe(ok_probe(MX2, days=20))(HEALTHY)
    assert "mx.cert.expiring" not in evaluate(facts).codes()
    assert "mx.cert.expiring" in evaluate(facts, expiry_warning_days=30).codes()


def test_result_is_a_value() -> None:
    first, second = evaluate(HEALTHY), evaluate(HEALTHY)
    assert first == second
    assert isinstance(first, CheckResult)


UNPUBLISHED: list[tuple[str, Callable[[DomainFacts], DomainFacts], set[str], set[str]]] = [
    # (id, change, codes present, codes absent)
    ("no-txt-no-host", NO_STS, {"sts.txt.missing"}, {"sts.policy.host-missing", "sts.orphan.dns"}),
    (
        "no-txt-html-site",
        chain(
            sts(status=DnsStatus.NXDOMAIN), body(b"<html><body>Welcome</body></html>", "text/html")
        ),
        {"sts.txt.missing"},
        {"sts.policy.html", "sts.orphan.policy"},
    ),
    (
        "no-txt-404",
        chain(sts(status=DnsStatus.NODATA), fetch_fail(FetchOutcome.HTTP_STATUS, status=404)),
        {"sts.txt.missing"},
        {"sts.policy.http-status"},
    ),
    (
        "other-txt-no-policy",
        chain(sts(b"azazaza;asdasdasdasd"), fetch_fail(FetchOutcome.DNS_FAILURE)),
        {"sts.txt.not-sts"},
        {"sts.txt.missing", "sts.policy.host-missing"},
    ),
    (
        "orphan-policy-advice-kept",
        chain(sts(status=DnsStatus.NXDOMAIN), TESTING),
        {"sts.orphan.policy", "sts.policy.mode-testing"},
        {"sts.txt.missing"},
    ),
]


@pytest.mark.parametrize(
    ("change", "present", "absent"), [u[1:] for u in UNPUBLISHED], ids=[u[0] for u in UNPUBLISHED]
)
def test_without_txt_record_the_policy_host_is_moot(
    change: Callable[[DomainFacts], DomainFacts], present: set[str], absent: set[str]
) -> None:
    codes = set(evaluate(change(HEALTHY)).codes())
    assert present <= codes
    assert not absent & codes


def test_repeated_notes_are_capped() -> None:
    noisy = policy_body() + b"mode: none\n" * 1000
    result = evaluate(body(noisy)(HEALTHY))
    duplicates = [f for f in result.findings if f.code == "sts.policy.duplicate-key"]
    assert len(duplicates) == 5
    assert "and 995 more like it" in duplicates[-1].detail
    assert result.effective.mode is Mode.ENFORCE  # the first mode line counts


# --- whatever the probes saw, evaluate returns a result ------------------------------------------

_names = st.one_of(
    st.sampled_from([MX1, MX2, "", ".", "MX1.EXAMPLE.COM.", "bücher.example"]), st.text(max_size=20)
)
_txt_records = st.lists(
    st.lists(
        st.one_of(
            st.binary(max_size=30),
            st.sampled_from(
                [b"v=STSv1; id=1", b"v=TLSRPTv1; rua=mailto:a@example.com", b"v=STSv1", b";"]
            ),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    max_size=3,
).map(tuple)
_tls = st.builds(
    TlsResult,
    ok=st.booleans(),
    failure=st.none() | st.sampled_from(TlsFailure),
    version=st.sampled_from(["", "TLSv1", "TLSv1.2", "TLSv1.3"]),
    cert=st.none() | st.integers(-400, 400).map(lambda days: cert(MX1, days)),
)
_fetches = st.none() | st.builds(
    PolicyFetch,
    url=st.just(URL),
    outcome=st.sampled_from(FetchOutcome),
    status=st.none() | st.sampled_from([200, 301, 404, 500]),
    content_type=st.sampled_from(
        ["", "text/plain", "text/html", "text/plain; charset=latin1", ";;=", "TEXT/PLAIN;charset"]
    ),
    body=st.none()
    | st.binary(max_size=200)
    | st.sampled_from([policy_body(), policy_body("testing"), b"<html>"]),
    tls=st.none() | _tls,
)
_probes = st.builds(
    MxProbe, host=_names, outcome=st.sampled_from(SmtpOutcome), tls=st.none() | _tls
)
_facts = st.builds(
    DomainFacts,
    domain=st.just(D),
    observed_at=st.just(NOW),
    sts_txt=st.builds(
        TxtLookup,
        name=st.just(f"_mta-sts.{D}"),
        status=st.sampled_from(DnsStatus),
        records=_txt_records,
    ),
    tlsrpt_txt=st.builds(
        TxtLookup,
        name=st.just(f"_smtp._tls.{D}"),
        status=st.sampled_from(DnsStatus),
        records=_txt_records,
    ),
    mx=st.builds(
        MxLookup,
        name=st.just(D),
        status=st.sampled_from(DnsStatus),
        hosts=st.lists(
            st.builds(MxHost, preference=st.integers(0, 100), host=_names), max_size=4
        ).map(tuple),
    ),
    policy=_fetches,
    mx_probes=st.lists(_probes, max_size=4).map(tuple),
    rua_mx=st.lists(
        st.builds(MxLookup, name=_names, status=st.sampled_from(DnsStatus)), max_size=2
    ).map(tuple),
    deadline_hit=st.booleans(),
)


@settings(max_examples=300)
@given(_facts)
def test_evaluate_never_raises(facts: DomainFacts) -> None:
    result = evaluate(facts)
    assert all(f.code in CATALOGUE for f in result.findings)
    assert result.effective.usable is (
        result.stage in (PublishedStage.ENFORCE, PublishedStage.TESTING, PublishedStage.NONE_MODE)
    )
    keys = [(-f.severity, f.code, f.subject) for f in result.findings]
    assert keys == sorted(keys)


def test_mode_none_does_not_judge_coverage() -> None:
    for patterns in ((), ("old.example.org",)):
        result = evaluate(body(policy_body("none", mx=patterns))(HEALTHY))
        assert result.stage is PublishedStage.NONE_MODE
        assert not {"sts.mx.not-covered", "sts.mx.pattern-unused"} & set(result.codes())


def _with_names(cert_info: CertInfo, *names: str) -> CertInfo:
    return replace(cert_info, dns_names=names)


POLICY_HOST_NAMES = [
    # RFC 8461 §3.3: valid for the DNS-ID mta-sts.<domain>; SAN dNSName only; "*" a whole label
    ((f"mta-sts.{D}",), True),
    ((f"MTA-STS.{D.upper()}",), True),
    ((f"mta-sts.{D}.",), True),
    ((f"*.{D}",), True),
    ((D, f"www.{D}", f"mta-sts.{D}"), True),
    ((), False),  # CN only
    ((D,), False),  # the domain itself
    ((f"*.mta-sts.{D}",), False),
    ((f"m*.{D}",), False),  # partial wildcard
    (("*.com",), False),
    ((f"mta-sts.{D}.evil.example",), False),
    (("mta-sts.provider.example",), False),  # delegation still needs the customer's name (A8.7)
]


@pytest.mark.parametrize(("names", "valid"), POLICY_HOST_NAMES)
def test_policy_host_certificate_must_name_the_policy_host(
    names: tuple[str, ...], valid: bool
) -> None:
    fetch = fetched()
    assert fetch.tls is not None and fetch.tls.cert is not None
    tls = replace(fetch.tls, cert=_with_names(fetch.tls.cert, *names))
    result = evaluate(replace(HEALTHY, policy=replace(fetch, tls=tls)))
    assert result.effective.usable is valid
    assert ("sts.policy.tls.host-mismatch" in result.codes()) is not valid
    assert result.stage is (PublishedStage.ENFORCE if valid else PublishedStage.REPORTING)
    if not valid:
        assert result.effective.reason_code == "sts.policy.tls.host-mismatch"
        assert "sts.mx.not-covered" not in result.codes()


MX_NAMES = [
    ((MX2,), "enforce", None),
    ((MX2.upper() + ".",), "enforce", None),
    (("*.example.com",), "enforce", None),
    ((), "enforce", Severity.ERROR),  # RFC 8461 §4.2: a SAN DNS-ID must match
    (("example.com",), "enforce", Severity.ERROR),
    (("*.mx2.example.com",), "enforce", Severity.ERROR),
    (("mx*.example.com",), "enforce", Severity.ERROR),
    (("mx2.example.com.evil.example",), "testing", Severity.WARNING),
    (("other.example.com",), "none", Severity.INFO),
]


@pytest.mark.parametrize(("names", "mode", "severity"), MX_NAMES)
def test_mx_certificate_must_name_the_mx_host(
    names: tuple[str, ...], mode: str, severity: Severity | None
) -> None:
    probe = ok_probe(MX2)
    assert probe.tls is not None and probe.tls.cert is not None
    tls = replace(probe.tls, cert=_with_names(probe.tls.cert, *names))
    facts = chain(body(policy_body(mode)), with_probe(replace(probe, tls=tls)))(HEALTHY)
    result = evaluate(facts)
    found = [f for f in result.findings if f.code == "mx.cert.host-mismatch"]
    verdict = next(v for v in result.mx if v.host == MX2)
    assert [f.severity for f in found] == ([] if severity is None else [severity])
    assert verdict.tls_ok is (severity is None)
    assert all(f.subject == MX2 for f in found)


UNAVAILABLE = [
    # RFC 8461 §3.1: not exactly one v=STSv1 record, or an invalid one: no policy at all, so the
    # MX hosts are not judged against the (perfectly good) policy file.
    ("several", sts(b"v=STSv1; id=1", b"v=STSv1; id=2"), "sts.txt.multiple"),
    ("several-same", sts(b"v=STSv1; id=1", b"v=STSv1; id=1"), "sts.txt.multiple"),
    ("lenient-filter", sts(b"v=STSv1 ; id=1", b"v=STSv1; id=2"), "sts.txt.multiple"),
    ("invalid-id", sts(b"v=STSv1; id=2026-11-22"), "sts.txt.id.invalid"),
    ("case", sts(b"V=STSv1; id=1"), "sts.txt.not-sts"),
    ("id-case", sts(b"v=STSv1; ID=1"), "sts.txt.id.missing"),
]


@pytest.mark.parametrize(
    ("change", "code"), [u[1:] for u in UNAVAILABLE], ids=[u[0] for u in UNAVAILABLE]
)
def test_no_available_policy_means_no_mx_judgement(
    change: Callable[[DomainFacts], DomainFacts], code: str
) -> None:
    uncovered = chain(change, mx(MX1, "mx9.example.net"))
    result = evaluate(uncovered(HEALTHY))
    assert result.effective.usable is False
    assert result.effective.reason_code == code
    assert result.stage is PublishedStage.REPORTING
    assert not {"sts.mx.not-covered", "sts.mx.pattern-unused"} & set(result.codes())
    assert all(v.covered_by is None for v in result.mx)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "TEXT/PLAIN",  # media types are case-insensitive
        "text/plain; charset=UTF-8",
        'text/plain;charset="us-ascii"',
        "text/plain; format=flowed; charset=utf-8",  # RFC 8461 §3.2: other parameters ignored
    ],
)
def test_plain_text_media_types_are_accepted(content_type: str) -> None:
    result = evaluate(body(policy_body(), content_type)(HEALTHY))
    assert result.effective.usable
    assert not {c for c in result.codes() if c.startswith("sts.policy.")} - {
        "sts.policy.max-age.short"
    }


def _host(*views: MxProbe) -> MxProbe:
    """MX2 over several addresses: each view is what one address showed."""
    from stspilot.facts import AddressProbe
    from stspilot.probes.smtp import worst_address

    probes = [
        AddressProbe(f"192.0.2.{n}", v.outcome, tls=v.tls, error=v.error)
        for n, v in enumerate(views, 1)
    ]
    return replace(MxProbe(MX2, SmtpOutcome.OK).at(worst_address(probes)), by_address=tuple(probes))


@pytest.mark.parametrize(
    ("views", "codes", "says"),
    [
        # The second address serves an expired certificate: an error naming that address.
        ((ok_probe(MX2), tls_fail(TlsFailure.EXPIRED)), ["mx.cert.expired"], "192.0.2.2 (1 of 2)"),
        # Every address alike: one finding about the host, no address named.
        ((tls_fail(TlsFailure.EXPIRED),) * 2, ["mx.cert.expired"], f"{MX2} has"),
        # An address that cannot be reached (a checker without IPv6) decides nothing.
        ((MxProbe(MX2, SmtpOutcome.CONNECT_FAILED, error="no route"), ok_probe(MX2)), [], ""),
        # ... unless no address can be reached.
        ((MxProbe(MX2, SmtpOutcome.CONNECT_FAILED, error="no route"),) * 2,
         ["mx.connect-failed"], ""),
        # Two different failures: one finding each, each naming its address.
        ((tls_fail(TlsFailure.EXPIRED), tls_fail(TlsFailure.SELF_SIGNED)),
         ["mx.cert.expired", "mx.cert.self-signed"], "(1 of 2)"),
    ],
)  # fmt: skip
def test_every_address_of_an_mx_host_is_judged(
    views: tuple[MxProbe, ...], codes: list[str], says: str
) -> None:
    result = evaluate(with_probe(_host(*views))(HEALTHY))
    found = [f for f in result.findings if f.subject == MX2]
    assert sorted(f.code for f in found) == codes
    assert all(says in f.detail for f in found)
    (verdict,) = [m for m in result.mx if m.host == MX2]
    assert [a.ip for a in verdict.addresses] == [f"192.0.2.{n}" for n in range(1, len(views) + 1)]
    assert verdict.tls_ok is (not codes)


def test_a_valid_policy_served_as_html_is_shown_with_a_content_type_finding() -> None:
    """It was called "a web page instead of the policy" and its JSON ``policy`` was null,
    though docs/check-json.md promises the policy whenever its body is valid."""
    from stspilot.check.json_doc import result_to_json

    result = evaluate(body(policy_body(), "text/html; charset=utf-8")(HEALTHY))
    codes = [f.code for f in result.findings]
    assert "sts.policy.content-type" in codes and "sts.policy.html" not in codes
    assert result_to_json(result)["policy"]["mode"] == "enforce"
    page = evaluate(body(b"<!DOCTYPE html><html><body>hi</body></html>", "text/html")(HEALTHY))
    assert "sts.policy.html" in [f.code for f in page.findings]


def test_txt_records_that_are_not_sts_beside_a_valid_policy_are_one_finding() -> None:
    """One finding said "there are TXT records at _mta-sts" and another "there is no _mta-sts
    TXT record". Now one says both halves: the policy is served, no record is MTA-STS."""
    result = evaluate(sts(b"v=spf1 -all")(HEALTHY))
    assert [f.code for f in result.findings] == ["sts.orphan.policy"]
    (orphan,) = result.findings
    assert orphan.severity is Severity.ERROR
    assert "none of the TXT records" in orphan.detail and "v=spf1 -all" in orphan.detail
    missing = evaluate(sts(status=DnsStatus.NXDOMAIN)(HEALTHY))
    (lone,) = [f for f in missing.findings if f.code == "sts.orphan.policy"]
    assert "there is no _mta-sts" in lone.detail and lone.severity is Severity.WARNING


def test_an_apex_without_such_records_gives_no_hint() -> None:
    result = evaluate(chain(sts(status=DnsStatus.NODATA), apex())(HEALTHY))
    assert "sts.txt.at-apex" not in [f.code for f in result.findings]
    hinted = evaluate(chain(sts(status=DnsStatus.NODATA), apex(b"v=STSv1; id=7"))(HEALTHY))
    (hint,) = [f for f in hinted.findings if f.code == "sts.txt.at-apex"]
    assert f'_mta-sts.{D}. TXT "v=STSv1; id=7"' in hint.fix
