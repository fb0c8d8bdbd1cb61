"""The ingest pipeline against a real store: units in, reports stored once, the rest kept."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from intake_samples import report_json, report_mail
from stspilot.ingest.bulk import ingest_paths
from stspilot.ingest.pipeline import STORE_REFUSED, Tally, ingest_raw
from stspilot.store import Store
from stspilot.store.batch import QUARANTINE_KEEP_BYTES
from stspilot.tlsrpt.schema import Limits

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GOOD = report_json("sender.example", "2026-11-20T00:00:00Z_example.com", failures=2)


def _quarantined(store: Store) -> dict[str, str]:
    """origin -> code of every open quarantine entry."""
    return {item.origin: item.code for item in store.list_quarantine(limit=10_000)}


@pytest.mark.parametrize(
    ("name", "raw", "new", "quarantined"),
    [
        ("json", GOOD, 1, False),
        ("gzip", gzip.compress(GOOD), 1, False),
        ("mail gzip", report_mail(GOOD), 1, False),
        ("mail json", report_mail(GOOD, compress=False), 1, False),
        ("mail two", report_mail(GOOD, report_json("sender.example", "r2")), 2, False),
        ("garbage", b"\x00\x01 not a report", 0, True),
        ("json not report", b'{"hello": "world"}', 0, True),
        ("truncated gzip", gzip.compress(GOOD)[:40], 0, True),
        ("empty", b"", 0, True),
        ("mail without report", b"From: a@b\r\nSubject: cron\r\n\r\nhello\r\n", 0, True),
    ],
)
def test_ingest_raw_one_unit(
    store: Store, name: str, raw: bytes, new: int, quarantined: bool
) -> None:
    outcome = ingest_raw(store, raw, origin=name, received_at=NOW)
    assert (outcome.new, outcome.duplicate, outcome.quarantined) == (new, 0, quarantined)
    assert store.count_reports() == new
    if quarantined:
        assert outcome.code
        [item] = store.list_quarantine()
        assert (item.origin, item.code) == (name, outcome.code)
        assert store.quarantine_raw(item.id) == raw  # the bytes themselves are kept
    else:
        assert store.list_quarantine() == []
        assert all(store.report_raw(pk) == raw for pk in outcome.report_pks)


def test_same_input_twice_is_a_no_op(store: Store) -> None:
    first = ingest_raw(store, report_mail(GOOD), origin="a", received_at=NOW)
    again = ingest_raw(store, gzip.compress(GOOD), origin="b", received_at=NOW)
    bad1 = ingest_raw(store, b"junk", origin="c", received_at=NOW)
    bad2 = ingest_raw(store, b"junk", origin="d", received_at=NOW)
    assert (first.new, again.new, again.duplicate) == (1, 0, 1)
    assert again.report_pks == first.report_pks
    assert bad1.quarantined and bad2.quarantined
    assert store.count_reports() == 1
    assert len(store.list_quarantine()) == 1  # same bytes: one entry


def test_mail_with_one_bad_report_keeps_the_good_one_and_the_whole_mail(store: Store) -> None:
    other = report_json("sender.example", "second")
    raw = report_mail(GOOD, b'{"organization-name": "x"}', other)
    outcome = ingest_raw(store, raw, origin="mixed", received_at=NOW)
    assert (outcome.new, outcome.quarantined, outcome.code) == (2, True, "report.partial")
    assert outcome.reason is not None and "2 of 3" in outcome.reason
    [item] = store.list_quarantine()
    assert store.quarantine_raw(item.id) == raw
    # After a parser fix, retrying the unit only adds what was missing.
    again = ingest_raw(store, raw, origin="mixed", received_at=NOW)
    assert (again.new, again.duplicate) == (0, 2)


def _write_tree(root: Path) -> dict[str, int]:
    """A folder of mixed inputs; returns how many reports / bad units it holds."""
    (root / "sub").mkdir(parents=True)
    for i in range(7):
        (root / f"r{i}.json").write_bytes(report_json("a.example", f"json-{i}", failures=i % 3))
    for i in range(5):
        (root / "sub" / f"r{i}.json.gz").write_bytes(
            gzip.compress(report_json("b.example", f"gz-{i}"))
        )
    for i in range(4):
        (root / "sub" / f"m{i}.eml").write_bytes(
            report_mail(report_json("c.example", f"mail-{i}"), report_json("c.example", f"x{i}"))
        )
    (root / "broken.json").write_bytes(b'{"organization-name": ')
    (root / "sub" / "note.eml").write_bytes(b"From: cron@x\r\nSubject: hi\r\n\r\ndone\r\n")
    return {"reports": 7 + 5 + 8, "bad": 2}


@pytest.mark.parametrize(("batch_size", "workers"), [(500, 1), (3, 1), (4, 2)])
def test_ingest_paths_tree_and_rerun(
    store: Store, tmp_path: Path, batch_size: int, workers: int
) -> None:
    expect = _write_tree(tmp_path / "in")
    seen: list[tuple[Tally, int]] = []
    tally = ingest_paths(
        store,
        [tmp_path / "in"],
        batch_size=batch_size,
        workers=workers,
        on_progress=lambda t, n: seen.append((t, n)),
        clock=lambda: NOW,
    )
    assert tally == Tally(new=expect["reports"], quarantined=expect["bad"])
    assert seen and seen[-1] == (tally, 18)
    assert [n for _, n in seen] == sorted(n for _, n in seen)
    assert store.count_reports() == expect["reports"]
    again = ingest_paths(store, [tmp_path / "in"], batch_size=batch_size, workers=workers)
    assert again == Tally(duplicate=expect["reports"], quarantined=expect["bad"])
    assert store.count_reports() == expect["reports"]
    assert len(store.list_quarantine()) == expect["bad"]


def test_duplicates_inside_one_batch(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "in"  # tmp_path also holds the SQLite file
    folder.mkdir()
    for i in range(3):  # the same report three times, three different byte forms
        (folder / f"a{i}.json").write_bytes(GOOD + b" " * i)
    tally = ingest_paths(store, [folder], batch_size=10, workers=1)
    assert tally == Tally(new=1, duplicate=2)


def test_corpus_every_input_is_stored_or_kept(store: Store, corpus_dir: Path) -> None:
    folders = [corpus_dir / "tlsrpt-json", corpus_dir / "tlsrpt-email"]
    inputs = sum(1 for f in folders for p in f.iterdir() if p.is_file())
    tally = ingest_paths(store, folders, workers=1, clock=lambda: NOW)
    kept = _quarantined(store)
    # Every input is accounted for: a report (new or a re-sent duplicate) or a quarantine entry.
    assert tally.new + tally.duplicate + tally.quarantined >= inputs
    assert tally.errors == 0
    assert store.count_reports() == tally.new
    assert any("negative__not-a-report" in origin for origin in kept)
    assert len(kept) == tally.quarantined


@pytest.mark.parametrize(
    ("files", "args", "code", "out"),
    [
        ({"a.json": GOOD}, [], 0, "1 new, 0 duplicate, 0 quarantined"),
        ({"a.json": GOOD, "b.json": b"{"}, [], 1, "1 new, 0 duplicate, 1 quarantined"),
        ({"a.json": GOOD}, ["--json"], 0, '{"new": 1, "duplicate": 0, "quarantined": 0'),
    ],
)
def test_cli_ingest_paths(
    tmp_path: Path,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, bytes],
    args: list[str],
    code: int,
    out: str,
) -> None:
    from stspilot.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    assert main(["ingest", str(folder), "--db", store_url, *args]) == code
    assert capsys.readouterr().out.startswith(out)


def test_cli_ingest_missing_path_is_operational_error(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from stspilot.cli import main

    assert main(["ingest", str(tmp_path / "nope"), "--db", store_url]) == 4
    assert "no such file" in capsys.readouterr().err


def test_carrier_and_envelope_deviations_are_stored(store: Store) -> None:
    # A +json part carrying gzip is misdeclared (RFC 8460 §6.4/§6.5); the mail has no DKIM.
    mail = report_mail(GOOD).replace(b"application/tlsrpt+gzip", b"application/tlsrpt+json")
    outcome = ingest_raw(store, mail, origin="test", received_at=NOW)
    assert outcome.new == 1
    stored = store.get_report(outcome.report_pks[0])
    assert stored is not None
    codes = [d.code for d in stored.deviations]
    assert "mail.type.misdeclared" in codes and "mail.dkim.missing" in codes


def _mail_tree(root: Path) -> int:
    root.mkdir()
    for i in range(12):
        body = report_json("sender.example", f"w{i}", failures=i % 3)
        (root / f"{i:02d}.eml").write_bytes(report_mail(body, compress=i % 2 == 0))
    (root / "bad.eml").write_bytes(b"From: a@b\r\nSubject: cron\r\n\r\nhello\r\n")
    (root / "zz.json.gz").write_bytes(gzip.compress(GOOD))
    return 13


def test_worker_processes_store_what_one_process_stores(tmp_path: Path, store_url: str) -> None:
    """Workers decode, this process parses and commits: same reports, same deviations."""
    expected = _mail_tree(tmp_path / "in")
    results = []
    for workers, suffix in ((1, "one"), (2, "two")):
        url = store_url if workers == 1 else f"sqlite:///{tmp_path / f'{suffix}.sqlite3'}"
        with Store.open(url) as store:
            tally = ingest_paths(store, [tmp_path / "in"], batch_size=4, workers=workers)
            assert tally == Tally(new=expected, quarantined=1)
            stored = [store.get_report(r.pk) for r in store.list_reports(limit=100)]
            rows = [(s.origin, s.report, s.deviations) for s in stored if s is not None]
            results.append(sorted(rows, key=lambda row: (row[0], row[1].report_id)))
    assert results[0] == results[1] and len(results[0]) == expected


def test_decode_workers_leave_when_the_ingesting_process_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pool.py"
    script.write_text(
        "import os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from stspilot.ingest.bulk import _start_worker\n"
        "def pid(_: int) -> int:\n"
        "    time.sleep(0.05)\n"
        "    return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    me = os.getpid()\n"
        "    pool = ProcessPoolExecutor(2, initializer=_start_worker, initargs=(me,))\n"
        "    print(*sorted(set(pool.map(pid, range(8)))), flush=True)\n"
        "    time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        workers = [int(pid) for pid in proc.stdout.readline().split()]
        assert workers and proc.pid not in workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    left = [w for w in workers if Path(f"/proc/{w}").exists()]
    for pid in left:  # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left


# --- bulk ingest with worker processes (ingest/bulk.py) ----------------------------------------


def _mbox(messages: list[bytes]) -> bytes:
    out = b""
    for raw in messages:
        out += (
            b"From reports@sender.example Sun Nov 22 12:00:00 2026\n"
            + raw.replace(b"\r\n", b"\n").rstrip(b"\n")
            + b"\n\n"
        )
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_mbox_messages_are_units_with_workers_too(
    store: Store, tmp_path: Path, workers: int
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    mails = [report_mail(report_json("sender.example", f"mbox-{i}")) for i in range(5)]
    (folder / "a.json").write_bytes(GOOD)
    (folder / "inbox").write_bytes(_mbox([*mails, b"From: a@b\nSubject: cron\n\nhello\n"]))
    (folder / "z.json.gz").write_bytes(gzip.compress(report_json("sender.example", "last")))
    seen: list[int] = []
    tally = ingest_paths(
        store, [folder], batch_size=2, workers=workers, on_progress=lambda t, n: seen.append(n)
    )
    assert tally == Tally(new=7, quarantined=1)
    assert seen[-1] == 8 and seen == sorted(seen)  # units: 2 files and 6 messages
    origins = {r.origin for r in store.list_reports(limit=100)}
    assert {f"{folder / 'inbox'}#{i}" for i in range(5)} <= origins
    assert list(_quarantined(store)) == [f"{folder / 'inbox'}#5"]


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_paths_are_errors_and_the_rest_is_stored(
    store: Store, tmp_path: Path, workers: int
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_bytes(GOOD)
    missing = tmp_path / "gone.json"
    errors: list[tuple[Path, OSError]] = []
    tally = ingest_paths(
        store, [missing, folder], workers=workers, on_error=lambda p, e: errors.append((p, e))
    )
    assert tally == Tally(new=1, errors=1)
    [(path, exc)] = errors
    assert path == missing and isinstance(exc, FileNotFoundError)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_identity_too_long_to_index_is_quarantined_not_fatal(
    store: Store, tmp_path: Path, workers: int
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_bytes(report_json("sender.example", "x" * 600))
    (folder / "b.json").write_bytes(GOOD)
    tally = ingest_paths(store, [folder], workers=workers)
    assert tally == Tally(new=1, quarantined=1)
    assert _quarantined(store) == {str(folder / "a.json"): "report.identity.too-long"}


def test_auto_workers_store_what_one_process_stores(tmp_path: Path, store_url: str) -> None:
    """``workers=0`` on a folder larger than one worker task: the same reports as one process."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(300):
        body = report_json(f"d{i % 7}.example", f"auto-{i}", failures=i % 3)
        name = f"{i:04d}" + (".json.gz" if i % 2 else ".json")
        (folder / name).write_bytes(gzip.compress(body) if i % 2 else body)
    results = []
    for workers, url in ((1, store_url), (0, f"sqlite:///{tmp_path / 'auto.sqlite3'}")):
        with Store.open(url) as store:
            assert ingest_paths(store, [folder], workers=workers) == Tally(new=300)
            reports = [store.get_report(r.pk) for r in store.list_reports(limit=1000)]
            results.append(sorted((s.origin, s.report) for s in reports if s is not None))
    assert results[0] == results[1]


