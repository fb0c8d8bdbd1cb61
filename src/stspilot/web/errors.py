"""The web app's one place where errors meet people: ``StspilotError`` → an RFC 9457 problem.

Expected failures (bad input, unknown names, a conflicting state, a failing store) become
``application/problem+json`` with a stable ``code``, as do HTTP errors (401, 403, 404, ...);
anything else is a 500 with no traceback in the body (it is logged). Request validation
errors (422) keep FastAPI's shape: their ``detail`` lists each invalid field.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stspilot.errors import (
    ConfigError,
    DuplicateReport,
    ParseError,
    ProbeError,
    ProbeTimeout,
    StoreError,
    StspilotError,
)
from stspilot.store.accounts import Conflict, NotFound

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

# Most specific first: the first matching class decides.
_STATUS: tuple[tuple[type[StspilotError], int, str], ...] = (
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (DuplicateReport, 409, "duplicate"),
    (StoreError, 503, "store-unavailable"),
    (ProbeTimeout, 504, "probe-timeout"),
    (ProbeError, 502, "probe-failed"),
    (ParseError, 422, "invalid-input"),
    (ConfigError, 422, "invalid-input"),
)


def status_of(exc: StspilotError) -> tuple[int, str]:
    for kind, status, slug in _STATUS:
        if isinstance(exc, kind):
            return status, slug
    return 500, "internal"


def problem(status: int, slug: str, detail: str, code: str | None = None) -> Response:
    from starlette.responses import JSONResponse

    body: dict[str, object] = {
        "type": f"https://stspilot.invalid/problems/{slug}",
        "title": slug.replace("-", " "),
        "status": status,
        "detail": detail,
    }
    if code is not None:
        body["code"] = code
    headers = {"Retry-After": "30"} if status == 503 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


async def stspilot_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StspilotError)
    status, slug = status_of(exc)
    if status >= 500:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return problem(status, slug, str(exc), getattr(exc, "code", None))


_HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own ``HTTPException`` (authentication, scopes, CSRF, unknown
    routes) as problems too, so an API client parses one error shape; headers such as
    ``WWW-Authenticate`` are kept."""
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    response = problem(exc.status_code, _HTTP_SLUGS.get(exc.status_code, "http-error"), exc.detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal", "internal error (logged); please report it")


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for an invalid body, safe for any input: the errors echo what was sent,
    and a JSON string may carry a lone surrogate (``"\\ud800"``) that UTF-8 cannot encode
    (issue 15: that was a 500). Such characters are shown escaped."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": _printable(jsonable_encoder(errors))}, status_code=422)


async def unicode_error_handler(request: Request, exc: Exception) -> Response:
    """Text the request carried that cannot be encoded (lone surrogates) or decoded."""
    return problem(400, "bad-request", "the request holds text that is not valid Unicode")


def _printable(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    return value
