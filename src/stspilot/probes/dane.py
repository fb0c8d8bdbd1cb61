"""DNSSEC validation of our own, for DANE: TLSA and MX answers judged secure, insecure or bogus.

Why validate here instead of trusting the AD bit of a resolver: RFC 7672 §2.1.1 (and RFC 6698
§8.3) accept someone else's validation only over a trusted, secured channel, and a checker runs
on laptops and CI boxes behind whatever resolver the network hands out. So every answer is
asked with DO+CD (``Resolver.query_dnssec``, read by
``dnswire_signed.parse_dnssec_message``) and the
chain of signatures is walked here (``probes/rrsig.py`` verifies), from trust anchors (the IANA
root KSKs by default; a file for the lab or a private root): DNSKEY of each zone authenticated
by its DS in the parent, the DS by the parent's DNSKEY, up to an anchor. An unsigned answer
under an anchor is insecure only when the missing DS at its zone cut is itself proven by signed
NSEC/NSEC3 records; otherwise it is bogus. Bounded work: every zone's keys are validated once
per run (and kept ``KEY_CACHE_SECONDS``), chains are at most ``MAX_DEPTH`` zones deep, RRsets
over ``MAX_RRSET`` records are refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import dns.exception

from stspilot.facts import DnssecResult, DnssecStatus, DnsStatus, MxLookup, TlsaLookup
from stspilot.probes.dane_share import Shared
from stspilot.probes.denial import Nsec3Proof, nsec3_covers, nsec3_proof
from stspilot.probes.dnssec import (
    TrustAnchors,
    ds_usable,
    find_rrset,
    matches_anchor,
    nsec_no_closer_match,
    nsec_proves,
    parent_side,
    tlsa_text,
)
from stspilot.probes.dnswire import (
    AAAA,
    CNAME,
    DNSKEY,
    DS,
    MX,
    NSEC,
    NSEC3,
    NXDOMAIN,
    RRSIG,
    SOA,
    TLSA,
    A,
    Cname,
    Dnskey,
    Ds,
    Message,
    Nsec3,
    RRset,
    Rrsig,
    WireName,
    name_from_text,
)
from stspilot.probes.resolver import Resolver
from stspilot.probes.rrsig import VerifyFailure, ZoneKey, key_table, verify

MAX_DEPTH = 12  # zones between an answer and its anchor; deeper is a loop or an attack
MAX_RRSET = 64  # records in one validated RRset (a TLSA RRset has 1-4 in practice)
KEY_CACHE_SECONDS = 300.0  # at most; less when a TTL or an RRSIG expiration says so
MAX_CACHED_ZONES = 10_000
MAX_PROOFS = 8  # NSEC/NSEC3 RRsets read from one denial (a proof needs at most 3)

S, INSEC, B, X = (
    DnssecStatus.SECURE,
    DnssecStatus.INSECURE,
    DnssecStatus.BOGUS,
    DnssecStatus.INDETERMINATE,
)


@dataclass(frozen=True, slots=True)
class _Keys:
    status: DnssecStatus
    reason: str = ""
    # the zone's validated DNSKEYs by key tag (RFC 4034 Appendix B), each public key parsed
    # once (probes/rrsig.py): an RRSIG names its key's tag, so each check tries one key
    keys: dict[int, tuple[ZoneKey, ...]] | None = None
    expires: float | None = None  # the earliest RRSIG expiration of the chain (epoch seconds)
    # until when (epoch seconds) the verdict may be reused: the DNSKEY and DS TTLs, their
    # RRSIG expirations, ``KEY_CACHE_SECONDS``; 0: not reused (a failed lookup is asked again)
    valid_until: float = 0.0
    zone: str = ""  # the zone's name as a verdict names its signer (``_text``), made once


class Validated(NamedTuple):
    """One validated question: the RRset asked for (None when absent) and the verdict. A
    named tuple: three are made a DANE check, built ~3 times faster than a frozen dataclass."""

    status: DnsStatus
    dnssec: DnssecResult
    rrset: RRset | None = None
    error: str = ""
    ttl: int = 0  # how long the answer may be kept (the least TTL of what it was made of)


class _Bogus(Exception):
    pass


_Path = tuple[WireName, ...]  # the zones whose keys are being loaded, outermost first
Reply = Message | tuple[DnsStatus, str]  # Resolver.query_dnssec's answer
_TYPE_NAMES = {A: "A", AAAA: "AAAA", CNAME: "CNAME", MX: "MX", DS: "DS", DNSKEY: "DNSKEY"}
_TYPE_NAMES |= {TLSA: "TLSA", NSEC: "NSEC", NSEC3: "NSEC3", SOA: "SOA"}


def _text(name: WireName) -> str:
    return str(name)[:-1].lower() or "."


def _type_text(rdtype: int) -> str:
    return _TYPE_NAMES.get(rdtype, f"TYPE{rdtype}")


def _name(text: str) -> WireName:
    """``text`` as a name; a ``DNSException`` (dnspython reads odd names) if it is not one."""
    return name_from_text(text)


def _when(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


_ORDER = {S: 0, INSEC: 1, X: 2, B: 3}


def _weakest(*results: DnssecResult) -> DnssecResult:
    if len(results) == 1:  # the common case: one RRset, no CNAME, no wildcard
        return results[0]
    worst = max(results, key=lambda r: _ORDER[r.status])
    if worst.status is S:
        stamps = [r.expires for r in results if r.expires is not None]
        return DnssecResult(S, signer=worst.signer, expires=min(stamps, default=None))
    return worst


class DnssecValidator:
    """Validates answers from ``resolver``; share one per run (it caches zone keys)."""

    def __init__(
        self,
        resolver: Resolver,
        anchors: TrustAnchors | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.anchors = anchors or TrustAnchors.load(None)
        self.clock = clock
        self._keys: dict[WireName, Shared[_Keys]] = {}

    # --- the public questions ---

    async def lookup_tlsa(self, host: str, port: int = 25) -> TlsaLookup:
        """``_<port>._tcp.<host>`` TLSA (RFC 7672 §2.2.3), validated."""
        name = f"_{port}._tcp.{host.rstrip('.')}"
        result = await self.validate(name, TLSA)
        records = tuple(tlsa_text(rdata) for rdata in result.rrset or ())
        return TlsaLookup(host, name, result.status, result.dnssec, records, result.error)

    async def judge_addresses(self, lookup: TlsaLookup, replies: tuple[Reply, ...]) -> TlsaLookup:
        """``lookup`` with the DNSSEC status of its host's A and AAAA RRsets (``replies``:
        the DO answers the probe used; asked here when missing). RFC 7672 §2.2.2: a sender
        uses TLSA only for a host whose address records validated, so they are judged only
        where secure TLSA records exist, and only the RRsets that exist: an empty family is
        one the sender does not connect over (its denial's proof is not checked, which saves
        a signature check a host)."""
        if not lookup.records or lookup.dnssec.status is not S:
            return lookup
        if len(replies) != 2:
            replies = tuple(await asyncio.gather(*(self._ask(lookup.host, t) for t in (A, AAAA))))
        work = []
        try:
            qname: WireName | None = _name(lookup.host)
        except (dns.exception.DNSException, ValueError):
            qname = None
        for reply, rdtype in zip(replies, (A, AAAA), strict=True):
            if qname is not None and _plain(reply, qname, rdtype)[0] is DnsStatus.OK:
                work.append(self._validate_name(qname, rdtype, reply))
        # one RRset (a host with A or AAAA only, the common case): no task for it
        found = [await work[0]] if len(work) == 1 else await asyncio.gather(*work)
        if not found:  # no address record came back: nothing to judge
            errors = [r[1] for r in replies if isinstance(r, tuple)]
            reason = f"no address records: {'; '.join(errors) or 'none'}"
            return replace(lookup, address_dnssec=DnssecResult(X, reason))
        return replace(lookup, address_dnssec=_weakest(*(r.dnssec for r in found)))

    async def _ask(self, host: str, rdtype: int) -> Reply:
        try:
            qname = _name(host)
        except (dns.exception.DNSException, ValueError) as exc:
            return DnsStatus.ERROR, str(exc)
        return await self.resolver.query_dnssec(qname, rdtype)

    async def validate_mx(self, mx: MxLookup, answer: Reply | None = None) -> DnssecResult:
        """The DNSSEC status of a domain's MX RRset (RFC 7672 §2.2.1); ``answer``: the DO
        answer ``Resolver.lookup_mx_dnssec`` already has (else it is asked)."""
        return (await self.validate(mx.name, MX, answer)).dnssec

    async def validate(self, name: str, rdtype: int, answer: Reply | None = None) -> Validated:
        """Ask ``name``/``rdtype`` (unless ``answer`` is given) and judge the answer; never
        raises for DNS trouble."""
        try:
            qname = _name(name)
        except (dns.exception.DNSException, ValueError) as exc:
            return Validated(DnsStatus.ERROR, DnssecResult(X, f"bad name: {exc}"), error=str(exc))
        return await self._validate_name(qname, rdtype, answer)

    async def _validate_name(
        self, qname: WireName, rdtype: int, answer: Reply | None = None
    ) -> Validated:
        """``validate`` of a name read already."""
        anchor = self.anchors.closest(qname)
        # the anchor zone's keys load (in their own task) while the question is out: nothing
        # of the answer is judged before they are validated
        loading = None if anchor is None else self._keys_of(anchor, ())
        if answer is None:
            answer = await self.resolver.query_dnssec(qname, rdtype)
        anchor_keys = loading if not isinstance(loading, Shared) else await loading.wait()
        if anchor_keys is not None and anchor_keys.status is X:
            status, rrset, error = _plain(answer, qname, rdtype)
            reason = f"trust anchor unusable: {anchor_keys.reason}"
            return Validated(status, DnssecResult(X, reason, anchor_ok=False), rrset, error)
        if anchor is None:
            status, rrset, error = _plain(answer, qname, rdtype)
            return Validated(
                status, DnssecResult(INSEC, "no trust anchor covers this name"), rrset, error
            )
        known = None if anchor is None or anchor_keys is None else (anchor, anchor_keys)
        try:
            return await self._validate(qname, rdtype, path=(), answer=answer, known=known)
        except _Bogus as bogus:
            return Validated(DnsStatus.OK, DnssecResult(B, str(bogus)))

    # --- the walk ---

    async def _validate(
        self,
        qname: WireName,
        rdtype: int,
        *,
        path: _Path,
        answer: Reply | None = None,
        known: tuple[WireName, _Keys] | None = None,
    ) -> Validated:
        """``known``: a zone's keys the caller holds (the anchor zone's, at the top of the
        walk), used when a signer is that zone and they are still valid."""
        if answer is None:
            answer = await self.resolver.query_dnssec(qname, rdtype)
        if isinstance(answer, tuple):
            status, error = answer
            # A failed lookup in a provably unsigned zone is an ordinary DNS failure.
            zone = await self._zone_of(parent_side(qname, rdtype), path)
            keys = await self._zone_keys(zone, path)
            if keys.status is INSEC:
                return Validated(status, DnssecResult(INSEC, keys.reason), error=error)
            return Validated(status, DnssecResult(X, f"lookup failed: {error}"), error=error)
        results: list[DnssecResult] = []
        current = qname
        ttl = int(KEY_CACHE_SECONDS)
        for _ in range(MAX_DEPTH):  # the CNAME chain inside the answer, every link validated
            rrset = find_rrset(answer.answer, current, rdtype)
            cname = None if rrset is not None else find_rrset(answer.answer, current, CNAME)
            found = rrset if rrset is not None else cname
            if found is None:
                break
            sigs = find_rrset(answer.answer, current, RRSIG, found.rdtype)
            verified: list[Rrsig] = []
            results.append(await self._judge_rrset(found, sigs, path, verified, known))
            encloser = _wildcard_encloser(found.name, verified)
            if encloser is not None:  # synthesised from *.<encloser>: the name must not exist
                results.append(await self._judge_wildcard(answer, found.name, encloser, path))
            ttl = min(ttl, found.ttl)
            if rrset is not None:
                return Validated(DnsStatus.OK, _weakest(*results), rrset, ttl=ttl)
            current = _target(found)
        else:
            return Validated(DnsStatus.ERROR, DnssecResult(X, "CNAME chain too long"))
        # No RRset of the type asked: a denial of existence, which must be proven too.
        status = DnsStatus.NXDOMAIN if answer.rcode() == NXDOMAIN else DnsStatus.NODATA
        results.append(await self._judge_denial(answer, current, rdtype, status, path))
        for rrset in answer.authority:  # the SOA and the proofs: their TTLs bound the denial
            ttl = min(ttl, rrset.ttl)
        return Validated(status, _weakest(*results), ttl=ttl)

    async def _judge_rrset(
        self,
        rrset: RRset,
        sigs: RRset | None,
        path: _Path,
        verified: list[Rrsig] | None = None,
        known: tuple[WireName, _Keys] | None = None,
    ) -> DnssecResult:
        """The verdict on one RRset; ``verified`` gets the RRSIG that verified it; ``known``:
        as ``_validate``'s."""
        if len(rrset) > MAX_RRSET:
            return DnssecResult(B, f"{len(rrset)} records at {_text(rrset.name)}: too many")
        if not sigs:
            zone = await self._zone_of(parent_side(rrset.name, rrset.rdtype), path)
            keys = await self._zone_keys(zone, path)
            if keys.status is S:
                return DnssecResult(
                    B, f"{_text(rrset.name)} is not signed in signed zone {_text(zone)}"
                )
            return DnssecResult(keys.status, keys.reason)
        signer = _rrsig(sigs[0]).signer
        # A DS lives in the parent: signed by the child itself it proves nothing (and the
        # strictly shorter signer is what keeps the walk from looping).
        if not parent_side(rrset.name, rrset.rdtype).is_subdomain(signer):
            return DnssecResult(
                B, f"{_text(rrset.name)} is signed by unrelated zone {_text(signer)}"
            )
        if known is not None and known[0] == signer and known[1].valid_until >= self.clock():
            keys = known[1]  # what ``_zone_keys`` would return, without looking it up again
        else:
            keys = await self._zone_keys(signer, path)
        if keys.status is not S or keys.keys is None:
            return DnssecResult(keys.status, keys.reason, _text(signer))
        sig = self._verify(rrset, sigs, keys.keys)
        if verified is not None:
            verified.append(sig)
        expires = float(sig.expiration)
        return DnssecResult(
            S, signer=keys.zone, expires=_when(min(expires, keys.expires or expires))
        )

    async def _judge_wildcard(
        self, answer: Message, qname: WireName, encloser: WireName, path: _Path
    ) -> DnssecResult:
        """An answer synthesised from the wildcard at ``encloser`` holds only with validated
        NSEC/NSEC3 records, in its authority section, proving that ``qname`` itself does not
        exist and no closer match does (RFC 4035 §5.3.4, RFC 5155 §8.8, RFC 7129 §5.3);
        else a replayed wildcard signature could stand in for any name."""
        proofs = _proofs(answer)
        what = f"{_text(qname)} is answered from the wildcard at *.{_text(encloser)}"
        if not proofs:
            return DnssecResult(B, f"{what} without a proof that the name does not exist")
        results = []
        for proof in proofs:
            sigs = find_rrset(answer.authority, proof.name, RRSIG, proof.rdtype)
            results.append(await self._judge_rrset(proof, sigs, path))
        verdict = _weakest(*results)
        if verdict.status is not S:
            return verdict
        if nsec_no_closer_match(proofs, qname, encloser):
            return verdict
        next_closer = qname.suffix(len(encloser.labels) + 1)
        nsec3 = [(p.name, r) for p in proofs for r in p if isinstance(r, Nsec3)]
        if nsec3 and nsec3_covers(nsec3, next_closer):
            return verdict
        return DnssecResult(B, f"{what}, but the NSEC/NSEC3 records do not prove it absent")

    def _verify(self, rrset: RRset, sigs: RRset, keys: dict[int, tuple[ZoneKey, ...]]) -> Rrsig:
        """A signature that verifies; ``_Bogus`` naming why none does."""
        now = self.clock()
        reasons: list[str] = []
        for record in sigs[:MAX_RRSET]:
            sig = _rrsig(record)
            try:
                verify(rrset, sig, keys, now)
            except VerifyFailure as exc:
                reasons.append(str(exc))
                continue
            except (ValueError, TypeError) as exc:
                reasons.append(f"unusable signature: {exc}")
                continue
            return sig
        what = f"{_text(rrset.name)} {_type_text(rrset.rdtype)}"
        raise _Bogus(f"RRSIG on {what}: {', '.join(dict.fromkeys(reasons)) or 'none'}")

    async def _zone_keys(self, zone: WireName, path: _Path) -> _Keys:
        """The validated DNSKEY RRset of ``zone``, loaded once while its verdict is valid
        (``_Keys.valid_until``); concurrent askers share one load."""
        keys = self._keys_of(zone, path)
        return keys if not isinstance(keys, Shared) else await keys.wait()

    def _keys_of(self, zone: WireName, path: _Path) -> _Keys | Shared[_Keys]:
        """``_zone_keys`` without waiting: the verdict when it is known, else the load (in its
        own task: one domain's deadline must not cancel a load that others wait for)."""
        if zone in path:  # proving the keys of a zone needs those very keys: no chain
            return _Keys(B, f"the chain of trust loops through {_text(zone)}")
        if len(path) > MAX_DEPTH:
            return _Keys(X, f"chain of trust deeper than {MAX_DEPTH} zones at {_text(zone)}")
        cached = self._keys.get(zone)
        if cached is not None and cached.done():
            keys = cached.result()
            if keys.valid_until >= self.clock():
                return keys
            cached = None
        if cached is None:
            if len(self._keys) >= MAX_CACHED_ZONES:
                self._keys = {z: f for z, f in self._keys.items() if not f.done()}
            inner = (*path, zone)
            cached = self._keys[zone] = Shared(lambda: self._load_keys(zone, inner))
        return cached

    async def _load_keys(self, zone: WireName, path: _Path) -> _Keys:
        try:
            anchored = self.anchors.by_zone.get(zone)
            expires: float | None = None
            until = self.clock() + KEY_CACHE_SECONDS
            if anchored is not None:
                anchors = anchored
            else:
                parent_anchor = self.anchors.closest(zone)
                if parent_anchor is None:
                    return _Keys(INSEC, f"no trust anchor covers {_text(zone)}", valid_until=until)
                ds = await self._validate(zone, DS, path=path)
                if ds.dnssec.status is X:
                    return _Keys(X, ds.dnssec.reason)
                until = min(until, self.clock() + ds.ttl)
                if ds.dnssec.status is not S:
                    return _Keys(ds.dnssec.status, ds.dnssec.reason, valid_until=until)
                if ds.rrset is None:
                    reason = f"no DS for {_text(zone)}: an unsigned delegation"
                    return _Keys(INSEC, reason, valid_until=until)
                delegation = tuple(r for r in ds.rrset if isinstance(r, Ds))
                if not any(ds_usable(d) for d in delegation):
                    reason = (
                        f"the DS records of {_text(zone)} use only digest types or algorithms "
                        "this validator does not support: treated as unsigned (RFC 4035 §5.2)"
                    )
                    return _Keys(INSEC, reason, valid_until=until)
                anchors = delegation
                expires = ds.dnssec.expires.timestamp() if ds.dnssec.expires else None
            answer = await self.resolver.query_dnssec(zone, DNSKEY)
            if isinstance(answer, tuple):
                return _Keys(X, f"DNSKEY lookup of {_text(zone)} failed: {answer[1]}")
            dnskey = find_rrset(answer.answer, zone, DNSKEY)
            sigs = find_rrset(answer.answer, zone, RRSIG, DNSKEY)
            if dnskey is None and anchored is not None:
                # Our anchor's zone serves no key at all: the resolver is not the DNS the
                # anchors are for (a lab without its anchor file, a broken forwarder).
                return _Keys(X, f"the trust anchor zone {_text(zone)} serves no DNSKEY")
            if dnskey is None or sigs is None:
                raise _Bogus(f"{_text(zone)} has a DS but serves no signed DNSKEY RRset")
            if len(dnskey) > MAX_RRSET:
                raise _Bogus(f"{len(dnskey)} DNSKEYs at {_text(zone)}: too many")
            table = key_table(r for r in dnskey if isinstance(r, Dnskey))
            trusted = {
                tag: matching
                for tag, keys in table.items()
                if (
                    matching := tuple(
                        k for k in keys if matches_anchor(zone, k.dnskey, anchors, tag)
                    )
                )
            }
            if not trusted:
                raise _Bogus(f"no DNSKEY of {_text(zone)} matches its DS or trust anchor")
            signed = float(self._verify(dnskey, sigs, trusted).expiration)
            expires = min(signed, expires or signed)
            until = min(until, self.clock() + dnskey.ttl, expires)
            return _Keys(S, keys=table, expires=expires, valid_until=until, zone=_text(zone))
        except _Bogus as bogus:
            return _Keys(B, str(bogus), valid_until=self.clock() + KEY_CACHE_SECONDS)

    async def _zone_of(self, name: WireName, path: _Path) -> WireName:
        """The apex of the zone holding ``name``, from the SOA in a SOA answer or its authority."""
        answer = await self.resolver.query_dnssec(name, SOA)
        if not isinstance(answer, tuple):
            for section in (answer.answer, answer.authority):
                for rrset in section:
                    if rrset.rdtype == SOA and name.is_subdomain(rrset.name):
                        return rrset.name
        anchor = self.anchors.closest(name)
        return anchor if anchor is not None else WireName(())

    async def _judge_denial(
        self, answer: Message, qname: WireName, rdtype: int, status: DnsStatus, path: _Path
    ) -> DnssecResult:
        """A negative answer is secure only with validated NSEC/NSEC3 proving it (RFC 4035
        §5.4, RFC 5155 §8): NSEC: the NODATA type bitmap at the name, or for NXDOMAIN a record
        covering it; NSEC3: the closest-encloser proofs of ``probes/denial.py``, an opt-out span
        being insecure. Only the first ``MAX_PROOFS`` records are read, and all are validated."""
        proofs = _proofs(answer)
        signed = [r for r in answer.authority if r.rdtype == RRSIG]
        if not signed:
            zone = await self._zone_of(parent_side(qname, rdtype), path)
            keys = await self._zone_keys(zone, path)
            if keys.status is S:
                return DnssecResult(
                    B, f"unsigned denial for {_text(qname)} in signed zone {_text(zone)}"
                )
            return DnssecResult(keys.status, keys.reason)
        results: list[DnssecResult] = []
        for proof in proofs:
            sigs = find_rrset(answer.authority, proof.name, RRSIG, proof.rdtype)
            results.append(await self._judge_rrset(proof, sigs, path))
        if not proofs:
            return DnssecResult(B, f"no NSEC/NSEC3 proof for {_text(qname)}")
        verdict = _weakest(*results)
        if verdict.status is not S:
            return verdict
        nxdomain = status is DnsStatus.NXDOMAIN
        if nsec_proves(proofs, qname, rdtype, nxdomain=nxdomain):
            return verdict
        nsec3 = [(p.name, r) for p in proofs for r in p if isinstance(r, Nsec3)]
        denial = nsec3_proof(nsec3, qname, rdtype, nxdomain=nxdomain) if nsec3 else None
        if denial is Nsec3Proof.PROVEN:
            return verdict
        if denial is Nsec3Proof.OPT_OUT:  # RFC 5155 §6: maybe an unsigned delegation
            return DnssecResult(INSEC, f"an opt-out NSEC3 span covers {_text(qname)}")
        return DnssecResult(B, f"the NSEC/NSEC3 records do not prove {_text(qname)} absent")


