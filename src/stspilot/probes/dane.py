"""DNSSEC validation of our own, for DANE: TLSA and MX answers judged secure, insecure or bogus.

Why validate here instead of trusting the AD bit of a resolver: RFC 7672 §2.1.1 (and RFC 6698
§8.3) accept someone else's validation only over a trusted, secured channel, and a checker runs
on laptops and CI boxes behind whatever resolver the network hands out. So every answer is
asked with DO+CD (``Resolver.query_dnssec``) and the chain of signatures is walked here with
dnspython's ``dns.dnssec``, from trust anchors (the IANA root KSKs by default; a file for the
lab or a private root): DNSKEY of each zone authenticated by its DS in the parent, the DS by
the parent's DNSKEY, up to an anchor. An unsigned answer under an anchor is insecure only when
the missing DS at its zone cut is itself proven by signed NSEC/NSEC3 records; otherwise it is
bogus. Bounded work: every zone's keys are validated once per run (and kept ``KEY_CACHE_SECONDS``),
chains are at most ``MAX_DEPTH`` zones deep, RRsets over ``MAX_RRSET`` records are refused.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rrset

from stspilot.errors import ConfigError
from stspilot.facts import DnssecResult, DnssecStatus, DnsStatus, MxLookup, TlsaLookup
from stspilot.probes.resolver import Resolver


@functools.cache
def _dnssec() -> ModuleType:
    """``dns.dnssec``, imported on first use: it costs ~0.2 s (cryptography's algorithms),
    which ``stspilot check`` should pay while its first questions are on the wire."""
    with warnings.catch_warnings():
        # dnspython 2.9 names cryptography's deprecated DSA classes at import; no DSA is used.
        warnings.filterwarnings("ignore", message="DSA is deprecated")
        import dns.dnssec
    return dns.dnssec


# The IANA root zone KSKs (KSK-2017, KSK-2024), from https://data.iana.org/root-anchors/.
IANA_ROOT_ANCHORS = """\
. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
"""
MAX_DEPTH = 12  # zones between an answer and its anchor; deeper is a loop or an attack
MAX_RRSET = 64  # records in one validated RRset (a TLSA RRset has 1-4 in practice)
MAX_ANCHOR_BYTES = 64 * 1024
KEY_CACHE_SECONDS = 300.0
_DIGESTS = {1: "SHA1", 2: "SHA256", 4: "SHA384"}

S, INSEC, B, X = (
    DnssecStatus.SECURE,
    DnssecStatus.INSECURE,
    DnssecStatus.BOGUS,
    DnssecStatus.INDETERMINATE,
)


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """DS or DNSKEY records per zone; an answer is judged from the closest anchor above it."""

    by_zone: dict[dns.name.Name, tuple[dns.rdata.Rdata, ...]]
    _labels: dict[tuple[bytes, ...], dns.name.Name] = field(default_factory=dict, repr=False)

    @classmethod
    def from_text(cls, text: str) -> TrustAnchors:
        """Zone-file lines ``<zone> [ttl] [IN] DS|DNSKEY <rdata>``; ``;`` starts a comment."""
        by_zone: dict[dns.name.Name, list[dns.rdata.Rdata]] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            try:
                owner = dns.name.from_text(fields[0])
                rest = [f for f in fields[1:3] if f.isdigit() or f.upper() == "IN"]
                rtype = fields[1 + len(rest)].upper()
                if rtype not in ("DS", "DNSKEY"):
                    raise ValueError(f"{rtype} is not DS or DNSKEY")
                rdata = dns.rdata.from_text(
                    dns.rdataclass.IN, rtype, " ".join(fields[2 + len(rest) :])
                )
            except (IndexError, ValueError, dns.exception.DNSException) as exc:
                raise ConfigError(f"trust anchor line {number}: {exc}") from exc
            by_zone.setdefault(owner, []).append(rdata)
        if not by_zone:
            raise ConfigError("the trust anchor file holds no DS or DNSKEY record")
        return cls({zone: tuple(rdatas) for zone, rdatas in by_zone.items()})

    @classmethod
    def load(cls, path: Path | str | None) -> TrustAnchors:
        """The anchors in ``path``; the IANA root anchors when ``path`` is None."""
        if path is None:
            return cls.from_text(IANA_ROOT_ANCHORS)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_ANCHOR_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the trust anchor file {path}: {exc}") from exc
        if len(data) > MAX_ANCHOR_BYTES:
            raise ConfigError(f"the trust anchor file {path} is larger than 64 KiB")
        return cls.from_text(data.decode("utf-8", "replace"))

    def closest(self, name: dns.name.Name) -> dns.name.Name | None:
        # By lower-cased label tuples: cheaper than a Name per suffix (Names hash slowly).
        if not self._labels:
            self._labels.update({_folded(zone.labels): zone for zone in self.by_zone})
        labels = _folded(name.labels)
        for start in range(len(labels)):
            zone = self._labels.get(labels[start:])
            if zone is not None:
                return zone
        return None


def _folded(labels: tuple[bytes, ...]) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in labels)


@dataclass(frozen=True, slots=True)
class _Keys:
    status: DnssecStatus
    reason: str = ""
    # the zone's validated DNSKEYs by key tag (RFC 4034 Appendix B), one-key RRsets: an RRSIG
    # names its key's tag, so each check tries one key (dnspython would tag every key again)
    keys: dict[int, dns.rrset.RRset] | None = None
    expires: float | None = None


@dataclass(frozen=True, slots=True)
class Validated:
    """One validated question: the RRset asked for (None when absent) and the verdict."""

    status: DnsStatus
    dnssec: DnssecResult
    rrset: dns.rrset.RRset | None = None
    error: str = ""


class _Bogus(Exception):
    pass


_Path = tuple[dns.name.Name, ...]  # the zones whose keys are being loaded, outermost first
Reply = dns.message.Message | tuple[DnsStatus, str]  # Resolver.query_dnssec's answer


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower() or "."


def _when(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def _weakest(*results: DnssecResult) -> DnssecResult:
    order = {S: 0, INSEC: 1, X: 2, B: 3}
    worst = max(results, key=lambda r: order[r.status])
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
        self._keys: dict[dns.name.Name, tuple[float, asyncio.Future[_Keys]]] = {}

    # --- the public questions ---

    async def lookup_tlsa(self, host: str, port: int = 25) -> TlsaLookup:
        """``_<port>._tcp.<host>`` TLSA (RFC 7672 §2.2.3), validated."""
        name = f"_{port}._tcp.{host.rstrip('.')}"
        result = await self.validate(name, dns.rdatatype.TLSA)
        records = tuple(rdata.to_text() for rdata in result.rrset or ())
        return TlsaLookup(host, name, result.status, result.dnssec, records, result.error)

    async def validate_mx(self, mx: MxLookup, answer: Reply | None = None) -> DnssecResult:
        """The DNSSEC status of a domain's MX RRset (RFC 7672 §2.2.1); ``answer``: the DO
        answer ``Resolver.lookup_mx_dnssec`` already has (else it is asked)."""
        return (await self.validate(mx.name, dns.rdatatype.MX, answer)).dnssec

    async def validate(
        self, name: str, rdtype: dns.rdatatype.RdataType, answer: Reply | None = None
    ) -> Validated:
        """Ask ``name``/``rdtype`` (unless ``answer`` is given) and judge the answer; never
        raises for DNS trouble."""
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            return Validated(DnsStatus.ERROR, DnssecResult(X, f"bad name: {exc}"), error=str(exc))
        anchor = self.anchors.closest(qname)
        anchor_keys = None if anchor is None else await self._zone_keys(anchor, ())
        if answer is None:
            answer = await self.resolver.query_dnssec(qname, rdtype)
        if anchor_keys is not None and anchor_keys.status is X:
            status, rrset, error = _plain(answer, qname, rdtype)
            reason = f"trust anchor unusable: {anchor_keys.reason}"
            return Validated(status, DnssecResult(X, reason, anchor_ok=False), rrset, error)
        if anchor is None:
            status, rrset, error = _plain(answer, qname, rdtype)
            return Validated(
                status, DnssecResult(INSEC, "no trust anchor covers this name"), rrset, error
            )
        try:
            return await self._validate(qname, rdtype, path=(), answer=answer)
        except _Bogus as bogus:
            return Validated(DnsStatus.OK, DnssecResult(B, str(bogus)))

    # --- the walk ---

    async def _validate(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        *,
        path: _Path,
        answer: Reply | None = None,
    ) -> Validated:
        if answer is None:
            answer = await self.resolver.query_dnssec(qname, rdtype)
        if isinstance(answer, tuple):
            status, error = answer
            # A failed lookup in a provably unsigned zone is an ordinary DNS failure.
            zone = await self._zone_of(_parent_side(qname, rdtype), path)
            keys = await self._zone_keys(zone, path)
            if keys.status is INSEC:
                return Validated(status, DnssecResult(INSEC, keys.reason), error=error)
            return Validated(status, DnssecResult(X, f"lookup failed: {error}"), error=error)
        results: list[DnssecResult] = []
        current = qname
        for _ in range(MAX_DEPTH):  # the CNAME chain inside the answer, every link validated
            rrset = _find(answer.answer, current, rdtype)
            cname = (
                None if rrset is not None else _find(answer.answer, current, dns.rdatatype.CNAME)
            )
            found = rrset or cname
            if found is None:
                break
            sigs = _find(answer.answer, current, dns.rdatatype.RRSIG, found.rdtype)
            results.append(await self._judge_rrset(found, sigs, path))
            if rrset is not None:
                return Validated(DnsStatus.OK, _weakest(*results), rrset)
            current = next(iter(found)).target
        else:
            return Validated(DnsStatus.ERROR, DnssecResult(X, "CNAME chain too long"))
        # No RRset of the type asked: a denial of existence, which must be proven too.
        status = DnsStatus.NXDOMAIN if answer.rcode() == dns.rcode.NXDOMAIN else DnsStatus.NODATA
        results.append(await self._judge_denial(answer, current, rdtype, status, path))
        return Validated(status, _weakest(*results))

    async def _judge_rrset(
        self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None, path: _Path
    ) -> DnssecResult:
        if len(rrset) > MAX_RRSET:
            return DnssecResult(B, f"{len(rrset)} records at {_text(rrset.name)}: too many")
        if not sigs:
            zone = await self._zone_of(_parent_side(rrset.name, rrset.rdtype), path)
            keys = await self._zone_keys(zone, path)
            if keys.status is S:
                return DnssecResult(
                    B, f"{_text(rrset.name)} is not signed in signed zone {_text(zone)}"
                )
            return DnssecResult(keys.status, keys.reason)
        signer = next(iter(sigs)).signer
        # A DS lives in the parent: signed by the child itself it proves nothing (and the
        # strictly shorter signer is what keeps the walk from looping).
        if not _parent_side(rrset.name, rrset.rdtype).is_subdomain(signer):
            return DnssecResult(
                B, f"{_text(rrset.name)} is signed by unrelated zone {_text(signer)}"
            )
        keys = await self._zone_keys(signer, path)
        if keys.status is not S or keys.keys is None:
            return DnssecResult(keys.status, keys.reason, _text(signer))
        expires = self._verify(rrset, sigs, keys.keys)
        return DnssecResult(
            S, signer=_text(signer), expires=_when(min(expires, keys.expires or expires))
        )

    def _verify(
        self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset, keys: dict[int, dns.rrset.RRset]
    ) -> float:
        """The expiration of a signature that verifies; ``_Bogus`` naming why none does."""
        now = self.clock()
        reasons: list[str] = []
        for sig in sigs:
            key = keys.get(sig.key_tag)
            if key is None:
                reasons.append("unknown key")
                continue
            try:
                _dnssec().validate_rrsig(rrset, sig, {key.name: key}, now=now)
            except dns.exception.ValidationFailure as exc:
                reasons.append(str(exc))
                continue
            except (dns.exception.DNSException, ValueError, TypeError) as exc:
                reasons.append(f"unusable signature: {exc}")
                continue
            return float(sig.expiration)
        what = f"{_text(rrset.name)} {dns.rdatatype.to_text(rrset.rdtype)}"
        raise _Bogus(f"RRSIG on {what}: {', '.join(dict.fromkeys(reasons)) or 'none'}")

    async def _zone_keys(self, zone: dns.name.Name, path: _Path) -> _Keys:
        """The validated DNSKEY RRset of ``zone``, once per ``KEY_CACHE_SECONDS``."""
        if zone in path:  # proving the keys of a zone needs those very keys: no chain
            return _Keys(B, f"the chain of trust loops through {_text(zone)}")
        if len(path) > MAX_DEPTH:
            return _Keys(X, f"chain of trust deeper than {MAX_DEPTH} zones at {_text(zone)}")
        loop = asyncio.get_running_loop()
        cached = self._keys.get(zone)
        if cached is None or loop.time() - cached[0] > KEY_CACHE_SECONDS:
            if len(self._keys) > 10_000:
                self._keys.clear()
            task = asyncio.ensure_future(self._load_keys(zone, (*path, zone)))
            cached = self._keys[zone] = (loop.time(), task)
        return await asyncio.shield(cached[1])

    async def _load_keys(self, zone: dns.name.Name, path: _Path) -> _Keys:
        try:
            anchored = self.anchors.by_zone.get(zone)
            expires: float | None = None
            if anchored is not None:
                anchors = anchored
            else:
                parent_anchor = self.anchors.closest(zone)
                if parent_anchor is None:
                    return _Keys(INSEC, f"no trust anchor covers {_text(zone)}")
                ds = await self._validate(zone, dns.rdatatype.DS, path=path)
                if ds.dnssec.status is not S:
                    return _Keys(ds.dnssec.status, ds.dnssec.reason)
                if ds.rrset is None:
                    return _Keys(INSEC, f"no DS for {_text(zone)}: an unsigned delegation")
                anchors = tuple(ds.rrset)
                expires = ds.dnssec.expires.timestamp() if ds.dnssec.expires else None
            answer = await self.resolver.query_dnssec(zone, dns.rdatatype.DNSKEY)
            if isinstance(answer, tuple):
                return _Keys(X, f"DNSKEY lookup of {_text(zone)} failed: {answer[1]}")
            dnskey = _find(answer.answer, zone, dns.rdatatype.DNSKEY)
            sigs = _find(answer.answer, zone, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
            if dnskey is None and anchored is not None:
                # Our anchor's zone serves no key at all: the resolver is not the DNS the
                # anchors are for (a lab without its anchor file, a broken forwarder).
                return _Keys(X, f"the trust anchor zone {_text(zone)} serves no DNSKEY")
            if dnskey is None or sigs is None:
                raise _Bogus(f"{_text(zone)} has a DS but serves no signed DNSKEY RRset")
            trusted = [key for key in dnskey if _matches_anchor(zone, key, anchors)]
            if not trusted:
                raise _Bogus(f"no DNSKEY of {_text(zone)} matches its DS or trust anchor")
            signed = self._verify(dnskey, sigs, _by_tag(zone, trusted))
            return _Keys(S, keys=_by_tag(zone, dnskey), expires=min(signed, expires or signed))
        except _Bogus as bogus:
            return _Keys(B, str(bogus))

    async def _zone_of(self, name: dns.name.Name, path: _Path) -> dns.name.Name:
        """The apex of the zone holding ``name``, from the SOA in a SOA answer or its authority."""
        answer = await self.resolver.query_dnssec(name, dns.rdatatype.SOA)
        if not isinstance(answer, tuple):
            for section in (answer.answer, answer.authority):
                for rrset in section:
                    if rrset.rdtype == dns.rdatatype.SOA and name.is_subdomain(rrset.name):
                        return rrset.name
        anchor = self.anchors.closest(name)
        return anchor if anchor is not None else dns.name.root

    async def _judge_denial(
        self,
        answer: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        status: DnsStatus,
        path: _Path,
    ) -> DnssecResult:
        """A negative answer is secure only with validated NSEC/NSEC3 proving it (RFC 4035
        §5.4, RFC 5155 §8): here the NODATA type bitmap at the name (or an opt-out NSEC3
        covering it, for DS) and, for NXDOMAIN, a record covering the name."""
        proofs = [
            r
            for r in answer.authority
            if r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3) and len(r) <= MAX_RRSET
        ]
        signed = [r for r in answer.authority if r.rdtype == dns.rdatatype.RRSIG]
        if not signed:
            zone = await self._zone_of(_parent_side(qname, rdtype), path)
            keys = await self._zone_keys(zone, path)
            if keys.status is S:
                return DnssecResult(
                    B, f"unsigned denial for {_text(qname)} in signed zone {_text(zone)}"
                )
            return DnssecResult(keys.status, keys.reason)
        results: list[DnssecResult] = []
        for proof in proofs[:8]:
            sigs = _find(answer.authority, proof.name, dns.rdatatype.RRSIG, proof.rdtype)
            results.append(await self._judge_rrset(proof, sigs, path))
        if not proofs:
            return DnssecResult(B, f"no NSEC/NSEC3 proof for {_text(qname)}")
        verdict = _weakest(*results)
        if verdict.status is not S:
            return verdict
        if _proves(proofs, qname, rdtype, nxdomain=status is DnsStatus.NXDOMAIN):
            return verdict
        return DnssecResult(B, f"the NSEC/NSEC3 records do not prove {_text(qname)} absent")


def _by_tag(zone: dns.name.Name, keys: Iterable[dns.rdata.Rdata]) -> dict[int, dns.rrset.RRset]:
    out: dict[int, dns.rrset.RRset] = {}
    for key in keys:
        tag = _dnssec().key_id(key)
        rrset = out.setdefault(tag, dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY))
        rrset.add(key)
    return out


def _parent_side(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.name.Name:
    """Where an RRset's zone is looked for: a DS at a zone cut belongs to the parent."""
    if rdtype == dns.rdatatype.DS and name != dns.name.root:
        return name.parent()
    return name


def _matches_anchor(
    zone: dns.name.Name, key: dns.rdata.Rdata, anchors: Iterable[dns.rdata.Rdata]
) -> bool:
    for anchor in anchors:
        if anchor.rdtype == dns.rdatatype.DNSKEY:
            if anchor == key:
                return True
            continue
        digest = _DIGESTS.get(anchor.digest_type)  # type: ignore[attr-defined]
        if digest is None:
            continue
        try:
            if _dnssec().make_ds(zone, key, digest) == anchor:
                return True
        except (dns.exception.DNSException, ValueError):
            continue
    return False


def _find(
    section: list[dns.rrset.RRset],
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    covers: dns.rdatatype.RdataType = dns.rdatatype.NONE,
) -> dns.rrset.RRset | None:
    for rrset in section:
        if (
            rrset.name == name
            and rrset.rdtype == rdtype
            and rrset.covers == covers
            and rrset.rdclass == dns.rdataclass.IN
        ):
            return rrset
    return None


def _plain(
    answer: dns.message.Message | tuple[DnsStatus, str],
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
) -> tuple[DnsStatus, dns.rrset.RRset | None, str]:
    """An answer read without validation (the name is under no trust anchor)."""
    if isinstance(answer, tuple):
        return answer[0], None, answer[1]
    current = qname
    for _ in range(MAX_DEPTH):
        rrset = _find(answer.answer, current, rdtype)
        if rrset is not None:
            return DnsStatus.OK, rrset, ""
        cname = _find(answer.answer, current, dns.rdatatype.CNAME)
        if cname is None:
            break
        current = next(iter(cname)).target
    nx = answer.rcode() == dns.rcode.NXDOMAIN
    return (DnsStatus.NXDOMAIN if nx else DnsStatus.NODATA), None, ""


def _proves(
    proofs: list[dns.rrset.RRset],
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    nxdomain: bool,
) -> bool:
    for proof in proofs:
        for rdata in proof:
            if isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC):
                if _nsec_proves(proof.name, rdata, qname, rdtype, nxdomain=nxdomain):
                    return True
            elif isinstance(rdata, dns.rdtypes.ANY.NSEC3.NSEC3) and _nsec3_proves(
                proof.name, rdata, qname, rdtype, nxdomain=nxdomain
            ):
                return True
    return False


