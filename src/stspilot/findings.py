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
    Spec("sts.txt.missing", _I, "No MTA-STS TXT record", "{domain} publishes no _mta-sts TXT record, so sending servers do not look for an MTA-STS policy and deliver over TLS only when it happens to work: an attacker on the path can strip STARTTLS unnoticed.", "Start with TLS-RPT reporting, then publish a testing policy at https://mta-sts.{domain}/.well-known/mta-sts.txt and the record _mta-sts.{domain}. TXT \"v=STSv1; id={new_id}\" (stspilot generate {domain} prints both).", "RFC 8461 §3.1"),
    Spec("sts.txt.lookup-failed", _E, "The MTA-STS TXT lookup failed", "The DNS lookup of {name} did not complete ({error}). Senders that hit the same failure treat the domain as having no policy (or keep a cached one), and the result of this check is incomplete.", "Make sure the authoritative name servers answer TXT queries for {name} (also over TCP, and with valid DNSSEC if the zone is signed), then check again.", "RFC 8461 §3.1, §5.1"),
    Spec("sts.txt.at-apex", _W, "The MTA-STS record is published at the domain, not at _mta-sts", "{domain} itself has the TXT record \"{record}\", which looks like an MTA-STS record, but senders look for it only at {name}, so they do not see it.", "Publish it at {name}: {name}. TXT \"{record}\", and remove it from {domain}.", "RFC 8461 §3.1"),
    Spec("sts.txt.not-sts", _E, "TXT records at _mta-sts, none starting with v=STSv1", "There are TXT records at {name}, but none begins with v=STSv1, so senders see no MTA-STS policy. Found: {record}.", "Publish exactly one record that begins with the version: {name}. TXT \"v=STSv1; id={new_id}\".", "RFC 8461 §3.1"),
    Spec("sts.txt.multiple", _E, "Several v=STSv1 records: senders see no policy", "More than one TXT record at {name} begins with v=STSv1 ({record}). RFC 8461 says senders must then ignore them all: the domain has no MTA-STS policy.", "Delete all but one v=STSv1 record at {name}, and give the one you keep a fresh id: {name}. TXT \"v=STSv1; id={new_id}\".", "RFC 8461 §3.1"),
    Spec("sts.txt.syntax", _E, "The MTA-STS TXT record is malformed", "The record at {name} begins with v=STSv1 but does not follow the grammar ({error}). Senders treat the domain as having no policy. Record: {record}.", "Publish the record in the exact form {name}. TXT \"v=STSv1; id={new_id}\": fields separated by semicolons, no spaces inside a field, ASCII only.", "RFC 8461 §3.1"),
    Spec("sts.txt.id.missing", _E, "The MTA-STS TXT record has no id", "The record at {name} has no id field. Senders use the id to notice a new policy, and a record without one is invalid: senders see no policy. Record: {record}.", "Add an id of 1 to 32 letters and digits, for example a timestamp: {name}. TXT \"v=STSv1; id={new_id}\".", "RFC 8461 §3.1"),
    Spec("sts.txt.id.invalid", _E, "The MTA-STS TXT id is not 1-32 letters and digits", "The id in the record at {name} is not 1 to 32 letters and digits ({error}). Dashes, dots, colons, underscores and spaces are not allowed, so senders reject the record and see no policy.", "Use only letters and digits, at most 32 of them, e.g. {name}. TXT \"v=STSv1; id={new_id}\".", "RFC 8461 §3.1"),
    Spec("sts.txt.duplicate-field", _W, "A field repeats in the MTA-STS TXT record", "A field appears more than once in the _mta-sts record ({note}). Senders use the first one and ignore the rest, which may not be the value you meant.", "Remove the repeated {subject}= field so the record holds each field once.", "RFC 8461 §3.2"),
    Spec("sts.txt.extension", _I, "Unknown field in the MTA-STS TXT record (ignored)", "The _mta-sts record carries a field that RFC 8461 does not define ({note}). Senders ignore unknown fields, so it is harmless but has no effect.", "Remove the {subject}= field unless a specific tool needs it.", "RFC 8461 §3.1, §3.2"),
    Spec("sts.txt.split", _I, "The MTA-STS TXT record is split into several strings", "The _mta-sts record is published as several character strings ({note}). Senders join them with nothing in between, so this works, but an extra space at a split point would change the record.", "Nothing needs to change. If you edit the record, make sure the pieces join into exactly v=STSv1; id=...", "RFC 8461 §3.1"),
    Spec("sts.txt.cname", _I, "The MTA-STS TXT record is reached through a CNAME", "The _mta-sts name is an alias ({chain}). Senders follow CNAMEs, so this works, and it is how a provider hosts the policy for you; the record and the policy host must still stay in step.", "Nothing to do. If you stop using the provider, remove both the CNAME and the mta-sts host together.", "RFC 8461 §3.1, §8.2"),
    # --- policy fetch (RFC 8461 §3.2, §3.3) ---
    Spec("sts.policy.host-missing", _E, "mta-sts host has no address", "{host} has no address (no A or AAAA record), so senders cannot fetch the policy from {url} and treat the domain as having no policy.", "Create {host} (an A/AAAA record or a CNAME to your policy host) and serve the policy there over HTTPS.", "RFC 8461 §3.2"),
    Spec("sts.policy.connect-failed", _E, "Cannot connect to the policy host", "Senders could not open a connection to {host} on port 443 ({error}), so they cannot fetch the policy.", "Make sure a web server listens on port 443 at {host} and the firewall lets the Internet reach it.", "RFC 8461 §3.3"),
    Spec("sts.policy.timeout", _E, "The policy host did not answer in time", "{host} did not deliver the policy in time (after {elapsed} s). RFC 8461 §3.3 suggests senders wait up to a minute, and many give up sooner; one that gives up treats the domain as having no policy (or keeps a cached one): mail still arrives, but without MTA-STS protection, and the sender reports sts-policy-fetch-error.", "Serve {url} quickly (well under a minute, ideally under a second); check the web server and anything in front of it.", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.expired", _E, "The policy host's certificate has expired", "The certificate of {host} has expired ({tls_detail}; valid until {not_after}). Senders must reject it, so they cannot fetch the policy.", "Renew the certificate for {host} and set up automatic renewal (for example ACME).", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.host-mismatch", _E, "The policy host's certificate is for another name", "The certificate of {host} does not name it (it names: {cert_names}). Senders check the name, so they cannot fetch the policy. A common cause is a web host that serves its own certificate for every name.", "Install a certificate whose subjectAltName includes {host} (a wildcard *.{domain} also works).", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.not-yet-valid", _E, "The policy host's certificate is not valid yet", "The certificate of {host} is valid only from {not_before} ({tls_detail}): its notBefore date is still in the future, so senders reject it (RFC 5280 §6.1.3) and cannot fetch the policy. Either the certificate was issued with a future start date, or the clock of the machine running this check (or of the server that made the certificate) is wrong.", "Check the clocks (NTP) of this machine and of the certificate's issuer; install a certificate for {host} that is valid now, or wait until {not_before} before relying on this one.", "RFC 8461 §3.3; RFC 5280 §6.1.3"),
    Spec("sts.policy.tls.untrusted", _E, "The policy host's certificate is not trusted", "The certificate of {host} does not chain to a public CA that senders trust ({tls_detail}), so they cannot fetch the policy. Self-signed and private-CA certificates do not work here.", "Install a certificate for {host} from a public CA (for example Let's Encrypt) with its full intermediate chain.", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.chain-incomplete", _E, "The policy host does not send its intermediate certificate", "{host} does not send the intermediate certificate(s) that link its certificate to a trusted CA (issuer: {issuer}): it sends {chain_sent} ({tls_detail}). Browsers often fill the gap from a cache or by downloading the intermediate; senders do not, so they reject the certificate and cannot fetch the policy.", "Serve the full chain on {host}: the certificate followed by its intermediates, e.g. fullchain.pem (nginx ssl_certificate fullchain.pem; Apache SSLCertificateFile fullchain.pem). If the issuer is a private CA, no sender trusts it: use a certificate from a public CA.", "RFC 8461 §3.3"),
    Spec("sts.policy.tls.handshake", _E, "TLS handshake with the policy host failed", "The TLS handshake with {host} failed ({tls_detail}), so senders cannot fetch the policy.", "Make {host} offer TLS 1.2 or 1.3 with a current cipher suite and answer SNI for {host}.", "RFC 8461 §3.3, §7"),
    Spec("sts.policy.tls.expiring", _W, "The policy host's certificate expires soon", "The certificate of {host} expires in {days} day(s) ({not_after}). After that, senders cannot fetch the policy; senders without a cached copy will see no policy.", "Renew the certificate for {host} now and check that automatic renewal works.", "RFC 8461 §3.3"),
    Spec("sts.policy.redirect", _E, "The policy URL redirects (senders never follow)", "{url} answers with a redirect (HTTP {status}) to {location}. RFC 8461 forbids following redirects, so senders treat the fetch as failed.", "Serve the policy file itself at exactly {url} with status 200; remove the redirect rule (often an http-to-www or a catch-all rule).", "RFC 8461 §3.3"),
    Spec("sts.policy.http-status", _E, "The policy URL does not answer 200", "{url} answers HTTP {status} instead of 200. Senders accept a policy only with status 200.", "Put the policy file at /.well-known/mta-sts.txt on {host} so that it is served with status 200.", "RFC 8461 §3.3"),
    Spec("sts.policy.html", _E, "The policy URL serves an HTML page", "{url} returns a web page (Content-Type: {content_type}) instead of the policy. This is typical of a catch-all page or a site builder answering every path. Senders do not accept it.", "Serve the plain policy text at {url} as text/plain, starting with the line version: STSv1.", "RFC 8461 §3.2"),
    Spec("sts.policy.content-type", _E, "The policy is not served as text/plain", "{url} is served with Content-Type: {content_type}. Senders check for text/plain and may reject anything else.", "Configure the web server to send Content-Type: text/plain (or text/plain; charset=utf-8) for mta-sts.txt.", "RFC 8461 §3.2"),
    Spec("sts.policy.charset", _W, "The policy's charset is not utf-8 or us-ascii", "The policy is served with charset={charset}. RFC 8461 expects utf-8 or us-ascii; other charsets may be rejected.", "Send Content-Type: text/plain; charset=utf-8 (or leave the charset out).", "RFC 8461 §3.2"),
    Spec("sts.policy.too-large", _E, "The policy file is larger than 64 KiB", "The body at {url} is larger than 64 KiB. Senders stop reading at about 64 KB, so they cannot read the policy.", "Serve only the short policy text (a few lines) at {url}.", "RFC 8461 §3.3"),
    Spec("sts.policy.protocol-error", _E, "The policy host does not speak HTTP properly", "{host} does not answer with well-formed HTTP ({error}), so senders cannot fetch the policy.", "Check the web server or proxy in front of {host}; it must answer a plain HTTPS GET for {url}.", "RFC 8461 §3.3"),
    Spec("sts.policy.blocked", _E, "The policy host resolves to a private address", "{host} resolves to a private, loopback or link-local address, which a public sender cannot reach; this check refused to connect to it.", "Point {host} at a public address of your policy web server.", "RFC 8461 §3.3"),
    # --- policy text (RFC 8461 §3.2) ---
    Spec("sts.policy.syntax", _E, "The policy file is not a valid policy", "The file at {url} is not an MTA-STS policy ({error}). Senders reject it and treat the domain as having no policy.", "Serve exactly these lines, one per line, no indentation or blank lines: version: STSv1, mode: testing, one mx: line per MX host, max_age: 86400.", "RFC 8461 §3.2"),
    Spec("sts.policy.version", _E, "The policy's version is missing or not STSv1", "The policy's version line is missing or wrong ({error}). It must be exactly version: STSv1, so senders reject the policy.", "Add the line exactly: version: STSv1 (keys and values are case-sensitive; the order of the lines does not matter).", "RFC 8461 §3.2"),
    Spec("sts.policy.mode", _E, "The policy's mode is missing or invalid", "The policy's mode is missing or invalid ({error}). Only enforce, testing and none are allowed (lower case), so senders reject the policy.", "Add the line mode: testing (or mode: enforce once reports are clean).", "RFC 8461 §3.2"),
    Spec("sts.policy.max-age", _E, "The policy's max_age is missing or invalid", "The policy's max_age is missing or invalid ({error}). It must be a whole number of seconds from 0 to 31557600 (one year), so senders reject the policy.", "Add a line such as max_age: 86400 (one day) while testing, or max_age: 1209600 (two weeks) under enforce.", "RFC 8461 §3.2"),
    Spec("sts.policy.mx.missing", _E, "The policy has no mx line", "The policy has no mx line ({error}). In enforce or testing mode it must list the MX hosts senders may deliver to, so senders reject it.", "Add one mx: line per MX host of the domain, e.g. mx: mail.{domain}.", "RFC 8461 §3.2"),
    Spec("sts.policy.mx.invalid", _E, "An mx pattern is malformed", "An mx line is not a host name or a *.zone wildcard ({error}). IP addresses, lists on one line, trailing dots, placeholders and non-ASCII names (write punycode) are invalid, so senders reject the policy.", "Write one host name per mx: line, exactly as the MX record names it (for example mx: mail.{domain}, or mx: *.{domain}).", "RFC 8461 §3.2, §4.1"),
    Spec("sts.policy.mx.duplicate", _I, "An mx pattern is listed twice", "The pattern {subject} is listed more than once. This is harmless but suggests the list is not maintained.", "Remove the repeated mx: {subject} line.", "RFC 8461 §3.2"),
    Spec("sts.policy.duplicate-key", _W, "A policy key repeats (the first one counts)", "A key other than mx appears more than once ({note}). Senders use the first one and ignore the rest, which may not be the value you meant.", "Keep a single {subject}: line with the value you want.", "RFC 8461 §3.2"),
    Spec("sts.policy.extension", _I, "Unknown key in the policy (ignored)", "The policy has a key RFC 8461 does not define ({note}). Senders ignore unknown keys; note that keys are case-sensitive, so Mode: or MX: are unknown keys too.", "Remove the {subject}: line unless a tool you use needs it.", "RFC 8461 §3.2"),
    Spec("sts.policy.line-endings", _I, "The policy mixes LF and CRLF line ends", "The policy mixes LF and CRLF line ends ({note}). Both are allowed, so senders accept it, but it shows the file was edited by different tools.", "Save the file with one kind of line end (LF is fine).", "RFC 8461 §3.2"),
    Spec("sts.policy.whitespace", _I, "Blank lines after the last policy field", "The policy ends with blank lines ({note}). The grammar allows at most one line end after the last field; stspilot and most senders tolerate this, a strict parser may not.", "Remove the empty lines at the end of the policy file.", "RFC 8461 §3.2"),
    Spec("sts.policy.mode-testing", _I, "The policy is in testing mode", "The policy is in testing mode: senders report TLS problems (when the domain publishes TLS-RPT) but still deliver without TLS protection. This is the right stage for finding problems, not a place to stay.", "Once TLS-RPT reports show no failures for a couple of weeks, switch to mode: enforce with max_age: 1209600 and publish a new id (stspilot rollout tells you when).", "RFC 8461 §5"),
    Spec("sts.policy.mode-none", _I, "The policy is in mode none (MTA-STS switched off)", "The policy is in mode none: senders treat the domain as having no MTA-STS policy. This is the way to switch MTA-STS off safely.", "If you are removing MTA-STS, keep this policy served until max_age ({max_age} s) has passed for every policy ever served, then remove the TXT record and the policy host. Otherwise move to testing.", "RFC 8461 §5, §8.3"),
    Spec("sts.policy.max-age.short", _W, "max_age is short for enforce", "max_age is {max_age} seconds, less than a week, under enforce. Senders forget the policy quickly, which widens the window in which an attacker can block the policy fetch and downgrade mail.", "Use max_age: 1209600 (two weeks) or more under enforce, and publish a new id.", "RFC 8461 §3.2, §10.2"),
    Spec("sts.policy.max-age.long-testing", _I, "max_age is long for testing", "max_age is {max_age} seconds in testing mode. Senders keep the policy that long, so a mistake takes that long to wash out; one day is the usual choice while testing.", "Use max_age: 86400 while testing, and raise it when you move to enforce.", "RFC 8461 §3.2"),
    Spec("sts.policy.mx.wildcard", _I, "A wildcard mx pattern trusts every host in a zone", "The pattern {pattern} accepts any host one label below {zone} that has a publicly trusted certificate. Anyone who can create such a host name can receive the domain's mail under enforce.", "List the MX hosts by name instead of {pattern}, unless the zone is run by your mail provider and that is their documented setting.", "RFC 8461 §4.1, §10.4"),
    # --- orphans (RFC 8461 §3.3, §8.3) ---
    Spec("sts.orphan.dns", _E, "TXT record published but no usable policy", "{domain} publishes an _mta-sts TXT record, but senders cannot get a usable policy ({reason}). Senders treat the domain as having no policy, and they report the failure to the TLS-RPT address.", "Fix the policy host (see the other findings), or, if you are giving up MTA-STS, serve mode: none first and remove the TXT record afterwards.", "RFC 8461 §3.3, §8.3"),
    Spec("sts.orphan.policy", _W, "Policy file published but no TXT record", "A valid policy (mode {mode}) is served at mta-sts.{domain}, but {txt_state}, so senders never fetch it.", "Publish _mta-sts.{domain}. TXT \"v=STSv1; id={new_id}\", or remove the policy if it is left over.", "RFC 8461 §3.1"),
    # --- MX set against the policy (RFC 8461 §4.1) ---
    Spec("sts.mx.not-covered", _E, "A live MX host is not covered by the policy", "The MX host {host} matches none of the policy's mx patterns ({patterns}). Under enforce, senders refuse to deliver to it; under testing they report failures. A wildcard covers exactly one label.", "Add the line mx: {host} to the policy, serve it, then publish a new id in the TXT record.", "RFC 8461 §4.1"),
    Spec("sts.mx.pattern-unused", _W, "An mx pattern matches no live MX host", "The pattern {pattern} matches none of the live MX hosts ({live}). It is probably left over from an old provider; it lets a host with that name and a valid certificate receive mail.", "Remove the line mx: {pattern} from the policy and publish a new id, unless that host is about to be added to the MX records.", "RFC 8461 §4.1"),
    Spec("dns.domain.nxdomain", _E, "The domain does not exist in DNS", "{name} does not exist (NXDOMAIN): mail to it bounces at once, and no MTA-STS or TLS-RPT record can be read. Check the spelling, or the delegation of the zone.", "Register or delegate {name}, or check the name you asked about.", "RFC 5321 §5.1; RFC 8461 §3.1"),
    Spec("dns.mx.missing", _W, "The domain has no MX records", "{name} has no MX records. Senders then try the domain's own address (implicit MX), which is rarely intended and cannot be covered by a policy in the usual way.", "Publish MX records for {name} pointing at your mail servers, or a null MX (MX 0 .) if the domain receives no mail.", "RFC 5321 §5.1"),
    Spec("dns.mx.null", _I, "The domain publishes a null MX (accepts no mail)", "The domain publishes a null MX: it accepts no mail, so MTA-STS and TLS-RPT do not apply to it.", "Nothing to do. Remove any MTA-STS policy for this domain once its max_age has passed.", "RFC 7505"),
    Spec("dns.mx.lookup-failed", _E, "The MX lookup failed", "The MX lookup of {name} did not complete ({error}), so MX coverage and STARTTLS could not be checked.", "Make sure the authoritative name servers answer MX queries for {name}, then check again.", "RFC 5321 §5.1"),
    # --- STARTTLS probes of each MX (RFC 8461 §4.2; severity follows the mode) ---
    Spec("mx.no-address", _E, "An MX host has no address", "The MX host {host} has no A or AAAA record, so no sender can deliver to it.", "Fix the MX record or create the address record for {host}.", "RFC 5321 §5.1"),
    Spec("mx.blocked", _E, "An MX host resolves only to private addresses", "{host} resolves only to private, loopback or link-local addresses, which senders on the Internet cannot reach; this service does not connect to them.", "Point {host} at the public address of your mail server, or remove it from the MX records.", "RFC 5321 §5.1"),
    Spec("mx.connect-failed", _E, "Cannot connect to an MX host on port 25", "Could not connect to {host} on port 25 ({error}). Senders cannot deliver to it either, unless port 25 is blocked only where this check runs.", "Make sure {host} accepts connections on port 25 from the Internet; if this check runs on a network that blocks port 25, run it elsewhere.", "RFC 5321 §5.1"),
    Spec("mx.banner-timeout", _E, "An MX host never sent its SMTP greeting", "{host} accepted the connection but never sent its 220 greeting ({elapsed} s). Senders give up the same way.", "Check the SMTP service on {host} (overload, tarpitting, a broken proxy).", "RFC 5321 §4.3.1"),
    Spec("mx.banner-rejected", _E, "An MX host refuses SMTP sessions", "{host} refuses SMTP sessions in its greeting ({banner}).", "Check why {host} rejects connections (maintenance, blocklists, a wrong host in the MX set).", "RFC 5321 §4.3.1"),
    Spec("mx.starttls.missing", _E, "An MX host does not offer STARTTLS", "{host} does not offer STARTTLS in its EHLO answer. MTA-STS requires TLS to every MX: under enforce senders refuse to deliver to it.", "Enable STARTTLS on {host} with a certificate from a public CA that names {host}.", "RFC 8461 §4.2; RFC 3207"),
    Spec("mx.starttls.rejected", _E, "An MX host offers STARTTLS but refuses it", "{host} offers STARTTLS but answers the STARTTLS command with an error ({error}).", "Fix the TLS configuration of the SMTP server on {host} (certificate and key files, permissions).", "RFC 8461 §4.2; RFC 3207"),
    Spec("mx.tls.handshake", _E, "TLS handshake with an MX host failed", "The TLS handshake with {host} failed after STARTTLS ({tls_detail}). Senders cannot set up an encrypted session.", "Enable TLS 1.2 and 1.3 with current ciphers on {host}, and make sure it presents its certificate even when the client sends SNI.", "RFC 8461 §4.2, §7.2"),
    Spec("mx.tls.old-version", _W, "An MX host negotiates TLS older than 1.2", "{host} negotiated {version}. RFC 8461 requires TLS 1.2 or later, so senders that follow it strictly treat this as a failure.", "Enable TLS 1.2 and TLS 1.3 on {host} and disable older versions.", "RFC 8461 §7.2"),
    Spec("mx.cert.expired", _E, "An MX host's certificate has expired", "The certificate of {host} has expired ({not_after}). Under enforce, senders refuse to deliver to it; under testing they report certificate-expired.", "Renew the certificate of {host} and set up automatic renewal.", "RFC 8461 §4.2"),
    Spec("mx.cert.self-signed", _E, "An MX host's certificate is self-signed", "{host} presents a self-signed certificate. MTA-STS requires a certificate from a public CA, so under enforce senders refuse to deliver to it (often a forgotten appliance or relay).", "Install a certificate from a public CA (for example Let's Encrypt) that names {host}, or remove the host from the MX set.", "RFC 8461 §4.2"),
    Spec("mx.cert.not-yet-valid", _E, "An MX host's certificate is not valid yet", "The certificate of {host} is valid only from {not_before} ({tls_detail}): its notBefore date is still in the future, so senders reject it (RFC 5280 §6.1.3). Under enforce they refuse to deliver to it; under testing they report certificate-not-trusted. Either the certificate was issued with a future start date, or a clock (this machine's, or the issuer's) is wrong.", "Check the clocks (NTP) of this machine and of the certificate's issuer; install a certificate for {host} that is valid now.", "RFC 8461 §4.2; RFC 5280 §6.1.3"),
    Spec("mx.cert.untrusted", _E, "An MX host's certificate is not trusted", "The certificate of {host} does not chain to a public CA ({tls_detail}). Under enforce senders refuse to deliver to it.", "Install a certificate from a public CA for {host}, including the intermediate certificates.", "RFC 8461 §4.2"),
    Spec("mx.cert.chain-incomplete", _E, "An MX host does not send its intermediate certificate", "{host} does not send the intermediate certificate(s) that link its certificate to a trusted CA (issuer: {issuer}): it sends {chain_sent} ({tls_detail}). Sending servers (Postfix, Exim, Google, Microsoft) do not download missing intermediates as browsers do, so they reject the certificate: under enforce they refuse to deliver to it, and TLS-RPT reports show certificate-not-trusted.", "Serve the full chain on {host}: the certificate followed by its intermediates, e.g. fullchain.pem (Postfix smtpd_tls_chain_files = privkey.pem, fullchain.pem, or smtpd_tls_cert_file with the chain appended; Exim tls_certificate = fullchain.pem). If the issuer is a private CA, no sender trusts it: use a certificate from a public CA.", "RFC 8461 §4.2"),
    Spec("mx.cert.host-mismatch", _E, "An MX host's certificate does not name it", "The certificate of {host} does not name it (it names: {cert_names}). MTA-STS checks the MX host name, so under enforce senders refuse to deliver to it.", "Install a certificate whose subjectAltName includes {host}, or point the MX record at the name the certificate covers (and list that name in the policy).", "RFC 8461 §4.2"),
    Spec("mx.cert.expiring", _W, "An MX host's certificate expires soon", "The certificate of {host} expires in {days} day(s) ({not_after}). After that, senders applying the policy refuse (enforce) or report (testing) every delivery to it.", "Renew the certificate of {host} now and check that automatic renewal works.", "RFC 8461 §4.2"),
    Spec("mx.timeout", _E, "An MX host's SMTP session timed out", "The SMTP session with {host} did not finish in time ({elapsed} s), so its STARTTLS support could not be checked.", "Check the SMTP service on {host}; if it is slow on purpose (greylisting, tarpitting), check again later.", "RFC 5321 §4.5.3.2"),
    Spec("mx.protocol-error", _E, "An MX host does not speak SMTP properly", "{host} did not answer like an SMTP server ({error}).", "Check that port 25 on {host} runs a mail server and not another service or a broken proxy.", "RFC 5321"),
    # --- TLS-RPT record (RFC 8460 §3) ---
    Spec("tlsrpt.missing", _W, "No TLS-RPT record: no reports about failures", "{name} publishes no TLS-RPT record, so senders do not send reports about TLS failures when delivering to {domain}: with MTA-STS, problems stay invisible; without it, reports are the safe first step.", "Publish {name}. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}\" (or an https: address that ingests reports).", "RFC 8460 §3"),
    Spec("tlsrpt.at-apex", _W, "The TLS-RPT record is published at the domain, not at _smtp._tls", "{domain} itself has the TXT record \"{record}\", which looks like a TLS-RPT record, but senders look for it only at {name}, so they send no reports.", "Publish it at {name}: {name}. TXT \"{record}\", and remove it from {domain}.", "RFC 8460 §3"),
    Spec("tlsrpt.lookup-failed", _W, "The TLS-RPT TXT lookup failed", "The DNS lookup of {name} did not complete ({error}); whether senders send reports is unknown.", "Make sure the name servers answer TXT queries for {name}, then check again.", "RFC 8460 §3"),
    Spec("tlsrpt.not-tlsrpt", _E, "TXT records at _smtp._tls, none starting with v=TLSRPTv1", "There are TXT records at {name}, but none begins with v=TLSRPTv1, so senders send no reports. Found: {record}.", "Publish exactly one record that begins with the version: {name}. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\".", "RFC 8460 §3"),
    Spec("tlsrpt.multiple", _E, "Several v=TLSRPTv1 records: senders report nothing", "More than one TXT record at {name} begins with v=TLSRPTv1. RFC 8460 says senders then treat the domain as not doing TLS-RPT, so no reports are sent.", "Merge them into one record; several addresses go in one rua field, separated by commas.", "RFC 8460 §3"),
    Spec("tlsrpt.syntax", _E, "The TLS-RPT record is malformed", "The TLS-RPT record at {name} does not follow the grammar ({error}), so senders ignore it. Record: {record}.", "Publish the record in the form {name}. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\".", "RFC 8460 §3"),
    Spec("tlsrpt.rua.missing", _E, "The TLS-RPT record has no rua", "The TLS-RPT record at {name} has no rua field, so senders do not know where to send reports ({error}).", "Add rua=mailto:<address> (or an https: URL): {name}. TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\".", "RFC 8460 §3"),
    Spec("tlsrpt.rua.scheme", _E, "A rua URI uses a scheme other than mailto: or https:", "A rua URI in {name} uses a scheme senders do not support ({error}). Only mailto: and https: work.", "Replace it with a mailto: address or an https: URL, e.g. rua=mailto:tlsrpt@example.com.", "RFC 8460 §3"),
    Spec("tlsrpt.rua.invalid", _E, "A rua URI is malformed", "A rua URI in {name} is malformed ({error}). Unlike DMARC there is no !size suffix, and ',', '!' and ';' inside a URI must be percent-encoded.", "Write each address as a plain URI, several separated by commas: rua=mailto:tlsrpt@example.com,https://reports.example.com/tlsrpt.", "RFC 8460 §3"),
    Spec("tlsrpt.rua.depends-on-mx", _I, "Reports go to a mailbox behind the MX being checked", "Reports for the domain are mailed to {rua_domain}, whose mail is delivered through the MX hosts being checked ({hosts}). When those hosts fail TLS, the reports describing the failure go through the same hosts (senders deliver reports without TLS checks, but an outage stops them too).", "Consider an additional rua on another mail provider or an https: endpoint, e.g. rua=mailto:tlsrpt@{rua_domain},https://reports.example.net/tlsrpt.", "RFC 8460 §3, §5.3"),
    Spec("tlsrpt.extension", _I, "Unknown field in the TLS-RPT record (ignored)", "The TLS-RPT record carries a field RFC 8460 does not define ({note}). Senders ignore it.", "Remove the {subject}= field unless a tool you use needs it.", "RFC 8460 §3"),
    Spec("tlsrpt.duplicate-field", _W, "A field repeats in the TLS-RPT record", "A field appears more than once in the TLS-RPT record ({note}). Senders use the first one; the others are ignored, so some addresses may get no reports.", "Use one rua= field with all addresses separated by commas.", "RFC 8460 §3"),
    Spec("tlsrpt.split", _I, "The TLS-RPT record is split into several strings", "The TLS-RPT record is published as several character strings ({note}). Senders join them with nothing in between, so this works.", "Nothing needs to change; when editing, make sure the pieces join into a valid record.", "RFC 8460 §3"),
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
    # --- DANE for SMTP (RFC 7672, RFC 7671, RFC 6698; checked next to MTA-STS) ---
    Spec("dane.match", _I, "DANE: the MX host's TLSA records match its certificate", "{host} publishes DNSSEC-signed TLSA records at {name} and the chain it serves matches {matched}. Senders that do DANE (Postfix, Exim, several large providers) authenticate this host with DANE; senders without DANE still rely on MTA-STS, which must hold as well.", "Nothing to do. Before the next key or certificate change, publish the new key's TLSA record next to the current one (see the TLSA rollover runbook).", "RFC 7672 §3.1, §2.2; RFC 8461 §2"),
    Spec("dane.mismatch", _E, "DANE: no TLSA record matches the MX host's certificate", "{host} publishes signed TLSA records at {name} ({records}), but the chain it serves matches none of them ({reason}). Senders that do DANE refuse to deliver to {host} now, whatever the MTA-STS mode: an MTA-STS pass never overrides a DANE failure. The usual cause is a certificate renewed with a new key while the TLSA record still names the old one.", "Publish the record for the key served now next to the old one: {name}. IN TLSA {expected}, wait two TTLs, then remove the stale record(s). Or put the old key back on the server.", "RFC 7672 §3.1, §2.2; RFC 7671 §8; RFC 8461 §2"),
    Spec("dane.no-tls", _E, "DANE: TLSA published but the MX host offers no working TLS", "{host} publishes signed TLSA records at {name}, which promise STARTTLS, but the probe could not complete TLS ({reason}). DANE senders never fall back to plain text: they defer mail to this host.", "Make STARTTLS work on {host} for every client, or remove the TLSA records at {name} first.", "RFC 7672 §2.2, §9.2"),
    Spec("dane.unusable", _W, "DANE: every TLSA record of the MX host is unusable", "{host} publishes signed TLSA records at {name}, but none is usable for SMTP ({reason}). DANE senders still insist on TLS to this host but authenticate nothing, so the records add risk without protection.", "Replace them with a DANE-EE record for the served key: {name}. IN TLSA {expected}", "RFC 7672 §2.2, §3.1.3; RFC 6698 §4.1"),
    Spec("dane.record.unusable", _W, "DANE: some TLSA records of the MX host are unusable", "{name} holds records that senders skip as unusable ({records}); the other records are judged without them. A record with a digest of the wrong length for its matching type is the usual cause: a typo or a truncated paste.", "Correct or remove them: for the served key, {name}. IN TLSA {expected}", "RFC 6698 §2.1; RFC 7671 §5.1; RFC 7672 §3.1.3"),
    Spec("dane.pkix-usage", _W, "DANE: PKIX-TA(0) or PKIX-EE(1) TLSA records for SMTP", "{name} holds records with usage 0 or 1 ({records}). RFC 7672 says not to publish them for SMTP: senders treat them as unusable.", "Use DANE-EE (3 1 1) or DANE-TA (2 0 1) instead: {name}. IN TLSA {expected}", "RFC 7672 §3.1.3"),
    Spec("dane.insecure", _W, "DANE: TLSA records in an unsigned zone are ignored", "{name} has TLSA records ({records}), but the answer is not DNSSEC-signed ({reason}). Senders ignore unsigned TLSA records, so {host} gets no DANE protection.", "Sign the zone of {host} with DNSSEC and publish its DS at the parent, or remove the TLSA records.", "RFC 7672 §2.2; RFC 6698 §4.1"),
    Spec("dane.bogus", _E, "DANE: the TLSA lookup fails DNSSEC validation (bogus)", "The DNSSEC validation of {name} failed ({reason}). Validating senders count {host} as unreachable: they do not connect at all, not even in plain text, and defer the mail.", "Re-sign the zone (check the signer runs, RRSIG dates, the DS at the parent matching a published DNSKEY), then check again.", "RFC 7672 §2.1.2; RFC 4035 §5"),
    Spec("dane.address.insecure", _W, "DANE: TLSA is signed but the MX host's addresses are not", "{name} holds DNSSEC-signed TLSA records, but the address records (A/AAAA) of {host} are not signed ({reason}). A DANE sender looks TLSA up only for a host whose addresses it validated, so it skips these records and {host} gets no DANE protection.", "Sign the zone holding the A and AAAA records of {host} (and publish its DS at the parent), or name an MX host whose addresses are in a signed zone.", "RFC 7672 §2.2.1, §2.2.2"),
    Spec("dane.lookup-failed", _E, "DANE: the TLSA lookup of the MX host fails", "The TLSA lookup of {name} did not complete ({reason}). Senders that do DANE treat a failed TLSA lookup in a signed zone as 'host unreachable' and defer mail to {host}.", "Make the authoritative servers of {host} answer TLSA queries (NOERROR with an empty answer or NXDOMAIN when there are none), also over TCP.", "RFC 7672 §2.1.2, §2.2.2"),
    Spec("dane.mx.bogus", _E, "DANE: the MX lookup fails DNSSEC validation (bogus)", "The DNSSEC validation of the MX records of {domain} failed ({reason}). Validating senders cannot learn where to deliver and defer all mail to {domain}.", "Re-sign the zone of {domain} (signatures, DNSKEY, DS at the parent), then check again.", "RFC 7672 §2.1.2; RFC 4035 §5"),
    Spec("dane.mx.insecure", _W, "DANE: TLSA is signed but the MX records are not", "The MX hosts of {domain} publish signed TLSA records, but the MX RRset of {domain} is not DNSSEC-signed ({reason}). Senders can then authenticate the MX hosts only by their own names, and a forged MX answer bypasses DANE for {domain}.", "Sign the zone of {domain} with DNSSEC and publish its DS at the parent.", "RFC 7672 §2.2.1, §3.2.2"),
    Spec("dane.partial", _W, "DANE on some MX hosts but not others", "{with_dane} publish(es) signed TLSA records, {without} do(es) not. Senders apply DANE host by host, and MX preference comes before security, so the hosts without DANE are the domain's weak point.", "Publish TLSA records for {without} too, or knowingly accept the gap.", "RFC 7672 §2.2.1"),
    Spec("dane.rollover.single", _W, "DANE: a single DANE-EE record, no rollover safety", "{name} holds one record, {records}, which pins exactly the key served now. The next key change (a certificate renewed with a new key) breaks delivery from every DANE sender until the TLSA record is updated and old answers leave caches.", "Publish the next key's digest next to the current one before it is used ({name}. IN TLSA 3 1 1 <next key>), or add a 2 1 1 record for the issuing CA.", "RFC 7671 §8.1; RFC 7672 §4"),
    Spec("dane.stale-record", _I, "DANE: a TLSA record matches no certificate served now", "{name} holds {records}, which match(es) nothing {host} serves; another record matches. That is normal during a rollover (the next key published in advance, or the old one not yet removed); it should not linger.", "If it names an old key, remove it once the new key has been served for two TTLs; if it names the next key, keep it.", "RFC 7671 §8, §8.4"),
    Spec("dane.cert.expiring", _W, "DANE: the MX certificate expires while TLSA pins its key", "The certificate of {host} expires in {days} day(s) ({not_after}) and the TLSA records pin its key ({records}). The renewal must keep the key, or publish the new key's record first, or DANE senders refuse mail after the switch.", "Renew with the same key (certbot --reuse-key), or publish {name}. IN TLSA 3 1 1 <new key digest> at least two TTLs before installing the new certificate.", "RFC 7671 §8.1; RFC 7672 §4"),
    Spec("dane.sts-disagree", _W, "DANE passes but MTA-STS fails on the same MX host", "{host} passes DANE but its certificate fails the checks MTA-STS senders make ({reason}). Senders without DANE refuse it under enforce: DANE does not excuse an MTA-STS failure.", "Serve a certificate from a public CA that names {host}, and keep its key in TLSA (DANE-EE 3 1 1 pins the key, not the certificate).", "RFC 8461 §2, §4.2; RFC 7672 §3.1.1"),
    Spec("rollout.gate.dane", _E, "An MX host fails DANE", "A DANE sender refuses an MX host whose signed TLSA records match nothing it serves, or whose DNSSEC is bogus, whatever the MTA-STS mode; enforce would add MTA-STS on top of mail already refused.", "Fix the TLSA records (or DNSSEC) of the failing MX hosts first; see the TLSA rollover runbook.", "RFC 8461 §2; RFC 7672 §2.1.2, §3.1"),
    # --- the check itself ---
    Spec("check.deadline", _W, "The check ran out of time for this domain", "The check of {domain} ran out of its time budget, so some probes did not finish and their findings are missing; slow DNS or hosts that accept connections but never answer are the usual causes.", "Check again with a longer deadline, and look at the hosts that timed out.", "RFC 8461 §3.3"),
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


def finding(code: str, detail: str, fix: str, subject: str = "") -> Finding:
    """A finding of catalogue ``code`` with a detail and fix written by the caller, not filled
    from the templates (``generate`` and the rollout explain with their own figures)."""
    spec = CATALOGUE[code]
    return Finding(code, spec.severity, spec.title, detail, fix, spec.rfc, subject)


def finding_to_json(f: Finding) -> dict[str, str]:
    """The one JSON shape of a finding (check, rollout and generate documents, the API)."""
    return {
        "code": f.code,
        "severity": f.severity.label,
        "title": f.title,
        "detail": f.detail,
        "fix": f.fix,
        "rfc": f.rfc,
        "subject": f.subject,
    }


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
        "domain being checked. The severity shown is the default. Failures found by the",
        "STARTTLS probe of an MX host (`mx.*`) and `sts.mx.not-covered` take theirs from the",
        "mode senders apply: error under `enforce`, warning under `testing`, info with",
        "`mode: none` or no usable policy. A host that cannot be reached at all is at least a",
        "warning, and an expiring certificate is always a warning.",
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
