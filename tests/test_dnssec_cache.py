"""RRSIG verification with parsed keys (probes/rrsig.py) and the per-run key cache of the
validator: same verdicts as dnspython's own ``validate_rrsig``, and a cached zone key never
outlives its TTL, its RRSIG or a failed lookup. No sockets (the lab's DNS logic in-process)."""

from __future__ import annotations

import time
import warnings

import dns.name
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dnssec_support import wire_name, wire_rdata, wire_rrset  # type: ignore[import-not-found]
from stspilot.facts import DnssecStatus, DnsStatus
from stspilot.lab.dns_server import DnsFault, Record
from stspilot.lab.dnssec import sign_zone
from stspilot.probes import dane as dane_module
from stspilot.probes import rrsig as rrsig_module
from stspilot.probes.rrsig import VerifyFailure, key_table, signed_data, verify, zone_key
from test_dane_validation import (  # type: ignore[import-not-found]
    GOOD,
    TLSA,
    ZONE,
    _records,
    _validator,
    _zone,
)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import dns.dnssec
    from dns.dnssectypes import Algorithm

ORIGIN = dns.name.from_text("z.test.")
NOW = 1_800_000_000.0


def _key(flags: int = 256) -> tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, dns.dnssec.make_dnskey(private.public_key(), Algorithm.ECDSAP256SHA256, flags)


def _signed(owner: str = "a.z.test.", **kw: object) -> tuple[dns.rrset.RRset, dns.rdata.Rdata]:
    private, dnskey = kw.pop("key", None) or _key()  # type: ignore[misc]
    rrset = dns.rrset.from_text(owner, 300, "IN", "TLSA", GOOD, "3 1 2 " + "cd" * 64)
    sig = dns.dnssec.sign(
        rrset, private, ORIGIN, dnskey, inception=NOW - 60, expiration=NOW + 3600, **kw
    )
    return rrset, sig


def _table(*dnskeys: dns.rdata.Rdata) -> dict[int, tuple[object, ...]]:
    return key_table(wire_rdata(k) for k in dnskeys)  # type: ignore[misc]


