"""Monitor alerts for DANE (pure): TLSA mismatch, a served key missing from TLSA, DNSSEC bogus."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from stspilot.check.dane import association
from stspilot.facts import DnssecResult, DnssecStatus, DnsStatus, DomainFacts, TlsaLookup
from stspilot.findings import Severity
from test_alerts import MX1, MX2, T1, alerts_for  # type: ignore[import-not-found]

SECURE = DnssecResult(DnssecStatus.SECURE, signer="example.com")
BOGUS = DnssecResult(DnssecStatus.BOGUS, "RRSIG on _25._tcp.mx1.example.com TLSA: expired")


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def chains() -> dict[str, tuple[bytes, ...]]:
    inter = trustme.CA().create_child_ca()
    out = {}
    for host in (MX1, MX2):
        pems = inter.issue_cert(host).cert_chain_pems
        out[host] = (_der(pems[0].bytes()), _der(pems[1].bytes()))
    return out


def _record(params: str, der: bytes) -> str:
    _u, s, m = (int(x) for x in params.split())
    return f"{params} {association(der, s, m).hex()}"


def _dane(
    chains: dict[str, tuple[bytes, ...]],
    records: dict[str, list[str]],
    dnssec: dict[str, DnssecResult] | None = None,
    mx_dnssec: DnssecResult = SECURE,
) -> object:
    def change(facts: DomainFacts) -> DomainFacts:
        probes = tuple(replace(p, chain=chains[p.host]) for p in facts.mx_probes)
        lookups = tuple(
            TlsaLookup(h, f"_25._tcp.{h}", DnsStatus.OK, (dnssec or {}).get(h, SECURE), tuple(r))
            for h, r in records.items()
        )
        return replace(facts, mx_probes=probes, tlsa=lookups, mx_dnssec=mx_dnssec)

    return change


def _codes(alerts: list[object]) -> set[tuple[str, str]]:
    return {(a.code, a.key.split("|")[-1]) for a in alerts if a.code.startswith("dane.")}  # type: ignore[attr-defined]


def test_healthy_dane_no_alert(chains: dict[str, tuple[bytes, ...]]) -> None:
    ok = {h: [_record("3 1 1", chains[h][0]), "3 1 1 " + "00" * 32] for h in (MX1, MX2)}
    assert _codes(alerts_for(None, _dane(chains, ok))) == set()


def test_mismatch_alert(chains: dict[str, tuple[bytes, ...]]) -> None:
    records = {MX1: ["3 1 1 " + "ab" * 32], MX2: [_record("3 1 1", chains[MX2][0])]}
    alerts = alerts_for(None, _dane(chains, records))
    assert _codes(alerts) == {("dane.mismatch", MX1)}
    mismatch = next(a for a in alerts if a.code == "dane.mismatch")
    assert mismatch.severity is Severity.ERROR and mismatch.lasting


def test_served_key_not_in_tlsa(chains: dict[str, tuple[bytes, ...]]) -> None:
    """The CA record still matches, but the DANE-EE record names an old key."""
    records = {h: ["3 1 1 " + "cd" * 32, _record("2 1 1", chains[h][1])] for h in (MX1, MX2)}
    alerts = alerts_for(None, _dane(chains, records))
    assert _codes(alerts) == {("dane.key-not-in-tlsa", MX1), ("dane.key-not-in-tlsa", MX2)}


def test_dnssec_turning_bogus(chains: dict[str, tuple[bytes, ...]]) -> None:
    ok = {h: [_record("3 1 1", chains[h][0]), "3 1 1 " + "00" * 32] for h in (MX1, MX2)}
    before = _dane(chains, ok)
    after = _dane(chains, ok, dnssec={MX1: BOGUS}, mx_dnssec=replace(BOGUS, reason="MX expired"))
    alerts = alerts_for(before, after)
    assert _codes(alerts) == {("dane.bogus", MX1), ("dane.bogus", "MX")}
    host = next(a for a in alerts if a.code == "dane.bogus" and a.key.endswith(MX1))
    assert "turned bogus" in host.message and T1.tzinfo is not None
