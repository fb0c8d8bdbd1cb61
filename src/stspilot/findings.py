"""Findings: what is wrong (or worth knowing) about a domain, and the catalogue of their codes.

Pure core. A ``Finding`` is a value with a stable code, a severity, a one-line title, a
plain-English explanation specific to the domain, the concrete fix and the RFC section. The
catalogue below is data: ``docs/findings.md`` is generated from it (``python -m
stspilot.findings``) and a test fails when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from string import Formatter


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Spec:
    """A catalogue entry. ``explanation`` and ``fix`` are templates filled by ``make``."""

    code: str
    severity: Severity
    title: str
    explanation: str
    fix: str
    rfc: str  # e.g. "RFC 8461 §3.3"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    title: str
    detail: str  # the explanation, filled in for this domain
    fix: str  # the record or policy line to publish, filled in for this domain
    rfc: str
    subject: str = ""  # what it is about: an MX host, a pattern, a URI; "" for the domain


@dataclass(frozen=True, slots=True)
class Note:
    """A tolerated deviation met while parsing (duplicate key, split TXT string, ...).

    ``code`` is a catalogue code, so ``evaluate`` can turn the note into a ``Finding``.
    """

    code: str
    message: str
    subject: str = ""


_I, _W, _E = Severity.INFO, Severity.WARNING, Severity.ERROR

# fmt: off
SPECS: tuple[Spec, ...] = (
    # --- _mta-sts TXT record (RFC 8461 §3.1) ---
    Spec("sts.txt.missing", _I, "No MTA-STS TXT record", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.lookup-failed", _E, "The MTA-STS TXT lookup failed", "", "", "RFC 8461 §3.1, §5.1"),
    Spec("sts.txt.not-sts", _E, "TXT records at _mta-sts, none starting with v=STSv1", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.multiple", _E, "Several v=STSv1 records: senders see no policy", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.syntax", _E, "The MTA-STS TXT record is malformed", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.id.missing", _E, "The MTA-STS TXT record has no id", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.id.invalid", _E, "The MTA-STS TXT id is not 1-32 letters and digits", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.duplicate-field", _W, "A field repeats in the MTA-STS TXT record", "", "", "RFC 8461 §3.2"),
    Spec("sts.txt.extension", _I, "Unknown field in the MTA-STS TXT record (ignored)", "", "", "RFC 8461 §3.1, §3.2"),
    Spec("sts.txt.split", _I, "The MTA-STS TXT record is split into several strings", "", "", "RFC 8461 §3.1"),
    Spec("sts.txt.cname", _I, "The MTA-STS TXT record is reached through a CNAME", "", "", "RFC 8461 §3.1, §8.2"),
    # --- policy fetch (RFC 8461 §3.2, §3.3) ---
    Spec("sts.policy.host-missing", _E, "mta-sts host has no address", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.connect-failed", _E, "Cannot connect to the policy host", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.timeout", _E, "The policy host did not answer in time", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.expired", _E, "The policy host's certificate has expired", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.host-mismatch", _E, "The policy host's certificate is for another name", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.untrusted", _E, "The policy host's certificate is not trusted", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.handshake", _E, "TLS handshake with the policy host failed", "", "", "RFC 8461 §3.3, §7"),
    Spec("sts.policy.tls.expiring", _W, "The policy host's certificate expires soon", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.redirect", _E, "The policy URL redirects (senders never follow)", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.http-status", _E, "The policy URL does not answer 200", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.html", _E, "The policy URL serves an HTML page", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.content-type", _E, "The policy is not served as text/plain", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.charset", _W, "The policy's charset is not utf-8 or us-ascii", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.too-large", _E, "The policy file is larger than 64 KiB", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.protocol-error", _E, "The policy host does not speak HTTP properly", "", "", "RFC 8461 §3.3"),
    Spec("sts.policy.blocked", _E, "The policy host resolves to a private address", "", "", "RFC 8461 §3.3"),
    # --- policy text (RFC 8461 §3.2) ---
    Spec("sts.policy.syntax", _E, "The policy file is not a valid policy", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.version", _E, "The policy's version is missing or not STSv1", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.mode", _E, "The policy's mode is missing or invalid", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.max-age", _E, "The policy's max_age is missing or invalid", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.mx.missing", _E, "The policy has no mx line", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.mx.invalid", _E, "An mx pattern is malformed", "", "", "RFC 8461 §3.2, §4.1"),
    Spec("sts.policy.mx.duplicate", _I, "An mx pattern is listed twice", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.duplicate-key", _W, "A policy key repeats (the first one counts)", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.extension", _I, "Unknown key in the policy (ignored)", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.line-endings", _I, "The policy mixes LF and CRLF line ends", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.whitespace", _I, "Blank lines after the last policy field", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.mode-testing", _I, "The policy is in testing mode", "", "", "RFC 8461 §5"),
    Spec("sts.policy.mode-none", _I, "The policy is in mode none (MTA-STS switched off)", "", "", "RFC 8461 §5, §8.3"),
    Spec("sts.policy.max-age.short", _W, "max_age is short for enforce", "", "", "RFC 8461 §3.2, §10.2"),
    Spec("sts.policy.max-age.long-testing", _I, "max_age is long for testing", "", "", "RFC 8461 §3.2"),
    Spec("sts.policy.mx.wildcard", _I, "A wildcard mx pattern trusts every host in a zone", "", "", "RFC 8461 §4.1, §10.4"),
    # --- orphans (RFC 8461 §3.3, §8.3) ---
    Spec("sts.orphan.dns", _E, "TXT record published but no usable policy", "", "", "RFC 8461 §3.3, §8.3"),
    Spec("sts.orphan.policy", _W, "Policy file published but no TXT record", "", "", "RFC 8461 §3.1"),
    # --- MX set against the policy (RFC 8461 §4.1) ---
    Spec("sts.mx.not-covered", _E, "A live MX host is not covered by the policy", "", "", "RFC 8461 §4.1"),
    Spec("sts.mx.pattern-unused", _W, "An mx pattern matches no live MX host", "", "", "RFC 8461 §4.1"),
    Spec("dns.mx.missing", _W, "The domain has no MX records", "", "", "RFC 5321 §5.1"),
    Spec("dns.mx.null", _I, "The domain publishes a null MX (accepts no mail)", "", "", "RFC 7505"),
    Spec("dns.mx.lookup-failed", _E, "The MX lookup failed", "", "", "RFC 5321 §5.1"),
    # --- STARTTLS probes of each MX (RFC 8461 §4.2; severity follows the mode) ---
    Spec("mx.no-address", _E, "An MX host has no address", "", "", "RFC 5321 §5.1"),
    Spec("mx.connect-failed", _E, "Cannot connect to an MX host on port 25", "", "", "RFC 5321 §5.1"),
    Spec("mx.banner-timeout", _E, "An MX host never sent its SMTP greeting", "", "", "RFC 5321 §4.3.1"),
    Spec("mx.banner-rejected", _E, "An MX host refuses SMTP sessions", "", "", "RFC 5321 §4.3.1"),
    Spec("mx.starttls.missing", _E, "An MX host does not offer STARTTLS", "", "", "RFC 8461 §4.2; RFC 3207"),
    Spec("mx.starttls.rejected", _E, "An MX host offers STARTTLS but refuses it", "", "", "RFC 8461 §4.2; RFC 3207"),
    Spec("mx.tls.handshake", _E, "TLS handshake with an MX host failed", "", "", "RFC 8461 §4.2, §7.2"),
    Spec("mx.tls.old-version", _W, "An MX host negotiates TLS older than 1.2", "", "", "RFC 8461 §7.2"),
    Spec("mx.cert.expired", _E, "An MX host's certificate has expired", "", "", "RFC 8461 §4.2"),
    Spec("mx.cert.self-signed", _E, "An MX host's certificate is self-signed", "", "", "RFC 8461 §4.2"),
    Spec("mx.cert.untrusted", _E, "An MX host's certificate is not trusted", "", "", "RFC 8461 §4.2"),
    Spec("mx.cert.host-mismatch", _E, "An MX host's certificate does not name it", "", "", "RFC 8461 §4.2"),
    Spec("mx.cert.expiring", _W, "An MX host's certificate expires soon", "", "", "RFC 8461 §4.2"),
    Spec("mx.timeout", _E, "An MX host's SMTP session timed out", "", "", "RFC 5321 §4.5.3.2"),
    Spec("mx.protocol-error", _E, "An MX host does not speak SMTP properly", "", "", "RFC 5321"),
    # --- TLS-RPT record (RFC 8460 §3) ---
    Spec("tlsrpt.missing", _W, "No TLS-RPT record: no reports about failures", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.lookup-failed", _W, "The TLS-RPT TXT lookup failed", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.not-tlsrpt", _E, "TXT records at _smtp._tls, none starting with v=TLSRPTv1", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.multiple", _E, "Several v=TLSRPTv1 records: senders report nothing", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.syntax", _E, "The TLS-RPT record is malformed", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.rua.missing", _E, "The TLS-RPT record has no rua", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.rua.scheme", _E, "A rua URI uses a scheme other than mailto: or https:", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.rua.invalid", _E, "A rua URI is malformed", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.rua.depends-on-mx", _I, "Reports go to a mailbox behind the MX being checked", "", "", "RFC 8460 §3, §5.3"),
    Spec("tlsrpt.extension", _I, "Unknown field in the TLS-RPT record (ignored)", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.duplicate-field", _W, "A field repeats in the TLS-RPT record", "", "", "RFC 8460 §3"),
    Spec("tlsrpt.split", _I, "The TLS-RPT record is split into several strings", "", "", "RFC 8460 §3"),
    # --- rollout --- (rollout.py, generate.py: the rollout engineer's block)
    Spec("generate.mx.probe-failed", _W, "An MX host the new policy lists fails its STARTTLS probe", "Senders that apply the policy validate this MX host: STARTTLS, a certificate from a trusted CA, its name in the certificate. It fails that today, so testing reports will show failures and enforce would refuse to deliver to it.", "Give the host STARTTLS with a publicly trusted certificate that names it, or take it out of the MX set before you enforce.", "RFC 8461 §4.2, §5"),
    Spec("rollout.id-not-bumped", _E, "The policy changed but the TXT id did not", "Senders cache the policy and fetch it again only when the id in the _mta-sts TXT record changes. The policy text changed while the id stayed the same, so senders keep the old policy until its max_age runs out.", "Publish the _mta-sts TXT record again with a new id (stspilot generate prints one), after the new policy is served.", "RFC 8461 §3.1, §8.1"),
    Spec("rollout.stuck-testing", _W, "Stuck in testing although the gate is clean", "The domain has been in testing mode for a long time and every enforce gate criterion passes. Testing protects nothing: senders deliver even when TLS fails.", "Publish the enforce policy and a new id that stspilot rollout prints under Next step.", "RFC 8461 §5"),
    Spec("rollout.gate.failures", _E, "TLS failures reported in the gate window", "Senders reported failed TLS sessions to live MX hosts in the last days. Under enforce these sessions would have been refused, so that mail would have been delayed and then bounced.", "Fix each failure by its result type (stspilot reports summary explains them), then wait for a clean window.", "RFC 8460 §4.3; RFC 8461 §5"),
    Spec("rollout.gate.volume", _W, "Too few reported sessions to trust the gate", "The reports of the gate window hold fewer sessions than the threshold, so a clean result says little: a sender with a problem may simply not have written yet.", "Wait until more reports arrive, or lower the threshold on purpose with --min-sessions.", "RFC 8460 §4.1"),
    Spec("rollout.gate.single-reporter", _W, "Only one organisation sends reports", "Every report in the window comes from one sending organisation. Other senders may fail in ways that one reporter cannot see.", "Wait for reports from a second large sender, or accept the risk knowingly.", "RFC 8460 §4.1"),
    Spec("rollout.gate.mx-coverage", _E, "A live MX host is not covered by the policy", "Under enforce, senders refuse to deliver to an MX host that matches no mx line of the policy. A live host missing from the policy would lose its share of the mail.", "Add an mx line for the host to the policy, serve it, then publish a new id.", "RFC 8461 §4.1, §5"),
    Spec("rollout.gate.mx-tls", _E, "An MX host fails STARTTLS or certificate validation", "Under enforce, senders refuse an MX host without STARTTLS or whose certificate is expired, untrusted or for another name.", "Install a certificate from a public CA that names the MX host and offer STARTTLS.", "RFC 8461 §4.2, §5"),
    Spec("rollout.gate.policy-fetch", _E, "The policy cannot be fetched with a valid certificate", "Senders that cannot fetch the policy over HTTPS with a valid certificate for mta-sts.<domain> see no policy at all, so enforce would protect nothing.", "Serve the policy at https://mta-sts.<domain>/.well-known/mta-sts.txt with status 200, text/plain and a certificate valid for that name.", "RFC 8461 §3.2, §3.3"),
    Spec("rollout.gate.tlsrpt", _E, "TLS-RPT is not published or no reports arrive", "Without TLS-RPT reports nobody sees what enforce would refuse. Reports arrive daily once the _smtp._tls record is published and big senders deliver to the domain.", "Publish _smtp._tls with a rua that reaches stspilot (mailto: or https:) and ingest the reports.", "RFC 8460 §3"),
    Spec("rollout.failures-gone-mx", _I, "Reported failures concern MX hosts that are no longer live", "Some failures in the window were for MX hosts that are no longer in the MX set. They do not count against the gate, because no sender will try those hosts again.", "Nothing to do, unless the host comes back; then fix its TLS first.", "RFC 8460 §4.4"),
    Spec("rollout.enforce.failures", _E, "Mail was refused under enforce", "The domain enforces MTA-STS and senders reported failed sessions: that mail was not delivered on the first try and may bounce.", "Fix the failing MX hosts at once, or roll back to testing with a new id (stspilot rollout prints the exact records).", "RFC 8461 §5; RFC 8460 §4.3"),
    Spec("rollout.mx-drift", _W, "The live MX set differs from the policy", "MX hosts were added or removed without the same change in the policy. Under enforce, an MX outside the policy refuses mail; a pattern for a gone host is harmless but stale.", "Follow the MX migration runbook that stspilot rollout prints: add hosts to the policy and bump the id before switching the MX records.", "RFC 8461 §4.1, §8.1"),
    Spec("rollout.decommission-safe", _I, "Mode none has been served long enough to remove MTA-STS", "Every policy ever served has expired at senders, so the TXT record and the policy host can now be removed.", "Delete the _mta-sts TXT record, then the policy host.", "RFC 8461 §8.3"),
    # --- the check itself ---
    Spec("check.deadline", _W, "The check ran out of time for this domain", "", "", "RFC 8461 §3.3"),
)
# fmt: on

CATALOGUE: dict[str, Spec] = {spec.code: spec for spec in SPECS}


class _Defaulting(dict[str, object]):
    """Template parameters; a placeholder nobody filled stays visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, params: dict[str, object]) -> str:
    return template.format_map(_Defaulting(params))