def _types(rdata: dns.rdtypes.ANY.NSEC.NSEC | dns.rdtypes.ANY.NSEC3.NSEC3) -> set[int]:
    found: set[int] = set()
    for window, bitmap in rdata.windows:
        for index, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    found.add(window * 256 + index * 8 + bit)
    return found


def _nsec_proves(
    owner: dns.name.Name,
    rdata: dns.rdtypes.ANY.NSEC.NSEC,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    nxdomain: bool,
) -> bool:
    if not nxdomain:
        types = _types(rdata)
        return owner == qname and rdtype not in types and dns.rdatatype.CNAME not in types
    following: dns.name.Name = rdata.next
    if owner < following:
        return bool(owner < qname < following)
    return bool(qname > owner or qname < following)  # the last NSEC wraps to the apex


def _nsec3_proves(
    owner: dns.name.Name,
    rdata: dns.rdtypes.ANY.NSEC3.NSEC3,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    *,
    nxdomain: bool,
) -> bool:
    if rdata.iterations > 150:  # RFC 9276 §3.2: treat as insecure, not worth the CPU
        return False
    try:
        hashed = _dnssec().nsec3_hash(qname, rdata.salt, rdata.iterations, rdata.algorithm)
    except (dns.exception.DNSException, ValueError):
        return False
    own = owner.labels[0].decode("ascii").upper()
    following = base64.b32hexencode(rdata.next).decode("ascii").rstrip("=").upper()
    if own == hashed and not nxdomain:
        types = _types(rdata)
        return rdtype not in types and dns.rdatatype.CNAME not in types
    covered = own < hashed < following if own < following else hashed > own or hashed < following
    if not covered:
        return False
    # A covering NSEC3 proves NXDOMAIN, and an insecure delegation when opt-out is set
    # (RFC 5155 §6, §8.6); the closest-encloser proof is not checked (see docs/dane.md).
    return nxdomain or (rdtype == dns.rdatatype.DS and bool(rdata.flags & 1))