def _tampered(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    return dns.rrset.from_text(rrset.name, 300, "IN", "TLSA", "3 1 1 " + "ef" * 32)


def _cases() -> list[object]:
    key = _key()
    rrset, sig = _signed(key=key)
    other = _key()
    revoked = _key(flags=256 | 0x80)
    r_rrset, r_sig = _signed(key=revoked)
    wild = dns.rrset.from_text("*.z.test.", 300, "IN", "TLSA", GOOD)
    w_sig = dns.dnssec.sign(wild, key[0], ORIGIN, key[1], inception=NOW - 60, expiration=NOW + 3600)
    expanded = dns.rrset.from_text("x.y.z.test.", 300, "IN", "TLSA", GOOD)
    truncated = key[1].replace(key=key[1].key[:10])  # type: ignore[attr-defined]
    return [
        pytest.param(rrset, sig, [key[1]], NOW, "", id="good"),
        pytest.param(_tampered(rrset), sig, [key[1]], NOW, "verify failure", id="tampered"),
        pytest.param(rrset, sig, [key[1]], NOW + 7200, "expired", id="expired"),
        pytest.param(rrset, sig, [key[1]], NOW - 7200, "not yet valid", id="not-yet-valid"),
        pytest.param(rrset, sig, [other[1]], NOW, "unknown key", id="other-key"),
        pytest.param(r_rrset, r_sig, [revoked[1]], NOW, "unknown key", id="revoked-key"),
        pytest.param(expanded, w_sig, [key[1]], NOW, "", id="wildcard-expansion"),
        pytest.param(rrset, sig, [truncated], NOW, "", id="truncated-key"),
    ]


@pytest.mark.parametrize(("rrset", "sig", "dnskeys", "now", "failure"), _cases())
def test_verify_agrees_with_dnspython(
    rrset: dns.rrset.RRset, sig: dns.rdata.Rdata, dnskeys: list[dns.rdata.Rdata], now: float,
    failure: str,
) -> None:  # fmt: skip
    keys = {ORIGIN: dns.rrset.from_rdata_list(ORIGIN, 300, dnskeys)}
    try:
        dns.dnssec.validate_rrsig(rrset, sig, keys, now=now)  # type: ignore[arg-type]
        theirs = ""
    except dns.dnssec.ValidationFailure as exc:
        theirs = str(exc)
    wired, wired_sig = wire_rrset(rrset), wire_rdata(sig)
    try:
        verify(wired, wired_sig, _table(*dnskeys), now)  # type: ignore[arg-type]
        ours = ""
    except VerifyFailure as exc:
        ours = str(exc)
    assert bool(ours) == bool(theirs), (ours, theirs)
    if failure:
        assert ours == failure
    if not ours:
        theirs_data = dns.dnssec._make_rrsig_signature_data(rrset, sig)
        assert signed_data(wired, wired_sig) == theirs_data  # type: ignore[arg-type]


def test_unusable_keys_are_kept_with_a_reason_not_raised() -> None:
    _, dnskey = _key()
    truncated = zone_key(wire_rdata(dnskey.replace(key=b"\x01\x02")))  # type: ignore[arg-type]
    unknown = zone_key(wire_rdata(dnskey.replace(algorithm=200)))  # type: ignore[arg-type]
    forbidden = zone_key(wire_rdata(dnskey.replace(algorithm=1)))  # type: ignore[arg-type]
    assert (truncated.public, truncated.error) == (None, "invalid public key")
    assert unknown.public is None and "algorithm" in unknown.error
    assert forbidden.public is None and "algorithm 1" in forbidden.error


def test_unknown_algorithm_signature_names_it() -> None:
    private, dnskey = _key()
    rrset, sig = _signed(key=(private, dnskey))
    odd = dnskey.replace(algorithm=200)  # type: ignore[attr-defined]
    with pytest.raises(VerifyFailure, match="algorithm 200"):
        odd_sig = sig.replace(algorithm=200, key_tag=zone_key(wire_rdata(odd)).tag)  # type: ignore[arg-type]
        verify(wire_rrset(rrset), wire_rdata(odd_sig), _table(odd), NOW)  # type: ignore[arg-type]


# --- the key cache of a run ---


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_cached_keys_expire_with_the_dnskey_ttl() -> None:
    clock = Clock()
    tlsa = [Record(TLSA, "TLSA", GOOD)]
    validator = _validator(_zone(tlsa), _records(tlsa), clock=clock)
    resolver = validator.resolver
    await validator.validate(TLSA, dns.rdatatype.TLSA)
    asked = resolver.questions  # type: ignore[attr-defined]
    await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert resolver.questions - asked == 1  # type: ignore[attr-defined]  # the TLSA only
    clock.now += 301  # the lab's DNSKEY TTL is 300 s
    asked = resolver.questions  # type: ignore[attr-defined]
    result = await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert result.dnssec.status is DnssecStatus.SECURE
    assert resolver.questions - asked == 2  # type: ignore[attr-defined]  # DNSKEY asked again


@pytest.mark.asyncio
async def test_cached_keys_never_outlive_their_rrsig(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys validated a minute before their RRSIG expires are not reused after it: the next
    answer is judged against the expired signature (bogus), never as secure from the cache."""
    monkeypatch.setattr(dane_module, "KEY_CACHE_SECONDS", 86_400.0)
    records = _records([Record(TLSA, "TLSA", GOOD)])
    zone = sign_zone(ZONE, records)
    clock = Clock()
    expiry = min(
        sig.expiration  # type: ignore[attr-defined]
        for r in zone.rrsets if r.rdtype == dns.rdatatype.RRSIG and r.covers == dns.rdatatype.DNSKEY
        for sig in r
    )  # fmt: skip
    clock.now = expiry - 60
    validator = _validator(zone, records, clock=clock)
    keys = await validator._zone_keys(wire_name(f"{ZONE}."), ())
    assert keys.status is DnssecStatus.SECURE and keys.valid_until <= expiry
    clock.now = expiry + 1
    result = await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert result.dnssec.status is DnssecStatus.BOGUS and "expired" in result.dnssec.reason


@pytest.mark.asyncio
async def test_a_failed_key_lookup_is_asked_again() -> None:
    zone = _zone([Record(TLSA, "TLSA", GOOD)])
    validator = _validator(zone, _records([Record(TLSA, "TLSA", GOOD)]))
    data = validator.resolver.data  # type: ignore[attr-defined]
    apex = dns.name.from_text(f"{ZONE}.")
    data.faults[apex] = DnsFault.SERVFAIL
    first = await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert first.dnssec.status is DnssecStatus.INDETERMINATE
    del data.faults[apex]
    second = await validator.validate(TLSA, dns.rdatatype.TLSA)
    assert (second.status, second.dnssec.status) == (DnsStatus.OK, DnssecStatus.SECURE)


@pytest.mark.asyncio
async def test_the_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dane_module, "MAX_CACHED_ZONES", 3)
    validator = _validator(None, _records([]))
    for index in range(10):
        await validator._zone_keys(wire_name(f"z{index}.invalid."), ())
        assert len(validator._keys) <= 3


def test_key_tags_are_dnspython_key_ids() -> None:
    """RFC 4034 Appendix B over keys of every length parity and RSA/MD5's own rule (B.1)."""
    import random

    rng = random.Random(4034)
    _, dnskey = _key()
    keys = [dnskey, dnskey.replace(flags=257), dnskey.replace(algorithm=1)]  # type: ignore[attr-defined]
    keys += [dnskey.replace(key=rng.randbytes(n)) for n in range(3, 40)]  # type: ignore[attr-defined]
    for key in keys:
        assert zone_key(wire_rdata(key)).tag == dns.dnssec.key_id(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", [8, 10, 13, 14, 15])
def test_other_algorithms_and_mixed_case_names_verify(algorithm: int) -> None:
    """RSA, ECDSA P-384 and Ed25519 keys through dnspython's key classes, over an MX RRset
    whose names are in mixed case (signed in canonical form, RFC 4034 §6.2)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    private = {
        8: lambda: rsa.generate_private_key(65537, 2048),
        10: lambda: rsa.generate_private_key(65537, 2048),
        13: lambda: ec.generate_private_key(ec.SECP256R1()),
        14: lambda: ec.generate_private_key(ec.SECP384R1()),
        15: ed25519.Ed25519PrivateKey.generate,
    }[algorithm]()
    dnskey = dns.dnssec.make_dnskey(private.public_key(), Algorithm(algorithm), 256)  # type: ignore[arg-type]
    rrset = dns.rrset.from_text("A.Z.test.", 300, "IN", "MX", "10 MX.Z.Test.", "20 b.z.test.")
    sig = dns.dnssec.sign(
        rrset,
        private,
        ORIGIN,
        dnskey,
        inception=NOW - 60,
        expiration=NOW + 3600,  # type: ignore[arg-type]
    )
    verify(wire_rrset(rrset), wire_rdata(sig), _table(dnskey), NOW)  # type: ignore[arg-type]
    other = dns.rrset.from_text("a.z.test.", 300, "IN", "MX", "10 mx.z.test.", "30 b.z.test.")
    with pytest.raises(VerifyFailure, match="verify failure"):
        verify(wire_rrset(other), wire_rdata(sig), _table(dnskey), NOW)  # type: ignore[arg-type]


# --- parsed keys kept by their DNSKEY octets ---


@pytest.mark.parametrize(("rrset", "sig", "dnskeys", "now", "failure"), _cases())
def test_kept_keys_give_the_verdicts_of_fresh_ones(
    rrset: dns.rrset.RRset, sig: dns.rdata.Rdata, dnskeys: list[dns.rdata.Rdata], now: float,
    failure: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A wrong signature, an expired or not yet valid RRSIG, an unknown or revoked key: the
    same verdict from a key parsed afresh, parsed into the memo, and taken from it."""
    wired, wired_sig = wire_rrset(rrset), wire_rdata(sig)

    def outcome() -> str:
        try:
            verify(wired, wired_sig, _table(*dnskeys), now)  # type: ignore[arg-type]
        except VerifyFailure as exc:
            return str(exc)
        return ""

    monkeypatch.setattr(rrsig_module, "_loaded", {})
    monkeypatch.setattr(rrsig_module, "MAX_LOADED_KEYS", 0)  # every key parsed afresh
    fresh = outcome()
    monkeypatch.setattr(rrsig_module, "MAX_LOADED_KEYS", 100)
    rrsig_module._loaded.clear()
    assert [outcome(), outcome()] == [fresh, fresh]
    assert set(rrsig_module._loaded) == {wire_rdata(k).wire for k in dnskeys}  # type: ignore[attr-defined]
    if failure:
        assert fresh == failure


def test_a_kept_key_is_the_key_of_those_octets_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rrsig_module, "_loaded", {})
    (_, one), (_, two) = _key(), _key()
    first, second = zone_key(wire_rdata(one)), zone_key(wire_rdata(two))  # type: ignore[arg-type]
    assert zone_key(wire_rdata(one)) is first  # type: ignore[arg-type]
    assert first.public is not None and second.public is not None
    assert first.public.key.public_numbers() != second.public.key.public_numbers()  # type: ignore[attr-defined]
    # the same key under other flags is another record: its own entry, its own tag
    ksk = zone_key(wire_rdata(one.replace(flags=257)))  # type: ignore[arg-type,attr-defined]
    assert ksk is not first and ksk.tag != first.tag and ksk.dnskey.flags == 257


def test_the_policy_is_asked_for_a_kept_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rrsig_module, "_loaded", {})
    _, dnskey = _key()
    assert zone_key(wire_rdata(dnskey)).public is not None  # type: ignore[arg-type]
    deny = dns.dnssec.SimpleDeny(set(), {Algorithm.ECDSAP256SHA256}, set(), set())
    monkeypatch.setattr(dns.dnssec, "default_policy", deny)
    refused = zone_key(wire_rdata(dnskey))  # type: ignore[arg-type]
    assert refused.public is None and "algorithm 13 is not allowed" in refused.error


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rrsig_module, "_loaded", {})
    monkeypatch.setattr(rrsig_module, "MAX_LOADED_KEYS", 3)
    for _ in range(7):
        zone_key(wire_rdata(_key()[1]))  # type: ignore[arg-type]
        assert len(rrsig_module._loaded) <= 3


