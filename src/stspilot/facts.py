"""What the probes saw for one domain: plain values handed from the network layer to ``evaluate``.

Pure data, no I/O. The probes (``resolver``, ``fetch``, ``smtp``) build these; ``evaluate``
turns them into findings. Every failure a sender could meet is a value here, never an
exception, so a broken domain is still a complete ``DomainFacts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class DnsStatus(StrEnum):
    """How a DNS question ended. MTA-STS treats these differently (RFC 8461 §3.1, §5.1)."""

    OK = "ok"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, but has no record of that type
    SERVFAIL = "servfail"  # the resolver could not get an answer (DNSSEC, broken zone, ...)
    TIMEOUT = "timeout"
    ERROR = "error"  # anything else (refused, malformed answer, network error)


@dataclass(frozen=True, slots=True)
class TxtLookup:
    """A TXT question and its answer; ``records`` keeps each record's character-strings apart."""

    name: str
    status: DnsStatus
    records: tuple[tuple[bytes, ...], ...] = ()
    cname_chain: tuple[str, ...] = ()  # names followed, in order, before the TXT answer
    error: str = ""


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    host: str  # lower case, no trailing dot; "" for a null MX (RFC 7505)


@dataclass(frozen=True, slots=True)
class MxLookup:
    name: str
    status: DnsStatus
    hosts: tuple[MxHost, ...] = ()  # sorted by preference, then name
    error: str = ""


@dataclass(frozen=True, slots=True)
class AddressLookup:
    """A and AAAA lookups of one host name, merged."""

    name: str
    status: DnsStatus
    addresses: tuple[str, ...] = ()
    error: str = ""


class TlsFailure(StrEnum):
    """Why a TLS peer was not accepted; maps onto RFC 8460 §4.3 result types."""

    EXPIRED = "expired"  # certificate-expired
    NOT_YET_VALID = "not-yet-valid"  # certificate-not-trusted
    HOST_MISMATCH = "host-mismatch"  # certificate-host-mismatch
    SELF_SIGNED = "self-signed"  # certificate-not-trusted
    UNTRUSTED = "untrusted"  # certificate-not-trusted (unknown or private CA)
    # certificate-not-trusted: the server sends its leaf without the intermediate(s) that
    # link it to a CA (senders do not fetch a missing intermediate, unlike browsers)
    CHAIN_INCOMPLETE = "chain-incomplete"
    HANDSHAKE = "handshake"  # validation-failure (protocol, cipher, alert)


@dataclass(frozen=True, slots=True)
class CertInfo:
    """The peer's leaf certificate, as read even when validation failed."""

    subject: str
    issuer: str
    dns_names: tuple[str, ...]  # subjectAltName dNSName entries
    not_before: datetime  # aware, UTC
    not_after: datetime  # aware, UTC
    self_signed: bool
    chain_length: int = 0  # certificates the server sent, the leaf included; 0: not read
    # Whether the server sent the certificate named by the leaf's issuer; None when the chain
    # it sent could not be read (only the leaf was).
    issuer_sent: bool | None = None
    # Where the leaf's issuer certificate is published (Authority Information Access
    # caIssuers, RFC 5280 §4.2.2.1): public CAs name their intermediate there; a leaf without
    # it, alone, is more likely from an unknown CA than missing its intermediate.
    ca_issuers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TlsResult:
    """One TLS handshake: validated with WebPKI (plus any configured extra CA) and SNI."""

    ok: bool
    failure: TlsFailure | None = None
    detail: str = ""  # the verifier's own words, e.g. "certificate has expired"
    version: str = ""  # "TLSv1.3"
    cipher: str = ""
    cert: CertInfo | None = None
    verify_code: int = 0  # OpenSSL X509_V_ERR_* when the certificate was rejected, else 0


class FetchOutcome(StrEnum):
    OK = "ok"  # 200, text/plain, within size and time
    DNS_FAILURE = "dns-failure"  # mta-sts.<domain> has no address
    CONNECT_FAILED = "connect-failed"
    TLS_FAILED = "tls-failed"
    TIMEOUT = "timeout"
    REDIRECT = "redirect"  # 3xx; never followed (RFC 8461 §3.3)
    HTTP_STATUS = "http-status"  # any status but 200
    TOO_LARGE = "too-large"  # body over the 64 KiB cap
    PROTOCOL_ERROR = "protocol-error"  # not HTTP, broken framing, ...
    BLOCKED = "blocked"  # refused by the private-address guard (service mode)


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """One GET of https://mta-sts.<domain>/.well-known/mta-sts.txt, as a sender makes it."""

    url: str
    outcome: FetchOutcome
    address: AddressLookup | None = None
    status: int | None = None
    content_type: str = ""  # raw header value
    location: str = ""  # Location header of a redirect
    body: bytes | None = None  # present whenever a body was read (also for non-200)
    tls: TlsResult | None = None
    elapsed: float = 0.0  # seconds
    error: str = ""


class SmtpOutcome(StrEnum):
    OK = "ok"  # STARTTLS offered, accepted and the certificate validated
    NO_ADDRESS = "no-address"
    CONNECT_FAILED = "connect-failed"
    BANNER_TIMEOUT = "banner-timeout"  # connected, but no 220 greeting in time
    BANNER_REJECTED = "banner-rejected"  # 554 or other non-220 greeting
    NO_STARTTLS = "no-starttls"  # EHLO does not offer STARTTLS
    STARTTLS_REJECTED = "starttls-rejected"  # STARTTLS offered but answered with an error
    TLS_FAILED = "tls-failed"  # handshake or certificate validation failed (see ``tls``)
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol-error"
    BLOCKED = "blocked"  # refused by the private-address guard (service mode): not probed


