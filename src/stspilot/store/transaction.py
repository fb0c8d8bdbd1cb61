"""One transaction on the store's engine, with driver errors turned into ``StoreError``.

Every table module (reports, accounts, hosting, monitor) opens its transactions here, so a
write is marked the same way (``stspilot_write``: SQLite takes its write lock at BEGIN) and a
database failure reaches callers as the same typed error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from stspilot.store.url import store_error


@contextmanager
def transaction(
    engine: Engine,
    *,
    write: bool,
    on_conflict: Callable[[IntegrityError], Exception] | None = None,
) -> Iterator[Connection]:
    """Yield a connection inside BEGIN ... COMMIT (ROLLBACK on any error).

    ``on_conflict`` turns a constraint violation into the caller's own error (e.g. 409).
    """
    try:
        with engine.connect() as conn:
            if write:
                conn = conn.execution_options(stspilot_write=True)
            with conn.begin():
                yield conn
    except IntegrityError as exc:
        if on_conflict is not None:
            raise on_conflict(exc) from exc
        raise store_error("write to", engine.url, exc) from exc
    except SQLAlchemyError as exc:
        raise store_error("write to" if write else "read", engine.url, exc) from exc
