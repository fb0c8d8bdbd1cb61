"""Caddy (on-demand TLS) + pebble (ACME) + the lab DNS server + the stspilot app, on loopback.

The no-root, high-port variant of ``../shared/notes/test-services.md`` §1: every process binds
127.0.0.1 on a free port, pebble's ``httpPort``/``tlsPort`` equal Caddy's ``http_port``/
``https_port`` so its http-01/tls-alpn-01 validations reach Caddy, and pebble resolves names
through the project's own authoritative DNS server (``stspilot.lab.dns_server``). State lives
in one scratch directory per run (pebble makes a new root at every start, so Caddy's storage
must start empty), every wait is bounded, and ``stop`` kills every process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trustme

from stspilot.lab.dns_server import DnsData, DnsServer, Record

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CADDYFILE = REPO / "deploy" / "Caddyfile"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0  # seconds for any one process to become ready
STOP_TIMEOUT = 5.0


def missing_tools() -> str | None:
    """Why the end-to-end test cannot run here, or None when it can."""
    missing = [tool for tool in ("caddy", "pebble") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed (Debian packages: caddy pebble; "
            "scripts/setup.sh installs them)"
        )
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a short race with other binders is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, ready: Callable[[], bool], *, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


def tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True
    return False


class Process:
    """One child process in its own session, output to a log file, killed on ``stop``."""

    def __init__(
        self, name: str, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}: {self.output()[-2000:]}"
            )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT)
        self._out.close()


class ThreadedDns:
    """The lab's DNS server on its own event loop thread, so blocking fixtures can use it."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server = DnsServer(DnsData(records), host=LOOPBACK)

    def start(self) -> int:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self.server.port

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()


# --- the Caddyfile -------------------------------------------------------------------------------


def caddy_env(ask_url: str, upstream: str) -> dict[str, str]:
    """The environment placeholders the shipped Caddyfile reads (``{$NAME}``)."""
    return {"STSPILOT_ASK_URL": ask_url, "STSPILOT_UPSTREAM": upstream}


def local_globals(
    *,
    admin_port: int,
    http_port: int,
    https_port: int,
    acme_dir: str,
    acme_root: Path,
    storage: Path,
) -> list[str]:
    """Global options the test adds to the shipped file: a local CA instead of Let's Encrypt,
    high ports on loopback, private storage, no HTTP/3 (no UDP port to pick)."""
    return [
        f"admin {LOOPBACK}:{admin_port}",
        f"http_port {http_port}",
        f"https_port {https_port}",
        f"default_bind {LOOPBACK}",
        f"storage file_system {storage}",
        f"acme_ca {acme_dir}",
        f"acme_ca_root {acme_root}",
        "servers {\n\t\tprotocols h1 h2\n\t}",
    ]


_OPTION_NAME = re.compile(r"^\s*([a-z_]+)")


def derive_caddyfile(shipped: str, extra_globals: Sequence[str]) -> str:
    """The shipped Caddyfile with ``extra_globals`` merged into its global options block.

    A global option the shipped file also sets is replaced by the test's value (Caddy refuses
    duplicates of most options); the site blocks are kept exactly as shipped.
    """
    ours = {m.group(1) for line in extra_globals if (m := _OPTION_NAME.match(line))}
    lines = shipped.splitlines()
    first = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")),
        None,
    )
    body: list[str] = []
    rest = lines
    if first is not None and lines[first].strip() == "{":
        depth, end = 0, first
        for end in range(first, len(lines)):
            depth += lines[end].count("{") - lines[end].count("}")
            if depth == 0:
                break
        block = lines[first + 1 : end]
        skip = 0
        for line in block:
            m = _OPTION_NAME.match(line)
            opening = line.count("{") - line.count("}")
            if skip:
                skip += opening
                continue
            if m and m.group(1) in ours and line.startswith("\t") and not line.startswith("\t\t"):
                skip = opening  # drop the shipped option, with its sub-block if it has one
                continue
            body.append(line)
        rest = lines[:first] + lines[end + 1 :]
    merged = ["{", *("\t" + line for line in extra_globals), *body, "}"]
    return "\n".join(merged + rest) + "\n"


# --- the world -----------------------------------------------------------------------------------


