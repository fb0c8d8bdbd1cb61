"""DANE verdicts and findings per MX host, from the validated TLSA lookups and the probed chains.

Pure core: no I/O. Judged next to MTA-STS, never instead of it (RFC 8461 §2, checklist F8): a
DANE failure is an error whatever the MTA-STS mode, and a DANE pass does not excuse an
MTA-STS failure (``dane.sts-disagree``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from stspilot.check.dane import (
    ChainMatch,
    MatchingType,
    Selector,
    TlsaRecord,
    Usage,
    association,
    effective_records,
    leaf_not_after,
    match_chain,
    parse_tlsa,
)
from stspilot.errors import ParseError
from stspilot.facts import DnssecStatus, DnsStatus, DomainFacts, MxProbe, SmtpOutcome, TlsaLookup
from stspilot.findings import Finding, make

DAY = 86400


class DaneState(StrEnum):
    MATCH = "match"  # secure, usable records, the served chain matches
    MISMATCH = "mismatch"  # secure, usable records, nothing served matches: mail refused
    NO_TLS = "no-tls"  # secure TLSA, but no TLS session with the host: mail refused
    UNUSABLE = "unusable"  # secure records, none usable: TLS required, nothing authenticated
    INSECURE = "insecure"  # records exist but are not signed: senders ignore them
    NONE = "none"  # no TLSA records: no DANE for this host
    BOGUS = "bogus"  # DNSSEC validation failed: host unreachable for validating senders
    LOOKUP_FAILED = "lookup-failed"  # the TLSA lookup did not complete: same effect
    NOT_CHECKED = "not-checked"  # secure records, but the host could not be reached to match

    @property
    def blocks_mail(self) -> bool:
        """DANE senders do not deliver to this host (RFC 7672 §2.1.2, §3.1)."""
        return self in (self.MISMATCH, self.NO_TLS, self.BOGUS, self.LOOKUP_FAILED)

    @property
    def has_dane(self) -> bool:
        """Secure TLSA records are published (whatever they match)."""
        return self in (self.MATCH, self.MISMATCH, self.NO_TLS, self.UNUSABLE, self.NOT_CHECKED)


@dataclass(frozen=True, slots=True)
class AddressDane:
    """DANE at one probed address of an MX host: its served chain against the TLSA set."""

    ip: str
    state: DaneState  # match, mismatch, no-tls or not-checked
    reason: str = ""
    matched: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DaneVerdict:
    """The DANE state of one MX host, as ``check --json`` shows it."""

    host: str
    state: DaneState
    tlsa_name: str
    dnssec: str  # DnssecStatus value of the TLSA lookup
    reason: str
    records: tuple[str, ...]
    matched: tuple[str, ...]
    rrsig_expires: datetime | None = None
    # the address whose chain decided ``state`` ("" when no address was judged), and the
    # verdict at every probed address (RFC 7672 §3.1: each connection must authenticate)
    ip: str = ""
    addresses: tuple[AddressDane, ...] = ()
    # DnssecStatus value of the host's A/AAAA RRsets (RFC 7672 §2.2.2); "" when not judged
    address_dnssec: str = ""


def _parse_all(texts: Sequence[str]) -> tuple[list[TlsaRecord], list[str]]:
    records, bad = [], []
    for text in texts:
        try:
            records.append(parse_tlsa(text))
        except ParseError as exc:
            bad.append(f"{text[:40]}: {exc}")
    return records, bad


def _expected(chain: Sequence[bytes]) -> str:
    """The DANE-EE 3 1 1 record for the leaf served now (RFC 7672 §3.1.1 recommends it)."""
    if not chain:
        return "3 1 1 <SHA-256 of the served key>"
    try:
        data = association(chain[0], Selector.SPKI, MatchingType.SHA256)
    except ValueError:
        return "3 1 1 <SHA-256 of the served key>"
    return f"3 1 1 {data.hex()}"


_NO_TLS = (
    SmtpOutcome.NO_STARTTLS,
    SmtpOutcome.STARTTLS_REJECTED,
    SmtpOutcome.TLS_FAILED,
    SmtpOutcome.PROTOCOL_ERROR,
)


def _host(
    lookup: TlsaLookup,
    probe: MxProbe | None,
    *,
    references: Sequence[str],
    now: datetime,
    warn_days: int,
    sts_applies: bool,
) -> tuple[DaneVerdict, list[Finding]]:
    host, name = lookup.host, lookup.name
    dnssec = lookup.dnssec

    address = lookup.address_dnssec
    address_status = address.status.value if address is not None else ""

    def verdict(state: DaneState, reason: str = "", matched: Sequence[str] = ()) -> DaneVerdict:
        return DaneVerdict(
            host, state, name, dnssec.status, reason, lookup.records, tuple(matched),
            dnssec.expires, address_dnssec=address_status,
        )  # fmt: skip

    records_text = ", ".join(lookup.records) or "none"
    if dnssec.status is DnssecStatus.BOGUS:
        finding = make("dane.bogus", subject=host, host=host, name=name, reason=dnssec.reason)
        return verdict(DaneState.BOGUS, dnssec.reason), [finding]
    if not dnssec.anchor_ok:  # the checker's trust anchor does not fit its resolver
        return verdict(DaneState.NOT_CHECKED, dnssec.reason), []
    if lookup.status in (DnsStatus.NODATA, DnsStatus.NXDOMAIN):
        # No TLSA, however sure we are of it (an unprovable absence is no DANE failure of
        # the domain's: RFC 7672 §2.2 only binds senders to records they could validate).
        return verdict(DaneState.NONE, dnssec.reason), []
    if dnssec.status is DnssecStatus.INDETERMINATE or lookup.status is not DnsStatus.OK:
        reason = dnssec.reason or lookup.error or lookup.status
        finding = make("dane.lookup-failed", subject=host, host=host, name=name, reason=reason)
        return verdict(DaneState.LOOKUP_FAILED, reason), [finding]
    if not lookup.records:
        return verdict(DaneState.NONE), []
    if dnssec.status is DnssecStatus.INSECURE:
        finding = make(
            "dane.insecure", subject=host, host=host, name=name, records=records_text,
            reason=dnssec.reason or "not signed",
        )  # fmt: skip
        return verdict(DaneState.INSECURE, dnssec.reason), [finding]
    if address is not None and address.status is DnssecStatus.BOGUS:
        reason = f"the address records of {host}: {address.reason}"
        finding = make("dane.bogus", subject=host, host=host, name=name, reason=reason)
        return verdict(DaneState.BOGUS, reason), [finding]
    if address is not None and address.status is DnssecStatus.INSECURE:
        # RFC 7672 §2.2.2: senders look TLSA up only for hosts with secure addresses
        reason = address.reason or "not signed"
        finding = make("dane.address.insecure", subject=host, host=host, name=name, reason=reason)
        return verdict(DaneState.INSECURE, f"address records insecure: {reason}"), [finding]
    records, bad = _parse_all(lookup.records)
    chain = probe.chain if probe is not None else ()  # the worst address's, for the hints
    findings: list[Finding] = []
    pkix = [r.to_text() for r in records if r.usage in (Usage.PKIX_TA, Usage.PKIX_EE)]
    if pkix:
        findings.append(
            make("dane.pkix-usage", subject=host, name=name, records=", ".join(pkix),
                 expected=_expected(chain))
        )  # fmt: skip
    effective = effective_records(records)
    if not effective:
        reasons = [f"{r.params}: {r.unusable_reason}" for r in records] + bad
        reason = "; ".join(reasons)[:300]
        findings.append(
            make("dane.unusable", subject=host, host=host, name=name, reason=reason,
                 expected=_expected(chain))
        )  # fmt: skip
        return verdict(DaneState.UNUSABLE, reason), findings
    skipped = [
        f"{r.to_text()}: {r.unusable_reason}"
        for r in records
        if not r.usable and r.usage not in (Usage.PKIX_TA, Usage.PKIX_EE)
    ] + bad
    if skipped:  # skipped by senders (RFC 6698 §2.1, RFC 7672 §3.1.3); the rest still judged
        findings.append(
            make("dane.record.unusable", subject=host, name=name,
                 records="; ".join(skipped)[:300], expected=_expected(chain))
        )  # fmt: skip
    if probe is None:
        return verdict(DaneState.NOT_CHECKED, "not probed"), findings
    # Every probed address is judged (senders connect to any of them); the host's verdict is
    # its worst address: one refused (mismatch, no TLS) beats a match, and one not reached
    # decides only when none was.
    sites = [probe.at(a) for a in probe.by_address] or [probe]
    judged = [(site, *_judge_site(records, site, references, now)) for site in sites]
    per_address = tuple(
        AddressDane(site.ip, state, reason, match.matched if match else ())
        for site, state, reason, match in judged
        if site.ip
    )
    site, state, reason, match = max(judged, key=lambda j: _SITE_RANK[j[1]])
    many = len(judged) > 1
    where = f"at {site.ip}{f' ({_share(judged, state)})' if many else ''}: " if site.ip else ""

    def host_verdict(matched: Sequence[str] = ()) -> DaneVerdict:
        return DaneVerdict(
            host, state, name, dnssec.status, where + reason if reason else "", lookup.records,
            tuple(matched), dnssec.expires, site.ip, per_address, address_status,
        )  # fmt: skip

    chain = site.chain
    if state is DaneState.NOT_CHECKED:
        return host_verdict(), findings
    if state is DaneState.NO_TLS:
        findings.append(
            make("dane.no-tls", subject=host, host=host, name=name, reason=where + reason)
        )
        return host_verdict(), findings
    if state is DaneState.MISMATCH:
        findings.append(
            make("dane.mismatch", subject=host, host=host, name=name, records=records_text,
                 reason=where + reason, expected=_expected(chain))
        )  # fmt: skip
        return host_verdict(), findings
    assert match is not None
    matched = ", ".join(match.matched)
    findings.append(make("dane.match", subject=host, host=host, name=name, matched=matched))
    if match.unmatched:
        stale = ", ".join(match.unmatched)
        findings.append(
            make("dane.stale-record", subject=host, host=host, name=name, records=stale)
        )
    if len(effective) == 1 and effective[0].usage == Usage.DANE_EE:
        findings.append(
            make("dane.rollover.single", subject=host, name=name, records=effective[0].to_text())
        )
    pins_leaf = any(r.startswith("3 ") for r in match.matched)
    cert = site.tls.cert if site.tls is not None else None
    not_after = cert.not_after if cert is not None else leaf_not_after(chain)
    if pins_leaf and not_after is not None:
        days = int((not_after - now).total_seconds() // DAY)
        if days <= warn_days:
            findings.append(
                make("dane.cert.expiring", subject=host, host=host, name=name, days=days,
                     not_after=not_after.isoformat(), records=matched)
            )  # fmt: skip
    if sts_applies and probe.tls is not None and not probe.tls.ok:
        reason = probe.tls.detail or str(probe.tls.failure or "certificate rejected")
        findings.append(make("dane.sts-disagree", subject=host, host=host, reason=reason))
    return host_verdict(match.matched), findings


# The worse an address's DANE state, the higher: it decides the host's verdict.
_SITE_RANK = {
    DaneState.NOT_CHECKED: 0,
    DaneState.MATCH: 1,
    DaneState.NO_TLS: 2,
    DaneState.MISMATCH: 3,
}


def _share(
    judged: Sequence[tuple[MxProbe, DaneState, str, ChainMatch | None]], state: DaneState
) -> str:
    count = sum(1 for j in judged if j[1] is state)
    return f"{count} of {len(judged)} addresses"


def _judge_site(
    records: Sequence[TlsaRecord], site: MxProbe, references: Sequence[str], now: datetime
) -> tuple[DaneState, str, ChainMatch | None]:
    """One address's (or the host's) served chain against the records."""
    if not site.chain and site.outcome not in _NO_TLS:
        return DaneState.NOT_CHECKED, site.error or "no certificate read", None
    if not site.chain:
        return DaneState.NO_TLS, site.error or str(site.outcome), None
    match = match_chain(records, site.chain, references=references, now=now)
    if not match.ok:
        return DaneState.MISMATCH, match.detail, match
    return DaneState.MATCH, "", match


def dane_verdicts(
    facts: DomainFacts, *, warn_days: int = 14, sts_applies: bool = False
) -> tuple[tuple[DaneVerdict, ...], list[Finding]]:
    """One verdict per MX host with a TLSA lookup, and the DANE findings of the domain."""
    if facts.mx_dnssec is None and not facts.tlsa:
        return (), []
    findings: list[Finding] = []
    mx_dnssec = facts.mx_dnssec
    if mx_dnssec is not None and mx_dnssec.status is DnssecStatus.BOGUS:
        findings.append(make("dane.mx.bogus", domain=facts.domain, reason=mx_dnssec.reason))
    mx_secure = mx_dnssec is not None and mx_dnssec.status is DnssecStatus.SECURE
    # RFC 7672 §3.2.2: DANE-TA names: the MX host, and the domain when the MX RRset is secure.
    probes = {p.host: p for p in facts.mx_probes}
    verdicts: list[DaneVerdict] = []
    for lookup in facts.tlsa:
        references = [lookup.host, facts.domain] if mx_secure else [lookup.host]
        verdict, host_findings = _host(
            lookup,
            probes.get(lookup.host),
            references=references,
            now=facts.observed_at,
            warn_days=warn_days,
            sts_applies=sts_applies,
        )
        verdicts.append(verdict)
        findings += host_findings
    with_dane = [v.host for v in verdicts if v.state.has_dane]
    without = [v.host for v in verdicts if v.state in (DaneState.NONE, DaneState.INSECURE)]
    if with_dane and without:
        findings.append(
            make("dane.partial", with_dane=", ".join(with_dane), without=", ".join(without))
        )
    if with_dane and mx_dnssec is not None and mx_dnssec.status is DnssecStatus.INSECURE:
        findings.append(
            make("dane.mx.insecure", domain=facts.domain, reason=mx_dnssec.reason or "unsigned")
        )
    return tuple(verdicts), findings
