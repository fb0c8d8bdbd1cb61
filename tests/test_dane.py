"""DANE, pure parts: the TLSA parser (table + hypothesis), chain matching and the verdicts.

No sockets: chains are made with trustme, DNSSEC verdicts are given as facts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace

import pytest
import trustme
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from stspilot.check.dane import (
    MatchFailure,
    TlsaRecord,
    association,
    effective_records,
    match_chain,
    name_matches,
    parse_tlsa,
)
from stspilot.check.dane_verdict import DaneState, dane_verdicts
from stspilot.check.evaluate import evaluate
from stspilot.errors import ParseError
from stspilot.facts import (
    AddressProbe,
    DnssecResult,
    DnssecStatus,
    DnsStatus,
    DomainFacts,
    MxHost,
    MxLookup,
    MxProbe,
    SmtpOutcome,
    TlsaLookup,
    TlsResult,
    TxtLookup,
)
from stspilot.findings import CATALOGUE, Severity
from stspilot.rollout.evidence import live_state_from_check

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
HOST = "mx1.example.test"
DOMAIN = "example.test"


def _der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    root = trustme.CA()
    inter = root.create_child_ca()
    leaf = inter.issue_cert(HOST, not_before=NOW - dt.timedelta(days=1),
                            not_after=NOW + dt.timedelta(days=60))  # fmt: skip
    other = inter.issue_cert("other.example.test")
    expiring = inter.issue_cert(HOST, not_before=NOW - dt.timedelta(days=80),
                                not_after=NOW + dt.timedelta(days=3))  # fmt: skip
    return {
        "leaf": _der(leaf.cert_chain_pems[0].bytes()),
        "inter": _der(leaf.cert_chain_pems[1].bytes()),
        "root": _der(root.cert_pem.bytes()),
        "other": _der(other.cert_chain_pems[0].bytes()),
        "expiring": _der(expiring.cert_chain_pems[0].bytes()),
    }


def _rec(params: str, der: bytes) -> TlsaRecord:
    u, s, m = (int(x) for x in params.split())
    return TlsaRecord(u, s, m, association(der, s, m))


# --- the parser ---

PARSE_CASES = [
    ("3 1 1 " + "ab" * 32, (3, 1, 1, 32)),
    ("2 0 2 " + "AB" * 64, (2, 0, 2, 64)),
    ("3 1 1 " + "ab" * 16 + " " + "cd" * 16, (3, 1, 1, 32)),  # hex may contain spaces
    ("255 255 255 00", (255, 255, 255, 1)),
]
BAD_CASES = ["", "3 1 1", "3 1 1 xyz", "256 1 1 00", "-1 1 1 00", "3 1 1 abc", "3 a 1 00",
             "3 1 1 " + "é" * 4, "3 1 1 " + "00" * 5000]  # fmt: skip


@pytest.mark.parametrize(("text", "want"), PARSE_CASES)
def test_parse_tlsa(text: str, want: tuple[int, int, int, int]) -> None:
    record = parse_tlsa(text)
    assert (record.usage, record.selector, record.matching_type, len(record.data)) == want


@pytest.mark.parametrize("text", BAD_CASES)
def test_parse_tlsa_rejects(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_tlsa(text)
    assert info.value.code == "dane.tlsa.syntax"


@given(st.text(max_size=300))
def test_parse_tlsa_never_crashes(text: str) -> None:
    try:
        record = parse_tlsa(text)
    except ParseError:
        return
    assert 0 <= record.usage <= 255 and len(record.data) <= 4096


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(min_size=1, max_size=80),
)
def test_parse_tlsa_round_trips(u: int, s: int, m: int, data: bytes) -> None:
    record = TlsaRecord(u, s, m, data)
    assert parse_tlsa(record.to_text()) == record


USABLE_CASES = [
    (TlsaRecord(3, 1, 1, b"\0" * 32), ""),
    (TlsaRecord(2, 0, 2, b"\0" * 64), ""),
    (TlsaRecord(3, 1, 1, b"\0" * 31), "digest of 31 octets where 32 belong"),
    (TlsaRecord(1, 1, 1, b"\0" * 32), "usage 1 (PKIX) is not for SMTP"),
    (TlsaRecord(0, 0, 1, b"\0" * 32), "usage 0 (PKIX) is not for SMTP"),
    (TlsaRecord(4, 1, 1, b"\0" * 32), "unknown usage 4"),
    (TlsaRecord(3, 2, 1, b"\0" * 32), "unknown selector 2"),
    (TlsaRecord(3, 1, 3, b"\0" * 32), "unknown matching type 3"),
]


@pytest.mark.parametrize(("record", "reason"), USABLE_CASES)
def test_unusable_reasons(record: TlsaRecord, reason: str) -> None:
    assert record.unusable_reason == reason


def test_digest_agility_keeps_the_strongest() -> None:
    weak, strong = TlsaRecord(3, 1, 1, b"\1" * 32), TlsaRecord(3, 1, 2, b"\2" * 64)
    full = TlsaRecord(3, 0, 0, b"\3" * 10)
    assert effective_records([weak, strong, full]) == (strong, full)
    assert effective_records([weak]) == (weak,)


@pytest.mark.parametrize(
    ("pattern", "reference", "ok"),
    [
        ("mx1.example.test", "mx1.example.test", True),
        ("*.example.test", "mx1.example.test", True),
        ("*.example.test", "a.mx1.example.test", False),
        ("*.example.test", "example.test", False),
        ("mx*.example.test", "mx1.example.test", False),
    ],
)
def test_name_matches(pattern: str, reference: str, ok: bool) -> None:
    assert name_matches(pattern, reference) is ok


# --- matching (RFC 7672 §3.1), table-driven ---

MATCH_CASES = [
    # (id, records [(params, cert key)], served chain keys, ok, failure)
    ("ee-spki", [("3 1 1", "leaf")], ["leaf", "inter"], True, MatchFailure.NONE),
    ("ee-cert-512", [("3 0 2", "leaf")], ["leaf"], True, MatchFailure.NONE),
    ("ee-full", [("3 1 0", "leaf")], ["leaf"], True, MatchFailure.NONE),
    ("ee-other-key", [("3 1 1", "other")], ["leaf", "inter"], False, MatchFailure.NO_MATCH),
    ("ee-ignores-issuer", [("3 1 1", "inter")], ["leaf", "inter"], False, MatchFailure.NO_MATCH),
    ("ta-inter", [("2 1 1", "inter")], ["leaf", "inter"], True, MatchFailure.NONE),
    ("ta-inter-cert", [("2 0 1", "inter")], ["leaf", "inter"], True, MatchFailure.NONE),
    ("ta-root-sent", [("2 0 1", "root")], ["leaf", "inter", "root"], True, MatchFailure.NONE),
    ("ta-root-not-sent", [("2 0 1", "root")], ["leaf", "inter"], False, MatchFailure.TA_NOT_SENT),
    # "2 0 0" carries the TA certificate itself, so the server may leave it out (RFC 7671 §5.2.2)
    ("ta-2-0-0-not-sent", [("2 0 0", "root")], ["leaf", "inter"], True, MatchFailure.NONE),
    ("ta-2-0-0-no-path", [("2 0 0", "other")], ["leaf", "inter"], False, MatchFailure.TA_PATH),
    ("ta-leaf-other-name", [("2 1 1", "inter")], ["other", "inter"], False, MatchFailure.TA_NAME),
    ("pkix-only", [("1 1 1", "leaf")], ["leaf"], False, MatchFailure.NO_MATCH),
    (
        "pair-one-matches",
        [("3 1 1", "other"), ("3 1 1", "leaf")],
        ["leaf"],
        True,
        MatchFailure.NONE,
    ),
    ("empty-chain", [("3 1 1", "leaf")], [], False, MatchFailure.NO_CHAIN),
]


@pytest.mark.parametrize(
    ("records", "chain", "ok", "failure"),
    [pytest.param(*case[1:], id=case[0]) for case in MATCH_CASES],
)
def test_match_chain(
    pki: dict[str, bytes],
    records: list[tuple[str, str]],
    chain: list[str],
    ok: bool,
    failure: MatchFailure,
) -> None:
    tlsa = [_rec(params, pki[key]) for params, key in records]
    served = [pki[key] for key in chain]
    result = match_chain(tlsa, served, references=[HOST], now=NOW)
    assert (result.ok, result.failure) == (ok, failure)


def test_dane_ta_checks_the_name(pki: dict[str, bytes]) -> None:
    tlsa = [_rec("2 1 1", pki["inter"])]
    result = match_chain(tlsa, [pki["leaf"], pki["inter"]], references=["mx9.other.test"], now=NOW)
    assert (result.ok, result.failure) == (False, MatchFailure.TA_NAME)
    # the domain counts too when the MX RRset is secure (RFC 7672 §3.2.2)
    ok = match_chain(tlsa, [pki["leaf"], pki["inter"]], references=["x.test", HOST], now=NOW)
    assert ok.ok


def test_dane_ta_checks_dates_but_dane_ee_does_not(pki: dict[str, bytes]) -> None:
    later = NOW + dt.timedelta(days=400)
    chain = [pki["leaf"], pki["inter"]]
    ta = match_chain([_rec("2 1 1", pki["inter"])], chain, references=[HOST], now=later)
    assert (ta.ok, ta.failure) == (False, MatchFailure.TA_DATES)
    ee = match_chain([_rec("3 1 1", pki["leaf"])], chain, references=[], now=later)
    assert ee.ok  # RFC 7672 §3.1.1: DANE-EE ignores names and dates


def test_dane_ta_path_must_verify(pki: dict[str, bytes]) -> None:
    # "other" is issued by the same intermediate, but a root sent as the issuer did not sign it
    result = match_chain(
        [_rec("2 0 1", pki["root"])], [pki["other"], pki["root"]], references=[HOST], now=NOW
    )
    assert (result.ok, result.failure) == (False, MatchFailure.TA_PATH)


# --- verdicts and findings ---

SECURE = DnssecResult(DnssecStatus.SECURE, signer=DOMAIN)


def _facts(
    lookups: list[TlsaLookup],
    chains: dict[str, tuple[bytes, ...]],
    *,
    mx_dnssec: DnssecResult = SECURE,
    tls_ok: bool = True,
    outcome: SmtpOutcome = SmtpOutcome.OK,
) -> DomainFacts:
    hosts = [lookup.host for lookup in lookups]
    return DomainFacts(
        domain=DOMAIN,
        observed_at=NOW,
        sts_txt=TxtLookup(f"_mta-sts.{DOMAIN}", DnsStatus.NXDOMAIN),
        tlsrpt_txt=TxtLookup(f"_smtp._tls.{DOMAIN}", DnsStatus.NXDOMAIN),
        mx=MxLookup(
            DOMAIN, DnsStatus.OK, tuple(MxHost(10 * (i + 1), h) for i, h in enumerate(hosts))
        ),
        mx_probes=tuple(
            MxProbe(h, outcome, tls=TlsResult(ok=tls_ok), chain=chains.get(h, ())) for h in hosts
        ),
        mx_dnssec=mx_dnssec,
        tlsa=tuple(lookups),
    )


def _lookup(host: str, records: list[TlsaRecord], dnssec: DnssecResult = SECURE) -> TlsaLookup:
    status = DnsStatus.OK if records else DnsStatus.NXDOMAIN
    texts = tuple(r.to_text() for r in records)
    return TlsaLookup(host, f"_25._tcp.{host}", status, dnssec, texts)


def test_verdict_table(pki: dict[str, bytes]) -> None:
    leaf, other = _rec("3 1 1", pki["leaf"]), _rec("3 1 1", pki["other"])
    chain = (pki["leaf"], pki["inter"])
    bogus = DnssecResult(DnssecStatus.BOGUS, "RRSIG on x TLSA: expired")
    insecure = DnssecResult(DnssecStatus.INSECURE, "no DS")
    failed = DnssecResult(DnssecStatus.INDETERMINATE, "lookup failed: timeout")
    cases = [
        ([leaf], SECURE, DaneState.MATCH, {"dane.match", "dane.rollover.single"}),
        ([leaf, other], SECURE, DaneState.MATCH, {"dane.match", "dane.stale-record"}),
        ([other], SECURE, DaneState.MISMATCH, {"dane.mismatch"}),
        ([leaf], bogus, DaneState.BOGUS, {"dane.bogus"}),
        ([leaf], insecure, DaneState.INSECURE, {"dane.insecure"}),
        ([], SECURE, DaneState.NONE, set()),
        ([_rec("1 1 1", pki["leaf"])], SECURE, DaneState.UNUSABLE,
         {"dane.pkix-usage", "dane.unusable"}),
        # a digest of the wrong length: that record skipped, the rest judged (RFC 6698 §2.1)
        ([leaf, TlsaRecord(3, 1, 1, b"\xcd" * 20)], SECURE, DaneState.MATCH,
         {"dane.match", "dane.rollover.single", "dane.record.unusable"}),
        ([TlsaRecord(3, 1, 1, b"\xcd" * 20)], SECURE, DaneState.UNUSABLE, {"dane.unusable"}),
    ]  # fmt: skip
    for records, dnssec, state, codes in cases:
        lookup = _lookup(HOST, records, dnssec)
        verdicts, findings = dane_verdicts(_facts([lookup], {HOST: chain}))
        assert (verdicts[0].state, {f.code for f in findings}) == (state, codes), records
    timeout = TlsaLookup(HOST, f"_25._tcp.{HOST}", DnsStatus.TIMEOUT, failed, error="timeout")
    verdicts, findings = dane_verdicts(_facts([timeout], {HOST: chain}))
    assert verdicts[0].state is DaneState.LOOKUP_FAILED
    assert [f.code for f in findings] == ["dane.lookup-failed"]


def test_no_tls_with_secure_tlsa_blocks(pki: dict[str, bytes]) -> None:
    lookup = _lookup(HOST, [_rec("3 1 1", pki["leaf"])])
    facts = _facts([lookup], {}, tls_ok=False, outcome=SmtpOutcome.NO_STARTTLS)
    verdicts, findings = dane_verdicts(facts)
    assert verdicts[0].state is DaneState.NO_TLS and verdicts[0].state.blocks_mail
    assert [f.code for f in findings] == ["dane.no-tls"]


def test_partial_insecure_mx_and_expiring(pki: dict[str, bytes]) -> None:
    mx2 = "mx2.example.test"
    lookups = [_lookup(HOST, [_rec("3 1 1", pki["expiring"]), _rec("3 1 1", pki["other"])]),
               _lookup(mx2, [])]  # fmt: skip
    facts = _facts(
        lookups,
        {HOST: (pki["expiring"], pki["inter"])},
        mx_dnssec=DnssecResult(DnssecStatus.INSECURE, "no DS for example.test"),
    )
    _, findings = dane_verdicts(facts, warn_days=14)
    assert {f.code for f in findings} == {
        "dane.match",
        "dane.stale-record",
        "dane.partial",
        "dane.mx.insecure",
        "dane.cert.expiring",
    }


def test_mismatch_is_an_error_whatever_the_sts_mode(pki: dict[str, bytes]) -> None:
    """RFC 8461 §2: MTA-STS never overrides a DANE failure; here there is no MTA-STS at all."""
    facts = _facts([_lookup(HOST, [_rec("3 1 1", pki["other"])])], {HOST: (pki["leaf"],)})
    result = evaluate(facts)
    mismatch = next(f for f in result.findings if f.code == "dane.mismatch")
    assert mismatch.severity is Severity.ERROR
    want = "3 1 1 " + association(pki["leaf"], 1, 1).hex()
    assert want in mismatch.fix
    assert result.dane[0].state is DaneState.MISMATCH
    # ... and reaches the rollout as a DANE problem of the host (gate criterion "dane")
    (state,) = live_state_from_check(result).mx
    assert (state.dane, state.dane_problem.split(":")[0]) == ("mismatch", "mismatch")


def test_bogus_mx_and_sts_disagree(pki: dict[str, bytes]) -> None:
    bogus = DnssecResult(DnssecStatus.BOGUS, "RRSIG on example.test MX: expired")
    facts = _facts(
        [_lookup(HOST, [_rec("3 1 1", pki["leaf"]), _rec("3 1 1", pki["other"])])],
        {HOST: (pki["leaf"],)},
        mx_dnssec=bogus,
        tls_ok=False,
    )
    _, findings = dane_verdicts(facts, sts_applies=True)
    assert {f.code for f in findings} == {
        "dane.mx.bogus",
        "dane.match",
        "dane.stale-record",
        "dane.sts-disagree",
    }


def test_no_dane_facts_no_verdicts() -> None:
    facts = _facts([], {})
    assert dane_verdicts(facts.__class__(**{**_asdict(facts), "mx_dnssec": None})) == ((), [])


def _asdict(facts: DomainFacts) -> dict[str, object]:
    return {name: getattr(facts, name) for name in facts.__dataclass_fields__}


def test_every_dane_code_is_tested_somewhere() -> None:
    """The dane.* codes of the catalogue: each emitted by a test here or a lab scenario."""
    from stspilot.lab.scenarios import SCENARIOS

    here = {
        "dane.match", "dane.mismatch", "dane.no-tls", "dane.unusable", "dane.pkix-usage",
        "dane.insecure", "dane.bogus", "dane.lookup-failed", "dane.mx.bogus",
        "dane.mx.insecure", "dane.partial", "dane.rollover.single", "dane.stale-record",
        "dane.cert.expiring", "dane.sts-disagree",
    }  # fmt: skip
    in_lab = {code for sc in SCENARIOS for code in sc.expected if code.startswith("dane.")}
    dane_codes = {code for code in CATALOGUE if code.startswith("dane.")}
    assert dane_codes == here | in_lab


def test_association_digests(pki: dict[str, bytes]) -> None:
    assert association(pki["leaf"], 0, 1) == hashlib.sha256(pki["leaf"]).digest()
    assert association(pki["leaf"], 0, 0) == pki["leaf"]
    assert len(association(pki["leaf"], 1, 2)) == 64


# --- bad input: malformed TLSA data served as secure, every address judged ---

TLSA_TEXTS = st.lists(
    st.one_of(
        st.text(max_size=120),
        st.builds(
            lambda u, s_, m, data: f"{u} {s_} {m} {data.hex()}",
            st.integers(0, 300), st.integers(0, 300), st.integers(0, 300),
            st.binary(max_size=70),
        ),
    ),
    min_size=1,
    max_size=6,
)  # fmt: skip


@given(TLSA_TEXTS)
def test_malformed_tlsa_records_are_findings_never_a_traceback(texts: list[str]) -> None:
    lookup = TlsaLookup(HOST, f"_25._tcp.{HOST}", DnsStatus.OK, SECURE, tuple(texts))
    facts = _facts([lookup], {HOST: (b"not a certificate",)})
    verdicts, findings = dane_verdicts(facts)
    assert len(verdicts) == 1 and all(f.code in CATALOGUE for f in findings)
    assert len(verdicts[0].reason) <= 400


def test_garbled_records_only_are_unusable_with_the_reason(pki: dict[str, bytes]) -> None:
    texts = ("3 1 1 zz", "3 1 1 " + "ab" * 31, "3 1")
    lookup = TlsaLookup(HOST, f"_25._tcp.{HOST}", DnsStatus.OK, SECURE, texts)
    verdicts, findings = dane_verdicts(_facts([lookup], {HOST: (pki["leaf"],)}))
    assert verdicts[0].state is DaneState.UNUSABLE
    assert "digest of 31 octets" in verdicts[0].reason and "not hex" in verdicts[0].reason
    assert {f.code for f in findings} == {"dane.unusable"}


def test_every_address_is_judged_the_worst_decides(pki: dict[str, bytes]) -> None:
    leaf = _rec("3 1 1", pki["leaf"])
    good = AddressProbe("192.0.2.1", SmtpOutcome.OK, tls=TlsResult(ok=True), chain=(pki["leaf"],))
    bad = AddressProbe("192.0.2.2", SmtpOutcome.OK, tls=TlsResult(ok=True), chain=(pki["other"],))
    gone = AddressProbe("192.0.2.3", SmtpOutcome.TIMEOUT, error="timed out")
    facts = _facts([_lookup(HOST, [leaf])], {})
    for sites, state, ip in [
        ((good, bad, gone), DaneState.MISMATCH, "192.0.2.2"),
        ((gone, good), DaneState.MATCH, "192.0.2.1"),  # the unreachable one does not decide
        ((gone,), DaneState.NOT_CHECKED, "192.0.2.3"),
    ]:
        host = MxProbe(HOST, SmtpOutcome.OK, by_address=sites).at(sites[0])
        probe = MxProbe(HOST, host.outcome, ip=host.ip, tls=host.tls, by_address=sites,
                        chain=host.chain)  # fmt: skip
        verdicts, _ = dane_verdicts(replace(facts, mx_probes=(probe,)))
        verdict = verdicts[0]
        assert (verdict.state, verdict.ip) == (state, ip)
        assert [a.ip for a in verdict.addresses] == [a.ip for a in sites]
        assert verdict.reason.startswith(f"at {ip}") or state is DaneState.MATCH


def test_parsed_records_and_their_reasons_are_kept_by_their_text() -> None:
    """``parse_tlsa`` and the unusable reasons are cached: the same record for the same text,
    a bad text refused every time, and each reason read from the record's own fields."""
    text = "3 1 1 " + "ab" * 32
    assert parse_tlsa(text) is parse_tlsa(text)
    for _ in range(2):
        with pytest.raises(ParseError):
            parse_tlsa("3 1 1 zz")
    short = parse_tlsa("3 1 1 abcd")
    assert short.unusable_reason == "digest of 2 octets where 32 belong" and not short.usable
    assert parse_tlsa("3 1 2 " + "ab" * 32).unusable_reason == "digest of 32 octets where 64 belong"
    assert parse_tlsa("1 1 1 " + "ab" * 32).unusable_reason == "usage 1 (PKIX) is not for SMTP"
    assert parse_tlsa("3 0 0 00").usable and parse_tlsa(text).usable


def test_a_served_chain_is_parsed_once_and_garbage_stays_unparsed(pki: dict[str, bytes]) -> None:
    from stspilot.check.dane import _load

    der = pki["leaf"]
    first, second = _load([der, b"not a certificate"]), _load([der])
    assert first[0] is second[0] and first[0] is not None
    assert first[1] is None
