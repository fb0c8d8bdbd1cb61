"""The DNSSEC validator on hostile and broken zones, table-driven and without sockets.

The answers come from the lab's own DNS logic (``DnsData.respond``, the code the lab server
runs) called in-process, over zones signed by ``lab.dnssec.sign_zone`` and then broken:
huge RRsets, missing DNSKEYs, unknown algorithms, CNAME loops, clock skew, wrong anchors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from stspilot.facts import DnssecStatus, DnsStatus
from stspilot.lab.dns_server import DnsData, DnsFault, Record
from stspilot.lab.dnssec import SignedZone, ZoneFault, sign_zone
from stspilot.probes.dane import DnssecValidator
from stspilot.probes.dnssec import TrustAnchors
from stspilot.probes.dnswire import Message, WireName
from stspilot.probes.dnswire_signed import parse_dnssec_message

ZONE = "v.test"
TLSA = "_25._tcp.mx1.v.test"
GOOD = "3 1 1 " + "ab" * 32


class InProcess:
    """Answers DO questions from ``DnsData`` directly: the lab's server logic, no socket."""

    def __init__(self, data: DnsData) -> None:
        self.data = data
        self.questions = 0

    async def query_dnssec(self, name: WireName, rdtype: int) -> Message | tuple[DnsStatus, str]:
        self.questions += 1
        query = dns.message.make_query(str(name), rdtype, want_dnssec=True)
        response = self.data.respond(query)
        if response is None:
            return DnsStatus.TIMEOUT, "no answer"
        if response.rcode() not in (0, 3):
            return DnsStatus.SERVFAIL, "SERVFAIL"
        return parse_dnssec_message(response.to_wire(max_size=65535))  # as over TCP


def _records(extra: list[Record]) -> list[Record]:
    return [Record(f"mx1.{ZONE}", "A", "127.0.0.1"), Record(ZONE, "MX", f"10 mx1.{ZONE}."), *extra]


def _zone(extra: list[Record], **kw: object) -> SignedZone:
    return sign_zone(ZONE, _records(extra), **kw)  # type: ignore[arg-type]


def _drop(zone: SignedZone, keep: Callable[[dns.rrset.RRset], bool]) -> SignedZone:
    return SignedZone(zone.apex, tuple(r for r in zone.rrsets if keep(r)), zone.ds)


def _rsa_sig(zone: SignedZone) -> SignedZone:
    """Every RRSIG claims an algorithm this zone has no key for (RSASHA256 instead of 13)."""
    out = []
    for r in zone.rrsets:
        if r.rdtype == dns.rdatatype.RRSIG:
            changed = dns.rrset.RRset(r.name, r.rdclass, r.rdtype, r.covers)
            for sig in r:
                changed.add(sig.replace(algorithm=8), r.ttl)
            r = changed
        out.append(r)
    return SignedZone(zone.apex, tuple(out), zone.ds)


def _odd_dnskeys(zone: SignedZone) -> SignedZone:
    """Every DNSKEY of the zone claims an algorithm nobody implements (200)."""
    out = []
    for r in zone.rrsets:
        if r.rdtype == dns.rdatatype.DNSKEY:
            changed = dns.rrset.RRset(r.name, r.rdclass, r.rdtype)
            for key in r:
                changed.add(key.replace(algorithm=200), r.ttl)
            r = changed
        out.append(r)
    return SignedZone(zone.apex, tuple(out), zone.ds)


def _sha1_anchor(zone: SignedZone) -> TrustAnchors:
    """The zone's key as a SHA-1 DS (digest type 1), made as a signer of old did."""
    import dns.dnssec

    apex = dns.name.from_text(zone.apex)
    keys = next(r for r in zone.rrsets if r.rdtype == dns.rdatatype.DNSKEY and r.name == apex)
    ksk = next(k for k in keys if k.flags & 1)  # type: ignore[attr-defined]
    ds = dns.dnssec.make_ds(apex, ksk, "SHA1", policy=dns.dnssec.allow_all_policy)
    assert ds.digest_type == 1  # type: ignore[attr-defined]
    return TrustAnchors.from_text(f"{apex} IN DS {ds.to_text()}")


def _validator(zone: SignedZone | None, records: list[Record], **kw: object) -> DnssecValidator:
    data = DnsData(records, kw.pop("faults", None), [zone] if zone else [])  # type: ignore[arg-type]
    anchors = kw.pop("anchors", None) or TrustAnchors.from_text(
        zone.ds if zone else "invalid. IN DS 1 13 2 " + "00" * 32
    )
    return DnssecValidator(InProcess(data), anchors, **kw)  # type: ignore[arg-type]


def _month_ago() -> float:
    return time.time() - 30 * 86400


def _month_ahead() -> float:
    return time.time() + 30 * 86400


HUGE = [Record(TLSA, "TLSA", f"3 1 1 {i:064x}") for i in range(100)]
LOOP = [Record(TLSA, "CNAME", f"{TLSA}.")]


