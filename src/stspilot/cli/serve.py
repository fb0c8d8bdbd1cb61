"""``stspilot serve``: the web app (policy host, report POST, API, dashboard) under granian.

Granian was chosen by measurement (``bench/peers.py --only serve``, ``bench/web_load.py``):
policy GETs cost its one worker 32-46 us of CPU against uvicorn's 47-53 us on the same run
(nginx: 16-21 us). Its main process binds the socket and forks one worker process, which
builds the app (and the SMTP receiver and IMAP poller, in the app's lifespan) and serves.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.web.settings import WebSettings

Message = MutableMapping[str, Any]

HELP = """Serve hosted MTA-STS policies, the TLS-RPT report POST, the API and the dashboard.

Put Caddy in front (deploy/Caddyfile): it terminates TLS for every mta-sts.<domain> with
on-demand certificates (asking GET /ask first) and proxies to this address. With --smtp the
SMTP report receiver runs in the same process; with --imap-config the mailbox is polled too.
Set STSPILOT_SECRET_KEY (the same on every replica) so sessions survive restarts.
"""


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise typer.BadParameter(f"{option} wants HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def serve_command(
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HTTP HOST:PORT"),
    db: str | None = typer.Option(None, "--db", help="database URL or SQLite path"),
    smtp: str | None = typer.Option(None, "--smtp", help="also receive reports by SMTP here"),
    smtp_domain: list[str] = typer.Option([], "--smtp-domain", help="accept mail for (repeat)"),
    no_verify_dkim: bool = typer.Option(
        False, "--no-verify-dkim", help="do not verify the DKIM signature of received mail"
    ),
    imap_config: Path | None = typer.Option(None, "--imap-config", help="poll this mailbox"),
    public_host: list[str] = typer.Option(
        [], "--public-host", help="the app's own host name (repeat); other mta-sts.* get policies"
    ),
    insecure_cookies: bool = typer.Option(
        False, "--insecure-cookies", help="cookies without Secure (plain-HTTP development only)"
    ),
) -> None:
    from stspilot.store import Store
    from stspilot.web.settings import WebSettings

    host, port = _host_port(listen, "--listen")
    overrides: dict[str, object] = {}
    if smtp:
        overrides["smtp_listen"] = _host_port(smtp, "--smtp")
        overrides["smtp_domains"] = frozenset(smtp_domain)
        overrides["smtp_verify_dkim"] = not no_verify_dkim
    if imap_config is not None:
        overrides["imap_config"] = imap_config
    if public_host:
        overrides["public_hosts"] = frozenset(public_host)
    if insecure_cookies:
        overrides["secure_cookies"] = False
    settings = WebSettings.from_env(overrides=overrides)
    Store.open(db).close()  # opened (and migrated) here, so a bad database is said here
    _serve(settings, db, host, _bindable(host, port))


def _bindable(host: str, port: int) -> int:
    """The port, once a trial bind says it can be listened on (granian would only say so in
    a panic); for ``--listen HOST:0`` a free one picked here (granian binds what it is given)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            return int(sock.getsockname()[1])
    except OSError as exc:
        raise ConfigError(f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}") from None


def _serve(settings: WebSettings, db: str | None, host: str, port: int) -> None:
    from granian.constants import Interfaces
    from granian.server import MPServer as Server

    def load_app(_target: object) -> Callable[..., Awaitable[None]]:
        # In the worker (forked): its own store and app, the start-up heap frozen.
        from stspilot.store import Store
        from stspilot.web.app import create_app, freeze_startup_heap

        app = create_app(settings, Store.open(db, migrate=False), close_store=True)
        freeze_startup_heap()
        return _Announce(app, host, port)

    server = Server(
        "stspilot.web.app:app_from_env",  # named only; load_app builds the app
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        backlog=4096,
        log_enabled=False,
        log_access=False,
        websockets=False,
    )
    try:
        server.serve(target_loader=load_app)
    except (OSError, RuntimeError) as exc:  # taken since the trial bind, say
        reason = str(exc).partition("\n")[0]
        raise ConfigError(f"cannot serve HTTP on {host}:{port}: {reason}") from None
    print("stopped", file=sys.stderr, flush=True)


class _Announce:
    """The app, saying where it serves once its lifespan has started (the SMTP receiver's
    address is known only then); every other message passes straight through."""

    __slots__ = ("app", "host", "port")

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)  # type: ignore[no-any-return]

        async def announce(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                shown = f"[{self.host}]" if ":" in self.host else self.host
                print(f"stspilot serving on http://{shown}:{self.port}", flush=True)
                smtp = getattr(self.app.state, "smtp_address", None)
                if smtp is not None:
                    print(f"SMTP receiver listening on {smtp[0]}:{smtp[1]}", flush=True)

        await self.app(scope, receive, announce)


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve_command)
