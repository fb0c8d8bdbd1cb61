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

import asyncio
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stspilot.errors import StoreError
from stspilot.ingest.admission import Admission, Refusal, Verdict
from stspilot.ingest.pipeline import (
    STORE_REFUSED,
    IngestStore,
    Prepared,
    RawOutcome,
    commit_units,
    ingest_raw,
    prepare_unit,
)
from stspilot.tlsrpt.schema import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import Route

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[Any]]

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
    """Store (or quarantine) one POSTed body and say which status answers it (one transaction
    of its own; the web route batches instead, see ``GroupCommitter``).

    Never raises for bad input or a failing store: those are statuses.
    """
    if len(body) > max_bytes:
        return HttpOutcome(413, f"report larger than {max_bytes} bytes")
    try:
        outcome = ingest_raw(store, body, origin=origin, received_at=received_at, limits=limits)
    except Exception:  # the store failed: nothing was committed, the sender must retry
        log.exception("HTTP intake could not commit a report from %s", origin)
        return STORE_FAILED
    return http_outcome(outcome, content_type)


STORE_FAILED = HttpOutcome(503, "temporary failure storing the report, retry later")
BUSY = HttpOutcome(503, "too many reports being uploaded at once, retry later")


def http_outcome(outcome: RawOutcome, content_type: str) -> HttpOutcome:
    """The status that answers a committed unit."""
    if outcome.new:
        return HttpOutcome(201, f"stored {outcome.new} new report(s)", outcome)
    if outcome.duplicate:
        return HttpOutcome(200, "report already stored", outcome)
    if outcome.code == STORE_REFUSED:  # a readable report the database would not hold: kept
        return HttpOutcome(202, "report accepted and kept for the operator", outcome)
    kind = media_type(content_type)
    status = 400 if kind in REPORT_TYPES or kind in LENIENT_TYPES else 415
    return HttpOutcome(status, f"not a readable TLS report ({outcome.code}): kept", outcome)


# --- group commit ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    raw: bytes
    origin: str
    received_at: datetime
    prepared: Prepared | None  # parsed already (a large body), else the writer parses it


class _Queue:
    __slots__ = ("drainer", "jobs")

    def __init__(self) -> None:
        self.jobs: list[tuple[_Job, asyncio.Future[RawOutcome | Refusal]]] = []
        self.drainer: asyncio.Task[None] | None = None


class GroupCommitter:
    """Commits the units of concurrent requests together: while one transaction runs, the units
    that arrive queue up and go into the next one (up to ``max_batch``), so N senders at once
    cost one commit, not N. There is no timer: a lone request is committed at once.

    ``await ingest(...)`` returns only after the transaction holding that unit committed, so
    a 2xx is never sent for data a crash could still lose (RFC 8460 §5.4: the sender retries
    anything else). When a batch fails, its units are retried one by one, so one unit the
    store refuses does not fail its neighbours. Small bodies are parsed by the writer thread
    in the same hop as the commit; large ones in a worker thread of their own first.
    """

    def __init__(
        self,
        store: IngestStore,
        *,
        limits: Limits = DEFAULT_LIMITS,
        max_batch: int = 64,
        parse_apart_bytes: int = 64 * 1024,
        admission: Admission | None = None,
    ) -> None:
        self.store = store
        self.admission = admission
        self.limits = limits
        self.max_batch = max_batch
        self.parse_apart_bytes = parse_apart_bytes
        self._lock = threading.Lock()  # one writer at a time, whatever loop or thread asks
        # Futures belong to one event loop: a queue (and its drainer) per loop that uses this.
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )
        self.batches = 0  # commits made (batches), for tests and benchmarks
        self.units = 0

    async def ingest(
        self, raw: bytes, *, origin: str, received_at: datetime
    ) -> RawOutcome | Refusal:
        """Parse and commit one unit, or refuse it (``admission``); raises what the store
        raised (nothing of it is kept)."""
        prepared = None
        if len(raw) > self.parse_apart_bytes:
            prepared = await asyncio.to_thread(
                prepare_unit, raw, origin=origin, received_at=received_at, limits=self.limits
            )
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future: asyncio.Future[RawOutcome | Refusal] = loop.create_future()
        queue.jobs.append((_Job(raw, origin, received_at, prepared), future))
        if queue.drainer is None:
            queue.drainer = loop.create_task(self._drain(queue))
        # A sender that goes away does not cancel the commit: it retries and gets 200.
        return await asyncio.shield(future)

    def queued(self) -> int:
        """Units waiting for a transaction (not counting one that runs), in this event loop."""
        queue = self._queues.get(asyncio.get_running_loop())
        return 0 if queue is None else len(queue.jobs)

    async def _drain(self, queue: _Queue) -> None:
        try:
            while queue.jobs:
                batch = queue.jobs[: self.max_batch]
                del queue.jobs[: len(batch)]
                try:
                    results = await asyncio.to_thread(self._write, [job for job, _ in batch])
                except Exception as exc:  # a bug in _write: this batch fails, the next goes on
                    log.exception("group commit of %d reports failed", len(batch))
                    results = [exc] * len(batch)
                except BaseException:  # cancelled, the loop is going away: nobody gets a 2xx
                    for _, future in [*batch, *queue.jobs]:
                        if not future.done():
                            future.set_exception(StoreError("not committed: shutting down"))
                    queue.jobs.clear()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            queue.drainer = None

    def _write(self, jobs: list[_Job]) -> list[RawOutcome | Refusal | Exception]:
        """In a worker thread: parse what is not parsed yet, judge (``admission``), commit
        what is admitted in one transaction, then count what it stored."""
        units = [
            job.prepared
            or prepare_unit(
                job.raw, origin=job.origin, received_at=job.received_at, limits=self.limits
            )
            for job in jobs
        ]
        if self.admission is None:
            return list(self._commit(units))
        with self._lock:
            # Under the writer lock: the next batch is judged against what this one stored.
            now = jobs[0].received_at
            verdicts: list[Verdict] = self.admission.judge(units, now)
            admitted = [v.unit for v in verdicts if v.unit is not None]
            committed = iter(self._commit_locked(admitted))
            out: list[RawOutcome | Refusal | Exception] = []
            spent: list[dict[str, int]] = []
            for verdict in verdicts:
                if verdict.unit is None:
                    assert verdict.refusal is not None
                    out.append(verdict.refusal)
                    continue
                result = next(committed)
                out.append(result)
                if isinstance(result, RawOutcome):
                    spent.append(_spent_by(result, verdict))
            self.admission.record(now, spent)
            return out

    def _commit(self, units: list[Prepared]) -> list[RawOutcome | Exception]:
        with self._lock:
            return self._commit_locked(units)

    def _commit_locked(self, units: list[Prepared]) -> list[RawOutcome | Exception]:
        """One transaction for ``units``; when it fails, one each (``commit_units``), so one
        unit the store refuses does not fail its neighbours."""
        if not units:
            return []
        outcomes: list[RawOutcome | Exception] = list(commit_units(self.store, units))
        committed = sum(not isinstance(o, Exception) for o in outcomes)
        self.batches += 1 if committed == len(units) else committed
        self.units += committed
        return outcomes


