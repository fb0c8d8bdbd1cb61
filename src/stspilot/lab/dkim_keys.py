"""The lab's DKIM key: signs sample report mail for real, and the TXT records that publish it.

One RSA key signs for every lab reporter domain (``sample_reports.REPORTER_DOMAINS``) under
one selector; ``records`` gives the ``<selector>._domainkey.<domain>`` TXT records for the lab
DNS server (``Lab(..., records=...)`` or ``DnsData``), so ``ingest --verify-dkim`` can check
lab mail offline. Test keys only: never publish them anywhere else.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from stspilot.lab.dns_server import DnsData, DnsFault, DnsServer, Record

__all__ = ["KeyServer", "LabDkimKey", "make_dkim_key"]

# 1024 bits is dkimpy's minimum (RFC 8301 §3.2 asks verifiers to accept 1024 to 4096): the
# lab signs tens of thousands of mails with dkimpy's own RSA, where 2048 costs 5x as much.
DEFAULT_BITS = 1024


@dataclass(frozen=True, slots=True)
class LabDkimKey:
    """A signing key and where its public half lives in the lab's DNS."""

    selector: str
    private_pem: bytes  # PKCS#1 PEM, as dkimpy signs with
    public_b64: str  # SubjectPublicKeyInfo DER in base64: the p= tag (RFC 6376 §3.6.1)

    def record_value(self, *, service: str | None = None) -> str:
        """The TXT text ``v=DKIM1; k=rsa; p=...`` (``service``: an ``s=`` tag, e.g. tlsrpt)."""
        tags = ["v=DKIM1", "k=rsa"] + ([f"s={service}"] if service else [])
        return "; ".join([*tags, f"p={self.public_b64}"])

    def name(self, domain: str) -> str:
        return f"{self.selector}._domainkey.{domain.rstrip('.').lower()}"

    def records(self, domains: Iterable[str], *, service: str | None = None) -> list[Record]:
        """The key's TXT records for ``domains``, split into 255-byte character-strings."""
        text = self.record_value(service=service)
        chunks = [text[i : i + 255] for i in range(0, len(text), 255)]
        value = " ".join(f'"{c}"' for c in chunks)  # base64 and tags: nothing to escape
        return [Record(self.name(d), "TXT", value) for d in domains]


def make_dkim_key(selector: str = "lab", *, bits: int = DEFAULT_BITS) -> LabDkimKey:
    """A fresh RSA key (``bits``) for ``selector``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return LabDkimKey(selector, private_pem, base64.b64encode(public_der).decode("ascii"))


class KeyServer:
    """A lab DNS server for key records in a thread of its own, for code that verifies
    synchronously (bulk ingest, benchmarks): ``with KeyServer(key.records(domains)) as dns:``
    then ``dns.nameserver`` ("127.0.0.1:PORT") and ``dns.queries`` (questions answered or
    not). ``faults`` by name, e.g. ``DnsFault.TIMEOUT`` to never answer."""

    def __init__(
        self,
        records: Iterable[Record],
        *,
        host: str = "127.0.0.1",
        faults: dict[str, DnsFault] | None = None,
    ) -> None:
        self.server = DnsServer(DnsData(records, faults), host=host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def nameserver(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    @property
    def queries(self) -> int:
        return self.server.queries

    def __enter__(self) -> KeyServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
