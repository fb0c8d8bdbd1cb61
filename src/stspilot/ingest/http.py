"""HTTPS report intake (``rua=https:``, RFC 8460 §5.4): a library call and a Starlette route.

Status codes, chosen so a sender's retry logic (§5.5: retry up to 24 h with backoff) does the
right thing:

    201  a new report was stored             (§5.4: "typically 200 or 201")
    200  the report was already stored        (a retry of a submission we committed)
    400  a report media type, but not a report we can read   (kept in quarantine)
    413  the body is over the size cap        (refused while streaming, never buffered whole)
    415  neither a report media type nor a body that reads as one (kept in quarantine)
    503  the store failed; Retry-After asks the sender to come back

The media type does not decide on its own: §5.4 senders are told to label bodies, but the
receiver checks content (gzip magic, JSON) so a mislabelled report is still accepted (B9.2).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stspilot.ingest.pipeline import IngestStore, RawOutcome, ingest_raw
from stspilot.report_schema import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

log = logging.getLogger(__name__)

REPORT_TYPES = frozenset({"application/tlsrpt+gzip", "application/tlsrpt+json"})
# Labels real clients put on a report body; a failure under these is "bad report" (400),
# under anything else "not a report" (415).
LENIENT_TYPES = frozenset(
    {
        "",
        "application/json",
        "application/gzip",
        "application/x-gzip",
        "application/octet-stream",
        "application/tlsrpt",  # unregistered, but seen (checklist B11.4)
    }
)
DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # RFC 8460 §5.2's commonly seen receiver limit
RETRY_AFTER_SECONDS = 300


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status: int
    message: str
    outcome: RawOutcome | None = None


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def handle_report_post(
    store: IngestStore,
    body: bytes,
    content_type: str,
    *,
    limits: Limits,
    received_at: datetime,
    origin: str = "https",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> HttpOutcome:
    """Store (or quarantine) one POSTed body and say which status answers it.

    Never raises for bad input or a failing store: those are statuses.
    """
    if len(body) > max_bytes:
        return HttpOutcome(413, f"report larger than {max_bytes} bytes")
    try:
        outcome = ingest_raw(store, body, origin=origin, received_at=received_at, limits=limits)
    except Exception:  # the store failed: nothing was committed, the sender must retry
        log.exception("HTTP intake could not commit a report from %s", origin)
        return HttpOutcome(503, "temporary failure storing the report, retry later")
    if outcome.new:
        return HttpOutcome(201, f"stored {outcome.new} new report(s)", outcome)
    if outcome.duplicate:
        return HttpOutcome(200, "report already stored", outcome)
    kind = media_type(content_type)
    status = 400 if kind in REPORT_TYPES or kind in LENIENT_TYPES else 415
    return HttpOutcome(status, f"not a readable TLS report ({outcome.code}): kept", outcome)


def report_routes(
    store: IngestStore,
    *,
    path: str = "/tlsrpt",
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: Limits | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    """The POST route(s) for report intake, for the web app to mount."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    use_limits = limits if limits is not None else DEFAULT_LIMITS
    write_lock = threading.Lock()  # one writer at a time (SQLite takes one anyway)

    def store_body(body: bytes, content_type: str, origin: str) -> HttpOutcome:
        with write_lock:
            return handle_report_post(
                store,
                body,
                content_type,
                limits=use_limits,
                received_at=clock(),
                origin=origin,
                max_bytes=max_bytes,
            )

    async def receive_report(request: Request) -> Response:
        too_large = PlainTextResponse(f"report larger than {max_bytes} bytes", status_code=413)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:  # a liar or chunked upload: stop reading, keep nothing
                return too_large
            chunks.append(chunk)
        client = request.client.host if request.client else "?"
        result = await run_in_threadpool(
            store_body, b"".join(chunks), request.headers.get("content-type", ""),
            f"https:{client}",
        )
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if result.status == 503 else None
        return PlainTextResponse(result.message, status_code=result.status, headers=headers)

    return [Route(path, receive_report, methods=["POST"], name="tlsrpt-intake")]


def create_intake_app(
    store: IngestStore,
    *,
    path: str = "/tlsrpt",
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: Limits | None = None,
) -> Starlette:
    """A stand-alone ASGI app with just the intake route (``stspilot receive --http``)."""
    from starlette.applications import Starlette

    return Starlette(routes=report_routes(store, path=path, max_bytes=max_bytes, limits=limits))
