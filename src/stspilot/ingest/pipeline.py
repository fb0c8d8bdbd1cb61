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

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from stspilot.errors import ParseError, ReportError
from stspilot.ingest.decode import Extracted, envelope_deviations, extract_reports, iter_sources
from stspilot.report_schema import DEFAULT_LIMITS, Limits
from stspilot.reports import fast_pickle, parse_report
from stspilot.store.models import BatchResult, NewQuarantine, NewReport


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

ProgressCallback = Callable[[Tally, int], None]  # (tally so far, units done)


@dataclass(frozen=True, slots=True)
class _Unit:
    raw: bytes
    origin: str
    received_at: datetime
    limits: Limits = field(compare=False)


def _prepare_many(units: list[_Unit]) -> list[Prepared]:
    return [
        prepare_unit(u.raw, origin=u.origin, received_at=u.received_at, limits=u.limits)
        for u in units
    ]


def _extract_many(raws: list[bytes], limits: Limits) -> list[list[Extracted] | Unreadable]:
    """A pool worker's share: module level, so picklable. Extracted parts travel back as a
    few bytes objects; parsed reports would cost more to pickle than to parse again."""
    return [extract_unit(raw, limits) for raw in raws]


def _finish_many(
    units: list[_Unit], extracted: list[list[Extracted] | Unreadable]
) -> list[Prepared]:
    return [
        _finish(u.raw, u.origin, u.received_at, u.limits, found)
        for u, found in zip(units, extracted, strict=True)
    ]


ErrorCallback = Callable[[Path, OSError], None]


def _batches(
    paths: Iterable[Path],
    size: int,
    limits: Limits,
    clock: Callable[[], datetime],
    on_error: Callable[[Path, OSError], None],
) -> Iterator[list[_Unit]]:
    batch: list[_Unit] = []
    for path in paths:
        try:
            # Errors inside a folder are reported per file and the walk goes on.
            for source in iter_sources(path, limits=limits, on_error=on_error):
                batch.append(_Unit(source.raw, source.origin, clock(), limits))
                if len(batch) >= size:
                    yield batch
                    batch = []
        except OSError as exc:  # unreadable: no bytes to quarantine, so count and tell
            on_error(path, exc)
    if batch:
        yield batch


def ingest_paths(
    store: IngestStore,
    paths: Iterable[Path],
    *,
    batch_size: int = 2000,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
    on_error: ErrorCallback | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int = 1,
) -> Tally:
    """Ingest files and folders (.json, .json.gz, .gz, .eml, mbox, Maildir), ``batch_size``
    units per transaction.

    ``workers`` > 1 parses in that many processes (0: one per CPU, up to 4). Measured on 2
    CPUs (bench/ingest_bench.py) neither that nor a reader thread beat one thread: pickling
    parsed reports back costs more than the parsing it spreads, and a reader thread fights
    the committing one for the GIL (+20% CPU, no wall gain), so the default is 1.
    Commits happen in input order on the calling thread either way, one transaction per
    batch, so a killed run leaves whole batches and a re-run turns them into duplicates.

    A path that cannot be read (permissions, vanished) counts in ``Tally.errors`` and is
    reported to ``on_error`` (on the calling thread); the run goes on with the next path.
    """
    use_limits = limits if limits is not None else DEFAULT_LIMITS
    tally = Tally()
    done = 0
    errors: list[tuple[Path, OSError]] = []

    def commit(size: int, prepared: list[Prepared], failed: list[tuple[Path, OSError]]) -> None:
        nonlocal tally, done
        for path, exc in failed:
            errors.append((path, exc))
            if on_error is not None:
                on_error(path, exc)
        if prepared:
            tally = tally + Tally.of(commit_prepared(store, prepared))
        done += size
        if on_progress is not None and (size or failed):
            on_progress(tally + Tally(errors=len(errors)), done)

    n_workers = workers if workers > 0 else min(4, os.cpu_count() or 1)
    if n_workers > 1:
        _ingest_with_pool(paths, batch_size, use_limits, clock, n_workers, commit)
    else:
        for size, prepared, failed in _in_order(paths, batch_size, use_limits, clock):
            commit(size, prepared, failed)
    return tally + Tally(errors=len(errors))


def _in_order(
    paths: Iterable[Path], size: int, limits: Limits, clock: Callable[[], datetime]
) -> Iterator[tuple[int, list[Prepared], list[tuple[Path, OSError]]]]:
    failed: list[tuple[Path, OSError]] = []
    for batch in _batches(paths, size, limits, clock, lambda p, e: failed.append((p, e))):
        yield len(batch), _prepare_many(batch), failed[:]
        failed.clear()
    yield 0, [], failed


def _exit_with_parent(parent: int) -> None:
    """Pool worker start-up: leave when the ingesting process is gone. A SIGKILLed parent
    closes no pipes the workers would notice (they share its descriptors), so without this
    they would wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(70)  # EX_SOFTWARE; nothing of ours to flush: the parent commits, not us

    threading.Thread(target=watch, name="stspilot-parent-watch", daemon=True).start()


_Flight = tuple[list[_Unit], Future[list[list[Extracted] | Unreadable]], list[tuple[Path, OSError]]]


def _ingest_with_pool(
    paths: Iterable[Path],
    size: int,
    limits: Limits,
    clock: Callable[[], datetime],
    n_workers: int,
    commit: Callable[[int, list[Prepared], list[tuple[Path, OSError]]], None],
) -> None:
    # Workers decode (mail parsing, gunzip); this process parses the JSON and commits, in
    # input order, with up to n_workers + 1 batches in flight so the pool never idles.
    failed: list[tuple[Path, OSError]] = []
    in_flight: deque[_Flight] = deque()

    def land() -> None:
        units, future, errs = in_flight.popleft()
        commit(len(units), _finish_many(units, future.result()), errs)

    pool = ProcessPoolExecutor(
        max_workers=n_workers, initializer=_exit_with_parent, initargs=(os.getpid(),)
    )
    with pool:
        try:
            for batch in _batches(paths, size, limits, clock, lambda p, e: failed.append((p, e))):
                future = pool.submit(_extract_many, [u.raw for u in batch], limits)
                in_flight.append((batch, future, failed[:]))
                failed.clear()
                if len(in_flight) > n_workers:
                    land()
            while in_flight:
                land()
            commit(0, [], failed)
        finally:
            pool.shutdown(cancel_futures=True)
