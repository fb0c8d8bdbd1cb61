"""MX hosts against the applied policy: coverage (RFC 8461 §4.1) and STARTTLS probes (§4.2).

Pure core: no I/O, and "now" is a parameter. Part of ``evaluate``. Severity follows the mode a
sender applies (RFC 8461 §5): a failing MX is an error under ``enforce``, a warning under
``testing`` and information with ``mode: none`` or no usable policy.

Certificate names are judged here too, not only by the TLS layer: a certificate is valid for a
host only when one of its SAN dNSName entries (DNS-IDs, never the subject CN) matches the host
under RFC 6125 §6.4 with RFC 8461's restriction that ``*`` is the complete left-most label
(§3.3 for the policy host ``mta-sts.<domain>``, §4.2 for an MX host).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from stspilot.facts import (
    CertInfo,
    DnsStatus,
    DomainFacts,
    MxProbe,
    SmtpOutcome,
    TlsFailure,
    TlsResult,
)
from stspilot.findings import Finding, Severity, make
from stspilot.sts.names import fold_name
from stspilot.sts.policy import Mode, Policy, covering_pattern, mx_matches

DAY = 86400
FAILED_LOOKUP = (DnsStatus.SERVFAIL, DnsStatus.TIMEOUT, DnsStatus.ERROR)


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    """One address of an MX host as the STARTTLS probe met it."""

    ip: str
    probe_outcome: str  # an SmtpOutcome value
    tls_ok: bool
    tls_version: str
    cert_not_after: datetime | None
    days_to_expiry: int | None
    error: str


@dataclass(frozen=True, slots=True)
class MxVerdict:
    """One MX host: coverage, and the probe of its worst address (``addresses``: each one)."""

    host: str
    preference: int
    covered_by: str | None  # the policy pattern covering the host, None if none (or no policy)
    probe_outcome: str  # an SmtpOutcome value, or "not-probed"
    tls_ok: bool | None  # None when not probed
    tls_version: str
    cert_not_after: datetime | None
    days_to_expiry: int | None
    finding_codes: tuple[str, ...]
    addresses: tuple[AddressVerdict, ...] = ()


def days_until(moment: datetime, now: datetime) -> int:
    """Whole days from ``now`` to ``moment`` (negative once passed)."""
    return int((moment - now).total_seconds() // DAY)


def tls_params(tls: TlsResult | None) -> dict[str, Any]:
    """The certificate and handshake details the catalogue templates show."""
    if tls is None:
        return {
            "tls_detail": "",
            "cert_names": "no name read",
            "not_before": "",
            "not_after": "",
            "issuer": "",
            "chain_sent": "",
        }
    cert = tls.cert
    names = ", ".join(cert.dns_names) if cert and cert.dns_names else ""
    if cert and not names:  # RFC 6125 / RFC 8461 §3.3: a CN alone does not count
        names = f"no DNS names, only the subject {cert.subject}"
    return {
        "tls_detail": tls.detail,
        "cert_names": names or "no name read",
        "not_before": cert.not_before.isoformat(timespec="minutes") if cert else "an unread date",
        "not_after": cert.not_after.date().isoformat() if cert else "",
        "issuer": cert.issuer if cert else "",
        "chain_sent": _chain_sent(cert),
    }


def _chain_sent(cert: CertInfo | None) -> str:
    """What the server sent with its certificate, for the chain-incomplete findings."""
    if cert is None or not cert.chain_length:
        return "certificates that could not be read"
    if cert.chain_length == 1:
        return "only its own certificate"
    return f"{cert.chain_length} certificates, none of them the issuer"


def dns_id_matches(dns_id: str, host: str) -> bool:
    """Is a certificate's DNS-ID valid for ``host``? (RFC 6125 §6.4.1, §6.4.3; RFC 8461 §3.3).

    Case-insensitive, trailing root dots ignored. A wildcard must be the complete left-most
    label (``*.example.com``; never ``m*.example.com`` nor ``a.*.example.com``) and stands
    for exactly one label, which is never the last-but-one: ``*.com`` matches nothing.
    """
    pattern = dns_id.lower().removesuffix(".")
    name = fold_name(host)
    if not pattern or not name or not pattern.isascii() or not name.isascii():
        return False
    if "*" not in pattern:
        return pattern == name
    star, dot, zone = pattern.partition(".")
    if star != "*" or not dot or "*" in zone or "." not in zone:
        return False
    first, dot, rest = name.partition(".")
    return bool(first) and bool(dot) and rest == zone


@lru_cache(maxsize=256)
def _dns_ids(dns_names: tuple[str, ...]) -> frozenset[str]:
    """A certificate's DNS-IDs as ``dns_id_matches`` compares them (lower case, no root dot,
    ASCII only), once per certificate: a host is then two set lookups."""
    patterns = (name.lower().removesuffix(".") for name in dns_names)
    return frozenset(p for p in patterns if p and p.isascii())


def cert_valid_for(cert: CertInfo, host: str) -> bool:
    """Does one of the certificate's SAN dNSName entries match ``host``?

    The same answer as ``dns_id_matches`` for each entry, without walking them: the host is
    looked up as itself and as the one wildcard that may cover it (``*.`` and its parent, at
    least two labels). A certificate naming 100 hosts, checked for a policy host and an MX
    host per domain, cost ~0.5 ms of CPU a domain walked name by name (docs/check.md).
    """
    name = fold_name(host)
    if not name or not name.isascii() or "*" in name:  # odd host names: the rule itself
        return any(dns_id_matches(dns_id, host) for dns_id in cert.dns_names)
    ids = _dns_ids(cert.dns_names)
    if name in ids:
        return True
    first, dot, parent = name.partition(".")
    return bool(first) and bool(dot) and "." in parent and f"*.{parent}" in ids


def mode_severity(mode: Mode | None) -> Severity:
    """RFC 8461 §5: what a failure costs under the mode senders apply."""
    if mode is Mode.ENFORCE:
        return Severity.ERROR
    return Severity.WARNING if mode is Mode.TESTING else Severity.INFO


_PROBE_CODES = {
    SmtpOutcome.NO_ADDRESS: "mx.no-address",
    SmtpOutcome.CONNECT_FAILED: "mx.connect-failed",
    SmtpOutcome.BANNER_TIMEOUT: "mx.banner-timeout",
    SmtpOutcome.BANNER_REJECTED: "mx.banner-rejected",
    SmtpOutcome.NO_STARTTLS: "mx.starttls.missing",
    SmtpOutcome.STARTTLS_REJECTED: "mx.starttls.rejected",
    SmtpOutcome.TIMEOUT: "mx.timeout",
    SmtpOutcome.PROTOCOL_ERROR: "mx.protocol-error",
    SmtpOutcome.BLOCKED: "mx.blocked",
}
_MX_TLS_CODES = {
    TlsFailure.EXPIRED: "mx.cert.expired",
    TlsFailure.SELF_SIGNED: "mx.cert.self-signed",
    TlsFailure.UNTRUSTED: "mx.cert.untrusted",
    TlsFailure.CHAIN_INCOMPLETE: "mx.cert.chain-incomplete",
    TlsFailure.NOT_YET_VALID: "mx.cert.not-yet-valid",
    TlsFailure.HOST_MISMATCH: "mx.cert.host-mismatch",
    TlsFailure.HANDSHAKE: "mx.tls.handshake",
}
# Failures of reachability hurt all mail, with or without MTA-STS: at least a warning.
_REACHABILITY = frozenset(
    {
        "mx.no-address",
        "mx.connect-failed",
        "mx.banner-timeout",
        "mx.banner-rejected",
        "mx.timeout",
        "mx.protocol-error",
        "mx.blocked",
    }
)
_OLD_TLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.0", "TLSv1.1")


def _name_mismatch(probe: MxProbe) -> bool:
    """A probe that passed although the certificate it saw does not name the MX host."""
    cert = probe.tls.cert if probe.tls else None
    return (
        probe.outcome is SmtpOutcome.OK
        and cert is not None
        and not cert_valid_for(cert, probe.host)
    )


# Outcomes of an address that was never talked to: they decide nothing while another address
# of the host answered (see probes.smtp.worst_address).
_UNREACHED = frozenset({SmtpOutcome.NO_ADDRESS, SmtpOutcome.CONNECT_FAILED, SmtpOutcome.BLOCKED})


def _host_findings(
    probe: MxProbe, mode: Mode | None, now: datetime, warn_days: int
) -> list[Finding]:
    """The findings of one MX host over all its addresses (RFC 8461 §4.2: every connection a
    sender may make must validate). When the addresses disagree, a finding names the
    addresses it is about; an unreachable address counts only when none was reached."""
    views = [probe.at(a) for a in probe.by_address]
    if len(views) < 2:
        return _probe_findings(probe, mode, now, warn_days)
    reached = [v for v in views if v.outcome not in _UNREACHED] or views
    per_view = [(v, _probe_findings(v, mode, now, warn_days)) for v in reached]
    codes = {tuple(f.code for f in found) for _, found in per_view}
    if len(codes) == 1 and len(reached) == len(views):  # every address alike: the host
        return per_view[0][1]
    by_code: dict[str, list[MxProbe]] = {}
    for view, found in per_view:
        for finding in found:
            by_code.setdefault(finding.code, []).append(view)
    out: list[Finding] = []
    for at in by_code.values():
        label = f"{probe.host} at {', '.join(v.ip for v in at)} ({len(at)} of {len(views)})"
        out += _probe_findings(at[0], mode, now, warn_days, label=label)
    return out


def _probe_findings(
    probe: MxProbe, mode: Mode | None, now: datetime, warn_days: int, *, label: str = ""
) -> list[Finding]:
    host = probe.host
    params: dict[str, Any] = {
        "host": label or host,
        "ip": probe.ip,
        "banner": probe.banner,
        "error": probe.error,
        "elapsed": f"{probe.elapsed:.1f}",
        **tls_params(probe.tls),
    }
    severity = mode_severity(mode)
    if _name_mismatch(probe):
        # RFC 8461 §4.2: the MX certificate needs a DNS-ID matching the MX host name.
        return [make("mx.cert.host-mismatch", subject=host, severity=severity, **params)]
    if probe.outcome is SmtpOutcome.OK:
        found: list[Finding] = []
        tls = probe.tls
        if tls and tls.version in _OLD_TLS:
            # RFC 8461 §7.2: TLS 1.2 or later; strict senders fail the MX under enforce.
            old = max(severity, Severity.WARNING)
            found.append(
                make(
                    "mx.tls.old-version", subject=host, severity=old, version=tls.version, **params
                )
            )
        if tls and tls.cert and 0 <= (days := days_until(tls.cert.not_after, now)) < warn_days:
            found.append(make("mx.cert.expiring", subject=host, days=days, **params))
        return found
    if probe.outcome is SmtpOutcome.TLS_FAILED:
        failure = probe.tls.failure if probe.tls else None
        code = _MX_TLS_CODES[failure] if failure else "mx.tls.handshake"
    else:
        code = _PROBE_CODES[probe.outcome]
    if code in _REACHABILITY:
        severity = max(severity, Severity.WARNING)
    return [make(code, subject=host, severity=severity, **params)]


def _address_verdict(view: MxProbe, now: datetime) -> AddressVerdict:
    tls = view.tls
    cert = tls.cert if tls else None
    return AddressVerdict(
        ip=view.ip,
        probe_outcome=str(view.outcome),
        tls_ok=view.outcome is SmtpOutcome.OK and not _name_mismatch(view),
        tls_version=tls.version if tls else "",
        cert_not_after=cert.not_after if cert else None,
        days_to_expiry=days_until(cert.not_after, now) if cert else None,
        error=view.error,
    )


def mx_verdicts(
    facts: DomainFacts, policy: Policy | None, mode: Mode | None, warn_days: int
) -> tuple[tuple[MxVerdict, ...], list[Finding]]:
    lookup = facts.mx
    if lookup.status in FAILED_LOOKUP:
        return (), [
            make("dns.mx.lookup-failed", name=lookup.name, error=lookup.error or lookup.status)
        ]
    hosts = [h for h in lookup.hosts if h.host] if lookup.status is DnsStatus.OK else []
    if lookup.status is DnsStatus.OK and lookup.hosts and not hosts:
        return (), [make("dns.mx.null")]
    if lookup.status is DnsStatus.NXDOMAIN:
        return (), [make("dns.domain.nxdomain", name=lookup.name)]
    if not hosts:
        return (), [make("dns.mx.missing", name=lookup.name)]
    probes = {fold_name(p.host): p for p in facts.mx_probes}
    # RFC 8461 §5: mode none is "no active policy": its mx lines are not applied to anything.
    judged = policy is not None and policy.mode is not Mode.NONE
    now = facts.observed_at
    verdicts: list[MxVerdict] = []
    found: list[Finding] = []
    for mx in hosts:
        own: list[Finding] = []
        covered = covering_pattern(policy.mx, mx.host) if policy else None
        if judged and policy and covered is None:
            patterns = ", ".join(policy.mx) or "(none)"
            own.append(
                make(
                    "sts.mx.not-covered",
                    subject=mx.host,
                    host=mx.host,
                    patterns=patterns,
                    severity=mode_severity(mode),
                )
            )
        probe = probes.get(fold_name(mx.host))
        tls = probe.tls if probe else None
        cert = tls.cert if tls else None
        if probe:
            own += _host_findings(probe, mode, now, warn_days)
        verdicts.append(
            MxVerdict(
                host=mx.host,
                preference=mx.preference,
                covered_by=covered,
                probe_outcome=str(probe.outcome) if probe else "not-probed",
                tls_ok=(probe.outcome is SmtpOutcome.OK and not _name_mismatch(probe))
                if probe
                else None,
                tls_version=tls.version if tls else "",
                cert_not_after=cert.not_after if cert else None,
                days_to_expiry=days_until(cert.not_after, now) if cert else None,
                finding_codes=tuple(f.code for f in own),
                addresses=tuple(_address_verdict(probe.at(a), now) for a in probe.by_address)
                if probe
                else (),
            )
        )
        found += own
    if judged and policy:
        for pattern in policy.mx:
            if not any(mx_matches(pattern, mx.host) for mx in hosts):
                live = ", ".join(mx.host for mx in hosts)
                found.append(
                    make("sts.mx.pattern-unused", subject=pattern, pattern=pattern, live=live)
                )
    return tuple(verdicts), found