def _past_int64(report_id: str) -> bytes:
    """A report whose counts are each valid I-JSON (< 2**53) but whose sum passes 2**63 - 1."""
    doc = json.loads(report_json("sender.example", report_id))
    policy = doc["policies"][0]
    policy["summary"]["total-successful-session-count"] = 2**53 - 1
    doc["policies"] = [policy] * 1100
    return json.dumps(doc).encode()


def test_cli_ingest_quarantines_a_report_past_the_session_bound(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It made ``ingest`` exit 5 ("a bug") and roll back the whole batch, on every re-run;
    now it is kept in quarantine (exit 1, as for any quarantined input) beside the good ones."""
    from stspilot.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_bytes(report_json("sender.example", "good-a"))
    (folder / "b.json").write_bytes(_past_int64("huge"))
    (folder / "c.json").write_bytes(report_json("sender.example", "good-c"))
    assert main(["ingest", str(folder), "--db", store_url]) == 1
    assert capsys.readouterr().out.startswith("2 new, 0 duplicate, 1 quarantined")
    with Store.open(store_url) as store:
        assert _quarantined(store) == {str(folder / "b.json"): "report.limit.sessions"}


# Past the parser's bound on purpose: the store itself must refuse what it cannot hold.
UNBOUNDED = Limits(max_sessions=2**70)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_unit_the_store_refuses_is_kept_and_its_batch_stored(
    store: Store, tmp_path: Path, workers: int
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}-good.json").write_bytes(report_json("sender.example", f"good-{i}"))
    (folder / "2-huge.json").write_bytes(_past_int64("huge"))
    tally = ingest_paths(store, [folder], workers=workers, limits=UNBOUNDED)
    assert tally == Tally(new=4, quarantined=1)
    assert _quarantined(store) == {str(folder / "2-huge.json"): STORE_REFUSED}
    [item] = store.list_quarantine()
    assert "refused" in item.reason
    raw = _past_int64("huge")  # over the quarantine's kept prefix: its head, size and hash stay
    kept = store.quarantine_raw(item.id)
    assert raw.startswith(kept) and item.size == len(raw)
    assert len(kept) == min(len(raw), QUARANTINE_KEEP_BYTES)
    again = ingest_paths(store, [folder], workers=workers, limits=UNBOUNDED)
    assert again == Tally(duplicate=4, quarantined=1)
    assert len(store.list_quarantine()) == 1


def test_ingest_raw_keeps_a_unit_the_store_refuses(store: Store) -> None:
    """SMTP DATA and HTTP POST must not answer "retry later" for ever to such a unit."""
    outcome = ingest_raw(
        store, _past_int64("huge"), origin="smtp", received_at=NOW, limits=UNBOUNDED
    )
    assert (outcome.new, outcome.quarantined, outcome.code) == (0, True, STORE_REFUSED)
    assert store.count_reports() == 0
