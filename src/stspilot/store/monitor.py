"""The monitor's schedule and alert memory: ``monitor_domains`` (the work queue) and
``monitor_alerts`` (what was sent, for de-duplication), in the ``Store``'s database.

The database is the queue: a worker claims due domains with one conditional UPDATE (due, and
not claimed by a live lease) stamped with its own claim token, then reads back the rows that
carry the token. Two workers racing for a row cannot both match the condition, on SQLite (one
writer at a time) or PostgreSQL (READ COMMITTED re-checks the WHERE of a row another
transaction just updated), so a domain is never checked twice in one round.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)

from stspilot.store.schema import UtcDateTime, metadata
from stspilot.store.transaction import transaction
from stspilot.sts.names import fold_name

if TYPE_CHECKING:
    from stspilot.monitor.alerts import Alert
    from stspilot.store.api import Store

monitor_domains = Table(
    "monitor_domains",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("added_at", UtcDateTime(), nullable=False),
    Column("next_run_at", UtcDateTime(), nullable=False),
    Column("claimed_until", UtcDateTime()),
    Column("claimed_by", String(128)),
    Column("claim_token", String(32)),
    Column("failures", Integer(), nullable=False, default=0),
    Column("last_run_at", UtcDateTime()),
    Column("last_error", Text()),
)
Index(None, monitor_domains.c.next_run_at)
Index(None, monitor_domains.c.claim_token)

monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("domain", String(255), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text(), nullable=False),
    Column("lasting", Boolean(), nullable=False),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("last_sent_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
)
Index(None, monitor_alerts.c.domain, monitor_alerts.c.resolved_at)


_SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}  # worst first


@dataclass(frozen=True, slots=True)
class ScheduledDomain:
    domain: str
    added_at: datetime
    next_run_at: datetime
    claimed_until: datetime | None
    claimed_by: str | None
    failures: int
    last_run_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """Domains one worker holds until ``until``; ``token`` proves the claim when finishing."""

    token: str
    worker: str
    until: datetime
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to deliver: an alert, or the resolution of an earlier lasting one."""

    key: str
    domain: str
    code: str
    severity: str
    message: str
    resolved: bool = False


