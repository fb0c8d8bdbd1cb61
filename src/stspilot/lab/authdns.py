"""Real authoritative DNS servers for the publish tests, benchmark and lab: Knot and BIND from
Debian, each in the foreground on a loopback address, with TSIG-authorised dynamic updates, and
optionally as primary and secondary linked by NOTIFY and zone transfer.

Recipes and gotchas: ``../shared/notes/dns-servers-and-dane.md`` (Knot 3.2, BIND 9.18). A
server is started in its own scratch folder, asked for its SOA until it answers (Knot loads
zones after "server started"), and stopped with SIGTERM.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from stspilot.errors import ConfigError

KEY_NAME = "stspilot-lab"


def make_secret() -> str:
    """A random hmac-sha256 secret, as long as the hash output (RFC 8945 §8, checklist G4.3)."""
    return base64.b64encode(os.urandom(32)).decode()


def _free(address: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def free_port(*addresses: str) -> int:
    """A port free for TCP and UDP on every one of ``addresses`` (so that all the servers of a
    zone listen on one port, as on the Internet, each on its own loopback address).

    BIND listens only on addresses configured on an interface: on Linux's ``lo`` that is
    127.0.0.1 alone, so a BIND server takes 127.0.0.1 and Knot servers other 127/8 addresses.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        if all(_free(a, port) for a in addresses):
            return port
    raise ConfigError(f"no port free on all of {', '.join(addresses)}")


@dataclass(frozen=True, slots=True)
class LabZone:
    """A zone: its name (no trailing dot) and zone-file lines after SOA/NS (relative names)."""

    name: str
    ns: tuple[tuple[str, str], ...]  # (label, IPv4) of each name server, in the zone
    lines: tuple[str, ...] = ()
    refresh: int = 3600

    def text(self, serial: int = 1) -> str:
        head = [
            f"$ORIGIN {self.name}.",
            "$TTL 300",
            f"@ SOA {self.ns[0][0]} hostmaster {serial} {self.refresh} 60 86400 300",
        ]
        head += [f"@ NS {label}" for label, _ in self.ns]
        head += [f"{label} A {ip}" for label, ip in self.ns]
        return "\n".join([*head, *self.lines]) + "\n"


