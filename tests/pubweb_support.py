"""The world of the web publishing tests: Knot (primary + secondary) serving the operator's
delegation zone ``deleg.test`` and the customers' zones (``_mta-sts.<d>`` CNAME to
``<d>.deleg.test``, ``mta-sts.<d>`` at the policy host), an HTTPS policy host serving what the
hosted store serves (in a thread of its own, so sync tests and the browser can use it), the
publish config with the zone's TSIG key, and the app served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import httpx

from browser_support import ServerThread
from publish_support import HostedStorePolicies, need
from stspilot.check.run import CheckOptions
from stspilot.lab.authdns import KEY_NAME, AuthServer, LabZone, free_port, make_secret, start_knot
from stspilot.lab.certs import CertKind, LabPki
from stspilot.lab.https_host import HttpBehaviour, HttpsHost
from stspilot.store import Store
from stspilot.store.accounts import Accounts
from stspilot.web import pages
from stspilot.web.app import create_app
from web_support import FAST_SCRYPT, PASSWORD, World, build_world, settings

DELEGATION = "deleg.test"
CUSTOMERS = ("example.com", "globex.test")
_NET = itertools.count(int.from_bytes(os.urandom(1), "big") % 100 + 120)


class LoopThread:
    """An event loop in a thread: the policy host answers whatever the test thread does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class PubWorld:
    world: World
    base: str  # the app, served by uvicorn
    app: Any
    host: HttpsHost
    secondary: AuthServer
    port: int
    config: Path
    check: CheckOptions

    @property
    def store(self) -> Store:
        return self.world.store

    def client(self, user: str | None = None) -> httpx.Client:
        headers = self.world.auth(user) if user else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def txt(self, domain: str) -> list[str]:
        """The TXT record at ``<domain>.deleg.test`` as the secondary serves it."""
        q = dns.message.make_query(f"{domain}.{DELEGATION}.", "TXT")
        r = dns.query.udp(q, self.secondary.address, port=self.port, timeout=2)
        return [b"".join(rd.strings).decode() for rs in r.answer for rd in rs]

    def wait_run(self, domain: str, run_id: int, timeout: float = 60) -> dict[str, Any]:
        """Poll the journal API until run ``run_id`` is no longer running."""
        import time

        deadline = time.monotonic() + timeout
        with self.client("root") as c:
            while True:
                run: dict[str, Any] = c.get(f"/api/domains/{domain}/journal/{run_id}").json()
                if run["state"] != "running" or time.monotonic() > deadline:
                    return run
                time.sleep(0.1)


def pub_world(tmp: Path, store: Store) -> Iterator[PubWorld]:
    need("knot")
    net = next(_NET)
    p_addr, s_addr = f"127.0.{net}.1", f"127.0.{net}.2"
    port = free_port(p_addr, s_addr)
    secret = make_secret()
    ns = (("ns1", p_addr), ("ns2", s_addr))
    zones = [LabZone(DELEGATION, ns)] + [
        LabZone(
            d,
            ns,
            (
                "@ MX 10 mx1",
                "mx1 A 127.0.0.9",
                "mta-sts A 127.0.0.1",
                f"_mta-sts CNAME {d}.{DELEGATION}.",
                f'_smtp._tls TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{d}"',
            ),
        )
        for d in CUSTOMERS
    ]
    primary = start_knot(tmp / "knot1", p_addr, port, zones, secret=secret, notify=[(s_addr, port)])
    secondary = start_knot(
        tmp / "knot2", s_addr, port, zones, secret=secret, primary=(p_addr, port)
    )
    loop = LoopThread()
    pki = LabPki(tmp)
    host = HttpsHost(
        "127.0.0.1",
        0,
        context=pki.sni_context(CertKind.GOOD, [f"mta-sts.{d}" for d in CUSTOMERS]),
        behaviour=HttpBehaviour.OK,
        policies=HostedStorePolicies(store),
    )
    https_port = loop.run(host.service.start())
    key = tmp / "tsig.key"
    key.write_text(secret)
    key.chmod(0o600)
    config = tmp / "publish.toml"
    config.write_text(
        f'[zones."{DELEGATION}"]\nprovider = "rfc2136"\nserver = "{p_addr}"\nport = {port}\n'
        f'key_name = "{KEY_NAME}"\nkey_secret_file = "{key}"\nverify_timeout = 20\n'
    )
    check = CheckOptions(
        nameserver=p_addr, dns_port=port, ca_file=pki.ca_file, port_map={443: https_port},
        probe_mx=False,
    )  # fmt: skip
    web = settings(txt_delegation_zone=DELEGATION, publish_config=config, check_options=check)
    world = build_world(store, web)
    accounts = Accounts(store)
    ada = accounts.add_user(
        "ada", PASSWORD, tenant="acme", tenant_admin=True, now=world.clock(),
        password_n=FAST_SCRYPT,
    )  # fmt: skip
    world.tokens["ada"], _ = accounts.create_token(ada.id, "tests", now=world.clock())
    world.tokens["ada-read"], _ = accounts.create_token(
        ada.id, "read", now=world.clock(), scope="read"
    )
    # The app's clock is the wall clock here: plans are confirmed against it, and the journal
    # and the policy ids must follow real time as the DNS and the policy host do.
    from datetime import UTC, datetime

    world.clock.now = datetime.now(UTC)
    app = create_app(web, store, routers=[pages.router], clock=lambda: datetime.now(UTC))
    try:
        with ServerThread(app) as base:
            yield PubWorld(world, base, app, host, secondary, port, config, check)
    finally:
        loop.run(host.service.stop())
        loop.close()
        for server in (secondary, primary):
            server.resume()
            server.stop()
