"""Alembic migrations of the store, run by ``Store.open`` itself (users need no alembic.ini)."""
