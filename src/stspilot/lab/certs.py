"""The lab's certificates: a trustme CA, a second untrusted CA, and leaf certificates of each kind.

Like a public CA, each root can issue through an intermediate; a leaf from an intermediate is
served with it (``GOOD_CHAIN``, ``UNTRUSTED``) or, the common real-world mistake, without it
(``CHAIN_INCOMPLETE``: ``cert.pem`` where ``fullchain.pem`` belongs).

Every lab host gets a server ``SSLContext`` per group of names, chosen by SNI, so one address
can serve thousands of names (the benchmark) without issuing a certificate per connection.
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from enum import StrEnum
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Names per certificate when a host serves many names (keeps certificates a few KiB).
NAMES_PER_CERT = 100


class CertKind(StrEnum):
    GOOD = "good"  # issued by the lab root itself
    GOOD_CHAIN = "good-chain"  # issued by a lab intermediate, served with the intermediate
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_NAME = "wrong-name"  # valid, trusted, but for another name
    UNTRUSTED = "untrusted"  # by an intermediate of a CA the client does not know, with chain
    CHAIN_INCOMPLETE = "chain-incomplete"  # by a lab intermediate, served WITHOUT it
    SELF_SIGNED = "self-signed"
    # by a root the client does not know, served alone, with no AIA caIssuers (a private CA)
    UNKNOWN_CA = "unknown-ca"
    EXPIRING = "expiring"  # valid, expires in 5 days


WRONG_NAME = "wrong-name.lab.invalid"


def _self_signed(names: list[str], now: dt.datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


LAB_CA_ISSUERS = "http://ca.lab.invalid/intermediate.der"


def with_ca_issuers(leaf_pem: bytes, issuer: trustme.CA, url: str) -> bytes:
    """The leaf re-signed by ``issuer`` with an AIA caIssuers URI (RFC 5280 §4.2.2.1)."""
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    key = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), password=None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(leaf.serial_number)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    for ext in leaf.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    access = x509.AccessDescription(
        x509.oid.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(url)
    )
    builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    signed = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return signed.public_bytes(serialization.Encoding.PEM)


class LabPki:
    """The lab CA (trusted by clients through ``ca_file``) and the certificates it hands out."""

    def __init__(self, directory: Path, *, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC)
        self.ca = trustme.CA(organization_name="stspilot lab CA")
        self.other_ca = trustme.CA(organization_name="stspilot untrusted CA")
        self._intermediates: dict[str, trustme.CA] = {}  # made on first use
        self.directory = directory
        self.ca_file = directory / "lab-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem.bytes())
        # The chain (DER, leaf first) served for each name: the lab's TLSA records use it.
        self.chains: dict[str, tuple[bytes, ...]] = {}

    def intermediate(self, *, trusted: bool = True) -> trustme.CA:
        """The intermediate CA under the lab root (or under the untrusted root)."""
        key = "trusted" if trusted else "untrusted"
        if key not in self._intermediates:
            parent, name = (
                (self.ca, "stspilot lab intermediate CA")
                if trusted
                else (self.other_ca, "stspilot untrusted intermediate CA")
            )
            self._intermediates[key] = trustme.CA(parent_cert=parent, organization_name=name)
        return self._intermediates[key]

    def _issuer(self, kind: CertKind) -> trustme.CA:
        if kind is CertKind.UNKNOWN_CA:
            return self.other_ca
        if kind is CertKind.UNTRUSTED:
            return self.intermediate(trusted=False)
        if kind in (CertKind.GOOD_CHAIN, CertKind.CHAIN_INCOMPLETE):
            return self.intermediate()
        return self.ca

    def _pem(self, kind: CertKind, names: list[str]) -> tuple[bytes, bytes]:
        """(key PEM, certificate chain PEM) of the given kind for ``names``."""
        if kind is CertKind.SELF_SIGNED:
            return _self_signed(names, self.now)
        ca = self._issuer(kind)
        day = dt.timedelta(days=1)
        not_before, not_after = self.now - day, self.now + 90 * day
        if kind is CertKind.EXPIRED:
            not_before, not_after = self.now - 100 * day, self.now - 10 * day
        elif kind is CertKind.NOT_YET_VALID:
            not_before, not_after = self.now + 10 * day, self.now + 100 * day
        elif kind is CertKind.EXPIRING:
            not_after = self.now + 5 * day
        if kind is CertKind.WRONG_NAME:
            names = [WRONG_NAME]
        leaf = ca.issue_cert(*names, not_before=not_before, not_after=not_after)
        # cert_chain_pems: the leaf, then its intermediates (never the root).
        pems = [blob.bytes() for blob in leaf.cert_chain_pems]
        if ca is not self.ca and kind is not CertKind.UNKNOWN_CA:
            # As a public CA's leaf does: say where the intermediate is published.
            pems[0] = with_ca_issuers(pems[0], ca, LAB_CA_ISSUERS)
        sent = pems[:1] if kind in (CertKind.CHAIN_INCOMPLETE, CertKind.UNKNOWN_CA) else pems
        return leaf.private_key_pem.bytes(), b"".join(sent)

    def server_context(self, kind: CertKind, names: list[str]) -> ssl.SSLContext:
        key, chain = self._pem(kind, names or ["lab.invalid"])
        served = tuple(
            cert.public_bytes(serialization.Encoding.DER)
            for cert in x509.load_pem_x509_certificates(chain)
        )
        self.chains.update(dict.fromkeys(names, served))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile(dir=self.directory, suffix=".pem") as handle:
            handle.write(key + chain)
            handle.flush()
            ctx.load_cert_chain(handle.name)
        return ctx

    def sni_context(self, kind: CertKind, names: list[str]) -> ssl.SSLContext:
        """One server context for ``names``, switching certificates by SNI in groups."""
        ordered = sorted(set(names)) or ["lab.invalid"]
        groups = [ordered[i : i + NAMES_PER_CERT] for i in range(0, len(ordered), NAMES_PER_CERT)]
        contexts = [self.server_context(kind, group) for group in groups]
        default = contexts[0]
        if len(contexts) == 1:
            return default
        by_name = {name: ctx for group, ctx in zip(groups, contexts, strict=True) for name in group}

        def pick(sslobj: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            chosen = by_name.get((server_name or "").lower())
            if chosen is not None:
                sslobj.context = chosen

        default.sni_callback = pick
        return default
