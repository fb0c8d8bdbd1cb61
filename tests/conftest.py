"""Shared fixtures. Module-specific fixtures live next to their tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from stspilot.store import Store
    from web_support import World

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real reports and policies (never copied into the repository).

    Looked up at ``$STSPILOT_CORPUS`` or ``../shared/corpus`` next to the checkout; tests that
    need it skip cleanly where it is absent.
    """
    path = Path(os.environ.get("STSPILOT_CORPUS", REPO.parent / "shared" / "corpus"))
    if not (path / "SOURCES.md").is_file():
        pytest.skip(f"shared corpus not found at {path}")
    return path


# --- store (store engineer) -------------------------------------------------------------------

TEST_DB_ENV = "STSPILOT_TEST_DATABASE_URL"


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """A database URL of an empty, isolated database for one test.

    SQLite: a file in ``tmp_path``. With ``$STSPILOT_TEST_DATABASE_URL`` (PostgreSQL): a fresh
    schema made for this test and dropped after it, selected through ``search_path`` in the URL.
    """
    url = os.environ.get(TEST_DB_ENV)
    if not url:
        yield f"sqlite:///{tmp_path / 'stspilot.sqlite3'}"
        return
    import uuid

    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    base = make_url(url)
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {base.render_as_string()} not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open, migrated ``Store`` on an empty database (SQLite, or PostgreSQL when
    ``$STSPILOT_TEST_DATABASE_URL`` is set); closed after the test."""
    from stspilot.store import Store

    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


# -- the web app in-process (tests/web_support.py); a test module may define its own ----------


@pytest.fixture
def world(store: Store) -> World:
    """The app's world on ``store`` (``web_support.build_world``): tenants, users, clock."""
    from web_support import build_world

    return build_world(store)


@pytest.fixture
def app(world: World) -> object:
    from web_support import make_app

    return make_app(world)


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """httpx over ASGI to ``app`` (no socket), peer 127.0.0.1."""
    from web_support import client_for

    async with client_for(app) as c:
        yield c