@dataclass(frozen=True, slots=True)
class AddressProbe:
    """The STARTTLS probe of one address of an MX host: banner, EHLO, STARTTLS, certificate."""

    ip: str
    outcome: SmtpOutcome
    banner: str = ""  # the greeting's text (also a refusing one, RFC 5321 §3.1)
    ehlo_name: str = ""  # the server's own name from its EHLO answer
    tls: TlsResult | None = None
    elapsed: float = 0.0
    error: str = ""
    # The certificates the server sent on this connection, leaf first, DER; () when not read.
    # DANE (RFC 7672 §3.1.2) matches TLSA records against this chain, not only the leaf.
    chain: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class MxProbe:
    """A STARTTLS probe of one MX host (RFC 8461 §4.2) over every address it has.

    Senders connect to any address of the host, and each connection must validate, so every
    address is probed (``by_address``, in lookup order). The host-level fields are those of the
    worst address (``probes.smtp.worst_address``): one that failed beats one that passed, and
    one that could not be reached counts only when no address could be.
    """

    host: str
    outcome: SmtpOutcome
    address: AddressLookup | None = None
    ip: str = ""  # the address whose result the host-level fields are
    banner: str = ""
    ehlo_name: str = ""  # the server's own name from its EHLO answer
    tls: TlsResult | None = None
    elapsed: float = 0.0
    error: str = ""
    by_address: tuple[AddressProbe, ...] = ()  # empty when no address was probed
    # The certificates the server sent on this connection, leaf first, DER; () when not read.
    # DANE (RFC 7672 §3.1.2) matches TLSA records against this chain, not only the leaf.
    chain: tuple[bytes, ...] = ()

    def at(self, probe: AddressProbe) -> MxProbe:
        """This host as seen at one of its addresses."""
        return MxProbe(
            self.host,
            probe.outcome,
            self.address,
            probe.ip,
            probe.banner,
            probe.ehlo_name,
            probe.tls,
            probe.elapsed,
            probe.error,
            (probe,),
            probe.chain,
        )


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """Everything observed for one policy domain at one moment."""

    domain: str  # A-label, lower case, no trailing dot
    observed_at: datetime  # aware, UTC; "now" for every date comparison in evaluate
    sts_txt: TxtLookup
    tlsrpt_txt: TxtLookup
    mx: MxLookup
    policy: PolicyFetch | None = None  # None only when the check was told not to fetch
    mx_probes: tuple[MxProbe, ...] = ()  # one per MX host, empty when probes are off
    # MX sets of the domains named in the TLS-RPT record's mailto: URIs, other than ``domain``
    rua_mx: tuple[MxLookup, ...] = ()
    deadline_hit: bool = False  # the per-domain deadline cut some probes short
    # TXT at the domain itself, looked up only when _mta-sts or _smtp._tls has no record of
    # its kind: a record published at the apex by mistake is then named (a hint).
    apex_txt: TxtLookup | None = None
    notes: tuple[str, ...] = field(default=())
    # DANE (RFC 7672): the DNSSEC status of the MX RRset, and one TLSA lookup per probed MX
    # host; None / () when DANE checks are off.
    mx_dnssec: DnssecResult | None = None
    tlsa: tuple[TlsaLookup, ...] = ()


# --- DANE for SMTP (RFC 7672, RFC 6698): what the DNSSEC-validating lookups saw ---


class DnssecStatus(StrEnum):
    """RFC 4035 §4.3 / RFC 7672 §2.1.1: the four answers a validating resolver can give."""

    SECURE = "secure"  # a chain of signatures from a trust anchor
    INSECURE = "insecure"  # provably unsigned (no DS at a zone cut), or no anchor covers it
    BOGUS = "bogus"  # should have been signed and is not, or the signatures do not verify
    INDETERMINATE = "indeterminate"  # the lookup failed: no verdict possible


@dataclass(frozen=True, slots=True)
class DnssecResult:
    """The DNSSEC verdict on one RRset (or on the proof that it does not exist)."""

    status: DnssecStatus
    reason: str = ""  # why not secure, e.g. "RRSIG on _25._tcp.mx1.example. expired"
    signer: str = ""  # the zone whose key signed it, when signed
    # the earliest RRSIG expiration of the chain that validated (aware, UTC); monitor input
    expires: datetime | None = None
    # False: the trust anchor itself could not be used (its zone serves no key through this
    # resolver): a fault of the checker's set-up, so no verdict on the domain is drawn
    anchor_ok: bool = True


@dataclass(frozen=True, slots=True)
class TlsaLookup:
    """``_25._tcp.<mx host>`` TLSA (RFC 7672 §2.2.3): records in presentation form."""

    host: str  # the MX host
    name: str  # the query name
    status: DnsStatus
    dnssec: DnssecResult
    records: tuple[str, ...] = ()  # "3 1 1 <hex>", one per record, as served
    error: str = ""
    # the DNSSEC status of the host's A/AAAA RRsets (RFC 7672 §2.2.2: TLSA applies only to a
    # host whose addresses are secure); None when not judged (no secure TLSA records)
    address_dnssec: DnssecResult | None = None
