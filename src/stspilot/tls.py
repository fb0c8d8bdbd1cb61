"""TLS for the probes: client contexts, reading the peer certificate, naming what went wrong.

Shared by ``fetch`` (HTTPS, RFC 8461 §3.3) and ``smtp`` (STARTTLS, RFC 8461 §4.2): both validate
with the system trust store plus an optional extra CA, send SNI (RFC 8461 §7.1), match names on
SAN dNSName only, and fill ``CertInfo`` even when validation failed.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from stspilot.facts import CertInfo, TlsFailure, TlsResult

# OpenSSL X509_V_ERR_* codes that name a cause (see openssl/x509_vfy.h).
_VERIFY_CODES = {
    9: TlsFailure.NOT_YET_VALID,  # CERT_NOT_YET_VALID
    10: TlsFailure.EXPIRED,  # CERT_HAS_EXPIRED
    18: TlsFailure.SELF_SIGNED,  # DEPTH_ZERO_SELF_SIGNED_CERT
    62: TlsFailure.HOST_MISMATCH,  # HOSTNAME_MISMATCH
}


class TlsContexts:
    """The validating context and a non-validating one used only to read a rejected certificate.

    One of each per process, shared by every connection (building the validating one loads
    the system trust store: ~30 ms). Built on first use, so ``stspilot check`` sends its first
    DNS question before paying for it; ``warm`` builds both while answers are on their way.
    """

    __slots__ = ("_unverified", "_verified", "ca_file")

    def __init__(self, ca_file: Path | str | None = None) -> None:
        self.ca_file = ca_file
        self._verified: ssl.SSLContext | None = None
        self._unverified: ssl.SSLContext | None = None

    @classmethod
    def create(cls, ca_file: Path | str | None = None) -> TlsContexts:
        return cls(ca_file)

    @property
    def verified(self) -> ssl.SSLContext:
        if self._verified is None:
            verified = ssl.create_default_context()
            if self.ca_file:
                verified.load_verify_locations(cafile=str(self.ca_file))
            # RFC 8461 §3.3, §4.2 (RFC 6125): DNS-ID only, never the subject CN.
            verified.hostname_checks_common_name = False
            self._verified = verified
        return self._verified

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


def cert_info(der: bytes) -> CertInfo | None:
    """The leaf certificate's names and dates; None when it cannot be parsed."""
    # Imported here: only refused certificates need it, and it costs start-up time.
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
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
    )


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


def _cert_from_dict(cert: dict[str, object]) -> CertInfo:
    """The verified peer's certificate as the ssl module already parsed it (cheap: no DER)."""
    subject, issuer = _dn(cert.get("subject", ())), _dn(cert.get("issuer", ()))
    san = cert.get("subjectAltName", ())
    return CertInfo(
        subject=subject,
        issuer=issuer,
        dns_names=tuple(value for kind, value in san if kind == "DNS"),  # type: ignore[attr-defined]
        not_before=dt.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(str(cert["notBefore"])), dt.UTC
        ),
        not_after=dt.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(str(cert["notAfter"])), dt.UTC
        ),
        self_signed=subject == issuer,
    )


def peer_cert(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> CertInfo | None:
    if ssl_object is None:
        return None
    parsed = ssl_object.getpeercert()  # filled only when the certificate was validated
    if parsed and "notAfter" in parsed:
        return _cert_from_dict(parsed)  # type: ignore[arg-type]
    der = ssl_object.getpeercert(binary_form=True)
    return cert_info(der) if der else None


def success(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsResult:
    """The result of a handshake that validated."""
    if ssl_object is None:
        return TlsResult(ok=True)
    cipher = ssl_object.cipher()
    return TlsResult(
        ok=True,
        version=ssl_object.version() or "",
        cipher=cipher[0] if cipher else "",
        cert=peer_cert(ssl_object),
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


def failure(error: BaseException, cert: CertInfo | None) -> TlsResult:
    """Name why a handshake failed, refined with the certificate read without validation."""
    ssl_error = find_ssl_error(error) or error
    if isinstance(ssl_error, ssl.SSLCertVerificationError):
        kind = _VERIFY_CODES.get(ssl_error.verify_code, TlsFailure.UNTRUSTED)
        detail = ssl_error.verify_message or str(ssl_error)
        if kind is TlsFailure.UNTRUSTED and cert is not None and cert.self_signed:
            kind = TlsFailure.SELF_SIGNED
    else:
        kind = TlsFailure.HANDSHAKE
        detail = getattr(ssl_error, "reason", None) or str(ssl_error) or type(error).__name__
    return TlsResult(ok=False, failure=kind, detail=str(detail), cert=cert)
