"""A server that cannot listen says so in one line and exits 4 (issue 12)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from stspilot.cli import EXIT_OPERATIONAL, main


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--listen", "127.0.0.1:{port}"],
        [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--smtp",
            "127.0.0.1:{port}",
            "--smtp-domain",
            "a.test",
        ],
        ["receive", "--listen", "127.0.0.1:{port}", "--no-verify-dkim", "--domain", "example.com"],
        [
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:{port}",
            "--no-verify-dkim",
            "--domain",
            "example.com",
        ],
    ],
    ids=["serve", "serve-smtp", "receive-smtp", "receive-http"],
)
def test_a_port_in_use_is_one_line_and_exit_4(
    argv: list[str],
    busy_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STSPILOT_SECRET_KEY", "k" * 32)
    args = [a.format(port=busy_port) for a in argv]
    option = args[args.index(f"127.0.0.1:{busy_port}") - 1]
    assert main([*args, "--db", str(tmp_path / "s.db")]) == EXIT_OPERATIONAL
    err = capsys.readouterr().err
    expected = f"cannot listen on 127.0.0.1:{busy_port} ({option}): the address is already in use"
    assert err == f"stspilot: {expected}\n"
