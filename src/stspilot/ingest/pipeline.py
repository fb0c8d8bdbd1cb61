"""The ingest pipeline: raw units (a file, a mail, a POST body) -> parsed reports -> one commit.

A *unit* is the bytes one source hands over and later acknowledges as a whole (an IMAP
message, an SMTP DATA, an HTTP body, a file). Each unit goes through two steps:

1. ``prepare_unit`` (pure CPU, picklable, so it can run in a process pool): extract the report
   parts (``decode.extract_reports``), parse each (``reports.parse_report``) and decide what to
   store and what to quarantine.
2. ``commit_prepared``: hand many prepared units to ``Store.ingest_batch``, which writes them in
   ONE transaction. The store dedupes reports on (organisation, report-id) and quarantine
   entries on the raw bytes' SHA-256, so running the same input again is a no-op. That is the
   whole crash-safety story: a killed run leaves either a committed batch or nothing, and the
   next run turns what was committed into duplicates.

A unit holding several reports of which some do not parse: the good reports are stored AND the
whole raw unit is quarantined with the failing part's code and reason. Nothing is lost, the
good data is usable at once, and retrying the quarantined unit after a parser fix adds the
missing reports while the stored ones come back as duplicates.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from stspilot.errors import ParseError, ReportError
from stspilot.ingest.decode import (
    Extracted,
    envelope_deviations,
    extract_reports,
    is_mbox,
    iter_files,
    iter_mbox,
    read_unit,
)
from stspilot.report_schema import DEFAULT_LIMITS, Limits
from stspilot.reports import fast_pickle, parse_report
from stspilot.store.models import BatchResult, NewQuarantine, NewReport
from stspilot.store.rows import ReportRows, RowBuilder, check_identity

_T = TypeVar("_T")


class IngestStore(Protocol):
    """What the pipeline needs from ``stspilot.store.Store``: one transactional batch write."""

    def ingest_batch(
        self, reports: Sequence[NewReport], quarantined: Sequence[NewQuarantine]
    ) -> BatchResult: ...


@dataclass(frozen=True, slots=True)
class Tally:
    """What happened to the reports and units of one run."""

    new: int = 0  # reports stored for the first time
    duplicate: int = 0  # reports already stored (retries, second rua, re-runs)
    quarantined: int = 0  # units kept in quarantine (unreadable, or partly so)
    errors: int = 0  # sources that could not even be read (no bytes to keep)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.new + other.new,
            self.duplicate + other.duplicate,
            self.quarantined + other.quarantined,
            self.errors + other.errors,
        )

    @classmethod
    def of(cls, outcomes: Iterable[RawOutcome]) -> Tally:
        new = duplicate = quarantined = 0
        for outcome in outcomes:
            new += outcome.new
            duplicate += outcome.duplicate
            quarantined += outcome.quarantined
        return cls(new, duplicate, quarantined)


@dataclass(frozen=True, slots=True)
class RawOutcome:
    """What became of one unit, once committed."""

    origin: str
    new: int = 0
    duplicate: int = 0
    quarantined: bool = False
    code: str | None = None  # why (part of) the unit was quarantined
    reason: str | None = None
    report_pks: tuple[int, ...] = ()


@fast_pickle
@dataclass(frozen=True, slots=True)
class Prepared:
    """One unit after parsing and before the store: what to add, what to quarantine."""

    origin: str
    reports: tuple[NewReport, ...] = ()
    quarantine: NewQuarantine | None = None


def prepare_unit(raw: bytes, *, origin: str, received_at: datetime, limits: Limits) -> Prepared:
    """Extract and parse one unit; never raises for bad input (that becomes a quarantine)."""
    return _finish(raw, origin, received_at, limits, extract_unit(raw, limits))


Unreadable = tuple[str, str]  # (code, reason)


def extract_unit(raw: bytes, limits: Limits) -> list[Extracted] | Unreadable:
    """The report parts of one unit (the mail decoding, the costly half of preparing it for
    mailed reports), or why there are none. Never raises."""
    try:
        extracted = extract_reports(raw, limits=limits)
    except ParseError as exc:
        return exc.code, str(exc)
    except Exception as exc:
        # The decoder raises ReportError for bad input; anything else is a bug there, but the
        # bytes must still be kept (design: "never dropped") and the run must go on.
        return "report.decode.internal", f"{type(exc).__name__}: {exc}"
    return extracted or ("report.none", "no TLS report found in this input")


def _finish(
    raw: bytes,
    origin: str,
    received_at: datetime,
    limits: Limits,
    extracted: list[Extracted] | Unreadable,
) -> Prepared:
    """Parse the extracted parts: reports to store and/or the unit to quarantine."""
    if isinstance(extracted, tuple):
        code, reason = extracted
        return prepare_unreadable(
            raw, origin=origin, received_at=received_at, code=code, reason=reason
        )
    reports: list[NewReport] = []
    failures: list[tuple[str, str, str]] = []  # (label, code, reason)
    for part in extracted:
        try:
            report = parse_report(part.json_bytes, limits=limits)
            check_identity(report)  # the store could not index it: keep the unit instead
        except ReportError as exc:
            failures.append((part.label, exc.code, str(exc)))
            continue
        except Exception as exc:  # a parser bug: keep the unit, say what broke, go on
            failures.append((part.label, "report.parse.internal", f"{type(exc).__name__}: {exc}"))
            continue
        extra = part.deviations
        if part.envelope is not None:  # RFC 8460 §5.3/§5.6: headers vs body, body wins
            extra += envelope_deviations(report, part.envelope)
        reports.append(
            NewReport(
                report=report,
                raw=raw,
                origin=origin,
                received_at=received_at,
                envelope=part.envelope,
                deviations=extra,
            )
        )
    quarantine = None
    if failures:
        _, code, reason = failures[0]
        if len(extracted) > 1:
            code = code if not reports else "report.partial"
            reason = "; ".join(f"{lbl}: {c}: {r}" for lbl, c, r in failures)
            if reports:
                reason = f"{len(reports)} of {len(extracted)} reports stored; {reason}"
        quarantine = NewQuarantine(
            raw=raw, origin=origin, code=code, reason=reason, received_at=received_at
        )
    return Prepared(origin=origin, reports=tuple(reports), quarantine=quarantine)


def prepare_unreadable(
    raw: bytes, *, origin: str, received_at: datetime, code: str, reason: str
) -> Prepared:
    """A unit that is kept only in quarantine (bad input, or refused before parsing)."""
    return Prepared(
        origin=origin,
        quarantine=NewQuarantine(
            raw=raw, origin=origin, code=code, reason=reason, received_at=received_at
        ),
    )


def commit_prepared(store: IngestStore, prepared: Sequence[Prepared]) -> list[RawOutcome]:
    """Write all units in one transaction; outcomes line up with ``prepared``.

    Raises whatever the store raises (``StoreError``, driver errors): then nothing of this
    batch was written and no source may be acknowledged.
    """
    if not prepared:
        return []
    result = store.ingest_batch(
        [r for p in prepared for r in p.reports],
        [p.quarantine for p in prepared if p.quarantine is not None],
    )
    added = iter(result.reports)
    kept = iter(result.quarantined)
    outcomes = []
    for unit in prepared:
        statuses = [next(added) for _ in unit.reports]
        if unit.quarantine is not None:
            next(kept)
        outcomes.append(
            RawOutcome(
                origin=unit.origin,
                new=sum(s.status == "new" for s in statuses),
                duplicate=sum(s.status == "duplicate" for s in statuses),
                quarantined=unit.quarantine is not None,
                code=unit.quarantine.code if unit.quarantine else None,
                reason=unit.quarantine.reason if unit.quarantine else None,
                report_pks=tuple(s.report_pk for s in statuses),
            )
        )
    return outcomes


def ingest_raw(
    store: IngestStore,
    raw: bytes,
    *,
    origin: str,
    received_at: datetime,
    limits: Limits | None = None,
) -> RawOutcome:
    """Ingest one unit and commit it: the call behind SMTP DATA, HTTP POST and ``retry``."""
    use_limits = limits if limits is not None else DEFAULT_LIMITS
    unit = prepare_unit(raw, origin=origin, received_at=received_at, limits=use_limits)
    return commit_prepared(store, [unit])[0]


# -- many files -------------------------------------------------------------------------------
#
# Bulk ingest with N workers runs N writer processes. Each reads its share of the files,
# decodes and parses them, builds the store's rows (``store/rows.py``) and commits them, one
# transaction per task; this process only walks the folders, hands out file names and adds
# up what the writers report. SQLite takes one writer at a time, so the writers take turns
# under a lock of ours (SQLite's own busy handler sleeps in steps of up to 100 ms): one
# inserts while the others parse. Shipping parsed reports or rows back to one writing process
# was measured first and lost: pickling them cost as much as building them (bench/).

ProgressCallback = Callable[[Tally, int], None]  # (tally so far, units done)
ErrorCallback = Callable[[Path, OSError], None]


class BulkStore(IngestStore, Protocol):
    """What ``ingest_paths`` needs: a batch write of reports whose rows are built already,
    and the URL worker processes open the same database by (None: only this process can)."""

    @property
    def dialect(self) -> str: ...

    @property
    def shared_url(self) -> str | None: ...

    def close_connections(self) -> None:
        """Before forking writers: a SQLite connection must not cross a fork."""

    def ingest_rows(
        self, rows: Sequence[ReportRows], quarantined: Sequence[NewQuarantine]
    ) -> BatchResult: ...


@dataclass(frozen=True, slots=True)
class Staged:
    """One unit ready for the store: its reports as rows, and/or its quarantine entry."""

    origin: str
    rows: tuple[ReportRows, ...] = ()
    quarantine: NewQuarantine | None = None


def stage(prepared: Prepared, builder: RowBuilder) -> Staged:
    """A prepared unit's reports as store rows (identities were checked by ``_finish``)."""
    return Staged(
        prepared.origin, tuple(builder.build(r) for r in prepared.reports), prepared.quarantine
    )


