"""Bulk ingest: files and folders (.json, .json.gz, .gz, .eml, mbox, Maildir) into the store.

With one worker everything runs in this process. With N workers the work is split by what
can run in parallel:

- N worker processes read the files, decode them (gunzip, mail), parse the reports and build
  the store's rows (``store/rows.py``): everything but the database.
- This process walks the folders, hands out file names, and inserts and commits the rows it
  gets back, in input order, one transaction per ``batch_size`` units. Its SQLite page cache
  stays warm, which it would not with several writing processes (each commit by one empties
  the others' caches; measured: a third more time per insert).

Rows travel back as ``marshal`` data (strings, numbers and bytes in plain tuples): about a
third of ``pickle``'s cost for dataclasses, where parsed reports cost more to pickle than to
parse again. PostgreSQL rows carry datetimes, so they travel as pickle.

``ingest_paths_opening`` opens the store once the workers have their first tasks: they fork
from a process that has not loaded the store's libraries, and opening it (SQLAlchemy's
import, a new store's migrations) runs beside their parsing (``stspilot ingest``,
``cli/ingest_run.py``).

Crash safety is the pipeline's (``ingest/pipeline.py``): a batch is one transaction, so a
killed run leaves whole batches and a re-run turns them into duplicates.
"""

from __future__ import annotations

import gc
import itertools
import logging
import marshal
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from stspilot.errors import StoreError, StoreRefused
from stspilot.ingest.decode import is_mbox, iter_files, iter_mbox, read_unit
from stspilot.ingest.pipeline import IngestStore, Tally, prepare_unit, refused_quarantine
from stspilot.store.models import BatchResult, NewQuarantine
from stspilot.store.rows import ReportRows, RowBuilder
from stspilot.tlsrpt.schema import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from stspilot.ingest.dkim import DkimSettings, DkimVerifier

__all__ = [
    "BulkStore",
    "ErrorCallback",
    "ProgressCallback",
    "Staged",
    "ingest_paths",
    "ingest_paths_opening",
]

ProgressCallback = Callable[[Tally, int], None]  # (tally so far, units done)
ErrorCallback = Callable[[Path, OSError], None]
_T = TypeVar("_T")
log = logging.getLogger(__name__)

TASK = 250  # units per worker task: small, so that both sides are busy from the start
AUTO_MAX_WORKERS = 4


class BulkStore(IngestStore, Protocol):
    """What ``ingest_paths`` needs from ``stspilot.store.Store``."""

    @property
    def dialect(self) -> str: ...

    def ingest_rows(
        self, rows: Sequence[ReportRows], quarantined: Sequence[NewQuarantine]
    ) -> BatchResult: ...


class Staged:
    """One unit ready for the store: its reports as rows and/or why it is quarantined."""

    __slots__ = ("origin", "quarantine", "received_at", "rows")

    def __init__(
        self,
        origin: str,
        rows: tuple[ReportRows, ...],
        quarantine: NewQuarantine | None,
        received_at: datetime,
    ) -> None:
        self.origin = origin
        self.rows = rows
        self.quarantine = quarantine
        self.received_at = received_at


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
    dkim: DkimSettings | None = None,
) -> Tally:
    """Ingest files and folders, ``batch_size`` units per transaction, committed in input
    order (an mbox's messages follow the files read after it).

    ``workers`` > 1 reads, decodes, parses and builds rows in that many processes while this
    one inserts. 0 picks one per CPU (up to 4) when there is more than one CPU and more input
    than one task, else stays in this process.

    A path that cannot be read (permissions, vanished) counts in ``Tally.errors`` and is
    reported to ``on_error`` (on the calling thread); the run goes on with the next path.

    With ``dkim``, mails' DKIM signatures are verified (``ingest/dkim.py``): each process
    that stages units builds its own verifier, with its own key cache, from these settings.
    """
    return ingest_paths_opening(
        lambda: store,
        store.dialect,
        paths,
        batch_size=batch_size,
        limits=limits,
        on_progress=on_progress,
        on_error=on_error,
        clock=clock,
        workers=workers,
        dkim=dkim,
    )