def make(
    code: str, *, subject: str = "", severity: Severity | None = None, **params: object
) -> Finding:
    """Build the ``Finding`` for catalogue ``code`` with its templates filled from ``params``.

    ``subject`` is also available to the templates as ``{subject}``; ``severity`` overrides the
    catalogue's (MX findings follow the policy mode). An unknown code is a bug: ``KeyError``.
    """
    spec = CATALOGUE[code]
    values: dict[str, object] = {"subject": subject, **params}
    return Finding(
        code=code,
        severity=spec.severity if severity is None else severity,
        title=spec.title,
        detail=_fill(spec.explanation, values),
        fix=_fill(spec.fix, values),
        rfc=spec.rfc,
        subject=subject,
    )


def placeholders(spec: Spec) -> set[str]:
    """The ``{names}`` a spec's templates expect (used by tests and the docs)."""
    names: set[str] = set()
    for template in (spec.explanation, spec.fix):
        names.update(f for _, f, _, _ in Formatter().parse(template) if f)
    return names


def render_catalogue_markdown() -> str:
    """The findings reference (``docs/findings.md``), generated so it cannot drift."""
    lines = [
        "# Findings reference",
        "",
        "<!-- Generated by `python -m stspilot.findings`; do not edit by hand. -->",
        "",
        "Every finding `stspilot check` (and `rollout`) can report: its stable code, default",
        "severity, what it means and how to fix it. Words in `{braces}` are filled in for the",
        "domain being checked. Findings about an MX host take their severity from the policy",
        "mode: error under `enforce`, warning under `testing`, info otherwise.",
        "",
    ]
    section = ""
    for spec in sorted(SPECS, key=lambda s: s.code):
        head = spec.code.split(".")[0]
        if head != section:
            section = head
            lines += [f"## `{head}.*`", ""]
        lines += [
            f"### `{spec.code}` ({spec.severity.label})",
            "",
            f"**{spec.title}.** {spec.explanation}",
            "",
            f"*Fix:* {spec.fix}",
            "",
            f"*Reference:* {spec.rfc}",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_catalogue_markdown(), end="")
