"""DKIM verification of report mail: real dkimpy signatures, keys served by the lab DNS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stspilot.ingest.decode import extract_reports
from stspilot.ingest.dkim import DkimSettings, DkimVerifier, is_aligned
from stspilot.ingest.mail import DkimVerdict, Envelope
from stspilot.ingest.pipeline import prepare_unit
from stspilot.lab import DnsFault, LabDkimKey, make_dkim_key
from stspilot.lab.dkim_keys import KeyServer
from stspilot.lab.sample_reports import REPORTER_DOMAINS, generate_reports, to_email
from stspilot.store.rows import envelope_json
from stspilot.tlsrpt.schema import DEFAULT_LIMITS

NOW = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> LabDkimKey:
    return make_dkim_key()


@pytest.fixture
def dns(key: LabDkimKey) -> Iterator[KeyServer]:
    with KeyServer(key.records(REPORTER_DOMAINS)) as server:
        yield server


def settings(server: KeyServer, **kw: float) -> DkimSettings:
    return DkimSettings(nameserver=server.host, port=server.port, **kw)  # type: ignore[arg-type]


def envelope(raw: bytes) -> Envelope:
    found = extract_reports(raw)[0].envelope
    assert found is not None
    return found


def google_mails(key: LabDkimKey, n: int) -> list[bytes]:
    reports = [r for r in generate_reports(8 * n) if r["organization-name"] == "Google Inc."]
    return [to_email(r, dkim_key=key) for r in reports[:n]]


def tamper(raw: bytes) -> bytes:
    """One byte of the body changed (the human-readable part)."""
    at = raw.index(b"aggregate TLS report")
    return raw[:at] + b"A" + raw[at + 1 :]


# --- verdicts -----------------------------------------------------------------------------------


def test_pass_for_lab_signed_mail(key: LabDkimKey, dns: KeyServer) -> None:
    raw = google_mails(key, 1)[0]
    verdict = DkimVerifier(settings(dns)).verify(raw, envelope(raw))
    assert verdict == DkimVerdict("pass", "google.com", "lab", True)


@pytest.mark.parametrize("provider", ["Microsoft Corporation", "Mail.ru", "mx.egressif.io"])
def test_pass_for_every_lab_reporter(key: LabDkimKey, dns: KeyServer, provider: str) -> None:
    report = next(r for r in generate_reports(40) if r["organization-name"] == provider)
    raw = to_email(report, dkim_key=key)
    verdict = DkimVerifier(settings(dns)).verify(raw, envelope(raw))
    assert (verdict.result, verdict.aligned) == ("pass", True)
    assert verdict.domain in REPORTER_DOMAINS


def test_one_changed_body_byte_fails(key: LabDkimKey, dns: KeyServer) -> None:
    raw = tamper(google_mails(key, 1)[0])
    verdict = DkimVerifier(settings(dns)).verify(raw, envelope(raw))
    assert verdict.result == "fail"
    assert "body hash mismatch" in verdict.reason
    assert (verdict.domain, verdict.selector) == ("google.com", "lab")


def test_changed_signed_header_fails(key: LabDkimKey, dns: KeyServer) -> None:
    raw = google_mails(key, 1)[0].replace(b"TLS-Report-Domain: ", b"TLS-Report-Domain: x")
    verdict = DkimVerifier(settings(dns)).verify(raw, envelope(raw))
    assert verdict.result == "fail"
    assert verdict.reason == "signature does not verify"


def test_key_mismatch_fails(key: LabDkimKey) -> None:
    other = make_dkim_key()
    raw = google_mails(key, 1)[0]
    with KeyServer(other.records(REPORTER_DOMAINS)) as server:
        verdict = DkimVerifier(settings(server)).verify(raw, envelope(raw))
    assert verdict.result == "fail"
    assert verdict.reason == "signature does not verify"


def test_no_key_record_fails(key: LabDkimKey) -> None:
    raw = google_mails(key, 1)[0]
    with KeyServer(key.records(["example.org"])) as server:  # none for google.com
        verdict = DkimVerifier(settings(server)).verify(raw, envelope(raw))
    assert verdict.result == "fail"
    assert "missing public key" in verdict.reason


def test_fake_lab_signature_fails(dns: KeyServer) -> None:
    raw = to_email(generate_reports(1)[0])  # the default: a look-alike header
    verdict = DkimVerifier(settings(dns)).verify(raw, envelope(raw))
    assert verdict.result == "fail"


def test_unsigned_mail_is_none(key: LabDkimKey, dns: KeyServer) -> None:
    raw = google_mails(key, 1)[0]
    unsigned = raw[raw.index(b"Content-Type:") :]  # the signature is the first header
    verifier = DkimVerifier(settings(dns))
    assert verifier.verify(unsigned, envelope(unsigned)) == DkimVerdict("none")
    assert verifier.lookups == 0 and dns.queries == 0


def test_dns_silence_is_temperror_in_bounded_time(key: LabDkimKey) -> None:
    raw = google_mails(key, 1)[0]
    silent = {"lab._domainkey.google.com": DnsFault.TIMEOUT}
    with KeyServer(key.records(REPORTER_DOMAINS), faults=silent) as server:
        verifier = DkimVerifier(settings(server, timeout=0.5))
        started = time.monotonic()
        verdict = verifier.verify(raw, envelope(raw))
        took = time.monotonic() - started
        assert server.queries >= 1  # it was asked, and never answered
    assert verdict.result == "temperror"
    assert (verdict.domain, verdict.selector, verdict.aligned) == ("google.com", "lab", True)
    assert took < 0.5 + 1.5
    # Kept briefly: the next mail from that reporter does not wait again.
    started = time.monotonic()
    assert verifier.verify(raw, envelope(raw)).result == "temperror"
    assert time.monotonic() - started < 0.5


def test_nobody_listening_is_temperror(key: LabDkimKey) -> None:
    raw = google_mails(key, 1)[0]
    verdict = DkimVerifier(DkimSettings(nameserver="127.0.0.1", port=9, timeout=0.5)).verify(raw)
    assert verdict.result == "temperror"


def test_one_lookup_per_key(key: LabDkimKey, dns: KeyServer) -> None:
    mails = google_mails(key, 25)
    verifier = DkimVerifier(settings(dns))
    verdicts = [verifier.verify(raw, envelope(raw)) for raw in mails]
    assert {v.result for v in verdicts} == {"pass"}
    assert verifier.lookups == 1
    assert dns.queries == 1


def test_cache_expires_and_is_bounded(key: LabDkimKey, dns: KeyServer) -> None:
    now = [0.0]
    verifier = DkimVerifier(settings(dns, cache_size=2, cache_ttl=60), clock=lambda: now[0])
    mails = {
        r["organization-name"]: to_email(r, dkim_key=key) for r in reversed(generate_reports(40))
    }
    google, microsoft, mailru = (
        mails[o] for o in ("Google Inc.", "Microsoft Corporation", "Mail.ru")
    )
    for raw in (google, google, microsoft):
        assert verifier.verify(raw).result == "pass"
    assert verifier.lookups == 2
    now[0] = 61.0  # both expired
    verifier.verify(google)
    assert verifier.lookups == 3
    verifier.verify(mailru)  # a third key: the least recently used (microsoft) goes
    verifier.verify(google)
    assert verifier.lookups == 4
    verifier.verify(microsoft)
    assert verifier.lookups == 5
    assert dns.queries == 5


def test_unparseable_message_is_a_fail_not_an_exception(dns: KeyServer) -> None:
    verdict = DkimVerifier(settings(dns)).verify(b"DKIM-Signature: v=1\n\x00bad\nbody")
    assert verdict.result == "fail"


@pytest.mark.parametrize(
    ("d", "reporters", "aligned"),
    [
        ("google.com", ["google.com"], True),
        ("google.com", [None, "mail.google.com"], True),  # d= a parent of the reporter
        ("corp.mail.ru", ["mail.ru"], True),  # d= a subdomain of the reporter
        ("mail.ru", ["corp.mail.ru"], True),
        ("evil.example", ["google.com"], False),
        ("google.com.evil.example", ["google.com"], False),
        ("com", ["google.com"], False),  # a bare TLD never aligns
        (None, ["google.com"], False),
        ("google.com", [], False),
    ],
)
def test_alignment(d: str | None, reporters: list[str | None], aligned: bool) -> None:
    assert is_aligned(d, reporters) is aligned


def test_unaligned_signature_passes_but_says_so(key: LabDkimKey, dns: KeyServer) -> None:
    raw = google_mails(key, 1)[0]
    raw = raw.replace(b"TLS-Report-Submitter: google.com", b"TLS-Report-Submitter: example.net")
    env = envelope(raw)
    # The header is signed, so the changed value fails; alignment is judged all the same.
    verdict = DkimVerifier(settings(dns)).verify(raw, env)
    assert verdict.result == "fail"
    assert verdict.domain == "google.com"
    assert verdict.aligned  # still aligned with the From domain


# --- in the pipeline and the stored envelope ----------------------------------------------------


def test_pipeline_puts_the_verdict_on_the_envelope(key: LabDkimKey, dns: KeyServer) -> None:
    good, other = google_mails(key, 2)
    bad = tamper(other)
    verifier = DkimVerifier(settings(dns))
    ok = prepare_unit(good, origin="a", received_at=NOW, limits=DEFAULT_LIMITS, dkim=verifier)
    failed = prepare_unit(bad, origin="b", received_at=NOW, limits=DEFAULT_LIMITS, dkim=verifier)
    plain = prepare_unit(good, origin="c", received_at=NOW, limits=DEFAULT_LIMITS)

    env = ok.reports[0].envelope
    assert isinstance(env, Envelope) and env.dkim == DkimVerdict("pass", "google.com", "lab", True)
    assert "mail.dkim.fail" not in {d.code for d in ok.reports[0].deviations}
    stored = json.loads(envelope_json(env))
    assert stored["dkim"] == {
        "result": "pass",
        "domain": "google.com",
        "selector": "lab",
        "aligned": True,
        "reason": "",
    }

    fail = [d for d in failed.reports[0].deviations if d.code == "mail.dkim.fail"]
    assert len(fail) == 1 and "body hash mismatch" in fail[0].message
    assert failed.quarantine is None  # tolerated and recorded, never refused

    assert plain.reports[0].envelope.dkim is None  # type: ignore[union-attr]
    assert "dkim" not in json.loads(envelope_json(plain.reports[0].envelope))


def test_files_are_not_verified(key: LabDkimKey, dns: KeyServer) -> None:
    from stspilot.lab.sample_reports import to_gzip

    verifier = DkimVerifier(settings(dns))
    unit = prepare_unit(
        to_gzip(generate_reports(1)[0]),
        origin="f",
        received_at=NOW,
        limits=DEFAULT_LIMITS,
        dkim=verifier,
    )
    assert unit.reports[0].envelope is None and verifier.lookups == 0


# --- the corpus: real providers' signatures, keys out of reach -----------------------------------


def test_corpus_mail_is_temperror_or_none_offline(corpus_dir: Path) -> None:
    folder = corpus_dir / "tlsrpt-email"
    mails = sorted(folder.glob("*.eml"))
    if not mails:
        pytest.skip("no report mail in the corpus")
    # Nothing listens on port 9 of loopback: every key lookup fails at once.
    verifier = DkimVerifier(DkimSettings(nameserver="127.0.0.1", port=9, timeout=0.5))
    results = {}
    for path in mails:
        raw = path.read_bytes()
        try:
            env: Envelope | None = extract_reports(raw)[0].envelope
        except Exception:
            env = None  # not a report (the negative samples): verify the mail anyway
        results[path.name] = verifier.verify(raw, env)
        unit = prepare_unit(
            raw, origin=path.name, received_at=NOW, limits=DEFAULT_LIMITS, dkim=verifier
        )
        for r in unit.reports:
            assert r.envelope.dkim is not None  # type: ignore[union-attr]
            assert r.envelope.dkim.result in {"temperror", "none"}  # type: ignore[union-attr]
    assert {v.result for v in results.values()} <= {"temperror", "none"}, results
    signed = {n: v for n, v in results.items() if v.result == "temperror"}
    assert signed, "the corpus holds signed provider mail"
    # Old Google signatures carry x= long past: judged as of the mail's Date, not now.
    assert all(v.domain and v.selector and v.aligned for v in signed.values())
