"""``stspilot serve``: the web app (policy host, report POST, API, dashboard) under uvicorn."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stspilot.cli.options import DB, listen_socket
from stspilot.cli.values import host_port
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from stspilot.store import Store
    from stspilot.web.settings import WebSettings

HELP = """Serve hosted MTA-STS policies, the TLS-RPT report POST, the API and the dashboard.

Put Caddy in front (deploy/Caddyfile): it terminates TLS for every mta-sts.<domain> with
on-demand certificates (asking GET /ask first) and proxies to this address. With --smtp the
SMTP report receiver runs in the same process; with --imap-config the mailbox is polled too.
Set STSPILOT_SECRET_KEY (the same on every replica) so sessions survive restarts.
"""


def serve_command(
    listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HTTP HOST:PORT"),
    db: str | None = DB,
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
    log_level: str = typer.Option(
        "info", "--log-level", help="debug, info (a line per request), warning or error"
    ),
    log_json: bool = typer.Option(False, "--log-json", help="logs as one JSON object a line"),
) -> None:
    from stspilot.cli.extras import require_extra

    require_extra("serve", "serve")
    from stspilot.store import Store
    from stspilot.web.ops import configure_logging
    from stspilot.web.settings import WebSettings

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(
            f"--log-level wants debug, info, warning or error, not {log_level!r}"
        )
    configure_logging(log_level, json=log_json)
    host, port = host_port(listen, "--listen")
    overrides: dict[str, object] = {}
    if smtp:
        smtp_host, smtp_port = host_port(smtp, "--smtp")
        overrides["smtp_listen"] = (smtp_host, smtp_port)
        overrides["smtp_domains"] = frozenset(smtp_domain)
        overrides["smtp_verify_dkim"] = not no_verify_dkim
    if imap_config is not None:
        overrides["imap_config"] = imap_config
    if public_host:
        overrides["public_hosts"] = frozenset(public_host)
    if insecure_cookies:
        overrides["secure_cookies"] = False
    settings = WebSettings.from_env(overrides=overrides)
    if smtp:  # the receiver binds in the app's start-up: say now, in one line, if it cannot
        listen_socket(smtp_host, smtp_port, "--smtp").close()
    sock = listen_socket(host, port, "--listen")  # before the store: a busy port fails fast
    with sock, Store.open(db) as store, asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(settings, store, sock))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (the [serve] extra brings it, with uvicorn), else
    asyncio's. ``uvicorn.run`` would pick it by itself; ``serve`` runs uvicorn's server inside
    its own loop (to bind first and print its one-line errors), so it picks it here. Measured
    (docs/serve.md): server CPU a policy GET about a third lower than on asyncio's selector
    loop, where each response's ``send`` and the epoll wakeups are Python code."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the [serve] extra installs it
        return None
    return uvloop.new_event_loop


async def _serve(settings: WebSettings, store: Store, sock: socket.socket) -> None:
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
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is read by the rate limiter, from trusted peers
        server_header=False,
        # Every connection bounded; cached policy GETs answered by the protocol (web/server.py).
        http=bounded_protocol(limits, getattr(app, "policy_fast_path", None)),
        timeout_keep_alive=max(1, round(limits.keep_alive)),
        limit_concurrency=limits.max_connections,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():  # the lifespan failed: surface why
            await task
            raise ConfigError("the web app did not start")
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
