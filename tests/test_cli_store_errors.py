"""Database errors reach people as one line naming the store (password hidden) and the cause;
read commands read a read-only store and never create an empty one (issue 12)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stspilot.cli import EXIT_OPERATIONAL, main

REPORT = {
    "organization-name": "Example Sender",
    "date-range": {
        "start-datetime": "2026-11-01T00:00:00Z",
        "end-datetime": "2026-11-01T23:59:59Z",
    },
    "contact-info": "tlsrpt@sender.example",
    "report-id": "ro-1",
    "policies": [
        {
            "policy": {"policy-type": "no-policy-found", "policy-domain": "example.com"},
            "summary": {"total-successful-session-count": 5, "total-failure-session-count": 0},
        }
    ],
}


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert "sqlalche.me" not in err and "Traceback" not in err
    return err


def test_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps(REPORT))
    db = tmp_path / "no" / "such" / "folder" / "s.db"
    assert main(["ingest", str(report), "--db", str(db)]) == EXIT_OPERATIONAL
    err = one_line(capsys.readouterr().err)
    assert f"the store sqlite:///{db}" in err
    assert f"its folder {db.parent} does not exist" in err


def test_refused_connection_hides_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://stspilot:s3cret-pw@127.0.0.1:9/reports"  # port 9: nothing listens
    assert main(["monitor", "add", "example.com", "--db", url]) == EXIT_OPERATIONAL
    err = one_line(capsys.readouterr().err)
    assert "s3cret-pw" not in err and "stspilot:***@127.0.0.1:9/reports" in err
    assert err.endswith("connection refused (is the server running there?)\n")


def test_read_commands_do_not_create_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "none.db"
    for argv in (
        ["reports", "summary"],
        ["reports", "list"],
        ["reports", "quarantine"],
        ["monitor", "list"],
        ["monitor", "alerts"],
        ["host", "list"],
        ["tenant", "list"],
        ["user", "list"],
    ):
        assert main([*argv, "--db", str(db)]) == EXIT_OPERATIONAL, argv
        assert one_line(capsys.readouterr().err).startswith(f"stspilot: no store at {db}:")
    assert list(tmp_path.iterdir()) == []


def _make_read_only(folder: Path) -> None:
    """Permissions bind ordinary users; root is held by the immutable flag (chattr +i)."""
    for path in [*folder.iterdir(), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.getuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a store read-only")
        for path in [*folder.iterdir(), folder]:
            subprocess.run(["chattr", "+i", str(path)], check=True)


def _make_writable(folder: Path) -> None:
    if os.getuid() == 0 and shutil.which("chattr"):
        for path in [folder, *folder.iterdir()]:
            subprocess.run(["chattr", "-i", str(path)], check=False)
    folder.chmod(0o755)


def test_read_only_store_is_readable_and_a_write_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "s.db"
    report = tmp_path / "r.json"
    report.write_text(json.dumps(REPORT))
    assert main(["ingest", str(report), "--db", str(db)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["s.db"]  # no -wal/-shm left behind
    capsys.readouterr()
    _make_read_only(folder)
    try:
        assert main(["reports", "list", "--json", "--db", str(db)]) == 0
        assert [r["report_id"] for r in json.loads(capsys.readouterr().out)] == ["ro-1"]
        assert main(["monitor", "add", "example.com", "--db", str(db)]) == EXIT_OPERATIONAL
        err = one_line(capsys.readouterr().err)
        assert f"the store sqlite:///{db}" in err and "it is read-only" in err
    finally:
        _make_writable(folder)


@pytest.mark.db
def test_a_read_command_on_an_empty_database_says_there_is_no_store(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On both engines: a read finds no store and creates none (no file, no tables)."""
    from sqlalchemy import create_engine, inspect

    assert main(["reports", "list", "--db", store_url]) == EXIT_OPERATIONAL
    err = one_line(capsys.readouterr().err)
    assert err.startswith("stspilot: no store ")
    if store_url.startswith("sqlite"):
        assert not Path(store_url.removeprefix("sqlite:///")).exists()
    else:
        engine = create_engine(store_url)
        try:
            assert inspect(engine).get_table_names() == []
        finally:
            engine.dispose()
    # A write command makes the store; the read then finds it.
    assert main(["monitor", "add", "example.com", "--db", store_url]) == 0
    capsys.readouterr()
    assert main(["monitor", "list", "--db", store_url, "--json"]) == 0
    assert [r["domain"] for r in json.loads(capsys.readouterr().out)] == ["example.com"]
