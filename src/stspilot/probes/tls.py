"""TLS for the probes: client contexts, reading the peer certificate, naming what went wrong.

Shared by ``fetch`` (HTTPS, RFC 8461 §3.3) and ``smtp`` (STARTTLS, RFC 8461 §4.2): both validate
with the system trust store plus an optional extra CA, send SNI (RFC 8461 §7.1), match names on
SAN dNSName only, and fill ``CertInfo`` even when validation failed.

A rejected certificate is read by a second handshake without validation, which also reads the
chain the server sent: a server that sends its leaf without the intermediate that issued it
(``cert.pem`` instead of ``fullchain.pem``) fails at every sender, because MTAs do not fetch
missing intermediates the way browsers do, and is named ``CHAIN_INCOMPLETE``, not "untrusted".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from stspilot.errors import ConfigError
from stspilot.facts import CertInfo, TlsFailure, TlsResult

if TYPE_CHECKING:
    from cryptography import x509

# OpenSSL X509_V_ERR_* codes that name a cause (see openssl/x509_vfy.h).
_VERIFY_CODES = {
    9: TlsFailure.NOT_YET_VALID,  # CERT_NOT_YET_VALID
    10: TlsFailure.EXPIRED,  # CERT_HAS_EXPIRED
    18: TlsFailure.SELF_SIGNED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    62: TlsFailure.HOST_MISMATCH,  # HOSTNAME_MISMATCH
}
# The verifier found no certificate for an issuer: either the server left out an intermediate
# or the CA is unknown; the chain the server sent tells which.
_ISSUER_NOT_FOUND = frozenset(
    {
        2,  # UNABLE_TO_GET_ISSUER_CERT
        20,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        21,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    }
)


CERT_CACHE_LIMIT = 256  # decoded certificates kept (a few KiB each with their DER: ~1 MiB)


class TlsContexts:
    """The validating context and a non-validating one used only to read a rejected certificate.

    One of each per process, shared by every connection (building the validating one loads
    the system trust store: ~30 ms). Built on first use, so ``stspilot check`` sends its first
    DNS question before paying for it; ``warm`` builds both while answers are on their way.
    The validating one is built under a lock: ``warm`` runs in a thread beside the event
    loop, and a probe that needed the context before ``warm`` finished built the trust store
    a second time (seen as ~250 M stray instructions in ``bench/dane_instructions.py``).
    """

    __slots__ = ("_build", "_certs", "_unverified", "_verified", "ca_file")

    def __init__(self, ca_file: Path | str | None = None) -> None:
        self.ca_file = ca_file
        self._verified: ssl.SSLContext | None = None
        self._unverified: ssl.SSLContext | None = None
        self._certs: dict[bytes, CertInfo] = {}
        self._build = threading.Lock()

    @classmethod
    def create(cls, ca_file: Path | str | None = None) -> TlsContexts:
        """The contexts for a run; raises ``ConfigError`` at once when ``ca_file`` is not a
        readable PEM file of certificates (it failed every fetch and probe of every domain,
        as if DNS had failed). Loading it alone costs little; the system store waits."""
        if ca_file:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(ca_file))
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                why = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
                raise ConfigError(
                    f"CA file {ca_file} is not a readable PEM file of certificates ({why})"
                ) from None
        return cls(ca_file)

    @property
    def verified(self) -> ssl.SSLContext:
        verified = self._verified
        if verified is None:
            with self._build:
                verified = self._verified
                if verified is None:
                    verified = ssl.create_default_context()
                    if self.ca_file:
                        verified.load_verify_locations(cafile=str(self.ca_file))
                    # RFC 8461 §3.3, §4.2 (RFC 6125): DNS-ID only, never the subject CN.
                    verified.hostname_checks_common_name = False
                    self._verified = verified
        return verified

    @property
    def unverified(self) -> ssl.SSLContext:
        if self._unverified is None:
            unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            unverified.check_hostname = False
            unverified.verify_mode = ssl.CERT_NONE
            self._unverified = unverified
        return self._unverified

    def warm(self) -> None:
        """Build both contexts now (a bad ``ca_file`` raises here, not mid-check)."""
        self.verified  # noqa: B018
        self.unverified  # noqa: B018

    def verified_cert(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> CertInfo | None:
        """``peer_cert``, decoded once per certificate while these contexts live: hosts that
        share a certificate (a provider's policy hosts, one certificate naming many) are read
        from the first. Its DER (``getpeercert(True)``: OpenSSL keeps the encoding) is the
        key; ``getpeercert()`` builds a dict of every name and field, ~0.1 ms for a
        certificate of 100 names (docs/check.md)."""
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return peer_cert(ssl_object)
        info = self._certs.get(der)
        if info is None:
            info = peer_cert(ssl_object)
            if info is not None:
                if len(self._certs) >= CERT_CACHE_LIMIT:
                    self._certs.clear()
                self._certs[der] = info
        return info


def _load(der: bytes) -> x509.Certificate | None:
    # Imported here: only refused certificates need it, and it costs start-up time.
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _info(cert: x509.Certificate) -> CertInfo:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        names = tuple(san.value.get_values_for_type(x509.DNSName))  # type: ignore[attr-defined]
    except (x509.ExtensionNotFound, ValueError):
        names = ()
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        dns_names=names,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=cert.issuer == cert.subject,
        ca_issuers=_ca_issuers(cert),
    )


def _ca_issuers(cert: x509.Certificate) -> tuple[str, ...]:
    """The leaf's AIA caIssuers URIs (RFC 5280 §4.2.2.1)."""
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

    try:
        aia = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    except (x509.ExtensionNotFound, ValueError):
        return ()
    return tuple(
        str(d.access_location.value)
        for d in aia.value  # type: ignore[attr-defined]
        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    )


def cert_info(der: bytes) -> CertInfo | None:
    """The leaf certificate's names and dates; None when it cannot be parsed."""
    cert = _load(der)
    return None if cert is None else _info(cert)


def chain_info(chain: Sequence[bytes]) -> CertInfo | None:
    """The leaf (first) of the DER certificates a server sent, and whether its issuer was sent.

    Matched by name, as a verifier builds a path: intermediates that do not include the
    leaf's issuer (a stale or wrong one) link it to nothing either.
    """
    leaf = _load(chain[0]) if chain else None
    if leaf is None:
        return None
    sent = (_load(der) for der in chain[1:])
    issuer_sent = any(cert is not None and cert.subject == leaf.issuer for cert in sent)
    return replace(_info(leaf), chain_length=len(chain), issuer_sent=issuer_sent)


def sent_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[bytes, ...]:
    """The certificates the peer sent, leaf first, as DER; () when this Python cannot say.

    Public only from Python 3.13 (``get_unverified_chain``); the private ``_sslobj`` has had
    it since 3.10, returning ``_ssl.Certificate`` objects. Read defensively: a missing or
    changed private API means "unknown", never an error.
    """
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    der_encoding = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", None)
    if getter is None:
        return ()
    try:
        items = getter() or ()
        return tuple(
            item if isinstance(item, bytes) else bytes(item.public_bytes(der_encoding))
            for item in items
        )
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        return ()


def unverified_cert(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> CertInfo | None:
    """The certificate of a handshake made without validation, with the chain it came in."""
    if ssl_object is None:
        return None
    info = chain_info(sent_chain(ssl_object))
    if info is not None:
        return info
    der = ssl_object.getpeercert(binary_form=True)
    return cert_info(der) if der else None


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "domainComponent": "DC",
}


def _dn(rdns: object) -> str:
    parts = [
        f"{_SHORT.get(key, key)}={value}"
        for rdn in reversed(rdns)  # type: ignore[call-overload]
        for key, value in rdn
    ]
    return ",".join(parts)


_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def _cert_time(text: str) -> dt.datetime:
    """``notBefore``/``notAfter`` as ``getpeercert`` writes them (``May  9 00:00:00 2027 GMT``),
    read as ``ssl.cert_time_to_seconds`` reads them; its ``time.strptime`` cost ~50 µs a date,
    two a handshake. Anything unusual (a leap second) goes to ``ssl.cert_time_to_seconds``."""
    parts = text.split()
    if len(parts) == 5 and parts[4] == "GMT" and parts[0] in _MONTHS:
        clock = parts[2].split(":")
        digits = [parts[3], parts[1], *clock]
        if len(clock) == 3 and all(d.isascii() and d.isdigit() for d in digits):
            year, day, hour, minute, second = map(int, digits)
            with contextlib.suppress(ValueError):
                month = _MONTHS[parts[0]]
                return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(text), dt.UTC)


