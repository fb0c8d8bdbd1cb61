"""A new SQLite store made from ``store/sqlite_head.sql`` (``versions.create_sqlite_head``)
is the store the migrations make: the same ``sqlite_master`` (tables, indexes, triggers and
their SQL, in order), the same ``alembic_version`` and the same rows. The script is compared
with what Alembic makes of an empty database, so a migration added without regenerating it
(``python -m stspilot.store.versions``) fails here, and new stores meanwhile go through
Alembic (its heads are not the migrations')."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from stspilot.cli import main
from stspilot.lab.sample_reports import write_corpus
from stspilot.store import Store, versions
from stspilot.store.batch import SqliteWriter, open_sqlite_writer
from stspilot.store.url import _sqlite_on_connect, make_engine

REGENERATE = "run .venv/bin/python -m stspilot.store.versions and commit sqlite_head.sql"


def _by_alembic(path: Path) -> Path:
    engine = make_engine(f"sqlite:///{path}")
    try:
        versions.alembic_upgrade(engine)
    finally:
        engine.dispose()
    return path


def _by_script(path: Path, script: Path | None = None) -> bool:
    db = sqlite3.connect(path)
    try:
        _sqlite_on_connect(db, None)
        return versions.create_sqlite_head(db, script)
    finally:
        db.close()


def _contents(path: Path) -> dict[str, Any]:
    """Everything of a database but where its pages are: sqlite_master, every table's rows,
    and the file settings the store's connections choose."""
    db = sqlite3.connect(path)
    try:
        master = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
        ).fetchall()
        tables = [name for kind, name, _, _ in master if kind == "table"]
        rows = {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
        settings = {
            p: db.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_size", "journal_mode", "user_version", "auto_vacuum", "encoding")
        }
        return {"master": master, "rows": rows, "settings": settings}
    finally:
        db.close()


def test_the_script_is_what_the_migrations_make_of_an_empty_database(tmp_path: Path) -> None:
    expected = versions.generate_sqlite_head(tmp_path / "alembic.sqlite3")
    assert versions.SQLITE_HEAD.read_text(encoding="utf-8") == expected, REGENERATE


def test_the_script_is_at_the_migrations_heads() -> None:
    config = Config()
    config.set_main_option("script_location", str(versions.MIGRATIONS))
    alembic_heads = set(ScriptDirectory.from_config(config).get_heads())
    heads, statements = versions.read_sqlite_head()
    assert heads == versions.migration_heads() == alembic_heads, REGENERATE
    assert statements[0].startswith("CREATE TABLE alembic_version")


def test_a_store_made_by_the_script_is_the_one_the_migrations_make(tmp_path: Path) -> None:
    by_alembic = _contents(_by_alembic(tmp_path / "alembic.sqlite3"))
    assert _by_script(tmp_path / "script.sqlite3")
    by_script = _contents(tmp_path / "script.sqlite3")
    assert by_script["master"] == by_alembic["master"]
    assert by_script["rows"] == by_alembic["rows"]
    assert by_script["rows"]["alembic_version"] == [(h,) for h in versions.migration_heads()]
    assert by_script["settings"] == by_alembic["settings"]
    assert by_script["settings"]["page_size"] == 8192  # set before the first table
    kinds = {kind for kind, *_ in by_script["master"]}
    assert kinds >= {"table", "index"}


def test_a_script_behind_the_migrations_is_not_used(tmp_path: Path) -> None:
    """A migration added without regenerating: the script's heads are not the migrations',
    so it makes nothing and Alembic makes the store."""
    stale = tmp_path / "stale.sql"
    text = versions.SQLITE_HEAD.read_text(encoding="utf-8")
    head = " ".join(sorted(versions.migration_heads()))
    stale.write_text(text.replace(f"-- heads: {head}\n", "-- heads: 0001\n"), encoding="utf-8")
    assert not _by_script(tmp_path / "a.sqlite3", stale)
    assert _contents(tmp_path / "a.sqlite3")["master"] == []  # nothing written


def test_a_stale_script_leaves_new_stores_to_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "stale.sql"
    stale.write_text("-- heads: 0001\n", encoding="utf-8")
    monkeypatch.setattr(versions, "SQLITE_HEAD", stale)
    db = tmp_path / "s.sqlite3"
    assert open_sqlite_writer(str(db)) is None  # Store migrates it
    Store.open(str(db)).close()
    assert _contents(db) == _contents(_by_alembic(tmp_path / "alembic.sqlite3"))


def test_a_failed_creation_leaves_an_empty_database(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sql"
    text = versions.SQLITE_HEAD.read_text(encoding="utf-8")
    cut = text.index("CREATE INDEX")  # after a few tables
    broken.write_text(text[:cut] + "CREATE TABLE checks (x);\n" + text[cut:], encoding="utf-8")
    db = tmp_path / "s.sqlite3"
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        _by_script(db, broken)
    assert _contents(db)["master"] == []  # one transaction: nothing of it stayed
    assert _by_script(db)  # made next time
    assert not _by_script(db)  # and only once


def test_stores_opened_at_once_are_made_once(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    opened: list[str] = []
    errors: list[BaseException] = []

    def open_one(k: int) -> None:
        try:
            found = open_sqlite_writer(str(db)) if k % 2 else Store.open(str(db))
            assert found is not None
            opened.append(type(found).__name__)
            found.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(opened) == ["SqliteWriter"] * 3 + ["Store"] * 3
    assert _contents(db) == _contents(_by_alembic(tmp_path / "alembic.sqlite3"))


def test_ingest_into_a_new_store_writes_through_sqlite3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    write_corpus(folder, 4, seed=2, formats=("json.gz",))
    used: list[str] = []
    real = open_sqlite_writer

    def spy(url: str | None) -> SqliteWriter | None:
        found = real(url)
        used.append(type(found).__name__)
        return found

    monkeypatch.setattr("stspilot.store.batch.open_sqlite_writer", spy)
    db = tmp_path / "new.sqlite3"
    assert main(["ingest", "--db", str(db), str(folder)]) == 0
    assert capsys.readouterr().out == "4 new, 0 duplicate, 0 quarantined\n"
    assert used == ["SqliteWriter"]
    with Store.open(str(db)) as store:
        assert store.count_reports() == 4
