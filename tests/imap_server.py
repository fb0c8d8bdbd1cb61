"""A real Dovecot IMAP server on loopback for the IMAP intake tests (plain, STARTTLS, IMAPS).

Config and gotchas from ../shared/notes/test-services.md §2: mail uid 65534, a base directory
the dovecot users can traverse, ``listen = 127.0.0.1``, stopping takes ~3 s (so one server per
test module).
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_UID = 65534  # nobody/nogroup: Dovecot refuses uid 0 for mail users


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Dovecot:
    root: Path
    port: int  # plain, offers STARTTLS
    tls_port: int  # implicit TLS
    ca_file: Path
    password: str = "s3cret-imap"

    def user_dir(self, user: str) -> Path:
        return self.root / "mail" / user

    @contextmanager
    def client(self, user: str) -> Iterator[imaplib.IMAP4]:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(user, self.password)
        try:
            yield conn
        finally:
            conn.logout()

    def append(self, user: str, folder: str, raw: bytes) -> None:
        with self.client(user) as conn:
            conn.create(f'"{folder}"')
            typ, data = conn.append(f'"{folder}"', None, None, raw)
            assert typ == "OK", data

    def uids(self, user: str, folder: str, *criteria: str) -> list[int]:
        with self.client(user) as conn:
            typ, _ = conn.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", *(criteria or ("ALL",)))
            assert typ == "OK", data
            return [int(u) for u in (data[0] or b"").split()]


USERS = tuple(f"user{i:02d}" for i in range(40))  # one fresh mailbox per test


@contextmanager
def run_dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        raise FileNotFoundError("dovecot is not installed (apt-get install -y dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="stspilot-dovecot-"))
    root.chmod(0o755)  # the dovecot and dovenull users must traverse it
    try:
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        os.chown(root / "mail", MAIL_UID, MAIL_UID)
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        leaf.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        server = Dovecot(root, _free_port(), _free_port(), root / "ca.pem")
        (root / "users").write_text(
            "".join(
                f"{u}:{{PLAIN}}{server.password}:{MAIL_UID}:{MAIL_UID}::{root}/mail/{u}::\n"
                for u in USERS
            )
        )
        (root / "dovecot.conf").write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service imap-login {{
  inet_listener imap {{
    port = {server.port}
  }}
  inet_listener imaps {{
    port = {server.tls_port}
    ssl = yes
  }}
}}
"""
        )
        proc = subprocess.Popen(
            [DOVECOT, "-c", str(root / "dovecot.conf"), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_ready(server, proc)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: Dovecot, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"dovecot exited: {err}")
        try:
            with socket.create_connection(("127.0.0.1", server.tls_port), timeout=1) as raw:
                context = ssl.create_default_context(cafile=str(server.ca_file))
                with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                    pass
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("dovecot did not start listening in 10 s")
