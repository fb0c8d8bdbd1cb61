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
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stspilot import __version__
from stspilot.errors import StspilotError
from stspilot.store.dashboard import CHANNELS, newest_report_id, reports_by_channel_since
from stspilot.store.stats import DiskSpace, disk_space, service_stats
from stspilot.web.ratelimit import Asgi, client_address
from stspilot.web.settings import in_networks

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

    from stspilot.store import Store
    from stspilot.web.settings import WebSettings

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Request latency buckets (seconds): pages take milliseconds to a few hundred.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNMATCHED = "(unmatched)"  # requests no route took (404s): one label, not one per path


class StoreCollector:
    """The store's figures at scrape time (``store/stats.py``), the same on every replica,
    and intake counters by channel: reports stored since this process started, counted by
    primary key from the last scrape on (bounded by what arrived in between)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._seen_id: int | None = None  # reports.id up to which intake is counted
        self._intake: dict[str, int] = dict.fromkeys(CHANNELS, 0)

    def _count_intake(self) -> dict[str, int]:
        with self._lock:
            if self._seen_id is None:  # the first scrape (or start): count from here on
                self._seen_id = newest_report_id(self._store)
            else:
                counts, self._seen_id = reports_by_channel_since(self._store, self._seen_id)
                for channel, n in counts.items():
                    self._intake[channel] = self._intake.get(channel, 0) + n
            return dict(self._intake)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = service_stats(self._store)
        intake = self._count_intake()

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, value=value)

        def by(
            name: str, text: str, label: str, values: dict[str, int], known: tuple[str, ...]
        ) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text, labels=[label])
            for key in sorted(set(known) | set(values)):
                family.add_metric([key], values.get(key, 0))
            return family

        info = GaugeMetricFamily("stspilot_info", "The running version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield by("stspilot_hosted_domains", "Domains whose policy is hosted, by state.",
                 "state", stats.hosted_domains, ("active",))  # fmt: skip
        yield gauge("stspilot_reports_stored", "TLS-RPT reports in the store.",
                    stats.reports_stored)  # fmt: skip
        if stats.last_report_received_at is not None:
            yield gauge(
                "stspilot_report_last_received_timestamp_seconds",
                "When the newest stored report was received (Unix time).",
                stats.last_report_received_at.timestamp(),
            )
        yield gauge("stspilot_quarantine_waiting", "Inputs in quarantine, not resolved.",
                    stats.quarantine_waiting)  # fmt: skip
        yield gauge("stspilot_monitor_domains", "Domains the monitor re-checks.",
                    stats.monitored_domains)  # fmt: skip
        yield gauge(
            "stspilot_monitor_domains_failing",
            "Monitored domains whose last run raised (retried with backoff).",
            stats.monitored_domains_failing,
        )
        yield by("stspilot_monitor_alerts_open", "Open monitor alerts, by severity.",
                 "severity", stats.open_alerts, ("error", "warning", "info"))  # fmt: skip
        if stats.last_check_at is not None:
            yield gauge(
                "stspilot_check_last_timestamp_seconds",
                "When the newest stored check was observed (Unix time).",
                stats.last_check_at.timestamp(),
            )
        counter = CounterMetricFamily(
            "stspilot_intake_reports",
            "Reports stored since this process started, by intake channel (read from the "
            "database: every replica counts every replica's intake; aggregate with max).",
            labels=["channel"],
        )
        for channel in sorted(intake):
            counter.add_metric([channel], intake[channel])
        yield counter


class Telemetry:
    """One app's Prometheus registry (no process-global state): request counts and latency
    by route template and method, and the store's figures (``StoreCollector``)."""

    def __init__(self, store: Store) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "stspilot_http_requests",
            "HTTP requests answered by the app (not the policy and report fast paths), "
            "by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stspilot_http_request_duration_seconds",
            "Time to answer a request, by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store = StoreCollector(store)
        self.registry.register(self.store)
        try:  # intake counts from the start of the process (or from the first scrape)
            self.store._count_intake()
        except StspilotError as exc:  # a database not reachable yet must not stop the app
            log.warning("metrics: cannot read the newest report yet: %r", exc)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


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


access_log = logging.getLogger("stspilot.access")


class AccessLog:
    """The outermost middleware of the framework stack: per request, one log line on
    ``stspilot.access`` (source address, user, method, route, path, status, milliseconds)
    and one sample of the request metrics. The policy and report fast paths
    (``StspilotApp.__call__``) answer before it and are neither logged nor timed here."""

    def __init__(self, app: Asgi, *, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry
        self._templates: dict[Any, str] | None = None

    def _route(self, scope: Scope) -> str:
        """The template of the route that answered (``/domains/{domain}``), never the path:
        FastAPI names its own routes in ``scope["route"]``; Starlette routes and mounts
        leave their ``endpoint``, looked up in a table of the app's routes made once."""
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        if self._templates is None:
            table: dict[Any, str] = {}
            for route in getattr(scope.get("app"), "routes", ()):
                target = getattr(route, "endpoint", None) or getattr(route, "app", None)
                if target is not None and isinstance(getattr(route, "path", None), str):
                    mount = not hasattr(route, "endpoint")
                    table.setdefault(target, route.path + ("/{path}" if mount else ""))
            self._templates = table
        try:
            return self._templates.get(endpoint, UNMATCHED)
        except TypeError:  # an unhashable endpoint
            return UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            route = self._route(scope)
            method = str(scope.get("method", ""))
            self.telemetry.observe(route, method, status, seconds)
            state = scope.get("state") or {}
            user = state.get("user") if isinstance(state, dict) else None
            fields = {
                "client": _client(scope),
                "user": getattr(user, "name", None) or "-",
                "method": method,
                "route": route,
                "path": str(scope.get("path", ""))[:512],
                "status": status,
                "ms": round(seconds * 1000, 1),
            }
            access_log.info(
                "%(client)s %(user)s %(method)s %(path)s %(status)s %(ms)sms", fields,
                extra={"request": fields},
            )  # fmt: skip


def _client(scope: Scope) -> str:
    """The client the access log names: behind a trusted proxy, the address it forwarded for
    (``client_address``, as the auth log, rate limits and intake use), else the TCP peer."""
    app = scope.get("app")
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    trusted = getattr(getattr(ctx, "settings", None), "trusted_proxies", ())
    if not scope.get("client"):
        return "-"
    return client_address(scope, trusted)


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """Logs of ``stspilot.*`` (requests on ``stspilot.access``, failed logins on
    ``stspilot.auth``) to stderr at ``level``; as one JSON object a line with ``json``
    (python-json-logger), the request's fields as keys."""
    handler = logging.StreamHandler()
    if json:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("stspilot")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def metrics_routes(store: Store, settings: WebSettings, telemetry: Telemetry) -> list[Any]:
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def metrics(request: Request) -> Response:
        # The client behind a trusted proxy (Caddy's peer is loopback for everyone).
        peer = client_address(request.scope, settings.trusted_proxies)
        if not in_networks(peer, settings.metrics_clients):
            return PlainTextResponse("forbidden\n", status_code=403)
        body = await asyncio.to_thread(telemetry.render)
        disk = await asyncio.to_thread(disk_space, store)
        admission = getattr(request.app.state, "admission", None)
        refused = dict(admission.refused) if admission is not None else {}
        # The exposition format is a sequence of families: the intake's refusals and the
        # disk (hand-written, below) follow the registry's own.
        body += render_intake(refused, disk).encode()
        return Response(body, media_type=CONTENT_TYPE)

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