@dataclass
class AuthServer:
    """One running server: where it listens, its process and folder."""

    kind: str  # "knot" or "bind"
    address: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    zones: tuple[str, ...] = ()
    log: Path = field(default_factory=Path)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for zone in self.zones:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise ConfigError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
                try:
                    q = dns.message.make_query(zone + ".", dns.rdatatype.SOA)
                    r = dns.query.udp(q, self.address, port=self.port, timeout=0.3)
                    if r.rcode() == dns.rcode.NOERROR and r.answer:
                        break
                except (dns.exception.DNSException, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise ConfigError(f"{self.kind} on {self.address}:{self.port} never served")
                time.sleep(0.03)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def pause(self) -> None:
        """Stop answering (SIGSTOP): a server that hangs. Returns once every thread of the
        server is stopped: the signal is delivered asynchronously, and a thread still running
        on the other core could answer one more query."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                states = [
                    (task / "stat").read_text().rpartition(")")[2].split()[0]
                    for task in tasks.iterdir()
                ]
            except OSError:  # a thread came or went while we looked
                continue
            if states and all(s in ("T", "t") for s in states):
                return
            time.sleep(0.005)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def knotc(self, *args: str) -> str:
        """Run ``knotc`` against this Knot server (e.g. ``zone-freeze example.test``)."""
        out = subprocess.run(
            ["knotc", "-b", "-c", str(self.folder / "knot.conf"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        return out.stdout + out.stderr


def available(kind: str) -> bool:
    return shutil.which({"knot": "knotd", "bind": "named"}[kind]) is not None


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    try:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)
    finally:
        handle.close()


def start_knot(
    folder: Path,
    address: str,
    port: int,
    zones: list[LabZone],
    *,
    secret: str,
    primary: tuple[str, int] | None = None,
    notify: list[tuple[str, int]] | None = None,
) -> AuthServer:
    """Knot serving ``zones``: as primary accepting TSIG updates (and sending NOTIFY to the
    ``notify`` secondaries), or as a secondary of ``primary`` (address, port) accepting its
    NOTIFY and transferring the zone."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "db", "zones"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir()
    conf = [
        "server:",
        f'    rundir: "{folder / "run"}"',
        f"    listen: {address}@{port}",
        "log:",
        "  - target: stderr",
        "    any: info",
        "database:",
        f'    storage: "{folder / "db"}"',
        "key:",
        f"  - id: {KEY_NAME}",
        "    algorithm: hmac-sha256",
        f"    secret: {secret}",
        "acl:",
        "  - id: update",
        f"    key: {KEY_NAME}",
        "    action: update",
        "  - id: notify",
        "    address: 127.0.0.0/8",
        "    action: notify",
        "  - id: transfer",
        "    address: 127.0.0.0/8",
        "    action: transfer",
    ]
    remotes = [("primary", primary)] if primary is not None else []
    remotes += [(f"secondary{i}", target) for i, target in enumerate(notify or ())]
    if remotes:
        conf.append("remote:")
        for rid, (addr, rport) in remotes:
            conf += [f"  - id: {rid}", f"    address: {addr}@{rport}"]
    conf += [
        "template:",
        "  - id: default",
        f'    storage: "{folder / "zones"}"',
        '    file: "%s.zone"',
        "    zonefile-sync: -1",  # notes gotcha 1: never rewrite the fixture's zone file
        "zone:",
    ]
    for zone in zones:
        conf.append(f"  - domain: {zone.name}")
        if primary is None:
            conf.append("    acl: [update, transfer]")
            if notify:
                ids = ", ".join(f"secondary{i}" for i in range(len(notify)))
                conf.append(f"    notify: [{ids}]")
            (folder / "zones" / f"{zone.name}.zone").write_text(zone.text())
        else:
            conf += ["    master: primary", "    acl: notify"]
    (folder / "knot.conf").write_text("\n".join(conf) + "\n")
    log = folder / "knot.log"
    server = AuthServer("knot", address, port, folder, zones=tuple(z.name for z in zones), log=log)
    server.process = _spawn(["knotd", "-c", str(folder / "knot.conf")], log)
    server.wait_ready()
    return server


def start_bind(
    folder: Path,
    address: str,
    port: int,
    zones: list[LabZone],
    *,
    secret: str,
    notify: list[tuple[str, int]] | None = None,
) -> AuthServer:
    """BIND as primary of ``zones`` with TSIG updates; ``notify`` lists secondaries to NOTIFY."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jnl"):  # notes gotcha 3: a stale journal refuses the zone
        old.unlink()
    also = ""
    if notify:
        targets = " ".join(f"{a} port {p};" for a, p in notify)
        also = (
            f"notify explicit; also-notify {{ {targets} }}; notify-source {address}; "
            "notify-delay 0;"
        )
    conf = [
        "options {",
        f'    directory "{folder}";',
        f"    listen-on port {port} {{ {address}; }};",
        "    listen-on-v6 { none; };",
        "    pid-file none;",
        "    session-keyfile none;",
        "    recursion no;",
        "    dnssec-validation no;",
        "    allow-transfer { 127.0.0.0/8; };",
        f"    {also}",
        "};",
        "controls { };",
        f'key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};',
    ]
    for zone in zones:
        (folder / f"{zone.name}.zone").write_text(zone.text())
        conf.append(
            f'zone "{zone.name}" {{ type primary; file "{zone.name}.zone"; '
            f'allow-update {{ key "{KEY_NAME}"; }}; }};'
        )
    (folder / "named.conf").write_text("\n".join(conf) + "\n")
    log = folder / "named.log"
    server = AuthServer("bind", address, port, folder, zones=tuple(z.name for z in zones), log=log)
    server.process = _spawn(["named", "-g", "-c", str(folder / "named.conf")], log)
    server.wait_ready()
    return server


PDNS_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


def pdns_available() -> bool:
    return shutil.which("pdns_server") is not None and PDNS_SCHEMA.is_file()


def start_pdns(folder: Path, address: str, port: int, api_port: int, *, api_key: str) -> AuthServer:
    """PowerDNS Authoritative with the gsqlite3 backend and its HTTP API on ``api_port``; zones
    are created through the API (``create_pdns_zone``), which pdns serves at once."""
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run").mkdir(exist_ok=True)
    database = folder / "pdns.sqlite3"
    database.unlink(missing_ok=True)
    with sqlite3.connect(database) as conn:
        conn.executescript(PDNS_SCHEMA.read_text())
    conf = [
        "launch=gsqlite3",
        f"gsqlite3-database={database}",
        f"local-address={address}:{port}",
        f"socket-dir={folder / 'run'}",
        "daemon=no",
        "guardian=no",
        "disable-syslog=yes",
        "loglevel=4",
        "security-poll-suffix=",
        "api=yes",
        f"api-key={api_key}",
        "webserver=yes",
        f"webserver-address={address}",
        f"webserver-port={api_port}",
        "webserver-allow-from=127.0.0.0/8",
        "zone-cache-refresh-interval=0",
        "default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 300",
    ]
    (folder / "pdns.conf").write_text("\n".join(conf) + "\n")
    log = folder / "pdns.log"
    server = AuthServer("pdns", address, port, folder, log=log)
    server.process = _spawn(["pdns_server", f"--config-dir={folder}"], log)
    return server


def create_pdns_zone(server: AuthServer, api_port: int, api_key: str, zone: LabZone) -> None:
    """Create ``zone`` through the PowerDNS HTTP API (Native, served at once)."""
    import httpx

    base = f"http://{server.address}:{api_port}/api/v1/servers/localhost"
    records = [
        {
            "name": f"{label}.{zone.name}.",
            "type": "A",
            "ttl": 300,
            "changetype": "REPLACE",
            "records": [{"content": ip, "disabled": False}],
        }
        for label, ip in zone.ns
    ]
    body = {
        "name": f"{zone.name}.",
        "kind": "Native",
        "nameservers": [f"{label}.{zone.name}." for label, _ in zone.ns],
    }
    deadline = time.monotonic() + 10
    headers = {"X-API-Key": api_key}
    while True:
        try:
            made = httpx.post(f"{base}/zones", json=body, headers=headers, timeout=2)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or (
                server.process is not None and server.process.poll() is not None
            ):
                log = server.log.read_text()[-2000:]
                raise ConfigError(f"pdns API never answered: {log}") from None
            time.sleep(0.05)
    if made.status_code != 201:
        raise ConfigError(f"pdns refused the zone: {made.status_code} {made.text}")
    patched = httpx.patch(
        f"{base}/zones/{zone.name}.", json={"rrsets": records}, headers=headers, timeout=5
    )
    if patched.status_code != 204:
        raise ConfigError(f"pdns refused the records: {patched.status_code} {patched.text}")
    server.zones = (zone.name,)
    server.wait_ready()