def ingest_paths_opening(
    open_store: Callable[[], BulkStore],
    dialect: str,
    paths: Iterable[Path],
    *,
    batch_size: int = 2000,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
    on_error: ErrorCallback | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int = 1,
    dkim: DkimSettings | None = None,
) -> Tally:
    """``ingest_paths`` into the store ``open_store()`` opens (once, for ``dialect``): with
    workers, after they have their first tasks, so that the store's start-up (importing
    SQLAlchemy, opening, migrating a new store) runs beside their reading and parsing, and
    the workers fork from a process that has not loaded it. The caller closes the store."""
    run = _Run(
        open_store,
        dialect,
        batch_size,
        limits or DEFAULT_LIMITS,
        on_progress,
        on_error,
        clock,
        dkim,
    )
    items: Iterator[_Item] = (
        item for path in paths for item in iter_files(path, on_error=run.walk_error)
    )
    n_workers = workers
    if workers == 0:
        cpus = os.cpu_count() or 1
        first = list(itertools.islice(items, TASK + 1))
        items = itertools.chain(first, items)
        n_workers = min(AUTO_MAX_WORKERS, cpus) if cpus > 1 and len(first) > TASK else 1
    # What is alive now lives on: keep the collector from walking it again and again while
    # the batches' millions of short-lived tuples trigger collections (-4% of the storing
    # side's instructions, callgrind). And no automatic collections at all during the run:
    # the staged rows (up to two batches, tens of thousands of tuples) survived into the
    # older generations and were walked again by each of their collections, ~18k
    # instructions a stored report (7% of the storing process's, callgrind). A run makes
    # almost no cyclic garbage (~50 objects a thousand files); what it makes is collected
    # after each commit (``_Run.commit``), so memory stays bounded however long the run.
    gc.freeze()
    collecting = gc.isenabled()
    gc.disable()
    try:
        if n_workers > 1:
            run.with_pool(items, n_workers)
        else:
            run.in_process(items)
        return run.finish()
    finally:
        if collecting:
            gc.enable()
        gc.unfreeze()


# -- what workers do -------------------------------------------------------------------------

# A unit to stage: a file (path, whether it may be an mbox) or a message read already
# (origin, its bytes).
_Item = tuple[str, bool] | tuple[str, bytes]
# What staging gives back per item, as plain data (marshal-able for SQLite):
#   (0, origin, rows, quarantine)   rows: ReportRows as tuples; quarantine: (raw, code, reason)
#   (1, path)                       an mbox: this process splits it into messages
#   (2, path, errno, strerror)      the file could not be read
_Plain = tuple[Any, ...]
_BUILDERS: dict[str, RowBuilder] = {}  # per process: memos outlive a task
_VERIFIERS: dict[DkimSettings, DkimVerifier] = {}  # per process: the key cache outlives a task


def _verifier(settings: DkimSettings) -> DkimVerifier:
    verifier = _VERIFIERS.get(settings)
    if verifier is None:
        from stspilot.ingest.dkim import DkimVerifier  # dkimpy only when asked for

        verifier = _VERIFIERS[settings] = DkimVerifier(settings)
    return verifier


def _stage(
    items: list[_Item],
    limits: Limits,
    received_at: datetime,
    dialect: str,
    dkim: DkimSettings | None = None,
) -> list[_Plain]:
    builder = _BUILDERS.get(dialect)
    if builder is None:
        builder = _BUILDERS[dialect] = RowBuilder(dialect)
    verifier = None if dkim is None else _verifier(dkim)
    out: list[_Plain] = []
    for origin, what in items:
        if what.__class__ is bytes:
            raw: bytes = what
        else:
            try:
                raw = read_unit(origin, limits)
            except OSError as exc:
                out.append((2, origin, exc.errno or 0, exc.strerror or str(exc)))
                continue
            if what and is_mbox(raw):
                out.append((1, origin))
                continue
        unit = prepare_unit(
            raw, origin=origin, received_at=received_at, limits=limits, dkim=verifier
        )
        rows = tuple(tuple(builder.build(r)) for r in unit.reports)
        q = unit.quarantine
        out.append((0, origin, rows, None if q is None else (q.raw, q.code, q.reason)))
    return out