@pytest.mark.parametrize("algorithm", [13, 14])
def test_ecdsa_keys_from_the_point_are_dnspythons_keys(algorithm: int) -> None:
    """The uncompressed-point path gives the key ``from_dnskey`` gives; a point off the curve
    is refused by both; a key field of another length is read by ``from_dnskey`` itself."""
    import dns.dnssecalgs

    curve = ec.SECP256R1() if algorithm == 13 else ec.SECP384R1()
    dnskey = dns.dnssec.make_dnskey(
        ec.generate_private_key(curve).public_key(), Algorithm(algorithm), 256
    )
    public_cls = dns.dnssecalgs.get_algorithm_cls(algorithm).public_cls
    ours = rrsig_module._parse_key(wire_rdata(dnskey))  # type: ignore[arg-type]
    assert ours.public is not None
    theirs = public_cls.from_dnskey(dnskey)  # type: ignore[arg-type]
    assert ours.public.key.public_numbers() == theirs.key.public_numbers()  # type: ignore[attr-defined]
    off_curve = dnskey.replace(key=dnskey.key[:-1] + bytes([dnskey.key[-1] ^ 1]))  # type: ignore[attr-defined]
    refused = rrsig_module._parse_key(wire_rdata(off_curve))  # type: ignore[arg-type]
    assert (refused.public, refused.error) == (None, "invalid public key")
    with pytest.raises(ValueError):
        public_cls.from_dnskey(off_curve)  # type: ignore[arg-type]
    longer = dnskey.replace(key=dnskey.key + b"\0")  # type: ignore[attr-defined]
    read = rrsig_module._parse_key(wire_rdata(longer))  # type: ignore[arg-type]
    assert read.public is not None  # from_dnskey ignores the extra octet, and so do we
    assert read.public.key.public_numbers() == theirs.key.public_numbers()  # type: ignore[attr-defined]