def _cert_from_dict(cert: dict[str, object]) -> CertInfo:
    """The verified peer's certificate as the ssl module already parsed it (cheap: no DER)."""
    subject, issuer = _dn(cert.get("subject", ())), _dn(cert.get("issuer", ()))
    san = cert.get("subjectAltName", ())
    return CertInfo(
        subject=subject,
        issuer=issuer,
        dns_names=tuple([value for kind, value in san if kind == "DNS"]),  # type: ignore[attr-defined]
        not_before=_cert_time(str(cert["notBefore"])),
        not_after=_cert_time(str(cert["notAfter"])),
        self_signed=subject == issuer,
        ca_issuers=tuple(str(u) for u in cert.get("caIssuers", ())),  # type: ignore[attr-defined]
    )


def peer_cert(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, parsed: object = None
) -> CertInfo | None:
    """The validated peer's certificate; ``parsed``: what asyncio's transport already read
    (``get_extra_info("peercert")``), so the certificate is not decoded twice (~0.1 ms)."""
    if ssl_object is None:
        return None
    if not isinstance(parsed, dict):
        parsed = ssl_object.getpeercert()  # filled only when the certificate was validated
    if parsed and "notAfter" in parsed:
        return _cert_from_dict(parsed)  # type: ignore[arg-type]
    der = ssl_object.getpeercert(binary_form=True)
    return cert_info(der) if der else None


