"""Naming a refused certificate from the verifier's code and the chain the server sent.

Pure functions of ``tls`` fed with DER lists built by trustme; the lab tests
(``test_smtp.py``, ``test_fetch.py``) read the same chains from real handshakes.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from stspilot.facts import TlsFailure, TlsResult
from stspilot.lab.certs import with_ca_issuers
from stspilot.probes.tls import cert_info, chain_info, classify, failure, refine, sent_chain

# OpenSSL X509_V_ERR_* codes
ISSUER_CERT, ISSUER_LOCALLY, LEAF_SIGNATURE, EXPIRED, SELF_SIGNED = 2, 20, 21, 10, 18


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    root = trustme.CA(organization_name="test root")
    intermediate = trustme.CA(parent_cert=root, organization_name="test intermediate")
    other = trustme.CA(parent_cert=root, organization_name="other intermediate")
    # As public CAs' leaves do, this one says where its intermediate is (AIA caIssuers).
    leaf = with_ca_issuers(
        intermediate.issue_cert("mx.example.com").cert_chain_pems[0].bytes(),
        intermediate,
        "http://ca.example/intermediate.der",
    )
    lone = root.issue_cert("mx.example.com")  # a private CA's leaf: no caIssuers
    return {
        "root": _der(root.cert_pem.bytes()),
        "intermediate": _der(intermediate.cert_pem.bytes()),
        "other": _der(other.cert_pem.bytes()),
        "leaf": _der(leaf),
        "lone": _der(lone.cert_chain_pems[0].bytes()),
    }


def test_leaf_alone_is_read_as_sent_without_its_issuer(pki: dict[str, bytes]) -> None:
    info = chain_info([pki["leaf"]])
    assert info is not None
    assert info.chain_length == 1 and info.issuer_sent is False and not info.self_signed
    assert "O=test intermediate" in info.issuer and info.dns_names == ("mx.example.com",)


def test_full_chain_is_read_with_its_issuer(pki: dict[str, bytes]) -> None:
    info = chain_info([pki["leaf"], pki["intermediate"]])
    assert info is not None and info.chain_length == 2 and info.issuer_sent is True
    with_root = chain_info([pki["leaf"], pki["intermediate"], pki["root"]])
    assert with_root is not None and with_root.chain_length == 3 and with_root.issuer_sent


def test_a_wrong_intermediate_does_not_count(pki: dict[str, bytes]) -> None:
    info = chain_info([pki["leaf"], pki["other"]])
    assert info is not None and info.chain_length == 2 and info.issuer_sent is False
    assert classify(ISSUER_LOCALLY, info) is TlsFailure.CHAIN_INCOMPLETE


def test_unreadable_chains(pki: dict[str, bytes]) -> None:
    assert chain_info([]) is None
    assert chain_info([b"not a certificate"]) is None
    info = chain_info([pki["leaf"], b"junk"])  # a broken extra certificate links nothing
    assert info is not None and info.issuer_sent is False
    only_leaf_read = cert_info(pki["leaf"])  # the fallback when the chain cannot be read
    assert only_leaf_read is not None and only_leaf_read.issuer_sent is None
    assert only_leaf_read.chain_length == 0


@pytest.mark.parametrize(
    ("code", "chain", "expected"),
    [
        (ISSUER_LOCALLY, ("leaf",), TlsFailure.CHAIN_INCOMPLETE),
        (LEAF_SIGNATURE, ("leaf",), TlsFailure.CHAIN_INCOMPLETE),
        (ISSUER_CERT, ("leaf",), TlsFailure.CHAIN_INCOMPLETE),
        # A leaf alone that names no caIssuers: an unknown (private) CA, not a missing
        # intermediate (it was told to "send the intermediate" that does not exist).
        (ISSUER_LOCALLY, ("lone",), TlsFailure.UNTRUSTED),
        (LEAF_SIGNATURE, ("lone",), TlsFailure.UNTRUSTED),
        # An unknown CA that sends its whole chain: the CA is the problem, not the chain.
        (ISSUER_LOCALLY, ("leaf", "intermediate"), TlsFailure.UNTRUSTED),
        (ISSUER_CERT, ("leaf", "intermediate"), TlsFailure.UNTRUSTED),
        # A self-signed leaf is self-signed, whatever the code.
        (SELF_SIGNED, ("root",), TlsFailure.SELF_SIGNED),
        (ISSUER_LOCALLY, ("root",), TlsFailure.SELF_SIGNED),
        # Other causes keep their names even when the chain is incomplete.
        (EXPIRED, ("leaf",), TlsFailure.EXPIRED),
        (62, ("leaf",), TlsFailure.HOST_MISMATCH),
        (7, ("leaf",), TlsFailure.UNTRUSTED),  # CERT_SIGNATURE_FAILURE
    ],
)
def test_classify(
    pki: dict[str, bytes], code: int, chain: tuple[str, ...], expected: TlsFailure
) -> None:
    assert classify(code, chain_info([pki[name] for name in chain])) is expected


def test_classify_without_the_chain_stays_untrusted(pki: dict[str, bytes]) -> None:
    assert classify(ISSUER_LOCALLY, None) is TlsFailure.UNTRUSTED
    assert classify(ISSUER_LOCALLY, cert_info(pki["leaf"])) is TlsFailure.UNTRUSTED


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    error.verify_code = code
    error.verify_message = message
    return error


def test_failure_names_a_missing_intermediate(pki: dict[str, bytes]) -> None:
    error = _verify_error(ISSUER_LOCALLY, "unable to get local issuer certificate")
    result = failure(OSError("wrapped"), None)
    assert result.failure is TlsFailure.HANDSHAKE and result.verify_code == 0
    wrapped = ConnectionError("connect failed")
    wrapped.__cause__ = error
    result = failure(wrapped, chain_info([pki["leaf"]]))
    assert result.failure is TlsFailure.CHAIN_INCOMPLETE
    assert result.verify_code == ISSUER_LOCALLY
    assert result.detail == "unable to get local issuer certificate"


def test_refine_reclassifies_once_the_certificate_is_read(pki: dict[str, bytes]) -> None:
    error = _verify_error(ISSUER_LOCALLY, "unable to get local issuer certificate")
    first = failure(error, None)  # the STARTTLS probe reads the certificate afterwards
    assert first.failure is TlsFailure.UNTRUSTED
    leaf_only = chain_info([pki["leaf"]])
    refined = refine(first, leaf_only)
    assert refined.failure is TlsFailure.CHAIN_INCOMPLETE and refined.cert == leaf_only
    full = refine(first, chain_info([pki["leaf"], pki["intermediate"]]))
    assert full.failure is TlsFailure.UNTRUSTED
    handshake = TlsResult(False, TlsFailure.HANDSHAKE, "wrong version number")
    assert refine(handshake, leaf_only).failure is TlsFailure.HANDSHAKE


def test_sent_chain_without_an_ssl_object_is_unknown() -> None:
    assert sent_chain(None) == ()
    assert sent_chain(object()) == ()  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"not a pem\n", b"", b"-----BEGIN CERTIFICATE-----\nxx\n"])
def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    """It was accepted, and every domain then got three false "DNS lookup failed" errors."""
    from stspilot.errors import ConfigError
    from stspilot.probes.tls import TlsContexts

    bad = tmp_path / "ca.pem"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match="not a readable PEM file"):
        TlsContexts.create(bad)


def test_check_with_a_ca_file_that_is_not_pem_exits_4_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stspilot.cli import EXIT_OPERATIONAL, main

    bad = tmp_path / "ca.pem"
    bad.write_text("not a pem\n")
    # Port 1 on loopback: nothing is asked of any network before the option is refused.
    args = ["check", "--ca-file", str(bad), "--nameserver", "127.0.0.1:1", "a.test", "b.test"]
    assert main([*args, "--json"]) == EXIT_OPERATIONAL
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "is not a readable PEM file" in err


@pytest.mark.parametrize(
    "text",
    [
        "May  9 00:00:00 2027 GMT",  # a one-digit day is padded with a space
        "Dec 31 23:59:59 2049 GMT",
        "Feb 29 12:30:01 2028 GMT",
        "Jan  1 00:00:00 1970 GMT",
        "Jun 30 23:59:60 2015 GMT",  # a leap second: read by ssl.cert_time_to_seconds
    ],
)
def test_certificate_dates_read_as_the_ssl_module_reads_them(text: str) -> None:
    import datetime as dt

    from stspilot.probes.tls import _cert_time

    expected = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), dt.UTC)
    assert _cert_time(text) == expected


@pytest.mark.parametrize("text", ["Foo  9 00:00:00 2027 GMT", "May 32 00:00:00 2027 GMT", ""])
def test_certificate_dates_the_ssl_module_refuses_are_refused(text: str) -> None:
    from stspilot.probes.tls import _cert_time

    with pytest.raises(ValueError):
        _cert_time(text)


def test_the_validating_context_is_built_once_when_threads_race() -> None:
    """``warm`` runs in a thread beside the event loop: both asking at once get one context
    (the trust store loaded once), never two."""
    import threading

    from stspilot.probes.tls import TlsContexts

    tls = TlsContexts()
    start = threading.Barrier(8)
    seen: list[object] = []

    def ask() -> None:
        start.wait()
        seen.append(tls.verified)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    assert len({id(c) for c in seen}) == 1
    assert tls.verified is seen[0]
