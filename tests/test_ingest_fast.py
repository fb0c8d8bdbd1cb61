"""Bulk ingest's fast start: ``stspilot ingest PATH...`` parsed without Typer
(``cli/ingest_run.py``), and an up-to-date SQLite store written through ``sqlite3`` alone
(``store.batch.SqliteWriter``), which must store exactly what ``Store`` stores."""

from __future__ import annotations

import gzip
import inspect
import json
import sqlite3
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from intake_samples import report_json, report_mail
from stspilot.cli import main
from stspilot.cli.ingest_run import FAST_OPTIONS, fast_ingest
from stspilot.errors import StoreRefused
from stspilot.ingest.bulk import ingest_paths
from stspilot.ingest.mail import fast_report_parts
from stspilot.ingest.pipeline import Tally
from stspilot.lab.sample_reports import generate_reports, to_gzip, write_corpus
from stspilot.store import Store
from stspilot.store.batch import SqliteWriter, open_sqlite_writer
from stspilot.store.rows import RowBuilder
from stspilot.tlsrpt.schema import Limits

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
TABLES = {
    "reports": "stored_at",  # the commit's time: differs between the two runs
    "report_policies": None,
    "failure_details": None,
    "raw_blobs": None,
    "quarantine": None,
}


def _folder(root: Path) -> Path:
    write_corpus(root, 12, seed=3, formats=("json.gz", "eml", "json"))
    (root / "copy.json.gz").write_bytes(next(root.glob("*.json.gz")).read_bytes())
    (root / "bad.eml").write_bytes(b"From: a@b\r\nSubject: cron\r\n\r\nhello\r\n")
    (root / "two.eml").write_bytes(
        report_mail(report_json("sender.example", "w1", failures=2), report_json("x", "w2"))
    )
    return root


def _dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with sqlite3.connect(db) as conn:
        for table, skip in TABLES.items():
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            names = [d[0] for d in cur.description]
            out[table] = [
                tuple(v for n, v in zip(names, row, strict=True) if n != skip)
                for row in cur.fetchall()
            ]
    return out


def _new_store(db: Path) -> None:
    Store.open(str(db)).close()  # created and migrated


@pytest.mark.parametrize("workers", [1, 2])
def test_sqlite_writer_stores_what_store_stores(tmp_path: Path, workers: int) -> None:
    folder = _folder(tmp_path / "in")
    tallies = []
    for name in ("store", "writer"):
        db = tmp_path / f"{name}.sqlite3"
        _new_store(db)
        target: Any = Store.open(str(db)) if name == "store" else open_sqlite_writer(str(db))
        assert isinstance(target, SqliteWriter) == (name == "writer")
        try:
            for _ in range(2):  # the second run: every report a duplicate
                tallies.append(
                    ingest_paths(target, [folder], batch_size=5, workers=workers, clock=lambda: NOW)
                )
        finally:
            target.close()
    assert tallies[0] == tallies[2] and tallies[1] == tallies[3]
    assert tallies[0].new >= 12 and tallies[0].duplicate > 0 and tallies[0].quarantined == 1
    assert tallies[1].new == 0
    store_rows, writer_rows = _dump(tmp_path / "store.sqlite3"), _dump(tmp_path / "writer.sqlite3")
    assert all(store_rows[t] for t in TABLES)
    assert store_rows == writer_rows


def _past_int64(report_id: str) -> bytes:
    """Each count valid I-JSON, their sum past 2**63 - 1: SQLite cannot bind it."""
    doc = json.loads(report_json("sender.example", report_id))
    policy = doc["policies"][0]
    policy["summary"]["total-successful-session-count"] = 2**53 - 1
    doc["policies"] = [policy] * 1100
    return json.dumps(doc).encode()


def test_sqlite_writer_refuses_values_whole_batch_rolled_back(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    _new_store(db)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}-good.json").write_bytes(report_json("sender.example", f"good-{i}"))
    (folder / "1-huge.json").write_bytes(_past_int64("huge"))
    writer = open_sqlite_writer(str(db))
    assert writer is not None
    try:
        from stspilot.ingest.pipeline import prepare_unit

        unit = prepare_unit(
            _past_int64("huge"), origin="x", received_at=NOW, limits=Limits(max_sessions=2**70)
        )
        rows = [RowBuilder("sqlite").build(r) for r in unit.reports]
        with pytest.raises(StoreRefused):
            writer.ingest_rows(rows)
        assert _dump(db)["reports"] == []  # nothing of the batch
        # The bulk path: the batch again one unit at a time, the refused one quarantined.
        tally = ingest_paths(writer, [folder], limits=Limits(max_sessions=2**70))
        assert tally == Tally(new=3, quarantined=1)
    finally:
        writer.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT code FROM quarantine").fetchall() == [("report.store.refused",)]


