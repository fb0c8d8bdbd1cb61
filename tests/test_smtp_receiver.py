"""The SMTP receiver with a real SMTP client (smtplib in a thread) on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from sqlalchemy import text

from intake_samples import report_json, report_mail
from stspilot.errors import ConfigError
from stspilot.ingest.dkim import DkimSettings, DkimVerifier
from stspilot.ingest.smtp_receiver import ReceiverConfig, start_receiver
from stspilot.lab import LabDkimKey, make_dkim_key
from stspilot.lab.dkim_keys import KeyServer
from stspilot.lab.sample_reports import REPORTER_DOMAINS, generate_reports, to_email
from stspilot.store import Store

pytestmark = pytest.mark.db

REPORT = report_json("sender.example", "smtp-1", failures=2)
MAIL = report_mail(REPORT)
FROM = "noreply-smtp-tls-reporting@sender.example"


@dataclass
class Running:
    host: str
    port: int
    store: Store


async def _start(store: Store, config: ReceiverConfig) -> tuple[asyncio.Server, Running]:
    server = await start_receiver(store, config, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    return server, Running("127.0.0.1", port, store)


@pytest.fixture
async def receiver(store: Store) -> AsyncIterator[Running]:
    config = ReceiverConfig(
        addresses=frozenset({"TLSRPT@example.com"}),
        domains=frozenset({"reports.example.net"}),
        max_message_bytes=64 * 1024,
    )
    server, running = await _start(store, config)
    yield running
    server.close()
    await server.wait_closed()


def _send(r: Running, rcpts: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(r.host, r.port, timeout=10) as client:
        return client.sendmail(FROM, rcpts, raw)


@pytest.mark.parametrize(
    "rcpt", ["tlsrpt@example.com", "TlsRpt@Example.COM", "anyone@reports.example.net"]
)
async def test_report_mail_is_stored_before_250(receiver: Running, rcpt: str) -> None:
    refused = await asyncio.to_thread(_send, receiver, [rcpt], MAIL)
    assert refused == {}
    # sendmail returned, so the 250 came: the report must already be committed.
    assert receiver.store.count_reports() == 1
    [listing] = receiver.store.list_reports()
    assert listing.origin.startswith("smtp:127.0.0.1")
    assert receiver.store.report_raw(listing.pk) == MAIL


@pytest.mark.parametrize(
    ("rcpt", "expect"),
    [
        ("postmaster@example.com", 550),
        ("tlsrpt@sub.example.com", 550),
        ("x@example.net", 550),
        ("@example.com", 553),  # aiosmtpd's own syntax check comes first
    ],
)
async def test_unknown_recipient_is_refused(receiver: Running, rcpt: str, expect: int) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(_send, receiver, [rcpt], MAIL)
    [(code, _)] = info.value.recipients.values()
    assert code == expect
    assert receiver.store.count_reports() == 0


async def test_mixed_recipients_accepts_ours_only(receiver: Running) -> None:
    refused = await asyncio.to_thread(
        _send, receiver, ["nobody@example.org", "tlsrpt@example.com"], MAIL
    )
    assert set(refused) == {"nobody@example.org"}
    assert receiver.store.count_reports() == 1


async def test_non_report_is_quarantined_and_accepted(receiver: Running) -> None:
    raw = b"From: cron@example.com\r\nSubject: backup done\r\n\r\nall good\r\n"
    refused = await asyncio.to_thread(_send, receiver, ["tlsrpt@example.com"], raw)
    assert refused == {}
    [item] = receiver.store.list_quarantine()
    assert receiver.store.quarantine_raw(item.id).replace(b"\r\n", b"\n").endswith(b"all good\n")
    assert receiver.store.count_reports() == 0


def _send_raw_data(r: Running, raw: bytes, *, declare_size: bool) -> tuple[int, bytes]:
    with smtplib.SMTP(r.host, r.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("size")
        options = [f"SIZE={len(raw)}"] if declare_size else []
        code, message = client.mail(FROM, options)
        if code != 250:
            return code, message
        code, message = client.rcpt("tlsrpt@example.com")
        assert code == 250
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


@pytest.mark.parametrize("declare_size", [True, False])
async def test_too_big_is_552(receiver: Running, declare_size: bool) -> None:
    big = report_mail(REPORT, compress=False) + (b"X" * 76 + b"\r\n") * 1000  # > 64 KiB
    code, _ = await asyncio.to_thread(_send_raw_data, receiver, big, declare_size=declare_size)
    assert code == 552
    assert receiver.store.count_reports() == 0
    assert receiver.store.list_quarantine() == []


async def test_store_failure_is_451(receiver: Running) -> None:
    cascade = " CASCADE" if receiver.store.dialect == "postgresql" else ""
    with receiver.store.engine.begin() as conn:
        for table in ("failure_details", "report_policies", "quarantine", "reports"):
            conn.execute(text(f"DROP TABLE {table}{cascade}"))
    with pytest.raises(smtplib.SMTPDataError) as info:
        await asyncio.to_thread(_send, receiver, ["tlsrpt@example.com"], MAIL)
    assert info.value.smtp_code == 451


async def test_starttls(store: Store, tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    config = ReceiverConfig(
        addresses=frozenset({"tlsrpt@example.com"}),
        tls_cert=tmp_path / "cert.pem",
        tls_key=tmp_path / "key.pem",
        require_starttls=True,
    )
    server, running = await _start(store, config)
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def send_tls() -> tuple[str | None, dict[str, tuple[int, bytes]]]:
        with smtplib.SMTP(running.host, running.port, timeout=10) as client:
            client.starttls(context=context)
            assert isinstance(client.sock, ssl.SSLSocket)
            return client.sock.version(), client.sendmail(FROM, ["tlsrpt@example.com"], MAIL)

    def send_plain() -> None:
        with smtplib.SMTP(running.host, running.port, timeout=10) as client:
            client.sendmail(FROM, ["tlsrpt@example.com"], MAIL)

    try:
        version, refused = await asyncio.to_thread(send_tls)
        assert version in ("TLSv1.2", "TLSv1.3") and refused == {}
        with pytest.raises(smtplib.SMTPException):
            await asyncio.to_thread(send_plain)  # require_starttls: plain text is refused
    finally:
        server.close()
        await server.wait_closed()
    assert store.count_reports() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"addresses": frozenset({"a@b"}), "tls_cert": Path("c.pem")},
        {"addresses": frozenset({"a@b"}), "require_starttls": True},
    ],
)
def test_bad_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ReceiverConfig(**kwargs)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_receive_command_smtp_and_http_until_sigterm(store_url: str, tmp_path: Path) -> None:
    """`stspilot receive` end to end: SMTP and HTTP in one process, clean stop on SIGTERM."""
    smtp_port, http_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stspilot",
            "receive",
            "--listen",
            f"127.0.0.1:{smtp_port}",
            "--domain",
            "example.com",
            "--db",
            store_url,
            "--http",
            f"127.0.0.1:{http_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(2)]
        assert lines[0].startswith("SMTP listening") and lines[1].startswith("HTTP listening")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            assert client.sendmail(FROM, ["tlsrpt@example.com"], MAIL) == {}
        response = httpx.post(
            f"http://127.0.0.1:{http_port}/tlsrpt",
            content=report_json("sender.example", "smtp-2"),
            headers={"content-type": "application/tlsrpt+json"},
            timeout=10,
        )
        assert response.status_code == 201
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        _reap(proc)
    with Store.open(store_url) as check:
        assert check.count_reports() == 2


# --- DKIM verification (lab-signed mail, keys from the lab DNS) ----------------------------------


def _lab_mails(key: LabDkimKey) -> tuple[bytes, bytes]:
    """A lab-signed report mail and another with one body byte changed, with CRLF line ends
    as SMTP carries them (smtplib sends bytes as they are)."""
    google = [r for r in generate_reports(20, seed=7) if r["organization-name"] == "Google Inc."]
    good, other = (to_email(r, dkim_key=key) for r in google[:2])
    at = other.index(b"aggregate TLS report")
    bad = other[:at] + b"A" + other[at + 1 :]
    return good.replace(b"\n", b"\r\n"), bad.replace(b"\n", b"\r\n")


def _dkim_results(store: Store) -> dict[str, tuple[str | None, set[str]]]:
    out = {}
    for item in store.list_reports():
        stored = store.get_report(item.pk)
        assert stored is not None and stored.envelope is not None
        dkim = stored.envelope.get("dkim")
        out[item.report_id] = (
            None if dkim is None else dkim["result"],
            {d.code for d in stored.deviations},
        )
    return out


async def test_receiver_verifies_dkim(store: Store) -> None:
    key = make_dkim_key()
    good, bad = _lab_mails(key)
    with KeyServer(key.records(REPORTER_DOMAINS)) as dns:
        verifier = DkimVerifier(DkimSettings(nameserver=dns.host, port=dns.port, timeout=2))
        config = ReceiverConfig(addresses=frozenset({"tlsrpt@example.com"}))
        server = await start_receiver(store, config, host="127.0.0.1", port=0, dkim=verifier)
        running = Running("127.0.0.1", server.sockets[0].getsockname()[1], store)
        try:
            for raw in (good, bad):
                assert await asyncio.to_thread(_send, running, ["tlsrpt@example.com"], raw) == {}
        finally:
            server.close()
            await server.wait_closed()
    results = sorted(_dkim_results(store).values(), key=lambda r: str(r[0]))
    assert [r[0] for r in results] == ["fail", "pass"]  # stored both: tolerate and record
    assert "mail.dkim.fail" in results[0][1] and "mail.dkim.fail" not in results[1][1]


def test_receive_command_verifies_dkim_by_default(store_url: str) -> None:
    key = make_dkim_key()
    good, bad = _lab_mails(key)
    smtp_port = _free_port()
    with KeyServer(key.records(REPORTER_DOMAINS)) as dns:
        argv = [
            sys.executable, "-m", "stspilot", "receive", "--listen", f"127.0.0.1:{smtp_port}",
            "--domain", "example.com", "--db", store_url, "--nameserver", dns.nameserver,
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().decode().startswith("SMTP listening")
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
                for raw in (good, bad):
                    assert client.sendmail(FROM, ["tlsrpt@example.com"], raw) == {}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            _reap(proc)
        assert dns.queries == 1  # two mails from one reporter: one key lookup
    with Store.open(store_url) as check:
        assert sorted(str(r[0]) for r in _dkim_results(check).values()) == ["fail", "pass"]


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """A ``stspilot receive`` child gone for good: killed if it still runs, pipes closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
