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
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from stspilot.errors import ConfigError
from stspilot.findings import CATALOGUE, Finding

MODES = ("testing", "enforce", "none")

DAY = 86_400
WEEK = 7 * DAY
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: one year at most (checklist A4.8)

# By stage (design.md's journey): testing is short so a mistake is forgotten in a day; enforce
# is at least a week so a downgrade window stays small (RFC 8461 §10.2, checklist A9.1);
# `none` is short so senders drop the policy soon (RFC 8461 §8.3, checklist A5.8).
DEFAULT_MAX_AGE: Mapping[str, int] = {"testing": DAY, "enforce": WEEK, "none": DAY}

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
            "findings": [_finding_dict(f) for f in self.findings],
        }


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "severity": f.severity.label,
        "title": f.title,
        "detail": f.detail,
        "fix": f.fix,
        "rfc": f.rfc,
        "subject": f.subject,
    }


def finding(code: str, detail: str, fix: str, subject: str = "") -> Finding:
    """A finding of a catalogue code, with this domain's detail and fix filled in."""
    spec = CATALOGUE[code]
    return Finding(code, spec.severity, spec.title, detail, fix, spec.rfc, subject)


def new_policy_id(now: datetime, *, previous: str = "", avoid: Collection[str] = ()) -> str:
    """A fresh TXT ``id`` from the UTC time: 14 digits, e.g. ``20261122131200``.

    RFC 8461 §3.1 allows 1-32 letters and digits, so no ``T``/``Z`` separators are needed and
    none of ``-:.`` may appear (checklist A2.5). Ids are only compared for equality (A2.6): when
    the second-resolution id equals ``previous`` (or one in ``avoid``: other plans printed at
    the same time) the microseconds are added, then a letter, so every id handed out differs.
    """
    if now.tzinfo is None:
        raise ConfigError("now must be an aware datetime")
    taken = {previous, *avoid}
    utc = now.astimezone(UTC)
    seconds, micro = utc.strftime("%Y%m%d%H%M%S"), utc.strftime("%Y%m%d%H%M%S%f")
    for candidate in (seconds, micro, *(micro + c for c in "abcdefghijklmnopqrstuvwxyz")):
        if candidate not in taken:
            return candidate
    raise ConfigError("no fresh policy id left for this moment")  # 28 ids taken in 1 µs


def normalize_host(host: str) -> str:
    """Lower case, no trailing root dot, A-label (RFC 8461 §3.2 wants A-labels, checklist A4.13)."""
    name = host.strip().rstrip(".").lower()
    if not name:
        return ""
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ConfigError(f"{host!r} is not a valid host name") from exc


def _is_ldh_name(name: str) -> bool:
    labels = name.split(".")
    return len(labels) >= 2 and all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isascii() and (c.isalnum() or c == "-") for c in label)
        for label in labels
    )


def one_label_wildcard_covers(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: ``*.zone`` matches exactly one extra left-most label (checklist A7.4)."""
    if not pattern.startswith("*."):
        return pattern == host
    first, dot, rest = host.partition(".")
    return bool(first) and bool(dot) and rest == pattern[2:]


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
    unique = sorted({normalize_host(h) for h in hosts} - {""})
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
            assert all(one_label_wildcard_covers(pattern, m) for m in members)
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
        if not at or not local or not _is_ldh_name(host.lower()):
            raise ConfigError(f"rua {uri!r} is not mailto:local@domain")
    elif scheme == "https":
        parts = urlsplit(text)
        if not parts.hostname or not _is_ldh_name(parts.hostname):
            raise ConfigError(f"rua {uri!r} is not an https: URL with a host name")
    else:
        raise ConfigError(f"rua {uri!r}: TLS-RPT accepts only mailto: and https: URIs")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        raise ConfigError(f"rua {uri!r} contains spaces or characters outside ASCII")
    return quote(text, safe="/:@?=&%+-._~")


def default_rua(domain: str) -> str:
    return f"mailto:tlsrpt@{domain}"


def sts_record_value(policy_id: str) -> str:
    return f"v=STSv1; id={policy_id}"


def tlsrpt_record_value(rua: Sequence[str]) -> str:
    return f"v=TLSRPTv1; rua={','.join(rua)}"


def policy_body(mode: str, max_age: int, mx_patterns: Sequence[str]) -> str:
    """The policy file (RFC 8461 §3.2): one ``mx:`` line per pattern, CRLF line ends."""
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {p}" for p in mx_patterns]
    lines.append(f"max_age: {max_age}")
    return "\r\n".join(lines) + "\r\n"


def policy_url(domain: str) -> str:
    return f"https://mta-sts.{domain}/.well-known/mta-sts.txt"


def check_max_age(max_age: int) -> int:
    if not 0 <= max_age <= MAX_AGE_LIMIT:
        raise ConfigError(f"max_age must be between 0 and {MAX_AGE_LIMIT} seconds (RFC 8461 §3.2)")
    return max_age


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
    name = normalize_host(domain)
    if not _is_ldh_name(name):
        raise ConfigError(f"{domain!r} is not a domain name")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    age = check_max_age(DEFAULT_MAX_AGE[mode] if max_age is None else max_age)
    live = [normalize_host(h) for h in mx_hosts]
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
    text = policy_body(mode, age, chosen)
    sts = TxtRecord(f"_mta-sts.{name}.", sts_record_value(policy_id))
    tlsrpt = TxtRecord(f"_smtp._tls.{name}.", tlsrpt_record_value(uris))
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
        wildcard = pattern.startswith("*.")
        name = normalize_host(pattern[2:] if wildcard else pattern)
        if not _is_ldh_name(name):  # RFC 8461 §3.2: ["*."] Domain (checklist A4.12)
            raise ConfigError(f"{pattern!r} is not a valid mx pattern")
        out.append(f"*.{name}" if wildcard else name)
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
    wanted = {normalize_host(k): v for k, v in failures.items()}
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
