"""``stspilot serve``: the web app (policy host, report POST, API, dashboard) under uvicorn."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from stspilot.store import Store
    from stspilot.web.settings import WebSettings

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
    with Store.open(db) as store:
        asyncio.run(_serve(settings, store, host, port))


async def _serve(settings: WebSettings, store: Store, host: str, port: int) -> None:
    import uvicorn

    from stspilot.web.app import create_app, freeze_startup_heap
    from stspilot.web.server import ConnectionLimits, bounded_protocol

    app = create_app(settings, store)
    freeze_startup_heap()
    limits = ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        keep_alive=settings.keep_alive,
        max_connections=settings.max_connections,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is read by the rate limiter, from trusted peers
        server_header=False,
        http=bounded_protocol(limits),  # every connection bounded (web/server.py)
        timeout_keep_alive=max(1, round(limits.keep_alive)),
        limit_concurrency=limits.max_connections,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():  # could not bind (or the lifespan failed): surface why
            await task
            raise ConfigError(f"cannot serve HTTP on {host}:{port}")
        await asyncio.sleep(0.02)
    for srv in server.servers:
        for sock in srv.sockets:
            bound = sock.getsockname()
            print(f"stspilot serving on http://{bound[0]}:{bound[1]}", flush=True)
    smtp = getattr(app.state, "smtp_address", None)
    if smtp is not None:
        print(f"SMTP receiver listening on {smtp[0]}:{smtp[1]}", flush=True)
    await task
    print("stopped", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve_command)
