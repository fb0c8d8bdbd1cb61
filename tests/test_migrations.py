"""Migrations build the schema the code expects, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from stspilot.store import Store
from stspilot.store.schema import metadata
from stspilot.store.versions import MIGRATIONS

pytestmark = pytest.mark.db


def _all_tables() -> None:
    """Other engineers add table modules to the store package on the same MetaData (hosting,
    accounts): import them all so the comparison sees every table the migrations create."""
    import importlib
    import pkgutil

    import stspilot.store

    for module in pkgutil.iter_modules(stspilot.store.__path__):
        if module.name != "migrations":
            importlib.import_module(f"stspilot.store.{module.name}")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def test_upgrade_from_empty_matches_the_models(store_url: str) -> None:
    _all_tables()
    with Store.open(store_url) as store, store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        heads = ScriptDirectory.from_config(_config()).get_heads()
        assert MigrationContext.configure(conn).get_current_heads() == tuple(heads)
        tables = set(inspect(conn).get_table_names())
    assert tables >= {t.name for t in metadata.sorted_tables} | {"alembic_version"}


def test_downgrade_to_empty_and_back(store_url: str) -> None:
    with Store.open(store_url) as store:
        with store.engine.connect() as conn:
            config = _config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
            conn.commit()
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        store.migrate()
        assert store.count_reports() == 0


def test_every_version_has_one_parent() -> None:
    script = ScriptDirectory.from_config(_config())
    revisions = list(script.walk_revisions())
    assert len(script.get_heads()) == 1
    assert revisions[-1].down_revision is None
    assert all(r.module.__doc__ for r in revisions), "every migration says what it does"


def test_concurrent_first_opens_migrate_once(store_url: str) -> None:
    import threading

    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            Store.open(store_url).close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Store.open(store_url) as store:
        assert store.count_reports() == 0


def test_migration_heads_read_from_the_files_match_alembic() -> None:
    from stspilot.store.versions import migration_heads

    assert migration_heads() == set(ScriptDirectory.from_config(_config()).get_heads())


def test_an_up_to_date_store_opens_without_alembic(store_url: str) -> None:
    """Opening a current database reads alembic_version only (Alembic is not even imported);
    a new one goes through Alembic, but for SQLite (``store/sqlite_head.sql``)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from stspilot.store import Store\n"
        f"Store.open({store_url!r}).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    made = "False" if store_url.startswith("sqlite") else "True"
    for expected in (made, "False"):  # made (and migrated), then opened as it is
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == expected, out.stderr[-2000:]
    with Store.open(store_url) as store, store.engine.connect() as conn:
        (version,) = conn.exec_driver_sql("SELECT version_num FROM alembic_version").one()
    assert {version} == set(ScriptDirectory.from_config(_config()).get_heads())
