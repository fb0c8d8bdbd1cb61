"""IMAP intake: poll a folder, commit its reports, and only then move (or flag) the messages.

One poll, as the server sees it (``stspilot ingest imap`` runs this once, ``--watch`` in a loop)::

    C: a1 LOGIN tlsrpt ********
    C: a2 SELECT INBOX
    C: a3 UID SEARCH UNKEYWORD $StspilotDone       <- every message not yet handled
    C: a4 UID FETCH 7:9 (RFC822.SIZE)
    C: a5 UID FETCH 7:9 (BODY.PEEK[])               <- PEEK: a person's \\Seen flag is theirs
       ... reports are parsed and committed in one transaction ...
    C: a6 UID MOVE 7:9 Processed                    <- only after the commit
       (no MOVE capability: a6 UID STORE 7:9 +FLAGS.SILENT ($StspilotDone))

Resumable by construction: the mailbox itself is the queue. A crash after the commit but
before the move leaves the messages in place; the next poll ingests them again, the store
reports duplicates (a no-op) and the move happens then. Nothing is acknowledged before it is
stored, so nothing is lost. Credentials come from the environment or a password file, never
from the command line.
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import os
import re
import ssl
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from stspilot.errors import ConfigError, StspilotError
from stspilot.ingest.pipeline import (
    IngestStore,
    MailVerifier,
    RawOutcome,
    Tally,
    commit_prepared,
    prepare_unit,
    prepare_unreadable,
)
from stspilot.tlsrpt.schema import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

PASSWORD_ENV = "STSPILOT_IMAP_PASSWORD"
TlsMode = Literal["implicit", "starttls", "none"]
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class ImapError(StspilotError):
    """The IMAP server could not be reached or refused what a poll needs."""


@dataclass(frozen=True, slots=True)
class ImapConfig:
    host: str
    user: str
    password: str = field(repr=False)
    port: int | None = None  # None: 993 for implicit TLS, 143 otherwise
    tls: TlsMode = "implicit"
    ca_file: Path | None = None  # extra trust anchor (a private CA); None: the system store
    folder: str = "INBOX"
    done_folder: str | None = "Processed"  # None: never move, always flag
    quarantine_folder: str | None = None  # None: quarantined mail goes to done_folder too
    flag: str = "$StspilotDone"  # IMAP keyword set when moving is not possible
    batch_size: int = 100  # messages per fetch and per commit
    max_message_bytes: int = 10 * 1024 * 1024
    timeout: float = 30.0
    allow_plaintext: bool = False  # tls = "none" to a non-loopback host needs this

    def __post_init__(self) -> None:
        if self.tls not in ("implicit", "starttls", "none"):
            raise ConfigError(f"imap tls must be implicit, starttls or none, not {self.tls!r}")
        if self.tls == "none" and not (self.allow_plaintext or _is_loopback(self.host)):
            raise ConfigError(
                f"refusing to send the IMAP password in clear text to {self.host}; "
                "use tls = implicit or starttls (or allow_plaintext = true)"
            )
        if not re.fullmatch(r"\$?[A-Za-z0-9_.-]+", self.flag):
            raise ConfigError(f"imap flag {self.flag!r} is not a valid IMAP keyword")
        if self.batch_size < 1:
            raise ConfigError("imap batch_size must be at least 1")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.tls == "implicit" else 143


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_imap_config(path: Path | None, *, env: Mapping[str, str] | None = None) -> ImapConfig:
    """Read the ``[imap]`` table of a TOML file; the password from the env or a password file.

    Keys: host, port, user, tls, ca_file, folder, done_folder, quarantine_folder, flag,
    batch_size, max_message_bytes, timeout, allow_plaintext, password_file. Without a file,
    ``STSPILOT_IMAP_HOST`` / ``_USER`` / ``_PORT`` / ``_TLS`` / ``_FOLDER`` are read instead.
    """
    env = os.environ if env is None else env
    table: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read IMAP config {path}: {exc}") from exc
        section = data.get("imap", data)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [imap] must be a table")
        table = dict(section)
    for key in ("host", "user", "port", "tls", "folder"):
        value = env.get(f"STSPILOT_IMAP_{key.upper()}")
        if value and key not in table:
            table[key] = value
    if "password" in table:
        raise ConfigError(
            f"put the IMAP password in ${PASSWORD_ENV} or a password_file, not in the config"
        )
    password = env.get(PASSWORD_ENV)
    password_file = table.pop("password_file", None)
    if password is None and password_file is not None:
        try:
            password = Path(str(password_file)).read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read IMAP password file: {exc}") from exc
    if password is None:
        raise ConfigError(f"no IMAP password: set ${PASSWORD_ENV} or password_file")
    for required in ("host", "user"):
        if not table.get(required):
            raise ConfigError(f"IMAP config needs {required!r}")
    known = set(ImapConfig.__dataclass_fields__) - {"password"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown IMAP config keys: {', '.join(unknown)}")
    try:
        return ImapConfig(
            host=str(table["host"]),
            user=str(table["user"]),
            password=password,
            port=int(str(table["port"])) if "port" in table else None,
            tls=str(table.get("tls", "implicit")),  # type: ignore[arg-type]  # checked in post-init
            ca_file=Path(str(table["ca_file"])) if table.get("ca_file") else None,
            folder=str(table.get("folder", "INBOX")),
            done_folder=_opt_str(table.get("done_folder", "Processed")),
            quarantine_folder=_opt_str(table.get("quarantine_folder")),
            flag=str(table.get("flag", "$StspilotDone")),
            batch_size=int(str(table.get("batch_size", 100))),
            max_message_bytes=int(str(table.get("max_message_bytes", 10 * 1024 * 1024))),
            timeout=float(str(table.get("timeout", 30.0))),
            allow_plaintext=bool(table.get("allow_plaintext", False)),
        )
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"bad IMAP config value: {exc}") from exc


def _opt_str(value: object) -> str | None:
    return None if value in (None, "", False) else str(value)


@dataclass(frozen=True, slots=True)
class PollResult:
    tally: Tally
    moved: int = 0
    flagged: int = 0


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(u) for u in uids)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def connect(config: ImapConfig) -> imaplib.IMAP4:
    """Open and log in; TLS as configured, certificates checked against ``ca_file`` or system."""
    context: ssl.SSLContext | None = None
    if config.tls != "none":
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    try:
        conn: imaplib.IMAP4
        if config.tls == "implicit":
            conn = imaplib.IMAP4_SSL(
                config.host, config.effective_port, ssl_context=context, timeout=config.timeout
            )
        else:
            conn = imaplib.IMAP4(config.host, config.effective_port, timeout=config.timeout)
            if config.tls == "starttls":
                conn.starttls(ssl_context=context)
    except (OSError, imaplib.IMAP4.error) as exc:
        where = f"{config.host}:{config.effective_port}"
        raise ImapError(f"cannot connect to IMAP {where}: {exc}") from exc
    try:
        conn.login(config.user, config.password)
        # Servers add capabilities (MOVE, UIDPLUS) after login; imaplib keeps the greeting's.
        typ, data = conn.capability()
        if typ == "OK" and data and isinstance(data[0], bytes):
            conn.capabilities = tuple(data[0].decode("ascii", "replace").upper().split())
    except (OSError, imaplib.IMAP4.error) as exc:
        _close(conn)
        raise ImapError(f"IMAP login as {config.user} refused: {exc}") from exc
    return conn


def _close(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error) as exc:
        log.debug("IMAP logout failed: %s", exc)


def _check(typ: str, data: object, what: str) -> None:
    if typ != "OK":
        raise ImapError(f"IMAP {what} failed: {data!r}")


def _ensure_folder(conn: imaplib.IMAP4, folder: str) -> None:
    typ, _ = conn.create(_quote(folder))  # NO [ALREADYEXISTS] is fine
    if typ != "OK":
        typ, data = conn.select(_quote(folder), readonly=True)
        _check(typ, data, f"CREATE {folder}")


def _fetch(conn: imaplib.IMAP4, uids: Sequence[int], items: str) -> dict[int, tuple[bytes, bytes]]:
    """``UID FETCH``: uid -> (response header line, literal bytes or b"")."""
    typ, data = conn.uid("FETCH", _uid_set(uids), items)
    _check(typ, data, "UID FETCH")
    found: dict[int, tuple[bytes, bytes]] = {}
    for part in data:
        head, body = (part[0], part[1]) if isinstance(part, tuple) else (part, b"")
        if not isinstance(head, bytes):
            continue
        match = _UID.search(head)
        if match:
            found[int(match.group(1))] = (head, body if isinstance(body, bytes) else b"")
    return found


def poll_once(
    store: IngestStore,
    config: ImapConfig,
    *,
    limits: Limits | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_committed: Callable[[Sequence[int]], None] | None = None,
    dkim: MailVerifier | None = None,
) -> PollResult:
    """Ingest every unhandled message in ``config.folder``; acknowledge each batch after commit.
    With ``dkim``, each message's DKIM signatures are verified (``dkim.DkimVerifier``).

    ``on_committed(uids)`` runs between a batch's commit and its acknowledgement (progress,
    and the crash-between-commit-and-move test).
    """
    use_limits = limits if limits is not None else DEFAULT_LIMITS
    conn = connect(config)
    tally, moved, flagged = Tally(), 0, 0
    try:
        typ, data = conn.select(_quote(config.folder))
        _check(typ, data, f"SELECT {config.folder}")
        can_move = config.done_folder is not None and "MOVE" in conn.capabilities
        if can_move:
            for folder in {config.done_folder, config.quarantine_folder} - {None}:
                _ensure_folder(conn, str(folder))
            typ, data = conn.select(_quote(config.folder))
            _check(typ, data, f"SELECT {config.folder}")
        typ, data = conn.uid("SEARCH", "UNKEYWORD", config.flag)
        _check(typ, data, "UID SEARCH")
        uids = sorted(int(u) for u in (data[0] or b"").split())
        for batch in _chunks(uids, config.batch_size):
            outcomes = _ingest_batch(conn, store, config, batch, use_limits, clock, dkim)
            tally = tally + Tally.of(outcomes.values())
            if on_committed is not None:
                on_committed(batch)
            m, f = _acknowledge(conn, config, can_move, batch, outcomes)
            moved, flagged = moved + m, flagged + f
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ImapError(f"IMAP poll of {config.folder} failed: {exc}") from exc
    finally:
        _close(conn)
    return PollResult(tally, moved, flagged)


def _ingest_batch(
    conn: imaplib.IMAP4,
    store: IngestStore,
    config: ImapConfig,
    batch: Sequence[int],
    limits: Limits,
    clock: Callable[[], datetime],
    dkim: MailVerifier | None = None,
) -> dict[int, RawOutcome]:
    sizes = {
        uid: int(m.group(1)) if (m := _SIZE.search(head)) else 0
        for uid, (head, _) in _fetch(conn, batch, "(RFC822.SIZE)").items()
    }
    small = [u for u in batch if sizes.get(u, 0) <= config.max_message_bytes]
    large = [u for u in batch if sizes.get(u, 0) > config.max_message_bytes]
    bodies = _fetch(conn, small, "(BODY.PEEK[])") if small else {}
    now = clock()
    prepared = []
    order: list[int] = []
    for uid in small:
        if uid not in bodies:  # expunged by someone else between SEARCH and FETCH
            continue
        origin = f"imap://{config.user}@{config.host}/{config.folder};UID={uid}"
        prepared.append(
            prepare_unit(bodies[uid][1], origin=origin, received_at=now, limits=limits, dkim=dkim)
        )
        order.append(uid)
    for uid in large:
        # Keep the head of an oversized message in quarantine rather than pull it all in.
        head = _fetch(conn, [uid], f"(BODY.PEEK[]<0.{config.max_message_bytes}>)")
        origin = f"imap://{config.user}@{config.host}/{config.folder};UID={uid}"
        prepared.append(
            prepare_unreadable(
                head.get(uid, (b"", b""))[1],
                origin=origin,
                received_at=now,
                code="report.limit.message-size",
                reason=f"message of {sizes[uid]} bytes is over the {config.max_message_bytes}"
                " byte limit; its first bytes are kept",
            )
        )
        order.append(uid)
    outcomes = commit_prepared(store, prepared)
    return dict(zip(order, outcomes, strict=True))


def _acknowledge(
    conn: imaplib.IMAP4,
    config: ImapConfig,
    can_move: bool,
    batch: Sequence[int],
    outcomes: Mapping[int, RawOutcome],
) -> tuple[int, int]:
    """Move (or flag) what was committed. Returns (moved, flagged)."""
    done = [u for u in batch if u in outcomes]
    if not done:
        return 0, 0
    if can_move:
        assert config.done_folder is not None
        bad_folder = config.quarantine_folder or config.done_folder
        groups = {
            config.done_folder: [u for u in done if not outcomes[u].quarantined],
            bad_folder: [u for u in done if outcomes[u].quarantined],
        }
        if bad_folder == config.done_folder:
            groups = {config.done_folder: done}
        for folder, uids in groups.items():
            if uids:
                typ, data = conn.uid("MOVE", _uid_set(uids), _quote(folder))
                _check(typ, data, f"UID MOVE to {folder}")
        return len(done), 0
    typ, data = conn.uid("STORE", _uid_set(done), "+FLAGS.SILENT", f"({config.flag})")
    _check(typ, data, "UID STORE")
    return 0, len(done)


def watch(
    store: IngestStore,
    config: ImapConfig,
    *,
    interval: float = 60.0,
    stop: threading.Event,
    limits: Limits | None = None,
    on_poll: Callable[[PollResult | ImapError], None] | None = None,
    dkim: MailVerifier | None = None,
) -> None:
    """Poll every ``interval`` seconds until ``stop`` is set; a failed poll is retried later."""
    while not stop.is_set():
        try:
            result: PollResult | ImapError = poll_once(store, config, limits=limits, dkim=dkim)
        except ImapError as exc:
            log.warning("%s", exc)
            result = exc
        if on_poll is not None:
            on_poll(result)
        stop.wait(interval)
