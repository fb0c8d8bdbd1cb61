"""DANE end to end against the signed lab: the validator's verdicts and reasons, the CLI's JSON.

Real servers on 127.B.x.y (the lab's DNS signs its zones with dnspython; its trust anchor file
holds their DS). Every DANE scenario's exact finding codes are asserted by
``tests/test_check_e2e.py::test_scenario``; here the pieces underneath.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import dns.rdatatype
import pytest
import pytest_asyncio

from stspilot.check.run import CheckOptions, check_domain
from stspilot.cli import main
from stspilot.errors import ConfigError
from stspilot.facts import DnssecStatus, DnsStatus
from stspilot.lab.scenarios import SCENARIOS
from stspilot.lab.world import Lab
from stspilot.probes.dane import DnssecValidator
from stspilot.probes.dnssec import TrustAnchors
from stspilot.probes.resolver import Resolver, ResolverConfig

pytestmark = [pytest.mark.slow]
DANE = [sc for sc in SCENARIOS if sc.domain.startswith("dane-")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(DANE) as world:
        yield world


def _validator(lab: Lab, anchors: TrustAnchors | None = None) -> DnssecValidator:
    info = lab.info
    resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port))
    return DnssecValidator(resolver, anchors or TrustAnchors.load(info.trust_anchor))


VALIDATION_CASES = [
    ("_25._tcp.mx1.dane-ee.test", DnssecStatus.SECURE, ""),
    ("_25._tcp.mx1.dane-bogus.test", DnssecStatus.BOGUS, "verify failure"),
    ("_25._tcp.mx1.dane-rrsig-expired.test", DnssecStatus.BOGUS, "expired"),
    ("_25._tcp.mx1.dane-unsigned.test", DnssecStatus.INSECURE, "no trust anchor"),
    ("_25._tcp.mx1.hosts.dane-mx-insecure.test", DnssecStatus.SECURE, ""),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("name", "status", "reason"), VALIDATION_CASES)
async def test_tlsa_validation(lab: Lab, name: str, status: DnssecStatus, reason: str) -> None:
    result = await _validator(lab).validate(name, dns.rdatatype.TLSA)
    assert result.dnssec.status is status
    assert reason in result.dnssec.reason
    if status is DnssecStatus.SECURE:
        assert result.rrset is not None and result.dnssec.expires is not None


@pytest.mark.asyncio(loop_scope="module")
async def test_signed_denial_is_secure(lab: Lab) -> None:
    """No TLSA at a signed name: NODATA proven by a validated NSEC (RFC 4035 §5.4)."""
    validator = _validator(lab)
    nodata = await validator.validate("mx1.dane-ee.test", dns.rdatatype.TLSA)
    assert (nodata.status, nodata.dnssec.status) == (DnsStatus.NODATA, DnssecStatus.SECURE)
    nx = await validator.validate("_25._tcp.nothere.dane-ee.test", dns.rdatatype.TLSA)
    assert (nx.status, nx.dnssec.status) == (DnsStatus.NXDOMAIN, DnssecStatus.SECURE)


@pytest.mark.asyncio(loop_scope="module")
async def test_wrong_anchor_is_bogus(lab: Lab) -> None:
    wrong = TrustAnchors.from_text("dane-ee.test. IN DS 1 13 2 " + "ab" * 32)
    result = await _validator(lab, wrong).validate("_25._tcp.mx1.dane-ee.test", dns.rdatatype.TLSA)
    assert result.dnssec.status is DnssecStatus.BOGUS
    assert "matches its DS or trust anchor" in result.dnssec.reason


@pytest.mark.asyncio(loop_scope="module")
async def test_clock_skew_past_the_rrsig_is_bogus(lab: Lab) -> None:
    info = lab.info
    resolver = Resolver(ResolverConfig((info.nameserver,), info.dns_port))
    late = DnssecValidator(
        resolver, TrustAnchors.load(info.trust_anchor), clock=lambda: 4_000_000_000.0
    )
    result = await late.validate("_25._tcp.mx1.dane-ee.test", dns.rdatatype.TLSA)
    assert result.dnssec.status is DnssecStatus.BOGUS and "expired" in result.dnssec.reason


@pytest.mark.asyncio(loop_scope="module")
async def test_without_the_lab_anchor_nothing_is_flagged(lab: Lab) -> None:
    """The IANA root as anchor against the lab DNS: no verdict, and no DANE finding invented."""
    info = lab.info
    options = CheckOptions(nameserver=info.nameserver, dns_port=info.dns_port,
                           ca_file=info.ca_file, port_map=info.port_map, deadline=8)  # fmt: skip
    result = await check_domain("dane-mismatch.test", options=options)
    assert not [code for code in result.codes() if code.startswith("dane.")]
    assert result.mx_dnssec is not None
    assert result.mx_dnssec.status is DnssecStatus.INDETERMINATE


@pytest.mark.asyncio(loop_scope="module")
async def test_cli_json_carries_dane(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    # The CLI runs its own event loop: in a thread, while the lab's loop keeps serving.
    args = ["check", "--json", *lab.info.check_args(trust_anchor=True)]
    code = await asyncio.to_thread(main, [*args, "dane-mismatch.test", "dane-ee.test"])
    document = json.loads(capsys.readouterr().out)
    assert code == 2 and document["schema"] == "stspilot.check/2"
    mismatch, ok = document["domains"]
    assert [mx["dane"]["state"] for mx in mismatch["mx"]] == ["mismatch", "mismatch"]
    assert all(mx["dane"]["blocks_mail"] for mx in mismatch["mx"])
    assert [mx["dane"]["dnssec"] for mx in ok["mx"]] == ["secure", "secure"]
    assert ok["mx"][0]["dane"]["matched"] == ok["mx"][0]["dane"]["records"]
    assert ok["mx_dnssec"]["status"] == "secure"
    assert "covered_by" in ok["mx"][0]  # the version 1 fields stay
    assert await asyncio.to_thread(main, [*args, "--no-dane", "dane-ee.test"]) == 0
    assert capsys.readouterr().out.count('"dane": null') == 2


@pytest.mark.parametrize(
    "text",
    ["", "; nothing\n", "example. IN A 127.0.0.1", "example. IN DS 1 13", "bad..name DS 1 1 1 00"],
)
def test_bad_anchor_files_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        TrustAnchors.from_text(text)


def test_anchor_file_limits(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text(". IN DS 20326 8 2 " + "00" * 32 + "\n" + ";" * 70_000)
    with pytest.raises(ConfigError):
        TrustAnchors.load(big)
    with pytest.raises(ConfigError):
        TrustAnchors.load(tmp_path / "missing")
    root = TrustAnchors.load(None)
    assert [len(v) for v in root.by_zone.values()] == [2]


@pytest.mark.asyncio(loop_scope="module")
async def test_each_address_is_judged(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """mx1 of dane-two-keys has two addresses serving different keys, TLSA names one: the
    host's verdict is the mismatching address, named; each address has its own verdict."""
    args = ["check", "--json", *lab.info.check_args(trust_anchor=True), "dane-two-keys.test"]
    code = await asyncio.to_thread(main, args)
    (domain,) = json.loads(capsys.readouterr().out)["domains"]
    assert code == 2
    mx1, mx2 = domain["mx"]
    states = {a["ip"]: a["state"] for a in mx1["dane"]["addresses"]}
    assert sorted(states.values()) == ["match", "mismatch"]
    assert [a["ip"] for a in mx1["addresses"]] == list(states)  # every probed address
    bad = next(ip for ip, state in states.items() if state == "mismatch")
    assert mx1["dane"]["state"] == "mismatch" and mx1["dane"]["ip"] == bad
    assert mx1["dane"]["reason"].startswith(f"at {bad} (1 of 2 addresses): ")
    assert mx1["dane"]["matched"] == []
    good = next(a for a in mx1["dane"]["addresses"] if a["state"] == "match")
    assert good["matched"] == mx1["dane"]["records"]
    assert mx2["dane"]["state"] == "match" and len(mx2["dane"]["addresses"]) == 1
    assert mx1["dane"]["address_dnssec"] == mx2["dane"]["address_dnssec"] == "secure"
    mismatch = next(f for f in domain["findings"] if f["code"] == "dane.mismatch")
    assert bad in mismatch["detail"]


