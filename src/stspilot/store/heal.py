"""The monitor's self-healing memory: which domains opted in (``monitor_heal``) and what drift
each one was last seen with (``monitor_sightings``), so "seen in two consecutive checks at least
N minutes apart" survives a monitor restart and is shared by every worker.

A sighting row exists only while every check since ``first_seen_at`` saw the same drift (the
same ``fingerprint``): a check that does not see it deletes the row, so the next sighting starts
over. The row is written in the same round as the check that saw it (the domain is claimed, so
one worker at a time updates it).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    delete,
    select,
    update,
)

from stspilot.store.schema import UtcDateTime, metadata
from stspilot.store.transaction import transaction

if TYPE_CHECKING:
    from stspilot.store.api import Store

monitor_heal = Table(
    "monitor_heal",
    metadata,
    Column("domain", String(255), primary_key=True),
    # repair "policy changed without an id bump": publish a new id for the policy served
    Column("id_bump", Boolean(), nullable=False, default=False),
    # keep the policy's mx lines in line with the live MX set
    Column("mx_sync", Boolean(), nullable=False, default=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

monitor_sightings = Table(
    "monitor_sightings",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("kind", String(32), primary_key=True),  # heal.KINDS
    Column("fingerprint", String(64), nullable=False),  # what exactly was seen
    Column("detail", Text(), nullable=False),  # the same, for people
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("checks", Integer(), nullable=False),  # consecutive checks that saw it
)


@dataclass(frozen=True, slots=True)
class HealSettings:
    domain: str
    id_bump: bool = False
    mx_sync: bool = False
    updated_at: datetime | None = None
    updated_by: str = ""

    @property
    def any(self) -> bool:
        return self.id_bump or self.mx_sync


@dataclass(frozen=True, slots=True)
class Sighting:
    domain: str
    kind: str
    fingerprint: str
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    checks: int


class HealStore:
    """Opt-in flags and sightings; one instance per ``Store``, safe across threads."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _conn(self, *, write: bool) -> AbstractContextManager[Connection]:
        return transaction(self._engine, write=write)

    # -- opt-in -------------------------------------------------------------------------------

    def settings(self, domain: str) -> HealSettings:
        h = monitor_heal.c
        with self._conn(write=False) as conn:
            row = conn.execute(select(monitor_heal).where(h.domain == domain)).first()
        if row is None:
            return HealSettings(domain)
        return HealSettings(row.domain, row.id_bump, row.mx_sync, row.updated_at, row.updated_by)

    def all_settings(self) -> list[HealSettings]:
        with self._conn(write=False) as conn:
            rows = conn.execute(select(monitor_heal).order_by(monitor_heal.c.domain))
            return [HealSettings(*row) for row in rows]

    def opt_in(
        self,
        domain: str,
        *,
        now: datetime,
        actor: str,
        id_bump: bool | None = None,
        mx_sync: bool | None = None,
    ) -> HealSettings:
        """Change the flags given (None: keep); a domain with both off loses its row."""
        old = self.settings(domain)
        new = HealSettings(
            domain,
            old.id_bump if id_bump is None else id_bump,
            old.mx_sync if mx_sync is None else mx_sync,
            now,
            actor[:128],
        )
        h = monitor_heal.c
        with self._conn(write=True) as conn:
            conn.execute(delete(monitor_heal).where(h.domain == domain))
            if new.any:
                conn.execute(
                    monitor_heal.insert(),
                    {
                        "domain": domain,
                        "id_bump": new.id_bump,
                        "mx_sync": new.mx_sync,
                        "updated_at": now,
                        "updated_by": new.updated_by,
                    },
                )
            else:  # opting out forgets what was pending
                conn.execute(delete(monitor_sightings).where(monitor_sightings.c.domain == domain))
        return new

    # -- sightings ----------------------------------------------------------------------------

    def sightings(self, domain: str) -> dict[str, Sighting]:
        s = monitor_sightings.c
        with self._conn(write=False) as conn:
            rows = conn.execute(select(monitor_sightings).where(s.domain == domain))
            return {row.kind: Sighting(*row) for row in rows}

    def pending_domains(self) -> set[str]:
        """Domains with a sighting still counting (a check that sees nothing of them has
        nothing to write: ``record`` is skipped)."""
        with self._conn(write=False) as conn:
            return set(conn.execute(select(monitor_sightings.c.domain).distinct()).scalars())

    def record(
        self,
        domain: str,
        seen: Sequence[tuple[str, str, str]],
        *,
        kinds: Sequence[str],
        now: datetime,
    ) -> dict[str, Sighting]:
        """One check's sightings: ``seen`` is (kind, fingerprint, detail) for each drift it saw;
        ``kinds`` every kind it looked for. The same fingerprint as the stored row extends it;
        another one starts it over; a kind looked for and not seen is forgotten (the next
        sighting is a first one). Returns the rows as they are now."""
        s = monitor_sightings.c
        now_seen = {kind: (fp, detail) for kind, fp, detail in seen}
        with self._conn(write=True) as conn:
            rows = {
                row.kind: row
                for row in conn.execute(select(monitor_sightings).where(s.domain == domain))
            }
            for kind in kinds:
                row = rows.get(kind)
                where = (s.domain == domain) & (s.kind == kind)
                if kind not in now_seen:
                    if row is not None:
                        conn.execute(delete(monitor_sightings).where(where))
                    continue
                fp, detail = now_seen[kind]
                if row is not None and row.fingerprint == fp:
                    conn.execute(
                        update(monitor_sightings)
                        .where(where)
                        .values(last_seen_at=now, checks=row.checks + 1, detail=detail)
                    )
                    continue
                if row is not None:
                    conn.execute(delete(monitor_sightings).where(where))
                conn.execute(
                    monitor_sightings.insert(),
                    {
                        "domain": domain,
                        "kind": kind,
                        "fingerprint": fp,
                        "detail": detail,
                        "first_seen_at": now,
                        "last_seen_at": now,
                        "checks": 1,
                    },
                )
            got = conn.execute(select(monitor_sightings).where(s.domain == domain))
            return {row.kind: Sighting(*row) for row in got}

    def forget(self, domain: str, kind: str) -> None:
        """After a repair: the drift must be seen twice again before another one."""
        s = monitor_sightings.c
        with self._conn(write=True) as conn:
            conn.execute(delete(monitor_sightings).where((s.domain == domain) & (s.kind == kind)))
