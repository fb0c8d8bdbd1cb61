"""SIGKILL `stspilot ingest` at random moments, run it again: every report stored exactly once,
no half-written report (policy and failure-detail rows match), quarantine intact."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from stspilot.lab.sample_reports import generate_reports, to_email, to_gzip, to_json_bytes
from stspilot.store import Store
from stspilot.store.schema import quarantine

pytestmark = [pytest.mark.db, pytest.mark.slow]

REPORTS = 2000
BAD = 25
KILLS = 5


def _write_corpus(folder: Path) -> tuple[dict[tuple[str, str], tuple[int, int]], set[str]]:
    """Reports as .json, .json.gz and .eml files plus unreadable files.

    Returns {(org, report-id): (policies, failure details)} of the first copy of each report
    (later copies are duplicates) and the SHA-256 of every bad file.
    """
    folder.mkdir()
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    reports = generate_reports(REPORTS, seed=11, domains=[f"d{i}.example" for i in range(20)])
    for i, report in enumerate(reports):
        form = i % 3
        if form == 0:
            (folder / f"{i:05d}.json").write_bytes(to_json_bytes(report))
        elif form == 1:
            (folder / f"{i:05d}.json.gz").write_bytes(to_gzip(report))
        else:
            (folder / f"{i:05d}.eml").write_bytes(to_email(report, gzip=i % 2 == 0))
        key = (report["organization-name"], report["report-id"])
        if key not in expected:
            policies = report["policies"]
            details = sum(len(p.get("failure-details") or ()) for p in policies)
            expected[key] = (len(policies), details)
    bad: set[str] = set()
    for i in range(BAD):
        raw = [
            b'{"organization-name": %d' % i,
            gzip.compress(b"nope %d" % i)[:-5],
            b"Subject: not a report %d\r\n\r\nhi\r\n" % i,
        ][i % 3]
        (folder / f"{i:05d}-bad.json").write_bytes(raw)
        bad.add(hashlib.sha256(raw).hexdigest())
    return expected, bad


def _ingest(folder: Path, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stspilot",
            "ingest",
            str(folder),
            "--db",
            url,
            "--batch-size",
            "50",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _assert_consistent(store: Store, expected: dict[tuple[str, str], tuple[int, int]]) -> int:
    """No report is half-written; returns how many are stored."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT r.organization_name, r.report_id, r.policy_count,"
                " (SELECT count(*) FROM report_policies p WHERE p.report_pk = r.id),"
                " (SELECT count(*) FROM failure_details f WHERE f.report_pk = r.id),"
                " (SELECT count(*) FROM raw_blobs b WHERE b.sha256 = r.raw_sha256)"
                " FROM reports r"
            )
        ).all()
    seen = set()
    for org, rid, policy_count, policies, details, blobs in rows:
        assert (org, rid) not in seen, "stored twice"
        seen.add((org, rid))
        want_policies, want_details = expected[(org, rid)]
        assert (policy_count, policies, details) == (want_policies, want_policies, want_details)
        assert blobs == 1, "report without its raw bytes"
    return len(rows)


def _stored(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM reports")).scalar_one())


def _kill_mid_run(proc: subprocess.Popen[bytes], store: Store, target: int, pause: float) -> None:
    """SIGKILL ``proc`` ``pause`` seconds after the store holds ``target`` reports: inside the
    run, whatever the machine's load makes its pace (waiting on the run's own progress, not on
    a guess of how long it takes)."""
    deadline = time.monotonic() + 240
    while _stored(store) < target:
        assert proc.poll() is None, "the run ended before it got that far"
        assert time.monotonic() < deadline, "the run made no progress in 240 s"
        time.sleep(0.001)
    time.sleep(pause)
    proc.send_signal(signal.SIGKILL)


def test_sigkill_at_random_moments_then_rerun(store: Store, store_url: str, tmp_path: Path) -> None:
    expected, bad = _write_corpus(tmp_path / "in")
    rng = random.Random(int(os.environ.get("STSPILOT_CRASH_SEED", "5")))
    for _ in range(KILLS):
        stored = _stored(store)
        # A random point in what is left to store (batches of 50 keep some of it ahead), and a
        # random moment after it: mid-batch, between batches, mid-commit (a batch of 50 takes
        # a few milliseconds). At most 30% of what is left, polled every millisecond and at
        # most 2 ms after it, so that the run still has reports to store when the kill comes:
        # a fast run (over 10,000 reports/s) stored the rest of the corpus within the 10 ms
        # this polled and waited before.
        target = stored + int(rng.uniform(0.05, 0.3) * (len(expected) - stored))
        proc = _ingest(tmp_path / "in", store_url)
        _kill_mid_run(proc, store, target, rng.uniform(0.0, 0.002))
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL  # killed inside the run, every time
        stored = _assert_consistent(store, expected)
        assert stored <= len(expected)
    final = _ingest(tmp_path / "in", store_url)
    out, err = final.communicate(timeout=240)
    assert final.returncode == 1, err.decode()  # 1: there are quarantined inputs
    tally = json.loads(out)
    assert tally["new"] + tally["duplicate"] == REPORTS
    assert tally["quarantined"] == BAD
    assert _assert_consistent(store, expected) == len(expected)
    with store.engine.connect() as conn:
        shas = set(conn.execute(select(quarantine.c.sha256)).scalars())
        sizes_ok = conn.execute(
            select(func.count())
            .select_from(quarantine)
            .where(func.length(quarantine.c.raw) == quarantine.c.size)
        ).scalar_one()
    assert shas == bad  # every bad file kept once, nothing else
    assert sizes_ok == BAD  # and whole