@pytest.mark.asyncio(loop_scope="module")
async def test_insecure_addresses_void_the_tlsa(lab: Lab) -> None:
    """RFC 7672 §2.2.2: signed TLSA for a host whose A record is unsigned is not used."""
    info = lab.info
    options = CheckOptions(nameserver=info.nameserver, dns_port=info.dns_port,
                           ca_file=info.ca_file, port_map=info.port_map, deadline=8,
                           trust_anchor=info.trust_anchor)  # fmt: skip
    result = await check_domain("dane-address-insecure.test", options=options)
    (mx1,) = [v for v in result.dane if v.host == "mx1.dane-address-insecure.test"]
    assert (mx1.state, mx1.dnssec, mx1.address_dnssec) == ("insecure", "secure", "insecure")
    assert "address records insecure" in mx1.reason
    assert "dane.address.insecure" in result.codes()


@pytest.mark.asyncio(loop_scope="module")
async def test_short_digest_spoils_only_its_record(lab: Lab) -> None:
    """A TLSA record whose digest is too short for its matching type (which dnspython refuses,
    and with it the whole answer) is skipped as unusable; the signed RRset still validates
    over the octets served and the good record beside it still matches (RFC 6698 §2.1)."""
    info = lab.info
    lookup = await _validator(lab).lookup_tlsa("mx1.dane-short-digest.test")
    assert lookup.status is DnsStatus.OK and lookup.dnssec.status is DnssecStatus.SECURE
    assert sorted(len(r.split()[3]) for r in lookup.records) == [40, 64]
    options = CheckOptions(nameserver=info.nameserver, dns_port=info.dns_port,
                           ca_file=info.ca_file, port_map=info.port_map, deadline=8,
                           trust_anchor=info.trust_anchor)  # fmt: skip
    result = await check_domain("dane-short-digest.test", options=options)
    mx1 = next(v for v in result.dane if v.host == "mx1.dane-short-digest.test")
    assert mx1.state.value == "match" and len(mx1.records) == 2 and len(mx1.matched) == 1
    (unusable,) = [f for f in result.findings if f.code == "dane.record.unusable"]
    assert "digest of 20 octets where 32 belong" in unusable.detail
    assert "dane.lookup-failed" not in result.codes()