class MonitorStore:
    """The schedule and alert memory; one instance per ``Store``, safe across threads."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def _conn(self, *, write: bool) -> AbstractContextManager[Connection]:
        return transaction(self._engine, write=write)

    # -- the schedule -----------------------------------------------------------------------

    def add(self, domains: Sequence[str], *, now: datetime) -> list[str]:
        """Enrol ``domains`` (normalized), due at once; returns those that were new."""
        added: list[str] = []
        with self._conn(write=True) as conn:
            known = set(conn.execute(select(monitor_domains.c.domain)).scalars())
            for domain in dict.fromkeys(domains):
                if domain in known:
                    continue
                conn.execute(
                    monitor_domains.insert(),
                    {"domain": domain, "added_at": now, "next_run_at": now, "failures": 0},
                )
                added.append(domain)
        return added

    def remove(self, domains: Sequence[str]) -> int:
        with self._conn(write=True) as conn:
            done = conn.execute(
                delete(monitor_domains).where(monitor_domains.c.domain.in_(domains))
            )
            conn.execute(delete(monitor_alerts).where(monitor_alerts.c.domain.in_(domains)))
            return int(done.rowcount)

    def scheduled(self) -> list[ScheduledDomain]:
        c = monitor_domains.c
        q = select(
            c.domain,
            c.added_at,
            c.next_run_at,
            c.claimed_until,
            c.claimed_by,
            c.failures,
            c.last_run_at,
            c.last_error,
        ).order_by(c.domain)
        with self._conn(write=False) as conn:
            return [ScheduledDomain(*row) for row in conn.execute(q)]

    def hosted_domains(self) -> list[str]:
        """Domains whose policy this installation hosts (``store.hosting``), for auto-enrolment."""
        from stspilot.store.hosting import hosted_domains

        with self._conn(write=False) as conn:
            return list(conn.execute(select(hosted_domains.c.domain)).scalars())

    def claim(
        self,
        *,
        now: datetime,
        worker: str,
        limit: int,
        lease: timedelta,
        only: Sequence[str] | None = None,
    ) -> Claim:
        """Claim up to ``limit`` due domains (earliest first) for ``lease`` (convention 10).

        ``only``: claim these enrolled domains whether due or not (``monitor check``), unless
        another worker holds them."""
        c = monitor_domains.c
        token = uuid.uuid4().hex
        free = or_(c.claimed_until.is_(None), c.claimed_until < now)
        due = and_(c.domain.in_(list(only)), free) if only else and_(c.next_run_at <= now, free)
        candidates = select(c.domain).where(due).order_by(c.next_run_at, c.domain).limit(limit)
        until = now + lease
        with self._conn(write=True) as conn:
            # The WHERE repeats ``due`` on the row itself: a row claimed by another worker
            # between our subquery and our update no longer matches and stays theirs.
            conn.execute(
                update(monitor_domains)
                .where(c.domain.in_(candidates.scalar_subquery()), due)
                .values(claim_token=token, claimed_by=worker[:128], claimed_until=until)
            )
            got = conn.execute(select(c.domain).where(c.claim_token == token).order_by(c.domain))
            domains = tuple(got.scalars())
        return Claim(token, worker, until, domains)

    def finish(
        self,
        claim: Claim,
        domain: str,
        *,
        now: datetime,
        next_run_at: datetime,
        error: str | None = None,
    ) -> bool:
        """Release ``domain``: next run at ``next_run_at``; an error counts a failure, success
        resets the count. False when the claim was lost (lease expired and taken over)."""
        c = monitor_domains.c
        values: dict[str, Any] = {
            "next_run_at": next_run_at,
            "claimed_until": None,
            "claimed_by": None,
            "claim_token": None,
            "last_run_at": now,
            "last_error": None if error is None else error[:2000],
            "failures": 0 if error is None else c.failures + 1,
        }
        with self._conn(write=True) as conn:
            done = conn.execute(
                update(monitor_domains)
                .where(c.domain == domain, c.claim_token == claim.token)
                .values(**values)
            )
            return bool(done.rowcount)

    def failures(self, domain: str) -> int:
        c = monitor_domains.c
        with self._conn(write=False) as conn:
            value = conn.execute(select(c.failures).where(c.domain == domain)).scalar()
        return int(value or 0)

    # -- alert memory -----------------------------------------------------------------------

    def plan_alerts(
        self, domain: str, alerts: Sequence[Alert], *, now: datetime, quiet: timedelta
    ) -> list[Outgoing]:
        """What to send for ``domain`` now: new alerts, reminders of lasting ones whose quiet
        period has passed, and resolutions of lasting ones no longer seen."""
        a = monitor_alerts.c
        with self._conn(write=False) as conn:
            rows = {
                r.key: r for r in conn.execute(select(monitor_alerts).where(a.domain == domain))
            }
        out: list[Outgoing] = []
        current = {alert.key for alert in alerts}
        for alert in alerts:
            row = rows.get(alert.key)
            last = None if row is None or row.resolved_at is not None else row.last_sent_at
            if last is None or (alert.lasting and now - last >= quiet):
                out.append(
                    Outgoing(alert.key, domain, alert.code, alert.severity.label, alert.message)
                )
        for key, row in rows.items():
            if key in current or row.resolved_at is not None or not row.lasting:
                continue
            if row.last_sent_at is not None:  # only resolve what someone was told about
                out.append(
                    Outgoing(key, domain, row.code, "info", f"resolved: {row.message}", True)
                )
        return out

    def record_alerts(
        self,
        domain: str,
        alerts: Sequence[Alert],
        *,
        now: datetime,
        sent: Sequence[Outgoing],
    ) -> None:
        """Remember ``alerts`` as seen now and ``sent`` as delivered; close what cleared."""
        a = monitor_alerts.c
        sent_keys = {o.key for o in sent if not o.resolved}
        resolved_keys = {o.key for o in sent if o.resolved}
        current = {alert.key for alert in alerts}
        with self._conn(write=True) as conn:
            rows = {
                r.key: r for r in conn.execute(select(monitor_alerts).where(a.domain == domain))
            }
            for alert in alerts:
                values: dict[str, Any] = {
                    "code": alert.code,
                    "severity": alert.severity.label,
                    "message": alert.message,
                    "lasting": alert.lasting,
                    "last_seen_at": now,
                    "resolved_at": None,
                }
                if alert.key in sent_keys:
                    values["last_sent_at"] = now
                row = rows.get(alert.key)
                if row is None:
                    conn.execute(
                        monitor_alerts.insert(),
                        {"key": alert.key, "domain": domain, "first_seen_at": now, **values},
                    )
                    continue
                if row.resolved_at is not None:
                    values["first_seen_at"] = now
                    values.setdefault("last_sent_at", None)
                conn.execute(update(monitor_alerts).where(a.key == alert.key).values(**values))
            for key, row in rows.items():
                if key in current or row.resolved_at is not None:
                    continue
                # Events expire silently; a lasting condition closes once its resolution was
                # delivered, or at once when nobody had been told about it.
                if not row.lasting or key in resolved_keys or row.last_sent_at is None:
                    conn.execute(update(monitor_alerts).where(a.key == key).values(resolved_at=now))

    def open_alert_counts(self, domains: Sequence[str]) -> dict[str, tuple[int, str]]:
        """Per domain with open alerts: (how many, the worst severity); one query a chunk."""
        a = monitor_alerts.c
        rank = _SEVERITY_RANK
        out: dict[str, tuple[int, str]] = {}
        names = sorted({fold_name(d) for d in domains})
        with self._conn(write=False) as conn:
            for i in range(0, len(names), 500):
                q = (
                    select(a.domain, a.severity, func.count())
                    .where(a.resolved_at.is_(None), a.domain.in_(names[i : i + 500]))
                    .group_by(a.domain, a.severity)
                )
                for domain, severity, count in conn.execute(q):
                    total, worst = out.get(domain, (0, severity))
                    if rank.get(severity, 3) < rank.get(worst, 3):
                        worst = severity
                    out[domain] = (total + count, worst)
        return out

    def open_alerts(self, domain: str | None = None) -> list[dict[str, Any]]:
        """What the monitor's last run of each domain found wrong (conditions while they last,
        events until the next run), by domain, errors first, then newest first."""
        a = monitor_alerts.c
        q = select(monitor_alerts).where(a.resolved_at.is_(None)).order_by(a.domain, a.key)
        if domain is not None:
            q = q.where(a.domain == fold_name(domain))
        with self._conn(write=False) as conn:
            rows = [dict(row) for row in conn.execute(q).mappings()]
        rank = _SEVERITY_RANK
        rows.sort(key=lambda r: r["first_seen_at"], reverse=True)
        rows.sort(key=lambda r: (r["domain"], rank.get(r["severity"], 3)))
        return rows
