"""The one persistence API (SQLite by default, PostgreSQL by URL): ``Store.open(url)``."""

from stspilot.store.api import Store, open_store
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