@dataclass
class CaddyWorld:
    """Everything started for one run; ``https_port`` is where Caddy terminates TLS."""

    root: Path
    hosted: str  # the hosted domain
    policy: str  # the policy text the app serves for it
    dns_port: int = 0
    app_port: int = 0
    http_port: int = 0
    https_port: int = 0
    admin_port: int = 0
    pebble_root: Path = Path()
    caddyfile: Path = Path()
    caddy_storage: Path = Path()
    dns: ThreadedDns | None = None
    processes: dict[str, Process] = field(default_factory=dict)

    def app_log(self) -> str:
        return self.processes["app"].output()

    def asks(self) -> list[tuple[str, int]]:
        """(domain, status) of every ask request the app answered, from its access log."""
        found = re.findall(r'"GET /ask\?domain=([^ &"]+)[^"]*" (\d{3})', self.app_log())
        return [(name, int(status)) for name, status in found]

    def issued_names(self) -> list[str]:
        """Names Caddy stored a certificate for (one folder per name under certificates/)."""
        return sorted(p.parent.name for p in self.caddy_storage.glob("certificates/*/*/*.crt"))

    def stop(self) -> None:
        for name in ("caddy", "pebble", "app"):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop()
        if self.dns is not None:
            self.dns.stop()
            self.dns = None


AppStarter = Callable[[CaddyWorld], Process]  # starts the app on world.app_port


def dns_records(hosted: str, stranger: str) -> list[Record]:
    """The zone pebble and the checker read: the hosted domain published as a customer would
    (both MTA-STS halves, TLS-RPT, MX) and a stranger whose ``mta-sts.`` name also points at
    Caddy but is not hosted."""
    return [
        Record(f"mta-sts.{hosted}", "A", LOOPBACK),
        Record(f"_mta-sts.{hosted}", "TXT", '"v=STSv1; id=20261122e2e"'),
        Record(f"_smtp._tls.{hosted}", "TXT", f'"v=TLSRPTv1; rua=mailto:tlsrpt@{hosted}"'),
        Record(hosted, "MX", f"10 mx.{hosted}."),
        Record(hosted, "A", LOOPBACK),
        Record(f"mx.{hosted}", "A", LOOPBACK),
        Record(f"mta-sts.{stranger}", "A", LOOPBACK),
        Record(app_host(hosted), "A", LOOPBACK),  # the dashboard's own name
    ]


def app_host(hosted: str) -> str:
    """The app's own public name (dashboard, API, report POST) in the world."""
    return f"app.{hosted}"


def start_world(
    root: Path,
    *,
    hosted: str,
    stranger: str,
    policy: str,
    start_app: AppStarter,
    caddyfile_text: str,
) -> CaddyWorld:
    """Start DNS, the app, pebble and Caddy; the caller must ``stop()`` (also on failure)."""
    world = CaddyWorld(root=root, hosted=hosted, policy=policy)
    try:
        _start(world, stranger, start_app, caddyfile_text)
    except BaseException:
        world.stop()
        raise
    return world