def success(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
    peercert: object = None,
    *,
    tls: TlsContexts | None = None,
) -> TlsResult:
    """The result of a handshake that validated (``peercert``: as for ``peer_cert``; ``tls``:
    the contexts that made it, to read a certificate they have met already from them)."""
    if ssl_object is None:
        return TlsResult(ok=True)
    cipher = ssl_object.cipher()
    cert = tls.verified_cert(ssl_object) if tls is not None else peer_cert(ssl_object, peercert)
    return TlsResult(
        ok=True,
        version=ssl_object.version() or "",
        cipher=cipher[0] if cipher else "",
        cert=cert,
    )


def find_ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind a wrapped exception (httpx wraps httpcore wraps ssl)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def classify(verify_code: int, cert: CertInfo | None) -> TlsFailure:
    """Name a rejected certificate from the verifier's code and the certificate read unverified.

    "Unable to get the issuer" is a missing intermediate when the leaf is not self-signed, the
    server did not send the certificate of its issuer, and the leaf says where that issuer is
    published (AIA caIssuers, as every public CA's leaf does); otherwise an unknown (or
    private) CA, whose leaf alone would be wrongly told to "send the intermediate".
    """
    kind = _VERIFY_CODES.get(verify_code, TlsFailure.UNTRUSTED)
    if kind is not TlsFailure.UNTRUSTED or cert is None:
        return kind
    if cert.self_signed:
        return TlsFailure.SELF_SIGNED
    if verify_code in _ISSUER_NOT_FOUND and cert.issuer_sent is False and cert.ca_issuers:
        return TlsFailure.CHAIN_INCOMPLETE
    return kind


def failure(error: BaseException, cert: CertInfo | None) -> TlsResult:
    """Name why a handshake failed, refined with the certificate read without validation."""
    ssl_error = find_ssl_error(error) or error
    if isinstance(ssl_error, ssl.SSLCertVerificationError):
        code = ssl_error.verify_code
        kind = classify(code, cert)
        detail = ssl_error.verify_message or str(ssl_error)
    else:
        code = 0
        kind = TlsFailure.HANDSHAKE
        detail = getattr(ssl_error, "reason", None) or str(ssl_error) or type(error).__name__
    return TlsResult(ok=False, failure=kind, detail=str(detail), verify_code=code, cert=cert)


def refine(result: TlsResult, cert: CertInfo | None) -> TlsResult:
    """A failed result with the certificate a later, non-validating handshake read."""
    if result.verify_code:
        return replace(result, failure=classify(result.verify_code, cert), cert=cert)
    return replace(result, cert=cert)
