"""What each TLS-RPT result type means for a domain owner: the likely cause, the fix, and
whether mode enforce would refuse such a delivery (RFC 8460 §4.3, IANA "STARTTLS Validation
Result Types"). Pure data, read by the summary, the rollout gate and the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Advice:
    """The likely cause of one result type and the fix, in the words an admin acts on."""

    result_type: str
    category: str  # "negotiation", "dane", "sts" or "unknown"
    refused_under_enforce: bool  # would an MTA-STS enforce policy make senders refuse it?
    cause: str
    fix: str
    rfc: str


# Under enforce, senders must not deliver to an MX that fails name matching or certificate
# validation or lacks STARTTLS (RFC 8461 §5, checklist A8.1): those sessions are the refusals.
# sts-* types say the policy itself could not be fetched or used; the sender then goes on with
# its cached policy or, without one, delivers as if there were no MTA-STS (§3.3, A3.14/A3.15),
# so they are failures to fix but not refusals. DANE types are DANE's, not MTA-STS's (§2).
# fmt: off
_ADVICE: tuple[Advice, ...] = (
    Advice("starttls-not-supported", "negotiation", True,
           "the receiving MX did not offer STARTTLS (or the sender could not start it)",
           "enable STARTTLS on that MX host, or remove the host from MX and from the policy",
           "RFC 8460 §4.3.1"),
    Advice("certificate-host-mismatch", "negotiation", True,
           "the MX certificate does not name the MX host (SAN mismatch)",
           "issue a certificate whose subjectAltName covers the exact MX host name",
           "RFC 8460 §4.3.1; RFC 8461 §4.2"),
    Advice("certificate-expired", "negotiation", True,
           "the MX certificate has expired",
           "renew the MX certificate (and automate renewal)",
           "RFC 8460 §4.3.1"),
    Advice("certificate-not-trusted", "negotiation", True,
           "the MX certificate is self-signed, from an unknown CA, or the chain is incomplete",
           "install a certificate from a public CA and serve the full chain (intermediates)",
           "RFC 8460 §4.3.1; RFC 8461 §4.2"),
    Advice("validation-failure", "negotiation", True,
           "a general validation failure; often an MX host that the policy's mx lines do not "
           "cover (Google reports those as validation-failure)",
           "add the MX host (or a correct one-label wildcard) to the policy's mx lines, bump "
           "the id, and read failure-reason-code for other causes",
           "RFC 8460 §4.3.3; RFC 8461 §4.1"),
    Advice("tlsa-invalid", "dane", False,
           "a DANE sender found signed TLSA records for the MX (a tlsa policy) but the "
           "certificate chain the MX served matched none of them: usually a certificate "
           "renewed with a new key before its TLSA record was published; the sender refused "
           "delivery, whatever the MTA-STS mode",
           "publish the 3 1 1 record of the key served now next to the old one (stspilot "
           "check prints it), and from now on pre-publish the next key's record two TTLs "
           "before a renewal (the TLSA rollover runbook)",
           "RFC 8460 §4.3.2.1; RFC 7672 §3.1; RFC 7671 §8"),
    Advice("dnssec-invalid", "dane", False,
           "the DANE sender's resolver could not validate the MX or TLSA answers (bogus or "
           "indeterminate DNSSEC: expired signatures, a DS matching no DNSKEY); it did not "
           "connect at all and deferred the mail",
           "fix the DNSSEC chain of the MX host's zone (re-sign, check RRSIG expiry and that "
           "the parent's DS matches a published DNSKEY); stspilot check reports dane.bogus",
           "RFC 8460 §4.3.2.1; RFC 7672 §2.1.2"),
    Advice("dane-required", "dane", False,
           "the sender is configured to require DANE for this destination but found no "
           "DNSSEC-validated TLSA record for the MX host, so it deferred the mail",
           "publish DNSSEC-signed TLSA records for every MX host (3 1 1 for the served key), "
           "or ask the sender to drop its mandatory-DANE rule",
           "RFC 8460 §4.3.2.1; RFC 7672 §6"),
    Advice("sts-policy-fetch-error", "sts", False,
           "the sender could not fetch https://mta-sts.<domain>/.well-known/mta-sts.txt "
           "(unreachable, not 200, timeout, redirect)",
           "make the policy host answer 200 text/plain at the exact URL, without redirects",
           "RFC 8460 §4.3.2.2; RFC 8461 §3.3"),
    Advice("sts-policy-invalid", "sts", False,
           "the policy file was fetched but does not validate",
           "fix the policy syntax (version, mode, mx, max_age lines) and bump the TXT id",
           "RFC 8460 §4.3.2.2; RFC 8461 §3.2"),
    Advice("sts-webpki-invalid", "sts", False,
           "the certificate of mta-sts.<domain> failed WebPKI validation",
           "serve a valid public certificate for mta-sts.<domain> with the full chain",
           "RFC 8460 §4.3.2.2; RFC 8461 §3.3"),
)
# fmt: on
ADVICE: dict[str, Advice] = {a.result_type: a for a in _ADVICE}

UNKNOWN_ADVICE = Advice(
    "",
    "unknown",
    False,
    "a result type outside the IANA registry (a newer one, or a reporter's own)",
    "read the failure-reason-code and additional-information of these failures",
    "RFC 8460 §4.3, §6.6",
)


def advice_for(result_type: str) -> Advice:
    """The cause and fix of a result type; unknown types get generic advice (RFC 8460 §4.3)."""
    known = ADVICE.get(result_type)
    if known is not None:
        return known
    return Advice(
        result_type,
        UNKNOWN_ADVICE.category,
        False,
        UNKNOWN_ADVICE.cause,
        UNKNOWN_ADVICE.fix,
        UNKNOWN_ADVICE.rfc,
    )
