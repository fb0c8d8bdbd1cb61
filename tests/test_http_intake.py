"""HTTPS intake (RFC 8460 §5.4): statuses, size cap while streaming, quarantine, store failure."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from intake_samples import report_json
from stspilot.ingest.http import create_intake_app, handle_report_post
from stspilot.report_schema import Limits
from stspilot.store import Store

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REPORT = report_json("sender.example", "http-1", failures=1)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """In-process: httpx over the ASGI app (no socket), as the web app will mount it."""
    transport = httpx.ASGITransport(
        app=create_intake_app(store, max_bytes=64 * 1024), client=("127.0.0.1", 40000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("body", "content_type", "status", "stored", "kept"),
    [
        (gzip.compress(REPORT), "application/tlsrpt+gzip", 201, 1, 0),
        (REPORT, "application/tlsrpt+json", 201, 1, 0),
        # §5.4 / checklist B9.2: a mislabelled report is still a report.
        (gzip.compress(REPORT), "application/octet-stream", 201, 1, 0),
        (REPORT, "application/tlsrpt+gzip", 201, 1, 0),
        (REPORT, "", 201, 1, 0),
        (b'{"not": "a report"}', "application/tlsrpt+json", 400, 0, 1),
        (b"\x1f\x8b broken gzip", "application/tlsrpt+gzip", 400, 0, 1),
        (b"<html>hello</html>", "text/html; charset=utf-8", 415, 0, 1),
        (b"name=value", "application/x-www-form-urlencoded", 415, 0, 1),
    ],
)
async def test_post_statuses(
    client: httpx.AsyncClient,
    store: Store,
    body: bytes,
    content_type: str,
    status: int,
    stored: int,
    kept: int,
) -> None:
    response = await client.post("/tlsrpt", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert store.count_reports() == stored
    items = store.list_quarantine()
    assert len(items) == kept
    if kept:  # nothing is lost: the refused body is in quarantine, byte for byte
        assert store.quarantine_raw(items[0].id) == body
        assert items[0].origin.startswith("https:")


async def test_retry_of_a_stored_report_is_200(client: httpx.AsyncClient, store: Store) -> None:
    headers = {"content-type": "application/tlsrpt+gzip"}
    first = await client.post("/tlsrpt", content=gzip.compress(REPORT), headers=headers)
    second = await client.post("/tlsrpt", content=gzip.compress(REPORT, mtime=1), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert store.count_reports() == 1


async def test_only_post(client: httpx.AsyncClient) -> None:
    assert (await client.get("/tlsrpt")).status_code == 405


async def test_declared_length_over_cap_is_413_and_nothing_kept(
    client: httpx.AsyncClient, store: Store
) -> None:
    response = await client.post(
        "/tlsrpt",
        content=b"x" * (64 * 1024 + 1),
        headers={"content-type": "application/tlsrpt+json"},
    )
    assert response.status_code == 413
    assert store.count_reports() == 0 and store.list_quarantine() == []


async def test_streamed_body_over_cap_stops_reading(store: Store) -> None:
    """A chunked upload with no Content-Length is cut off at the cap, not read to the end."""
    app = create_intake_app(store, max_bytes=10_000)
    chunks = 1000
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"y" * 1000, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tlsrpt",
        "raw_path": b"/tlsrpt",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/tlsrpt+json"),
                    (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled <= 12  # stopped right after crossing 10 000 bytes, not after 1 000 000
    assert store.count_reports() == 0


def _break(store: Store) -> None:
    """Make every write fail for real: the tables the intake writes to are gone."""
    cascade = " CASCADE" if store.dialect == "postgresql" else ""
    with store.engine.begin() as conn:
        for table in ("failure_details", "report_policies", "quarantine", "reports"):
            conn.execute(text(f"DROP TABLE {table}{cascade}"))


async def test_store_failure_is_503_with_retry_after(
    client: httpx.AsyncClient, store: Store
) -> None:
    _break(store)
    for body in (gzip.compress(REPORT), b"junk"):
        response = await client.post(
            "/tlsrpt", content=body, headers={"content-type": "application/tlsrpt+gzip"}
        )
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize(
    ("size", "status"), [(100, 413), (len(REPORT), 201)]
)
def test_handle_report_post_cap(store: Store, size: int, status: int) -> None:
    outcome = handle_report_post(
        store,
        REPORT,
        "application/tlsrpt+json",
        limits=Limits(),
        received_at=NOW,
        max_bytes=size,
    )
    assert outcome.status == status
    assert store.count_reports() == (1 if status == 201 else 0)