@pytest.mark.parametrize("algorithm", [13, 14])
def test_ecdsa_verify_in_one_step_refuses_what_dnspython_refuses(algorithm: int) -> None:
    """The ECDSA keys' own ``verify`` (one ``ECDSA`` object per class) accepts and refuses
    exactly the signatures dnspython's ``PublicECDSA.verify`` does: good, a flipped bit, a
    signature of the wrong length (RFC 6605 §4: r | s, each exactly one coordinate long)."""
    import dns.dnssecalgs
    from cryptography.exceptions import InvalidSignature

    curve = ec.SECP256R1() if algorithm == 13 else ec.SECP384R1()
    private = ec.generate_private_key(curve)
    dnskey = dns.dnssec.make_dnskey(private.public_key(), Algorithm(algorithm), 256)
    ours = rrsig_module._parse_key(wire_rdata(dnskey)).public  # type: ignore[arg-type]
    theirs = dns.dnssecalgs.get_algorithm_cls(algorithm).public_cls.from_dnskey(dnskey)  # type: ignore[arg-type]
    assert ours is not None and type(ours) is not type(theirs)  # the one-step class
    assert isinstance(ours, type(theirs))
    private_cls = dns.dnssecalgs.get_algorithm_cls(algorithm)
    good = private_cls(key=private).sign(b"data", verify=True)
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    for signature in (good, flipped, good[:-1], good + b"\0", b""):
        outcomes = []
        for key in (ours, theirs):
            try:
                key.verify(signature, b"data")
                outcomes.append("ok")
            except InvalidSignature:
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1], (signature.hex(), outcomes)
    assert ours.verify(good, b"data") is None