def commit_staged(store: BulkStore, staged: Sequence[Staged]) -> Tally:
    """Write staged units in one transaction; what became of them."""
    if not staged:
        return Tally()
    result = store.ingest_rows(
        [r for s in staged for r in s.rows],
        [s.quarantine for s in staged if s.quarantine is not None],
    )
    new = sum(1 for r in result.reports if r.status == "new")
    return Tally(new, len(result.reports) - new, len(result.quarantined))


# A file to read (its path, and whether it may be an mbox), as the walk yields them.
_Item = tuple[str, bool]


@dataclass(frozen=True, slots=True)
class _Done:
    """What one task did: committed units and their tally, and files it could not read."""

    tally: Tally
    units: int
    unreadable: tuple[tuple[str, OSError], ...]


class _Writer:
    """Stages and commits tasks: in this process, or one per worker process."""

    def __init__(self, store: BulkStore, lock: AbstractContextManager[object]) -> None:
        self.store = store
        self.lock = lock
        self.builder = RowBuilder(store.dialect)

    def run(
        self, items: list[_Item], limits: Limits, received_at: datetime, batch_size: int
    ) -> _Done:
        staged: list[Staged] = []
        unreadable: list[tuple[str, OSError]] = []
        mboxes: list[str] = []
        for origin, may_be_mbox in items:
            try:
                raw = read_unit(origin, limits)
            except OSError as exc:
                unreadable.append((origin, exc))
                continue
            if may_be_mbox and is_mbox(raw):
                mboxes.append(origin)
                continue
            staged.append(self.stage(raw, origin, received_at, limits))
        tally = self.commit(staged)
        units = len(staged)
        for path in mboxes:  # streamed: a batch of messages at a time in memory
            staged = []
            try:
                for source in iter_mbox(Path(path), limits):
                    staged.append(self.stage(source.raw, source.origin, received_at, limits))
                    if len(staged) >= batch_size:
                        tally, units = tally + self.commit(staged), units + len(staged)
                        staged = []
            except OSError as exc:
                unreadable.append((path, exc))
            tally, units = tally + self.commit(staged), units + len(staged)
        return _Done(tally, units, tuple(unreadable))

    def stage(self, raw: bytes, origin: str, received_at: datetime, limits: Limits) -> Staged:
        unit = prepare_unit(raw, origin=origin, received_at=received_at, limits=limits)
        return stage(unit, self.builder)

    def commit(self, staged: list[Staged]) -> Tally:
        if not staged:
            return Tally()
        with self.lock:
            return commit_staged(self.store, staged)


