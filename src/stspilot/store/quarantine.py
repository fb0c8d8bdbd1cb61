"""The quarantine's methods of ``Store``: bytes that could not be read as reports, kept with
why, listed, read back and resolved. A mixin so that ``Store``'s public methods stay one
class; the transactions are ``Store._read`` and ``Store._write``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select

from stspilot.errors import StoreError
from stspilot.store import batch
from stspilot.store.models import NewQuarantine, QuarantineItem, QuarantineResult
from stspilot.store.schema import quarantine

_q = quarantine.c
# QuarantineItem's fields, in order; the raw bytes' length, not the bytes.
_ITEM_COLUMNS = (
    _q.id,
    _q.sha256,
    _q.size,
    _q.origin,
    _q.code,
    _q.reason,
    _q.received_at,
    _q.resolved,
    _q.resolved_at,
    _q.resolved_report_pk,
    _q.note,
    func.length(_q.raw),
)


class QuarantineMethods:
    """Mixed into ``Store`` (``store/api.py``)."""

    if TYPE_CHECKING:

        def _read(self) -> AbstractContextManager[Connection]: ...

        def _write(self, *, checked_keys: bool = True) -> AbstractContextManager[Connection]: ...

    def quarantine(
        self, raw: bytes, *, origin: str, code: str, reason: str, received_at: datetime
    ) -> QuarantineResult:
        """Keep bytes that could not be read, with why; the same bytes twice are one entry."""
        with self._write() as conn:
            return batch.add_quarantine(conn, NewQuarantine(raw, origin, code, reason, received_at))

    def list_quarantine(
        self, *, include_resolved: bool = False, limit: int = 100, offset: int = 0
    ) -> list[QuarantineItem]:
        query = select(*_ITEM_COLUMNS)
        if not include_resolved:
            query = query.where(_q.resolved.is_(False))
        query = query.order_by(_q.id).limit(limit).offset(offset)
        with self._read() as conn:
            return [QuarantineItem(*tuple(row)) for row in conn.execute(query)]

    def get_quarantine(self, id: int) -> QuarantineItem | None:
        query = select(*_ITEM_COLUMNS).where(_q.id == id)
        with self._read() as conn:
            items = [QuarantineItem(*tuple(row)) for row in conn.execute(query)]
        return items[0] if items else None

    def quarantine_raw(self, id: int) -> bytes:
        with self._read() as conn:
            raw = conn.execute(select(_q.raw).where(_q.id == id)).scalar_one_or_none()
        if raw is None:
            raise StoreError(f"no quarantine entry {id}")
        return bytes(raw)

    def resolve_quarantine(
        self, id: int, *, report_pk: int | None, note: str, resolved_at: datetime | None = None
    ) -> None:
        """Mark an entry handled (re-tried successfully, or dismissed with a note)."""
        with self._write() as conn:
            done = conn.execute(
                quarantine.update()
                .where(_q.id == id)
                .values(
                    resolved=True,
                    resolved_at=resolved_at or batch.now_utc(),
                    resolved_report_pk=report_pk,
                    note=note,
                )
            )
            if done.rowcount != 1:
                raise StoreError(f"no quarantine entry {id}")

    def update_quarantine_reason(self, id: int, *, code: str, reason: str) -> None:
        """A re-try failed again, maybe differently: keep the newest reason."""
        with self._write() as conn:
            conn.execute(quarantine.update().where(_q.id == id).values(code=code, reason=reason))
