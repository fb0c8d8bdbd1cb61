"""What the public report intake may store: the domains it takes reports for, and how many
bytes each domain, each tenant and the quarantine stored on one UTC day.

``POST /tlsrpt`` is open to the Internet (RFC 8460 §5.4 has no authentication), so what one
sender can make the service keep is bounded here (issue 15): reports only for domains someone
hosts or monitors, and a daily byte budget per domain, per tenant and for the quarantine. The
counters live in the database (``intake_usage``), so every replica reads the same budget; a
unit is counted after its commit, so replicas that commit at the same moment can overshoot a
cap by at most one batch each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Column, Connection, Date, Integer, String, Table, select

from stspilot.store.hosting import hosted_domains
from stspilot.store.monitor import monitor_domains
from stspilot.store.schema import metadata
from stspilot.store.transaction import transaction

if TYPE_CHECKING:
    from stspilot.store.api import Store

__all__ = ["QUARANTINE_SCOPE", "IntakeLedger", "intake_usage", "scope_domain", "scope_tenant"]

intake_usage = Table(
    "intake_usage",
    metadata,
    Column("day", Date(), primary_key=True),
    # "domain:<name>", "tenant:<id>" or "quarantine"
    Column("scope", String(300), primary_key=True),
    Column("bytes", BigInteger(), nullable=False),
    Column("units", Integer(), nullable=False),
)

QUARANTINE_SCOPE = "quarantine"


def scope_domain(domain: str) -> str:
    return f"domain:{domain}"


def scope_tenant(tenant_id: int) -> str:
    return f"tenant:{tenant_id}"


class IntakeLedger:
    """The intake's view of the store: known domains, and the daily usage counters."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _conn(self, *, write: bool) -> AbstractContextManager[Connection]:
        return transaction(self._engine, write=write)

    def known_domains(self) -> dict[str, int | None]:
        """Every domain reports are taken for: hosted ones with their tenant's id, monitored
        ones (not hosted) with None."""
        with self._conn(write=False) as conn:
            known: dict[str, int | None] = {
                str(d): None for d in conn.execute(select(monitor_domains.c.domain)).scalars()
            }
            for domain, tenant_id in conn.execute(
                select(hosted_domains.c.domain, hosted_domains.c.tenant_id)
            ):
                known[str(domain)] = int(tenant_id)
        return known

    def usage(self, day: date, scopes: Iterable[str]) -> dict[str, int]:
        """Bytes stored on ``day`` per scope (absent scopes: 0)."""
        wanted = sorted(set(scopes))
        if not wanted:
            return {}
        u = intake_usage.c
        with self._conn(write=False) as conn:
            rows = conn.execute(
                select(u.scope, u.bytes).where(u.day == day, u.scope.in_(wanted))
            ).all()
        found = {str(scope): int(size) for scope, size in rows}
        return {scope: found.get(scope, 0) for scope in wanted}

    def add(self, day: date, spent: Mapping[str, int]) -> None:
        """Count bytes stored on ``day`` (one unit per scope named)."""
        if not spent:
            return
        u = intake_usage.c
        with self._conn(write=True) as conn:
            for scope, size in sorted(spent.items()):
                done = conn.execute(
                    intake_usage.update()
                    .where(u.day == day, u.scope == scope)
                    .values(bytes=u.bytes + size, units=u.units + 1)
                )
                if done.rowcount == 0:
                    conn.execute(
                        intake_usage.insert(),
                        {"day": day, "scope": scope, "bytes": size, "units": 1},
                    )

    def forget_before(self, day: date) -> int:
        """Drop the counters of days before ``day``; how many rows went."""
        with self._conn(write=True) as conn:
            done = conn.execute(intake_usage.delete().where(intake_usage.c.day < day))
        return int(done.rowcount or 0)
