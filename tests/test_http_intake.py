"""HTTPS intake (RFC 8460 §5.4): statuses, size cap while streaming, quarantine, store failure."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from intake_samples import report_json
from stspilot.errors import StoreError
from stspilot.ingest.http import (
    GroupCommitter,
    ReportIntake,
    create_intake_app,
    handle_report_post,
    report_routes,
)
from stspilot.store import Store
from stspilot.tlsrpt.schema import Limits

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
        "headers": [
            (b"content-type", b"application/tlsrpt+json"),
            (b"transfer-encoding", b"chunked"),
        ],
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


@pytest.mark.parametrize(("size", "status"), [(100, 413), (len(REPORT), 201)])
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


def test_a_report_the_store_refuses_is_accepted_and_kept(store: Store) -> None:
    """It was answered 503 for ever, so the sender retried for ever (RFC 8460 §5.4)."""
    doc = json.loads(REPORT)
    doc["policies"] = doc["policies"] * 1100
    for policy in doc["policies"]:
        policy["summary"]["total-successful-session-count"] = 2**53 - 1
    body = json.dumps(doc).encode()
    for limits, code in ((Limits(), "report.limit.sessions"), (Limits(max_sessions=2**70), None)):
        outcome = handle_report_post(
            store, body, "application/tlsrpt+json", limits=limits, received_at=NOW
        )
        assert outcome.outcome is not None and outcome.outcome.quarantined
        if code is None:  # past the parser, the database refuses it: kept, not "retry"
            assert outcome.status == 202
        else:
            assert (outcome.status, outcome.outcome.code) == (400, code)
    assert store.count_reports() == 0 and len(store.list_quarantine()) == 1


# --- group commit ---------------------------------------------------------------------------


class GatedStore:
    """The real store behind a gate: each ``ingest_batch`` waits until the test opens it, and
    the batches' sizes are recorded. A report id in ``refuse`` makes its batch fail (a unit the
    store will not take, e.g. a constraint the parser did not foresee)."""

    def __init__(self, store: Store, refuse: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.refuse = refuse
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.sizes: list[int] = []

    def ingest_batch(self, reports: Sequence[Any], quarantined: Sequence[Any] = ()) -> Any:
        self.entered.set()
        assert self.gate.wait(30)
        if any(r.report.report_id in self.refuse for r in reports):
            raise StoreError("refused by the test")
        self.sizes.append(len(reports) + len(quarantined))
        return self.store.ingest_batch(reports, quarantined)


def _posts(client: httpx.AsyncClient, bodies: list[bytes]) -> list[asyncio.Task[httpx.Response]]:
    headers = {"content-type": "application/tlsrpt+gzip"}
    return [
        asyncio.create_task(client.post("/tlsrpt", content=body, headers=headers))
        for body in bodies
    ]


def _gated_app(gated: GatedStore) -> tuple[Any, ReportIntake]:
    intake = ReportIntake(gated)
    app = create_intake_app(gated.store)  # its route is replaced by one around ``intake``
    app.router.routes[:] = report_routes(gated.store, intake=intake)
    return app, intake


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://intake")


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 30 s")


async def test_concurrent_posts_share_commits_and_answer_after_them(store: Store) -> None:
    """While one transaction runs, the POSTs that arrive wait and go into the next one; none
    is answered before the transaction holding it committed."""
    gated = GatedStore(store)
    app, intake = _gated_app(gated)
    bodies = [gzip.compress(report_json("sender.example", f"group-{i}")) for i in range(20)]
    async with _client(app) as client:
        tasks = _posts(client, bodies[:1])
        await asyncio.to_thread(gated.entered.wait, 30)  # the first commit runs (gated)
        tasks += _posts(client, bodies[1:])
        await _until(lambda: intake.committer.queued() == 19)
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in tasks)  # nothing is answered before its commit
        assert store.count_reports() == 0
        gated.gate.set()
        answers = [await t for t in tasks]
    assert [a.status_code for a in answers] == [201] * 20
    assert gated.sizes == [1, 19]  # two transactions for twenty reports
    assert store.count_reports() == 20
    assert (intake.committer.batches, intake.committer.units) == (2, 20)


async def test_a_refused_unit_does_not_fail_its_batch(store: Store) -> None:
    gated = GatedStore(store, refuse=frozenset({"poison"}))
    app, intake = _gated_app(gated)
    ids = ["before", "a", "poison", "b", "c"]
    bodies = [gzip.compress(report_json("s.example", i)) for i in ids]
    async with _client(app) as client:
        tasks = _posts(client, bodies[:1])
        await asyncio.to_thread(gated.entered.wait, 30)
        tasks += _posts(client, bodies[1:])
        await _until(lambda: intake.committer.queued() == 4)
        gated.gate.set()
        answers = [await t for t in tasks]
    statuses = [a.status_code for a in answers]
    # The batch of four failed as a whole, then each was committed alone: only poison fails,
    # with 503 + Retry-After (the sender retries, §5.5); the others are stored.
    assert statuses == [201, 201, 503, 201, 201]
    assert int(answers[2].headers["retry-after"]) > 0
    assert store.count_reports() == 4
    assert gated.sizes == [1, 1, 1, 1]


@pytest.mark.parametrize("parse_apart_bytes", [0, 1 << 20])
async def test_large_bodies_are_parsed_apart(store: Store, parse_apart_bytes: int) -> None:
    committer = GroupCommitter(store, parse_apart_bytes=parse_apart_bytes)
    outcomes = await asyncio.gather(
        *(
            committer.ingest(
                gzip.compress(report_json("big.example", f"r{i}", failures=50)),
                origin="https:test",
                received_at=NOW,
            )
            for i in range(5)
        ),
        committer.ingest(b"not a report", origin="https:test", received_at=NOW),
    )
    assert [o.new for o in outcomes] == [1, 1, 1, 1, 1, 0]
    assert outcomes[-1].quarantined and outcomes[-1].code
    assert store.count_reports() == 5 and len(store.list_quarantine()) == 1
    assert committer.units == 6 and committer.batches <= 6


async def test_sender_gone_mid_body_stores_nothing(store: Store) -> None:
    intake = ReportIntake(store)
    messages = iter(
        [
            {"type": "http.request", "body": REPORT[:10], "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/tlsrpt", "headers": [], "client": None}
    await intake(scope, receive, send)
    assert sent == [] and store.count_reports() == 0 and store.list_quarantine() == []


def test_every_acknowledged_report_survives_a_kill(store_url: str, store: Store) -> None:
    """``stspilot serve`` killed (SIGKILL) while senders POST concurrently: every report that
    got a 2xx is in the database afterwards (the answer comes only after its commit)."""
    import os
    import signal
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    env = {
        **os.environ,
        "STSPILOT_SECRET_KEY": "intake-kill-test-secret-0123456789",
        "STSPILOT_REPORT_RATE": "100000",
        "STSPILOT_REPORT_BURST": "100000",
    }
    # Reports are taken only for domains monitored or hosted here (issue 15).
    subprocess.run(
        [sys.executable, "-m", "stspilot", "monitor", "add", "example.com", "--db", store_url],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "stspilot", "serve", "--listen", "127.0.0.1:0", "--db", store_url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    acked: list[str] = []
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("stspilot serving on http://"), line
        url = line.split()[-1] + "/tlsrpt"
        stop = threading.Event()

        def sender(worker: int) -> None:
            with httpx.Client(timeout=10) as http:
                for i in range(10_000):
                    if stop.is_set():
                        return
                    rid = f"kill-{worker}-{i}"
                    body = gzip.compress(report_json("sender.example", rid))
                    try:
                        r = http.post(url, content=body, headers={"content-type": "x"})
                    except httpx.HTTPError:
                        return  # the server is gone: this one was never acknowledged
                    if r.status_code == 201:
                        acked.append(rid)

        with ThreadPoolExecutor(8) as pool:
            running = [pool.submit(sender, n) for n in range(8)]
            deadline = 200
            while len(acked) < deadline and not any(f.done() for f in running):
                threading.Event().wait(0.01)
            os.killpg(server.pid, signal.SIGKILL)  # mid-stream, no shutdown of any kind
            stop.set()
            for f in running:
                f.result(timeout=30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.communicate(timeout=30)
    assert len(acked) >= 200
    with store.engine.connect() as conn:
        stored = {row[0] for row in conn.execute(text("SELECT report_id FROM reports"))}
    assert set(acked) <= stored