def _spent_by(outcome: RawOutcome, verdict: Verdict) -> dict[str, int]:
    """The bytes a committed unit stored: its reports' scopes when one was new, the
    quarantine's when it was kept."""
    return {
        scope: size
        for scope, size in verdict.spent.items()
        if (outcome.quarantined if scope == "quarantine" else outcome.new > 0)
    }


# --- the ASGI endpoint ----------------------------------------------------------------------


class ReportIntake:
    """``POST <path>`` as a plain ASGI app: the body is streamed under the size cap, then
    parsed and committed through a ``GroupCommitter``; the answer goes out after the commit.

    Mounted as a Starlette route (which answers other methods with 405) or called directly by
    the web app's outermost callable, ahead of the framework (``web.app.StspilotApp``).
    """

    def __init__(
        self,
        store: IngestStore,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_batch: int = 64,
        admission: Admission | None = None,
        client: Callable[[Scope], str] | None = None,
        max_uploads: int | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        # Bodies being received at once: each may hold up to max_bytes in memory.
        self.max_uploads = max_uploads
        self._uploads = 0
        self.clock = clock
        self.client = client
        use_limits = limits if limits is not None else DEFAULT_LIMITS
        self.committer = GroupCommitter(
            store, limits=use_limits, max_batch=max_batch, admission=admission
        )
        self._too_large = HttpOutcome(413, f"report larger than {max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = ""
        declared = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, self._too_large)
            return
        if self.max_uploads is not None and self._uploads >= self.max_uploads:
            await _answer(send, BUSY)
            return
        self._uploads += 1
        try:
            await self._receive_and_commit(scope, receive, send, content_type)
        finally:
            self._uploads -= 1

    async def _receive_and_commit(
        self, scope: Scope, receive: Receive, send: Send, content_type: str
    ) -> None:
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the sender left: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:  # a liar or a chunked upload: stop reading, keep nothing
                await _answer(send, self._too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        if self.client is not None:  # the web app: the client behind a trusted proxy
            origin = f"https:{self.client(scope)}"
        else:
            client = scope.get("client")
            origin = f"https:{client[0] if client else '?'}"
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            outcome = await self.committer.ingest(body, origin=origin, received_at=self.clock())
        except Exception:  # the store failed: nothing was committed, the sender must retry
            log.exception("HTTP intake could not commit a report from %s", origin)
            await _answer(send, STORE_FAILED)
            return
        if isinstance(outcome, Refusal):
            await _answer(send, HttpOutcome(outcome.status, outcome.message), outcome.retry_after)
            return
        await _answer(send, http_outcome(outcome, content_type))


async def _answer(send: Send, result: HttpOutcome, retry_after: int | None = None) -> None:
    body = result.message.encode("utf-8")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if result.status == 503:  # §5.5: the sender backs off and retries
        retry_after = RETRY_AFTER_SECONDS
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": result.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def report_routes(
    store: IngestStore,
    *,
    path: str = "/tlsrpt",
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: Limits | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    intake: ReportIntake | None = None,
) -> list[Route]:
    """The POST route for report intake, for an app to mount (``intake`` when the caller
    keeps a handle on it, else one made here)."""
    from starlette.routing import Route

    endpoint = intake or ReportIntake(store, max_bytes=max_bytes, limits=limits, clock=clock)
    return [Route(path, endpoint, methods=["POST"], name="tlsrpt-intake")]


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