def _start(world: CaddyWorld, stranger: str, start_app: AppStarter, caddyfile_text: str) -> None:
    root = world.root
    for sub in ("pebble", "caddy", "logs"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    world.dns = ThreadedDns(dns_records(world.hosted, stranger))
    world.dns_port = world.dns.start()

    world.app_port = free_port()
    world.processes["app"] = start_app(world)

    # Pebble: its listener needs a certificate of its own (Debian ships none).
    listener_ca = trustme.CA()
    listener_ca.cert_pem.write_to_path(str(root / "pebble" / "listener-ca.pem"))
    leaf = listener_ca.issue_cert(LOOPBACK, "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(root / "pebble" / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(root / "pebble" / "key.pem"))
    acme_port, mgmt_port = free_port(), free_port()
    world.http_port, world.https_port, world.admin_port = free_port(), free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"{LOOPBACK}:{acme_port}",
            "managementListenAddress": f"{LOOPBACK}:{mgmt_port}",
            "certificate": str(root / "pebble" / "cert.pem"),
            "privateKey": str(root / "pebble" / "key.pem"),
            "httpPort": world.http_port,  # pebble validates against Caddy's ports
            "tlsPort": world.https_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (root / "pebble" / "config.json").write_text(json.dumps(config))
    pebble_env = {
        "PEBBLE_VA_NOSLEEP": "1",  # otherwise 0-15 s of random sleep before each validation
        "PEBBLE_WFE_NONCEREJECT": "0",  # otherwise 5 % of nonces are refused at random
        "PEBBLE_VA_ALWAYS_VALID": "0",  # real validations against Caddy
    }
    world.processes["pebble"] = Process(
        "pebble",
        [
            "pebble",
            "-config",
            str(root / "pebble" / "config.json"),
            "-dnsserver",
            f"{LOOPBACK}:{world.dns_port}",
        ],
        log=root / "logs" / "pebble.log",
        env=pebble_env,
    )
    listener_ctx = ssl.create_default_context(cafile=str(root / "pebble" / "listener-ca.pem"))
    roots: list[bytes] = []

    def pebble_ready() -> bool:
        world.processes["pebble"].check_alive()
        try:
            answer = httpx.get(
                f"https://{LOOPBACK}:{mgmt_port}/roots/0", verify=listener_ctx, timeout=2
            )
        except httpx.HTTPError:
            return False
        if answer.status_code == 200:
            roots.append(answer.content)
        return bool(roots)

    wait_for("pebble", pebble_ready)
    # A new root at every pebble start: this is what clients must trust for Caddy's leaves.
    world.pebble_root = root / "pebble" / "root.pem"
    world.pebble_root.write_bytes(roots[0])

    world.caddy_storage = root / "caddy" / "data"
    extra = local_globals(
        admin_port=world.admin_port,
        http_port=world.http_port,
        https_port=world.https_port,
        acme_dir=f"https://{LOOPBACK}:{acme_port}/dir",
        acme_root=root / "pebble" / "listener-ca.pem",
        storage=world.caddy_storage,
    )
    world.caddyfile = root / "caddy" / "Caddyfile"
    world.caddyfile.write_text(derive_caddyfile(caddyfile_text, extra))
    caddy_home = {
        "HOME": str(root / "caddy"),
        "XDG_DATA_HOME": str(root / "caddy" / "xdgdata"),
        "XDG_CONFIG_HOME": str(root / "caddy" / "xdgconfig"),
        **caddy_env(f"http://{LOOPBACK}:{world.app_port}/ask", f"{LOOPBACK}:{world.app_port}"),
    }
    world.processes["caddy"] = Process(
        "caddy",
        ["caddy", "run", "--config", str(world.caddyfile), "--adapter", "caddyfile"],
        log=root / "logs" / "caddy.log",
        env=caddy_home,
    )

    def caddy_ready() -> bool:
        world.processes["caddy"].check_alive()
        return tcp_open(world.admin_port) and tcp_open(world.https_port)

    wait_for("caddy", caddy_ready)

    def app_ready() -> bool:
        world.processes["app"].check_alive()
        return tcp_open(world.app_port)

    wait_for("the stspilot app", app_ready)


# --- the real app ---------------------------------------------------------------------------------


def host_domain(db_url: str, domain: str, *, mode: str, mx: Sequence[str]) -> str:
    """Host ``domain`` in a fresh store (as ``stspilot host add`` does); its served policy text."""
    from datetime import UTC, datetime

    from stspilot.store import Store
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies

    now = datetime.now(UTC)
    with Store.open(db_url) as store:
        tenant = Accounts(store).add_tenant("e2e", now=now)
        hosted = HostedPolicies(store).add(domain, tenant_id=tenant.id, mode=mode, mx=mx, now=now)
    return hosted.policy_text


def start_app(world: CaddyWorld, db_url: str) -> Process:
    """``uvicorn --factory stspilot.web.app:app_from_env``, the factory ``stspilot serve`` runs,
    with its access log on (the evidence of what Caddy asked)."""
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "stspilot.web.app:app_from_env",
        "--host",
        LOOPBACK,
        "--port",
        str(world.app_port),
        "--log-level",
        "info",
    ]
    env = {
        "STSPILOT_DATABASE_URL": db_url,
        "STSPILOT_SECRET_KEY": "caddy-e2e-secret-key-0123456789",
        "STSPILOT_PUBLIC_HOSTS": app_host(world.hosted),
        # Caddy is the one trusted proxy; clients of the world connect from other loopback
        # addresses (127.0.0.2), so "the client behind the proxy" can be told from it.
        "STSPILOT_TRUSTED_PROXIES": f"{LOOPBACK}/32",
        "STSPILOT_METRICS_CLIENTS": f"{LOOPBACK}/32",
        "STSPILOT_ASK_CLIENTS": f"{LOOPBACK}/32",
    }
    return Process("app", argv, log=world.root / "logs" / "app.log", env=env)
