"""The SMTP receiver: an aiosmtpd server that is itself the ``rua=mailto:`` target (RFC 8460 §5.3).

A session, as a sending MTA sees it (recipient rules and size from ``ReceiverConfig``)::

    S: 220 rpt.example.com stspilot
    C: EHLO mail.sender.example
    S: 250-SIZE 10485760            <- the cap is announced (RFC 1870); bigger mail gets 552
    S: 250 ...
    C: MAIL FROM:<noreply-smtp-tls-reporting@sender.example>
    C: RCPT TO:<someone@elsewhere.example>
    S: 550 5.1.1 recipient not accepted here
    C: RCPT TO:<tlsrpt@example.com>
    S: 250 OK
    C: DATA ... .
    S: 250 2.0.0 stored: 1 new, 0 duplicate      <- only after the store committed
       (or 451 4.3.0 when the store failed: the sender keeps the mail and retries)

With a verifier (``dkim.DkimVerifier``: ``stspilot receive`` has one unless --no-verify-dkim)
each mail's DKIM signatures are checked before the commit, outside the writer's lock; the
verdict is stored on the report's envelope and a failure is a deviation, never a refusal.

A mail that is not a report (or is damaged) is quarantined with its raw bytes and still gets
250: it is safely stored and will not get better by being sent again, whereas a 5xx would make
the sender bounce it to a robot address and lose it. It shows up in the quarantine instead.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stspilot.errors import ConfigError
from stspilot.ingest.pipeline import (
    IngestStore,
    MailVerifier,
    RawOutcome,
    commit_prepared,
    prepare_unit,
)
from stspilot.sts.names import domain_name, fold_name
from stspilot.tlsrpt.schema import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

# RFC 8460 §5.2 names 10 MB as a commonly seen receiver limit; real reports are a few KiB.
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """Who may receive mail here, how big it may be, and optional STARTTLS."""

    addresses: frozenset[str] = frozenset()  # exact recipients, lower-case
    domains: frozenset[str] = frozenset()  # any local part at these domains, lower-case
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    hostname: str | None = None  # the name in the banner and EHLO reply
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_starttls: bool = False
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not self.addresses and not self.domains:
            raise ConfigError("the SMTP receiver needs at least one recipient address or domain")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("STARTTLS needs both a certificate and a key file")
        if self.require_starttls and self.tls_cert is None:
            raise ConfigError("require_starttls needs a certificate and a key file")
        object.__setattr__(self, "addresses", frozenset(a.lower() for a in self.addresses))
        object.__setattr__(self, "domains", frozenset(domain_name(d) for d in self.domains))

    def accepts(self, address: str) -> bool:
        """Is ``address`` one of ours? Exact addresses, or any local part at our domains."""
        address = address.strip().strip("<>").lower()
        if address in self.addresses:
            return True
        local, at, domain = address.rpartition("@")
        return bool(at and local) and fold_name(domain) in self.domains

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the STARTTLS certificate or key: {exc}") from exc
        return context


class ReportHandler:
    """aiosmtpd handler: filter recipients, then commit the message before answering DATA."""

    def __init__(
        self,
        store: IngestStore,
        config: ReceiverConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        dkim: MailVerifier | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._dkim = dkim
        # One writer at a time: SQLite takes one anyway, and it keeps commits in arrival order.
        self._write_lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if not self._config.accepts(address):
            return f"550 5.1.1 <{address}>: recipient not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):  # only when decode_data=True, which we never set
            raw = raw.encode("utf-8", "surrogateescape")
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        origin = f"smtp:{peer} from=<{envelope.mail_from or ''}>"
        try:
            outcome = await asyncio.to_thread(self._ingest, bytes(raw), origin)
        except Exception:  # store down, disk full, a bug: the sender keeps the mail and retries
            log.exception("SMTP intake could not commit a message from %s", origin)
            return "451 4.3.0 temporary failure storing the report, try again later"
        return _reply(outcome)

    def _ingest(self, raw: bytes, origin: str) -> RawOutcome:
        # Parsing and DKIM (DNS) first, in parallel with other sessions; then one commit.
        unit = prepare_unit(
            raw,
            origin=origin,
            received_at=self._clock(),
            limits=self._config.limits,
            dkim=self._dkim,
        )
        with self._write_lock:
            return commit_prepared(self._store, [unit])[0]


def _reply(outcome: RawOutcome) -> str:
    if outcome.quarantined and not (outcome.new or outcome.duplicate):
        return f"250 2.0.0 not a usable report, kept in quarantine ({outcome.code})"
    text = f"250 2.0.0 stored: {outcome.new} new, {outcome.duplicate} duplicate"
    if outcome.quarantined:
        text += f", part quarantined ({outcome.code})"
    return text


async def start_receiver(
    store: IngestStore,
    config: ReceiverConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 2525,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    dkim: MailVerifier | None = None,
) -> asyncio.Server:
    """Listen on ``host:port`` (0 picks a free port) in the running loop; close it to stop.
    ``dkim``: verify each mail's signatures with it (``dkim.DkimVerifier``)."""
    from aiosmtpd.smtp import SMTP

    handler = ReportHandler(store, config, clock=clock, dkim=dkim)
    tls_context = config.tls_context()
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=config.max_message_bytes,
            hostname=config.hostname,
            ident="stspilot",
            tls_context=tls_context,
            require_starttls=config.require_starttls,
            loop=loop,
        )

    try:
        return await loop.create_server(factory, host=host, port=port)
    except OSError as exc:
        raise ConfigError(f"cannot listen for SMTP on {host}:{port}: {exc}") from exc
