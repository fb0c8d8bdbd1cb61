"""Certificate DNS-ID matching for the policy host and MX hosts (RFC 6125 §6.4, RFC 8461 §3.3)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stspilot.check.coverage import cert_valid_for, dns_id_matches
from stspilot.facts import CertInfo

DNS_IDS = [
    # (DNS-ID in the certificate, host, valid)
    ("mta-sts.example.com", "mta-sts.example.com", True),
    ("MTA-STS.example.COM", "mta-sts.Example.com", True),  # RFC 6125 §6.4.1: case-insensitive
    ("mta-sts.example.com.", "mta-sts.example.com", True),  # root dot is not a label
    ("mta-sts.example.com", "mta-sts.example.com.", True),
    ("*.example.com", "mta-sts.example.com", True),  # RFC 8461 §3.3: complete left-most label
    ("*.example.com", "example.com", False),  # one label, never none
    ("*.example.com", "a.mta-sts.example.com", False),  # ... and never two
    ("*.example.com", ".example.com", False),
    ("m*.example.com", "mta-sts.example.com", False),  # partial wildcards are not allowed
    ("*sts.example.com", "mta-sts.example.com", False),
    ("mta-sts.*.com", "mta-sts.example.com", False),
    ("*.*.com", "mta-sts.example.com", False),
    ("*", "localhost", False),
    ("*.com", "example.com", False),  # a wildcard needs at least two labels after it
    ("example.com", "mta-sts.example.com", False),
    ("mta-sts.example.com", "mta-sts.example.com.evil.example", False),
    ("xn--bcher-kva.example", "XN--BCHER-KVA.example", True),  # A-labels compare as ASCII
    ("bücher.example", "bücher.example", False),  # U-labels are never DNS-IDs
    ("", "example.com", False),
    ("example.com", "", False),
]


@pytest.mark.parametrize(("dns_id", "host", "valid"), DNS_IDS)
def test_dns_id_matches(dns_id: str, host: str, valid: bool) -> None:
    assert dns_id_matches(dns_id, host) is valid


def _cert(*names: str) -> CertInfo:
    moment = datetime(2026, 11, 22, tzinfo=UTC)
    return CertInfo("CN=mta-sts.example.com", "CN=CA", names, moment, moment, False)


@pytest.mark.parametrize(
    ("names", "valid"),
    [
        ((), False),  # the subject CN never counts (RFC 8461 §3.3: DNS-ID only)
        (("example.com", "www.example.com"), False),
        (("example.com", "*.example.com"), True),
        (("www.example.com", "mta-sts.example.com"), True),
    ],
)
def test_cert_valid_for(names: tuple[str, ...], valid: bool) -> None:
    assert cert_valid_for(_cert(*names), "mta-sts.example.com") is valid


_labels = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_names = st.lists(_labels, min_size=1, max_size=4).map(".".join)


@given(_names, _names)
def test_wildcard_stands_for_exactly_one_label(zone: str, host: str) -> None:
    if dns_id_matches("*." + zone, host):
        assert host.count(".") == zone.count(".") + 1
        assert host.lower().split(".", 1)[1] == zone.lower()
    assert dns_id_matches(host, host.swapcase())


_odd = st.sampled_from(["*", "*.", ".", "..", "-", "K", "\u212a", "ü", "xn--bcher-kva", " "])
_dns_ids = st.lists(st.one_of(_names, _odd, st.tuples(_odd, _names).map(".".join)), max_size=6).map(
    lambda ids: [i.upper() if len(i) % 3 == 0 else i + "." * (len(i) % 2) for i in ids]
)


@given(_dns_ids, st.one_of(_names, st.tuples(_odd, _names).map(".".join), _odd))
def test_cert_valid_for_is_any_dns_id_matching(dns_ids: list[str], host: str) -> None:
    """The set lookup of ``cert_valid_for`` answers as every DNS-ID matched in turn."""
    expected = any(dns_id_matches(dns_id, host) for dns_id in dns_ids)
    assert cert_valid_for(_cert(*dns_ids), host) is expected


@pytest.mark.parametrize(("dns_id", "host", "valid"), DNS_IDS)
def test_cert_valid_for_each_rule(dns_id: str, host: str, valid: bool) -> None:
    assert cert_valid_for(_cert("other.example", dns_id), host) is valid


def test_findings_say_what_a_certificate_names() -> None:
    from stspilot.check.coverage import tls_params
    from stspilot.facts import TlsFailure, TlsResult

    when = datetime(2026, 1, 1, tzinfo=UTC)

    def result(names: tuple[str, ...]) -> TlsResult:
        cert = CertInfo("CN=mx.example.com", "CN=ca", names, when, when, self_signed=False)
        return TlsResult(ok=False, failure=TlsFailure.HOST_MISMATCH, cert=cert)

    assert tls_params(result(("a.example", "b.example")))["cert_names"] == "a.example, b.example"
    cn_only = tls_params(result(()))["cert_names"]
    assert cn_only == "no DNS names, only the subject CN=mx.example.com"
    assert tls_params(None)["cert_names"] == "no name read"