_WRITER: _Writer | None = None  # in a worker process: its own store connection


def _start_writer(parent: int, url: str, lock: AbstractContextManager[object] | None) -> None:
    """Worker process start-up: leave with the parent, open the database."""
    global _WRITER
    _exit_with_parent(parent)
    from stspilot.store import Store  # here, not at the top: the store imports this module's types

    store = Store.open(url, migrate=False)
    # multiprocessing runs these finalizers when the worker exits (it skips atexit).
    multiprocessing.util.Finalize(store, store.close, exitpriority=10)
    _WRITER = _Writer(store, lock if lock is not None else contextlib.nullcontext())


def _write_task(
    items: list[_Item], limits: Limits, received_at: datetime, batch_size: int
) -> _Done:
    assert _WRITER is not None, "worker process started without _start_writer"
    return _WRITER.run(items, limits, received_at, batch_size)


def ingest_paths(
    store: BulkStore,
    paths: Iterable[Path],
    *,
    batch_size: int = 2000,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
    on_error: ErrorCallback | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int = 1,
) -> Tally:
    """Ingest files and folders (.json, .json.gz, .gz, .eml, mbox, Maildir).

    One process (``workers`` 1) commits ``batch_size`` units per transaction, in input
    order. ``workers`` > 1 runs that many writer processes (0: one per CPU, up to 4, when
    there is more than one CPU and more input than one task), each committing tasks of up to
    ``batch_size`` units (at most 500) as they come: the order of commits is not the input
    order, but every transaction is still whole, so a killed run leaves whole batches and a
    re-run turns them into duplicates. A store only this process can open (in-memory
    SQLite) is written from this process.

    A path that cannot be read (permissions, vanished) counts in ``Tally.errors`` and is
    reported to ``on_error`` (on the calling thread); the run goes on with the next path.
    """
    use_limits = limits or DEFAULT_LIMITS
    walk_errors: list[tuple[Path, OSError]] = []
    items: Iterator[_Item] = (
        item
        for path in paths
        for item in iter_files(path, on_error=lambda p, e: walk_errors.append((p, e)))
    )
    cpus = os.cpu_count() or 1
    url = store.shared_url
    task = min(batch_size, _TASK_MAX)
    n_workers = workers
    if workers == 0:
        first = list(itertools.islice(items, task + 1))
        items = itertools.chain(first, items)
        n_workers = min(4, cpus) if len(first) > task and cpus > 1 else 1
    tally = Tally()
    done = 0
    errors = 0

    def report(outcome: _Done) -> None:
        nonlocal tally, done, errors
        failed = [(Path(p), e) for p, e in outcome.unreadable] + walk_errors
        walk_errors.clear()
        for path, exc in failed:
            errors += 1
            if on_error is not None:
                on_error(path, exc)
        tally = tally + outcome.tally
        done += outcome.units
        if on_progress is not None and (outcome.units or failed):
            on_progress(tally + Tally(errors=errors), done)

    if n_workers > 1 and url is not None:
        lock = None if store.dialect == "postgresql" else multiprocessing.get_context("fork").Lock()
        _write_with_workers(
            items, n_workers, url, lock, task, use_limits, clock, report, store.close_connections
        )
    else:
        writer = _Writer(store, contextlib.nullcontext())
        for chunk in _chunks(items, batch_size):
            report(writer.run(chunk, use_limits, clock(), batch_size))
    report(_Done(Tally(), 0, ()))  # errors of the walk's last stretch
    return tally + Tally(errors=errors)


