"""``stspilot receive``: be the ``rua`` target: an SMTP receiver, and an HTTP POST route."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from stspilot.cli.options import DB, DKIM_NAMESERVER, DKIM_TIMEOUT, dkim_settings, listen_socket
from stspilot.cli.values import host_port
from stspilot.errors import ConfigError

if TYPE_CHECKING:
    from uvicorn import Server

    from stspilot.ingest.dkim import DkimSettings
    from stspilot.ingest.smtp_receiver import ReceiverConfig
    from stspilot.store import Store

HELP = """Receive TLS-RPT reports by SMTP (and HTTP POST) and store them, until SIGTERM.

Point `rua=mailto:tlsrpt@example.com` at this host (MX) and run
`stspilot receive --listen 0.0.0.0:25 --domain example.com`. Mail is answered 250 only once
its reports are committed; mail to other recipients is refused (550). With --http, reports
POSTed to http://HOST:PORT/tlsrpt (`rua=https:` behind a TLS proxy) are stored too.

Each mail's DKIM signature is verified (RFC 8460 §3) unless --no-verify-dkim: a receiver on
the Internet is where forged reports arrive, it has DNS anyway, and a key is looked up once
per reporter and cached. The result is stored on the report; a failed signature is recorded
as a deviation, and the mail is still accepted and stored.
"""


def receive_command(
    listen: str = typer.Option("127.0.0.1:2525", "--listen", help="SMTP HOST:PORT"),
    domain: list[str] = typer.Option([], "--domain", help="accept any address at this domain"),
    rcpt: list[str] = typer.Option([], "--rcpt", help="accept this exact address"),
    db: str | None = DB,
    http: str | None = typer.Option(None, "--http", help="also serve POST /tlsrpt on HOST:PORT"),
    http_path: str = typer.Option("/tlsrpt", "--http-path", help="path of the POST route"),
    max_size: int = typer.Option(10 * 1024 * 1024, "--max-size", min=1024, help="bytes per mail"),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate: STARTTLS"),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM key for --tls-cert"),
    hostname: str | None = typer.Option(None, "--hostname", help="name in banner and EHLO"),
    verify_dkim: bool = typer.Option(
        True, "--verify-dkim/--no-verify-dkim", help="verify each mail's DKIM signature"
    ),
    nameserver: str | None = DKIM_NAMESERVER,
    dkim_timeout: float = DKIM_TIMEOUT,
) -> None:
    from stspilot.cli.extras import require_extra

    require_extra("serve", "receive")
    from stspilot.ingest.smtp_receiver import ReceiverConfig
    from stspilot.store import Store

    dkim = dkim_settings(verify_dkim, nameserver, dkim_timeout)
    smtp_addr = host_port(listen, "--listen")
    http_addr = host_port(http, "--http") if http else None
    config = ReceiverConfig(
        addresses=frozenset(rcpt),
        domains=frozenset(domain),
        max_message_bytes=max_size,
        hostname=hostname,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    with Store.open(db) as store:
        asyncio.run(_serve(store, config, smtp_addr, http_addr, http_path, max_size, dkim))


async def _serve(
    store: Store,
    config: ReceiverConfig,
    smtp_addr: tuple[str, int],
    http_addr: tuple[str, int] | None,
    http_path: str,
    max_size: int,
    dkim: DkimSettings | None = None,
) -> None:
    from stspilot.ingest.dkim import DkimVerifier
    from stspilot.ingest.smtp_receiver import start_receiver

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    verifier = None if dkim is None else DkimVerifier(dkim)
    listen_socket(*smtp_addr, "--listen").close()  # a busy port: one line, before anything
    smtp_server = await start_receiver(
        store, config, host=smtp_addr[0], port=smtp_addr[1], dkim=verifier
    )
    bound = smtp_server.sockets[0].getsockname()
    print(f"SMTP listening on {bound[0]}:{bound[1]}", flush=True)
    http_server = None
    http_task: asyncio.Task[None] | None = None
    try:
        if http_addr is not None:
            sock = listen_socket(*http_addr, "--http")
            http_server = _http_server(store, http_addr, http_path, max_size)
            http_task = asyncio.create_task(http_server.serve(sockets=[sock]))
            while not http_server.started:
                if http_task.done():  # the server did not start: surface the reason
                    await http_task
                    raise ConfigError(f"cannot serve HTTP on {http_addr[0]}:{http_addr[1]}")
                await asyncio.sleep(0.02)
            print(f"HTTP listening on {http_addr[0]}:{http_addr[1]}{http_path}", flush=True)
        await stop.wait()
    finally:
        if http_server is not None and http_task is not None:
            http_server.should_exit = True
            with contextlib.suppress(SystemExit):
                await http_task
        smtp_server.close()
        await smtp_server.wait_closed()
    print("stopped", file=sys.stderr, flush=True)


def _http_server(store: Store, addr: tuple[str, int], path: str, max_size: int) -> Server:
    import uvicorn

    from stspilot.ingest.http import create_intake_app

    class QuietServer(uvicorn.Server):
        """uvicorn without its own signal handlers: our SIGTERM stops SMTP and HTTP together."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    app = create_intake_app(store, path=path, max_bytes=max_size)
    config = uvicorn.Config(
        app, host=addr[0], port=addr[1], log_level="warning", lifespan="off", access_log=False
    )
    return QuietServer(config)


def register(app: typer.Typer) -> None:
    app.command("receive", help=HELP)(receive_command)