def test_open_sqlite_writer_leaves_everything_else_to_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.sqlite3"
    writer = open_sqlite_writer(str(db))  # no store yet: made at the newest schema
    assert writer is not None
    writer.close()
    assert open_sqlite_writer(str(tmp_path / "nowhere" / "s.sqlite3")) is None  # no folder
    for url in (str(db), f"sqlite:///{db}"):
        writer = open_sqlite_writer(url)
        assert writer is not None
        writer.close()
    monkeypatch.setenv("STSPILOT_DATABASE_URL", str(db))
    writer = open_sqlite_writer(None)
    assert writer is not None
    writer.close()
    for url in (f"sqlite:///{db}?mode=ro", "postgresql://u@127.0.0.1:1/x", str(tmp_path)):
        assert open_sqlite_writer(url) is None, url
    with sqlite3.connect(db) as conn:  # an older schema: Store migrates it
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert open_sqlite_writer(str(db)) is None
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database" * 100)
    assert open_sqlite_writer(str(tmp_path / "junk.sqlite3")) is None


def test_fast_parser_has_the_typer_commands_options() -> None:
    from stspilot.cli.ingest import ingest_command

    params = {p.name: p.default for p in inspect.signature(ingest_command).parameters.values()}
    for dest, flags, _kind, value, least in FAST_OPTIONS:
        option = params[dest]
        assert set(flags) <= set(option.param_decls), dest
        assert option.default == value, dest
        assert getattr(option, "min", None) == least, dest


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["imap"],
        ["-"],
        ["x", "--workers", "-1"],
        ["x", "--batch-size", "0"],
        ["x", "--verify-dkim"],
        ["x", "--jsonl"],
        ["x", "--unknown"],
    ],
)
def test_fast_path_leaves_other_command_lines_to_typer(args: list[str]) -> None:
    assert fast_ingest(args) is None


def test_cli_stores_a_mail_whose_file_name_uses_rfc2231(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long attachment name, which the stdlib's own generator writes as RFC 2231
    continuations (``filename*0*=utf-8''...``): read by the fast path, stored, not quarantined.
    (The lab's ``to_email`` writes plain ``filename="..."``: compat32 does not fold it.)"""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, report in enumerate(generate_reports(3, seed=11, domains=("example.com",))):
        msg = EmailMessage(policy=default)
        msg["From"] = "noreply-smtp-tls-reporting@google.com"
        msg["Subject"] = f"Report Domain: example.com Submitter: google.com Report-ID: <{i}@g>"
        msg.set_content("This is an aggregate TLS report.")
        name = f"google.com!a-rather-long-customer-domain.example!1735689600!17357759{i}.json.gz"
        msg.add_attachment(to_gzip(report), "application", "tlsrpt+gzip", filename=name)
        raw = msg.as_bytes()
        assert b"filename*0*=" in raw
        assert fast_report_parts(raw, Limits()) is not None
        (folder / f"{i}.eml").write_bytes(raw)
    db = tmp_path / "s.sqlite3"
    assert main(["ingest", "--db", str(db), "--json", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "new": 3,
        "duplicate": 0,
        "quarantined": 0,
        "errors": 0,
    }
    assert main(["ingest", "--db", str(db), str(folder)]) == 0  # SqliteWriter this time
    assert capsys.readouterr().out == "0 new, 3 duplicate, 0 quarantined\n"


def test_cli_ingest_of_a_gzip_file_without_store_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(report_json("s.example", "r1")))
    db = tmp_path / "new" / "s.sqlite3"
    db.parent.mkdir()
    assert main(["ingest", str(tmp_path / "a.json.gz"), "--db", str(db)]) == 0
    assert capsys.readouterr().out == "1 new, 0 duplicate, 0 quarantined\n"
    assert main(["ingest", str(tmp_path / "missing"), "--db", str(db)]) == 4
