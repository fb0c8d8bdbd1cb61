"""The one persistence API (SQLite by default, PostgreSQL by URL): ``Store.open(url)``.

Lazy (PEP 562): ``import stspilot.store.rows`` (the ingest decode workers build rows without a
database) must not load SQLAlchemy, so ``Store`` and ``open_store`` are
imported on first use (the models are plain dataclasses).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stspilot.store.models import (
    AddResult,
    BatchResult,
    CheckRecord,
    NewQuarantine,
    NewReport,
    QuarantineItem,
    QuarantineResult,
    ReportListing,
    StoredReport,
)

if TYPE_CHECKING:
    from stspilot.store.api import Store, open_store

__all__ = [
    "AddResult",
    "BatchResult",
    "CheckRecord",
    "NewQuarantine",
    "NewReport",
    "QuarantineItem",
    "QuarantineResult",
    "ReportListing",
    "Store",
    "StoredReport",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name in ("Store", "open_store"):  # the database layer: SQLAlchemy, loaded on first use
        from stspilot.store import api

        return getattr(api, name)
    raise AttributeError(f"module 'stspilot.store' has no attribute {name!r}")