def _cases() -> list[object]:
    good = _zone([Record(TLSA, "TLSA", GOOD)])
    huge = _zone(HUGE)
    return [
        pytest.param(good, [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.SECURE, "", id="good"),
        pytest.param(huge, HUGE, {}, DnssecStatus.BOGUS, "too many", id="huge-rrset"),
        pytest.param(
            _drop(good, lambda r: r.rdtype != dns.rdatatype.DNSKEY),
            [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.INDETERMINATE,
            "serves no DNSKEY", id="no-dnskey",
        ),
        pytest.param(
            _drop(good, lambda r: not (r.rdtype == dns.rdatatype.RRSIG
                                       and r.covers == dns.rdatatype.TLSA)),
            [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.BOGUS, "not signed", id="sig-stripped",
        ),
        pytest.param(_rsa_sig(good), [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.BOGUS,
                     "RRSIG on", id="unknown-algorithm"),
        pytest.param(good, [Record(TLSA, "TLSA", GOOD)], {"clock": _month_ago},
                     DnssecStatus.BOGUS, "not yet valid", id="clock-behind"),
        pytest.param(good, [Record(TLSA, "TLSA", GOOD)], {"clock": _month_ahead},
                     DnssecStatus.BOGUS, "expired", id="clock-ahead"),
        pytest.param(_odd_dnskeys(good), [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.BOGUS,
                     "matches its DS", id="dnskey-unknown-algorithm"),
        pytest.param(
            _zone([Record(TLSA, "TLSA", GOOD)], faults=[(TLSA, "TLSA", ZoneFault.TAMPERED)]),
            [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.BOGUS, "verify failure", id="tampered",
        ),
        pytest.param(
            good, [Record(TLSA, "TLSA", GOOD)],
            {"anchors": TrustAnchors.from_text(f"{ZONE}. IN DS 2371 13 3 " + "ab" * 32)},
            DnssecStatus.BOGUS, "matches its DS", id="unknown-digest-type",
        ),
        pytest.param(
            good, [Record(TLSA, "TLSA", GOOD)], {"anchors": _sha1_anchor(good)},
            DnssecStatus.SECURE, "", id="sha1-ds",  # RFC 8624 §3.3: validators follow SHA-1 DS
        ),
        pytest.param(None, [Record(TLSA, "TLSA", GOOD)], {}, DnssecStatus.INSECURE,
                     "no trust anchor", id="unsigned"),
    ]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("zone", "records", "kw", "status", "reason"), _cases())
async def test_validation(
    zone: SignedZone | None,
    records: list[Record],
    kw: dict[str, object],
    status: DnssecStatus,
    reason: str,
) -> None:
    validator = _validator(zone, _records(records), **kw)
    result = await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert result.dnssec.status is status, result.dnssec.reason
    assert reason in result.dnssec.reason


@pytest.mark.asyncio
async def test_cname_loop_is_an_answer_not_a_hang() -> None:
    validator = _validator(None, _records(LOOP))
    result = await validator.validate(TLSA, dns.rdatatype.TLSA)
    # the server gives up on the loop (SERVFAIL); the validator reports it, bounded, no crash
    assert result.status is DnsStatus.SERVFAIL and result.rrset is None


@pytest.mark.asyncio
async def test_keys_are_validated_once_per_zone() -> None:
    zone = _zone([Record(TLSA, "TLSA", GOOD), Record(f"_25._tcp.mx2.{ZONE}", "TLSA", GOOD)])
    validator = _validator(zone, _records([Record(TLSA, "TLSA", GOOD)]))
    resolver = validator.resolver
    await validator.validate(TLSA, dns.rdatatype.TLSA)
    first = resolver.questions  # type: ignore[attr-defined]
    await validator.validate(f"_25._tcp.mx2.{ZONE}", dns.rdatatype.TLSA)
    assert resolver.questions - first == 1  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_servfail_in_a_signed_zone_is_indeterminate() -> None:
    zone = _zone([Record(TLSA, "TLSA", GOOD)])
    validator = _validator(zone, _records([]), faults={TLSA: DnsFault.SERVFAIL})
    result = await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert (result.status, result.dnssec.status) == (DnsStatus.SERVFAIL, DnssecStatus.INDETERMINATE)


@pytest.mark.asyncio
async def test_bogus_address_records_are_named() -> None:
    """RFC 7672 §2.2.2: the host's A RRset is validated too; a tampered one is bogus."""
    from stspilot.facts import DnssecResult, TlsaLookup

    tlsa = [Record(TLSA, "TLSA", GOOD)]
    zone = _zone(tlsa, faults=[(f"mx1.{ZONE}", "A", ZoneFault.TAMPERED)])
    validator = _validator(zone, _records(tlsa))
    lookup = await validator.lookup_tlsa(f"mx1.{ZONE}")
    assert lookup.dnssec.status is DnssecStatus.SECURE and lookup.address_dnssec is None
    judged = await validator.judge_addresses(lookup, ())  # no answers given: asked here
    assert judged.address_dnssec is not None
    assert judged.address_dnssec.status is DnssecStatus.BOGUS
    assert "verify failure" in judged.address_dnssec.reason
    # unsigned TLSA: the addresses are not judged at all
    plain = TlsaLookup("mx1.x.test", TLSA, DnsStatus.OK, DnssecResult(DnssecStatus.INSECURE))
    assert (await validator.judge_addresses(plain, ())).address_dnssec is None


@pytest.mark.parametrize(
    ("ds", "usable"),
    [
        ("1 13 1 " + "ab" * 20, True),  # SHA-1: followed, though no longer to be published
        ("1 13 2 " + "ab" * 32, True),
        ("1 14 4 " + "ab" * 48, True),
        ("1 8 2 " + "ab" * 32, True),
        ("1 13 3 " + "ab" * 32, False),  # GOST: not computed here
        ("1 13 0 " + "ab" * 32, False),
        ("1 1 2 " + "ab" * 32, False),  # RSAMD5: may not validate (RFC 8624 §3.1)
        ("1 200 2 " + "ab" * 32, False),  # nobody's algorithm
    ],
)
def test_which_ds_records_the_validator_can_follow(ds: str, usable: bool) -> None:
    """RFC 4035 §5.2: a zone whose DS records are all unusable is treated as unsigned."""
    from stspilot.probes.dnssec import ds_usable
    from stspilot.probes.dnswire import Ds

    tag, algorithm, digest_type, digest = ds.split()
    record = Ds(int(tag), int(algorithm), int(digest_type), bytes.fromhex(digest))
    assert ds_usable(record) is usable