def _rrsig(rdata: object) -> Rrsig:
    """A record of an RRSIG RRset (``parse_dnssec_message`` reads every one as ``Rrsig``)."""
    if not isinstance(rdata, Rrsig):
        raise _Bogus("an RRSIG record that does not parse as one")
    return rdata


def _target(rrset: RRset) -> WireName:
    cname = rrset[0]
    if not isinstance(cname, Cname):
        raise _Bogus("a CNAME record that does not parse as one")
    return cname.target


def _proofs(answer: Message) -> list[RRset]:
    """The NSEC/NSEC3 RRsets of a denial's authority section, at most ``MAX_PROOFS``."""
    return [r for r in answer.authority if r.rdtype in (NSEC, NSEC3) and len(r) <= MAX_RRSET][
        :MAX_PROOFS
    ]


def _wildcard_encloser(owner: WireName, verified: list[Rrsig]) -> WireName | None:
    """The closest encloser whose wildcard the verified RRSIG says the RRset at ``owner`` was
    synthesised from (its labels field is less than the owner's label count, RFC 4034
    §3.1.3, §5.3.4), or None for an RRset that exists under its own name."""
    if not verified:
        return None
    labels = verified[0].labels
    count = len(owner.labels) - (1 if owner.is_wild() else 0)
    if labels >= count:
        return None
    return owner.suffix(labels)


def _plain(answer: Reply, qname: WireName, rdtype: int) -> tuple[DnsStatus, RRset | None, str]:
    """An answer read without validation (the name is under no trust anchor)."""
    if isinstance(answer, tuple):
        return answer[0], None, answer[1]
    current = qname
    for _ in range(MAX_DEPTH):
        rrset = find_rrset(answer.answer, current, rdtype)
        if rrset is not None:
            return DnsStatus.OK, rrset, ""
        cname = find_rrset(answer.answer, current, CNAME)
        if cname is None or not isinstance(cname[0], Cname):
            break
        current = cname[0].target
    nx = answer.rcode() == NXDOMAIN
    return (DnsStatus.NXDOMAIN if nx else DnsStatus.NODATA), None, ""