def _stage_task(
    items: list[_Item],
    limits: Limits,
    received_at: datetime,
    dialect: str,
    dkim: DkimSettings | None = None,
) -> bytes:
    """A worker's task (module level, so picklable): staged units as bytes."""
    staged = _stage(items, limits, received_at, dialect, dkim)
    return marshal.dumps(staged) if dialect == "sqlite" else pickle.dumps(staged, protocol=5)


def _start_worker(parent: int) -> None:
    """Pool worker start-up: leave when the ingesting process is gone. A SIGKILLed parent
    closes no pipes the workers would notice (they share its descriptors), so without this
    they would wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(70)  # EX_SOFTWARE; nothing of ours to flush: the parent commits, not us

    threading.Thread(target=watch, name="stspilot-parent-watch", daemon=True).start()
    gc.freeze()  # the parent's objects, inherited: not ours to collect (nor to copy on write)
    # Forked from a parent that collects nothing during the run (``ingest_paths_opening``):
    # a worker lives as long as the run and holds little, so it collects as usual (1.5% of
    # its instructions, callgrind), and the garbage of failed parses stays bounded.
    gc.enable()


# -- what this process does ------------------------------------------------------------------


class _Run:
    """One ``ingest_paths`` call: staged units in, batches committed, tally and progress out."""

    def __init__(
        self,
        open_store: Callable[[], BulkStore],
        dialect: str,
        batch_size: int,
        limits: Limits,
        on_progress: ProgressCallback | None,
        on_error: ErrorCallback | None,
        clock: Callable[[], datetime],
        dkim: DkimSettings | None = None,
    ) -> None:
        self._open_store = open_store
        self._store: BulkStore | None = None
        self.dkim = dkim
        self.dialect = dialect
        self.batch_size = batch_size
        self.limits = limits
        self.on_progress = on_progress
        self.on_error = on_error
        self.clock = clock
        self.tally = Tally()
        self.errors = 0
        self.done = 0
        self.failed: list[tuple[Path, OSError]] = []  # reported with the next commit
        self.pending: list[Staged] = []
        self.mboxes: deque[str] = deque()

    def store(self) -> BulkStore:
        """The store, opened on first use (``ingest_paths_opening``)."""
        if self._store is None:
            store = self._open_store()
            if store.dialect != self.dialect:  # rows were built for the other engine
                raise StoreError(f"the store is {store.dialect}, not {self.dialect}")
            self._store = store
            gc.freeze()  # what opening it loaded lives on (as in ingest_paths_opening)
        return self._store

    def walk_error(self, path: Path, exc: OSError) -> None:
        self.failed.append((path, exc))

    def in_process(self, items: Iterator[_Item]) -> None:
        self.store()  # nothing to run beside it: open first, so a bad store fails at once

        def stage_here(task: list[_Item]) -> None:
            received_at = self.clock()
            staged = _stage(task, self.limits, received_at, self.dialect, self.dkim)
            self.take(staged, received_at)

        for task in _chunks(items, TASK):
            stage_here(task)
            self.split_mboxes(stage_here)

    def with_pool(self, items: Iterator[_Item], n_workers: int) -> None:
        in_flight: deque[tuple[Future[bytes], datetime]] = deque()
        pool = ProcessPoolExecutor(
            max_workers=n_workers, initializer=_start_worker, initargs=(os.getpid(),)
        )
        decode = marshal.loads if self.dialect == "sqlite" else pickle.loads

        def land() -> None:
            self.store()  # opened while the workers have work (ingest_paths_opening)
            future, received_at = in_flight[0]
            if self.pending and not future.done():
                # Nothing to take yet: commit what is staged instead of idling (a smaller
                # batch, still one whole transaction), so the workers' head start at the
                # beginning and their stalls later cost this process no time.
                self.commit()
            in_flight.popleft()
            self.take(decode(future.result()), received_at)

        # Workers stage the next batch while this process commits one, and nothing is
        # submitted during a commit: two batches' worth of tasks in flight (with fewer, the
        # two sides took turns), and no more, so memory stays flat however large the input.
        most = 2 * -(-self.batch_size // TASK) + 2 * n_workers

        def submit(task: list[_Item]) -> None:
            received_at = self.clock()
            future = pool.submit(
                _stage_task, task, self.limits, received_at, self.dialect, self.dkim
            )
            in_flight.append((future, received_at))
            while len(in_flight) > most:
                land()

        with pool:
            try:
                for task in _chunks(items, TASK):
                    submit(task)
                    self.split_mboxes(submit)
                while in_flight:
                    land()
                    self.split_mboxes(submit)
            finally:
                pool.shutdown(cancel_futures=True)

    def take(self, staged: list[_Plain], received_at: datetime) -> None:
        pending = self.pending
        make_rows = ReportRows._make
        for entry in staged:
            kind = entry[0]
            if kind == 0:
                _, origin, rows, q = entry
                quarantine = None
                if q is not None:
                    quarantine = NewQuarantine(q[0], origin, q[1], q[2], received_at)
                pending.append(Staged(origin, tuple(map(make_rows, rows)), quarantine, received_at))
            elif kind == 1:
                self.mboxes.append(entry[1])
            else:
                _, path, errno, strerror = entry
                self.failed.append((Path(path), OSError(errno, strerror, path)))
        if len(pending) >= self.batch_size:
            self.commit()

    def split_mboxes(self, send: Callable[[list[_Item]], None]) -> None:
        """Hand on the messages of the mboxes found so far, a task at a time (streaming)."""
        while self.mboxes:
            path = Path(self.mboxes.popleft())
            try:
                messages: Iterator[_Item] = (
                    (s.origin, s.raw) for s in iter_mbox(path, self.limits)
                )
                for task in _chunks(messages, TASK):
                    send(task)
            except OSError as exc:
                self.failed.append((path, exc))

    def commit(self) -> None:
        """Commit full batches (and, from ``finish``, the rest); report errors and progress."""
        while self.pending or self.failed:
            batch = self.pending[: self.batch_size]
            del self.pending[: self.batch_size]
            failed = self.failed[:]
            self.failed.clear()
            for path, exc in failed:
                self.errors += 1
                if self.on_error is not None:
                    self.on_error(path, exc)
            if batch:
                self.tally = self.tally + _commit(self.store(), batch)
                self.done += len(batch)
                del batch
                gc.collect(1)  # the young generations only: the run's cyclic garbage, if any
            if self.on_progress is not None:
                self.on_progress(self.tally + Tally(errors=self.errors), self.done)
            if len(self.pending) < self.batch_size:
                return

    def finish(self) -> Tally:
        self.store()  # opened, created or migrated even when there was no input
        while self.pending or self.failed:  # each call commits at least one batch
            self.commit()
        return self.tally + Tally(errors=self.errors)


def _commit(store: BulkStore, staged: Sequence[Staged]) -> Tally:
    """The units in one transaction; if the store fails it, each unit in one of its own, so
    one unit can never keep the others out (``pipeline.commit_units`` for the other paths).
    Raises ``StoreError`` when a unit cannot be committed even alone (the database is
    unavailable): what was committed stays, and a re-run turns it into duplicates."""
    try:
        return _commit_together(store, staged)
    except StoreError as exc:
        if len(staged) > 1:
            log.warning("a batch of %d units failed (%s); committing each alone", len(staged), exc)
    return sum((_commit_alone(store, unit) for unit in staged), Tally())


def _commit_alone(store: BulkStore, unit: Staged) -> Tally:
    """One unit; one the database refuses (values it cannot hold) is quarantined instead."""
    try:
        return _commit_together(store, [unit])
    except StoreRefused as exc:
        if not unit.rows:
            raise
        kept = refused_quarantine(unit.rows[0].raw, unit.origin, unit.received_at, exc)
        if unit.quarantine is not None:  # a part that did not parse: say that too
            kept = replace(kept, reason=f"{kept.reason}; also {unit.quarantine.reason}")
        return _commit_together(store, [Staged(unit.origin, (), kept, unit.received_at)])


def _commit_together(store: BulkStore, staged: Sequence[Staged]) -> Tally:
    """One transaction: the units' reports and quarantine entries; what became of them."""
    result = store.ingest_rows(
        [r for s in staged for r in s.rows],
        [s.quarantine for s in staged if s.quarantine is not None],
    )
    new = sum(1 for r in result.reports if r.status == "new")
    return Tally(new, len(result.reports) - new, len(result.quarantined))


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
