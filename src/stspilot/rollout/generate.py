"""What to publish for MTA-STS and TLS-RPT: both TXT records and the policy, from the live MX set.

Pure core: no I/O, no clock (``now`` is a parameter). ``generate`` turns a domain, its live MX
hosts and a stage into a ``Publication``: zone-file lines, the policy body, a JSON shape, the
order to publish them in (RFC 8461 §8.1: policy first, then the TXT ``id``) and findings for
what is risky today (an MX that fails its STARTTLS probe, a wildcard pattern, a report mailbox
behind the very MX being watched).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from stspilot.errors import ConfigError, InvalidName
from stspilot.findings import Finding, finding, finding_to_json
from stspilot.sts.names import (
    domain_name,
    fold_name,
    policy_url,
    sts_record_name,
    tlsrpt_record_name,
)
from stspilot.sts.policy import (
    DEFAULT_MAX_AGE,
    Policy,
    check_max_age,
    check_mode,
    fold_mx_pattern,
    format_policy,
    is_valid_mx_pattern,
    mx_matches,
)
from stspilot.sts.records import (
    StsRecord,
    TlsRptRecord,
    format_sts_record,
    format_tlsrpt_record,
    new_policy_id,
)

__all__ = [
    "DAY",
    "PROVIDER_WILDCARD_ZONES",
    "WEEK",
    "Publication",
    "TxtRecord",
    "derive_mx_patterns",
    "generate",
    "normalize_rua",
    "publish_steps",
]

DAY = 86_400
WEEK = 7 * DAY

TXT_TTL = 3600

# Provider zones whose MX names rotate inside one zone, so the provider itself documents a
# one-label wildcard (Microsoft 365: ``<tenant>.mail.protection.outlook.com``). A wildcard is
# offered for a single live host only in these zones; elsewhere only when several live hosts
# share the zone.
PROVIDER_WILDCARD_ZONES: frozenset[str] = frozenset({"mail.protection.outlook.com"})


@dataclass(frozen=True, slots=True)
class TxtRecord:
    """One TXT record to publish: owner name (absolute, trailing dot) and value."""

    name: str
    value: str
    ttl: int = TXT_TTL

    def zone_line(self) -> str:
        # A character-string holds at most 255 octets (RFC 1035 §3.3); longer values are split
        # into several strings, which receivers join with nothing in between (RFC 8461 §3.1,
        # RFC 8460 §3).
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)] or [""]
        quoted = " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
        return f"{self.name} {self.ttl} IN TXT {quoted}"


@dataclass(frozen=True, slots=True)
class Publication:
    """Everything to publish for one domain at one stage, ready to paste."""

    domain: str
    mode: str
    policy_id: str
    max_age: int
    mx_patterns: tuple[str, ...]
    rua: tuple[str, ...]
    sts_txt: TxtRecord
    tlsrpt_txt: TxtRecord
    policy_text: str
    policy_url: str
    steps: tuple[str, ...]
    findings: tuple[Finding, ...] = ()

    @property
    def zone_lines(self) -> tuple[str, ...]:
        return (self.tlsrpt_txt.zone_line(), self.sts_txt.zone_line())

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "mode": self.mode,
            "id": self.policy_id,
            "max_age": self.max_age,
            "mx": list(self.mx_patterns),
            "rua": list(self.rua),
            "records": [
                {"name": r.name, "type": "TXT", "ttl": r.ttl, "value": r.value}
                for r in (self.tlsrpt_txt, self.sts_txt)
            ],
            "zone_lines": list(self.zone_lines),
            "policy_url": self.policy_url,
            "policy": self.policy_text,
            "steps": list(self.steps),
            "findings": [finding_to_json(f) for f in self.findings],
        }


def _is_domain(text: str) -> bool:
    try:
        domain_name(text)
    except InvalidName:
        return False
    return True


def derive_mx_patterns(
    hosts: Iterable[str], *, wildcards: bool = False
) -> tuple[tuple[str, ...], tuple[Finding, ...]]:
    """One exact ``mx`` pattern per live host; with ``wildcards``, ``*.zone`` where it fits.

    A wildcard stands for a group of live hosts that sit exactly one label below the same zone
    (RFC 8461 §4.1: ``*`` never spans labels), when the group has several hosts or the zone is
    a provider's rotating zone (Microsoft 365). It is never offered for a zone of fewer than two
    labels (``*.com`` would trust the world) and every wildcard gets an info finding, because it
    trusts every host with a certificate in that zone (RFC 8461 §10.4, checklist A9.2).
    """
    unique = sorted({fold_name(h) for h in hosts} - {""})
    if not wildcards:
        return tuple(unique), ()
    by_zone: dict[str, list[str]] = {}
    for host in unique:
        _, _, zone = host.partition(".")
        by_zone.setdefault(zone, []).append(host)
    patterns: list[str] = []
    notes: list[Finding] = []
    for zone, members in sorted(by_zone.items()):
        broad_enough = zone.count(".") >= 1
        wanted = len(members) >= 2 or zone in PROVIDER_WILDCARD_ZONES
        if broad_enough and wanted:
            pattern = f"*.{zone}"
            assert all(mx_matches(pattern, m) for m in members)
            patterns.append(pattern)
            notes.append(
                finding(
                    "sts.policy.mx.wildcard",
                    f"{pattern} covers the live hosts {', '.join(members)}, and also any other "
                    f"host directly under {zone} that has a valid certificate.",
                    "List the hosts one per line instead (run generate without --wildcards) "
                    f"unless {zone} is run only by you or your mail provider.",
                    subject=pattern,
                )
            )
        else:
            patterns.extend(members)
    return tuple(sorted(patterns)), tuple(notes)


def normalize_rua(uri: str) -> str:
    """Check one ``rua`` URI; percent-encode ``,`` ``!`` ``;`` (RFC 8460 §3, checklist B2.5-6)."""
    text = uri.strip()
    scheme = text.partition(":")[0].lower()
    if scheme == "mailto":
        address = text[len("mailto:") :]
        local, at, host = address.rpartition("@")
        if not at or not local or not _is_domain(host):
            raise ConfigError(f"rua {uri!r} is not mailto:local@domain")
    elif scheme == "https":
        parts = urlsplit(text)
        if not parts.hostname or not _is_domain(parts.hostname):
            raise ConfigError(f"rua {uri!r} is not an https: URL with a host name")
    else:
        raise ConfigError(f"rua {uri!r}: TLS-RPT accepts only mailto: and https: URIs")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        raise ConfigError(f"rua {uri!r} contains spaces or characters outside ASCII")
    return quote(text, safe="/:@?=&%+-._~")


def default_rua(domain: str) -> str:
    return f"mailto:tlsrpt@{domain}"


def generate(
    domain: str,
    *,
    mx_hosts: Sequence[str],
    mode: str,
    rua: Sequence[str] = (),
    now: datetime,
    max_age: int | None = None,
    wildcards: bool = False,
    probe_failures: Mapping[str, str] | None = None,
    previous_id: str = "",
    patterns: Sequence[str] | None = None,
    avoid: Collection[str] = (),
) -> Publication:
    """The records and policy to publish for ``domain`` at stage ``mode``.

    ``mx_hosts`` is the live MX set; ``probe_failures`` maps an MX host to why its STARTTLS
    probe failed today (each becomes a warning, an error under enforce); ``previous_id`` is the
    id senders have now, so the new one differs from it (RFC 8461 §3.1). ``patterns`` keeps
    mx patterns already chosen (a runbook changing only the mode) instead of deriving them;
    ``avoid`` lists ids already handed out for other plans, which the new id must not repeat.
    """
    name = domain_name(domain)
    policy_mode = check_mode(mode)
    age = check_max_age(DEFAULT_MAX_AGE[mode] if max_age is None else max_age)
    live = [fold_name(h) for h in mx_hosts]
    if any(h == "" for h in live) and mode != "none":
        raise ConfigError(f"{name} publishes a null MX (RFC 7505): it accepts no mail")
    if patterns is None:
        derived, notes = derive_mx_patterns(live, wildcards=wildcards)
        chosen = _checked_patterns(derived)  # a live MX may hold what no mx line can (``_``)
    else:
        chosen, notes = _checked_patterns(patterns), ()
    if not chosen and mode != "none":
        # RFC 8461 §3.2: mx is required unless the mode is none (checklist A4.10).
        raise ConfigError(f"{name} has no MX hosts: a {mode} policy needs at least one mx line")
    uris = tuple(normalize_rua(u) for u in rua) or (default_rua(name),)
    findings = list(notes)
    findings += _probe_findings(live, mode, probe_failures or {})
    findings += _rua_findings(name, uris, live)
    policy_id = new_policy_id(now, previous=previous_id, avoid=avoid)
    # The policy file (RFC 8461 §3.2) with CRLF line ends, and the two TXT values.
    text = format_policy(Policy("STSv1", policy_mode, age, chosen), crlf=True)
    sts = TxtRecord(sts_record_name(name) + ".", format_sts_record(StsRecord(policy_id)))
    tlsrpt = TxtRecord(tlsrpt_record_name(name) + ".", format_tlsrpt_record(TlsRptRecord(uris)))
    return Publication(
        domain=name,
        mode=mode,
        policy_id=policy_id,
        max_age=age,
        mx_patterns=chosen,
        rua=uris,
        sts_txt=sts,
        tlsrpt_txt=tlsrpt,
        policy_text=text,
        policy_url=policy_url(name),
        steps=publish_steps(name, tlsrpt, sts),
        findings=tuple(findings),
    )


def _checked_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for pattern in patterns:
        canonical = fold_mx_pattern(pattern)  # A-labels, case, root dot (checklist A4.13)
        # RFC 8461 §3.2 ["*."] Domain (A4.12); we never offer a one-label name nor ``*.com``.
        if "." not in canonical.removeprefix("*.") or not is_valid_mx_pattern(canonical):
            raise ConfigError(f"{pattern!r} is not a valid mx pattern")
        out.append(canonical)
    return tuple(sorted(set(out)))


def publish_steps(domain: str, tlsrpt: TxtRecord, sts: TxtRecord) -> tuple[str, ...]:
    """The order that never shows senders an id for a policy not yet served (RFC 8461 §8.1)."""
    return (
        f"Publish the TLS-RPT record {tlsrpt.name} so failures are reported from the start.",
        f"Serve the policy at {policy_url(domain)} as text/plain with a certificate valid for "
        f"mta-sts.{domain}.",
        f"Then publish {sts.name} with id={sts.value.rpartition('=')[2]}: senders fetch the "
        "policy again only when this id changes.",
    )


def _probe_findings(live: Sequence[str], mode: str, failures: Mapping[str, str]) -> list[Finding]:
    out: list[Finding] = []
    wanted = {fold_name(k): v for k, v in failures.items()}
    for host in sorted(set(live)):
        if host in wanted:
            spec_note = (
                "Under enforce, senders would refuse to deliver to it."
                if mode == "enforce"
                else "Senders will report the failure; it must be fixed before enforce."
            )
            out.append(
                finding(
                    "generate.mx.probe-failed",
                    f"{host} fails its STARTTLS probe today ({wanted[host]}). {spec_note}",
                    f"Give {host} STARTTLS with a certificate from a public CA that names "
                    f"{host}, or remove it from the MX set.",
                    subject=host,
                )
            )
    return out


def _rua_findings(domain: str, uris: Sequence[str], live: Sequence[str]) -> list[Finding]:
    """A mailto: rua at the domain itself is delivered through the MX being monitored."""
    out: list[Finding] = []
    for uri in uris:
        if uri.startswith("mailto:") and uri.rpartition("@")[2].lower() == domain and live:
            out.append(
                finding(
                    "tlsrpt.rua.depends-on-mx",
                    f"{uri} is delivered through {domain}'s own MX hosts; RFC 8460 §3 tells "
                    "senders to deliver reports even over failed TLS, but an MX that is down "
                    "loses both the mail and the report about it.",
                    "Consider a second rua at another domain or an https: endpoint.",
                    subject=uri,
                )
            )
    return out
