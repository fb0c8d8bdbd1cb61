"""What the operator's tools read, not people: ``GET /healthz`` and ``GET /readyz`` for load
balancers and orchestrators, ``GET /metrics`` for alerting (reports that stop arriving, a
growing quarantine, monitor alerts).

``/metrics`` is the Prometheus text format (version 0.0.4); only clients in
``settings.metrics_clients`` (loopback by default) may read it, and its figures are counts
over all tenants, read from the database at scrape time (``store/stats.py``), so every
replica reports the same numbers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from stspilot import __version__
from stspilot.errors import StspilotError
from stspilot.store.stats import DiskSpace, ServiceStats, disk_space, service_stats
from stspilot.web.ratelimit import client_address
from stspilot.web.settings import in_networks

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from stspilot.store import Store
    from stspilot.web.settings import WebSettings

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(stats: ServiceStats) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

    def by(label: str, values: dict[str, int], known: tuple[str, ...]) -> list[tuple[str, float]]:
        keys = sorted(set(known) | set(values))
        return [(f'{{{label}="{_escape(k)}"}}', values.get(k, 0)) for k in keys]

    metric("stspilot_info", "gauge", "The running version.", [(f'{{version="{__version__}"}}', 1)])
    metric(
        "stspilot_hosted_domains",
        "gauge",
        "Domains whose policy is hosted, by state.",
        by("state", stats.hosted_domains, ("active",)),
    )
    metric(
        "stspilot_reports_stored",
        "gauge",
        "TLS-RPT reports in the store.",
        [("", stats.reports_stored)],
    )
    if stats.last_report_received_at is not None:
        metric(
            "stspilot_report_last_received_timestamp_seconds",
            "gauge",
            "When the newest stored report was received (Unix time).",
            [("", stats.last_report_received_at.timestamp())],
        )
    metric(
        "stspilot_quarantine_waiting",
        "gauge",
        "Inputs in quarantine, not resolved.",
        [("", stats.quarantine_waiting)],
    )
    metric(
        "stspilot_monitor_domains",
        "gauge",
        "Domains the monitor re-checks.",
        [("", stats.monitored_domains)],
    )
    metric(
        "stspilot_monitor_domains_failing",
        "gauge",
        "Monitored domains whose last run raised (retried with backoff).",
        [("", stats.monitored_domains_failing)],
    )
    metric(
        "stspilot_monitor_alerts_open",
        "gauge",
        "Open monitor alerts, by severity.",
        by("severity", stats.open_alerts, ("error", "warning", "info")),
    )
    if stats.last_check_at is not None:
        metric(
            "stspilot_check_last_timestamp_seconds",
            "gauge",
            "When the newest stored check was observed (Unix time).",
            [("", stats.last_check_at.timestamp())],
        )
    return "\n".join(out) + "\n"


def render_intake(refused: dict[str, int], disk: DiskSpace | None) -> str:
    """The intake's refusals (by reason, since this process started) and the store's disk."""
    reasons = ("unknown-domain", "domain-cap", "tenant-cap", "quarantine-cap")
    out = [
        "# HELP stspilot_intake_refused_total Report POSTs not stored, by reason (this process).",
        "# TYPE stspilot_intake_refused_total counter",
    ]
    out += [
        f'stspilot_intake_refused_total{{reason="{_escape(k)}"}} {refused.get(k, 0)}'
        for k in sorted(set(reasons) | set(refused))
    ]
    if disk is not None:
        out += [
            "# HELP stspilot_disk_free_bytes Free bytes on the file system holding the store.",
            "# TYPE stspilot_disk_free_bytes gauge",
            f"stspilot_disk_free_bytes {disk.free}",
            "# HELP stspilot_disk_size_bytes Size of the file system holding the store.",
            "# TYPE stspilot_disk_size_bytes gauge",
            f"stspilot_disk_size_bytes {disk.total}",
        ]
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def metrics_routes(store: Store, settings: WebSettings) -> list[Any]:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def metrics(request: Request) -> Response:
        # The client behind a trusted proxy (Caddy's peer is loopback for everyone).
        peer = client_address(request.scope, settings.trusted_proxies)
        if not in_networks(peer, settings.metrics_clients):
            return PlainTextResponse("forbidden\n", status_code=403)
        stats = await asyncio.to_thread(service_stats, store)
        disk = await asyncio.to_thread(disk_space, store)
        admission = getattr(request.app.state, "admission", None)
        refused = dict(admission.refused) if admission is not None else {}
        text = render(stats) + render_intake(refused, disk)
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"], name="metrics", include_in_schema=False)]


def health_routes(store: Store) -> list[Any]:
    """For load balancers and orchestrators, without authentication and telling nothing about
    tenants: ``GET /healthz`` answers while the process serves; ``GET /readyz`` also reaches
    the database (503 with ``Retry-After`` when it cannot)."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from stspilot.web.errors import problem

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        try:
            await asyncio.wait_for(asyncio.to_thread(store.ping), timeout=5.0)
        except (StspilotError, TimeoutError) as exc:  # the reason is logged, not shown
            log.warning("readiness: the database is not reachable: %r", exc)
            return problem(503, "store-unavailable", "the database is not reachable")
        return PlainTextResponse("ready\n")

    return [
        Route("/healthz", healthz, methods=["GET"], name="healthz", include_in_schema=False),
        Route("/readyz", readyz, methods=["GET"], name="readyz", include_in_schema=False),
    ]
