"""The service's state in numbers, for ``GET /metrics`` (``web/ops.py``): what an operator
alerts on (reports stopped arriving, the quarantine grows, monitor alerts open, checks fail).

A few aggregate queries, each on an indexed column or a small table; read in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from stspilot.store.api import Store
from stspilot.store.hosting import hosted_domains
from stspilot.store.monitor import monitor_alerts, monitor_domains
from stspilot.store.schema import checks, quarantine, reports

__all__ = ["ServiceStats", "service_stats"]


@dataclass(frozen=True, slots=True)
class ServiceStats:
    hosted_domains: dict[str, int]  # by state (active, decommissioning, ...)
    reports_stored: int
    last_report_received_at: datetime | None
    quarantine_waiting: int
    monitored_domains: int
    monitored_domains_failing: int  # their last run raised (pushed back with backoff)
    open_alerts: dict[str, int]  # by severity
    last_check_at: datetime | None


def service_stats(store: Store) -> ServiceStats:
    with store._read() as conn:
        hosted: dict[str, int] = dict(
            conn.execute(
                select(hosted_domains.c.state, func.count()).group_by(hosted_domains.c.state)
            ).all()
        )
        stored = conn.execute(select(func.count()).select_from(reports)).scalar_one()
        # The newest report by id (the primary key): no index on received_at needed.
        newest = conn.execute(
            select(reports.c.received_at).order_by(reports.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        waiting = conn.execute(
            select(func.count()).select_from(quarantine).where(quarantine.c.resolved.is_(False))
        ).scalar_one()
        monitored = conn.execute(select(func.count()).select_from(monitor_domains)).scalar_one()
        failing = conn.execute(
            select(func.count()).select_from(monitor_domains).where(monitor_domains.c.failures > 0)
        ).scalar_one()
        alerts: dict[str, int] = dict(
            conn.execute(
                select(monitor_alerts.c.severity, func.count())
                .where(monitor_alerts.c.resolved_at.is_(None))
                .group_by(monitor_alerts.c.severity)
            ).all()
        )
        last_check = conn.execute(
            select(checks.c.observed_at).order_by(checks.c.id.desc()).limit(1)
        ).scalar_one_or_none()
    return ServiceStats(
        hosted_domains=hosted,
        reports_stored=int(stored),
        last_report_received_at=newest,
        quarantine_waiting=int(waiting),
        monitored_domains=int(monitored),
        monitored_domains_failing=int(failing),
        open_alerts=alerts,
        last_check_at=last_check,
    )


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """The file system that holds the store: what is free, of how much."""

    path: str
    free: int
    total: int


def disk_space(store: Store, path: str | None = None) -> DiskSpace | None:
    """Free space where the store writes: ``path`` when given (``STSPILOT_DISK_PATH``: e.g.
    PostgreSQL's data directory on this machine), else the SQLite file's directory; None when
    neither is known (a remote database)."""
    import os
    import shutil

    where = path or os.environ.get("STSPILOT_DISK_PATH")
    if where is None:
        url = store.engine.url
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        where = os.path.dirname(os.path.abspath(url.database))
    try:
        usage = shutil.disk_usage(where)
    except OSError:
        return None
    return DiskSpace(where, usage.free, usage.total)