_TASK_MAX = 500  # units per worker task (one transaction): small enough to keep all busy


def _write_with_workers(
    items: Iterator[_Item],
    n_workers: int,
    url: str,
    lock: AbstractContextManager[object] | None,
    task: int,
    limits: Limits,
    clock: Callable[[], datetime],
    report: Callable[[_Done], None],
    close_connections: Callable[[], None],
) -> None:
    close_connections()
    pool = ProcessPoolExecutor(
        max_workers=n_workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_writer,
        initargs=(os.getpid(), url, lock),
    )
    in_flight: deque[Future[_Done]] = deque()
    with pool:
        try:
            for chunk in _chunks(items, task):
                in_flight.append(pool.submit(_write_task, chunk, limits, clock(), task))
                # One task queued per worker beyond the one it runs: no worker idles, and
                # memory stays flat however large the input.
                while len(in_flight) > 2 * n_workers:
                    report(in_flight.popleft().result())
            while in_flight:
                report(in_flight.popleft().result())
        finally:
            pool.shutdown(cancel_futures=True)


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _exit_with_parent(parent: int) -> None:
    """Pool worker start-up: leave when the ingesting process is gone. A SIGKILLed parent
    closes no pipes the workers would notice (they share its descriptors), so without this
    they would wait for work forever. A transaction cut short by the exit is rolled back."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(70)  # EX_SOFTWARE

    threading.Thread(target=watch, name="stspilot-parent-watch", daemon=True).start()
